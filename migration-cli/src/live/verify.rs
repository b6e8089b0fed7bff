//! `verify`: per bucket and measurement, the number of values at the source and at the
//! destination over a time window; a table; exit 3 on any difference.
//!
//! The counting is [`crate::compare::counts::compare`] (counted by influxd, answers streamed). Buckets are
//! compared one at a time and each result is printed as it arrives, so a long verification shows
//! progress; the full table and the verdict follow.
//!
//! The window's end, without `--stop`, is where both stream writers have replayed the stream
//! ([`ReplayBound`], from their lag less [`REPLAY_MARGIN`]) when the deployment is known: the
//! comparison then covers every point the writers say they have applied, however recent, and
//! never ends before the seeding's snapshot while the writers are keeping up. A writer whose lag
//! is unknown gives no bound; then the end is `--settle-seconds` (60) before now, and `verify`
//! says so. Points written in the last moments may still be on their way through the stream and
//! would otherwise show as differences that are only lag.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use serde_json::json;
use shared::secret::EndpointSecret;
use time::OffsetDateTime;

use crate::aws::deployment::{Aws, Deployment};
use crate::aws::endpoint::{self, CurrentSecret};
use crate::aws::lag::{AnyLag, rfc3339};
use crate::aws::replay_bound::{ReplayBound, replay_bound};
use crate::aws::stalls;
use crate::compare::counts::{self as counts, VerifyReport};
use crate::compare::query;
use crate::compare::window::{BucketPair, Measurements, TimeWindow};
use crate::exit::Exit;
use crate::live::barrier_wait;
use crate::live::bypass_check::{self, BypassArgs};
use crate::live::databases::{self, Databases, InfluxArgs};
use crate::live::options::CommonArgs;
use crate::output::{Output, Verdict};

/// The time window flags (shared with `cutover`).
#[derive(Debug, Clone, Args)]
pub struct WindowArgs {
    /// Start of the window, RFC3339 (default: the earliest time InfluxDB stores).
    #[arg(long, value_name = "RFC3339")]
    pub start: Option<String>,
    /// End of the window, RFC3339 (default: where both stream writers have replayed the stream,
    /// from their lag; without a known lag, now minus --settle-seconds).
    #[arg(long, value_name = "RFC3339")]
    pub stop: Option<String>,
    /// Without --stop and without a known writer lag, leave out the last this many seconds
    /// (points still in flight).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub settle_seconds: u64,
}

/// How `verify` and `cutover` compare (beyond the window).
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Compare content too, not only value counts: every value (series, field, time, typed
    /// value) is read from both databases through this program and digested per time window,
    /// and the smallest windows that differ are named. A changed value, or a missing point
    /// matched by an extra one, then cannot pass. It reads all the data once from each side:
    /// minutes for millions of values, where counting takes seconds.
    #[arg(long, conflicts_with = "counts_only")]
    pub content: bool,
    /// Compare value counts only, also where content is compared by default (since the live
    /// path started): a changed value, or a missing point matched by an extra one, then passes.
    #[arg(long)]
    pub counts_only: bool,
    /// Measurements compared at once: each runs one query at a time on each database, so this
    /// is the most queries this command runs at once on the source (and on the destination).
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrency: u16,
}

/// Where content (every value, `crate::compare::digest`) is compared, beyond counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentScope {
    /// Counts only; why.
    CountsOnly(String),
    /// From this time to the window's end (counts before it); why this time.
    Since(OffsetDateTime, String),
    /// Over the whole window; why.
    Whole(String),
}

impl CompareArgs {
    /// Content by default where it is cheap: from when the live path started (`live_since`, with
    /// where that came from) to the window's end; over the whole window with `--content`, or when
    /// an explicit `--start` bounds it; counts only with `--counts-only`, or when neither is known.
    pub fn scope(&self, live_since: Option<(OffsetDateTime, String)>, explicit_start: bool) -> ContentScope {
        if self.counts_only {
            return ContentScope::CountsOnly(
                "--counts-only: a changed value, or a missing point matched by an extra one, would pass"
                    .into(),
            );
        }
        if self.content {
            return ContentScope::Whole("--content".into());
        }
        if explicit_start {
            return ContentScope::Whole("the window asked (--start)".into());
        }
        match live_since {
            Some((t, why)) => ContentScope::Since(t, why),
            None => ContentScope::CountsOnly(
                "when the live path started is not known here: pass --content (every value) or --start"
                    .into(),
            ),
        }
    }
}

impl ContentScope {
    /// The part of `window` whose content is compared, if any.
    pub fn content_window(&self, window: &TimeWindow) -> Option<TimeWindow> {
        match self {
            ContentScope::CountsOnly(_) => None,
            ContentScope::Whole(_) => Some(*window),
            ContentScope::Since(t, _) => {
                if window.stop.is_some_and(|stop| stop <= *t) {
                    return None;
                }
                let start = window.start.map_or(*t, |s| s.max(*t));
                Some(TimeWindow::new(Some(start), window.stop))
            }
        }
    }

    /// For the operator.
    pub fn describe(&self) -> String {
        match self {
            ContentScope::CountsOnly(why) => format!("value counts only ({why})"),
            ContentScope::Whole(why) => format!("every value over the whole window ({why}), and counts"),
            ContentScope::Since(t, why) => format!(
                "every value from {} ({why}) to the window's end, and counts over the whole window; \
                 --content compares every value before it too",
                rfc3339(*t)
            ),
        }
    }
}

impl WindowArgs {
    /// The window: `--start`/`--stop` as given; without `--stop`, the end is `replayed` when
    /// known (never after now), else `--settle-seconds` before now.
    pub fn window(&self, now: OffsetDateTime, replayed: Option<&ReplayBound>) -> anyhow::Result<TimeWindow> {
        let mut w = TimeWindow::parse(self.start.as_deref(), self.stop.as_deref())?;
        if w.stop.is_none() {
            w.stop = Some(match replayed {
                // Proven by a barrier: exact, or a point acknowledged just before it is left out.
                Some(b) if b.exact => b.until.min(now),
                // Estimates, in whole seconds rounded down: the window is printed, and
                // nanoseconds there only distract.
                Some(b) => floor_second(b.until.min(now)),
                None => floor_second(now - Duration::from_secs(self.settle_seconds)),
            });
        }
        if let (Some(a), Some(b)) = (w.start, w.stop)
            && a >= b
        {
            anyhow::bail!("the window is empty: --start {} is not before its end {}", rfc3339(a), rfc3339(b));
        }
        Ok(w)
    }
}

fn floor_second(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub influx: InfluxArgs,
    #[command(flatten)]
    pub window: WindowArgs,
    #[command(flatten)]
    pub compare: CompareArgs,
    #[command(flatten)]
    pub bypass: BypassArgs,
    /// Compare only the derived buckets, the ones the source's tasks write to (their
    /// `to(bucket: …)`), up to where the database that does not own scheduled work last ran
    /// them: after a handover both must hold the same derived points. Add --content to compare
    /// every value, not only counts.
    #[arg(long)]
    pub derived: bool,
    #[command(flatten)]
    pub barrier: BarrierArgs,
}

/// `--barrier` (shared with `repair`).
#[derive(Debug, Clone, Args)]
pub struct BarrierArgs {
    /// End the window where a barrier proves both writers have replayed the stream (as
    /// `cutover` does): put a barrier into every shard, wait for both stream writers to pass it,
    /// and compare up to the moment it was put. Needs the deployment (--stack or the names).
    #[arg(id = "barrier", long = "barrier", conflicts_with = "stop")]
    pub on: bool,
    /// With --barrier: how long to wait for the writers before failing.
    #[arg(long, default_value_t = 300, value_name = "SECONDS", requires = "barrier")]
    pub barrier_timeout: u64,
}

impl BarrierArgs {
    /// With `--barrier`: the bound a barrier proves (printed as a check), or why there is none;
    /// without it, `named`'s lag estimate.
    pub async fn bound(
        &self,
        out: &mut Output,
        common: &CommonArgs,
        named: Option<&Named>,
    ) -> anyhow::Result<Result<Option<ReplayBound>, String>> {
        let estimate = named.and_then(|n| n.bound.clone());
        if !self.on {
            return Ok(Ok(estimate));
        }
        let Some(n) = named else {
            anyhow::bail!(
                "--barrier needs the deployment (--stack, or --stream-name, --secret-id and --dead-letter-bucket): \
                 the barrier goes into its stream"
            );
        };
        let lag = AnyLag::new(&common.aws.lag_source, n.aws.cloudwatch.clone());
        let timeout = Duration::from_secs(self.barrier_timeout);
        match barrier_wait::prove(out, &n.aws, &n.dep, &lag, timeout).await {
            Ok(proof) => {
                out.check("barrier", Verdict::Ok, proof.describe());
                Ok(Ok(Some(proof.bound())))
            }
            Err(e) => {
                out.check("barrier", Verdict::Differs, e.to_string());
                Ok(Err(e.to_string()))
            }
        }
    }
}

/// What a named deployment gives `verify`: the endpoint secret (addresses and mappings) and,
/// when the writers' lag is known, where they have replayed the stream.
pub struct Named {
    pub secret: CurrentSecret,
    pub bound: Option<ReplayBound>,
    pub aws: Aws,
    pub dep: Deployment,
}

/// The named deployment, if any. With both hosts given, a deployment that cannot be read (no
/// AWS account here, no network to it) costs the secret's mappings and the writers' replay
/// bound, which the operator is told, not the command.
pub async fn deployment_or_hosts(
    out: &mut Output,
    common: &CommonArgs,
    influx: &InfluxArgs,
) -> anyhow::Result<Option<Named>> {
    match deployment_if_named(common).await {
        Ok(n) => Ok(n),
        Err(e) if influx.src_host.is_some() && influx.dest_host.is_some() => {
            out.warn(format!(
                "the deployment was not read ({e:#}); comparing the given hosts without the endpoint \
                 secret's bucket mappings or the writers' replay bound"
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

async fn deployment_if_named(common: &CommonArgs) -> anyhow::Result<Option<Named>> {
    if common.aws.stack.is_none() && common.aws.secret_id.is_none() {
        return Ok(None);
    }
    let aws = Aws::connect(&common.aws).await;
    let dep = Deployment::resolve(&common.aws, &aws).await?;
    let id = dep.secret_id()?.to_string();
    let secret = endpoint::read(&aws.secrets, &id).await?;
    let bound = match dep.destination_function.as_deref() {
        Some(f) => {
            let lag = AnyLag::new(&common.aws.lag_source, aws.cloudwatch.clone());
            replay_bound(&lag, f, dep.source_function.as_deref()).await
        }
        None => None,
    };
    Ok(Some(Named { secret, bound, aws, dep }))
}

/// When the live path started feeding the destination writer, with where that came from: its
/// mappings' `AT_TIMESTAMP` starting position, or for a mapping reading from `TRIM_HORIZON` the
/// stream's creation (every record in it arrived after). Points that arrived since came through
/// the stream; what a seeding copied arrived before.
pub async fn live_since(
    aws: &Aws,
    dep: &Deployment,
    mappings: &[crate::aws::event_source::Mapping],
) -> Option<(OffsetDateTime, String)> {
    let function = dep.destination_function.as_deref()?;
    if let Some(t) = crate::aws::event_source::live_since(mappings) {
        return Some((
            t,
            format!("when the live path started: the starting position of {function}'s event source mapping"),
        ));
    }
    let stream = dep.stream_name.as_deref()?;
    let created = crate::aws::stream::describe(&aws.kinesis, stream).await.ok()?.created?;
    Some((
        created,
        format!(
            "when the live path started: the creation of stream {stream}, which {function} reads from its start"
        ),
    ))
}

/// [`live_since`] with the destination writer's mappings read here; `None` when they cannot be.
async fn read_live_since(aws: &Aws, dep: &Deployment) -> Option<(OffsetDateTime, String)> {
    let function = dep.destination_function.as_deref()?;
    let mappings = crate::aws::event_source::of_function(&aws.lambda, function).await.ok()?;
    live_since(aws, dep, &mappings).await
}

/// The comparison `verify` and `cutover` make: both databases (addresses and mappings from the
/// endpoint secret when there is one), every bucket pair, each reported as it completes, then the
/// table. Returns the report and the source buckets left out.
pub async fn compare_databases(
    out: &mut Output,
    influx: &InfluxArgs,
    window_args: &WindowArgs,
    compare: &CompareArgs,
    known: Known<'_>,
    derived_only: bool,
) -> anyhow::Result<Compared> {
    let Known { secret, replayed, live_since } = known;
    let dbs = Databases::connect(influx, secret)?;
    let window = window_args.window(OffsetDateTime::now_utc(), replayed)?;
    let content = compare.scope(live_since.cloned(), window_args.start.is_some());
    out.note(format!("comparing {} with {} ({})", dbs.src.host(), dbs.dst.host(), window.describe()));
    out.note(format!("compared: {}", content.describe()));
    if window_args.stop.is_none() {
        match replayed {
            Some(b) => {
                out.note(format!("the window ends where the stream writers have replayed: {}", b.because))
            }
            None if secret.is_some() => out.note(format!(
                "the writers' lag is unknown: the window ends {} s before now (--settle-seconds)",
                window_args.settle_seconds
            )),
            None => {}
        }
    }
    let mappings = secret.map(|s| s.mappings.clone()).unwrap_or_default();
    let pairs = databases::bucket_pairs(&dbs, &mappings, &influx.buckets).await?;
    databases::note_left_out(out, &pairs);
    // A bucket the source's tasks write to: while the destination holds scheduled work the
    // tasks' output is made whole only at the handover (influxd finishes runs out of order, and a
    // backup can leave out points still in a write cache), so the measurements they write are
    // left out then and the bucket's other measurements (what clients write) are compared; once
    // the destination owns scheduled work the tasks' measurements are compared up to where the
    // source last ran its tasks. Tasks are matched per org.
    let mut comparisons: Vec<(BucketPair, TimeWindow)> = Vec::new();
    let scope = match crate::scheduled::transfer::derived_scope(&dbs.src, &dbs.dst).await {
        Ok(scope) => Some(scope),
        Err(e) => {
            out.warn(format!("could not list the tasks (derived buckets are compared like the others): {e}"));
            None
        }
    };
    let stop = scope.as_ref().and_then(|s| s.until).and_then(|(until, side)| {
        let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(until) * 1_000_000_000 + 1).ok()?;
        Some((t, side))
    });
    for p in &pairs.pairs {
        let task_output = scope.as_ref().and_then(|s| {
            s.buckets
                .iter()
                .find(|d| d.bucket == p.src_bucket && p.src_org.as_deref().is_none_or(|o| o == d.org))
        });
        let Some(d) = task_output else {
            if !derived_only {
                comparisons.push((p.clone(), window));
            }
            continue;
        };
        let label = format!("{}/{}", d.org, d.bucket);
        match (stop, &d.measurements) {
            (Some((_, "destination")), Some(ms)) => {
                out.note(format!(
                    "bucket {label}: measurement(s) {} are written by the source's tasks, which the destination \
                     holds: they are compared after the handover of scheduled work (cutover; `verify --derived` then); \
                     the bucket's other measurements are compared now",
                    Measurements::names(ms)
                ));
                if !derived_only {
                    comparisons.push((p.with(Measurements::Except(ms.clone())), window));
                }
            }
            (Some((_, "destination")), None) => out.warn(format!(
                "bucket {label} is written by the source's tasks, which the destination holds, and their Flux does \
                 not name the measurements they write (no literal `_measurement`): the whole bucket is compared only \
                 after the handover of scheduled work (cutover; `verify --derived` then). Name the measurement in the \
                 task (`set(key: \"_measurement\", value: …)`) so the clients' measurements are compared now"
            )),
            (Some((t, side)), written) if window.stop.is_none_or(|w| t < w) => {
                let until = TimeWindow::new(window.start, Some(t));
                match written {
                    Some(ms) => {
                        out.note(format!(
                            "bucket {label}: measurement(s) {} are written by the source's tasks: compared up to {}, \
                             where the tasks held at the {side} last ran (less the periods a handover recomputes)",
                            Measurements::names(ms),
                            rfc3339(t)
                        ));
                        if !derived_only {
                            comparisons.push((p.with(Measurements::Except(ms.clone())), window));
                        }
                        comparisons.push((p.with(Measurements::Only(ms.clone())), until));
                    }
                    None => {
                        out.note(format!(
                            "bucket {label} is written by the source's tasks: compared up to {}, where the tasks held \
                             at the {side} last ran (less the periods a handover recomputes)",
                            rfc3339(t)
                        ));
                        comparisons.push((p.clone(), until));
                    }
                }
            }
            (_, written) => {
                let only = written.clone().map_or(Measurements::All, Measurements::Only);
                if derived_only {
                    comparisons.push((p.with(only), window));
                } else {
                    comparisons.push((p.clone(), window));
                }
            }
        }
    }
    let report = compare_streamed(out, &dbs, &comparisons, &window, compare, &content).await?;
    out.text(&report.render_table());
    if report.buckets.is_empty() {
        // A comparison that compared nothing proves nothing.
        out.check(
            "compared",
            Verdict::Differs,
            "no bucket was compared: no source bucket is replayed to the destination by the secret's mappings \
             (or --bucket named none); there is nothing to show the destination holds",
        );
    }
    let skipped = pairs
        .skipped
        .iter()
        .cloned()
        .chain(pairs.source_only.iter().map(|b| format!("{b}: source-only (\"unmapped\": \"source-only\")")))
        .collect();
    // The bypass check looks at what clients write: never at the tasks' own measurements.
    let compared_pairs = comparisons
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| !matches!(p.measurements, Measurements::Only(_)))
        .collect();
    Ok(Compared { report, skipped, window, dbs, pairs: compared_pairs })
}

/// What the deployment tells a comparison, when it is known: the endpoint secret (addresses and
/// mappings), where both writers have replayed the stream, and when the live path started.
#[derive(Debug, Clone, Copy, Default)]
pub struct Known<'a> {
    pub secret: Option<&'a EndpointSecret>,
    pub replayed: Option<&'a ReplayBound>,
    pub live_since: Option<&'a (OffsetDateTime, String)>,
}

/// What [`compare_databases`] compared, and the result.
pub struct Compared {
    pub report: VerifyReport,
    /// Source buckets left out, and why.
    pub skipped: Vec<String>,
    pub window: TimeWindow,
    pub dbs: Databases,
    /// The bucket pairs compared (after the secret's mappings and `--bucket`).
    pub pairs: Vec<BucketPair>,
}

impl Compared {
    /// Whether every bucket compared agrees, and at least one was compared.
    pub fn is_clean(&self) -> bool {
        !self.report.buckets.is_empty() && self.report.is_clean()
    }

    /// Where the bypass check ends: the window's end, never after now.
    pub fn until(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        self.window.stop.map_or(now, |s| s.min(now))
    }
}

/// Compares every pair, one bucket at a time (counts, then over the part of the window `scope`
/// gives each measurement's content by window, `crate::compare::digest`), reporting each as it
/// completes.
async fn compare_streamed(
    out: &mut Output,
    dbs: &Databases,
    comparisons: &[(BucketPair, TimeWindow)],
    window: &TimeWindow,
    compare: &CompareArgs,
    scope: &ContentScope,
) -> anyhow::Result<VerifyReport> {
    let mut report = VerifyReport {
        source_host: dbs.src.host().to_string(),
        destination_host: dbs.dst.host().to_string(),
        window: window.describe(),
        buckets: Vec::with_capacity(comparisons.len()),
    };
    for (pair, window) in comparisons {
        let mut one = counts::compare(&dbs.src, &dbs.dst, std::slice::from_ref(pair), window)
            .await
            .with_context(|| format!("counting bucket {}", pair.src_bucket))?;
        if let Some(content_window) = scope.content_window(window) {
            compare_content(
                dbs,
                pair,
                &content_window,
                usize::from(compare.max_concurrency),
                &mut one.buckets,
            )
            .await
            .with_context(|| format!("comparing the content of bucket {}", pair.src_bucket))?;
        }
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
                let windows: usize = b.measurements.iter().map(|m| m.differing_windows).sum();
                format!(
                    "{} measurement(s), {} value(s) at the source, {} at the destination{}",
                    b.measurements.len(),
                    b.source_total(),
                    b.destination_total(),
                    match (differing, windows) {
                        (0, _) => String::new(),
                        (d, 0) => format!(", {d} measurement(s) differ"),
                        (d, w) => format!(", {d} measurement(s) differ, in {w} time window(s)"),
                    }
                )
            };
            out.check(&format!("bucket {} -> {}", b.source, b.destination), verdict, what);
            report.buckets.push(b);
        }
    }
    Ok(report)
}

/// Fills in each measurement's differing windows (`crate::compare::digest`) for a pair whose
/// destination bucket exists, `concurrency` measurements at a time.
async fn compare_content(
    dbs: &Databases,
    pair: &BucketPair,
    window: &TimeWindow,
    concurrency: usize,
    reports: &mut [counts::BucketReport],
) -> anyhow::Result<()> {
    let (s, d) = tokio::join!(
        query::resolve(&dbs.src, pair.src_org.as_deref(), &pair.src_bucket),
        query::resolve(&dbs.dst, pair.dst_org.as_deref(), &pair.dst_bucket)
    );
    let (Some((s_bucket, _)), Some((d_bucket, _))) = (s?, d?) else { return Ok(()) };
    for b in reports.iter_mut().filter(|b| !b.destination_missing) {
        let (s_bucket, d_bucket) = (&s_bucket, &d_bucket);
        let found: Vec<_> = futures::stream::iter(b.measurements.iter().enumerate())
            .map(|(i, m)| async move {
                let d = crate::compare::digest::differing_windows(
                    &dbs.src,
                    s_bucket,
                    &dbs.dst,
                    d_bucket,
                    &m.measurement,
                    window,
                    crate::compare::digest::MAX_REPORTED,
                )
                .await
                .with_context(|| format!("measurement {}", m.measurement));
                (i, d)
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        for (i, d) in found {
            let d = d?;
            b.measurements[i].differing_windows = d.total;
            b.measurements[i].windows = d.windows;
        }
    }
    Ok(())
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<Exit> {
    let mut out = Output::new("verify", args.common.json);
    // With both hosts given, verify stands on its own: a deployment that cannot be read (no AWS
    // account here, no network to it) costs the secret's mappings and the writers' replay
    // bound, which the operator is told, not the comparison.
    let named = deployment_or_hosts(&mut out, &args.common, &args.influx).await?;
    let secret = named.as_ref().map(|n| &n.secret.secret);
    let bound = match args.barrier.bound(&mut out, &args.common, named.as_ref()).await? {
        Ok(b) => b,
        Err(e) => return Ok(out.finish(Exit::Failure, json!({"barrier": e}))),
    };
    let bound = bound.as_ref();
    if args.derived {
        let dbs = Databases::connect(&args.influx, secret)?;
        let scope = crate::scheduled::transfer::derived_scope(&dbs.src, &dbs.dst).await?;
        let wanted: Vec<String> = scope
            .buckets
            .iter()
            .filter(|d| args.influx.buckets.is_empty() || args.influx.buckets.contains(&d.bucket))
            .map(|d| format!("{}/{}", d.org, d.bucket))
            .collect();
        if wanted.is_empty() {
            out.note(
                "no task at the source writes to a bucket (by name): there is no derived data to compare",
            );
            return Ok(out.finish(Exit::Success, json!({"derived": {"buckets": []}})));
        }
        out.note(format!("derived buckets (written by the source's tasks): {}", wanted.join(", ")));
    }
    let live_since = match &named {
        Some(n) => read_live_since(&n.aws, &n.dep).await,
        None => None,
    };
    let compared = compare_databases(
        &mut out,
        &args.influx,
        &args.window,
        &args.compare,
        Known { secret, replayed: bound, live_since: live_since.as_ref() },
        args.derived,
    )
    .await?;
    let bypassed = bypass_check::check(
        &mut out,
        &compared.dbs,
        &compared.pairs,
        compared.until(),
        &args.bypass,
        Verdict::Differs,
    )
    .await
    .context("looking for writes that bypassed the gateway")?;
    let clean = compared.is_clean();
    let Compared { report, skipped, .. } = compared;
    // Writes the mappings leave to the source are not differences, but the operator must know.
    let mut source_only = json!({});
    if let Some(Named { aws, dep: Deployment { dead_letter_bucket: Some(bucket), .. }, .. }) = &named {
        match stalls::source_only(&aws.s3, bucket).await {
            Ok(counts) if !counts.is_empty() => {
                out.note(stalls::describe_source_only(&counts));
                source_only = json!(counts);
            }
            Ok(_) => {}
            Err(e) => out.warn(format!("could not read the source-only counts: {e}")),
        }
    }
    let exit = if clean && !bypassed.any { Exit::Success } else { Exit::Differences };
    Ok(out.finish(
        exit,
        json!({"report": report.to_json(), "skipped": skipped, "source_only": source_only, "bypass": bypassed.json}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::lag::LagReading;
    use time::macros::datetime;

    fn args(start: Option<&str>, stop: Option<&str>) -> WindowArgs {
        WindowArgs { start: start.map(str::to_string), stop: stop.map(str::to_string), settle_seconds: 60 }
    }

    #[test]
    fn without_a_known_lag_the_window_ends_a_settle_time_before_now() {
        let now = datetime!(2026-11-25 10:00:00.123456 UTC);
        let w = args(Some("2026-11-25T00:00:00Z"), None).window(now, None).unwrap();
        assert_eq!(w.stop, Some(datetime!(2026-11-25 09:59:00 UTC)));
        assert_eq!(w.start, Some(datetime!(2026-11-25 00:00:00 UTC)));
        let explicit = args(None, Some("2026-11-24T00:00:00Z")).window(now, None).unwrap();
        assert_eq!(explicit.stop, Some(datetime!(2026-11-24 00:00:00 UTC)));
    }

    fn reading(age_ms: Option<u64>, at: &str) -> LagReading {
        LagReading {
            function: "w".into(),
            source: "file:lag.json".into(),
            iterator_age_ms: age_ms,
            observed_at: Some(at.into()),
            pending_records: None,
            unknown_because: age_ms.is_none().then(|| "no datapoint".to_string()),
        }
    }

    #[test]
    fn the_window_ends_where_the_writers_have_replayed_not_a_settle_time_before_now() {
        // Regression: a settle window of 60 s ended before the seeding's snapshot, so verify
        // compared only what the snapshot had copied and passed with the writer dead.
        let now = datetime!(2026-11-25 10:00:00.5 UTC);
        let dest = reading(Some(2_000), "2026-11-25T10:00:00Z");
        let bound = ReplayBound::from_readings(&dest, None).unwrap();
        assert_eq!(bound.until, datetime!(2026-11-25 09:59:53 UTC), "10:00:00 less 2 s lag less the margin");
        let w = args(None, None).window(now, Some(&bound)).unwrap();
        assert_eq!(w.stop, Some(datetime!(2026-11-25 09:59:53 UTC)));
    }

    #[test]
    fn a_writer_that_keeps_failing_holds_the_window_at_what_it_applied() {
        // Its IteratorAge grows from the oldest record it has not applied: the bound stays there.
        let dest = reading(Some(300_000), "2026-11-25T10:00:00Z");
        let source = reading(Some(1_000), "2026-11-25T10:00:00Z");
        let bound = ReplayBound::from_readings(&dest, Some(&source)).unwrap();
        assert_eq!(bound.until, datetime!(2026-11-25 09:54:55 UTC));
        // And the slower of the two writers decides.
        let bound = ReplayBound::from_readings(&source, Some(&dest)).unwrap();
        assert_eq!(bound.until, datetime!(2026-11-25 09:54:55 UTC));
        assert!(bound.because.contains("destination writer") && bound.because.contains("source writer"));
    }

    #[test]
    fn an_unknown_destination_lag_gives_no_bound_and_an_unknown_source_lag_is_left_out() {
        let unknown = reading(None, "2026-11-25T10:00:00Z");
        let known = reading(Some(0), "2026-11-25T10:00:00Z");
        assert_eq!(ReplayBound::from_readings(&unknown, Some(&known)), None);
        let b = ReplayBound::from_readings(&known, Some(&unknown)).unwrap();
        assert_eq!(b.until, datetime!(2026-11-25 09:59:55 UTC));
    }

    #[test]
    fn an_empty_window_is_refused_with_both_ends_named() {
        let now = datetime!(2026-11-25 10:00:00 UTC);
        let e = args(Some("2026-11-26T00:00:00Z"), None).window(now, None).unwrap_err().to_string();
        assert!(e.contains("2026-11-26T00:00:00Z") && e.contains("2026-11-25T09:59:00Z"), "{e}");
    }

    fn compare_args(content: bool, counts_only: bool) -> CompareArgs {
        CompareArgs { content, counts_only, max_concurrency: 2 }
    }

    #[test]
    fn content_is_compared_by_default_from_when_the_live_path_started() {
        // Regression: verify and cutover compared counts unless --content was given, so a
        // changed value, or a missing point matched by an extra one, passed.
        let since = datetime!(2026-11-25 09:00:00 UTC);
        let live = Some((since, "the mapping's start".to_string()));
        let scope = compare_args(false, false).scope(live.clone(), false);
        let window = TimeWindow::new(None, Some(datetime!(2026-11-25 10:00:00 UTC)));
        assert_eq!(
            scope.content_window(&window),
            Some(TimeWindow::new(Some(since), Some(datetime!(2026-11-25 10:00:00 UTC))))
        );
        // A window that ends before the live path started has no content part; one that starts
        // after it is compared whole.
        let before = TimeWindow::new(None, Some(datetime!(2026-11-25 08:00:00 UTC)));
        assert_eq!(scope.content_window(&before), None);
        let after = TimeWindow::new(Some(datetime!(2026-11-25 09:30:00 UTC)), None);
        assert_eq!(scope.content_window(&after), Some(after));
        // --content: the whole window; --counts-only: none, and it says what that gives up.
        assert_eq!(
            compare_args(true, false).scope(live.clone(), false).content_window(&window),
            Some(window)
        );
        let counts = compare_args(false, true).scope(live, false);
        assert_eq!(counts.content_window(&window), None);
        assert!(counts.describe().contains("would pass"), "{}", counts.describe());
    }

    #[test]
    fn without_a_deployment_content_follows_an_explicit_start_or_counts_only_says_why() {
        let window = TimeWindow::new(Some(datetime!(2026-11-25 09:00:00 UTC)), None);
        assert_eq!(compare_args(false, false).scope(None, true).content_window(&window), Some(window));
        let scope = compare_args(false, false).scope(None, false);
        assert_eq!(scope.content_window(&window), None);
        assert!(scope.describe().contains("--content"), "{}", scope.describe());
    }
}
