//! `repair`: make the windows `verify --content` finds different right, then show they match.
//!
//! Per bucket pair and measurement: the smallest windows whose content differs
//! ([`crate::compare::digest`]), each read whole from both sides and made right at the target
//! ([`crate::compare::reconcile`]: missing and changed values written; values only the target has deleted
//! with `--delete-extra`, after they are printed, and otherwise listed and left). Afterwards the
//! measurement is digested again: exit 0 when every window now matches, 3 when something was
//! left (and it says what). The source is the reference unless `--from destination` (after a
//! rollback, when the destination has had the writes the source missed).
//!
//! Idempotent and resumable: every run starts from what differs now, so a second run finds
//! nothing, and a run that stopped halfway is finished by the next. `--dry-run` prints what it
//! would write and delete, changes nothing, and exits 3 when there is something to do.

use anyhow::Context;
use clap::{Args, ValueEnum};
use futures::StreamExt;
use serde_json::json;
use time::OffsetDateTime;

use crate::compare::counts;
use crate::compare::query;
use crate::compare::reconcile::{Policy, Repaired, Sides, repair_measurement};
use crate::compare::window::{BucketPair, TimeWindow};
use crate::exit::Exit;
use crate::live::databases::{self, Databases, InfluxArgs};
use crate::live::options::CommonArgs;
use crate::live::verify::{BarrierArgs, WindowArgs, deployment_or_hosts};
use crate::output::{Output, Verdict};

/// Values printed at the most per measurement for deletes and for what is left (the rest are
/// counted; `--json` carries them all).
const MAX_PRINTED: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Side {
    Source,
    Destination,
}

#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub influx: InfluxArgs,
    #[command(flatten)]
    pub window: WindowArgs,
    #[command(flatten)]
    pub barrier: BarrierArgs,
    /// Which side holds the right data: `source` (the destination is made to match it) or
    /// `destination` (after a rollback: the source is made to match).
    #[arg(long, value_enum, default_value = "source")]
    pub from: Side,
    /// Also delete what only the other side holds (points, fields, values of another type),
    /// after printing it. InfluxDB deletes whole points: such a point is deleted and written
    /// again from the side that is right. Without this flag those values are listed and left.
    #[arg(long)]
    pub delete_extra: bool,
    /// Print what would be written and deleted; change nothing (exit 3 when there is something
    /// to do).
    #[arg(long)]
    pub dry_run: bool,
    /// Only this measurement (repeatable; default: every measurement of each bucket), e.g. the
    /// one a bypass check named.
    #[arg(long = "measurement", value_name = "NAME")]
    pub measurements: Vec<String>,
    /// Measurements repaired at once (each runs one query at a time on each database).
    #[arg(long, default_value_t = 2, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub max_concurrency: u16,
}

fn list(lines: &[String]) -> String {
    let mut shown: Vec<&str> = lines.iter().take(MAX_PRINTED).map(String::as_str).collect();
    let more = lines.len().saturating_sub(MAX_PRINTED);
    let extra = format!("… and {more} more");
    if more > 0 {
        shown.push(&extra);
    }
    shown.iter().map(|l| format!("\n      {l}")).collect()
}

async fn repair_pair(
    out: &mut Output,
    dbs: &Databases,
    pair: &BucketPair,
    window: &TimeWindow,
    args: &RepairArgs,
) -> anyhow::Result<Vec<Repaired>> {
    let (s, d) = tokio::join!(
        query::resolve(&dbs.src, pair.src_org.as_deref(), &pair.src_bucket),
        query::resolve(&dbs.dst, pair.dst_org.as_deref(), &pair.dst_bucket)
    );
    let Some((s_bucket, s_org)) = s? else {
        anyhow::bail!("the source has no bucket {}", pair.src_bucket);
    };
    let Some((d_bucket, d_org)) = d? else {
        anyhow::bail!(
            "the destination has no bucket {} (run the seeding migration first: repair fills in windows, not buckets)",
            pair.dst_bucket
        );
    };
    let name = format!("{s_org}/{} -> {d_org}/{}", pair.src_bucket, pair.dst_bucket);
    let counted = counts::compare(&dbs.src, &dbs.dst, std::slice::from_ref(pair), window).await?;
    let measurements: Vec<String> = counted
        .buckets
        .iter()
        .flat_map(|b| b.measurements.iter().map(|m| m.measurement.clone()))
        .filter(|m| args.measurements.is_empty() || args.measurements.contains(m))
        .collect();
    let sides = match args.from {
        Side::Source => Sides { reference: (&dbs.src, &s_bucket), target: (&dbs.dst, &d_bucket) },
        Side::Destination => Sides { reference: (&dbs.dst, &d_bucket), target: (&dbs.src, &s_bucket) },
    };
    let target = match args.from {
        Side::Source => "destination",
        Side::Destination => "source",
    };
    let (sides, label) = (&sides, &name);
    let results: Vec<anyhow::Result<Repaired>> = futures::stream::iter(measurements.iter())
        .map(|m| async move {
            repair_measurement(
                sides,
                m,
                window,
                Policy { delete_extra: args.delete_extra, dry_run: args.dry_run },
            )
            .await
            .with_context(|| format!("bucket {label}, measurement {m}"))
        })
        .buffered(usize::from(args.max_concurrency))
        .collect()
        .await;
    let mut done = Vec::new();
    for r in results {
        let mut r = r?;
        r.bucket = name.clone();
        let check = format!("{} {}", r.bucket, r.measurement);
        if r.windows.is_empty() {
            out.check(&check, Verdict::Ok, "matches; nothing to repair");
        } else {
            let verb = if args.dry_run { "would write" } else { "wrote" };
            let mut detail = format!(
                "{} window(s) differed ({} .. {}); {verb} {} value(s) to the {target}",
                r.windows.len(),
                r.windows.first().map(|w| w.start.as_str()).unwrap_or(""),
                r.windows.last().map(|w| w.stop.as_str()).unwrap_or(""),
                r.values_written,
            );
            if !r.shards_rewritten.is_empty() {
                let verb =
                    if args.dry_run { "would delete and copy again" } else { "deleted and copied again" };
                detail.push_str(&format!(
                    "; a field has another type there, which InfluxDB keeps per shard: {verb} the measurement over {} \
                     ({} value(s) copied within the compared window; {} value(s) the {target} held in the shard outside it put back as they were)",
                    r.shards_rewritten.join(", "),
                    r.values_copied,
                    r.values_restored
                ));
            }
            if r.points_deleted > 0 {
                let verb = if args.dry_run { "would delete" } else { "deleted" };
                detail.push_str(&format!(
                    "; {verb} {} point(s) there:{}",
                    r.points_deleted,
                    list(&r.deleted)
                ));
            }
            let verdict = if args.dry_run {
                Verdict::Differs
            } else if r.still_differing == 0 {
                detail.push_str("; now matches");
                Verdict::Ok
            } else {
                detail.push_str(&format!("; {} window(s) still differ", r.still_differing));
                Verdict::Differs
            };
            out.check(&check, verdict, detail);
            if !r.left.is_empty() {
                out.warn(format!(
                    "{check}: {} value(s) the {target} holds and the other side does not (extra points or fields, or a value of another type) were left; pass --delete-extra to delete them:{}",
                    r.left.len(),
                    list(&r.left)
                ));
            }
            if !args.dry_run && r.values_written + r.points_deleted + r.shards_rewritten.len() > 0 {
                out.did(format!(
                    "{check}: wrote {} value(s), deleted {} point(s), rewrote {} shard range(s) ({} value(s)) at the {target}",
                    r.values_written,
                    r.points_deleted,
                    r.shards_rewritten.len(),
                    r.values_copied
                ));
            }
        }
        done.push(r);
    }
    Ok(done)
}

pub async fn run(args: RepairArgs) -> anyhow::Result<Exit> {
    let mut out = Output::new("repair", args.common.json);
    let named = deployment_or_hosts(&mut out, &args.common, &args.influx).await?;
    let secret = named.as_ref().map(|n| &n.secret.secret);
    let dbs = Databases::connect(&args.influx, secret)?;
    let bound = match args.barrier.bound(&mut out, &args.common, named.as_ref()).await? {
        Ok(b) => b,
        Err(e) => return Ok(out.finish(Exit::Failure, json!({"barrier": e}))),
    };
    let window = args.window.window(OffsetDateTime::now_utc(), bound.as_ref())?;
    let (from, to) = match args.from {
        Side::Source => (dbs.src.host(), dbs.dst.host()),
        Side::Destination => (dbs.dst.host(), dbs.src.host()),
    };
    out.note(format!(
        "{} {to} from {from} ({}){}",
        if args.dry_run { "would repair" } else { "repairing" },
        window.describe(),
        if args.delete_extra { "; values only the repaired side holds are deleted" } else { "" }
    ));
    let mappings = secret.map(|s| s.mappings.clone()).unwrap_or_default();
    let pairs = databases::bucket_pairs(&dbs, &mappings, &args.influx.buckets).await?;
    databases::note_left_out(&mut out, &pairs);
    let mut all = Vec::new();
    for pair in &pairs.pairs {
        all.extend(repair_pair(&mut out, &dbs, pair, &window, &args).await?);
    }
    let to_do = all.iter().any(|r| !r.windows.is_empty());
    let unresolved = all.iter().any(|r| r.still_differing > 0);
    let exit = if (args.dry_run && to_do) || unresolved { Exit::Differences } else { Exit::Success };
    let written: usize = all.iter().map(|r| r.values_written).sum();
    let deleted: usize = all.iter().map(|r| r.points_deleted).sum();
    out.note(match (args.dry_run, to_do, unresolved) {
        (_, false, _) => "nothing to repair: every window matches".to_string(),
        (true, true, _) => format!("dry run: {written} value(s) to write, {deleted} point(s) to delete; nothing changed"),
        (false, true, false) => format!("repaired: {written} value(s) written, {deleted} point(s) deleted; every window now matches"),
        (false, true, true) => format!(
            "{written} value(s) written, {deleted} point(s) deleted; some windows still differ (see above: values only one side holds need --delete-extra)"
        ),
    });
    Ok(out.finish(exit, json!({"dry_run": args.dry_run, "measurements": all})))
}
