//! What the query router costs over querying influxd directly, measured against one real
//! influxd in the same run (the baseline and the router alternate, so drift hits both alike).
//!
//! - **Latency** of a small Flux query: N requests straight to influxd and N through the
//!   router's in-process path, p50 and p99 of each and their difference. The router's path is
//!   what one invocation does: the event JSON parsed (as the Lambda runtime does), `handle()`
//!   (routing, the cached endpoint secret read from moto Secrets Manager, header rewriting, the
//!   upstream request, the response event) and the response event serialised to JSON.
//! - **Throughput** on a ~5 MB CSV answer: the same query both ways, MB/s of each and the ratio
//!   (of the medians, which a busy machine disturbs least; the means are printed too).
//!
//! Both sides use the same HTTP client settings (`shared::influx_client::http_client`), so the
//! baseline is a client that is as good as the router's at talking to influxd.
//!
//! Run: `cargo bench --workspace --bench query_router` (needs the test bed: influxd and moto).
//! Options after `--`: `--latency-requests N` (default 2000), `--throughput-requests N`
//! (default 30), `--rows N` (rows of the large answer, default 45000).

use std::time::{Duration, Instant};

use query_router::{Config, Deps, handle};
use serde_json::{Value, json};
use shared::influx_client::{ClientOptions, http_client};
use testbed::{Influxd, Moto};

const SECRET_ID: &str = "bench/query-router/endpoints";

struct Options {
    latency_requests: usize,
    throughput_requests: usize,
    rows: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map(|v| v.parse::<usize>().unwrap_or_else(|_| panic!("{name} takes a number, not {v}")))
            .unwrap_or(default)
    };
    Options {
        latency_requests: value("--latency-requests", 2000),
        throughput_requests: value("--throughput-requests", 30),
        rows: value("--rows", 45_000),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then there is nothing to
    // check here, and starting servers would only slow the test run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("query_router bench: run it with `cargo bench --workspace --bench query_router`");
        return;
    }
    let opts = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(opts));
}

/// The Flux request body both sides send.
fn flux_body(query: &str) -> String {
    json!({"query": query, "type": "flux", "dialect": {"header": true, "annotations": ["group", "datatype", "default"]}})
        .to_string()
}

/// A REST API (payload 1.0) event for `POST /api/v2/query?org=…` as API Gateway sends it behind
/// aws-sigv4-proxy.
fn rest_event(influxd: &Influxd, body: &str) -> Vec<u8> {
    json!({
        "resource": "/{proxy+}", "path": "/api/v2/query", "httpMethod": "POST",
        "headers": {
            "Accept": "application/csv", "Content-Type": "application/json",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=0",
            "X-Original-Authorization": influxd.auth(), "Host": "abc123.execute-api.us-east-1.amazonaws.com",
            "X-Amz-Date": "20260101T000000Z", "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"
        },
        "multiValueHeaders": {},
        "queryStringParameters": {"org": influxd.org},
        "multiValueQueryStringParameters": {"org": [influxd.org]},
        "pathParameters": {"proxy": "api/v2/query"},
        "requestContext": {"accountId": "123456789012", "resourceId": "abc", "stage": "prod", "requestId": "bench",
            "identity": {"sourceIp": "203.0.113.7"}, "resourcePath": "/{proxy+}", "httpMethod": "POST",
            "apiId": "abc123", "path": "/prod/api/v2/query"},
        "body": body, "isBase64Encoded": false
    })
    .to_string()
    .into_bytes()
}

/// One direct request; returns the body length.
async fn direct(client: &reqwest::Client, influxd: &Influxd, body: &str) -> usize {
    let resp = client
        .post(format!("{}/api/v2/query", influxd.url))
        .query(&[("org", influxd.org.as_str())])
        .header("Authorization", influxd.auth())
        .header("Accept", "application/csv")
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("direct query");
    assert_eq!(resp.status(), 200);
    resp.bytes().await.expect("direct body").len()
}

/// One request through the router's in-process path; returns the length of the response event.
async fn routed(deps: &Deps, event: &[u8]) -> usize {
    let event: Value = serde_json::from_slice(event).expect("event JSON");
    let response = handle(deps, event).await;
    assert_eq!(
        response["statusCode"],
        200,
        "{}",
        &response.to_string()[..500.min(response.to_string().len())]
    );
    serde_json::to_vec(&response).expect("response JSON").len()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn run(opts: Options) {
    let influxd = Influxd::start_named("bench-influxd").await;
    let moto = Moto::start().await;
    let sm = aws_sdk_secretsmanager::Client::new(&moto.sdk_config().await);
    let secret = json!({"source": {"url": influxd.url}, "destination": {"url": "http://127.0.0.1:9"}, "read": "source"});
    sm.create_secret().name(SECRET_ID).secret_string(secret.to_string()).send().await.expect("create secret");
    let config = Config::from_settings(&shared::settings::Settings::from_pairs(&[("SECRET_ID", SECRET_ID)]))
        .expect("config");
    let deps = Deps::new(config, sm).expect("deps");
    let client = http_client(&ClientOptions::default()).expect("client");

    // Data: a few points for the small query; `rows` points (one field, one series) for the large one.
    influxd
        .write_ok(&influxd.bucket, "s", "small,host=a v=1.5 1767225600\nsmall,host=b v=2.5 1767225601\n")
        .await;
    let start_s: u64 = 1_767_225_600;
    for batch in (0..opts.rows).collect::<Vec<_>>().chunks(10_000) {
        let lines: String = batch
            .iter()
            .map(|i| {
                format!(
                    "large,host=host-{},region=eu-west-1 value={}.25 {}\n",
                    i % 10,
                    i,
                    start_s + *i as u64
                )
            })
            .collect();
        influxd.write_ok(&influxd.bucket, "s", lines).await;
    }
    let range = "range(start: 2026-01-01T00:00:00Z, stop: 2027-01-01T00:00:00Z)";
    let small = flux_body(&format!(
        "from(bucket: \"{}\") |> {range} |> filter(fn: (r) => r._measurement == \"small\")",
        influxd.bucket
    ));
    let large = flux_body(&format!(
        "from(bucket: \"{}\") |> {range} |> filter(fn: (r) => r._measurement == \"large\") |> group()",
        influxd.bucket
    ));
    let small_event = rest_event(&influxd, &small);
    let large_event = rest_event(&influxd, &large);

    // Warm up both paths (connections, the secret cache, influxd's caches).
    for _ in 0..50 {
        direct(&client, &influxd, &small).await;
        routed(&deps, &small_event).await;
    }
    let large_bytes = direct(&client, &influxd, &large).await;
    routed(&deps, &large_event).await;

    // (a) latency, alternating which side goes first.
    let mut d = Vec::with_capacity(opts.latency_requests);
    let mut r = Vec::with_capacity(opts.latency_requests);
    for i in 0..opts.latency_requests {
        for side in if i.is_multiple_of(2) { [0, 1] } else { [1, 0] } {
            let t = Instant::now();
            if side == 0 {
                direct(&client, &influxd, &small).await;
                d.push(t.elapsed());
            } else {
                routed(&deps, &small_event).await;
                r.push(t.elapsed());
            }
        }
    }
    d.sort();
    r.sort();
    let (d50, d99, r50, r99) =
        (percentile(&d, 0.5), percentile(&d, 0.99), percentile(&r, 0.5), percentile(&r, 0.99));

    // (b) throughput on the large answer.
    let mut d_times = Vec::with_capacity(opts.throughput_requests);
    let mut r_times = Vec::with_capacity(opts.throughput_requests);
    let mut r_event_bytes = 0usize;
    for i in 0..opts.throughput_requests {
        for side in if i.is_multiple_of(2) { [0, 1] } else { [1, 0] } {
            let t = Instant::now();
            if side == 0 {
                assert_eq!(direct(&client, &influxd, &large).await, large_bytes);
                d_times.push(t.elapsed());
            } else {
                r_event_bytes = routed(&deps, &large_event).await;
                r_times.push(t.elapsed());
            }
        }
    }
    d_times.sort();
    r_times.sort();
    let mb = large_bytes as f64 / 1e6;
    let rate = |d: Duration| mb / d.as_secs_f64();
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
    let (d_med, r_med) = (percentile(&d_times, 0.5), percentile(&r_times, 0.5));
    let (d_mean, r_mean) = (mean(&d_times), mean(&r_times));

    println!("query_router bench (influxd 2.7.12 on loopback, secret in moto, same run)");
    println!("(a) small Flux query, {} requests each", opts.latency_requests);
    println!("    direct  p50 {:.3} ms  p99 {:.3} ms", ms(d50), ms(d99));
    println!("    router  p50 {:.3} ms  p99 {:.3} ms", ms(r50), ms(r99));
    println!(
        "    added   p50 {:+.3} ms  p99 {:+.3} ms   (goal: under 1 ms at p50)",
        ms(r50) - ms(d50),
        ms(r99) - ms(d99)
    );
    println!(
        "(b) {:.2} MB CSV answer ({} rows; {:.2} MB response event), {} requests each",
        mb,
        opts.rows,
        r_event_bytes as f64 / 1e6,
        opts.throughput_requests
    );
    println!(
        "    median: direct {:.1} MB/s ({:.1} ms)  router {:.1} MB/s ({:.1} ms)  ratio {:.3}   (goal: at least 0.80)",
        rate(d_med),
        ms(d_med),
        rate(r_med),
        ms(r_med),
        rate(r_med) / rate(d_med)
    );
    println!(
        "    mean:   direct {:.1} MB/s ({:.1} ms)  router {:.1} MB/s ({:.1} ms)  ratio {:.3}",
        rate(d_mean),
        ms(d_mean),
        rate(r_mean),
        ms(r_mean),
        rate(r_mean) / rate(d_mean)
    );
}
