//! The local stack: the whole live path on loopback, deployed the way an operator deploys it.
//!
//! - a source and a destination influxd 2.7.12 (the destination behind a [`FaultProxy`] so tests
//!   can make it misbehave), onboarded separately as a new Timestream instance would be;
//! - moto for the AWS APIs, with `infra/deploy.sh` run against it exactly as against AWS (core
//!   stack, `cargo lambda deploy` of the four functions from the debug builds, the destination
//!   writer throttled, wiring stack with the event source mappings and the REST API). moto
//!   silently skips `AWS::SecretsManager::Secret`, so the endpoint secret is then created from
//!   the template's own name and shape through Secrets Manager;
//! - the four functions as real binaries behind the Lambda runtime API of `cargo lambda watch`,
//!   with the environment the deploy gave them;
//! - a [`LocalGateway`] in front of the writer and the router, and a [`LocalMapping`] per stream
//!   writer reading the mappings and the reserved concurrency from moto, so the CLI's
//!   `throttle` / `unthrottle` / `status` / `cutover` work here unchanged (`--lag-source
//!   file:<path>` reads the lag the mappings publish).
//!
//! Its parts: [`lambda`] (a function binary behind `cargo lambda watch`'s runtime API), [`esm`]
//! and [`poller`] (the event source mappings: Kinesis to a function, as Lambda does it),
//! [`gateway`] and [`events`] (API Gateway's proxy events), [`template`] (the CloudFormation
//! templates read as JSON) and [`logs`] (every process's log, kept).
pub mod esm;
pub mod events;
pub mod gateway;
pub mod lambda;
pub mod logs;
pub mod poller;
pub mod template;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::bed::TestBed;
use crate::stack::esm::{LagFile, LocalMapping, MappingState};
use crate::stack::gateway::{ApiRoutes, LocalGateway};
use crate::stack::lambda::{LambdaRuntime, stage_bootstraps, workspace_binary};
use crate::{FaultProxy, Influxd, InfluxdVersion, Moto};

/// How many instances of the kinesis-writer and of the query router concurrent requests may
/// bring up (Lambda's scaling; the account's concurrency is the limit on AWS).
pub const GATEWAY_FUNCTION_CONCURRENCY: usize = 8;

/// How the stack is set up.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Name prefix of every AWS resource (`infra/deploy.sh --prefix`).
    pub prefix: String,
    /// How long the functions cache the endpoint secret.
    pub secret_ttl_secs: u64,
    /// Where logs, the lag file and the staged bootstraps go (a temp dir when None).
    pub work_dir: Option<PathBuf>,
    /// The stream writers' function timeout: an invocation with no answer by then fails and the
    /// mapping retries its batch. 300 s as deployed; 20 s by default here, so that a killed
    /// instance (whose invocation never answers) costs a test 20 s.
    pub stream_writer_timeout: Duration,
    /// Settings of the destination stream writer that replace (or add to) what the deploy gave
    /// it, e.g. a broken one to make it fail at every start.
    pub destination_writer_env: Vec<(String, String)>,
    /// Onboard the destination with the source's operator token (and the same org and bucket
    /// names), as a full seeding leaves it, for tests that replay without seeding first.
    pub destination_shares_source_token: bool,
    /// The influxd versions of the source and of the destination (2.7.12 both by default).
    pub versions: (InfluxdVersion, InfluxdVersion),
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            prefix: "local-live".into(),
            secret_ttl_secs: 2,
            work_dir: None,
            stream_writer_timeout: Duration::from_secs(20),
            destination_writer_env: Vec::new(),
            destination_shares_source_token: false,
            versions: (InfluxdVersion::V2_7, InfluxdVersion::V2_7),
        }
    }
}

/// Names the deploy created (the core stack's outputs), and the secret.
#[derive(Debug, Clone)]
pub struct StackOutputs {
    pub core_stack: String,
    pub stream_name: String,
    pub secret_id: String,
    pub dead_letter_bucket: String,
    pub kinesis_writer: String,
    pub source_writer: String,
    pub destination_writer: String,
    pub query_router: String,
}

/// The running local stack; everything stops when it is dropped.
pub struct LocalStack {
    pub source: Influxd,
    pub destination: Influxd,
    pub destination_proxy: FaultProxy,
    pub moto: Moto,
    pub outputs: StackOutputs,
    pub writer: LambdaRuntime,
    pub router: LambdaRuntime,
    pub source_writer: LambdaRuntime,
    pub destination_writer: LambdaRuntime,
    pub gateway: LocalGateway,
    pub source_mapping: LocalMapping,
    pub destination_mapping: LocalMapping,
    pub lag_file: PathBuf,
    pub work_dir: PathBuf,
    /// The token the CLI uses for the destination: its own until a full restore replaces its
    /// tokens with the source's.
    destination_token: std::sync::Mutex<String>,
    /// How long the functions cache the endpoint secret.
    secret_ttl: Duration,
    _temp: Option<tempfile::TempDir>,
}

/// The REST API's routes as the wiring stack deployed them (moto keeps resources and methods).
async fn deployed_routes(
    moto: &Moto,
    cfn: &aws_sdk_cloudformation::Client,
    prefix: &str,
    outputs: &StackOutputs,
) -> Result<ApiRoutes, String> {
    let wiring = format!("{prefix}-wiring");
    let stacks = cfn.describe_stacks().stack_name(&wiring).send().await.map_err(|e| {
        format!("describe_stacks {wiring}: {}", aws_sdk_cloudformation::error::DisplayErrorContext(&e))
    })?;
    let api = stacks
        .stacks()
        .first()
        .and_then(|s| s.outputs().iter().find(|o| o.output_key() == Some("RestApiId")))
        .and_then(|o| o.output_value())
        .ok_or_else(|| format!("the wiring stack {wiring} has no RestApiId output"))?
        .to_string();
    let resources = moto.aws_cli(&["apigateway", "get-resources", "--rest-api-id", &api]);
    ApiRoutes::from_resources(&resources, &outputs.kinesis_writer, &outputs.query_router)
}

/// Runs a command, failing with its output when it fails.
async fn run_logged(mut cmd: tokio::process::Command, what: &str, log: &Path) -> Result<(), String> {
    let out = cmd.stdin(Stdio::null()).output().await.map_err(|e| format!("{what}: {e}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::write(log, &text);
    if out.status.success() {
        Ok(())
    } else {
        let tail: String = text.chars().rev().take(4000).collect::<Vec<_>>().into_iter().rev().collect();
        Err(format!("{what} failed ({}); log {}:\n{tail}", out.status, log.display()))
    }
}

impl LocalStack {
    /// Starts everything; `progress` hears about each step.
    pub async fn start(options: StackOptions, progress: impl Fn(&str)) -> Result<LocalStack, String> {
        let bed = TestBed::get();
        let (temp, work_dir) = match &options.work_dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
                (None, d.clone())
            }
            None => {
                let t =
                    tempfile::Builder::new().prefix("local-stack-").tempdir().map_err(|e| e.to_string())?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };

        let (source_version, destination_version) = options.versions;
        progress(&format!(
            "starting the source (influxd {}) and the destination (influxd {})",
            source_version.label(),
            destination_version.label()
        ));
        let source = Influxd::start_version(source_version, "source").await;
        let destination = if options.destination_shares_source_token {
            Influxd::start_version_with_token(destination_version, "destination", &source.token).await
        } else {
            Influxd::start_version(destination_version, "destination").await
        };
        let destination_proxy = FaultProxy::start(&destination.url).await;
        progress("starting moto (AWS APIs)");
        let moto = Moto::start().await;

        progress(
            "deploying the live path to moto with infra/deploy.sh (core stack, cargo lambda deploy x4, wiring stack)",
        );
        let lambda_dir = work_dir.join("lambda");
        stage_bootstraps(&lambda_dir).map_err(|e| format!("staging the function binaries: {e}"))?;
        let mut deploy = tokio::process::Command::new("bash");
        deploy
            .arg(TestBed::repo_root().join("infra/deploy.sh"))
            .args(["--prefix", &options.prefix, "--skip-build", "--lambda-dir"])
            .arg(&lambda_dir)
            .args(["--source-url", &source.url, "--destination-url", &destination_proxy.url])
            .args(["--secret-ttl-seconds", &options.secret_ttl_secs.to_string()])
            .env("PATH", format!("{}:{}", bed.venv_bin.display(), std::env::var("PATH").unwrap_or_default()))
            .current_dir(TestBed::repo_root());
        for (k, v) in moto.env() {
            deploy.env(k, v);
        }
        run_logged(deploy, "infra/deploy.sh", &work_dir.join("deploy.log")).await?;

        let config = moto.sdk_config().await;
        let core_stack = format!("{}-core", options.prefix);
        let cfn = aws_sdk_cloudformation::Client::new(&config);
        let stacks = cfn.describe_stacks().stack_name(&core_stack).send().await.map_err(|e| {
            format!(
                "describe_stacks {core_stack}: {}",
                aws_sdk_cloudformation::error::DisplayErrorContext(&e)
            )
        })?;
        let outputs = stacks.stacks().first().map(|s| s.outputs().to_vec()).unwrap_or_default();
        let output = |key: &str| -> Result<String, String> {
            outputs
                .iter()
                .find(|o| o.output_key() == Some(key))
                .and_then(|o| o.output_value())
                .map(str::to_string)
                .ok_or_else(|| format!("the core stack has no output {key}"))
        };
        // moto skips AWS::SecretsManager::Secret: create it as core.yaml describes it.
        let secret_id = format!("{}/endpoints", options.prefix);
        let secret = json!({"source": {"url": source.url}, "destination": {"url": destination_proxy.url}, "read": "source"});
        aws_sdk_secretsmanager::Client::new(&config)
            .create_secret()
            .name(&secret_id)
            .secret_string(secret.to_string())
            .send()
            .await
            .map_err(|e| {
                format!(
                    "create the endpoint secret: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                )
            })?;
        let outputs = StackOutputs {
            core_stack,
            stream_name: output("StreamName")?,
            secret_id,
            dead_letter_bucket: output("DeadLetterBucketName")?,
            kinesis_writer: output("KinesisWriterFunctionName")?,
            source_writer: output("SourceWriterFunctionName")?,
            destination_writer: output("DestinationWriterFunctionName")?,
            query_router: output("QueryRouterFunctionName")?,
        };

        progress("starting the functions behind cargo lambda watch");
        let mut base = moto.env();
        base.push(("SECRET_ID".into(), outputs.secret_id.clone()));
        base.push(("SECRET_TTL_SECONDS".into(), options.secret_ttl_secs.to_string()));
        let with = |extra: &[(&str, &str)]| {
            let mut e = base.clone();
            e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            e
        };
        // Timeouts as deployed (infra/deploy.sh): 29 s for the Kinesis writer; the stream
        // writers' is `options.stream_writer_timeout`.
        let gw_timeout = Duration::from_secs(29);
        let writer = LambdaRuntime::start_named_binary(
            &outputs.kinesis_writer,
            "kinesis-writer",
            &with(&[("STREAM_NAME", &outputs.stream_name)]),
            gw_timeout,
        )
        .await;
        // The router runs as deployed: its timeout and environment are read back from the
        // deploy (RESPONSE_TRANSFER_MODE and the timeout follow `--read-transfer-mode`).
        let deployed =
            moto.aws_cli(&["lambda", "get-function-configuration", "--function-name", &outputs.query_router]);
        let router_timeout = Duration::from_secs(deployed["Timeout"].as_u64().unwrap_or(3));
        let mut router_env = base.clone();
        if let Some(vars) = deployed["Environment"]["Variables"].as_object() {
            for (k, v) in vars {
                router_env.retain(|(name, _)| name != k);
                router_env.push((k.clone(), v.as_str().unwrap_or_default().to_string()));
            }
        }
        let router = LambdaRuntime::start_named_binary(
            &outputs.query_router,
            "query-router",
            &router_env,
            router_timeout,
        )
        .await;
        // API Gateway invokes a function once per request, and Lambda runs concurrent
        // invocations in their own execution environments: the gateway's two functions scale
        // with the clients (one instance served one request at a time, and reads waiting behind
        // a slow one failed at their client's timeout). The stream writers stay at one instance
        // (one batch per shard at a time; a test kills "the" instance mid-batch).
        writer.scale_up_to(GATEWAY_FUNCTION_CONCURRENCY);
        router.scale_up_to(GATEWAY_FUNCTION_CONCURRENCY);
        let sw_timeout = options.stream_writer_timeout;
        // On AWS the runtime hands the function its deadline (start + timeout) and the writer
        // stops retrying 3 s before it; cargo lambda watch sends no usable deadline, so the
        // writer is told the same budget. Without it a writer retrying a refused write would
        // run past the invocation's timeout and its answer would be lost.
        let budget = sw_timeout.as_secs().saturating_sub(3).max(1).to_string();
        let writer_env = |target: &str| {
            with(&[
                ("TARGET", target),
                ("DEAD_LETTER_BUCKET", &outputs.dead_letter_bucket),
                ("WRITE_TIMEOUT_SECONDS", "10"),
                ("RETRY_BUDGET_SECONDS", &budget),
            ])
        };
        let source_writer = LambdaRuntime::start_named_binary(
            &outputs.source_writer,
            "stream-writer",
            &writer_env("source"),
            sw_timeout,
        )
        .await;
        let mut destination_env = writer_env("destination");
        destination_env.extend(options.destination_writer_env.iter().cloned());
        let destination_writer = LambdaRuntime::start_named_binary(
            &outputs.destination_writer,
            "stream-writer",
            &destination_env,
            sw_timeout,
        )
        .await;

        progress("starting the local API gateway (the deployed API's routes) and the event source mappings");
        let api_routes = deployed_routes(&moto, &cfn, &options.prefix, &outputs).await?;
        let gateway = LocalGateway::start(writer.invoker(), router.invoker(), api_routes).await;
        let lag_file = work_dir.join("lag.json");
        let lag = LagFile::new(lag_file.clone());
        let lambda = aws_sdk_lambda::Client::new(&config);
        let kinesis = aws_sdk_kinesis::Client::new(&config);
        let source_mapping = LocalMapping::start(
            lambda.clone(),
            kinesis.clone(),
            &outputs.source_writer,
            source_writer.invoker(),
            lag.clone(),
        );
        let destination_mapping = LocalMapping::start(
            lambda,
            kinesis,
            &outputs.destination_writer,
            destination_writer.invoker(),
            lag,
        );

        Ok(LocalStack {
            source,
            destination,
            destination_proxy,
            moto,
            outputs,
            writer,
            router,
            source_writer,
            destination_writer,
            gateway,
            source_mapping,
            destination_mapping,
            lag_file,
            work_dir,
            destination_token: std::sync::Mutex::new(String::new()),
            secret_ttl: Duration::from_secs(options.secret_ttl_secs),
            _temp: temp,
        })
    }

    /// Every process's log file, named for what ran: the databases, moto, the deploy, the
    /// functions (each instance, and its runtime API).
    pub fn log_files(&self) -> Vec<(String, PathBuf)> {
        let mut files = vec![
            ("source-influxd".to_string(), self.source.log_path().to_path_buf()),
            ("destination-influxd".to_string(), self.destination.log_path().to_path_buf()),
            ("moto".to_string(), self.moto.log_path().to_path_buf()),
            ("deploy".to_string(), self.work_dir.join("deploy.log")),
        ];
        for (role, runtime) in [
            ("kinesis-writer", &self.writer),
            ("query-router", &self.router),
            ("source-writer", &self.source_writer),
            ("destination-writer", &self.destination_writer),
        ] {
            for path in runtime.log_paths() {
                let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
                files.push((format!("{role}/{file}"), path));
            }
        }
        files
    }

    /// The keys of every object in the dead-letter bucket.
    pub async fn dead_letter_keys(&self) -> Result<Vec<String>, String> {
        let s3 = self.moto.s3().await;
        let out = s3
            .list_objects_v2()
            .bucket(&self.outputs.dead_letter_bucket)
            .send()
            .await
            .map_err(|e| format!("list dead letters: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))?;
        Ok(out.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect())
    }

    /// `influx-migration` with the environment an operator of this stack would have: AWS through
    /// moto, the core stack's name, the local lag file, both tokens.
    pub fn cli(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(workspace_binary("influx-migration"));
        for (k, v) in self.moto.env() {
            cmd.env(k, v);
        }
        cmd.env("LIVE_STACK", &self.outputs.core_stack)
            .env("LIVE_LAG_SOURCE", format!("file:{}", self.lag_file.display()))
            .env("INFLUX_SRC_TOKEN", &self.source.token)
            .env("INFLUX_DEST_TOKEN", self.destination_token())
            .stdin(Stdio::null());
        cmd
    }

    /// The destination's token as the CLI should use it now.
    pub fn destination_token(&self) -> String {
        let t = self.destination_token.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if t.is_empty() { self.destination.token.clone() } else { t }
    }

    /// After a full restore the destination holds the source's tokens.
    pub fn set_destination_token(&self, token: &str) {
        *self.destination_token.lock().unwrap_or_else(|p| p.into_inner()) = token.to_string();
    }

    /// Runs a live-migration subcommand with the secret named explicitly (moto's stack output for
    /// the skipped secret resource is not usable); returns (exit code, stdout, stderr).
    pub async fn live(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = self.cli();
        cmd.args(args).args(["--secret-id", &self.outputs.secret_id]);
        let out = cmd.output().await.expect("run influx-migration");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Waits until the moment `cutover` or `rollback` printed as "every query router reads from
    /// the … by <time>" (now plus the routers' secret cache time): from then on every read goes
    /// where the switch sent it. Panics when `printed` holds no such line (the switch did not
    /// happen).
    pub async fn wait_for_routers(printed: &str) {
        let by = printed
            .lines()
            .find_map(|l| {
                l.split_once("every query router reads from the ")?.1.split_once(" by ")?.1.split(' ').next()
            })
            .unwrap_or_else(|| panic!("no \"every query router reads from … by\" in:\n{printed}"));
        let by = time::OffsetDateTime::parse(by, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("the routers' switch time {by:?}: {e}"));
        let left = by - time::OffsetDateTime::now_utc();
        if left.is_positive() {
            tokio::time::sleep(Duration::try_from(left).unwrap_or_default() + Duration::from_millis(50))
                .await;
        }
    }

    /// Creates bucket `name` in `db`'s org with the default DBRP mapping `name/autogen` (what a
    /// v1 client writing `db=name` needs); returns the bucket's ID.
    pub async fn bucket_with_dbrp(&self, db: &Influxd, name: &str) -> String {
        let (_, orgs) = db.api_as(&self.source.token, reqwest::Method::GET, "/api/v2/orgs", None).await;
        let org_id = orgs["orgs"][0]["id"].as_str().unwrap_or_default().to_string();
        let (status, b) = db
            .api_as(
                &self.source.token,
                reqwest::Method::POST,
                "/api/v2/buckets",
                Some(serde_json::json!({"orgID": org_id, "name": name, "retentionRules": []})),
            )
            .await;
        assert_eq!(status, 201, "create bucket {name}: {b}");
        let id = b["id"].as_str().unwrap_or_default().to_string();
        let (status, m) = db
            .api_as(
                &self.source.token,
                reqwest::Method::POST,
                "/api/v2/dbrps",
                Some(serde_json::json!({"orgID": org_id, "bucketID": id, "database": name, "retention_policy": "autogen", "default": true})),
            )
            .await;
        assert_eq!(status, 201, "create DBRP {name}/autogen: {m}");
        id
    }

    /// Replaces the endpoint secret's `mappings` and waits for the functions' cache time to pass.
    pub async fn set_mappings(&self, mappings: serde_json::Value) {
        self.update_secret(|secret| secret["mappings"] = mappings).await;
    }

    /// Changes the endpoint secret with `change` (e.g. the source's URL, to put a fault proxy in
    /// front of it) and waits for the functions' cache time to pass.
    pub async fn update_secret(&self, change: impl FnOnce(&mut serde_json::Value)) {
        let sm = aws_sdk_secretsmanager::Client::new(&self.moto.sdk_config().await);
        let current =
            sm.get_secret_value().secret_id(&self.outputs.secret_id).send().await.expect("get secret");
        let text = current.secret_string().expect("the secret's string");
        let mut secret: serde_json::Value = serde_json::from_str(text).expect("the secret is JSON");
        change(&mut secret);
        sm.put_secret_value()
            .secret_id(&self.outputs.secret_id)
            .secret_string(secret.to_string())
            .send()
            .await
            .expect("put secret");
        tokio::time::sleep(self.secret_ttl + Duration::from_secs(1)).await;
    }

    /// Waits for the destination writer to apply everything in the stream: caught up, then
    /// drained; panics with its logs when it does not within 90 s each.
    pub async fn drain_destination(&self) {
        self.wait_for_catch_up(Duration::from_secs(2), Duration::from_secs(2), Duration::from_secs(90))
            .await
            .unwrap_or_else(|e| panic!("{e}; logs:\n{}", self.destination_writer.logs()));
        LocalStack::wait_idle(&self.destination_mapping, Duration::from_secs(90))
            .await
            .unwrap_or_else(|e| panic!("{e}; logs:\n{}", self.destination_writer.logs()));
    }

    /// Waits until the destination writer has caught up: running (not throttled), and its lag
    /// (IteratorAge) at most `max_lag` in every loop for `hold`. Under client traffic the stream
    /// is never empty, so "caught up" means the writer keeps pace, as IteratorAge tells on AWS.
    pub async fn wait_for_catch_up(
        &self,
        max_lag: Duration,
        hold: Duration,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = std::time::Instant::now() + timeout;
        let mut below_since: Option<std::time::Instant> = None;
        loop {
            let s = self.destination_mapping.state();
            let ok = s.enabled
                && !s.throttled
                && s.batches + s.idle_loops > 0
                && s.iterator_age_ms <= max_lag.as_millis() as u64;
            if ok {
                if below_since.get_or_insert_with(std::time::Instant::now).elapsed() >= hold {
                    return Ok(());
                }
            } else {
                below_since = None;
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "the destination writer did not catch up within {timeout:?}: lag {} ms, throttled {}, {} batches, last error {:?}",
                    s.iterator_age_ms, s.throttled, s.batches, s.last_error
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until a mapping has found every shard empty in its last three loops, all after this
    /// call (a loop whose invocation or read failed is never empty).
    pub async fn wait_idle(mapping: &LocalMapping, timeout: Duration) -> Result<(), String> {
        let deadline = std::time::Instant::now() + timeout;
        let start_loops = mapping.state().idle_loops;
        loop {
            let s = mapping.state();
            if !s.throttled
                && s.enabled
                && s.iterator_age_ms == 0
                && s.pending_records == 0
                && s.consecutive_idle_loops >= 3
                && s.idle_loops >= start_loops + 3
            {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                let MappingState { function, iterator_age_ms, last_error, consecutive_failures, .. } = s;
                return Err(format!(
                    "{function} did not drain within {timeout:?}: IteratorAge {iterator_age_ms} ms, \
                     {consecutive_failures} failed invocation(s) in a row, last error {last_error:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
