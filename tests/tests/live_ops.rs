//! The live-migration operations (`influx-migration status|throttle|unthrottle|verify|cutover|
//! rollback`) run as an operator runs them: the built binary, against moto for the AWS APIs and
//! two real influxd for the source and the destination.
//!
//! Each test deploys what the commands act on through the AWS APIs themselves: a Kinesis stream,
//! the endpoint secret, an IAM role, three functions (zips holding the built stream-writer and
//! query-router binaries as `bootstrap`; moto cannot run them, the commands never invoke them)
//! and the two event source mappings with the settings infra/wiring.yaml gives. The lag comes
//! from a lag file the test writes itself, playing the local stack's poller
//! (`--lag-source file:<path>`), because moto serves no CloudWatch metrics.
//!
//! `cutover` puts a barrier into the stream and waits for both stream writers to pass it: the
//! tests that cut over start the real stream writer twice behind `cargo lambda watch`, fed by the
//! local event source mappings ([`Live::start_writers`]); their lag goes to a file of their own,
//! so the lag the commands read stays the one each test writes.
//!
//! Every run also checks that neither InfluxDB token appears in anything the command printed.

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    DestinationConfig, EventSourcePosition, FunctionResponseType, OnFailure, Runtime,
};
use serde_json::{Value, json};
use testbed::stack::esm::{LagFile, LocalMapping};
use testbed::stack::lambda::{LambdaRuntime, workspace_binary};
use testbed::{Influxd, Moto, TestBed};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The deployment's dead-letter bucket (stall records, park rules, dead letters).
const DEAD_LETTERS: &str = "live-dead-letters";

/// What one run of the CLI printed.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The `--json` document.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr)
        })
    }
}

/// A deployment of the live path in moto, and the two databases.
struct Live {
    moto: Moto,
    src: Influxd,
    dst: Influxd,
    dir: tempfile::TempDir,
    stream: String,
    secret_id: String,
    dest_fn: String,
    src_fn: String,
    router_fn: String,
    lambda: aws_sdk_lambda::Client,
    secrets: aws_sdk_secretsmanager::Client,
}

/// The running stream writers of [`Live::start_writers`].
struct Writers {
    _mappings: Vec<LocalMapping>,
    _runtimes: Vec<LambdaRuntime>,
}

const TRUST: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// A zip holding `binary` as `bootstrap` (python's zipfile, from the test bed's virtualenv).
fn bootstrap_zip(dir: &Path, binary: &str) -> Vec<u8> {
    let stage = dir.join(format!("stage-{binary}"));
    std::fs::create_dir_all(&stage).unwrap();
    std::fs::copy(workspace_binary(binary), stage.join("bootstrap")).unwrap();
    let zip = dir.join(format!("{binary}.zip"));
    let status = Command::new(TestBed::get().venv_bin.join("python"))
        .current_dir(&stage)
        .args(["-m", "zipfile", "-c"])
        .arg(&zip)
        .arg("bootstrap")
        .status()
        .expect("run python -m zipfile");
    assert!(status.success(), "zipping {binary}");
    std::fs::read(zip).unwrap()
}

impl Live {
    async fn deploy() -> Live {
        let (moto, src, dst) =
            tokio::join!(Moto::start(), Influxd::start_named("source"), Influxd::start_named("destination"));
        let dir = tempfile::tempdir().unwrap();
        let conf = moto.sdk_config().await;
        let kinesis = aws_sdk_kinesis::Client::new(&conf);
        let lambda = aws_sdk_lambda::Client::new(&conf);
        let secrets = aws_sdk_secretsmanager::Client::new(&conf);

        // The bucket the writers keep stalls, park rules and dead letters in: cutover reads it.
        aws_sdk_s3::Client::new(&conf).create_bucket().bucket(DEAD_LETTERS).send().await.unwrap();

        let stream = "live-writes".to_string();
        kinesis.create_stream().stream_name(&stream).shard_count(2).send().await.unwrap();
        kinesis
            .increase_stream_retention_period()
            .stream_name(&stream)
            .retention_period_hours(168)
            .send()
            .await
            .unwrap();
        let stream_arn = kinesis
            .describe_stream_summary()
            .stream_name(&stream)
            .send()
            .await
            .unwrap()
            .stream_description_summary()
            .unwrap()
            .stream_arn()
            .to_string();

        let secret_json =
            json!({"source": {"url": src.url}, "destination": {"url": dst.url}, "read": "source"});
        let secret_id = "live/endpoints".to_string();
        secrets.create_secret().name(&secret_id).secret_string(secret_json.to_string()).send().await.unwrap();

        let role = moto.aws_cli(&[
            "iam",
            "create-role",
            "--role-name",
            "live-writer",
            "--assume-role-policy-document",
            TRUST,
        ]);
        let role_arn = role["Role"]["Arn"].as_str().unwrap().to_string();
        let writer_zip = bootstrap_zip(dir.path(), "stream-writer");
        let router_zip = bootstrap_zip(dir.path(), "query-router");

        let (dest_fn, src_fn, router_fn) = (
            "live-stream-writer-destination".to_string(),
            "live-stream-writer-source".to_string(),
            "live-query-router".to_string(),
        );
        for (name, zip, env) in [
            (&dest_fn, &writer_zip, vec![("TARGET", "destination"), ("SECRET_ID", secret_id.as_str())]),
            (&src_fn, &writer_zip, vec![("TARGET", "source"), ("SECRET_ID", secret_id.as_str())]),
            (&router_fn, &router_zip, vec![("SECRET_ID", secret_id.as_str()), ("SECRET_TTL_SECONDS", "2")]),
        ] {
            let mut vars = aws_sdk_lambda::types::Environment::builder();
            for (k, v) in env {
                vars = vars.variables(k, v);
            }
            lambda
                .create_function()
                .function_name(name)
                .runtime(Runtime::Providedal2023)
                .handler("bootstrap")
                .role(&role_arn)
                .code(aws_sdk_lambda::types::FunctionCode::builder().zip_file(Blob::new(zip.clone())).build())
                .environment(vars.build())
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!("create_function {name}: {}", aws_sdk_lambda::error::DisplayErrorContext(&e))
                });
        }
        // Held before its mapping exists, as infra/deploy.sh does.
        lambda
            .put_function_concurrency()
            .function_name(&dest_fn)
            .reserved_concurrent_executions(0)
            .send()
            .await
            .unwrap();
        let start =
            aws_sdk_lambda::primitives::DateTime::from_secs(OffsetDateTime::now_utc().unix_timestamp() - 60);
        for name in [&src_fn, &dest_fn] {
            lambda
                .create_event_source_mapping()
                .function_name(name)
                .event_source_arn(&stream_arn)
                .starting_position(EventSourcePosition::AtTimestamp)
                .starting_position_timestamp(start)
                .maximum_retry_attempts(-1)
                .maximum_record_age_in_seconds(-1)
                .bisect_batch_on_function_error(true)
                .function_response_types(FunctionResponseType::ReportBatchItemFailures)
                .destination_config(
                    DestinationConfig::builder()
                        .on_failure(
                            OnFailure::builder().destination(format!("arn:aws:s3:::{DEAD_LETTERS}")).build(),
                        )
                        .build(),
                )
                .enabled(true)
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "create_event_source_mapping {name}: {}",
                        aws_sdk_lambda::error::DisplayErrorContext(&e)
                    )
                });
        }
        Live { moto, src, dst, dir, stream, secret_id, dest_fn, src_fn, router_fn, lambda, secrets }
    }

    /// The two stream writers, running and fed from the stream: they pass the barriers
    /// `cutover` puts (the stream holds nothing else). Stop when dropped.
    async fn start_writers(&self) -> Writers {
        let conf = self.moto.sdk_config().await;
        let mut runtimes = Vec::new();
        let mut mappings = Vec::new();
        let lag = LagFile::new(self.dir.path().join("writers-lag.json"));
        for (name, target) in [(&self.src_fn, "source"), (&self.dest_fn, "destination")] {
            let mut env = self.moto.env();
            for (k, v) in [
                ("TARGET", target),
                ("SECRET_ID", self.secret_id.as_str()),
                ("SECRET_TTL_SECONDS", "1"),
                ("DEAD_LETTER_BUCKET", DEAD_LETTERS),
                ("RETRY_BUDGET_SECONDS", "10"),
            ] {
                env.push((k.to_string(), v.to_string()));
            }
            let runtime = LambdaRuntime::start_named_binary(
                name,
                "stream-writer",
                &env,
                std::time::Duration::from_secs(15),
            )
            .await;
            mappings.push(LocalMapping::start(
                aws_sdk_lambda::Client::new(&conf),
                aws_sdk_kinesis::Client::new(&conf),
                name,
                runtime.invoker(),
                lag.clone(),
            ));
            runtimes.push(runtime);
        }
        Writers { _mappings: mappings, _runtimes: runtimes }
    }

    fn lag_file(&self) -> PathBuf {
        self.dir.path().join("lag.json")
    }

    /// Plays the local stack's poller: the destination writer's IteratorAge, measured now.
    fn write_lag(&self, iterator_age_ms: u64) {
        let now = OffsetDateTime::now_utc().format(&Rfc3339).unwrap();
        let doc = json!({"functions": {
            &self.dest_fn: {"iterator_age_ms": iterator_age_ms, "updated_at": now, "pending_records": 0},
            &self.src_fn: {"iterator_age_ms": 10, "updated_at": now, "pending_records": 0},
        }});
        std::fs::write(self.lag_file(), doc.to_string()).unwrap();
    }

    /// Runs `influx-migration <args>` with the deployment's names and the tokens in the
    /// environment.
    fn cli(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(workspace_binary("influx-migration"));
        cmd.args(args)
            .args(["--stream-name", &self.stream, "--secret-id", &self.secret_id])
            .args(["--destination-function", &self.dest_fn, "--source-function", &self.src_fn])
            .args(["--router-function", &self.router_fn, "--dead-letter-bucket", DEAD_LETTERS])
            .envs(self.moto.env())
            .env("LIVE_LAG_SOURCE", format!("file:{}", self.lag_file().display()))
            .env("INFLUX_SRC_TOKEN", &self.src.token)
            .env("INFLUX_DEST_TOKEN", &self.dst.token)
            .env_remove("LIVE_STACK")
            .env_remove("RUST_LOG");
        let out = cmd.output().expect("run influx-migration");
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        for token in [&self.src.token, &self.dst.token] {
            assert!(
                !run.stdout.contains(token.as_str()) && !run.stderr.contains(token.as_str()),
                "a token was printed by {args:?}"
            );
        }
        run
    }

    async fn reserved_concurrency(&self) -> Option<i32> {
        self.lambda
            .get_function_concurrency()
            .function_name(&self.dest_fn)
            .send()
            .await
            .unwrap()
            .reserved_concurrent_executions()
    }

    /// `read` of the secret's AWSCURRENT version, and that version's ID (read through Secrets
    /// Manager, not through the CLI).
    async fn read_endpoint(&self) -> (String, String) {
        let v = self.secrets.get_secret_value().secret_id(&self.secret_id).send().await.unwrap();
        let secret: Value = serde_json::from_str(v.secret_string().unwrap()).unwrap();
        (secret["read"].as_str().unwrap().to_string(), v.version_id().unwrap().to_string())
    }

    /// The same points in both databases: cpu (3 points, 2 fields each) and mem (2 points).
    async fn write_same_data(&self) {
        let body = "cpu,host=a usage=1.5,idle=90i 1704067200\n\
                    cpu,host=a usage=2.5,idle=80i 1704067201\n\
                    cpu,host=b usage=3.5,idle=70i 1704067202\n\
                    mem,host=a used=100i 1704067203\n\
                    mem,host=b used=200i 1704067204\n";
        self.src.write_ok(&self.src.bucket, "s", body).await;
        self.dst.write_ok(&self.dst.bucket, "s", body).await;
    }
}

fn checks_named<'a>(doc: &'a Value, name: &str) -> Vec<&'a Value> {
    doc["checks"].as_array().unwrap().iter().filter(|c| c["name"] == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_then_unthrottle_then_status_shows_each_state() {
    let live = Live::deploy().await;
    live.write_same_data().await;
    // The destination has not received the newest point yet.
    live.src.write_ok(&live.src.bucket, "s", "mem,host=c used=300i 1704067210\n").await;
    live.write_lag(2000);

    let status = live.cli(&["status", "--json"]);
    assert_eq!(status.code, 0, "{}\n{}", status.stdout, status.stderr);
    let doc = status.json();
    assert_eq!(doc["destination_writer"]["throttle"]["state"], "throttled");
    assert_eq!(doc["stream"]["retention_hours"], 168);
    assert_eq!(doc["stream"]["open_shards"], 2);
    assert_eq!(doc["destination_writer"]["mappings"][0]["state"], "Enabled");
    assert_eq!(doc["destination_writer"]["mappings"][0]["maximum_retry_attempts"], -1);
    assert_eq!(doc["source_writer"]["mappings"][0]["report_batch_item_failures"], true);
    assert_eq!(doc["destination_writer"]["lag"]["iterator_age_ms"], 2000);
    // Expiry: retention minus the IteratorAge.
    assert_eq!(doc["expiry"]["basis"], "iterator_age");
    assert_eq!(doc["expiry"]["oldest_unprocessed_age_seconds"], 2);
    assert_eq!(doc["expiry"]["headroom_seconds"], 168 * 3600 - 2);
    // The read endpoint as scheme, host and port only.
    assert_eq!(doc["read_endpoint"]["read"], "source");
    assert_eq!(doc["read_endpoint"]["host"], live.src.url.as_str());
    // Newest point per bucket at both ends.
    let bucket = &doc["buckets"][0];
    assert_eq!(bucket["pair"]["source_bucket"], live.src.bucket.as_str());
    assert_eq!(bucket["source_newest"], "2024-01-01T00:00:10Z");
    assert_eq!(bucket["destination_newest"], "2024-01-01T00:00:04Z");
    assert_eq!(doc["errors"], json!([]));

    // Unthrottle: the reservation goes, the command says what it did.
    let un = live.cli(&["unthrottle"]);
    assert_eq!(un.code, 0, "{}\n{}", un.stdout, un.stderr);
    assert!(
        un.stdout.contains(&format!("did: removed the reserved concurrency of {}", live.dest_fn)),
        "{}",
        un.stdout
    );
    assert_eq!(live.reserved_concurrency().await, None);
    let status = live.cli(&["status", "--json"]).json();
    assert_eq!(status["destination_writer"]["throttle"]["state"], "unthrottled");

    // Idempotent: a second unthrottle changes nothing and says so.
    let again = live.cli(&["unthrottle", "--json"]);
    assert_eq!(again.code, 0);
    let again = again.json();
    assert_eq!(again["changed"], false);
    assert_eq!(again["actions"], json!([]));
    assert_eq!(again["after"]["state"], "unthrottled");

    // Throttle: reserved concurrency 0 again.
    let th = live.cli(&["throttle", "--json"]);
    assert_eq!(th.code, 0, "{}", th.stderr);
    let th = th.json();
    assert_eq!(th["changed"], true);
    assert_eq!(th["before"]["state"], "unthrottled");
    assert_eq!(th["after"]["state"], "throttled");
    assert_eq!(live.reserved_concurrency().await, Some(0));
    let human = live.cli(&["status"]);
    assert_eq!(human.code, 0);
    assert!(
        human.stdout.contains(&format!("{} is throttled (reserved concurrency 0)", live.dest_fn)),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("--stream-retention-hours 168"), "{}", human.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_on_equal_data_and_detects_one_missing_point() {
    let live = Live::deploy().await;
    live.write_same_data().await;

    let clean = live.cli(&["verify", "--json"]);
    assert_eq!(clean.code, 0, "{}\n{}", clean.stdout, clean.stderr);
    let doc = clean.json();
    assert_eq!(doc["report"]["clean"], true);
    let m = &doc["report"]["buckets"][0]["measurements"];
    assert_eq!(m[0]["measurement"], "cpu");
    assert_eq!((m[0]["source"].as_u64(), m[0]["destination"].as_u64()), (Some(6), Some(6)));
    assert_eq!(m[1]["measurement"], "mem");
    assert_eq!((m[1]["source"].as_u64(), m[1]["destination"].as_u64()), (Some(2), Some(2)));

    // One point only at the source.
    live.src.write_ok(&live.src.bucket, "s", "mem,host=c used=300i 1704067210\n").await;
    let diff = live.cli(&["verify"]);
    assert_eq!(diff.code, 3, "exit 3 on a difference\n{}\n{}", diff.stdout, diff.stderr);
    let row = diff
        .stdout
        .lines()
        .find(|l| l.contains("mem") && l.contains("FEWER"))
        .unwrap_or_else(|| panic!("{}", diff.stdout));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[2..], &["mem", "3", "2", "-1", "FEWER"], "{row}");
    assert!(diff.stdout.contains("verification FAILED: 1 difference(s)"), "{}", diff.stdout);
    let doc = live.cli(&["verify", "--json"]).json();
    assert_eq!(doc["exit_code"], 3);
    assert_eq!(doc["report"]["differences"], 1);
    assert_eq!(doc["report"]["buckets"][0]["measurements"][1]["source"], 3);
    assert_eq!(doc["report"]["buckets"][0]["measurements"][1]["destination"], 2);

    // A window that leaves the extra point out agrees again.
    let windowed = live.cli(&["verify", "--start", "2024-01-01T00:00:00Z", "--stop", "2024-01-01T00:00:05Z"]);
    assert_eq!(windowed.code, 0, "{}", windowed.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_refuses_while_throttled_and_succeeds_after_unthrottle() {
    let live = Live::deploy().await;
    let _writers = live.start_writers().await;
    live.write_same_data().await;
    live.write_lag(800);
    let (read, version_before) = live.read_endpoint().await;
    assert_eq!(read, "source");

    // Throttled: refused, exit 4, nothing written.
    let refused = live.cli(&["cutover", "--json"]);
    assert_eq!(refused.code, 4, "{}\n{}", refused.stdout, refused.stderr);
    let doc = refused.json();
    assert_eq!(doc["outcome"], "refused");
    assert_eq!(checks_named(&doc, "destination writer unthrottled")[0]["verdict"], "refused");
    assert_eq!(
        checks_named(&doc, "verify")[0]["verdict"],
        "unknown",
        "verify is skipped once a check refused"
    );
    assert_eq!(live.read_endpoint().await, ("source".to_string(), version_before.clone()));

    live.cli(&["unthrottle"]);
    // The lag is an indication, never the gate: unknown (the poller has not reported), it is
    // printed as such and the barrier decides. A point missing at the destination: verify
    // refuses, over a window that ends at the barrier.
    std::fs::write(live.lag_file(), json!({"functions": {}}).to_string()).unwrap();
    live.src.write_ok(&live.src.bucket, "s", "cpu,host=c usage=9.5,idle=1i 1704067220\n").await;
    let differs = live.cli(&["cutover", "--json"]);
    assert_eq!(differs.code, 4, "{}", differs.stdout);
    let doc = differs.json();
    let lag = &checks_named(&doc, "destination lag")[0].clone();
    assert_eq!(lag["verdict"], "info");
    assert!(lag["detail"].as_str().unwrap().contains("unknown"), "{lag}");
    assert_eq!(checks_named(&doc, "barrier")[0]["verdict"], "ok", "{doc}");
    assert_eq!(checks_named(&doc, "verify")[0]["verdict"], "refused");
    assert_eq!(doc["verify"]["differences"], 1);
    assert_eq!(live.read_endpoint().await.0, "source");

    // The destination writer delivers it: cutover goes through.
    live.dst.write_ok(&live.dst.bucket, "s", "cpu,host=c usage=9.5,idle=1i 1704067220\n").await;
    let ok = live.cli(&["cutover", "--json"]);
    assert_eq!(ok.code, 0, "{}\n{}", ok.stdout, ok.stderr);
    let doc = ok.json();
    assert_eq!(doc["switched"]["outcome"], "written");
    assert_eq!(doc["switched"]["previous_version_id"], version_before.as_str());
    let (read, version_after) = live.read_endpoint().await;
    assert_eq!(read, "destination");
    assert_eq!(doc["switched"]["version_id"], version_after.as_str());
    // The cache time is the router's SECRET_TTL_SECONDS (2), and the switch time follows it.
    assert_eq!(doc["cache_time"]["seconds"], 2.0);
    assert!(doc["cache_time"]["from"].as_str().unwrap().contains(&live.router_fn));
    let by = OffsetDateTime::parse(doc["all_routers_switched_by"].as_str().unwrap(), &Rfc3339).unwrap();
    let now = OffsetDateTime::now_utc();
    assert!(by > now - time::Duration::seconds(60) && by <= now + time::Duration::seconds(2), "{by}");
    // Only `read` changed in the secret.
    let v = live.secrets.get_secret_value().secret_id(&live.secret_id).send().await.unwrap();
    let secret: Value = serde_json::from_str(v.secret_string().unwrap()).unwrap();
    assert_eq!(
        secret,
        json!({"source": {"url": live.src.url}, "destination": {"url": live.dst.url}, "read": "destination"})
    );

    // Idempotent: a second cutover writes nothing.
    let again = live.cli(&["cutover", "--json"]);
    assert_eq!(again.code, 0);
    assert_eq!(again.json()["switched"]["outcome"], "already");
    assert_eq!(live.read_endpoint().await, ("destination".to_string(), version_after));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_returns_reads_to_the_source_and_cutover_works_again_after_it() {
    let live = Live::deploy().await;
    let _writers = live.start_writers().await;
    live.write_same_data().await;
    live.write_lag(100);
    live.cli(&["unthrottle"]);
    assert_eq!(live.cli(&["cutover"]).code, 0);
    assert_eq!(live.read_endpoint().await.0, "destination");

    let back = live.cli(&["rollback"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert!(back.stdout.contains("reads go to the source"), "{}", back.stdout);
    assert!(back.stdout.contains("every query router reads from the source by"), "{}", back.stdout);
    let (read, version) = live.read_endpoint().await;
    assert_eq!(read, "source");

    let again = live.cli(&["rollback", "--json"]);
    assert_eq!(again.code, 0);
    assert_eq!(again.json()["switched"]["outcome"], "already");
    assert_eq!(live.read_endpoint().await, ("source".to_string(), version));

    // The same switch a second time still moves AWSCURRENT (its token differs from the first
    // cutover's, which Secrets Manager would otherwise ignore).
    let recut = live.cli(&["cutover", "--json"]);
    assert_eq!(recut.code, 0, "{}", recut.stdout);
    assert_eq!(recut.json()["switched"]["outcome"], "written");
    assert_eq!(live.read_endpoint().await.0, "destination");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_cuts_over_despite_refusals_and_says_so_loudly() {
    let live = Live::deploy().await;
    live.write_same_data().await;
    // Throttled, no lag reading at all, no writer to pass the barrier.
    let forced = live.cli(&["cutover", "--force", "--barrier-timeout", "3", "--json"]);
    assert_eq!(forced.code, 0, "{}\n{}", forced.stdout, forced.stderr);
    let doc = forced.json();
    assert_eq!(checks_named(&doc, "destination writer unthrottled")[0]["verdict"], "forced");
    assert_eq!(checks_named(&doc, "destination lag")[0]["verdict"], "info");
    let barrier = checks_named(&doc, "barrier")[0].clone();
    assert_eq!(barrier["verdict"], "forced");
    assert!(barrier["detail"].as_str().unwrap().contains("the destination writer in shardId-"), "{barrier}");
    assert_eq!(checks_named(&doc, "verify")[0]["verdict"], "ok");
    assert_eq!(doc["forced"].as_array().unwrap().len(), 2);
    assert!(
        forced.stderr.contains("warning: --force: cutting over although destination writer unthrottled"),
        "{}",
        forced.stderr
    );
    assert_eq!(live.read_endpoint().await.0, "destination");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_names_and_tokens_are_reported_with_what_to_pass() {
    let live = Live::deploy().await;
    let out = Command::new(workspace_binary("influx-migration"))
        .args(["throttle"])
        .envs(live.moto.env())
        .env_remove("LIVE_STACK")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--stack") && err.contains("--destination-function"), "{err}");

    let out = Command::new(workspace_binary("influx-migration"))
        .args(["verify", "--secret-id", &live.secret_id])
        .envs(live.moto.env())
        .env_remove("INFLUX_SRC_TOKEN")
        .env_remove("INFLUX_DEST_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("INFLUX_SRC_TOKEN is not set"), "{err}");

    // With --json a failure is still one JSON document on stdout.
    let out = Command::new(workspace_binary("influx-migration"))
        .args(["cutover", "--json", "--secret-id", "no/such/secret", "--destination-function", &live.dest_fn])
        .envs(live.moto.env())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["command"], "cutover");
    assert_eq!(doc["outcome"], "failure");
    assert!(doc["error"].as_str().unwrap().contains("GetSecretValue on secret no/such/secret"), "{doc}");
}

/// A downsampling task `rollup` (every 2 s) at `server`, from its bucket into `derived`, with
/// `status`; labelled held when `held`, as a `--full` seeding leaves the destination's copy.
async fn make_rollup(server: &Influxd, status: &str, held: bool) -> String {
    let flux = format!(
        "option task = {{name: \"rollup\", every: 2s}}\n\
         from(bucket: \"{}\") |> range(start: -task.every) |> aggregateWindow(every: 1s, fn: last)\n  \
         |> to(bucket: \"derived\", org: \"{}\")\n",
        server.bucket, server.org
    );
    let (code, task) = server
        .api(
            reqwest::Method::POST,
            "/api/v2/tasks",
            Some(json!({"orgID": server.org_id, "flux": flux, "status": status})),
        )
        .await;
    assert_eq!(code, 201, "{task}");
    let id = task["id"].as_str().unwrap().to_string();
    if held {
        server.label_task_held(&id).await;
    }
    id
}

/// `(status, labelled held)` of the task `id`.
async fn rollup_state(server: &Influxd, id: &str) -> (String, bool) {
    let (code, task) = server.api(reqwest::Method::GET, &format!("/api/v2/tasks/{id}"), None).await;
    assert_eq!(code, 200, "{task}");
    let held = task["labels"].as_array().into_iter().flatten().any(|l| l["name"] == "influx-migration:held");
    (task["status"].as_str().unwrap_or_default().to_string(), held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_hands_scheduled_work_to_the_destination_and_rollback_hands_it_back() {
    let live = Live::deploy().await;
    let _writers = live.start_writers().await;
    live.write_same_data().await;
    live.write_lag(100);
    live.cli(&["unthrottle"]);
    for server in [&live.src, &live.dst] {
        server.create_bucket("derived").await;
    }
    let src_task = make_rollup(&live.src, "active", false).await;
    let dst_task = make_rollup(&live.dst, "inactive", true).await;

    let status = live.cli(&["status", "--json"]);
    assert_eq!(status.json()["scheduled_work"]["owner"], "source", "{}", status.stdout);
    // The task has no offset and the source writer lags 10 ms: its runs read too early.
    let early = &status.json()["scheduled_work"]["reading_too_early"];
    assert_eq!(early.as_array().map(Vec::len), Some(1), "{}", status.stdout);
    assert!(
        early[0].as_str().is_some_and(|w| w.contains("\"rollup\"") && w.contains("at the source")),
        "{early}"
    );

    // The plan changes nothing.
    let plan = live.cli(&["cutover", "--dry-run", "--json"]);
    assert_eq!(plan.code, 0, "{}\n{}", plan.stdout, plan.stderr);
    assert_eq!(plan.json()["handover"]["dry_run"], true);
    assert_eq!(plan.json()["handover"]["moved"][0]["name"], "rollup", "{}", plan.stdout);
    assert_eq!(live.read_endpoint().await.0, "source");
    assert_eq!(rollup_state(&live.src, &src_task).await, ("active".to_string(), false));
    assert_eq!(rollup_state(&live.dst, &dst_task).await, ("inactive".to_string(), true));

    let cut = live.cli(&["cutover", "--json"]);
    assert_eq!(cut.code, 0, "{}\n{}", cut.stdout, cut.stderr);
    let moved = &cut.json()["handover"]["moved"];
    assert_eq!(
        (moved[0]["kind"].as_str(), moved[0]["name"].as_str()),
        (Some("task"), Some("rollup")),
        "{moved}"
    );
    assert_eq!(moved[0]["failed"], 0, "{moved}");
    assert_eq!(
        rollup_state(&live.src, &src_task).await,
        ("inactive".to_string(), true),
        "the source stopped"
    );
    assert_eq!(
        rollup_state(&live.dst, &dst_task).await,
        ("active".to_string(), false),
        "the destination runs it"
    );
    assert_eq!(live.read_endpoint().await.0, "destination");
    let status = live.cli(&["status", "--json"]);
    assert_eq!(status.json()["scheduled_work"]["owner"], "destination", "{}", status.stdout);

    let back = live.cli(&["rollback", "--json"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    assert_eq!(back.json()["handover"]["moved"][0]["name"], "rollup", "{}", back.stdout);
    assert_eq!(
        rollup_state(&live.src, &src_task).await,
        ("active".to_string(), false),
        "the source runs it again"
    );
    assert_eq!(rollup_state(&live.dst, &dst_task).await, ("inactive".to_string(), true));

    // A second rollback has nothing to hand back; a second cutover moves it again.
    let again = live.cli(&["rollback", "--json"]);
    assert_eq!(again.code, 0, "{}", again.stdout);
    assert_eq!(again.json()["handover"]["moved"], json!([]), "{}", again.stdout);
    let recut = live.cli(&["cutover", "--json"]);
    assert_eq!(recut.code, 0, "{}\n{}", recut.stdout, recut.stderr);
    assert_eq!(rollup_state(&live.src, &src_task).await, ("inactive".to_string(), true));
    assert_eq!(rollup_state(&live.dst, &dst_task).await, ("active".to_string(), false));
}

/// Regression: a writer older than the CLI stops at `cutover`'s barrier (a record of a newer
/// format) and `park` reported success for it, although no park rule can release such a stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn park_refuses_a_stall_at_a_newer_record_format_and_says_what_releases_it() {
    let live = Live::deploy().await;
    let stall = shared::stall::Stall {
        target: shared::secret::Role::Destination,
        shard_id: "shardId-000000000001".into(),
        sequence_number: "49660".into(),
        since_ms: 1_700_000_000_000,
        last_failure_ms: 1_700_000_060_000,
        failures: 3,
        class: shared::stall::StallClass::Configuration,
        status: None,
        reason: "stream record format version 2 is newer than this stream writer reads (1): deploy the \
                 stream writer of the same release as the kinesis-writer; the record is retried, never dropped"
            .into(),
        bucket: None,
        arrival_ms: Some(1_700_000_000_000),
    };
    let s3 = aws_sdk_s3::Client::new(&live.moto.sdk_config().await);
    s3.put_object()
        .bucket(DEAD_LETTERS)
        .key(shared::stall::stall_key(shared::secret::Role::Destination, "shardId-000000000001"))
        .body(serde_json::to_vec(&stall).unwrap().into())
        .send()
        .await
        .expect("put the stall record");
    let parked = live.cli(&["park", "--note", "old writer"]);
    assert_eq!(parked.code, 4, "park refuses:\n{}\n{}", parked.stdout, parked.stderr);
    assert!(parked.stdout.contains("no park rule releases it"), "{}", parked.stdout);
    assert!(parked.stdout.contains("Deploy the stream writer of the same release"), "{}", parked.stdout);
    let rules = s3.list_objects_v2().bucket(DEAD_LETTERS).prefix("parked/").send().await.unwrap();
    assert!(rules.contents().is_empty(), "no rule was written: {:?}", rules.contents());
}

/// Issue 31: an edit of the endpoint secret that the functions reject (a wrong type, here a URL
/// with credentials where a boolean goes) left them serving the last good version with no sign
/// of it, and status printed serde's error with the value in it. Now status names the field,
/// says what the functions do with such a version, and never shows the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_a_secret_edit_the_functions_reject_without_echoing_it() {
    let live = Live::deploy().await;
    let bad = json!({
        "source": {"url": live.src.url, "skip_verify": "https://admin:hunter2@db.example"},
        "destination": {"url": live.dst.url},
        "read": "source"
    });
    live.secrets
        .put_secret_value()
        .secret_id(&live.secret_id)
        .secret_string(bad.to_string())
        .send()
        .await
        .unwrap();
    let status = live.cli(&["status"]);
    let all = format!("{}\n{}", status.stdout, status.stderr);
    assert!(!all.contains("hunter2") && !all.contains("admin:"), "{all}");
    assert!(all.contains("endpoint secret"), "{all}");
    assert!(all.contains("source.skip_verify must be a boolean"), "{all}");
    assert!(all.contains("keep serving the last one they read"), "{all}");
}
