//! The Kinesis stream: its retention, and how close the oldest record the destination writer has
//! not replayed yet is to expiring.
//!
//! Retention is the only clock while the destination writer is held: a held mapping never
//! discards records, but Kinesis deletes them once they are older than the retention
//! (https://docs.aws.amazon.com/streams/latest/dev/kinesis-extended-retention.html). The oldest
//! unprocessed record is as old as the writer's `IteratorAge`, so the headroom is
//! `retention - IteratorAge`. While the writer is throttled it reports no IteratorAge at all; the
//! oldest waiting record is then at most as old as the later of the stream's creation and the
//! mapping's starting position, which gives a conservative estimate.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::aws::lag::rfc3339;
use crate::output::human_duration;

/// The share of the retention at which the operator is warned, then warned loudly (the seeding
/// warns at the same shares).
pub const WARN_SHARE: f64 = 0.5;
pub const ALARM_SHARE: f64 = 0.8;

/// Why the stream could not be described.
#[derive(Debug, thiserror::Error)]
#[error("DescribeStreamSummary for {stream}: {reason}")]
pub struct StreamError {
    pub stream: String,
    pub reason: String,
}

/// What the operator needs to know about the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamState {
    pub name: String,
    pub arn: String,
    pub status: String,
    pub retention_hours: u32,
    pub open_shards: i32,
    pub encryption: String,
    pub created_at: String,
    #[serde(skip)]
    pub created: Option<OffsetDateTime>,
}

pub async fn describe(kinesis: &aws_sdk_kinesis::Client, name: &str) -> Result<StreamState, StreamError> {
    let out =
        kinesis.describe_stream_summary().stream_name(name).send().await.map_err(|e| StreamError {
            stream: name.to_string(),
            reason: crate::aws::sdk_error::describe(&e),
        })?;
    let s = out.stream_description_summary().ok_or_else(|| StreamError {
        stream: name.to_string(),
        reason: "the answer has no StreamDescriptionSummary".into(),
    })?;
    let created = OffsetDateTime::from_unix_timestamp(s.stream_creation_timestamp().secs()).ok();
    Ok(StreamState {
        name: s.stream_name().to_string(),
        arn: s.stream_arn().to_string(),
        status: s.stream_status().as_str().to_string(),
        retention_hours: u32::try_from(s.retention_period_hours()).unwrap_or(0),
        open_shards: s.open_shard_count(),
        encryption: s.encryption_type().map(|e| e.as_str().to_string()).unwrap_or_else(|| "NONE".into()),
        created_at: created.map(rfc3339).unwrap_or_default(),
        created,
    })
}

/// How the age of the oldest unprocessed record was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgeBasis {
    /// The writer's IteratorAge.
    IteratorAge,
    /// An upper bound: the writer has processed nothing the metrics show; no record it waits for
    /// is older than the stream or its mapping's start.
    AtMostSinceStart,
}

/// How close the oldest unprocessed record is to expiring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expiry {
    pub retention_hours: u32,
    pub oldest_unprocessed_age_seconds: u64,
    pub basis: AgeBasis,
    /// Time left before that record expires (0 when it may already have).
    pub headroom_seconds: u64,
    /// Age as a share of the retention (0.0..).
    pub share_of_retention: f64,
}

impl Expiry {
    /// From the retention and the age of the oldest unprocessed record.
    pub fn new(retention_hours: u32, age: Duration, basis: AgeBasis) -> Expiry {
        let retention = Duration::from_secs(u64::from(retention_hours) * 3600);
        let headroom = retention.saturating_sub(age);
        let share = if retention.is_zero() { 1.0 } else { age.as_secs_f64() / retention.as_secs_f64() };
        Expiry {
            retention_hours,
            oldest_unprocessed_age_seconds: age.as_secs(),
            basis,
            headroom_seconds: headroom.as_secs(),
            share_of_retention: share,
        }
    }

    /// The upper-bound estimate for a writer with no IteratorAge: the time since the later of the
    /// stream's creation and the mapping's start, capped at the retention.
    pub fn estimate(
        retention_hours: u32,
        stream_created: Option<OffsetDateTime>,
        mapping_start: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Option<Expiry> {
        let since = match (stream_created, mapping_start) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        let retention = Duration::from_secs(u64::from(retention_hours) * 3600);
        let age = Duration::try_from(now - since).unwrap_or(Duration::ZERO).min(retention);
        Some(Expiry::new(retention_hours, age, AgeBasis::AtMostSinceStart))
    }

    /// `expires in 5 h 3 min (oldest unprocessed record 162 h 57 min old, 97% of 168 h)`.
    pub fn describe(&self) -> String {
        let age = human_duration(Duration::from_secs(self.oldest_unprocessed_age_seconds));
        let age = match self.basis {
            AgeBasis::IteratorAge => format!("{age} old"),
            AgeBasis::AtMostSinceStart => format!("at most {age} old"),
        };
        format!(
            "oldest unprocessed record expires in {} ({age}, {:.0}% of the {} h retention)",
            human_duration(Duration::from_secs(self.headroom_seconds)),
            self.share_of_retention * 100.0,
            self.retention_hours
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn headroom_is_retention_minus_the_iterator_age() {
        let e = Expiry::new(168, Duration::from_secs(84 * 3600), AgeBasis::IteratorAge);
        assert_eq!(e.headroom_seconds, 84 * 3600);
        assert!((e.share_of_retention - 0.5).abs() < 1e-9);
        assert_eq!(
            e.describe(),
            "oldest unprocessed record expires in 84 h 0 min (84 h 0 min old, 50% of the 168 h retention)"
        );
        let past = Expiry::new(24, Duration::from_secs(30 * 3600), AgeBasis::IteratorAge);
        assert_eq!(past.headroom_seconds, 0);
    }

    #[test]
    fn a_throttled_writer_is_bounded_by_the_later_of_stream_creation_and_mapping_start() {
        let now = datetime!(2026-11-25 12:00:00 UTC);
        let e = Expiry::estimate(
            168,
            Some(datetime!(2026-11-25 08:00:00 UTC)),
            Some(datetime!(2026-11-25 10:00:00 UTC)),
            now,
        )
        .unwrap();
        assert_eq!(e.oldest_unprocessed_age_seconds, 2 * 3600);
        assert_eq!(e.basis, AgeBasis::AtMostSinceStart);
        assert!(e.describe().contains("at most 2 h 0 min old"), "{}", e.describe());
        // Never older than the retention: older records are gone already.
        let capped = Expiry::estimate(24, Some(datetime!(2026-11-01 00:00:00 UTC)), None, now).unwrap();
        assert_eq!(capped.oldest_unprocessed_age_seconds, 24 * 3600);
        assert_eq!(Expiry::estimate(24, None, None, now), None);
    }
}
