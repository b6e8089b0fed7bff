//! Reads through the local stack's gateway (the deployed API's routes, the query router behind
//! `cargo lambda watch`, streaming) against the same reads sent straight to the same influxd, in
//! the same run, alternating request by request so that machine load hits both alike.
//!
//! For a large Flux answer (annotated CSV) and a large InfluxQL answer (JSON): time to the first
//! body byte and to the whole answer, medians of each side and the ratio gateway / direct. Every
//! answer through the gateway is checked byte for byte against the direct one before it counts.
//!
//! Run: `cargo build --workspace --bins && cargo bench -p testbed --bench read_streaming`
//! (the debug function binaries, as the tests use; `TESTBED_PROFILE=release` with
//! `cargo build --release --bins` for release ones). Options after `--`: `--points N` (default
//! 400000: about 77 MB of Flux CSV and 22 MB of InfluxQL JSON), `--runs N` (default 5).

use std::time::Duration;

use testbed::bench_run::{median, option};
use testbed::reads::{Read, fetch, flux_bulk, influxql_bulk, load_bulk};
use testbed::stack::{LocalStack, StackOptions};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let points = option("--points", 400_000);
    let runs = option("--runs", 5).max(1);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let stack = LocalStack::start(
            StackOptions { prefix: "bench-read".into(), ..StackOptions::default() },
            |m| eprintln!("stack: {m}"),
        )
        .await
        .unwrap_or_else(|e| panic!("the local stack did not start: {e}"));
        load_bulk(&stack.source, points).await;
        let token = stack.source.token.clone();
        println!("reads through the local gateway (streamed) vs straight to influxd, {points} points, {runs} runs each, alternating");
        println!(
            "{:<22} {:>10} {:>14} {:>13} {:>9} {:>14} {:>13} {:>9}",
            "answer", "MB", "TTFB direct", "TTFB gateway", "ratio", "whole direct", "whole gateway", "ratio"
        );
        let cases: [(&str, Read); 2] =
            [("Flux, annotated CSV", flux_bulk(&stack.source)), ("InfluxQL, JSON", influxql_bulk(&stack.source))];
        for (what, read) in cases {
            // One of each first, unmeasured (caches, connections, the router's secret).
            let reference = fetch(&stack.source.url, &read, &token).await.expect("direct");
            fetch(&stack.gateway.url, &read, &token).await.expect("through the gateway");
            let (mut first, mut whole) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
            for _ in 0..runs {
                let d = fetch(&stack.source.url, &read, &token).await.expect("direct");
                let g = fetch(&stack.gateway.url, &read, &token).await.expect("through the gateway");
                assert!(d.body == reference.body && g.body == reference.body, "{what}: an answer differs");
                first.0.push(d.first_byte);
                first.1.push(g.first_byte);
                whole.0.push(d.total);
                whole.1.push(g.total);
            }
            let (fd, fg, wd, wg) = (median(first.0), median(first.1), median(whole.0), median(whole.1));
            println!(
                "{:<22} {:>10.1} {:>11.1} ms {:>10.1} ms {:>9.2} {:>11.2} s {:>10.2} s {:>9.2}",
                what,
                reference.body.len() as f64 / 1e6,
                ms(fd),
                ms(fg),
                fg.as_secs_f64() / fd.as_secs_f64(),
                wd.as_secs_f64(),
                wg.as_secs_f64(),
                wg.as_secs_f64() / wd.as_secs_f64()
            );
        }
        println!(
            "query router peak RSS: {:.1} MB",
            stack.router.peak_rss_bytes().unwrap_or_default() as f64 / 1e6
        );
    });
}
