//! Reads of any size and length through the gateway (the local stack: the deployed API's routes,
//! the real router binary behind `cargo lambda watch`, real influxd).
//!
//! What broke on main, each kept as a test:
//! - a Flux answer of 50 MB and an InfluxQL answer of 20 MB got the router's 413 ("narrow the
//!   time range"): the router read the whole answer into one 6 MB response event;
//! - a query the database took 35 s to answer got a 504: the router gave up at 27 s, under API
//!   Gateway's 29 s integration timeout;
//! - an answer that broke off mid-way became a 502 after the router had read all it could.
//!
//! Each answer is compared byte for byte with the same request sent straight to influxd.

use std::time::Duration;

use testbed::FaultProxy;
use testbed::reads::{Read, fetch, flux};
use testbed::stack::{LocalStack, StackOptions};

async fn stack(prefix: &str) -> LocalStack {
    LocalStack::start(StackOptions { prefix: prefix.into(), ..StackOptions::default() }, |m| {
        eprintln!("stack: {m}")
    })
    .await
    .unwrap_or_else(|e| panic!("the local stack did not start: {e}"))
}

async fn load_bulk(stack: &LocalStack, n: usize) {
    testbed::reads::load_bulk(&stack.source, n).await;
}

fn flux_bulk(stack: &LocalStack) -> Read {
    testbed::reads::flux_bulk(&stack.source)
}

fn influxql_bulk(stack: &LocalStack) -> Read {
    testbed::reads::influxql_bulk(&stack.source)
}

/// The same read, asking for a gzip answer (influxd compresses; the gateway relays it as it is).
fn gzip(mut read: Read) -> Read {
    read.headers.push(("Accept-Encoding", "gzip".into()));
    read
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1_000_000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_of_50_mb_and_20_mb_arrive_whole_through_the_gateway_with_flat_router_memory() {
    let stack = stack("stream-big").await;
    load_bulk(&stack, 400_000).await;
    let token = stack.source.token.clone();

    // A small read first: the router's memory after it is the baseline.
    let small = flux(
        &stack.source,
        &format!("from(bucket: \"{}\") |> range(start: 0) |> limit(n: 3)", stack.source.bucket),
    );
    let got = fetch(&stack.gateway.url, &small, &token).await.expect("a small read");
    assert_eq!(got.status, 200, "{}", got.text());
    let baseline = stack.router.peak_rss_bytes().expect("the router's VmHWM");

    let mut report = Vec::new();
    let mut relayed = 0;
    for (what, read, at_least) in [
        ("Flux, annotated CSV", flux_bulk(&stack), 50_000_000),
        ("InfluxQL, JSON", influxql_bulk(&stack), 20_000_000),
        ("Flux, gzip", gzip(flux_bulk(&stack)), 2_000_000),
    ] {
        let direct = fetch(&stack.source.url, &read, &token).await.expect("straight to influxd");
        assert_eq!(direct.status, 200, "{what} direct: {}", direct.text());
        assert!(direct.body.len() >= at_least, "{what}: influxd answered only {} bytes", direct.body.len());
        if what.ends_with("gzip") {
            assert_eq!(direct.header("content-encoding"), Some("gzip"), "influxd compressed it");
        }
        let routed = fetch(&stack.gateway.url, &read, &token)
            .await
            .unwrap_or_else(|e| panic!("{what} through the gateway: {e}; logs:\n{}", stack.router.logs()));
        let preview = String::from_utf8_lossy(&routed.body[..routed.body.len().min(600)]).into_owned();
        assert_eq!(routed.status, 200, "{what} through the gateway: {preview}");
        assert_eq!(routed.header("content-type"), direct.header("content-type"), "{what}: content-type");
        assert_eq!(
            routed.header("content-encoding"),
            direct.header("content-encoding"),
            "{what}: content-encoding"
        );
        assert!(
            routed.body == direct.body,
            "{what}: {} bytes through the gateway, {} straight from influxd; first bytes: {preview}",
            routed.body.len(),
            direct.body.len()
        );
        relayed += routed.body.len();
        report.push(format!(
            "{what}: {:.1} MB byte-identical; first byte {:.0} ms through the gateway, {:.0} ms direct; whole answer {:.2} s / {:.2} s",
            mb(routed.body.len()),
            routed.first_byte.as_secs_f64() * 1000.0,
            direct.first_byte.as_secs_f64() * 1000.0,
            routed.total.as_secs_f64(),
            direct.total.as_secs_f64()
        ));
    }
    let peak = stack.router.peak_rss_bytes().expect("the router's VmHWM");
    report.push(format!(
        "router peak RSS: {:.1} MB after a small read, {:.1} MB after {:.0} MB of answers",
        mb(baseline as usize),
        mb(peak as usize),
        mb(relayed)
    ));
    println!("{}", report.join("\n"));
    // Flat: the router held no more than a few chunks of the answers at a time.
    assert!(
        peak < baseline + 16 * 1024 * 1024,
        "the router's peak RSS grew from {baseline} to {peak} bytes while relaying {relayed} bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_35_s_query_is_answered_in_full_and_an_answer_that_breaks_off_ends_as_influxd_ends_it() {
    let stack = stack("stream-slow").await;
    load_bulk(&stack, 60_000).await;
    let token = stack.source.token.clone();
    // Reads go to the source through a fault proxy that can hold or cut the answer.
    let proxy = FaultProxy::start(&stack.source.url).await;
    let proxy_url = proxy.url.clone();
    stack.update_secret(|s| s["source"]["url"] = serde_json::json!(proxy_url)).await;

    let read = flux_bulk(&stack);
    let direct = fetch(&stack.source.url, &read, &token).await.expect("straight to influxd");
    assert_eq!(direct.status, 200);
    assert!(direct.body.len() > 4_000_000, "a 6 MB answer: {}", direct.body.len());

    // The database takes 35 s to start answering: past API Gateway's old 29 s limit.
    proxy.hold_next(1, Duration::from_secs(35));
    let slow = fetch(&stack.gateway.url, &read, &token)
        .await
        .unwrap_or_else(|e| panic!("the slow query: {e}; logs:\n{}", stack.router.logs()));
    assert_eq!(proxy.stats().held, 1);
    assert_eq!(slow.status, 200, "the slow query: {}", slow.text());
    assert!(slow.total >= Duration::from_secs(35), "held for 35 s: {:?}", slow.total);
    assert!(
        slow.body == direct.body,
        "the slow answer differs: {} vs {} bytes",
        slow.body.len(),
        direct.body.len()
    );

    // The database breaks off 1 MB into the answer: the client must see an error, in the shape
    // influxd uses when a Flux query fails after its first table (an error table), never an
    // answer that looks whole.
    proxy.cut_next(1, 1_000_000);
    let cut = fetch(&stack.gateway.url, &read, &token).await;
    assert_eq!(proxy.stats().cut, 1);
    let cut = cut.unwrap_or_else(|e| panic!("the router's answer itself broke off: {e}"));
    assert_eq!(cut.status, 200, "{}", cut.text());
    let text = cut.text();
    let tail_at = text.rfind("\r\n\r\n").expect("a blank line before the error table");
    let (rows, tail) = text.split_at(tail_at);
    assert!(
        direct.body.starts_with(rows.as_bytes()),
        "everything before the error table is the answer's start, in whole rows"
    );
    // Up to the cut (a reset connection may lose what was in flight), in whole rows; the error
    // counts what the client received.
    assert!(!rows.is_empty() && rows.len() <= 1_000_000, "{} bytes of rows", rows.len());
    assert!(
        tail.starts_with(
            "\r\n\r\n#datatype,string,string\r\n#group,true,true\r\n#default,,\r\n,error,reference\r\n,"
        ),
        "influxd's error table: {tail:?}"
    );
    assert!(tail.contains(&format!("broke off its answer after {} bytes", rows.len() + 2)), "{tail:?}");
    assert!(!tail.contains(&token), "no token in the error");
    // The same for InfluxQL's JSON: its error object on a line of its own after what arrived
    // (a cut document no longer parses as an answer; the last line is the error).
    let ql = influxql_bulk(&stack);
    let ql_direct = fetch(&stack.source.url, &ql, &token).await.expect("InfluxQL straight to influxd");
    assert!(ql_direct.body.len() > 1_000_000, "{} bytes", ql_direct.body.len());
    proxy.cut_next(1, 500_000);
    let ql_cut = fetch(&stack.gateway.url, &ql, &token).await.expect("the router ends its answer");
    assert_eq!(ql_cut.status, 200);
    let text = ql_cut.text();
    let (before, last) = text.trim_end_matches('\n').rsplit_once('\n').expect("an error line");
    assert!(!before.is_empty() && before.len() <= 500_000, "what arrived, then the error: {}", before.len());
    assert!(ql_direct.body.starts_with(before.as_bytes()));
    let error: serde_json::Value = serde_json::from_str(last).expect("the error line is JSON");
    let said = format!("broke off its answer after {} bytes", before.len());
    assert!(error["error"].as_str().unwrap_or_default().contains(&said), "{last}");
    assert!(
        serde_json::from_slice::<serde_json::Value>(&ql_cut.body).is_err(),
        "the cut answer is not valid JSON"
    );

    // And the next read is whole again.
    let again = fetch(&stack.gateway.url, &read, &token).await.expect("after the cut");
    assert!(again.body == direct.body);
}
