//! The invocation's deadline is checked before every write, not only after a failure: a
//! database that hangs gets the batch handed back (`batchItemFailures` from the held record)
//! before the function times out, and no write starts that cannot finish in time.
//!
//! Regression (issue 11, item 7): the deadline was read only after a failed write, so one write
//! held by the database ran to the client's write timeout (30 s by default) and the invocation
//! timed out instead of answering.

use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEvent;
use shared::influx_client::{ClientOptions, http_client};
use shared::secret::{Endpoint, Mappings, Role};
use stream_writer::Replayer;
use stream_writer::batch::{Item, plan};
use testbed::{FaultProxy, Influxd};

/// A client whose own write timeout is far longer than any deadline here.
const WRITE_TIMEOUT: Duration = Duration::from_secs(600);

mod support;

/// A Kinesis event of `n` records, one point each, for `db`.
fn event(db: &Influxd, n: usize) -> KinesisEvent {
    let records: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            support::record(
                db,
                &[format!("deadline v={i} {}", 1_700_000_000_000_000_000i64 + i as i64)],
                &db.token,
            )
        })
        .collect();
    support::event(&records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_holds_a_write_gets_the_batch_back_before_the_deadline() {
    let db = Influxd::start().await;
    let proxy = FaultProxy::start(&db.url).await;
    proxy.stall_next(1, Duration::from_secs(120));
    let http =
        http_client(&ClientOptions { timeout: WRITE_TIMEOUT, ..ClientOptions::default() }).expect("client");
    let endpoint = Endpoint { url: proxy.url.clone(), skip_verify: false };
    let dead = support::unused_dead_letters();
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
    let dead = support::unused_dead_letters();
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
