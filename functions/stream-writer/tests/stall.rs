//! A shard that cannot move on is recorded where the operator looks (`stalls/` in the
//! dead-letter bucket), and the operator's park rule moves exactly the records it names into
//! dead-letter storage — the handler as Lambda runs it, against a real influxd and moto (S3,
//! Secrets Manager).
//!
//! Before these, a revoked token stopped a shard with nothing but a log line per retry: no
//! record of which shard, since when or why, and no way to set the record aside and resume.

use std::time::{Duration, Instant};

use serde_json::Value;
use shared::barrier::{Barrier, Control, Passed, passed_key};
use shared::influx_client::{ClientOptions, EndpointClients};
use shared::secret::{Role, SecretCache, SecretsManagerSource};
use shared::settings::Settings;
use shared::stall::{ParkRule, Stall, StallClass, park_key, stall_key};
use stream_writer::{BarrierBook, Config, DeadLetters, Deps, StallBook, handle};
use testbed::{Influxd, Moto};

mod support;

const T0: i64 = 1_700_000_000_000_000_000;
const BUCKET: &str = "dead-letters";
const SHARD: &str = "shardId-000000000000";

struct Bed {
    db: Influxd,
    moto: Moto,
    s3: aws_sdk_s3::Client,
    deps: Deps,
}

impl Bed {
    async fn start() -> Bed {
        Bed::start_with(serde_json::json!({})).await
    }

    /// With the secret's `mappings`.
    async fn start_with(mappings: Value) -> Bed {
        Bed::start_configured(mappings, &[]).await
    }

    /// With the secret's `mappings` and more of the writer's settings.
    async fn start_configured(mappings: Value, settings: &[(&str, &str)]) -> Bed {
        let (db, moto) = tokio::join!(Influxd::start(), Moto::start());
        let aws = moto.sdk_config().await;
        let s3 = moto.s3().await;
        s3.create_bucket().bucket(BUCKET).send().await.expect("create the dead-letter bucket");
        let secrets = aws_sdk_secretsmanager::Client::new(&aws);
        let secret = serde_json::json!({
            "source": {"url": db.url},
            "destination": {"url": db.url},
            "read": "source",
            "mappings": mappings,
        });
        secrets
            .create_secret()
            .name("endpoints")
            .secret_string(secret.to_string())
            .send()
            .await
            .expect("create the endpoint secret");
        let mut pairs = vec![
            ("TARGET", "destination"),
            ("SECRET_ID", "endpoints"),
            ("DEAD_LETTER_BUCKET", BUCKET),
            ("STALL_ALERT_SECONDS", "0"),
        ];
        pairs.extend_from_slice(settings);
        let config = Config::from_settings(&Settings::from_pairs(&pairs)).expect("config");
        let deps = Deps {
            secret: SecretCache::new(
                SecretsManagerSource::new(secrets, "endpoints"),
                Duration::from_secs(60),
            ),
            http: EndpointClients::new(ClientOptions::default()).expect("clients"),
            dead_letters: DeadLetters::new(
                s3.clone(),
                BUCKET.into(),
                "dead-letters/".into(),
                Role::Destination,
            ),
            stalls: StallBook::new(
                s3.clone(),
                BUCKET.into(),
                Role::Destination,
                config.stall_alert,
                "test-writer".into(),
            ),
            barriers: BarrierBook::new(s3.clone(), BUCKET.into(), Role::Destination),
            config,
        };
        Bed { db, moto, s3, deps }
    }

    fn good(&self, v: i64) -> Vec<u8> {
        support::record(&self.db, &[format!("m v={v} {}", T0 + v)], &self.db.token)
    }

    fn revoked(&self, v: i64) -> Vec<u8> {
        support::record(&self.db, &[format!("m v={v} {}", T0 + v)], "a-revoked-token")
    }

    /// Runs the handler on `records`, the `first`th and following of the shard, with `budget`;
    /// returns the sequence number it stops at.
    async fn replay(&self, first: usize, records: &[Vec<u8>], budget: Duration) -> Option<String> {
        let event = support::event_from(first, records);
        let answer = handle(&self.deps, &event, Instant::now() + budget).await;
        answer.batch_item_failures.first().and_then(|f| f.item_identifier.clone())
    }

    async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let out = self.s3.get_object().bucket(BUCKET).key(key).send().await.ok()?;
        Some(out.body.collect().await.expect("read").into_bytes().to_vec())
    }

    async fn stall(&self) -> Option<Stall> {
        let bytes = self.object(&stall_key(Role::Destination, SHARD)).await?;
        Some(serde_json::from_slice(&bytes).expect("a stall object is a Stall"))
    }

    async fn park(&self, status: Option<u16>, expires_in_ms: i64) {
        let now = stream_writer::stall::now_ms();
        let rule = ParkRule {
            target: Role::Destination,
            shard_id: SHARD.into(),
            status,
            parked_at_ms: now,
            expires_at_ms: now + expires_in_ms,
            note: "token revoked, ticket 42".into(),
        };
        self.s3
            .put_object()
            .bucket(BUCKET)
            .key(park_key(Role::Destination, SHARD))
            .body(serde_json::to_vec(&rule).unwrap().into())
            .send()
            .await
            .expect("put the park rule");
    }

    async fn dead_letters(&self) -> Vec<Value> {
        let list =
            self.s3.list_objects_v2().bucket(BUCKET).prefix("dead-letters/").send().await.expect("list");
        let mut out = Vec::new();
        for key in list.contents().iter().filter_map(|o| o.key()) {
            out.push(serde_json::from_slice(&self.object(key).await.expect("get")).expect("JSON"));
        }
        out
    }

    fn barrier(&self, id: &str) -> Vec<u8> {
        Control::Barrier(Barrier { id: id.into(), put_at_ns: T0, shard_id: SHARD.into() }).encode().unwrap()
    }

    /// This writer's proof of passing barrier `id`, if it recorded one.
    async fn passed(&self, id: &str) -> Option<Passed> {
        let bytes = self.object(&passed_key(Role::Destination, SHARD, id)).await?;
        Some(serde_json::from_slice(&bytes).expect("a proof is a Passed"))
    }

    async fn values(&self) -> Vec<String> {
        let flux = format!(
            "from(bucket: \"{}\") |> range(start: 0) |> filter(fn: (r) => r._measurement == \"m\")",
            self.db.bucket
        );
        self.db.query(&flux).await.iter().map(|r| r.get("_value").unwrap_or("").to_string()).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_stopped_by_a_revoked_token_is_recorded_since_its_first_failure_and_cleared_when_it_moves_on()
{
    let bed = Bed::start().await;
    let blocked = vec![bed.good(1), bed.revoked(2), bed.good(3)];

    let stop = bed.replay(0, &blocked, Duration::from_secs(2)).await;
    assert_eq!(
        stop.as_deref(),
        Some(support::sequence_number(1).as_str()),
        "the batch stops at the revoked record"
    );
    let first = bed.stall().await.expect("the stall is recorded");
    assert_eq!(first.shard_id, SHARD);
    assert_eq!(first.sequence_number, support::sequence_number(1));
    assert_eq!((first.class, first.status, first.failures), (StallClass::Configuration, Some(401), 1));
    assert_eq!(first.bucket.as_deref(), Some(bed.db.bucket.as_str()));
    assert!(first.reason.starts_with("401 from"), "{}", first.reason);
    assert!(first.arrival_ms.is_some(), "the arrival time gives the expiry headroom");
    let text = String::from_utf8(bed.object(&stall_key(Role::Destination, SHARD)).await.unwrap()).unwrap();
    assert!(!text.contains(&bed.db.token) && !text.contains("a-revoked-token"), "no credential in {text}");

    // Lambda retries from the blocking record: same record, same `since`, one more failure.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let stop = bed.replay(1, &blocked[1..], Duration::from_secs(2)).await;
    assert_eq!(stop.as_deref(), Some(support::sequence_number(1).as_str()));
    let second = bed.stall().await.expect("still stalled");
    assert_eq!((second.since_ms, second.failures), (first.since_ms, 2));
    assert!(second.last_failure_ms > first.last_failure_ms);

    // The token is fixed (here: a good record in its place): the shard moves on and the stall
    // object goes.
    assert_eq!(bed.replay(1, &[bed.good(2), bed.good(3)], Duration::from_secs(10)).await, None);
    assert!(bed.stall().await.is_none(), "a shard that moved on is not stalled");
    assert_eq!(bed.values().await, vec!["1", "2", "3"]);
}

/// An invocation retries a failing write for up to its whole timeout (300 s by default), and the
/// stall was recorded and `StalledSeconds` published only when it ended: against the alarm's
/// one-minute periods (missing data not breaching) a lasting stall went ALARM, OK, ALARM, and
/// `status` showed nothing for minutes. The heartbeat records it while the retries go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_is_recorded_again_and_again_while_one_invocation_retries_it() {
    let bed = Bed::start_configured(serde_json::json!({}), &[("STALL_HEARTBEAT_SECONDS", "0.5")]).await;
    let blocked = vec![bed.good(1), bed.revoked(2)];
    let budget = Duration::from_secs(6);
    let started = Instant::now();
    let watch = async {
        // (milliseconds into the invocation, the stall's last failure) for every change seen.
        let mut seen: Vec<(u128, i64)> = Vec::new();
        while started.elapsed() < budget - Duration::from_millis(800) {
            if let Some(stall) = bed.stall().await
                && seen.last().is_none_or(|(_, last)| *last != stall.last_failure_ms)
            {
                seen.push((started.elapsed().as_millis(), stall.last_failure_ms));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    };
    let (stop, seen) = tokio::join!(bed.replay(0, &blocked, budget), watch);
    assert_eq!(stop.as_deref(), Some(support::sequence_number(1).as_str()), "it stops at the revoked record");
    assert!(
        seen.len() >= 4,
        "the stall was recorded {} time(s) during a {budget:?} invocation with a 0.5 s heartbeat, \
         at (ms into it, last failure) {seen:?}: a lasting stall must keep its metric coming",
        seen.len()
    );
    let first_seen = seen.first().map(|(at, _)| *at).unwrap_or(u128::MAX);
    assert!(first_seen < 2_000, "recorded {first_seen} ms into the invocation, not at its end");
    let stall = bed.stall().await.expect("recorded");
    assert_eq!((stall.class, stall.status, stall.failures), (StallClass::Configuration, Some(401), 1));
    assert!(stall.since_ms <= seen[0].1, "since its first failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_park_rule_moves_exactly_the_records_failing_with_its_status_into_dead_letters() {
    let bed = Bed::start().await;
    let batch = vec![bed.good(1), bed.revoked(2), bed.revoked(3), bed.good(4)];

    // A rule for another status parks nothing: the shard stays stopped.
    bed.park(Some(403), 60_000).await;
    assert!(bed.replay(0, &batch, Duration::from_secs(2)).await.is_some(), "a 403 rule must not park a 401");
    // An expired rule parks nothing either.
    bed.park(Some(401), -1).await;
    assert!(
        bed.replay(1, &batch[1..], Duration::from_secs(2)).await.is_some(),
        "an expired rule parks nothing"
    );
    assert!(bed.dead_letters().await.is_empty());

    // The rule for 401: both revoked records go to dead-letter storage with the operator's
    // note, the good ones are written, and the batch goes through quickly (no retry until the
    // deadline).
    bed.park(Some(401), 60_000).await;
    let started = Instant::now();
    assert_eq!(bed.replay(1, &batch[1..], Duration::from_secs(20)).await, None);
    assert!(started.elapsed() < Duration::from_secs(15), "parking must not wait for the deadline");
    assert_eq!(bed.values().await, vec!["1", "4"]);
    let mut letters = bed.dead_letters().await;
    letters.sort_by_key(|l| l["sequence_number"].as_str().unwrap_or("").to_string());
    assert_eq!(letters.len(), 2, "{letters:?}");
    for (letter, v) in letters.iter().zip([2, 3]) {
        assert_eq!(letter["status"], 401);
        let reason = letter["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("parked by the operator (token revoked, ticket 42) after: 401"),
            "{reason}"
        );
        assert_eq!(letter["line_protocol"].as_str(), Some(format!("m v={v} {}\n", T0 + v).as_str()));
        let text = letter.to_string();
        assert!(!text.contains("a-revoked-token") && !text.contains(&bed.db.token), "{text}");
    }
    assert!(bed.stall().await.is_none(), "the shard moved on");
    drop(bed.moto);
}

/// On main a write to a bucket outside `mappings.buckets` was skipped at the destination without
/// a word. With `"unmapped": "fail"` the shard stops at it, visibly, until a mapping is added or
/// the operator parks it; with `"source-only"` it is counted and skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_an_unmapped_bucket_stalls_the_shard_when_the_secret_says_fail() {
    let bed = Bed::start_with(serde_json::json!({"buckets": {"other": "other"}, "unmapped": "fail"})).await;
    let batch = vec![bed.good(1), bed.good(2)];
    let stop = bed.replay(0, &batch, Duration::from_secs(2)).await;
    assert_eq!(
        stop.as_deref(),
        Some(support::sequence_number(0).as_str()),
        "the first record stops the batch"
    );
    let stall = bed.stall().await.expect("the stall is recorded");
    assert_eq!((stall.class, stall.status), (StallClass::Configuration, None));
    assert!(stall.reason.contains("not in the endpoint secret's mappings.buckets"), "{}", stall.reason);
    assert_eq!(stall.bucket.as_deref(), Some(bed.db.bucket.as_str()));
    assert!(bed.values().await.is_empty(), "nothing written past it");

    // The operator parks failures without a status: the records go to dead-letter storage.
    bed.park(None, 60_000).await;
    assert_eq!(bed.replay(0, &batch, Duration::from_secs(10)).await, None);
    let letters = bed.dead_letters().await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(letters.iter().all(|l| l["reason"].as_str().unwrap_or("").starts_with("parked by the operator")));
}

/// With `"unmapped": "source-only"` the records are not replayed and are counted per bucket
/// where `status` and `verify` read them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_unmapped_buckets_left_to_the_source_are_counted_per_bucket() {
    let bed =
        Bed::start_with(serde_json::json!({"buckets": {"other": "other"}, "unmapped": "source-only"})).await;
    assert_eq!(bed.replay(0, &[bed.good(1), bed.good(2)], Duration::from_secs(5)).await, None);
    assert_eq!(bed.replay(2, &[bed.good(3)], Duration::from_secs(5)).await, None);
    assert!(bed.values().await.is_empty(), "not replayed");
    let key = shared::stall::source_only_key(Role::Destination, SHARD);
    let count: shared::stall::SourceOnly =
        serde_json::from_slice(&bed.object(&key).await.expect("the count is kept")).unwrap();
    assert_eq!(count.by_bucket.get(&bed.db.bucket), Some(&3), "{count:?}");
    assert!(bed.stall().await.is_none());
}

/// A secret the writer cannot use (here: a bucket list without `"unmapped"`, as a secret written
/// before that became required) stops every batch. The stall must be recorded like any other,
/// with the secret's error as its reason, or `status` shows nothing while the shard waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_the_writer_cannot_use_is_recorded_as_a_stall_with_its_error() {
    let bed = Bed::start_with(serde_json::json!({"buckets": {"other": "other"}})).await;
    let stop = bed.replay(0, &[bed.good(1)], Duration::from_secs(2)).await;
    assert_eq!(stop.as_deref(), Some(support::sequence_number(0).as_str()), "the batch is retried");
    let stall = bed.stall().await.expect("the stall is recorded");
    assert_eq!((stall.class, stall.status), (StallClass::Configuration, None));
    assert!(stall.reason.contains("\"unmapped\""), "{}", stall.reason);
    assert!(bed.values().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_is_passed_only_once_every_record_before_it_is_written_and_is_never_written_itself() {
    let bed = Bed::start().await;
    // A stalled record before the barrier: the barrier is not passed while it blocks, whatever
    // the number of records behind it.
    let blocked = vec![bed.good(1), bed.revoked(2), bed.barrier("b-1"), bed.good(3)];
    let stop = bed.replay(0, &blocked, Duration::from_secs(2)).await;
    assert_eq!(stop.as_deref(), Some(support::sequence_number(1).as_str()));
    assert!(bed.passed("b-1").await.is_none(), "a barrier behind a stalled record is not passed");

    // Fixed: the retry writes the record, passes the barrier, and goes on.
    let retried = vec![bed.good(2), bed.barrier("b-1"), bed.good(3)];
    assert_eq!(bed.replay(1, &retried, Duration::from_secs(10)).await, None);
    let proof = bed.passed("b-1").await.expect("the barrier is recorded as passed");
    assert_eq!(proof.target, Role::Destination);
    assert_eq!(proof.shard_id, SHARD);
    assert_eq!(proof.sequence_number, support::sequence_number(2));
    assert_eq!(proof.put_at_ns, T0);
    assert!(proof.passed_at_ms > 0);
    assert_eq!(bed.values().await, vec!["1", "2", "3"], "the barrier is written nowhere");
    assert!(bed.dead_letters().await.is_empty(), "a barrier is never dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_whose_proof_cannot_be_stored_stops_the_batch_there() {
    let bed = Bed::start().await;
    bed.s3.delete_bucket().bucket(BUCKET).send().await.expect("remove the (empty) dead-letter bucket");
    let batch = vec![bed.good(1), bed.barrier("b-2"), bed.good(2)];
    let stop = bed.replay(0, &batch, Duration::from_secs(2)).await;
    assert_eq!(stop.as_deref(), Some(support::sequence_number(1).as_str()), "retried from the barrier");
    assert_eq!(bed.values().await, vec!["1"], "what is after the barrier waits for its proof");
}
