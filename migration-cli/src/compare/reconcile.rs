//! Making a window that differs right: the target gets exactly the reference's points.
//!
//! A window [`crate::compare::digest`] found different is read whole from both sides (it is small: the
//! digest refines down to a second, and a window is read only when it differs) into points —
//! a series key and a time, with each field's value as line protocol writes it. Then, point by
//! point:
//!
//! - a value the target lacks, or holds with another value of the same type, is written (a
//!   write replaces the value of a series, field and time);
//! - a point the target holds and the reference does not, a field the reference's point lacks,
//!   or a value of another type (which a write cannot replace: influxd refuses a field type
//!   conflict) can only go by deleting. InfluxDB deletes whole points (series and time; never
//!   one field), so the target's point is deleted and the reference's point, if it has one,
//!   written again. Deleting is done only when the operator asks (`--delete-extra`); otherwise
//!   such values are listed and left.
//!
//! A value of another type is the hard case: influxd keeps each field's type per shard for as
//! long as the measurement has points in that shard, so deleting the point is not enough — the
//! next write of the other type is still refused. With `--delete-extra` the measurement is
//! deleted at the target over the whole shard that holds the point ([`shard_range`]) and copied
//! again from the reference over that range ([`copy_range`]); the fresh shard takes the
//! reference's types.
//!
//! A delete's predicate names the measurement and the series' tags; it also matches any series
//! of that measurement with *more* tags at the same instant. Those points are known (the target's
//! window was read), so every one of them is deleted with it and written again from the
//! reference where the reference has it. Deletes go first, writes after: a crash between them
//! leaves points missing at the target, which the next run finds and writes. The same run twice
//! does nothing the second time.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;

use anyhow::Context;

use crate::compare::counts;
use crate::compare::digest::{self, WindowDiff};
use crate::compare::query::{CompareError, stream_rows};
use crate::compare::window::{Measurements, TimeWindow};
use crate::influx::annotated_csv::{AnnotatedCsv, CsvError, Row};
use crate::influx::api::{ApiError, Bucket, InfluxApi, OrgRef};
use crate::influx::raw_point;

/// One point: its series key (escaped, as line protocol writes it) and time.
pub type PointKey = (Vec<u8>, i64);

/// A point's fields and the raw names a delete predicate needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Point {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    /// Field key (escaped) → value as line protocol writes it (`1i`, `2.5`, `"s"`, `true`).
    pub fields: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// The points of one window of one side.
pub type WindowPoints = BTreeMap<PointKey, Point>;

/// A point the target must lose: what the delete predicate names, and the values going with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointDelete {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub ns: i64,
    /// The target's values of this point, as line protocol (printed before they go).
    pub lines: Vec<String>,
}

impl PointDelete {
    /// `_measurement="m" AND "host"="a"`: InfluxQL-style, every name and value quoted.
    pub fn predicate(&self) -> String {
        let mut p = format!("_measurement={}", quote(&self.measurement));
        for (k, v) in &self.tags {
            p.push_str(&format!(" AND {}={}", quote(k), quote(v)));
        }
        p
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// What making one window right takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Points to delete at the target (only with `delete_extra`), before the writes.
    pub deletes: Vec<PointDelete>,
    /// Line protocol (nanoseconds) to write to the target.
    pub writes: Vec<u8>,
    /// Values written.
    pub values: usize,
    /// Values the target holds that the reference does not, left because deleting was not
    /// asked for (as line protocol).
    pub left: Vec<String>,
    /// Times of points whose field has another type at the target (with `delete_extra`): their
    /// shard's measurement must be rewritten ([`copy_range`]), a point delete cannot fix them.
    pub conflicts: Vec<i64>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty() && self.values == 0 && self.left.is_empty() && self.conflicts.is_empty()
    }
}

/// The kind of a value as line protocol writes it: a write cannot change a field's kind.
fn kind(value: &[u8]) -> u8 {
    match value {
        [b'"', ..] => b's',
        b"true" | b"false" => b'b',
        [.., b'i'] => b'i',
        [.., b'u'] => b'u',
        _ => b'f',
    }
}

fn line(series: &[u8], field: &[u8], value: &[u8], ns: i64) -> Vec<u8> {
    let mut l = Vec::with_capacity(series.len() + field.len() + value.len() + 24);
    l.extend_from_slice(series);
    l.push(b' ');
    l.extend_from_slice(field);
    l.push(b'=');
    l.extend_from_slice(value);
    l.extend_from_slice(format!(" {ns}\n").as_bytes());
    l
}

fn text(l: &[u8]) -> String {
    String::from_utf8_lossy(l).trim_end().to_string()
}

/// Whether a delete of `d` (its measurement and tags, at its instant) also takes `p`.
fn predicate_takes(d: &Point, p: &Point) -> bool {
    d.measurement == p.measurement && d.tags.iter().all(|t| p.tags.contains(t))
}

/// What makes `target` hold exactly `reference`'s points.
pub fn plan(reference: &WindowPoints, target: &WindowPoints, delete_extra: bool) -> Plan {
    let mut out = Plan::default();
    let mut deleted: BTreeSet<PointKey> = BTreeSet::new();
    let mut rewrite: BTreeSet<PointKey> = BTreeSet::new();
    let keys: BTreeSet<&PointKey> = reference.keys().chain(target.keys()).collect();
    for key in keys {
        let (r, t) = (reference.get(key), target.get(key));
        let (series, ns) = (&key.0, key.1);
        match (r, t) {
            (Some(r), None) => {
                for (f, v) in &r.fields {
                    out.writes.extend_from_slice(&line(series, f, v, ns));
                    out.values += 1;
                }
            }
            (r, Some(t)) => {
                let empty = BTreeMap::new();
                let r_fields = r.map(|r| &r.fields).unwrap_or(&empty);
                if r_fields == &t.fields {
                    continue;
                }
                // Values a write cannot take away: fields the reference lacks, other kinds.
                let stuck: Vec<(&Vec<u8>, &Vec<u8>)> = t
                    .fields
                    .iter()
                    .filter(|(f, v)| r_fields.get(*f).is_none_or(|rv| kind(rv) != kind(v)))
                    .collect();
                let conflict =
                    t.fields.iter().any(|(f, v)| r_fields.get(f).is_some_and(|rv| kind(rv) != kind(v)));
                if conflict && delete_extra {
                    out.conflicts.push(ns);
                    continue;
                }
                if !stuck.is_empty() && delete_extra {
                    if deleted.insert(key.clone()) {
                        out.deletes.push(PointDelete {
                            measurement: t.measurement.clone(),
                            tags: t.tags.clone(),
                            ns,
                            lines: t.fields.iter().map(|(f, v)| text(&line(series, f, v, ns))).collect(),
                        });
                    }
                    // The same delete takes the points of series with more tags at this instant.
                    for (other, p) in target.iter().filter(|(k, _)| k.1 == ns) {
                        if other != key && predicate_takes(t, p) {
                            deleted.insert(other.clone());
                            rewrite.insert(other.clone());
                        }
                    }
                    rewrite.insert(key.clone());
                    continue;
                }
                for (f, v) in t.fields.iter().filter(|(f, v)| stuck.contains(&(*f, *v))) {
                    out.left.push(text(&line(series, f, v, ns)));
                }
                for (f, v) in r_fields {
                    if t.fields.get(f) != Some(v) && t.fields.get(f).is_none_or(|tv| kind(tv) == kind(v)) {
                        out.writes.extend_from_slice(&line(series, f, v, ns));
                        out.values += 1;
                    }
                }
            }
            (None, None) => {}
        }
    }
    // Every point a delete takes is written again whole from the reference (values the loop
    // above already wrote for it are written twice: a write of the same value is idempotent).
    for key in &rewrite {
        if let Some(r) = reference.get(key) {
            for (f, v) in &r.fields {
                out.writes.extend_from_slice(&line(&key.0, f, v, key.1));
                out.values += 1;
            }
        }
    }
    out
}

/// Go's `time.Duration` arithmetic counts from 0001-01-01, not from 1970: influxd's shard
/// groups start at `t.Truncate(duration)`, so a 7-day group starts on a Monday.
const UNIX_FROM_YEAR_ONE_NS: i128 = 62_135_596_800 * 1_000_000_000;

/// The shard group duration influxd uses for `bucket`: its own, or influxd's default for its
/// retention (`meta.NormalisedShardDuration`: under 2 days 1 h, under 180 days 1 day, else 7
/// days; infinite 7 days).
fn shard_duration_ns(bucket: &Bucket) -> i128 {
    const HOUR: i64 = 3600;
    let secs = match bucket.shard_group_duration_seconds() {
        Some(d) if d > 0 => d,
        _ => match bucket.retention_seconds() {
            0 => 7 * 24 * HOUR,
            r if r < 2 * 24 * HOUR => HOUR,
            r if r < 180 * 24 * HOUR => 24 * HOUR,
            _ => 7 * 24 * HOUR,
        },
    };
    i128::from(secs) * 1_000_000_000
}

/// `[start, stop)` of the shard group of `bucket` that holds `ns` (as influxd creates them).
pub fn shard_range(bucket: &Bucket, ns: i64) -> (i64, i64) {
    let d = shard_duration_ns(bucket);
    let t = i128::from(ns);
    let start = t - (t + UNIX_FROM_YEAR_ONE_NS).rem_euclid(d);
    let clamp = |v: i128| v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
    (clamp(start), clamp(start + d))
}

/// What a shard rewrite did: values copied from the reference within the compared window, and
/// values the target held in the shard outside it, put back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub copied: usize,
    pub restored: usize,
}

/// Rewrites `measurement` at the target over the shard `[shard.0, shard.1)`: InfluxDB keeps a
/// field's type per shard, so a value of another type goes only with every point of the
/// measurement there. Only the part of the shard inside the compared `window` is made the
/// reference's: what the target holds in the shard outside it (points replayed to the target
/// and not yet to the reference, past the replay bound) is spooled to a file first and put back
/// after the delete, so the rewrite changes nothing outside what was compared. If putting it
/// back fails, the spool is kept and its path named: nothing is lost.
pub async fn rewrite_range(
    reference: (&InfluxApi, &Bucket),
    target: (&InfluxApi, &Bucket),
    measurement: &str,
    shard: (i64, i64),
    window: (i64, i64),
) -> Result<Rewritten, RepairError> {
    let (t_api, t_bucket) = target;
    let (a, b) = shard;
    let inside = (a.max(window.0), b.min(window.1).max(a.max(window.0)));
    let spool_err = |e: std::io::Error| RepairError::Spool(e.to_string());
    let mut spool = tempfile::Builder::new()
        .prefix("influx-migration-repair-")
        .suffix(".lp")
        .tempfile()
        .map_err(spool_err)?;
    let mut restored = 0;
    for (from, to) in [(a, inside.0), (inside.1, b)] {
        if from < to {
            restored +=
                stream_range(target, measurement, from, to, &mut Sink::Spool(spool.as_file_mut())).await?;
        }
    }
    let predicate = format!("_measurement={}", quote(measurement));
    t_api
        .delete(
            OrgRef::Id(&t_bucket.org_id),
            &t_bucket.id,
            &crate::compare::digest::rfc3339_ns(a),
            &crate::compare::digest::rfc3339_ns(b.saturating_sub(1)),
            &predicate,
        )
        .await?;
    let copied = copy_range(reference, target, measurement, inside.0, inside.1).await?;
    if let Err(e) = put_back(t_api, t_bucket, spool.as_file_mut()).await {
        let kept = spool.keep().map(|(_, path)| path.display().to_string());
        return Err(RepairError::PutBack {
            values: restored,
            saved: kept.unwrap_or_else(|e| format!("(could not be kept: {e})")),
            reason: e.to_string(),
        });
    }
    Ok(Rewritten { copied, restored })
}

/// Writes the spooled line protocol back, a batch at a time.
async fn put_back(api: &InfluxApi, bucket: &Bucket, spool: &mut std::fs::File) -> Result<(), RepairError> {
    use std::io::{Read, Seek};
    let spool_err = |e: std::io::Error| RepairError::Spool(e.to_string());
    spool.seek(std::io::SeekFrom::Start(0)).map_err(spool_err)?;
    let mut pending: Vec<u8> = Vec::with_capacity(BATCH_BYTES + 4096);
    let mut chunk = vec![0u8; 256 * 1024];
    loop {
        let n = spool.read(&mut chunk).map_err(spool_err)?;
        pending.extend_from_slice(&chunk[..n]);
        if n == 0 || pending.len() >= BATCH_BYTES {
            // Whole lines only; the rest waits for the next chunk.
            let cut = if n == 0 {
                pending.len()
            } else {
                pending.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
            };
            write_lines(api, bucket, &pending[..cut]).await?;
            pending.drain(..cut);
        }
        if n == 0 {
            return Ok(());
        }
    }
}

/// Why a repair stopped.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error(transparent)]
    Read(#[from] CompareError),
    #[error(transparent)]
    Write(#[from] ApiError),
    #[error("spooling the points to put back: {0} (nothing was deleted if this came before the rewrite)")]
    Spool(String),
    #[error(
        "the {values} value(s) the target held in the shard outside the compared window could not all be \
         written back ({reason}); they are kept in {saved} (line protocol, nanoseconds): write them to the \
         bucket once the cause is fixed"
    )]
    PutBack { values: usize, saved: String, reason: String },
}

/// Where streamed line protocol goes.
pub enum Sink<'a> {
    /// Written to a bucket, a batch at a time.
    Bucket(&'a InfluxApi, &'a Bucket),
    /// Appended to a spool file.
    Spool(&'a mut std::fs::File),
}

impl Sink<'_> {
    async fn put(&mut self, lines: &[u8]) -> Result<(), RepairError> {
        match self {
            Sink::Bucket(api, bucket) => Ok(write_lines(api, bucket, lines).await?),
            Sink::Spool(file) => {
                std::io::Write::write_all(file, lines).map_err(|e| RepairError::Spool(e.to_string()))
            }
        }
    }
}

/// Copies `measurement` from the reference to the target over `[start_ns, stop_ns)`, streamed;
/// returns the values copied.
pub async fn copy_range(
    reference: (&InfluxApi, &Bucket),
    target: (&InfluxApi, &Bucket),
    measurement: &str,
    start_ns: i64,
    stop_ns: i64,
) -> Result<usize, RepairError> {
    stream_range(reference, measurement, start_ns, stop_ns, &mut Sink::Bucket(target.0, target.1)).await
}

/// Streams `measurement` of `from` over `[start_ns, stop_ns)` into `sink` as line protocol
/// (nanoseconds); returns the values streamed.
async fn stream_range(
    from: (&InfluxApi, &Bucket),
    measurement: &str,
    start_ns: i64,
    stop_ns: i64,
    sink: &mut Sink<'_>,
) -> Result<usize, RepairError> {
    let (r_api, r_bucket) = from;
    let flux = crate::compare::digest::raw_rows(r_bucket, measurement, start_ns, stop_ns);
    let csv_err =
        |source| CompareError::Csv { host: r_api.host().to_string(), bucket: r_bucket.name.clone(), source };
    let mut body =
        r_api.query(OrgRef::Id(&r_bucket.org_id), &flux, false).await.map_err(CompareError::from)?;
    let mut csv = AnnotatedCsv::new(true);
    let mut batch = Vec::with_capacity(BATCH_BYTES + 4096);
    let mut copied = 0usize;
    // Encodes the rows of `bytes` onto the batch.
    let mut feed = |csv: &mut AnnotatedCsv, bytes: &[u8], batch: &mut Vec<u8>| {
        let mut on_row = |row: &Row<'_>| -> Result<(), CsvError> {
            if let Ok(true) = raw_point::encode(row, batch) {
                copied += 1;
            }
            Ok(())
        };
        csv.push(bytes, &mut on_row).map_err(csv_err)
    };
    // Read a chunk, write what it filled: at most a batch and a chunk are held.
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(CompareError::from)?;
        feed(&mut csv, &chunk, &mut batch)?;
        if batch.len() >= BATCH_BYTES {
            sink.put(&batch).await?;
            batch.clear();
        }
    }
    feed(&mut csv, b"", &mut batch)?;
    sink.put(&batch).await?;
    Ok(copied)
}

/// Bytes of line protocol per write.
const BATCH_BYTES: usize = 1 << 20;

/// Writes `lines` (line protocol, nanoseconds) in batches of about [`BATCH_BYTES`].
async fn write_lines(api: &InfluxApi, bucket: &Bucket, lines: &[u8]) -> Result<(), ApiError> {
    let mut start = 0;
    while start < lines.len() {
        let mut end = (start + BATCH_BYTES).min(lines.len());
        while end < lines.len() && lines[end - 1] != b'\n' {
            end += 1;
        }
        let body = bytes::Bytes::copy_from_slice(&lines[start..end]);
        api.write(
            OrgRef::Id(&bucket.org_id),
            &bucket.id,
            shared::line_protocol::Precision::Nanoseconds,
            body,
            false,
        )
        .await?;
        start = end;
    }
    Ok(())
}

/// Reads the points of `measurement` in `bucket` within `[start_ns, stop_ns)`.
pub async fn read_window(
    api: &InfluxApi,
    bucket: &Bucket,
    measurement: &str,
    start_ns: i64,
    stop_ns: i64,
) -> Result<WindowPoints, CompareError> {
    let flux = crate::compare::digest::raw_rows(bucket, measurement, start_ns, stop_ns);
    let mut points = WindowPoints::new();
    let mut buf = Vec::with_capacity(256);
    let mut on_row = |row: &Row<'_>| -> Result<(), CsvError> {
        buf.clear();
        let parts = match raw_point::encode_parts(row, &mut buf) {
            Ok(Some(p)) => p,
            // A row with no value has nothing to copy; a row the encoder refuses cannot be
            // written either (the digest still counts it, so the window stays reported).
            Ok(None) | Err(_) => return Ok(()),
        };
        let slice = |(a, b): (usize, usize)| buf[a..b].to_vec();
        let key = (slice(parts.series), parts.ns);
        let p = points.entry(key).or_insert_with(|| {
            let c = row.columns;
            let measurement =
                c.measurement.map(|i| String::from_utf8_lossy(row.cell(i)).into_owned()).unwrap_or_default();
            let tags = c
                .tags
                .iter()
                .filter(|(i, _)| !row.cell(*i).is_empty())
                .map(|(i, k)| (k.clone(), String::from_utf8_lossy(row.cell(*i)).into_owned()))
                .collect();
            Point { measurement, tags, fields: BTreeMap::new() }
        });
        p.fields.insert(slice(parts.field), slice(parts.value));
        Ok(())
    };
    stream_rows(api, bucket, &flux, &mut on_row).await?;
    Ok(points)
}

/// Carries out `plan` at the target: deletes first, then writes.
pub async fn apply(api: &InfluxApi, bucket: &Bucket, plan: &Plan) -> Result<(), ApiError> {
    for d in &plan.deletes {
        let at = crate::compare::digest::rfc3339_ns(d.ns);
        api.delete(OrgRef::Id(&bucket.org_id), &bucket.id, &at, &at, &d.predicate()).await?;
    }
    write_lines(api, bucket, &plan.writes).await
}

/// What was done to one measurement.
#[derive(Debug, Default, serde::Serialize)]
pub struct Repaired {
    pub bucket: String,
    pub measurement: String,
    pub windows: Vec<WindowDiff>,
    pub values_written: usize,
    pub points_deleted: usize,
    /// Shards whose measurement was deleted and copied again (a field of another type).
    pub shards_rewritten: Vec<String>,
    /// Values copied from the reference into those shards, within the compared window.
    pub values_copied: usize,
    /// Values the target held in those shards outside the compared window, put back.
    pub values_restored: usize,
    pub deleted: Vec<String>,
    pub left: Vec<String>,
    /// Windows that still differ afterwards (0 on a dry run means "not checked").
    pub still_differing: usize,
}

/// The side that is right and the side made to match it.
pub struct Sides<'a> {
    pub reference: (&'a InfluxApi, &'a Bucket),
    pub target: (&'a InfluxApi, &'a Bucket),
}

/// What a repair may do.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub delete_extra: bool,
    pub dry_run: bool,
}

/// Makes every measurement of the target bucket that `only` covers hold what the reference holds
/// over `window` (writing what differs or is missing, deleting nothing); the values written. The handover
/// makes the taker's derived buckets match the giver's with it.
pub async fn match_bucket(
    reference: (&InfluxApi, &Bucket),
    target: (&InfluxApi, &Bucket),
    window: &TimeWindow,
    only: &Measurements,
) -> anyhow::Result<usize> {
    let measurements = counts::count_values(reference.0, reference.1, window).await?;
    let sides = Sides { reference, target };
    let policy = Policy { delete_extra: false, dry_run: false };
    let mut written = 0;
    for m in measurements.keys().filter(|m| only.covers(m)) {
        written += repair_measurement(&sides, m, window, policy)
            .await
            .with_context(|| format!("bucket {}, measurement {m}", reference.1.name))?
            .values_written;
    }
    Ok(written)
}

pub async fn repair_measurement(
    sides: &Sides<'_>,
    measurement: &str,
    window: &TimeWindow,
    args: Policy,
) -> anyhow::Result<Repaired> {
    let ((r_api, r_bucket), (t_api, t_bucket)) = (sides.reference, sides.target);
    let find = || async {
        digest::differing_windows(r_api, r_bucket, t_api, t_bucket, measurement, window, usize::MAX)
            .await
            .context("finding the windows that differ")
    };
    let plan_all = |found: &digest::Differences| {
        let windows = found.windows.clone();
        async move {
            let mut plans = Vec::with_capacity(windows.len());
            for w in &windows {
                let (r, t) = tokio::join!(
                    read_window(r_api, r_bucket, measurement, w.start_ns, w.stop_ns),
                    read_window(t_api, t_bucket, measurement, w.start_ns, w.stop_ns)
                );
                plans.push(plan(
                    &r.context("reading the window")?,
                    &t.context("reading the window")?,
                    args.delete_extra,
                ));
            }
            anyhow::Ok(plans)
        }
    };
    let mut found = find().await?;
    let mut plans = plan_all(&found).await?;
    let mut done = Repaired { measurement: measurement.to_string(), ..Repaired::default() };
    // A field of another type: its shard's measurement is deleted and copied again, then the
    // windows are found and planned afresh (the rewritten ones now match).
    let shards: BTreeSet<(i64, i64)> =
        plans.iter().flat_map(|p| p.conflicts.iter().map(|&ns| shard_range(t_bucket, ns))).collect();
    let ns = |t: Option<time::OffsetDateTime>, default: i64| {
        t.map_or(default, |t| t.unix_timestamp_nanos().clamp(i64::MIN.into(), i64::MAX.into()) as i64)
    };
    let compared = (ns(window.start, i64::MIN), ns(window.stop, i64::MAX));
    if !shards.is_empty() {
        done.windows = found.windows.clone();
        for &(a, b) in &shards {
            let range = format!("{} .. {}", digest::rfc3339_ns(a), digest::rfc3339_ns(b));
            if args.dry_run {
                done.shards_rewritten.push(range);
                continue;
            }
            let r = rewrite_range((r_api, r_bucket), (t_api, t_bucket), measurement, (a, b), compared)
                .await
                .with_context(|| format!("rewriting {measurement} over the shard {range}"))?;
            done.values_copied += r.copied;
            done.values_restored += r.restored;
            done.shards_rewritten.push(range);
        }
        if !args.dry_run {
            found = find().await?;
            plans = plan_all(&found).await?;
        }
    }
    for (w, plan) in found.windows.iter().zip(&plans) {
        done.values_written += plan.values;
        done.points_deleted += plan.deletes.len();
        done.deleted.extend(plan.deletes.iter().flat_map(|d| d.lines.iter().cloned()));
        done.left.extend(plan.left.iter().cloned());
        if !args.dry_run && !plan.is_empty() {
            apply(t_api, t_bucket, plan)
                .await
                .with_context(|| format!("repairing {} .. {}", w.start, w.stop))?;
        }
    }
    if done.windows.is_empty() {
        done.windows = found.windows.clone();
    }
    if !args.dry_run && !done.windows.is_empty() {
        done.still_differing =
            digest::differing_windows(r_api, r_bucket, t_api, t_bucket, measurement, window, 0)
                .await
                .context("checking the repaired windows")?
                .total;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(tags: &[(&str, &str)], fields: &[(&str, &str)]) -> Point {
        Point {
            measurement: "m".into(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            fields: fields.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect(),
        }
    }

    fn key(series: &str, ns: i64) -> PointKey {
        (series.as_bytes().to_vec(), ns)
    }

    fn lines(p: &Plan) -> Vec<String> {
        String::from_utf8_lossy(&p.writes).lines().map(str::to_string).collect()
    }

    #[test]
    fn a_missing_or_changed_value_is_written_and_nothing_is_deleted() {
        let reference = WindowPoints::from([
            (key("m,h=a", 1), pt(&[("h", "a")], &[("v", "1.5"), ("n", "2i")])),
            (key("m,h=a", 2), pt(&[("h", "a")], &[("v", "3")])),
        ]);
        let target = WindowPoints::from([(key("m,h=a", 1), pt(&[("h", "a")], &[("v", "9.5"), ("n", "2i")]))]);
        let p = plan(&reference, &target, true);
        assert_eq!(lines(&p), ["m,h=a v=1.5 1", "m,h=a v=3 2"]);
        assert_eq!(p.values, 2);
        assert!(p.deletes.is_empty() && p.left.is_empty());
        assert!(plan(&reference, &reference, true).is_empty(), "the same points need nothing");
    }

    #[test]
    fn an_extra_point_is_deleted_only_when_asked_and_listed_otherwise() {
        let reference = WindowPoints::new();
        let target = WindowPoints::from([(key("m,h=a", 5), pt(&[("h", "a")], &[("v", "1")]))]);
        let kept = plan(&reference, &target, false);
        assert_eq!(kept.left, ["m,h=a v=1 5"]);
        assert!(kept.deletes.is_empty() && kept.writes.is_empty());
        let gone = plan(&reference, &target, true);
        assert_eq!(gone.deletes.len(), 1);
        assert_eq!(gone.deletes[0].predicate(), "_measurement=\"m\" AND \"h\"=\"a\"");
        assert_eq!(gone.deletes[0].lines, ["m,h=a v=1 5"]);
        assert!(gone.writes.is_empty() && gone.left.is_empty());
    }

    #[test]
    fn a_value_of_another_type_needs_the_point_deleted_and_written_again() {
        let reference =
            WindowPoints::from([(key("m,h=a", 7), pt(&[("h", "a")], &[("w", "3i"), ("v", "1")]))]);
        let target = WindowPoints::from([(key("m,h=a", 7), pt(&[("h", "a")], &[("w", "3"), ("v", "1")]))]);
        let kept = plan(&reference, &target, false);
        assert_eq!(kept.left, ["m,h=a w=3 7"], "a write cannot change a field's type");
        assert!(kept.writes.is_empty(), "writing 3i would be refused as a type conflict");
        let fixed = plan(&reference, &target, true);
        assert_eq!(fixed.conflicts, [7], "the shard's measurement must be rewritten");
        assert!(fixed.deletes.is_empty() && fixed.writes.is_empty(), "a point delete would not do");
    }

    fn bucket(retention: i64, shard: Option<i64>) -> Bucket {
        serde_json::from_value(serde_json::json!({
            "id": "b", "orgID": "o", "name": "b",
            "retentionRules": [{"type": "expire", "everySeconds": retention, "shardGroupDurationSeconds": shard}],
        }))
        .unwrap()
    }

    #[test]
    fn a_shard_is_found_where_influxd_puts_it_seven_day_groups_start_on_mondays() {
        // 2025-12-01T00:06:40Z, a Monday.
        let t = 1_764_547_600_000_000_000;
        let monday = 1_764_547_200_000_000_000;
        let day = 86_400_000_000_000;
        assert_eq!(
            shard_range(&bucket(0, None), t),
            (monday, monday + 7 * day),
            "infinite: 7 days from Monday"
        );
        assert_eq!(
            shard_range(&bucket(30 * 86_400, None), t),
            (monday, monday + day),
            "30 days: 1-day groups"
        );
        assert_eq!(
            shard_range(&bucket(3_600, None), t),
            (monday, monday + 3_600_000_000_000),
            "1 h: 1-hour groups"
        );
        assert_eq!(shard_range(&bucket(0, Some(7 * 86_400)), t + 3 * day).0, monday);
        assert_eq!(shard_range(&bucket(0, Some(86_400)), t - 1_000_000_000_000).0, monday - day);
    }

    #[test]
    fn a_delete_that_also_takes_a_series_with_more_tags_writes_that_point_again() {
        let reference =
            WindowPoints::from([(key("m,h=a,r=x", 9), pt(&[("h", "a"), ("r", "x")], &[("v", "4")]))]);
        let target = WindowPoints::from([
            (key("m,h=a", 9), pt(&[("h", "a")], &[("v", "1")])),
            (key("m,h=a,r=x", 9), pt(&[("h", "a"), ("r", "x")], &[("v", "4")])),
            (key("m,h=b", 9), pt(&[("h", "b")], &[("v", "2")])),
        ]);
        let p =
            plan(&WindowPoints::from([(key("m,h=b", 9), pt(&[("h", "b")], &[("v", "2")]))]), &target, true);
        assert_eq!(p.deletes.len(), 1, "one delete (h=a) takes h=a,r=x too: {:?}", p.deletes);
        let p = plan(&reference, &target, true);
        let deleted: Vec<String> = p.deletes.iter().map(PointDelete::predicate).collect();
        assert!(deleted.contains(&"_measurement=\"m\" AND \"h\"=\"a\"".to_string()), "{deleted:?}");
        assert!(
            lines(&p).contains(&"m,h=a,r=x v=4 9".to_string()),
            "the point the delete took: {:?}",
            lines(&p)
        );
    }

    #[test]
    fn names_and_values_with_quotes_are_escaped_in_a_predicate() {
        let d = PointDelete {
            measurement: "a\"b".into(),
            tags: vec![("k".into(), "v\\w".into())],
            ns: 0,
            lines: vec![],
        };
        assert_eq!(d.predicate(), "_measurement=\"a\\\"b\" AND \"k\"=\"v\\\\w\"");
    }
}
