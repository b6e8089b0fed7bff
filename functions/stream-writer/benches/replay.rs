//! Replay: 1,000 Kinesis records of 100 lines each into a real influxd 2.7.12.
//!
//! - stream-writer: the handler's in-process path — the Kinesis events (batches of 100 records,
//!   the deployed BatchSize) deserialised from JSON as the Lambda runtime does, planned and
//!   replayed (`batch::plan` + `replay::Replayer::run`, consecutive records coalesced).
//! - baseline, in the same run against the same influxd: each record's body POSTed on its own,
//!   one after another, as a Python function with `requests.post` per record does: a new
//!   connection per request and the line protocol uncompressed;
//! - generous baseline: the same, but with the stream-writer's own client (pooled connections)
//!   and gzip bodies — the least a per-record replay can cost.
//!
//! With `--latency-ms N` every request (all contenders) goes through the test bed's fault proxy
//! adding N ms, a stand-in for the network between Lambda and the database (the proxy also
//! closes each connection after its answer).
//!
//! Each round writes into fresh buckets and checks the value count before its time counts;
//! contenders alternate which goes first. Goal (issue 3): stream-writer at least 10x faster.
//!
//! Run: `cargo bench --workspace --bench replay` (options: `-- --rounds N`).

use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use base64::Engine;
use bytes::Bytes;
use serde_json::json;
use shared::envelope::{Api, Chunker, Header, MAX_RECORD_BYTES, Record, WriteParams};
use shared::influx_client::{ClientOptions, http_client, send_write, write_request};
use shared::secret::{Endpoint, Mappings, Role};
use shared::sensitive::Sensitive;
use stream_writer::batch::{Item, plan};
use stream_writer::{DeadLetters, Replayer};
use testbed::Influxd;

const RECORDS: usize = 1_000;
const LINES: usize = 100;
const BATCH: usize = 100;

fn records(db: &Influxd, bucket: &str, round: usize) -> Vec<Vec<u8>> {
    (0..RECORDS)
        .map(|r| {
            let header = Header {
                api: Api::V2,
                params: WriteParams {
                    org: Some(db.org.clone()),
                    bucket: Some(bucket.into()),
                    precision: Some("ns".into()),
                    ..Default::default()
                },
                target: None,
                authorization: Some(Sensitive::new(db.auth())),
                received_at_ns: 0,
                content_type: None,
                request_id: format!("bench-{round}-{r}"),
                chunk: 0,
                chunks: 0,
                lines: 0,
                raw_bytes: 0,
            };
            let mut c = Chunker::new(header, MAX_RECORD_BYTES, 32).expect("chunker");
            for l in 0..LINES {
                let i = r * LINES + l;
                let line = format!(
                    "replay,host=h{},region=r{} usage={}.{},count={}i,ok={} {}",
                    i % 50,
                    i % 5,
                    i % 100,
                    i % 7,
                    i,
                    i.is_multiple_of(3),
                    1_700_000_000_000_000_000i64 + i as i64 * 1_000_000
                );
                c.push_line(line.as_bytes(), b"").expect("line");
            }
            c.finish().expect("finish").remove(0).to_vec()
        })
        .collect()
}

fn events(data: &[Vec<u8>]) -> Vec<String> {
    data.chunks(BATCH)
        .enumerate()
        .map(|(b, chunk)| {
            let recs: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let seq = format!("{:056}", b * BATCH + i);
                    json!({
                        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "k", "sequenceNumber": seq,
                            "data": base64::engine::general_purpose::STANDARD.encode(d), "approximateArrivalTimestamp": 1.7e9},
                        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": format!("shardId-000000000000:{seq}"),
                        "eventName": "aws:kinesis:record", "invokeIdentityArn": "arn:aws:iam::123456789012:role/r",
                        "awsRegion": "us-east-1", "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s"
                    })
                })
                .collect();
            json!({ "Records": recs }).to_string()
        })
        .collect()
}

async fn stream_writer(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    dead: &DeadLetters,
    events: &[String],
) -> Duration {
    let start = Instant::now();
    for e in events {
        let event: KinesisEvent = serde_json::from_str(e).expect("event");
        let items: Vec<Item<'_>> = event
            .records
            .iter()
            .enumerate()
            .map(|(i, r): (usize, &KinesisEventRecord)| Item::from_event(i, r))
            .collect();
        let steps = plan(&items, Role::Source, &Mappings::default(), 10 * 1024 * 1024);
        let replayer = Replayer::new(
            http,
            endpoint,
            dead,
            Instant::now() + Duration::from_secs(60),
            Duration::from_secs(30),
        );
        replayer.run(&items, &steps).await.expect("replay");
    }
    start.elapsed()
}

/// One POST per record: `gzip` keeps the record's compressed body (and the caller's pooled
/// client); otherwise the line protocol goes uncompressed.
async fn baseline(http: &reqwest::Client, endpoint: &Endpoint, data: &[Vec<u8>], gzip: bool) -> Duration {
    let start = Instant::now();
    for d in data {
        let r = Record::decode(d).expect("record");
        if gzip {
            let req = write_request(
                http,
                endpoint.base(),
                r.header.api,
                &r.header.params,
                r.header.authorization.as_ref(),
                Bytes::copy_from_slice(r.gzip_body),
            );
            assert!(send_write(req).await.is_done());
        } else {
            let body = r.body().expect("body");
            let resp = http
                .post(format!("{}/api/v2/write", endpoint.base()))
                .query(&r.header.params.query_pairs())
                .header(
                    "Authorization",
                    r.header.authorization.as_ref().map(|a| a.expose().to_string()).unwrap_or_default(),
                )
                .body(body)
                .send()
                .await
                .expect("write");
            assert_eq!(resp.status().as_u16(), 204);
        }
    }
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--test" || a == "--list") {
        // `cargo test --benches` runs bench binaries with --test: nothing to check quickly.
        println!("replay bench: run with `cargo bench --workspace --bench replay`");
        return;
    }
    let option = |name: &str| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<u64>().ok())
    };
    let rounds = option("--rounds").unwrap_or(3) as usize;
    let latency_ms = option("--latency-ms").unwrap_or(0);
    let db = Influxd::start_named("replay-bench").await;
    let proxy = testbed::FaultProxy::start(&db.url).await;
    proxy.set_latency(Duration::from_millis(latency_ms));
    let url = if latency_ms > 0 { proxy.url.clone() } else { db.url.clone() };
    let endpoint = Endpoint { url, skip_verify: false };
    let http = http_client(&ClientOptions::default()).expect("client");
    // What `requests.post` does without a session: a fresh connection for every request.
    let unpooled = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    // Never called: no record is refused. Built offline, as in the function's cold start.
    let aws = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .build();
    let dead = DeadLetters::new(
        aws_sdk_s3::Client::new(&aws),
        "unused".into(),
        "dead-letters/".into(),
        Role::Source,
    );

    let (mut ours, mut base, mut generous) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let names = [format!("ours-{round}"), format!("base-{round}"), format!("generous-{round}")];
        for n in &names {
            db.create_bucket(n).await;
        }
        let d_ours = records(&db, &names[0], round);
        let d_base = records(&db, &names[1], round);
        let d_gen = records(&db, &names[2], round);
        let ev = events(&d_ours);
        // Rotate who goes first.
        let mut times = [Duration::ZERO; 3];
        for k in 0..3 {
            let which = (round + k) % 3;
            times[which] = match which {
                0 => stream_writer(&http, &endpoint, &dead, &ev).await,
                1 => baseline(&unpooled, &endpoint, &d_base, false).await,
                _ => baseline(&http, &endpoint, &d_gen, true).await,
            };
        }
        let expected = (RECORDS * LINES * 3) as u64;
        for n in &names {
            assert_eq!(db.count(n).await, expected, "{n} holds every value");
        }
        println!(
            "round {round}: stream-writer {:.3} s, baseline {:.3} s, generous baseline {:.3} s",
            times[0].as_secs_f64(),
            times[1].as_secs_f64(),
            times[2].as_secs_f64()
        );
        ours.push(times[0]);
        base.push(times[1]);
        generous.push(times[2]);
    }
    let (o, b, g) = (median(ours), median(base), median(generous));
    let lines = (RECORDS * LINES) as f64;
    println!(
        "replay of {RECORDS} records x {LINES} lines (batches of {BATCH}), {latency_ms} ms added latency, median of {rounds} rounds:"
    );
    println!(
        "  stream-writer:                              {:.3} s ({:.0} lines/s)",
        o.as_secs_f64(),
        lines / o.as_secs_f64()
    );
    println!(
        "  baseline (requests.post per record):        {:.3} s ({:.0} lines/s)",
        b.as_secs_f64(),
        lines / b.as_secs_f64()
    );
    println!(
        "  generous baseline (pooled, gzip, per record): {:.3} s ({:.0} lines/s)",
        g.as_secs_f64(),
        lines / g.as_secs_f64()
    );
    println!(
        "  speed-up over the baseline: {:.1}x (goal: at least 10x); over the generous baseline: {:.1}x",
        b.as_secs_f64() / o.as_secs_f64(),
        g.as_secs_f64() / o.as_secs_f64()
    );
}
