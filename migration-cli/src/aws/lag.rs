//! How far a stream writer is behind: its `IteratorAge`, the age of the last record of the last
//! batch it finished.
//!
//! Two sources behind one trait ([`LagSource`]):
//! - [`CloudWatchLag`] (`--lag-source cloudwatch`, the default): `GetMetricData` for
//!   `AWS/Lambda` `IteratorAge` (Maximum per minute) of the function, newest datapoint of the
//!   last few minutes.
//! - [`FileLag`] (`--lag-source file:<path>`): the JSON the local stack's poller writes,
//!   `{"functions": {"<name>": {"iterator_age_ms": 0, "updated_at": "<RFC3339>", "pending_records": 0}}}`.
//!
//! Lambda emits `IteratorAge` only when a batch finishes, so a throttled writer, or one with
//! nothing to do, has no datapoints at all
//! (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html). No datapoint,
//! and a reading older than [`STALE_AFTER`], is therefore an *unknown* lag, never a zero one:
//! `cutover` refuses on it unless forced.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
use aws_sdk_cloudwatch::operation::get_metric_data::builders::GetMetricDataFluentBuilder;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
use aws_smithy_types::DateTime;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::output::human_duration;

/// A reading older than this says nothing about now.
pub const STALE_AFTER: Duration = Duration::from_secs(300);
/// How far back CloudWatch is asked for datapoints.
const CLOUDWATCH_WINDOW: Duration = Duration::from_secs(300);
/// IteratorAge is reported per minute.
const PERIOD_SECONDS: i32 = 60;

/// Where lag readings come from (parsed from `--lag-source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LagSourceSpec {
    CloudWatch,
    File(PathBuf),
}

impl LagSourceSpec {
    /// `cloudwatch` or `file:<path>`.
    pub fn parse(s: &str) -> Result<LagSourceSpec, String> {
        match s.trim() {
            "cloudwatch" => Ok(LagSourceSpec::CloudWatch),
            other => match other.strip_prefix("file:") {
                Some(p) if !p.is_empty() => Ok(LagSourceSpec::File(PathBuf::from(p))),
                _ => Err(format!("{other:?}: expected `cloudwatch` or `file:<path>`")),
            },
        }
    }
}

/// Why a reading could not be taken (an unknown lag is not an error: see [`LagReading`]).
#[derive(Debug, thiserror::Error)]
pub enum LagError {
    #[error("CloudWatch GetMetricData for {function}: {reason}")]
    CloudWatch { function: String, reason: String },
    #[error("reading lag file {path}: {reason}")]
    File { path: String, reason: String },
}

/// One function's lag as far as it can be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LagReading {
    pub function: String,
    /// `cloudwatch` or `file:<path>`.
    pub source: String,
    /// The IteratorAge, when known and fresh.
    pub iterator_age_ms: Option<u64>,
    /// When the reading was taken (the datapoint's minute, or the poller's `updated_at`).
    pub observed_at: Option<String>,
    /// Records waiting, when the source knows (the local poller does).
    pub pending_records: Option<u64>,
    /// Why the lag is unknown, when it is.
    pub unknown_because: Option<String>,
}

impl LagReading {
    pub fn age(&self) -> Option<Duration> {
        self.iterator_age_ms.map(Duration::from_millis)
    }

    pub fn unknown(function: &str, source: String, why: String) -> LagReading {
        LagReading {
            function: function.to_string(),
            source,
            iterator_age_ms: None,
            observed_at: None,
            pending_records: None,
            unknown_because: Some(why),
        }
    }

    /// A reading at `observed`, unknown when older than [`STALE_AFTER`] at `now`.
    fn observed(
        function: &str,
        source: String,
        age_ms: u64,
        observed: OffsetDateTime,
        pending: Option<u64>,
        now: OffsetDateTime,
    ) -> LagReading {
        let at = rfc3339(observed);
        if now - observed > STALE_AFTER {
            let mut r = LagReading::unknown(
                function,
                source,
                format!("the newest reading ({at}) is older than {} s", STALE_AFTER.as_secs()),
            );
            r.observed_at = Some(at);
            r.pending_records = pending;
            return r;
        }
        LagReading {
            function: function.to_string(),
            source,
            iterator_age_ms: Some(age_ms),
            observed_at: Some(at),
            pending_records: pending,
            unknown_because: None,
        }
    }

    /// How far the writer has replayed the stream, as its lag tells: records that reached the
    /// stream before this time have been applied (the reading's time less its IteratorAge, the
    /// age of the last record it handed on; a failing writer's age keeps growing from its oldest
    /// waiting record). `None` when the lag is unknown.
    pub fn applied_until(&self) -> Option<OffsetDateTime> {
        let at = OffsetDateTime::parse(self.observed_at.as_deref()?, &Rfc3339).ok()?;
        Some(at - self.age()?)
    }

    /// `12.3 s behind (at ...)` or `unknown (why)`.
    pub fn describe(&self) -> String {
        match (self.age(), &self.unknown_because) {
            (Some(age), _) => {
                let pending =
                    self.pending_records.map(|p| format!(", {p} record(s) pending")).unwrap_or_default();
                format!(
                    "IteratorAge {} (reading at {}{pending})",
                    human_duration(age),
                    self.observed_at.as_deref().unwrap_or("?")
                )
            }
            (None, Some(why)) => format!("unknown: {why}"),
            (None, None) => "unknown".to_string(),
        }
    }
}

/// Something that can tell a function's lag.
pub trait LagSource {
    /// `cloudwatch` or `file:<path>`.
    fn name(&self) -> String;
    /// The lag of `function` now.
    fn read(&self, function: &str) -> impl Future<Output = Result<LagReading, LagError>> + Send;
}

/// `AWS/Lambda` `IteratorAge` from CloudWatch.
#[derive(Debug, Clone)]
pub struct CloudWatchLag {
    client: aws_sdk_cloudwatch::Client,
}

impl CloudWatchLag {
    pub fn new(client: aws_sdk_cloudwatch::Client) -> CloudWatchLag {
        CloudWatchLag { client }
    }

    /// The request: Maximum IteratorAge per minute of `function` over the window ending `now`,
    /// newest first.
    pub fn request(&self, function: &str, now: OffsetDateTime) -> GetMetricDataFluentBuilder {
        let metric = Metric::builder()
            .namespace("AWS/Lambda")
            .metric_name("IteratorAge")
            .dimensions(Dimension::builder().name("FunctionName").value(function).build())
            .build();
        let query = MetricDataQuery::builder()
            .id("iteratorage")
            .metric_stat(MetricStat::builder().metric(metric).period(PERIOD_SECONDS).stat("Maximum").build())
            .return_data(true)
            .build();
        let start = now - CLOUDWATCH_WINDOW;
        self.client
            .get_metric_data()
            .metric_data_queries(query)
            .start_time(DateTime::from_secs(start.unix_timestamp()))
            .end_time(DateTime::from_secs(now.unix_timestamp()))
            .scan_by(ScanBy::TimestampDescending)
    }
}

/// The newest datapoint of the answer: (minute, milliseconds).
pub fn newest_datapoint(out: &GetMetricDataOutput) -> Option<(OffsetDateTime, u64)> {
    out.metric_data_results()
        .iter()
        .flat_map(|r| r.timestamps().iter().zip(r.values().iter()))
        .filter_map(|(t, v)| {
            let at = OffsetDateTime::from_unix_timestamp(t.secs()).ok()?;
            (v.is_finite() && *v >= 0.0).then_some((at, v.round() as u64))
        })
        .max_by_key(|(at, _)| *at)
}

impl LagSource for CloudWatchLag {
    fn name(&self) -> String {
        "cloudwatch".to_string()
    }

    async fn read(&self, function: &str) -> Result<LagReading, LagError> {
        let now = OffsetDateTime::now_utc();
        let out = self.request(function, now).send().await.map_err(|e| LagError::CloudWatch {
            function: function.to_string(),
            reason: crate::aws::sdk_error::describe(&e),
        })?;
        Ok(match newest_datapoint(&out) {
            Some((at, ms)) => LagReading::observed(function, self.name(), ms, at, None, now),
            None => LagReading::unknown(
                function,
                self.name(),
                format!(
                    "no IteratorAge datapoint in the last {} s (a throttled or idle writer reports none)",
                    CLOUDWATCH_WINDOW.as_secs()
                ),
            ),
        })
    }
}

/// The local stack poller's lag file.
#[derive(Debug, Clone)]
pub struct FileLag {
    path: PathBuf,
}

#[derive(Debug, Deserialize)]
struct LagFile {
    #[serde(default)]
    functions: BTreeMap<String, FunctionLag>,
}

#[derive(Debug, Deserialize)]
struct FunctionLag {
    iterator_age_ms: u64,
    updated_at: String,
    #[serde(default)]
    pending_records: Option<u64>,
}

impl FileLag {
    pub fn new(path: PathBuf) -> FileLag {
        FileLag { path }
    }

    /// The reading for `function` in the file's `text`, as of `now`.
    pub fn reading(&self, text: &str, function: &str, now: OffsetDateTime) -> Result<LagReading, LagError> {
        let file: LagFile = serde_json::from_str(text)
            .map_err(|e| LagError::File { path: self.path.display().to_string(), reason: e.to_string() })?;
        let Some(f) = file.functions.get(function) else {
            return Ok(LagReading::unknown(
                function,
                self.name(),
                format!("the lag file has no entry for {function}"),
            ));
        };
        let at = OffsetDateTime::parse(&f.updated_at, &Rfc3339).map_err(|e| LagError::File {
            path: self.path.display().to_string(),
            reason: format!("updated_at of {function} is not RFC3339: {e}"),
        })?;
        Ok(LagReading::observed(function, self.name(), f.iterator_age_ms, at, f.pending_records, now))
    }
}

impl LagSource for FileLag {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    async fn read(&self, function: &str) -> Result<LagReading, LagError> {
        let text = match tokio::fs::read_to_string(&self.path).await {
            Ok(t) => t,
            // The poller has not written it yet: nothing is known, which is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(LagReading::unknown(
                    function,
                    self.name(),
                    format!("the lag file {} does not exist (yet)", self.path.display()),
                ));
            }
            Err(e) => {
                return Err(LagError::File { path: self.path.display().to_string(), reason: e.to_string() });
            }
        };
        self.reading(&text, function, OffsetDateTime::now_utc())
    }
}

/// The source `--lag-source` names.
#[derive(Debug, Clone)]
pub enum AnyLag {
    CloudWatch(CloudWatchLag),
    File(FileLag),
}

impl AnyLag {
    pub fn new(spec: &LagSourceSpec, cloudwatch: aws_sdk_cloudwatch::Client) -> AnyLag {
        match spec {
            LagSourceSpec::CloudWatch => AnyLag::CloudWatch(CloudWatchLag::new(cloudwatch)),
            LagSourceSpec::File(p) => AnyLag::File(FileLag::new(p.clone())),
        }
    }
}

impl LagSource for AnyLag {
    fn name(&self) -> String {
        match self {
            AnyLag::CloudWatch(c) => c.name(),
            AnyLag::File(f) => f.name(),
        }
    }

    async fn read(&self, function: &str) -> Result<LagReading, LagError> {
        match self {
            AnyLag::CloudWatch(c) => c.read(function).await,
            AnyLag::File(f) => f.read(function).await,
        }
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::types::MetricDataResult;
    use time::macros::datetime;

    fn offline_client() -> aws_sdk_cloudwatch::Client {
        let conf = aws_sdk_cloudwatch::Config::builder()
            .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudwatch::config::Region::new("us-east-1"))
            .build();
        aws_sdk_cloudwatch::Client::from_conf(conf)
    }

    #[test]
    fn the_cloudwatch_request_asks_for_the_functions_maximum_iterator_age_per_minute() {
        let now = datetime!(2026-11-25 10:00:00 UTC);
        let req = CloudWatchLag::new(offline_client()).request("p-stream-writer-destination", now);
        let input = req.as_input();
        let queries = input.get_metric_data_queries().as_ref().expect("one query");
        assert_eq!(queries.len(), 1);
        let stat = queries[0].metric_stat().expect("a metric stat");
        assert_eq!(stat.stat(), Some("Maximum"));
        assert_eq!(stat.period(), Some(60));
        let metric = stat.metric().expect("a metric");
        assert_eq!(metric.namespace(), Some("AWS/Lambda"));
        assert_eq!(metric.metric_name(), Some("IteratorAge"));
        let dims = metric.dimensions();
        assert_eq!(dims.len(), 1);
        assert_eq!(dims[0].name(), Some("FunctionName"));
        assert_eq!(dims[0].value(), Some("p-stream-writer-destination"));
        assert_eq!(queries[0].return_data(), Some(true));
        assert_eq!(input.get_end_time().map(|t| t.secs()), Some(now.unix_timestamp()));
        assert_eq!(input.get_start_time().map(|t| t.secs()), Some(now.unix_timestamp() - 300));
        assert_eq!(input.get_scan_by(), &Some(ScanBy::TimestampDescending));
    }

    #[test]
    fn the_newest_datapoint_wins_whatever_the_order() {
        let out = GetMetricDataOutput::builder()
            .metric_data_results(
                MetricDataResult::builder()
                    .id("iteratorage")
                    .timestamps(DateTime::from_secs(1_000))
                    .values(5000.0)
                    .timestamps(DateTime::from_secs(1_120))
                    .values(250.4)
                    .timestamps(DateTime::from_secs(1_060))
                    .values(900.0)
                    .build(),
            )
            .build();
        let (at, ms) = newest_datapoint(&out).unwrap();
        assert_eq!(at.unix_timestamp(), 1_120);
        assert_eq!(ms, 250);
        assert_eq!(newest_datapoint(&GetMetricDataOutput::builder().build()), None);
    }

    #[test]
    fn the_lag_file_gives_age_pending_records_and_time() {
        let f = FileLag::new(PathBuf::from("/tmp/lag.json"));
        let now = datetime!(2026-11-25 10:00:30 UTC);
        let text = r#"{"functions":{"dst":{"iterator_age_ms":1500,"updated_at":"2026-11-25T10:00:00Z","pending_records":7}}}"#;
        let r = f.reading(text, "dst", now).unwrap();
        assert_eq!(r.iterator_age_ms, Some(1500));
        assert_eq!(r.pending_records, Some(7));
        assert_eq!(r.observed_at.as_deref(), Some("2026-11-25T10:00:00Z"));
        assert_eq!(r.unknown_because, None);
        assert_eq!(r.source, "file:/tmp/lag.json");
    }

    #[test]
    fn missing_and_stale_readings_are_unknown_not_zero() {
        let f = FileLag::new(PathBuf::from("lag.json"));
        let now = datetime!(2026-11-25 11:00:00 UTC);
        let text = r#"{"functions":{"dst":{"iterator_age_ms":0,"updated_at":"2026-11-25T10:00:00Z"}}}"#;
        let stale = f.reading(text, "dst", now).unwrap();
        assert_eq!(stale.iterator_age_ms, None);
        assert!(stale.unknown_because.as_deref().unwrap().contains("older than 300 s"), "{stale:?}");
        let absent = f.reading(text, "other", now).unwrap();
        assert_eq!(absent.iterator_age_ms, None);
        assert!(absent.describe().contains("no entry for other"));
        assert!(matches!(f.reading("not json", "dst", now), Err(LagError::File { .. })));
    }

    #[test]
    fn lag_sources_parse_from_the_command_line() {
        assert_eq!(LagSourceSpec::parse("cloudwatch").unwrap(), LagSourceSpec::CloudWatch);
        assert_eq!(
            LagSourceSpec::parse("file:/x/y.json").unwrap(),
            LagSourceSpec::File(PathBuf::from("/x/y.json"))
        );
        assert!(LagSourceSpec::parse("file:").is_err());
        assert!(LagSourceSpec::parse("prometheus").is_err());
    }
}
