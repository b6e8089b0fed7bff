//! Cutover's gate compares every bucket the writers replay (issue 28), on the local stack (real
//! influxd at both ends, moto, the functions under `cargo lambda watch`).
//!
//! Regression: with the secret's mappings `{"test-bucket": "test-bucket", "app/autogen": "app"}`
//! (the documented v1 key), points written with `/write?db=app` reached both ends; deleted at
//! the destination, `verify` and `verify --content` exited 0 and `cutover` moved reads to a
//! destination whose `app` was empty: the comparison paired buckets by source name only, so the
//! v1 key named "no source bucket" and `app` was "not migrated live". And a comparison that
//! compared no bucket at all passed.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use testbed::Influxd;
use testbed::scenario::probe;
use testbed::stack::{LocalStack, StackOptions};

/// A local stack for one case (real influxd at both ends, moto, the functions under `cargo
/// lambda watch`), the destination sharing the source's operator token.
async fn stack(prefix: &str) -> LocalStack {
    LocalStack::start(
        StackOptions {
            prefix: prefix.into(),
            stream_writer_timeout: std::time::Duration::from_secs(5),
            destination_shares_source_token: true,
            ..StackOptions::default()
        },
        |m| eprintln!("stack: {m}"),
    )
    .await
    .unwrap_or_else(|e| panic!("the local stack did not start: {e}"))
}

/// Writes `n` probe points of `phase` through the gateway, stamped ten minutes ago: well inside
/// any comparison window however the writers' lag is estimated (the window's end is the
/// subject of another part of issue 28, the barrier); seq -> v of what was acknowledged.
async fn write_probes(
    stack: &LocalStack,
    path: &str,
    query: &[(&str, &str)],
    phase: &str,
    n: u64,
) -> BTreeMap<String, String> {
    let ten_minutes_ago = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 - 600_000_000_000;
    probe::write_at(stack, path, query, phase, n, 1, ten_minutes_ago).await
}

async fn read_endpoint(stack: &LocalStack) -> String {
    let (code, out, err) = stack.live(&["status", "--json"]).await;
    let doc: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json ({code}): {e}: {out}{err}"));
    doc["read_endpoint"]["read"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_mapped_by_its_v1_key_is_compared_and_its_loss_refuses_cutover() {
    let stack = stack("gate-v1").await;
    let bucket = stack.source.bucket.clone();
    stack.bucket_with_dbrp(&stack.source, "app").await;
    stack.bucket_with_dbrp(&stack.destination, "app").await;
    stack
        .set_mappings(
            json!({"buckets": {bucket.clone(): bucket.clone(), "app/autogen": "app"}, "unmapped": "fail"}),
        )
        .await;
    let (code, out, err) = stack.live(&["unthrottle"]).await;
    assert_eq!(code, 0, "unthrottle: {out}{err}");

    let acked = write_probes(&stack, "/write", &[("db", "app")], "gate-v1", 50).await;
    stack.drain_destination().await;
    let at_source = probe::present(&acked, &probe::read(&stack, &stack.source, "app", "gate-v1").await);
    let at_destination =
        probe::present(&acked, &probe::read(&stack, &stack.destination, "app", "gate-v1").await);
    assert_eq!((at_source, at_destination), (50, 50), "every acknowledged point at both ends first");
    // The two databases agree now: the gate passes on what it compares.
    let (code, out, err) = stack.live(&["verify"]).await;
    assert_eq!(code, 0, "verify before the loss:\n{out}{err}");
    let org = stack.source.org.clone();
    assert!(out.contains(&format!("bucket {org}/app -> {org}/app")), "app is compared:\n{out}");

    // Every point of `app` lost at the destination.
    let (status, body) = stack
        .destination
        .api_as(
            &stack.source.token,
            reqwest::Method::POST,
            &format!("/api/v2/delete?org={}&bucket=app", stack.destination.org),
            Some(json!({"start": "1970-01-01T00:00:00Z", "stop": "2200-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, 204, "delete at the destination: {body}");
    assert_eq!(probe::read(&stack, &stack.destination, "app", "gate-v1").await.len(), 0);

    let (code, out, err) = stack.live(&["verify"]).await;
    assert_eq!(code, 3, "verify finds app's loss:\n{out}{err}");
    assert!(out.contains(&format!("DIFFERS  bucket {org}/app -> {org}/app")), "{out}");
    let (code, out, err) = stack.live(&["verify", "--content"]).await;
    assert_eq!(code, 3, "verify --content finds app's loss:\n{out}{err}");
    let (code, out, err) = stack.live(&["cutover"]).await;
    assert_eq!(code, 4, "cutover refuses:\n{out}{err}");
    assert!(out.contains("REFUSED") && out.contains("verify"), "{out}");
    assert_eq!(read_endpoint(&stack).await, "source", "reads stay on the source");

    // A comparison that compares nothing proves nothing: --bucket naming only a bucket the
    // mappings leave at the source.
    stack.set_mappings(json!({"buckets": {"app/autogen": "app"}, "unmapped": "source-only"})).await;
    let (code, out, err) = stack.live(&["verify", "--bucket", &bucket]).await;
    assert_eq!(code, 3, "verify that compared nothing fails:\n{out}{err}");
    assert!(out.contains("no bucket was compared"), "{out}");
    assert!(out.contains(&format!("source-only {org}/{bucket}")), "the bucket left out is named:\n{out}");

    // A mapping key that names nothing at the source is the operator's mistake, said plainly.
    stack
        .set_mappings(
            json!({"buckets": {"app/autogen": "app", "gone/autogen": "gone"}, "unmapped": "source-only"}),
        )
        .await;
    let (code, out, err) = stack.live(&["verify"]).await;
    assert_eq!(code, 1, "verify with a key naming nothing:\n{out}{err}");
    assert!(err.contains("mapping key \"gone/autogen\" names no source bucket"), "{err}");
    assert!(!err.contains("Pairing(") && !err.contains("KeyMatchesNothing"), "no debug dump: {err}");
}

/// A task `name` at `server` that writes `probe_1s` (the last `probe` value per second) into the
/// bucket the clients write, with `status`; labelled held when `held`, as a `--full` seeding
/// leaves the destination's copy.
async fn make_rollup_into_clients_bucket(server: &Influxd, status: &str, held: bool) {
    let flux = format!(
        "option task = {{name: \"probe rollup\", every: 2s}}\n\
         from(bucket: \"{b}\") |> range(start: -task.every) |> filter(fn: (r) => r._measurement == \"probe\")\n  \
         |> aggregateWindow(every: 1s, fn: last)\n  |> set(key: \"_measurement\", value: \"probe_1s\")\n  \
         |> to(bucket: \"{b}\", org: \"{o}\")\n",
        b = server.bucket,
        o = server.org
    );
    let (code, task) = server
        .api(
            reqwest::Method::POST,
            "/api/v2/tasks",
            Some(json!({"orgID": server.org_id, "flux": flux, "status": status})),
        )
        .await;
    assert_eq!(code, 201, "{task}");
    if held {
        server.label_task_held(task["id"].as_str().unwrap()).await;
    }
}

/// Regression: a bucket named in a task's `to()` was left out of the comparison whole (in every
/// org), so with the clients' bucket also written by a downsampling task `verify` compared
/// "0 bucket(s)" and passed, and `cutover` moved reads to a destination missing client points.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_a_task_also_writes_is_compared_for_the_measurements_clients_write() {
    let stack = stack("gate-task").await;
    let (code, out, err) = stack.live(&["unthrottle"]).await;
    assert_eq!(code, 0, "unthrottle: {out}{err}");
    // The source runs the task; the destination holds its copy, as after `--full`.
    make_rollup_into_clients_bucket(&stack.source, "active", false).await;
    make_rollup_into_clients_bucket(&stack.destination, "inactive", true).await;

    let query = [("org", stack.source.org.clone()), ("bucket", stack.source.bucket.clone())];
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let acked = write_probes(&stack, "/api/v2/write", &query, "gate-task", 50).await;
    stack.drain_destination().await;
    let bucket = stack.source.bucket.clone();
    let at_destination =
        probe::present(&acked, &probe::read(&stack, &stack.destination, &bucket, "gate-task").await);
    assert_eq!(at_destination, 50, "every acknowledged point at the destination first");
    let (code, out, err) = stack.live(&["verify"]).await;
    assert_eq!(code, 0, "verify before the loss:\n{out}{err}");
    assert!(out.contains("measurement(s) probe_1s are written by the source's tasks"), "{out}");
    let org = stack.source.org.clone();
    assert!(
        out.contains(&format!("bucket {org}/{bucket} -> {org}/{bucket}")),
        "the bucket is compared:\n{out}"
    );

    // The clients' points lost at the destination.
    let (status, body) = stack
        .destination
        .api_as(
            &stack.source.token,
            reqwest::Method::POST,
            &format!("/api/v2/delete?org={}&bucket={bucket}", stack.destination.org),
            Some(json!({"start": "1970-01-01T00:00:00Z", "stop": "2200-01-01T00:00:00Z", "predicate": "_measurement=\"probe\""})),
        )
        .await;
    assert_eq!(status, 204, "delete at the destination: {body}");
    let (code, out, err) = stack.live(&["verify"]).await;
    assert_eq!(code, 3, "verify finds the clients' loss:\n{out}{err}");
    assert!(out.contains(&format!("DIFFERS  bucket {org}/{bucket} -> {org}/{bucket}")), "{out}");
    let (code, out, err) = stack.live(&["cutover"]).await;
    assert_eq!(code, 4, "cutover refuses:\n{out}{err}");
    assert_eq!(read_endpoint(&stack).await, "source", "reads stay on the source");
}

/// The destination's stall records and park rules, from `status --json`.
async fn stalls_and_rules(stack: &LocalStack) -> (Vec<Value>, Vec<Value>) {
    let (_, out, _) = stack.live(&["status", "--json"]).await;
    let doc: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    (list(&doc["stalls"]["shards"]), list(&doc["stalls"]["park_rules"]))
}

/// Regression: `cutover` never looked at stall records or park rules, so with the destination
/// writer stopped at a record (a bucket outside the mappings with `"unmapped": "fail"`) and its
/// lag still under the threshold, it moved reads; likewise with a park rule setting records aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutover_refuses_while_a_destination_shard_is_stalled_or_parked_and_names_it() {
    let stack = stack("gate-stall").await;
    let bucket = stack.source.bucket.clone();
    stack.bucket_with_dbrp(&stack.source, "other").await;
    stack.set_mappings(json!({"buckets": {bucket.clone(): bucket.clone()}, "unmapped": "fail"})).await;
    let (code, out, err) = stack.live(&["unthrottle"]).await;
    assert_eq!(code, 0, "unthrottle: {out}{err}");
    let query = [("org", stack.source.org.as_str()), ("bucket", "other")];
    write_probes(&stack, "/api/v2/write", &query, "gate-stall", 5).await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let stall = loop {
        if let Some(s) = stalls_and_rules(&stack).await.0.first().cloned() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the destination writer did not stall within 180 s");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let shard = stall["stall"]["shard_id"].as_str().unwrap_or_default().to_string();
    assert!(!shard.is_empty(), "{stall}");

    let (code, out, err) = stack.live(&["cutover"]).await;
    assert_eq!(code, 4, "cutover refuses while a shard is stalled:\n{out}{err}");
    let line = out.lines().find(|l| l.contains("REFUSED") && l.contains("pending")).unwrap_or_default();
    assert!(line.contains(&shard) && line.contains("stalled"), "the stall is named with its shard:\n{out}");
    assert_eq!(read_endpoint(&stack).await, "source", "reads stay on the source");

    // Parked: the record goes to dead-letter storage and the shard moves on, but while the rule
    // is active records are set aside, so cutover still refuses, naming the rule.
    let (code, out, err) = stack.live(&["park", "--note", "gate test"]).await;
    assert_eq!(code, 0, "park: {out}{err}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    while !stalls_and_rules(&stack).await.0.is_empty() {
        assert!(std::time::Instant::now() < deadline, "the parked shard did not move on within 180 s");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let (code, out, err) = stack.live(&["cutover"]).await;
    assert_eq!(code, 4, "cutover refuses while a park rule is active:\n{out}{err}");
    let line = out.lines().find(|l| l.contains("REFUSED") && l.contains("park rule")).unwrap_or_default();
    assert!(line.contains(&shard), "the rule is named with its shard:\n{out}");
    let (code, out, err) = stack.live(&["cutover", "--force", "--dry-run"]).await;
    assert!(
        out.contains("FORCED") && out.contains("park rule"),
        "--force reports it as FORCED ({code}):\n{out}{err}"
    );
    assert_eq!(read_endpoint(&stack).await, "source", "reads stay on the source");

    // Released, the records the rule set aside are still missing at the destination: dead
    // letters of records the source holds. Cutover refuses, naming them, until redrive lands them.
    let (code, out, err) = stack.live(&["park", "--release", "--shard", &shard]).await;
    assert_eq!(code, 0, "park --release: {out}{err}");
    let (code, out, err) = stack.live(&["cutover"]).await;
    assert_eq!(code, 4, "cutover refuses while a dead letter is unresolved:\n{out}{err}");
    let line = out
        .lines()
        .find(|l| l.contains("REFUSED") && l.contains("no unresolved dead letter"))
        .unwrap_or_default();
    assert!(line.contains(&format!("dead-letters/destination/{shard}/")), "the dead letter is named:\n{out}");
    assert!(line.contains("parked by the operator (gate test)"), "with its reason:\n{out}");
    stack.bucket_with_dbrp(&stack.destination, "other").await;
    // The bucket is still outside the mappings ("unmapped": "fail"): redrive does what the
    // destination writer would do with the record now, and refuses, in words.
    let (code, out, err) = stack.live(&["redrive", "--target", "destination"]).await;
    assert_eq!(code, 1, "redrive of a still unmapped bucket: {out}{err}");
    assert!(out.contains("\"other\" is still not in the endpoint secret's mappings.buckets"), "{out}");
    stack
        .set_mappings(
            json!({"buckets": {bucket.clone(): bucket.clone(), "other": "other"}, "unmapped": "fail"}),
        )
        .await;
    let (code, out, err) = stack.live(&["redrive", "--target", "destination"]).await;
    assert_eq!(code, 0, "redrive: {out}{err}");
    let (code, out, err) = stack.live(&["cutover", "--dry-run"]).await;
    assert_eq!(code, 0, "redriven, nothing is pending:\n{out}{err}");
    assert!(out.contains("ok       no unresolved dead letter"), "{out}");

    // A record both databases refuse (not a stream record at all) is data neither holds: noted,
    // not a difference between them.
    let kinesis = aws_sdk_kinesis::Client::new(&stack.moto.sdk_config().await);
    kinesis
        .put_record()
        .stream_name(&stack.outputs.stream_name)
        .partition_key("not-a-record")
        .data(aws_sdk_kinesis::primitives::Blob::new(b"not a stream record".to_vec()))
        .send()
        .await
        .expect("put a record that is no stream record");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let keys = stack.dead_letter_keys().await.expect("list the dead-letter bucket");
        let both = ["dead-letters/source/", "dead-letters/destination/"]
            .iter()
            .all(|p| keys.iter().any(|k| k.starts_with(p)));
        if both {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "both writers did not dead-letter it within 180 s: {keys:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let (code, out, err) = stack.live(&["cutover", "--dry-run"]).await;
    assert_eq!(code, 0, "a record both refused does not refuse cutover:\n{out}{err}");
    assert!(out.contains("1 dead letter(s) were refused by both databases"), "{out}");
}

/// Regression: the comparison window ended at the writers' lag reading less their IteratorAge
/// less a 5 s margin, so what clients got acknowledged in the last seconds (in the README's demo,
/// the last 100–120 s) was never compared before reads moved. The window now ends where the
/// barrier was put: a point acknowledged a second before cutover starts is compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_acknowledged_a_second_before_cutover_is_compared() {
    let stack = stack("gate-recent").await;
    let (code, out, err) = stack.live(&["unthrottle"]).await;
    assert_eq!(code, 0, "unthrottle: {out}{err}");
    let org = stack.source.org.clone();
    let bucket = stack.source.bucket.clone();
    let stamped = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let acked = probe::write_at(
        &stack,
        "/api/v2/write",
        &[("org", org.as_str()), ("bucket", bucket.as_str())],
        "recent",
        20,
        1,
        stamped,
    )
    .await;
    assert_eq!(acked.len(), 20);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;

    let (code, out, err) = stack.live(&["cutover", "--dry-run", "--json"]).await;
    assert_eq!(code, 0, "cutover --dry-run:\n{out}{err}");
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("cutover --json: {e}: {out}{err}"));
    let compared = doc["verify"]["buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["source"] == format!("{org}/{bucket}").as_str())
        .flat_map(|b| b["measurements"].as_array().cloned().unwrap_or_default())
        .find(|m| m["measurement"] == "probe")
        .unwrap_or_else(|| panic!("the probe points were not compared: {}", doc["verify"]));
    // Two fields (seq, v) per point, at both ends.
    assert_eq!(
        (compared["source"].as_u64(), compared["destination"].as_u64()),
        (Some(40), Some(40)),
        "{compared}"
    );
    let barrier = doc["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "barrier"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(barrier["verdict"], "ok", "the barrier is the proof: {barrier}");
    let until = time::OffsetDateTime::parse(
        doc["barrier"]["until"].as_str().unwrap_or_default(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap_or_else(|e| panic!("the barrier's time: {e}: {}", doc["barrier"]));
    assert!(until.unix_timestamp_nanos() as i64 > stamped + 19, "the window ends after the points: {until}");
    assert_eq!(read_endpoint(&stack).await, "source", "a dry run moves nothing");
}

/// Regression: `verify` and `cutover` compared value counts unless `--content` was given, so a
/// value changed at the destination (same count) passed, and cutover moved reads to it. Content
/// is now compared by default from when the live path started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_changed_at_the_destination_refuses_cutover_by_default() {
    let stack = stack("gate-content").await;
    let (code, out, err) = stack.live(&["unthrottle"]).await;
    assert_eq!(code, 0, "unthrottle: {out}{err}");
    let org = stack.source.org.clone();
    let bucket = stack.source.bucket.clone();
    let stamped = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let query = [("org", org.as_str()), ("bucket", bucket.as_str())];
    let acked = probe::write_at(&stack, "/api/v2/write", &query, "content", 10, 1, stamped).await;
    stack.drain_destination().await;
    let at_destination = probe::read(&stack, &stack.destination, &bucket, "content").await;
    assert_eq!(at_destination, acked, "every point at the destination first, value by value");

    // One value changed at the destination: the same number of values at both ends.
    stack
        .destination
        .write_ok(&bucket, "ns", format!("probe,phase=content seq=0i,v=999.5 {stamped}\n"))
        .await;
    let (code, out, err) = stack.live(&["verify", "--barrier"]).await;
    assert_eq!(code, 3, "verify finds the changed value by default:\n{out}{err}");
    assert!(out.contains("compared: every value from"), "it says what it compared:\n{out}");
    let (code, out, err) = stack.live(&["cutover"]).await;
    assert_eq!(code, 4, "cutover refuses:\n{out}{err}");
    assert!(out.contains("REFUSED  verify"), "{out}");
    assert_eq!(read_endpoint(&stack).await, "source", "reads stay on the source");

    // Counts alone pass, and say what that gives up.
    let (code, out, err) = stack.live(&["verify", "--barrier", "--counts-only"]).await;
    assert_eq!(code, 0, "verify --counts-only:\n{out}{err}");
    assert!(out.contains("would pass"), "{out}");
}
