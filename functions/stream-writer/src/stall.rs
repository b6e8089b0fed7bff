//! Making a stall visible, and reading the operator's park rule (`shared::stall`).
//!
//! When a batch stops, the writer records the shard's [`Stall`] in the dead-letter bucket
//! (`stalls/<target>/<shard>.json`): the blocking record, since when it has blocked, why, and
//! its bucket. `influx-migration status` reads these objects. At every stop the writer also
//! publishes `StalledSeconds` (CloudWatch embedded metric format, one JSON line on stdout,
//! namespace [`METRIC_NAMESPACE`]), which the stall alarms of `infra/core.yaml` watch, and once a
//! shard has been stopped longer than `STALL_ALERT_SECONDS` an error line names the shard, the
//! bucket, the status and the reason. While one invocation retries a failing write (for up to
//! its whole timeout), the heartbeat ([`StallBook::still_stopped`], every
//! `STALL_HEARTBEAT_SECONDS`) records and publishes the same, so the metric never goes quiet for
//! a stall that lasts.
//!
//! A batch that goes through deletes its shard's stall object (at most once a minute per shard
//! and instance: the delete is idempotent and a clear shard needs nothing more).
//!
//! Every call here is best effort: failing to record a stall must never stop a write, and an
//! unreadable park rule parks nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shared::secret::Role;
pub use shared::stall::now_ms;
use shared::stall::{ParkRule, SourceOnly, Stall, park_key, source_only_key, stall_key};

use crate::batch::Item;
use crate::stop::Stop;

/// The CloudWatch namespace of the writers' own metrics.
pub const METRIC_NAMESPACE: &str = "InfluxLiveMigration";
/// How long a shard known to be clear is not cleared again.
const CLEAR_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// The stall objects and park rules of one target, in the dead-letter bucket.
pub struct StallBook {
    s3: aws_sdk_s3::Client,
    bucket: String,
    target: Role,
    alert_after: Duration,
    function_name: String,
    /// Shards this instance has cleared, and when.
    cleared: Mutex<HashMap<String, Instant>>,
}

impl StallBook {
    pub fn new(
        s3: aws_sdk_s3::Client,
        bucket: String,
        target: Role,
        alert_after: Duration,
        function_name: String,
    ) -> StallBook {
        StallBook { s3, bucket, target, alert_after, function_name, cleared: Mutex::new(HashMap::new()) }
    }

    /// The shard's park rule, if the operator made one and it can be read.
    pub async fn park_rule(&self, shard_id: &str) -> Option<ParkRule> {
        let key = park_key(self.target, shard_id);
        let bytes = self.get(&key).await?;
        match serde_json::from_slice::<ParkRule>(&bytes) {
            Ok(rule) => Some(rule),
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "the park rule is not readable; nothing is parked");
                None
            }
        }
    }

    /// Records that the batch of `item`'s shard stopped at `item`; returns the stall as recorded.
    pub async fn stopped(&self, item: &Item<'_>, stop: &Stop, bucket: Option<String>) -> Stall {
        self.record(item, stop, bucket, None, true).await
    }

    /// The stall heartbeat: the batch is still retrying `item`, failing since `first_failure_ms`
    /// in this invocation. Recorded and published as a stop is (without counting a failed
    /// batch), so that `status` shows it and `StalledSeconds` keeps coming while one invocation
    /// retries for minutes: the stall alarm (one-minute periods) holds until the shard moves.
    pub async fn still_stopped(
        &self,
        item: &Item<'_>,
        stop: &Stop,
        bucket: Option<String>,
        first_failure_ms: i64,
    ) -> Stall {
        self.record(item, stop, bucket, Some(first_failure_ms), false).await
    }

    async fn record(
        &self,
        item: &Item<'_>,
        stop: &Stop,
        bucket: Option<String>,
        first_failure_ms: Option<i64>,
        batch_failed: bool,
    ) -> Stall {
        let now = now_ms();
        let key = stall_key(self.target, item.shard_id);
        self.cleared.lock().unwrap_or_else(|p| p.into_inner()).remove(item.shard_id);
        let previous = match self.get(&key).await {
            Some(bytes) => serde_json::from_slice::<Stall>(&bytes).ok(),
            None => None,
        };
        let counted = u64::from(batch_failed);
        let (since_ms, failures) = match previous {
            Some(p) if p.sequence_number == item.sequence_number => (p.since_ms, p.failures + counted),
            _ => (first_failure_ms.unwrap_or(now).min(now), counted),
        };
        let stall = Stall {
            target: self.target,
            shard_id: item.shard_id.to_string(),
            sequence_number: item.sequence_number.to_string(),
            since_ms,
            last_failure_ms: now,
            failures,
            class: stop.class,
            status: stop.status,
            reason: stop.reason.clone(),
            bucket,
            arrival_ms: Some(item.approximate_arrival.0.timestamp_millis()).filter(|ms| *ms > 0),
        };
        let body = serde_json::to_vec_pretty(&stall).unwrap_or_default();
        if let Err(e) = self.s3.put_object().bucket(&self.bucket).key(&key).body(body.into()).send().await {
            tracing::warn!(key = %key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "could not record the stall");
        }
        self.publish(&stall, now);
        stall
    }

    /// Adds `tally` (records per bucket left to the source alone) to the shard's count.
    pub async fn count_source_only(&self, shard_id: &str, tally: &BTreeMap<String, u64>) {
        if tally.is_empty() {
            return;
        }
        let key = source_only_key(self.target, shard_id);
        let mut count = match self.get(&key).await {
            Some(bytes) => serde_json::from_slice::<SourceOnly>(&bytes).unwrap_or_default(),
            None => SourceOnly::default(),
        };
        count.shard_id = shard_id.to_string();
        for (bucket, n) in tally {
            *count.by_bucket.entry(bucket.clone()).or_default() += n;
        }
        count.updated_ms = now_ms();
        let body = serde_json::to_vec_pretty(&count).unwrap_or_default();
        if let Err(e) = self.s3.put_object().bucket(&self.bucket).key(&key).body(body.into()).send().await {
            tracing::warn!(key = %key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "could not record the source-only count");
        }
    }

    /// Records that a batch of `shard_id` went through: the shard is not stalled.
    pub async fn progressed(&self, shard_id: &str) {
        {
            let mut cleared = self.cleared.lock().unwrap_or_else(|p| p.into_inner());
            if cleared.get(shard_id).is_some_and(|at| at.elapsed() < CLEAR_AGAIN_AFTER) {
                return;
            }
            cleared.insert(shard_id.to_string(), Instant::now());
        }
        let key = stall_key(self.target, shard_id);
        if let Err(e) = self.s3.delete_object().bucket(&self.bucket).key(&key).send().await {
            self.cleared.lock().unwrap_or_else(|p| p.into_inner()).remove(shard_id);
            tracing::warn!(key = %key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "could not clear the stall record");
        }
    }

    /// The metric line, and the error line once the stall is older than the threshold.
    fn publish(&self, stall: &Stall, now: i64) {
        let stalled_seconds = stall.stalled_ms(now) / 1000;
        println!("{}", metric_line(&self.function_name, stall, stalled_seconds, now));
        if stall.stalled_ms(now) >= self.alert_after.as_millis() as i64 {
            tracing::error!(
                shard = %stall.shard_id,
                sequence_number = %stall.sequence_number,
                bucket = stall.bucket.as_deref().unwrap_or(""),
                status = stall.status,
                class = stall.class.as_str(),
                stalled_seconds,
                failures = stall.failures,
                reason = %stall.reason,
                "shard stalled: its records wait in the stream until the cause is fixed or the operator parks them (influx-migration status, park)"
            );
        }
    }

    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        match self.s3.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => out.body.collect().await.ok().map(|b| b.into_bytes().to_vec()),
            Err(e) => {
                let not_found = e.as_service_error().is_some_and(|s| s.is_no_such_key());
                if !not_found {
                    tracing::warn!(key = %key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "could not read");
                }
                None
            }
        }
    }
}

/// One line in CloudWatch's embedded metric format: `StalledSeconds` for the function, with the
/// shard, bucket, status and reason as properties (searchable in Logs Insights, not dimensions).
pub fn metric_line(function_name: &str, stall: &Stall, stalled_seconds: i64, now_ms: i64) -> String {
    serde_json::json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": METRIC_NAMESPACE,
                "Dimensions": [["FunctionName"]],
                "Metrics": [{"Name": "StalledSeconds", "Unit": "Seconds"}],
            }],
        },
        "FunctionName": function_name,
        "StalledSeconds": stalled_seconds,
        "target": stall.target.as_str(),
        "shard": stall.shard_id,
        "sequence_number": stall.sequence_number,
        "bucket": stall.bucket,
        "status": stall.status,
        "class": stall.class.as_str(),
        "reason": stall.reason,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::stall::StallClass;

    #[test]
    fn the_metric_line_is_embedded_metric_format() {
        let stall = Stall {
            target: Role::Destination,
            shard_id: "shardId-000000000001".into(),
            sequence_number: "42".into(),
            since_ms: 1_000,
            last_failure_ms: 61_000,
            failures: 3,
            class: StallClass::Configuration,
            status: Some(403),
            reason: "403 from http://db:8086: insufficient permissions".into(),
            bucket: Some("telegraf".into()),
            arrival_ms: Some(500),
        };
        let line = metric_line("p-stream-writer-destination", &stall, 60, 61_000);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let m = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(m["Namespace"], METRIC_NAMESPACE);
        assert_eq!(m["Dimensions"], serde_json::json!([["FunctionName"]]));
        assert_eq!(m["Metrics"][0]["Name"], "StalledSeconds");
        assert_eq!(v["FunctionName"], "p-stream-writer-destination");
        assert_eq!(v["StalledSeconds"], 60);
        assert_eq!(v["_aws"]["Timestamp"], 61_000);
        assert_eq!(
            (v["shard"].as_str(), v["bucket"].as_str(), v["status"].as_u64()),
            (Some("shardId-000000000001"), Some("telegraf"), Some(403))
        );
    }
}
