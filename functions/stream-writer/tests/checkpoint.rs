//! Where a replayed batch stops, and what it keeps aside, against a real influxd (and moto's S3
//! for dead-letter storage): each failure class, a bad record among good ones, a 413 split, a
//! dead-letter write that fails. The deadline has its own tests (`deadline.rs`).
//!
//! The checkpoint is what the handler answers: `Ok` (the whole batch is durable) or a `Stop` at
//! the first record not durably written, from which Lambda retries.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use shared::influx_client::{ClientOptions, http_client};
use shared::secret::{Endpoint, Mappings, Role};
use stream_writer::batch::{Item, plan};
use stream_writer::{DeadLetters, Replayer, Stop};
use testbed::{FaultProxy, Influxd, Moto};

mod support;

const T0: i64 = 1_700_000_000_000_000_000;

/// What a test replays into.
struct Bed {
    db: Influxd,
    proxy: FaultProxy,
    moto: Moto,
    http: reqwest::Client,
    endpoint: Endpoint,
}

impl Bed {
    async fn start() -> Bed {
        let (db, moto) = tokio::join!(Influxd::start(), Moto::start());
        let proxy = FaultProxy::start(&db.url).await;
        let http = http_client(&ClientOptions::default()).expect("client");
        let endpoint = Endpoint { url: proxy.url.clone(), skip_verify: false };
        Bed { db, proxy, moto, http, endpoint }
    }

    /// Dead-letter storage in moto's S3; the bucket exists only when `create`.
    async fn dead_letters(&self, bucket: &str, create: bool) -> DeadLetters {
        let s3 = self.moto.s3().await;
        if create {
            s3.create_bucket().bucket(bucket).send().await.expect("create the dead-letter bucket");
        }
        DeadLetters::new(s3, bucket.into(), "dead-letters/".into(), Role::Destination)
    }

    /// Replays `records` as one batch, with `budget` before the deadline.
    async fn replay(&self, records: &[Vec<u8>], dead: &DeadLetters, budget: Duration) -> Result<(), Stop> {
        let event = support::event(records);
        let items: Vec<Item<'_>> =
            event.records.iter().enumerate().map(|(i, r)| Item::from_event(i, r)).collect();
        let steps = plan(&items, Role::Destination, &Mappings::default(), 10 * 1024 * 1024);
        let replayer =
            Replayer::new(&self.http, &self.endpoint, dead, Instant::now() + budget, Duration::from_secs(30));
        replayer.run(&items, &steps).await
    }

    /// One record of `m v=<v> <t>` lines, with the database's token.
    fn record(&self, points: &[(&str, i64)]) -> Vec<u8> {
        let lines: Vec<String> = points.iter().map(|(v, t)| format!("m v={v} {}", T0 + t)).collect();
        support::record(&self.db, &lines, &self.db.token)
    }

    /// time offset -> value of every point of `m` in the database.
    async fn stored(&self) -> BTreeMap<i64, String> {
        let flux = format!(
            "from(bucket: \"{}\") |> range(start: 0) |> filter(fn: (r) => r._measurement == \"m\")",
            self.db.bucket
        );
        self.db
            .query(&flux)
            .await
            .iter()
            .map(|r| {
                let t = time::OffsetDateTime::parse(
                    r.get("_time").unwrap_or(""),
                    &time::format_description::well_known::Rfc3339,
                )
                .expect("an RFC3339 _time")
                .unix_timestamp_nanos() as i64;
                (t - T0, r.get("_value").unwrap_or("").to_string())
            })
            .collect()
    }

    /// The dead letters in `bucket`: (key, stored JSON).
    async fn letters(&self, bucket: &str) -> Vec<(String, serde_json::Value)> {
        let s3 = self.moto.s3().await;
        let list = s3.list_objects_v2().bucket(bucket).send().await.expect("list dead letters");
        let mut out = Vec::new();
        for key in list.contents().iter().filter_map(|o| o.key()) {
            let obj = s3.get_object().bucket(bucket).key(key).send().await.expect("get a dead letter");
            let bytes = obj.body.collect().await.expect("read a dead letter").into_bytes();
            out.push((key.to_string(), serde_json::from_slice(&bytes).expect("a dead letter is JSON")));
        }
        out
    }
}

fn expected(points: &[(i64, &str)]) -> BTreeMap<i64, String> {
    points.iter().map(|(t, v)| (*t, v.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_bad_records_among_good_ones_are_dead_lettered_and_the_batch_goes_on() {
    let bed = Bed::start().await;
    let dead = bed.dead_letters("dead-letters", true).await;
    let records = vec![
        bed.record(&[("1", 0)]),
        bed.record(&[("2", 1)]),
        // 400: not line protocol (the whole write is refused).
        support::record(&bed.db, &["m v= 2".to_string()], &bed.db.token),
        bed.record(&[("4", 3)]),
        // 422: a string where the field holds floats (a partial write).
        bed.record(&[("\"text\"", 4)]),
        bed.record(&[("6", 5)]),
    ];
    bed.replay(&records, &dead, Duration::from_secs(30)).await.expect("the batch goes on past bad records");

    assert_eq!(bed.stored().await, expected(&[(0, "1"), (1, "2"), (3, "4"), (5, "6")]));
    let letters = bed.letters("dead-letters").await;
    let mut got: Vec<(String, u64, String)> = letters
        .iter()
        .map(|(_, l)| {
            (
                l["sequence_number"].as_str().unwrap_or("").to_string(),
                l["status"].as_u64().unwrap_or(0),
                l["line_protocol"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (support::sequence_number(2), 400, "m v= 2\n".to_string()),
            (support::sequence_number(4), 422, format!("m v=\"text\" {}\n", T0 + 4)),
        ],
        "exactly the two bad records, whole, with the database's status"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_write_that_fails_stops_the_batch_at_the_bad_record() {
    let bed = Bed::start().await;
    // The dead-letter bucket does not exist: the refused record cannot be kept aside.
    let dead = bed.dead_letters("no-such-bucket", false).await;
    let records = vec![
        bed.record(&[("1", 0)]),
        support::record(&bed.db, &["m v= 1".to_string()], &bed.db.token),
        bed.record(&[("3", 2)]),
    ];
    let stop =
        bed.replay(&records, &dead, Duration::from_secs(30)).await.expect_err("nothing may be skipped");
    assert_eq!(stop.at, 1, "retried from the bad record, which was neither written nor kept: {stop:?}");
    assert!(stop.reason.contains("dead-letter"), "{}", stop.reason);
    assert_eq!(bed.stored().await, expected(&[(0, "1")]), "the record after it waits for the retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_413_splits_writes_until_each_fits_and_every_point_lands() {
    let bed = Bed::start().await;
    let dead = bed.dead_letters("dead-letters", true).await;
    // Four records of 200 points with values that compress poorly; a body limit well under one
    // record's compressed size forces both splits: the coalesced write, then each record's lines.
    let mut want = Vec::new();
    let records: Vec<Vec<u8>> = (0..4)
        .map(|r| {
            let points: Vec<(String, i64)> = (0..200)
                .map(|i| {
                    let t = r * 1_000 + i;
                    let v = format!("{}.{}", (t * 7919) % 104_729, (t * 104_729) % 7919);
                    want.push((t, v.clone()));
                    (v, t)
                })
                .collect();
            let refs: Vec<(&str, i64)> = points.iter().map(|(v, t)| (v.as_str(), *t)).collect();
            bed.record(&refs)
        })
        .collect();
    let one_record = records[0].len() as u64;
    bed.proxy.limit_body(one_record / 3);
    bed.replay(&records, &dead, Duration::from_secs(60)).await.expect("every piece fits in the end");

    // Compared as the floats they are (influxd prints 17420.24 for 17420.2400).
    let as_float = |v: &str| v.parse::<f64>().unwrap_or(f64::NAN);
    let got = bed.stored().await;
    assert_eq!(got.len(), 800, "every point landed");
    let wrong: Vec<&(i64, String)> =
        want.iter().filter(|(t, v)| got.get(t).map(|g| as_float(g)) != Some(as_float(v))).collect();
    assert!(wrong.is_empty(), "{} points differ, e.g. {:?}", wrong.len(), &wrong[..wrong.len().min(3)]);
    assert!(bed.proxy.stats().too_large >= 4, "{:?}", bed.proxy.stats());
    assert!(bed.letters("dead-letters").await.is_empty(), "a split is not bad data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_a_refused_credential_stops_the_batch_at_its_record() {
    let bed = Bed::start().await;
    let dead = bed.dead_letters("dead-letters", true).await;

    // 503 twice, then the database answers: retried within the invocation, all written.
    bed.proxy.fail_next(2, 0);
    let records = vec![bed.record(&[("1", 0)]), bed.record(&[("2", 1)])];
    bed.replay(&records, &dead, Duration::from_secs(30)).await.expect("retried past the 503s");
    assert_eq!(bed.proxy.stats().failed, 2);
    assert_eq!(bed.stored().await, expected(&[(0, "1"), (1, "2")]));

    // 401 (a token the database does not know): retried until the deadline, never dropped, and
    // the batch handed back from that record; the one before it is written, the one after waits.
    let records = vec![
        bed.record(&[("10", 10)]),
        support::record(&bed.db, &[format!("m v=11 {}", T0 + 11)], "not-a-token"),
        bed.record(&[("12", 12)]),
    ];
    let stop =
        bed.replay(&records, &dead, Duration::from_secs(2)).await.expect_err("the credential is refused");
    assert_eq!(stop.at, 1, "{stop:?}");
    assert!(stop.reason.starts_with("401"), "{}", stop.reason);
    assert_eq!(bed.stored().await, expected(&[(0, "1"), (1, "2"), (10, "10")]));
    assert!(bed.letters("dead-letters").await.is_empty(), "a refused credential is not bad data");
}

/// Every occurrence of `needle` in a dead letter: in its bytes, and inside any base64 field
/// (gunzipped too, when it is gzip).
fn holds(letter_bytes: &[u8], needle: &str) -> bool {
    use base64::Engine;
    use std::io::Read;
    let contains = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    if contains(letter_bytes) {
        return true;
    }
    let doc: serde_json::Value = serde_json::from_slice(letter_bytes).unwrap_or_default();
    let Some(fields) = doc.as_object() else { return false };
    fields.iter().filter(|(k, _)| k.ends_with("base64")).filter_map(|(_, v)| v.as_str()).any(|b| {
        let raw = base64::engine::general_purpose::STANDARD.decode(b).unwrap_or_default();
        let mut unzipped = Vec::new();
        let _ = flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut unzipped);
        contains(&raw) || contains(&unzipped)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_hold_the_data_and_never_a_credential() {
    // Regression: a record whose header could not be read was stored raw, its credential
    // included; a record whose body did not decompress was stored without its data.
    let bed = Bed::start().await;
    let dead = bed.dead_letters("dead-letters", true).await;
    let token = bed.db.token.clone();

    // A header that is not JSON any more (a quote lost), the credential still in it.
    let mut bad_header = bed.record(&[("2", 1)]);
    let at =
        bad_header.windows(12).position(|w| w == b"\"request_id\"").expect("the header names request_id");
    bad_header.remove(at);
    // A body that is not gzip any more.
    let mut bad_body = bed.record(&[("3", 2)]);
    let len = bad_body.len();
    for b in &mut bad_body[len - 12..len - 4] {
        *b ^= 0x5a;
    }
    let corrupt_gzip = bad_body[bad_body.len() - 40..].to_vec();
    let records = vec![bed.record(&[("1", 0)]), bad_header, bad_body, bed.record(&[("4", 3)])];
    bed.replay(&records, &dead, Duration::from_secs(30)).await.expect("the batch goes on");
    assert_eq!(bed.stored().await, expected(&[(0, "1"), (3, "4")]));

    let s3 = bed.moto.s3().await;
    let list = s3.list_objects_v2().bucket("dead-letters").send().await.expect("list");
    let keys: Vec<String> = list.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        let obj = s3.get_object().bucket("dead-letters").key(key).send().await.expect("get");
        let bytes = obj.body.collect().await.expect("read").into_bytes();
        assert!(!holds(&bytes, &token), "{key} holds the token:\n{}", String::from_utf8_lossy(&bytes));
        let letter: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        // The data is there: the line protocol, or the body as it was.
        let has_data = letter["line_protocol"].is_string()
            || letter["body_gzip_base64"].as_str().is_some_and(|b| {
                use base64::Engine;
                let raw = base64::engine::general_purpose::STANDARD.decode(b).unwrap_or_default();
                raw.ends_with(&corrupt_gzip) || !raw.is_empty()
            });
        assert!(has_data, "{key} holds its data:\n{letter:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_a_newer_format_is_retried_never_dead_lettered() {
    // A writer older than the gateway cannot read its records: that is a deployment to fix, not
    // bad data.
    let bed = Bed::start().await;
    let dead = bed.dead_letters("dead-letters", true).await;
    let mut newer = bed.record(&[("2", 1)]);
    newer[3] += 1;
    let records = vec![bed.record(&[("1", 0)]), newer, bed.record(&[("3", 2)])];
    let stop = bed.replay(&records, &dead, Duration::from_secs(30)).await.expect_err("not readable yet");
    assert_eq!(stop.at, 1, "{stop:?}");
    assert!(stop.reason.contains("format version 2"), "{}", stop.reason);
    assert!(bed.letters("dead-letters").await.is_empty(), "never dead-lettered");
    assert_eq!(bed.stored().await, expected(&[(0, "1")]));
}
