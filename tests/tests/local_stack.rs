//! The local stack behaves as AWS does when a function idles, crashes or keeps failing, and never
//! reports progress it did not see. Each test is named after what broke on main:
//!
//! - the destination writer idle (throttled) longer than its function timeout died: `cargo lambda
//!   watch --timeout` answered its `/next` poll empty and `lambda_runtime` panicked; then every
//!   invocation failed, and the local event source mapping called the shard idle, lag 0;
//! - an instance killed mid-batch was never replaced (the scenario started a new one by hand);
//! - a destination writer that keeps crashing showed lag 0, and `cutover` passed;
//! - moto gave two concurrent puts into one shard the same sequence number and kept only the
//!   later record, though it acknowledged both.
//!
//! Short function timeouts (3 s) keep these tests to seconds; what they show does not depend on
//! the length. The destination is onboarded with the source's token, as a full seeding leaves it,
//! so the records replay without a seeding first.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use testbed::scenario::probe;
use testbed::stack::{LocalStack, StackOptions};

const TIMEOUT: Duration = Duration::from_secs(3);

async fn stack(prefix: &str, destination_writer_env: &[(&str, &str)]) -> LocalStack {
    LocalStack::start(
        StackOptions {
            prefix: prefix.into(),
            stream_writer_timeout: TIMEOUT,
            destination_shares_source_token: true,
            destination_writer_env: destination_writer_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..StackOptions::default()
        },
        |m| eprintln!("stack: {m}"),
    )
    .await
    .unwrap_or_else(|e| panic!("the local stack did not start: {e}"))
}

/// Compares value by value; the message names what differs.
fn assert_same(what: &str, acked: &BTreeMap<String, String>, got: &BTreeMap<String, String>, logs: &str) {
    let missing: Vec<&String> = acked.keys().filter(|k| !got.contains_key(*k)).collect();
    let wrong: Vec<&String> =
        acked.iter().filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v)).map(|(k, _)| k).collect();
    assert!(
        missing.is_empty() && wrong.is_empty(),
        "{what}: {} of {} acknowledged points missing, {} with other values (first missing: {:?}); logs:\n{logs}",
        missing.len(),
        acked.len(),
        wrong.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
}

/// The dead letters (not the writers' stall records, which share the bucket).
async fn dead_letters(stack: &LocalStack) -> Vec<String> {
    let keys = stack.dead_letter_keys().await.expect("list the dead-letter bucket");
    keys.into_iter().filter(|k| k.starts_with("dead-letters/")).collect()
}

/// The destination writer's stall records.
async fn stall_records(stack: &LocalStack) -> Vec<String> {
    let keys = stack.dead_letter_keys().await.expect("list the dead-letter bucket");
    keys.into_iter().filter(|k| k.starts_with("stalls/destination/")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_writer_idle_past_its_timeout_then_killed_mid_batch_loses_nothing() {
    let stack = stack("idle-live", &[]).await;

    // The demo's sequence: the destination writer stays throttled (as deployed) while clients
    // write, for three times its function timeout, then is unthrottled.
    let before = probe::write_v2(&stack, "while-throttled", 200, 1).await;
    tokio::time::sleep(TIMEOUT * 3).await;
    let (code, out, err) = stack.live(&["unthrottle"]).await;
    assert_eq!(code, 0, "unthrottle: {out}{err}");
    stack.drain_destination().await;
    let logs = stack.destination_writer.logs();
    assert_same(
        "idle past the timeout",
        &before,
        &probe::read(&stack, &stack.destination, &stack.source.bucket, "while-throttled").await,
        &logs,
    );
    assert!(!logs.contains("panicked"), "an idle function never dies of idleness; its log:\n{logs}");

    // An instance killed while a write of its batch is held at the destination: replaced, the
    // batch retried, nothing lost.
    let proxy = &stack.destination_proxy;
    let stalled_before = proxy.stats().stalled;
    let errors_before = stack.destination_mapping.state().function_errors;
    proxy.stall_next(1, TIMEOUT * 3);
    let mid_batch = probe::write_v2(&stack, "killed-mid-batch", 300, 1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.stats().stalled == stalled_before {
        assert!(Instant::now() < deadline, "the destination writer sent no write within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stack.destination_writer.kill_instance(0);
    stack.drain_destination().await;
    let logs = stack.destination_writer.logs();
    assert_same(
        "killed mid-batch",
        &mid_batch,
        &probe::read(&stack, &stack.destination, &stack.source.bucket, "killed-mid-batch").await,
        &logs,
    );
    let replaced = stack.destination_writer.replacements();
    assert_eq!(replaced.len(), 1, "the killed instance was replaced once: {replaced:?}");
    assert!(replaced[0].contains("signal: 9"), "{replaced:?}");
    assert!(
        stack.destination_mapping.state().function_errors > errors_before,
        "the invocation in flight failed and its batch was retried"
    );
    // The source got everything too.
    for (phase, acked) in [("while-throttled", &before), ("killed-mid-batch", &mid_batch)] {
        assert_same(
            phase,
            acked,
            &probe::read(&stack, &stack.source, &stack.source.bucket, phase).await,
            &stack.source_writer.logs(),
        );
    }
}

/// The destination writer's lag entry in the lag file.
fn lag_entry(stack: &LocalStack, function: &str) -> Option<(u64, Option<u64>)> {
    let text = std::fs::read_to_string(&stack.lag_file).ok()?;
    let doc: Value = serde_json::from_str(&text).ok()?;
    let f = &doc["functions"][function];
    Some((f["iterator_age_ms"].as_u64()?, f["pending_records"].as_u64()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_writer_that_keeps_crashing_shows_growing_lag_and_cutover_refuses() {
    // A setting it cannot start with: every instance exits at start, every invocation fails.
    let stack = stack("crash-live", &[("TARGET", "both")]).await;
    let function = stack.outputs.destination_writer.clone();
    let acked = probe::write_v2(&stack, "crash-loop", 100, 1).await;
    let (code, out, err) = stack.live(&["unthrottle"]).await;
    assert_eq!(code, 0, "unthrottle: {out}{err}");

    // The lag grows from the oldest waiting record, and nothing says the shard is empty.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        if let Some((age, pending)) = lag_entry(&stack, &function) {
            assert_ne!(pending, Some(0), "records wait: never 0 pending (ages so far {seen:?})");
            seen.push(age);
            if age >= 3 * TIMEOUT.as_millis() as u64 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the lag never grew past 9 s: {seen:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let state = stack.destination_mapping.state();
    assert_eq!(state.consecutive_idle_loops, 0, "{state:?}");
    assert!(state.function_errors > 0 && state.last_error.is_some(), "{state:?}");
    assert!(
        stack.destination_writer.replacements().len() >= 2,
        "each crashed instance was replaced: {:?}",
        stack.destination_writer.replacements()
    );
    // The harness's own waits do not pass either.
    let caught_up =
        stack.wait_for_catch_up(Duration::from_secs(2), Duration::from_secs(1), Duration::from_secs(5)).await;
    assert!(caught_up.is_err(), "a crashing writer is not caught up");
    assert!(LocalStack::wait_idle(&stack.destination_mapping, Duration::from_secs(5)).await.is_err());

    // `status` shows the lag; `cutover` refuses on it and changes nothing.
    let (code, out, err) = stack.live(&["status", "--json"]).await;
    let doc: Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json ({code}): {e}\n{out}\n{err}"));
    let age = doc["destination_writer"]["lag"]["iterator_age_ms"].as_u64();
    assert!(age.is_some_and(|a| a >= 3 * TIMEOUT.as_millis() as u64), "status shows the growing lag: {out}");
    let (code, out, err) = stack.live(&["cutover", "--barrier-timeout", "10"]).await;
    assert_eq!(code, 4, "cutover refuses while the destination writer is failing:\n{out}\n{err}");
    assert!(out.contains("REFUSED  barrier: not every writer passed barrier"), "{out}");
    assert!(out.contains("the destination writer in shardId-"), "{out}");
    let (_, status_out, _) = stack.live(&["status", "--json"]).await;
    let doc: Value = serde_json::from_str(&status_out).expect("status --json");
    assert_eq!(
        doc["read_endpoint"]["read"].as_str(),
        Some("source"),
        "reads stay on the source: {status_out}"
    );

    // Nothing was lost: the points wait in the stream, and the source has them.
    assert_same(
        "at the source",
        &acked,
        &probe::read(&stack, &stack.source, &stack.source.bucket, "crash-loop").await,
        &stack.source_writer.logs(),
    );
    assert!(probe::read(&stack, &stack.destination, &stack.source.bucket, "crash-loop").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_proxy_answering_400_in_plain_text_stalls_and_dead_letters_nothing() {
    // Regression: any 400 was "bad data", so a proxy (or an http:// URL in front of a TLS port)
    // answering 400 moved every record into dead-letter storage and the catch-up looked done.
    let stack = stack("proxy400-live", &[]).await;
    let function = stack.outputs.destination_writer.clone();
    let (code, out, err) = stack.live(&["unthrottle"]).await;
    assert_eq!(code, 0, "unthrottle: {out}{err}");
    stack.destination_proxy.answer_plain(400, "<html><body><h1>400 Bad Request</h1></body></html>");
    let acked = probe::write_v2(&stack, "behind-a-400-proxy", 100, 1).await;

    // The writer stalls visibly: its lag grows and its log says what to check.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if lag_entry(&stack, &function).is_some_and(|(age, _)| age >= 2 * TIMEOUT.as_millis() as u64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the writer never stalled: lag {:?}, dead letters {:?}",
            lag_entry(&stack, &function),
            stack.dead_letter_keys().await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = stack.destination_writer.function_log();
    assert!(log.contains("without an InfluxDB error body for a write"), "the hint is logged:\n{log}");
    assert_eq!(dead_letters(&stack).await, Vec::<String>::new(), "nothing dead-lettered");
    let stalls = stall_records(&stack).await;
    assert_eq!(stalls.len(), 1, "the stall is recorded for status: {stalls:?}");

    // Fixed (the proxy answers as it should): the writer resumes and nothing was lost.
    stack.destination_proxy.heal();
    stack.drain_destination().await;
    assert_same(
        "behind a 400 proxy",
        &acked,
        &probe::read(&stack, &stack.destination, &stack.source.bucket, "behind-a-400-proxy").await,
        &stack.destination_writer.logs(),
    );
    assert_eq!(dead_letters(&stack).await, Vec::<String>::new(), "nothing dead-lettered");
    assert_eq!(stall_records(&stack).await, Vec::<String>::new(), "a shard that moved on is not stalled");
    let bucket = &stack.source.bucket;
    let phase = "behind-a-400-proxy";
    let row = probe::MatrixRow {
        case: "plain-text 400 proxy before the destination, healed".into(),
        acknowledged: acked.len(),
        at_source: probe::present(&acked, &probe::read(&stack, &stack.source, bucket, phase).await),
        at_destination: probe::present(&acked, &probe::read(&stack, &stack.destination, bucket, phase).await),
        dead_lettered: 0,
        parked: 0,
        redriven: 0,
    };
    probe::print_matrix(std::slice::from_ref(&row));
    assert_eq!((row.at_source, row.at_destination), (row.acknowledged, row.acknowledged), "nothing lost");

    // The gateway is the deployed API: a listing clients make before they query answers, and a
    // route the API lacks gets API Gateway's answer and reaches no function.
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("{}{path}", stack.gateway.url))
            .query(&[("org", stack.source.org.as_str())])
            .header("Authorization", format!("Token {}", stack.source.token))
            .send()
    };
    let buckets = get("/api/v2/buckets").await.expect("GET /api/v2/buckets");
    assert_eq!(buckets.status().as_u16(), 200);
    let listed: Value = buckets.json().await.expect("the buckets as JSON");
    let names: Vec<&str> =
        listed["buckets"].as_array().into_iter().flatten().filter_map(|b| b["name"].as_str()).collect();
    assert!(names.contains(&stack.source.bucket.as_str()), "{names:?}");
    let tasks = get("/api/v2/tasks").await.expect("GET /api/v2/tasks");
    assert_eq!(tasks.status().as_u16(), 403);
    assert_eq!(tasks.text().await.unwrap_or_default(), r#"{"message":"Missing Authentication Token"}"#);
}

/// moto's Kinesis shard gives a put the highest sequence number plus one, unlocked, on a threaded
/// server: two puts into one shard at once took the same number and the later overwrote the
/// earlier, though both were answered 200. A `--faults` demo lost a cutover barrier round this
/// way (and any client write could have gone the same way). Many connections put into one shard
/// at once; every acknowledged record must be read back, under the sequence number it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_into_one_shard_keep_every_record() {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};

    let moto = testbed::Moto::start().await;
    let kinesis = aws_sdk_kinesis::Client::new(&moto.sdk_config().await);
    let stream = "concurrent-puts";
    kinesis.create_stream().stream_name(stream).shard_count(1).send().await.expect("create the stream");

    const CONNECTIONS: usize = 24;
    const ROUNDS: usize = 8;
    const PER_REQUEST: usize = 25;
    let mut tasks = Vec::new();
    for connection in 0..CONNECTIONS {
        let kinesis = kinesis.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for round in 0..ROUNDS {
                // One PutRecord and one PutRecords per round: both paths store through the shard.
                let data = format!("c{connection}-r{round}-single");
                let out = kinesis
                    .put_record()
                    .stream_name(stream)
                    .partition_key(format!("k{connection}"))
                    .data(Blob::new(data.clone()))
                    .send()
                    .await
                    .expect("PutRecord");
                acked.push((out.sequence_number().to_string(), data));
                let entries: Vec<(String, PutRecordsRequestEntry)> = (0..PER_REQUEST)
                    .map(|i| {
                        let data = format!("c{connection}-r{round}-{i}");
                        let entry = PutRecordsRequestEntry::builder()
                            .partition_key(format!("k{connection}-{i}"))
                            .data(Blob::new(data.clone()))
                            .build()
                            .expect("entry");
                        (data, entry)
                    })
                    .collect();
                let out = kinesis
                    .put_records()
                    .stream_name(stream)
                    .set_records(Some(entries.iter().map(|(_, e)| e.clone()).collect()))
                    .send()
                    .await
                    .expect("PutRecords");
                assert_eq!(out.failed_record_count(), Some(0), "no record of a PutRecords failed");
                for ((data, _), result) in entries.into_iter().zip(out.records()) {
                    acked.push((result.sequence_number().expect("a sequence number").to_string(), data));
                }
            }
            acked
        }));
    }
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let mut given_twice = Vec::new();
    for task in tasks {
        for (sequence, data) in task.await.expect("a putting task") {
            if let Some(earlier) = acked.insert(sequence.clone(), data.clone()) {
                given_twice.push(format!("{sequence}: {earlier} and {data}"));
            }
        }
    }

    let shard = "shardId-000000000000";
    let mut iterator = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator")
        .shard_iterator
        .expect("an iterator");
    let mut stored: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let out =
            kinesis.get_records().shard_iterator(&iterator).limit(1000).send().await.expect("GetRecords");
        let records = out.records();
        for r in records {
            stored.insert(
                r.sequence_number().to_string(),
                String::from_utf8_lossy(r.data().as_ref()).into_owned(),
            );
        }
        match out.next_shard_iterator() {
            Some(next) if !records.is_empty() => iterator = next.to_string(),
            _ => break,
        }
    }

    let total = CONNECTIONS * ROUNDS * (PER_REQUEST + 1);
    let lost: Vec<String> = acked
        .iter()
        .filter(|(seq, data)| stored.get(*seq) != Some(*data))
        .map(|(seq, data)| format!("{data} (acknowledged as {seq}, stored there: {:?})", stored.get(seq)))
        .collect();
    assert!(
        given_twice.is_empty() && lost.is_empty() && stored.len() == total,
        "{total} records acknowledged, {} stored; sequence numbers given twice: {}; lost: {}\n{}\n{}",
        stored.len(),
        given_twice.len(),
        lost.len(),
        given_twice.iter().take(5).cloned().collect::<Vec<_>>().join("\n"),
        lost.iter().take(5).cloned().collect::<Vec<_>>().join("\n"),
    );
}
