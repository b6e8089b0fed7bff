//! A writer that bypasses the gateway is found, named and repaired (issue 13), on the local stack
//! (real influxd at both ends, moto, the functions under `cargo lambda watch`).
//!
//! Clients write through the gateway the whole time; one more writes straight to the source, as
//! a writer someone forgot to move would. On main nothing noticed: `status` said nothing, and
//! `cutover` switched reads over with those points at the source only (they would be lost with
//! it). Now `status` and `verify` name the bucket and measurement with the newest such time,
//! `verify --content` names the window, `cutover` refuses, and after `repair` the points are at
//! the destination value by value, `verify --content` passes and `cutover` goes ahead.

use std::time::Duration;

use serde_json::Value;
use testbed::scenario::probe;
use testbed::stack::{LocalStack, StackOptions};

async fn json_of(stack: &LocalStack, args: &[&str]) -> (i32, Value, String) {
    let mut all = args.to_vec();
    all.push("--json");
    let (code, out, err) = stack.live(&all).await;
    let doc = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} --json: {e}: {out}{err}"));
    (code, doc, format!("{out}{err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_straight_to_the_source_is_named_refused_at_cutover_and_repaired() {
    let stack = LocalStack::start(
        StackOptions {
            prefix: "bypass".into(),
            destination_shares_source_token: true,
            ..StackOptions::default()
        },
        |m| eprintln!("stack: {m}"),
    )
    .await
    .unwrap_or_else(|e| panic!("the local stack did not start: {e}"));
    let (code, out, err) = stack.live(&["unthrottle"]).await;
    assert_eq!(code, 0, "unthrottle: {out}{err}");

    let before = probe::write_v2(&stack, "before", 40, 2).await;
    // The forgotten writer: straight to the source, all in one second.
    let base = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let mut bypassed = std::collections::BTreeMap::new();
    let mut body = String::new();
    for i in 0..30u64 {
        let value = format!("{}.5", i * 3 + 2);
        body.push_str(&format!("probe,phase=bypass seq={i}i,v={value} {}\n", base + i as i64 * 1000));
        bypassed.insert(i.to_string(), value);
    }
    stack.source.write_ok(&stack.source.bucket, "ns", body).await;
    let during = probe::write_v2(&stack, "during", 40, 2).await;
    stack.drain_destination().await;
    let at_destination = probe::read(&stack, &stack.destination, &stack.source.bucket, "during").await;
    assert_eq!(
        probe::present(&during, &at_destination),
        during.len(),
        "gateway traffic reached the destination"
    );
    let first = probe::read(&stack, &stack.destination, &stack.source.bucket, "before").await;
    assert_eq!(probe::present(&before, &first), before.len(), "gateway traffic reached the destination");

    // status names it, with the newest time to the second, once its window (where both writers
    // have replayed the stream, from their lag) has passed the bypassed points.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let (status, text) = loop {
        let (_, status, text) = json_of(&stack, &["status"]).await;
        if status["bypass"]["bypassed"][0]["found"]["values"] == 60 {
            break (status, text);
        }
        assert!(std::time::Instant::now() < deadline, "status never named the bypass within 120 s: {text}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let found =
        status["bypass"]["bypassed"].as_array().unwrap_or_else(|| panic!("status has no bypass: {text}"));
    assert_eq!(found.len(), 1, "one bucket and measurement bypassed: {text}");
    assert_eq!(found[0]["found"]["measurement"], "probe", "{text}");
    assert_eq!(found[0]["found"]["values"], 60, "30 points of two fields: {text}");
    let newest = found[0]["found"]["newest_ns"].as_str().expect("newest");
    let newest = time::OffsetDateTime::parse(newest, &time::format_description::well_known::Rfc3339)
        .expect("RFC3339")
        .unix_timestamp_nanos() as i64;
    let last = base + 29_000;
    assert!(
        newest <= last && last < newest + 1_000_000_000,
        "the newest second {newest} holds {last}: {text}"
    );
    let (code, out, err) = stack.live(&["status"]).await;
    assert!(out.contains("without passing through the gateway"), "{code} {out}{err}");

    // verify fails on it, and with --content names the window that holds it.
    let (code, out, err) = stack.live(&["verify", "--content"]).await;
    assert_eq!(code, 3, "verify: {out}{err}");
    assert!(out.contains("DIFFERS  bypass"), "{out}");
    let window = out
        .lines()
        .find(|l| l.contains(" .. ") && l.contains("at the source"))
        .unwrap_or_else(|| panic!("no window named: {out}"));
    assert!(
        window.contains("30 at the source, 0 at the destination") || window.contains("at the destination"),
        "{window}"
    );

    // cutover refuses while it keeps writing.
    let (code, out, err) = stack.live(&["cutover"]).await;
    assert_eq!(code, 4, "cutover refuses: {out}{err}");
    assert!(out.contains("REFUSED  bypass"), "{out}");
    let (_, endpoint) = (0, stack.live(&["status", "--json"]).await.1);
    assert!(endpoint.contains("\"read\":\"source\""), "reads stay on the source: {endpoint}");

    // The writer is moved (it stops); repair copies its points; everything passes.
    let (code, out, err) = stack.live(&["repair"]).await;
    assert_eq!(code, 0, "repair: {out}{err}");
    let got = probe::read(&stack, &stack.destination, &stack.source.bucket, "bypass").await;
    assert_eq!(got, bypassed, "the bypassed points are at the destination, value by value");
    let (code, out, err) = stack.live(&["verify", "--content"]).await;
    assert_eq!(code, 0, "verify after repair: {out}{err}");
    let (code, out, err) = stack.live(&["cutover"]).await;
    assert_eq!(code, 0, "cutover after repair: {out}{err}");
}
