//! The bypass check of `status`, `verify` and `cutover`: per bucket pair and measurement, the
//! values that reached the source without passing through the gateway ([`crate::compare::bypass`]), over
//! the last `--bypass-lookback` seconds up to where the writers have replayed.

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::aws::lag::rfc3339;
use crate::compare::bypass;
use crate::compare::query;
use crate::compare::window::{BucketPair, Measurements};
use crate::live::databases::Databases;
use crate::output::{Output, Verdict};

#[derive(Debug, Clone, Args)]
pub struct BypassArgs {
    /// Look this far back (from the end of the compared window, where the writers have replayed)
    /// for writes that reached the source without passing through the gateway: a writer still
    /// writing straight to the source.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub bypass_lookback: u64,
}

/// What the check found: whether anything bypassed, and the JSON of it.
pub struct Found {
    pub any: bool,
    pub json: Value,
}

/// Runs the check over `[until - lookback, until)` for each of `pairs` and reports each
/// finding with `verdict` (WARN in `status`, DIFFERS in `verify`, REFUSED in `cutover`).
pub async fn check(
    out: &mut Output,
    dbs: &Databases,
    pairs: &[BucketPair],
    until: OffsetDateTime,
    args: &BypassArgs,
    verdict: Verdict,
) -> anyhow::Result<Found> {
    let since = until - Duration::from_secs(args.bypass_lookback);
    let (a, b) = (nanos(since), nanos(until));
    let mut rows = Vec::new();
    // The source's tasks write their output inside influxd: by design it never passes through
    // the gateway, and the destination derives its own at the handover.
    let derived = match crate::scheduled::work::task_outputs(&dbs.src).await {
        Ok(d) => d,
        Err(e) => {
            out.warn(format!(
                "could not list the source's tasks (their output buckets count as bypassed): {e}"
            ));
            Vec::new()
        }
    };
    for pair in pairs {
        // The tasks' measurements, when their Flux names them, are left out; otherwise the bucket.
        let mut tasks_write = None;
        if let Some(d) = derived
            .iter()
            .find(|d| d.bucket == pair.src_bucket && pair.src_org.as_deref().is_none_or(|o| o == d.org))
        {
            match &d.measurements {
                Some(ms) => {
                    out.note(format!(
                        "bypass: measurement(s) {} of {}/{} are written by the source's tasks; their output does not \
                         pass through the gateway and is not counted",
                        Measurements::names(ms),
                        d.org,
                        d.bucket
                    ));
                    tasks_write = Some(ms.clone());
                }
                None => {
                    out.note(format!(
                        "bypass: {}/{} is written by the source's tasks; their output does not pass through the \
                         gateway and is not counted",
                        d.org, d.bucket
                    ));
                    continue;
                }
            }
        }
        let (s, d) = tokio::join!(
            query::resolve(&dbs.src, pair.src_org.as_deref(), &pair.src_bucket),
            query::resolve(&dbs.dst, pair.dst_org.as_deref(), &pair.dst_bucket)
        );
        // A missing bucket is verify's to report.
        let (Some((s_bucket, s_org)), Some((d_bucket, _))) = (s?, d?) else { continue };
        for f in bypass::detect(&dbs.src, &s_bucket, &dbs.dst, &d_bucket, a, b).await? {
            if !pair.measurements.covers(&f.measurement)
                || tasks_write.as_ref().is_some_and(|t| t.contains(&f.measurement))
            {
                continue;
            }
            let label = format!("{s_org}/{}", pair.src_bucket);
            out.check(
                &format!("bypass {label} {}", f.measurement),
                verdict,
                format!(
                    "{} value(s) reached the source from {} to {} without passing through the gateway, the newest at {}: \
                     a writer still writes straight to the source. Move it behind the gateway, then run `influx-migration repair`",
                    f.values,
                    rfc3339(since),
                    rfc3339(until),
                    crate::compare::digest::rfc3339_ns(f.newest_ns)
                ),
            );
            rows.push(json!({"bucket": label, "found": f}));
        }
    }
    if rows.is_empty() {
        out.check(
            "bypass",
            Verdict::Ok,
            format!(
                "every write that reached the source from {} to {} came through the gateway",
                rfc3339(since),
                rfc3339(until)
            ),
        );
    }
    Ok(Found {
        any: !rows.is_empty(),
        json: json!({"since": rfc3339(since), "until": rfc3339(until), "bypassed": rows}),
    })
}

fn nanos(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}
