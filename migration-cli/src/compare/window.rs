//! The time window and the bucket pair every comparison is about.
//!
//! A window is half-open, `[start, stop)`, and its open ends are the earliest and latest
//! instants influxd stores; a pair is a source bucket and where its data should be at the
//! destination.

use std::collections::BTreeSet;

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::compare::query::CompareError;

/// The earliest and latest instants influxd stores (`models/time.go`: MinInt64+2 ns and
/// MaxInt64-1 ns), as Flux time literals.
pub const MIN_TIME: &str = "1677-09-21T00:12:43.145224194Z";
pub const MAX_TIME: &str = "2262-04-11T23:47:16.854775806Z";

/// A source bucket and where its data should be at the destination. `None` orgs mean "the one
/// bucket of that name, in whatever org" (an error when several orgs have one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketPair {
    pub src_org: Option<String>,
    pub src_bucket: String,
    pub dst_org: Option<String>,
    pub dst_bucket: String,
    /// The measurements compared (all, unless tasks write some of the bucket's).
    #[serde(skip_serializing_if = "Measurements::is_all")]
    pub measurements: Measurements,
}

/// Which measurements of a bucket pair a comparison covers. A bucket that clients write and
/// tasks also write into is compared for the clients' measurements while the tasks' output is
/// made whole only at the handover, and the other way after it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measurements {
    #[default]
    All,
    /// Only these.
    Only(BTreeSet<String>),
    /// Every measurement but these.
    Except(BTreeSet<String>),
}

impl Measurements {
    pub fn is_all(&self) -> bool {
        *self == Measurements::All
    }

    /// Whether measurement `m` is compared.
    pub fn covers(&self, m: &str) -> bool {
        match self {
            Measurements::All => true,
            Measurements::Only(s) => s.contains(m),
            Measurements::Except(s) => !s.contains(m),
        }
    }

    /// `cpu, mem` for a note.
    pub fn names(set: &BTreeSet<String>) -> String {
        set.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
    }
}

impl BucketPair {
    pub fn new(
        src_org: Option<&str>,
        src_bucket: &str,
        dst_org: Option<&str>,
        dst_bucket: &str,
    ) -> BucketPair {
        BucketPair {
            src_org: src_org.map(str::to_string),
            src_bucket: src_bucket.to_string(),
            dst_org: dst_org.map(str::to_string),
            dst_bucket: dst_bucket.to_string(),
            measurements: Measurements::All,
        }
    }

    /// The same pair, compared over `measurements` only.
    pub fn with(&self, measurements: Measurements) -> BucketPair {
        BucketPair { measurements, ..self.clone() }
    }

    /// The same org and bucket names on both sides.
    pub fn same(org: Option<&str>, bucket: &str) -> BucketPair {
        BucketPair::new(org, bucket, org, bucket)
    }
}

/// A half-open time window `[start, stop)`; open ends mean "since the earliest / until the latest
/// time influxd can store".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeWindow {
    pub start: Option<OffsetDateTime>,
    pub stop: Option<OffsetDateTime>,
}

impl TimeWindow {
    pub fn new(start: Option<OffsetDateTime>, stop: Option<OffsetDateTime>) -> TimeWindow {
        TimeWindow { start, stop }
    }

    /// From RFC3339 texts (`--start`, `--stop`).
    pub fn parse(start: Option<&str>, stop: Option<&str>) -> Result<TimeWindow, CompareError> {
        let p = |what: &'static str, v: Option<&str>| -> Result<Option<OffsetDateTime>, CompareError> {
            v.map(|s| {
                OffsetDateTime::parse(s.trim(), &Rfc3339)
                    .map_err(|_| CompareError::Time { what, value: s.to_string() })
            })
            .transpose()
        };
        Ok(TimeWindow { start: p("--start", start)?, stop: p("--stop", stop)? })
    }

    /// The Flux literal of the start.
    pub fn flux_start(&self) -> String {
        self.start.map(rfc3339).unwrap_or_else(|| MIN_TIME.to_string())
    }

    /// The Flux literal of the stop.
    pub fn flux_stop(&self) -> String {
        self.stop.map(rfc3339).unwrap_or_else(|| MAX_TIME.to_string())
    }

    /// Human text: `all time`, `since X`, `X to Y`.
    pub fn describe(&self) -> String {
        match (self.start, self.stop) {
            (None, None) => "all time".into(),
            (Some(a), None) => format!("since {}", rfc3339(a)),
            (None, Some(b)) => format!("until {}", rfc3339(b)),
            (Some(a), Some(b)) => format!("{} to {}", rfc3339(a), rfc3339(b)),
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap_or_else(|_| MIN_TIME.to_string())
}
