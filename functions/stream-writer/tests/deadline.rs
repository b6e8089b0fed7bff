//! The invocation's deadline is checked before every write, not only after a failure: a
//! database that hangs gets the batch handed back (`batchItemFailures` from the held record)
//! before the function times out, and no write starts that cannot finish in time.
//!
//! Regression (issue 11, item 7): the deadline was read only after a failed write, so one write
//! held by the database ran to the client's write timeout (30 s by default) and the invocation
//! timed out instead of answering.

use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine;
use serde_json::json;
use shared::envelope::{Api, Chunker, Header, MAX_RECORD_BYTES, WriteParams};
use shared::influx_client::{ClientOptions, http_client};
use shared::secret::{Endpoint, Mappings, Role};
use shared::sensitive::Sensitive;
use stream_writer::batch::{Item, plan};
use stream_writer::{DeadLetters, Replayer};
use testbed::{FaultProxy, Influxd};

/// A client whose own write timeout is far longer than any deadline here.
const WRITE_TIMEOUT: Duration = Duration::from_secs(600);

/// A Kinesis event of `n` records, one point each, for `db`.
fn event(db: &Influxd, n: usize) -> KinesisEvent {
    let records: Vec<_> = (0..n)
        .map(|i| {
            let header = Header {
                api: Api::V2,
                params: WriteParams {
                    org: Some(db.org.clone()),
                    bucket: Some(db.bucket.clone()),
                    ..Default::default()
                },
                authorization: Some(Sensitive::new(db.auth())),
                received_at_ns: 0,
                content_type: None,
                request_id: format!("deadline-{i}"),
                chunk: 0,
                chunks: 0,
                lines: 0,
                raw_bytes: 0,
            };
            let mut c = Chunker::new(header, MAX_RECORD_BYTES, 8).expect("chunker");
            c.push_line(format!("deadline v={i} {}", 1_700_000_000_000_000_000i64 + i as i64).as_bytes(), b"")
                .expect("line");
            let data = c.finish().expect("finish").remove(0).to_vec();
            let seq = format!("{:056}", i + 1);
            json!({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "k", "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(data), "approximateArrivalTimestamp": 1.7e9},
                "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": format!("shardId-000000000000:{seq}"),
                "eventName": "aws:kinesis:record", "invokeIdentityArn": "arn:aws:iam::123456789012:role/r",
                "awsRegion": "us-east-1", "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("a Kinesis event")
}

/// Dead-letter storage that is never reached here (no record is bad data).
fn unused_dead_letters() -> DeadLetters {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .build();
    DeadLetters::new(
        aws_sdk_s3::Client::from_conf(conf),
        "unused".into(),
        "dead-letters/".into(),
        Role::Source,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_holds_a_write_gets_the_batch_back_before_the_deadline() {
    let db = Influxd::start().await;
    let proxy = FaultProxy::start(&db.url).await;
    proxy.stall_next(1, Duration::from_secs(120));
    let http =
        http_client(&ClientOptions { timeout: WRITE_TIMEOUT, ..ClientOptions::default() }).expect("client");
    let endpoint = Endpoint { url: proxy.url.clone(), skip_verify: false };
    let dead = unused_dead_letters();
    let event = event(&db, 3);
    let items: Vec<Item<'_>> =
        event.records.iter().enumerate().map(|(i, r)| Item::from_event(i, r)).collect();
    let steps = plan(&items, Role::Source, &Mappings::default(), 10 * 1024 * 1024);

    let deadline = Instant::now() + Duration::from_secs(3);
    let replayer = Replayer::new(&http, &endpoint, &dead, deadline, WRITE_TIMEOUT);
    // Far more than the deadline, far less than the write timeout or the database's hold.
    let outcome = tokio::time::timeout(Duration::from_secs(60), replayer.run(&items, &steps))
        .await
        .expect("the batch was handed back, not held until the write timed out");
    let stop = outcome.expect_err("the held write was not written");
    assert_eq!(stop.at, 0, "the batch is retried from its first record: {stop:?}");
    assert_eq!(proxy.stats().stalled, 1, "the database held the write");
    assert_eq!(db.count(&db.bucket).await, 0, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_write_starts_when_the_deadline_leaves_no_time_for_it() {
    let db = Influxd::start().await;
    let proxy = FaultProxy::start(&db.url).await;
    let http =
        http_client(&ClientOptions { timeout: WRITE_TIMEOUT, ..ClientOptions::default() }).expect("client");
    let endpoint = Endpoint { url: proxy.url.clone(), skip_verify: false };
    let dead = unused_dead_letters();
    let event = event(&db, 2);
    let items: Vec<Item<'_>> =
        event.records.iter().enumerate().map(|(i, r)| Item::from_event(i, r)).collect();
    let steps = plan(&items, Role::Source, &Mappings::default(), 10 * 1024 * 1024);

    let replayer = Replayer::new(&http, &endpoint, &dead, Instant::now(), WRITE_TIMEOUT);
    let stop = replayer.run(&items, &steps).await.expect_err("no time to write");
    assert_eq!(stop.at, 0, "{stop:?}");
    assert!(stop.reason.contains("deadline"), "{}", stop.reason);
    assert_eq!(proxy.stats().seen, 0, "no request reached the database");

    // With time, the same batch is written whole.
    let replayer =
        Replayer::new(&http, &endpoint, &dead, Instant::now() + Duration::from_secs(30), WRITE_TIMEOUT);
    replayer.run(&items, &steps).await.expect("written");
    assert_eq!(db.count(&db.bucket).await, 2);
}
