//! One canonical target per write, on the local stack (real influxd at both ends, moto, the
//! functions under `cargo lambda watch`): with `mappings.buckets` set, a write reaches the
//! destination whatever the client called its bucket — v2 by bucket ID and org ID, v1 `db`
//! without `rp` (matched to the documented key `"app/autogen"` through app's default DBRP
//! mapping) — and a write to a bucket outside the mappings does what `"unmapped"` says.
//!
//! On main the by-ID and v1 writes were skipped at the destination without a word (only
//! `verify` could notice, after the stream had moved on).
//!
//! The test prints its rows of the fault matrix.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testbed::scenario::probe;
use testbed::stack::{LocalStack, StackOptions};

/// The local stack, the destination onboarded with the source's token (as a full seeding
/// leaves it), with short writer timeouts.
async fn stack(prefix: &str) -> LocalStack {
    LocalStack::start(
        StackOptions {
            prefix: prefix.into(),
            stream_writer_timeout: Duration::from_secs(5),
            destination_shares_source_token: true,
            ..StackOptions::default()
        },
        |m| eprintln!("stack: {m}"),
    )
    .await
    .unwrap_or_else(|e| panic!("the local stack did not start: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_by_bucket_id_org_id_and_v1_without_rp_reach_the_destination_under_mappings() {
    let stack = stack("target-live").await;
    let bucket = stack.source.bucket.clone();
    stack.bucket_with_dbrp(&stack.source, "app").await;
    stack.bucket_with_dbrp(&stack.destination, "app").await;
    stack.bucket_with_dbrp(&stack.source, "other").await;
    stack.bucket_with_dbrp(&stack.destination, "other").await;
    let (_, b) = stack
        .source
        .api_as(&stack.source.token, reqwest::Method::GET, &format!("/api/v2/buckets?name={bucket}"), None)
        .await;
    let (bucket_id, org_id) = (
        b["buckets"][0]["id"].as_str().unwrap().to_string(),
        b["buckets"][0]["orgID"].as_str().unwrap().to_string(),
    );
    stack
        .set_mappings(
            json!({"buckets": {bucket.clone(): bucket.clone(), "app/autogen": "app"}, "unmapped": "fail"}),
        )
        .await;
    let (code, out, err) = stack.live(&["unthrottle"]).await;
    assert_eq!(code, 0, "unthrottle: {out}{err}");

    let org = stack.source.org.clone();
    let by_name =
        probe::write(&stack, "/api/v2/write", &[("org", &org), ("bucket", &bucket)], "by-name", 20, 1).await;
    let by_id =
        probe::write(&stack, "/api/v2/write", &[("orgID", &org_id), ("bucket", &bucket_id)], "by-id", 20, 1)
            .await;
    let v1 = probe::write(&stack, "/write", &[("db", "app")], "v1-no-rp", 20, 1).await;
    stack.drain_destination().await;

    let mut rows: Vec<(String, usize, usize, usize)> = Vec::new();
    for (case, acked, b) in [
        ("v2 by bucket and org name", &by_name, bucket.as_str()),
        ("v2 by bucket ID and org ID", &by_id, bucket.as_str()),
        ("v1 db without rp", &v1, "app"),
    ] {
        let phase = match case {
            "v2 by bucket and org name" => "by-name",
            "v2 by bucket ID and org ID" => "by-id",
            _ => "v1-no-rp",
        };
        let src = probe::present(acked, &probe::read(&stack, &stack.source, b, phase).await);
        let dst = probe::present(acked, &probe::read(&stack, &stack.destination, b, phase).await);
        rows.push((case.to_string(), acked.len(), src, dst));
    }
    print_rows(&rows);
    for (case, acked, src, dst) in &rows {
        assert_eq!((*src, *dst), (*acked, *acked), "{case}: every acknowledged point at both ends");
    }

    // A bucket outside the mappings with "unmapped": "fail": the destination writer stops there,
    // visibly; adding the mapping resumes it and nothing is lost.
    let unmapped =
        probe::write(&stack, "/api/v2/write", &[("org", &org), ("bucket", "other")], "unmapped", 20, 1).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let stall = loop {
        let (_, out, _) = stack.live(&["status", "--json"]).await;
        let doc: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        if let Some(s) = doc["stalls"]["shards"].as_array().and_then(|a| a.first()).cloned() {
            break s;
        }
        assert!(Instant::now() < deadline, "no stall shown within 60 s: {out}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let reason = stall["stall"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("\"other\" is not in the endpoint secret's mappings.buckets"), "{stall}");
    assert_eq!(stall["stall"]["bucket"], "other");
    assert_eq!(probe::read(&stack, &stack.destination, "other", "unmapped").await.len(), 0);
    stack.set_mappings(
        json!({"buckets": {bucket.clone(): bucket.clone(), "app/autogen": "app", "other": "other"}, "unmapped": "fail"}),
    )
    .await;
    stack.drain_destination().await;
    let src = probe::present(&unmapped, &probe::read(&stack, &stack.source, "other", "unmapped").await);
    let dst = probe::present(&unmapped, &probe::read(&stack, &stack.destination, "other", "unmapped").await);
    let row = ("unmapped bucket, \"fail\", then mapped".to_string(), unmapped.len(), src, dst);
    print_rows(std::slice::from_ref(&row));
    assert_eq!((row.2, row.3), (row.1, row.1), "{}: every acknowledged point at both ends", row.0);

    // "source-only": the write reaches the source only, and status and verify count it.
    stack.bucket_with_dbrp(&stack.source, "third").await;
    stack.set_mappings(
        json!({"buckets": {bucket.clone(): bucket.clone(), "app/autogen": "app"}, "unmapped": "source-only"}),
    )
    .await;
    let third =
        probe::write(&stack, "/api/v2/write", &[("org", &org), ("bucket", "third")], "source-only", 20, 1)
            .await;
    stack.drain_destination().await;
    let src = probe::present(&third, &probe::read(&stack, &stack.source, "third", "source-only").await);
    let (_, out, err) = stack.live(&["status", "--json"]).await;
    let doc: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    assert_eq!(doc["stalls"]["source_only"], json!({"third": 1}), "one record, counted: {doc}");
    let (_, text, _) = stack.live(&["verify"]).await;
    assert!(
        text.contains("left to the source alone") && text.contains("1 to third"),
        "verify says so:\n{text}"
    );
    print_rows(&[("unmapped bucket, \"source-only\" (by the secret)".to_string(), third.len(), src, 0)]);
    assert_eq!(src, third.len(), "every acknowledged point at the source");

    let dead =
        stack.dead_letter_keys().await.unwrap().iter().filter(|k| k.starts_with("dead-letters/")).count();
    assert_eq!(dead, 0, "nothing dead-lettered");
}

fn print_rows(rows: &[(String, usize, usize, usize)]) {
    let rows: Vec<probe::MatrixRow> = rows
        .iter()
        .map(|(case, acked, src, dst)| probe::MatrixRow {
            case: case.clone(),
            acknowledged: *acked,
            at_source: *src,
            at_destination: *dst,
            dead_lettered: 0,
            parked: 0,
            redriven: 0,
        })
        .collect();
    probe::print_matrix(&rows);
}

/// A write to a bucket outside the mappings (`"unmapped": "fail"`) stops the destination writer;
/// the operator parks it, then adds the mapping and redrives. On main the dead letter kept the
/// client's bucket name and redrive wrote there, ignoring the mapping added since: the records
/// were refused (the destination has no such bucket), or would have landed in the wrong one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_write_to_an_unmapped_bucket_is_redriven_where_the_mapping_added_since_says() {
    let stack = stack("redrive-map").await;
    let bucket = stack.source.bucket.clone();
    stack.bucket_with_dbrp(&stack.source, "sensors-old").await;
    stack.bucket_with_dbrp(&stack.destination, "sensors-new").await;
    stack.set_mappings(json!({"buckets": {bucket.clone(): bucket.clone()}, "unmapped": "fail"})).await;
    let (code, out, err) = stack.live(&["unthrottle"]).await;
    assert_eq!(code, 0, "unthrottle: {out}{err}");

    let org = stack.source.org.clone();
    let acked =
        probe::write(&stack, "/api/v2/write", &[("org", &org), ("bucket", "sensors-old")], "parked", 20, 1)
            .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, out, _) = stack.live(&["status", "--json"]).await;
        let doc: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        if doc["stalls"]["shards"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "no stall shown within 60 s: {out}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // One request, one record, one stalled shard: park it (every shard stalled now).
    let (code, out, err) = stack.live(&["park", "--note", "sensors rename, INC-9"]).await;
    assert_eq!(code, 0, "park: {out}{err}");
    stack.drain_destination().await;
    let parked: Vec<String> = stack
        .dead_letter_keys()
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.starts_with("dead-letters/destination/"))
        .collect();
    assert!(!parked.is_empty(), "the records of the unmapped bucket are parked");

    // The operator decides where the bucket goes, releases the rule and redrives.
    stack
        .set_mappings(
            json!({"buckets": {bucket.clone(): bucket.clone(), "sensors-old": "sensors-new"}, "unmapped": "fail"}),
        )
        .await;
    let (code, out, err) = stack.live(&["park", "--release"]).await;
    assert_eq!(code, 0, "release: {out}{err}");
    let (code, dry, err) = stack.live(&["redrive", "--dry-run"]).await;
    assert_eq!(code, 0, "{dry}{err}");
    assert!(
        dry.contains("to sensors-new") && !dry.contains("to sensors-old"),
        "the dry run names the mapped bucket:\n{dry}"
    );
    let (code, out, err) = stack.live(&["redrive", "--reason", "parked"]).await;
    assert_eq!(code, 0, "redrive: {out}{err}");

    let at_destination =
        probe::present(&acked, &probe::read(&stack, &stack.destination, "sensors-new", "parked").await);
    let at_source =
        probe::present(&acked, &probe::read(&stack, &stack.source, "sensors-old", "parked").await);
    print_rows(&[("unmapped, parked, mapped, redriven".to_string(), acked.len(), at_source, at_destination)]);
    assert_eq!(
        (at_source, at_destination),
        (acked.len(), acked.len()),
        "every acknowledged point at the source and, redriven, in the mapped bucket at the destination"
    );
}
