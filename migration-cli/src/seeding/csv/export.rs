//! `--csv` backup: a bucket's definition to `metadata_<bucket>.json` and its data, as annotated
//! CSV, to `bucket_<bucket>.csv`, exported in time chunks.
//!
//! AWS's script runs one `influx query --raw` over 1678..2800. Here the range is first counted
//! per window (`aggregateWindow(fn: count)`, pushed down to storage, one window per shard-group
//! duration) so that empty stretches cost nothing, then exported in chunks of about
//! [`CHUNK_VALUES`] values, each one query whose answer streams straight into the file. Memory
//! stays bounded on both sides whatever the bucket's size, and the counts give the progress bar
//! its total. Every chunk's answer is also read as it passes to catch an `error` table (a query
//! that failed after it started answering) instead of storing it as data.

use std::collections::BTreeMap;

use futures::StreamExt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::compare::window::TimeWindow;
use crate::influx::annotated_csv::{AnnotatedCsv, CsvError, Row, parse_time_ns};
use crate::influx::api::{ApiError, Bucket, InfluxApi, OrgRef};
use crate::seeding::csv::metadata::{BucketMetadata, data_file, metadata_file};
use crate::seeding::progress::Progress;
use crate::seeding::store::{Store, StoreError};

/// Values per export query.
pub const CHUNK_VALUES: u64 = 2_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("writing the export: {0}")]
    Store(#[from] StoreError),
    #[error("exporting bucket {bucket:?}: {source}")]
    Csv { bucket: String, source: CsvError },
}

/// One bucket to export.
#[derive(Debug, Clone)]
pub struct ExportJob {
    pub bucket: Bucket,
    pub org_name: String,
    /// File-name part (see [`crate::seeding::csv::metadata::stem_of`]).
    pub stem: String,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportOutcome {
    pub rows: u64,
    pub bytes: u64,
}

fn literal(ns: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ns.to_string())
}

/// Floor division (towards negative infinity).
fn floor_div(a: i64, b: i64) -> i64 {
    let q = a / b;
    if (a % b != 0) && ((a < 0) != (b < 0)) { q - 1 } else { q }
}

/// `[start, stop)` ranges in ns covering all values of the window, each holding about
/// `CHUNK_VALUES` values, and the total.
pub async fn plan_chunks(
    api: &InfluxApi,
    bucket: &Bucket,
    window: &TimeWindow,
) -> Result<(Vec<(i64, i64)>, u64), ExportError> {
    let start = parse_time_ns(window.flux_start().as_bytes()).unwrap_or(i64::MIN + 2);
    let stop = parse_time_ns(window.flux_stop().as_bytes()).unwrap_or(i64::MAX - 1);
    let every_s = bucket.shard_group_duration_seconds().filter(|s| *s > 0).unwrap_or(7 * 86_400);
    let every_ns = every_s.saturating_mul(1_000_000_000);
    let flux = format!(
        "from(bucketID: \"{}\") |> range(start: {}, stop: {}) \
         |> aggregateWindow(every: {every_s}s, fn: count, createEmpty: false) \
         |> group(columns: [\"_time\"]) |> sum() |> group()",
        bucket.id,
        window.flux_start(),
        window.flux_stop()
    );
    // Window end -> values in that window.
    let mut windows: BTreeMap<i64, u64> = BTreeMap::new();
    let mut on_row = |row: &Row<'_>| -> Result<(), CsvError> {
        let t = row.named("_time").and_then(parse_time_ns);
        let v =
            row.named("_value").and_then(|v| std::str::from_utf8(v).ok()).and_then(|v| v.parse::<u64>().ok());
        if let (Some(t), Some(v)) = (t, v) {
            *windows.entry(t).or_default() += v;
        }
        Ok(())
    };
    let mut body = api.query(OrgRef::Id(&bucket.org_id), &flux, false).await?;
    let mut csv = AnnotatedCsv::new(true);
    let err = |source| ExportError::Csv { bucket: bucket.name.clone(), source };
    while let Some(chunk) = body.next().await {
        csv.push(&chunk?, &mut on_row).map_err(err)?;
    }
    csv.push(b"", &mut on_row).map_err(err)?;

    let total: u64 = windows.values().sum();
    let mut chunks = Vec::new();
    let mut current: Option<(i64, i64, u64)> = None;
    for (end, n) in windows {
        let w_start = floor_div(end.saturating_sub(1), every_ns).saturating_mul(every_ns).max(start);
        let w_end = end.min(stop);
        current = match current {
            None => Some((w_start, w_end, n)),
            Some((s, _, acc)) if acc < CHUNK_VALUES => Some((s, w_end, acc + n)),
            Some((s, e, _)) => {
                chunks.push((s, e));
                Some((w_start, w_end, n))
            }
        };
    }
    if let Some((s, e, _)) = current {
        chunks.push((s, e));
    }
    // Windows are contiguous from the first to the last; make the chunks so, and cover the
    // requested window's edges (values the count did not see cannot hide there, but a point
    // written meanwhile may).
    for i in 1..chunks.len() {
        chunks[i].0 = chunks[i - 1].1;
    }
    if let Some(first) = chunks.first_mut() {
        first.0 = start;
    }
    if let Some(last) = chunks.last_mut() {
        last.1 = stop;
    }
    Ok((chunks, total))
}

/// Exports one bucket into `store`.
pub async fn export_bucket(
    api: &InfluxApi,
    store: &Store,
    job: &ExportJob,
    window: &TimeWindow,
    gzip_wire: bool,
    progress: &Progress,
) -> Result<ExportOutcome, ExportError> {
    let meta = BucketMetadata::from_bucket(&job.bucket, &job.org_name);
    let text = serde_json::to_vec(&meta).unwrap_or_default();
    store.write_small(&metadata_file(&job.stem), &text).await?;

    let (chunks, total) = plan_chunks(api, &job.bucket, window).await?;
    tracing::info!(
        "exporting bucket {}/{}: {total} value(s) in {} chunk(s) to {}",
        job.org_name,
        job.bucket.name,
        chunks.len(),
        data_file(&job.stem)
    );
    let rows_bar = progress.rows(&format!("export {}", job.bucket.name), Some(total));
    let mut writer = store.writer(&data_file(&job.stem)).await?;
    let mut outcome = ExportOutcome::default();
    let result: Result<(), ExportError> = async {
        for (a, b) in &chunks {
            let flux = format!(
                "from(bucketID: \"{}\") |> range(start: {}, stop: {})",
                job.bucket.id,
                literal(*a),
                literal(*b)
            );
            let mut body = api.query(OrgRef::Id(&job.bucket.org_id), &flux, gzip_wire).await?;
            let mut csv = AnnotatedCsv::new(true);
            let rows = std::cell::Cell::new(0u64);
            let mut on_row = |_: &Row<'_>| -> Result<(), CsvError> {
                rows.set(rows.get() + 1);
                Ok(())
            };
            let err = |source| ExportError::Csv { bucket: job.bucket.name.clone(), source };
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                let before = rows.get();
                csv.push(&chunk, &mut on_row).map_err(err)?;
                rows_bar.inc(rows.get() - before);
                writer.write(&chunk).await?;
                outcome.bytes += chunk.len() as u64;
            }
            csv.push(b"", &mut on_row).map_err(err)?;
            outcome.rows += rows.get();
        }
        Ok(())
    }
    .await;
    rows_bar.finish_and_clear();
    match result {
        Ok(()) => {
            writer.finish().await?;
            tracing::info!("exported {} row(s) of {}/{}", outcome.rows, job.org_name, job.bucket.name);
            Ok(outcome)
        }
        Err(e) => {
            writer.abort().await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_division_rounds_down_for_negative_times() {
        assert_eq!(floor_div(7, 2), 3);
        assert_eq!(floor_div(-7, 2), -4);
        assert_eq!(floor_div(-8, 2), -4);
    }

    #[test]
    fn literals_are_rfc3339_with_nanoseconds() {
        assert_eq!(literal(1), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(literal(631_152_000_000_000_000), "1990-01-01T00:00:00Z");
    }
}
