//! `verify`: per bucket and measurement, the number of values at the source and at the
//! destination over a time window; a table; exit 3 on any difference.
//!
//! The counting is [`crate::verify::compare`] (counted by influxd, answers streamed). Buckets are
//! compared one at a time and each result is printed as it arrives, so a long verification shows
//! progress; the full table and the verdict follow.
//!
//! The window's end defaults to a little before now (`--settle-seconds`, 60): points written in
//! the last moments may still be on their way to the destination through the stream, and would
//! show as differences that are only lag.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::json;
use shared::secret::EndpointSecret;
use time::OffsetDateTime;

use crate::exit::Exit;
use crate::live::CommonArgs;
use crate::live::databases::{self, Databases, InfluxArgs};
use crate::live::deployment::{Aws, Deployment};
use crate::live::endpoint::{self, CurrentSecret};
use crate::live::lag::rfc3339;
use crate::live::output::{Output, Verdict};
use crate::verify::{self as counts, BucketPair, TimeWindow, VerifyReport};

/// The time window flags (shared with `cutover`).
#[derive(Debug, Clone, Args)]
pub struct WindowArgs {
    /// Start of the window, RFC3339 (default: the earliest time InfluxDB stores).
    #[arg(long, value_name = "RFC3339")]
    pub start: Option<String>,
    /// End of the window, RFC3339 (default: now minus --settle-seconds).
    #[arg(long, value_name = "RFC3339")]
    pub stop: Option<String>,
    /// Without --stop, leave out the last this many seconds (points still in flight).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub settle_seconds: u64,
}

impl WindowArgs {
    pub fn window(&self, now: OffsetDateTime) -> anyhow::Result<TimeWindow> {
        let mut w = TimeWindow::parse(self.start.as_deref(), self.stop.as_deref())?;
        if w.stop.is_none() {
            // Whole seconds: the window is printed, and nanoseconds there only distract.
            let stop = now - Duration::from_secs(self.settle_seconds);
            w.stop = Some(stop.replace_nanosecond(0).unwrap_or(stop));
        }
        if let (Some(a), Some(b)) = (w.start, w.stop)
            && a >= b
        {
            anyhow::bail!("the window is empty: --start {} is not before its end {}", rfc3339(a), rfc3339(b));
        }
        Ok(w)
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub influx: InfluxArgs,
    #[command(flatten)]
    pub window: WindowArgs,
}

/// The endpoint secret when the deployment names one (it gives addresses and mappings).
async fn secret_if_named(common: &CommonArgs) -> anyhow::Result<Option<CurrentSecret>> {
    if common.aws.stack.is_none() && common.aws.secret_id.is_none() {
        return Ok(None);
    }
    let aws = Aws::connect(&common.aws).await;
    let dep = Deployment::resolve(&common.aws, &aws).await?;
    let id = dep.secret_id()?.to_string();
    Ok(Some(endpoint::read(&aws.secrets, &id).await?))
}

/// The comparison `verify` and `cutover` make: both databases (addresses and mappings from the
/// endpoint secret when there is one), every bucket pair, each reported as it completes, then the
/// table. Returns the report and the source buckets left out.
pub async fn compare_databases(
    out: &mut Output,
    influx: &InfluxArgs,
    window: &WindowArgs,
    secret: Option<&EndpointSecret>,
) -> anyhow::Result<(VerifyReport, Vec<String>)> {
    let dbs = Databases::connect(influx, secret)?;
    let window = window.window(OffsetDateTime::now_utc())?;
    out.note(format!("comparing {} with {} ({})", dbs.src.host(), dbs.dst.host(), window.describe()));
    let mappings = secret.map(|s| s.mappings.clone()).unwrap_or_default();
    let pairs = databases::bucket_pairs(&dbs.src, &mappings, &influx.buckets).await?;
    for s in &pairs.skipped {
        out.note(format!("skipped {s}"));
    }
    let report = compare_streamed(out, &dbs, &pairs.pairs, &window).await?;
    out.text(&report.render_table());
    Ok((report, pairs.skipped))
}

/// Compares every pair, one bucket at a time, reporting each as it completes.
async fn compare_streamed(
    out: &mut Output,
    dbs: &Databases,
    pairs: &[BucketPair],
    window: &TimeWindow,
) -> anyhow::Result<VerifyReport> {
    let mut report = VerifyReport {
        source_host: dbs.src.host().to_string(),
        destination_host: dbs.dst.host().to_string(),
        window: window.describe(),
        buckets: Vec::with_capacity(pairs.len()),
    };
    for pair in pairs {
        let one = counts::compare(&dbs.src, &dbs.dst, std::slice::from_ref(pair), window)
            .await
            .with_context(|| format!("counting bucket {}", pair.src_bucket))?;
        for b in one.buckets {
            let verdict = if b.is_clean() { Verdict::Ok } else { Verdict::Differs };
            let what = if b.destination_missing {
                format!(
                    "{} values at the source; the destination bucket {} does not exist",
                    b.source_total(),
                    b.destination
                )
            } else {
                let differing = b.measurements.iter().filter(|m| !m.matches()).count();
                format!(
                    "{} measurement(s), {} value(s) at the source, {} at the destination{}",
                    b.measurements.len(),
                    b.source_total(),
                    b.destination_total(),
                    if differing > 0 {
                        format!(", {differing} measurement(s) differ")
                    } else {
                        String::new()
                    }
                )
            };
            out.check(&format!("bucket {} -> {}", b.source, b.destination), verdict, what);
            report.buckets.push(b);
        }
    }
    Ok(report)
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<Exit> {
    let mut out = Output::new("verify", args.common.json);
    let named = secret_if_named(&args.common).await?;
    let secret = named.as_ref().map(|s| &s.secret);
    let (report, skipped) = compare_databases(&mut out, &args.influx, &args.window, secret).await?;
    let exit = if report.is_clean() { Exit::Success } else { Exit::Differences };
    Ok(out.finish(exit, json!({"report": report.to_json(), "skipped": skipped})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn args(start: Option<&str>, stop: Option<&str>) -> WindowArgs {
        WindowArgs { start: start.map(str::to_string), stop: stop.map(str::to_string), settle_seconds: 60 }
    }

    #[test]
    fn the_default_window_ends_a_settle_time_before_now() {
        let now = datetime!(2026-11-25 10:00:00.123456 UTC);
        let w = args(Some("2026-11-25T00:00:00Z"), None).window(now).unwrap();
        assert_eq!(w.stop, Some(datetime!(2026-11-25 09:59:00 UTC)));
        assert_eq!(w.start, Some(datetime!(2026-11-25 00:00:00 UTC)));
        let explicit = args(None, Some("2026-11-24T00:00:00Z")).window(now).unwrap();
        assert_eq!(explicit.stop, Some(datetime!(2026-11-24 00:00:00 UTC)));
    }

    #[test]
    fn an_empty_window_is_refused_with_both_ends_named() {
        let now = datetime!(2026-11-25 10:00:00 UTC);
        let e = args(Some("2026-11-26T00:00:00Z"), None).window(now).unwrap_err().to_string();
        assert!(e.contains("2026-11-26T00:00:00Z") && e.contains("2026-11-25T09:59:00Z"), "{e}");
    }
}
