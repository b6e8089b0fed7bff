//! Replay of mixed traffic, like the demo's, into a real influxd 2.7.12 (issue 29).
//!
//! The stream: 2,000 records of 50 lines (100,000 points), one record per client request as the
//! gateway makes them, in three buckets taken in turn, v1 and v2 alternating, the precision
//! changing every 8 requests through s, ms, us and ns, three tokens taking turns every 5
//! requests; every record admitted (its target resolved at the source), as the gateway queues
//! them. Contenders, in the same run against the same influxd, each into fresh buckets:
//! - stream-writer: the handler's in-process path, batches of 100 records (the deployed
//!   `BatchSize`; `--batch`) deserialised from JSON as the Lambda runtime does, planned and replayed
//!   (`batch::plan` + `replay::Replayer::run`), one batch after another as one shard's are;
//! - direct client: the same points written as a batching client does (Telegraf's
//!   `metric_batch_size` = 5,000): 5,000 lines per request, gzip (the records' compression),
//!   pooled connections, one request after another, nanosecond timestamps.
//!
//! With `--latency-ms N` every request (both contenders) goes through the test bed's fault
//! proxy adding N ms, a stand-in for the network between Lambda and the database. Each round
//! checks every value count before its time counts; contenders alternate which goes first.
//! Goals: at least 80% of the direct client's points/s; with 2 ms added, at least 1,000
//! records/s per shard.
//!
//! Run: `cargo bench --workspace --bench mixed_replay [-- --rounds N --latency-ms N --batch N]`
//! (`--batch`: records per invocation, the mapping's `BatchSize`; 100 by default).

use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine;
use bytes::Bytes;
use serde_json::json;
use shared::envelope::{Api, Chunker, Header, MAX_RECORD_BYTES, Target, WriteParams, gzip};
use shared::influx_client::{ClientOptions, http_client, send_write, write_request};
use shared::secret::{Endpoint, Mappings, Role};
use shared::sensitive::Sensitive;
use stream_writer::batch::{Item, plan};
use stream_writer::{DeadLetters, Replayer};
use testbed::Influxd;

const RECORDS: usize = 2_000;
const LINES: usize = 50;
const CLIENT_BATCH: usize = 5_000;
const PRECISIONS: [&str; 4] = ["s", "ms", "us", "ns"];

/// One round's traffic: the stream records and the same points as nanosecond lines.
struct Traffic {
    records: Vec<Vec<u8>>,
    lines_ns: Vec<Vec<String>>,
}

/// `buckets`: (name, ID) of the three buckets of one contender.
fn traffic(db: &Influxd, buckets: &[(String, String)], tokens: &[String], round: usize) -> Traffic {
    let mut records = Vec::with_capacity(RECORDS);
    let mut lines_ns: Vec<Vec<String>> = vec![Vec::new(); buckets.len()];
    for r in 0..RECORDS {
        let (bucket, bucket_id) = &buckets[r % buckets.len()];
        let api = if r % 2 == 0 { Api::V2 } else { Api::V1 };
        let precision = PRECISIONS[(r / 8) % PRECISIONS.len()];
        let token = &tokens[(r / 5) % tokens.len()];
        let params = match api {
            Api::V2 => WriteParams {
                org: Some(db.org.clone()),
                bucket: Some(bucket.clone()),
                precision: Some(precision.into()),
                ..Default::default()
            },
            Api::V1 => WriteParams {
                db: Some(bucket.clone()),
                rp: Some("autogen".into()),
                precision: Some(precision.into()),
                ..Default::default()
            },
        };
        let header = Header {
            api,
            params,
            target: Some(Target {
                org_id: db.org_id.clone(),
                org: db.org.clone(),
                bucket_id: bucket_id.clone(),
                bucket: bucket.clone(),
                rp: (api == Api::V1).then(|| "autogen".into()),
            }),
            authorization: Some(Sensitive::new(format!("Token {token}"))),
            received_at_ns: 0,
            content_type: None,
            request_id: format!("mixed-{round}-{r}"),
            chunk: 0,
            chunks: 0,
            lines: 0,
            raw_bytes: 0,
        };
        let mut c = Chunker::new(header, MAX_RECORD_BYTES, 32).expect("chunker");
        let per_unit: i64 = match precision {
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" => 1_000,
            _ => 1,
        };
        for l in 0..LINES {
            let i = r * LINES + l;
            // Whole seconds apart, so every precision can carry the point's time.
            let ns = 1_700_000_000_000_000_000i64 + i as i64 * 1_000_000_000;
            let key = format!(
                "mixed,host=h{},region=r{} usage={}.{},count={}i,ok={}",
                i % 50,
                i % 5,
                i % 100,
                i % 7,
                i,
                i.is_multiple_of(3)
            );
            c.push_line(format!("{key} {}", ns / per_unit).as_bytes(), b"").expect("line");
            lines_ns[r % buckets.len()].push(format!("{key} {ns}\n"));
        }
        records.push(c.finish().expect("finish").remove(0).to_vec());
    }
    Traffic { records, lines_ns }
}

fn events(data: &[Vec<u8>], batch: usize) -> Vec<String> {
    data.chunks(batch)
        .enumerate()
        .map(|(b, chunk)| {
            let recs: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let seq = format!("{:056}", b * batch + i);
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

/// Replays the batches one after another; returns the time and the writes made.
async fn stream_writer(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    dead: &DeadLetters,
    events: &[String],
) -> (Duration, usize) {
    let start = Instant::now();
    let mut writes = 0;
    for e in events {
        let event: KinesisEvent = serde_json::from_str(e).expect("event");
        let items: Vec<Item<'_>> =
            event.records.iter().enumerate().map(|(i, r)| Item::from_event(i, r)).collect();
        let steps = plan(&items, Role::Source, &Mappings::default(), 10 * 1024 * 1024);
        let replayer = Replayer::new(
            http,
            endpoint,
            dead,
            Instant::now() + Duration::from_secs(60),
            Duration::from_secs(30),
        );
        replayer.run(&items, &steps).await.expect("replay");
        writes += replayer.stats().writes;
    }
    (start.elapsed(), writes)
}

/// The same points, 5,000 lines per gzip request, bucket by bucket.
async fn direct_client(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    db: &Influxd,
    buckets: &[(String, String)],
    lines: &[Vec<String>],
) -> (Duration, usize) {
    // Bodies are made before the clock starts, as a client's buffer is filled as points come.
    let mut bodies = Vec::new();
    for ((bucket, _), lines) in buckets.iter().zip(lines) {
        for chunk in lines.chunks(CLIENT_BATCH) {
            bodies.push((bucket.clone(), Bytes::from(gzip(chunk.concat().as_bytes()).expect("gzip"))));
        }
    }
    let auth = Sensitive::new(db.auth());
    let start = Instant::now();
    for (bucket, body) in &bodies {
        let params = WriteParams {
            org: Some(db.org.clone()),
            bucket: Some(bucket.clone()),
            precision: Some("ns".into()),
            ..Default::default()
        };
        let req = write_request(http, endpoint.base(), Api::V2, &params, Some(&auth), body.clone());
        assert!(send_write(req).await.is_done());
    }
    (start.elapsed(), bodies.len())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--test" || a == "--list") {
        println!("mixed replay bench: run with `cargo bench --workspace --bench mixed_replay`");
        return;
    }
    let option = |name: &str| {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<u64>().ok())
    };
    let rounds = option("--rounds").unwrap_or(3) as usize;
    let latency_ms = option("--latency-ms").unwrap_or(0);
    let batch = option("--batch").unwrap_or(100) as usize;
    let db = Influxd::start_named("mixed-replay-bench").await;
    let proxy = testbed::FaultProxy::start(&db.url).await;
    proxy.set_latency(Duration::from_millis(latency_ms));
    let url = if latency_ms > 0 { proxy.url.clone() } else { db.url.clone() };
    let endpoint = Endpoint { url, skip_verify: false };
    let http = http_client(&ClientOptions::default()).expect("client");
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
    // Three writers' tokens, each allowed to write every bucket of the org and to read the org
    // and its buckets (what the gateway needs to resolve where a write lands).
    let mut tokens = vec![db.token.clone()];
    for n in 0..2 {
        let (status, made) = db
            .api(
                reqwest::Method::POST,
                "/api/v2/authorizations",
                Some(json!({"orgID": db.org_id, "description": format!("writer {n}"), "permissions": [
                    {"action": "write", "resource": {"type": "buckets", "orgID": db.org_id}},
                    {"action": "read", "resource": {"type": "buckets", "orgID": db.org_id}},
                    {"action": "read", "resource": {"type": "orgs", "id": db.org_id}}]})),
            )
            .await;
        assert_eq!(status, 201, "{made}");
        tokens.push(made["token"].as_str().expect("token").to_string());
    }

    let (mut ours, mut direct) = (Vec::new(), Vec::new());
    let (mut our_writes, mut direct_writes) = (0, 0);
    for round in 0..rounds {
        let mut sets: Vec<Vec<(String, String)>> = Vec::new();
        for who in ["ours", "direct"] {
            let mut set = Vec::new();
            for b in 0..3 {
                let name = format!("{who}-{round}-{b}");
                let id = db.create_bucket(&name).await;
                set.push((name, id));
            }
            sets.push(set);
        }
        let t_ours = traffic(&db, &sets[0], &tokens, round);
        let t_direct = traffic(&db, &sets[1], &tokens, round);
        let ev = events(&t_ours.records, batch);
        let mut times = [Duration::ZERO; 2];
        for k in 0..2 {
            let which = (round + k) % 2;
            let (t, w) = match which {
                0 => stream_writer(&http, &endpoint, &dead, &ev).await,
                _ => direct_client(&http, &endpoint, &db, &sets[1], &t_direct.lines_ns).await,
            };
            times[which] = t;
            if which == 0 {
                our_writes = w;
            } else {
                direct_writes = w;
            }
        }
        // Three fields per line.
        let expected = (RECORDS * LINES * 3) as u64;
        for set in &sets {
            let mut total = 0;
            for (name, _) in set {
                total += db.count(name).await;
            }
            assert_eq!(total, expected, "{set:?} holds every value");
        }
        println!(
            "round {round}: stream-writer {:.3} s ({our_writes} writes), direct client {:.3} s ({direct_writes} writes)",
            times[0].as_secs_f64(),
            times[1].as_secs_f64()
        );
        ours.push(times[0]);
        direct.push(times[1]);
    }
    let (o, d) = (median(ours), median(direct));
    let points = (RECORDS * LINES) as f64;
    println!(
        "mixed replay of {RECORDS} records x {LINES} lines (batches of {batch}; 3 buckets, v1/v2, 4 precisions, 3 tokens), {latency_ms} ms added latency, median of {rounds} rounds:"
    );
    println!(
        "  stream-writer (one shard): {:.3} s, {:.0} records/s, {:.0} points/s, {our_writes} writes",
        o.as_secs_f64(),
        RECORDS as f64 / o.as_secs_f64(),
        points / o.as_secs_f64()
    );
    println!(
        "  direct client (5,000 lines per request): {:.3} s, {:.0} points/s, {direct_writes} writes",
        d.as_secs_f64(),
        points / d.as_secs_f64()
    );
    println!(
        "  stream-writer / direct client, points/s: {:.2} (goal: at least 0.80)",
        d.as_secs_f64() / o.as_secs_f64()
    );
}
