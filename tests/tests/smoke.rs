//! Smoke tests of the test bed: each real part the product is tested against works on this
//! machine. If one of these fails, every other integration test would fail for the same reason.

use std::collections::BTreeMap;
use std::process::Command;

use aws_sdk_kinesis::primitives::Blob;
use testbed::{Influxd, LambdaRuntime, Moto, TestBed};

const POINTS: usize = 10_000;

/// The string field of point `i`: spaces, double quotes, backslashes and a newline.
fn string_value(i: usize) -> String {
    format!("line one {i} \"quoted\" back\\slash\nline two, a=b")
}

fn escape_string_field(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxd_stores_and_returns_ten_thousand_points_of_every_field_type() {
    let db = Influxd::start().await;
    let base: i64 = 1_700_000_000_000_000_000;
    let mut body = String::new();
    for i in 0..POINTS {
        let float = (i as f64) * 1.25 - 3.0e3 + 0.1;
        let int = (i as i64) * 1_000_003 - 5_000_000_000;
        let uint = u64::MAX - i as u64;
        let boolean = i % 3 == 0;
        body.push_str(&format!(
            "smoke,host=h{},region=eu\\ west f={float:?},i={int}i,u={uint}u,s=\"{}\",b={boolean} {}\n",
            i % 7,
            escape_string_field(&string_value(i)),
            base + i as i64
        ));
    }
    db.write_ok(&db.bucket, "ns", body).await;

    let rows = db
        .query(&format!(
            "from(bucket: \"{}\") |> range(start: 2023-01-01T00:00:00Z, stop: 2024-01-01T00:00:00Z) \
             |> filter(fn: (r) => r._measurement == \"smoke\")",
            db.bucket
        ))
        .await;
    assert_eq!(rows.len(), POINTS * 5, "five field values per point");

    // Index what came back by (time, field) and compare every value with what was written.
    let mut got: BTreeMap<(i64, String), (String, String, String)> = BTreeMap::new();
    for r in &rows {
        let time = time::OffsetDateTime::parse(
            r.get("_time").unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
        .unix_timestamp_nanos() as i64;
        let key = (time, r.get("_field").unwrap().to_string());
        let typ = r.datatypes.get("_value").cloned().unwrap_or_default();
        got.insert(key, (typ, r.get("_value").unwrap().to_string(), r.get("region").unwrap().to_string()));
    }
    assert_eq!(got.len(), POINTS * 5, "no duplicate (time, field) pairs");
    let mut checked = 0;
    for ((time, field), (typ, value, region)) in &got {
        let point = (time - base) as usize;
        assert_eq!(region, "eu west", "escaped space in a tag value");
        match field.as_str() {
            "f" => {
                assert_eq!(typ, "double");
                assert_eq!(value.parse::<f64>().unwrap(), (point as f64) * 1.25 - 3.0e3 + 0.1);
            }
            "i" => {
                assert_eq!(typ, "long");
                assert_eq!(value.parse::<i64>().unwrap(), (point as i64) * 1_000_003 - 5_000_000_000);
            }
            "u" => {
                assert_eq!(typ, "unsignedLong");
                assert_eq!(value.parse::<u64>().unwrap(), u64::MAX - point as u64);
            }
            "s" => {
                assert_eq!(typ, "string");
                assert_eq!(value, &string_value(point));
            }
            "b" => {
                assert_eq!(typ, "boolean");
                assert_eq!(value == "true", point.is_multiple_of(3));
            }
            other => panic!("unexpected field {other}"),
        }
        checked += 1;
    }
    assert_eq!(checked, POINTS * 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influx_cli_pings_and_lists_buckets() {
    let db = Influxd::start().await;
    let bed = TestBed::get();
    let configs = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(bed.influx())
            .args(args)
            .env("INFLUX_CONFIGS_PATH", configs.path().join("configs"))
            .output()
            .expect("run the influx CLI");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let (ok, text) = run(&["ping", "--host", &db.url]);
    assert!(ok, "influx ping failed: {text}");
    assert!(text.contains("OK"), "influx ping said: {text}");

    db.create_bucket("second-bucket").await;
    let (ok, text) = run(&["bucket", "list", "--host", &db.url, "--token", &db.token, "--org", &db.org]);
    assert!(ok, "influx bucket list failed: {text}");
    for name in [db.bucket.as_str(), "second-bucket", "_monitoring", "_tasks"] {
        assert!(text.contains(name), "bucket {name} missing from `influx bucket list`:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_and_secrets_manager_work_through_the_rust_sdk_against_moto() {
    let moto = Moto::start().await;
    let config = moto.sdk_config().await;

    let kinesis = aws_sdk_kinesis::Client::new(&config);
    kinesis.create_stream().stream_name("smoke").shard_count(1).send().await.expect("create_stream");
    let payloads: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1000 + i as usize]).collect();
    for p in &payloads {
        kinesis
            .put_record()
            .stream_name("smoke")
            .partition_key("k")
            .data(Blob::new(p.clone()))
            .send()
            .await
            .expect("put_record");
    }
    let shards = kinesis.list_shards().stream_name("smoke").send().await.expect("list_shards");
    let shard_id = shards.shards().first().expect("one shard").shard_id().to_string();
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name("smoke")
        .shard_id(&shard_id)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("get_shard_iterator")
        .shard_iterator
        .expect("an iterator");
    let records = kinesis.get_records().shard_iterator(iterator).send().await.expect("get_records");
    let got: Vec<Vec<u8>> = records.records().iter().map(|r| r.data().as_ref().to_vec()).collect();
    assert_eq!(got, payloads, "records come back whole and in order");

    let sm = aws_sdk_secretsmanager::Client::new(&config);
    sm.create_secret().name("smoke-secret").secret_string("{\"v\":1}").send().await.expect("create_secret");
    let v1 = sm.get_secret_value().secret_id("smoke-secret").send().await.expect("get v1");
    assert_eq!(v1.secret_string(), Some("{\"v\":1}"));
    sm.put_secret_value().secret_id("smoke-secret").secret_string("{\"v\":2}").send().await.expect("put v2");
    let v2 = sm.get_secret_value().secret_id("smoke-secret").send().await.expect("get v2");
    assert_eq!(v2.secret_string(), Some("{\"v\":2}"), "AWSCURRENT moved to the new version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_binary_answers_an_invoke_through_cargo_lambda_watch() {
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_echo-lambda"));
    let runtime = LambdaRuntime::start_binary("echo-lambda", binary, &[]).await;
    let event = serde_json::json!({"hello": "lambda", "n": 42});
    let out = runtime.invoke(&event).await;
    assert_eq!(out.status, 200, "{}", runtime.logs());
    assert_eq!(out.payload["echo"], event);
    assert_eq!(out.payload["function_name"], "echo-lambda");
    assert!(!out.payload["request_id"].as_str().unwrap_or_default().is_empty());
    // Lambda sends the invocation's deadline as ms since the epoch; cargo lambda 1.9.2 sends
    // 600000 instead (a duration). The functions treat a deadline that is not in the future as
    // unknown and fall back to their own budget; this pins the emulator's behaviour they rely on.
    assert!(out.payload["deadline_ms"].as_u64().unwrap_or(0) > 0, "a deadline is sent: {}", out.payload);
}

/// Lambda gives each concurrent invocation its own execution environment. The local stack ran
/// one instance per function, so the API gateway's functions served one client request at a
/// time: in a `--faults` demo the router answered reads one after another (each 20 to 40 s on a
/// loaded 2-core machine) and reads waiting behind another failed at their client's timeout.
/// Invocations that find every instance busy now bring up another, up to the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_invocations_each_get_their_own_instance_up_to_the_limit() {
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_echo-lambda"));
    let runtime = LambdaRuntime::start_binary("echo-lambda", binary, &[]).await;
    runtime.scale_up_to(3);
    let invoker = runtime.invoker();
    let held = serde_json::json!({"hold_ms": 1500});
    let answers = futures::future::join_all((0..3).map(|_| {
        let invoker = invoker.clone();
        let held = held.clone();
        async move { invoker.invoke(&held).await }
    }))
    .await;
    let pids: std::collections::BTreeSet<u64> = answers
        .iter()
        .map(|a| {
            let a = a.as_ref().unwrap_or_else(|e| panic!("invoke: {e}; logs:\n{}", runtime.logs()));
            assert_eq!(a.status, 200, "{}", runtime.logs());
            a.payload["pid"].as_u64().expect("a pid")
        })
        .collect();
    assert_eq!(pids.len(), 3, "three invocations held at once, answered by {pids:?}: one instance each");
    assert_eq!(runtime.instance_count(), 3);
    // The limit holds: a fourth at once waits for a free instance instead.
    let answers = futures::future::join_all((0..4).map(|_| {
        let invoker = invoker.clone();
        let held = held.clone();
        async move { invoker.invoke(&held).await }
    }))
    .await;
    assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|a| a.status == 200)), "{}", runtime.logs());
    assert_eq!(runtime.instance_count(), 3, "never more than the limit");
}
