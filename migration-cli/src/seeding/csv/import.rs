//! `--csv` restore: create the bucket (same retention and shard-group duration) under a staging
//! name, write `bucket_<bucket>.csv` into it as line protocol, then rename it to its final name.
//!
//! The file is read as a stream and parsed incrementally ([`crate::influx::annotated_csv`]); rows
//! become line-protocol points ([`crate::influx::raw_point`]) in batches of [`BATCH_LINES`], which
//! go out over `--parallel` concurrent writes. Memory is bounded by the batches in flight.
//!
//! Resuming: each batch remembers where the file can be restarted after it (the offset of its
//! block, since a block describes its own columns, and how many rows of that block are done).
//! The state file records the point after the last batch of an unbroken run of acknowledged
//! batches, so a retry restarts there; batches after it may be written again, which is harmless
//! (the same point written twice is one point).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use shared::influx_client::Backoff;
use tokio::sync::mpsc;

use crate::influx::annotated_csv::{AnnotatedCsv, CsvError, Row};
use crate::influx::api::{ApiError, InfluxApi, NewBucket, Org, OrgRef};
use crate::influx::compression::gzip_bytes;
use crate::influx::raw_point::{PointError, encode};
use crate::seeding::csv::metadata::{BucketMetadata, data_file};
use crate::seeding::progress::Progress;
use crate::seeding::restore_state::{CsvResume, StateFile};
use crate::seeding::store::{Store, StoreError};
use shared::line_protocol::Precision;

/// Lines per write request. influxd's guidance is 5,000, which suits many small writers; one
/// bulk writer does better with fewer, larger requests (each request is one WAL write and
/// fsync): measured on the test bed, 50,000-line batches ingest ~25% faster than 5,000-line ones.
pub const BATCH_LINES: usize = 25_000;
/// A batch is sent early when it reaches this many bytes, so requests stay bounded whatever the
/// line length (memory in flight: about `--parallel` x 2 batches).
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Attempts per batch.
const ATTEMPTS: u32 = 8;
/// How often the resume point is written while importing.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("reading the backup: {0}")]
    Store(#[from] StoreError),
    #[error("{file}: {source}")]
    Csv { file: String, source: CsvError },
    #[error("{file}: {source}")]
    Point { file: String, source: PointError },
    #[error("{0}")]
    Plan(String),
}

/// A CSV parse or encode failure inside the reader.
#[derive(Debug)]
enum ReadFailure {
    Csv(CsvError),
    Point(PointError),
}

impl From<CsvError> for ReadFailure {
    fn from(e: CsvError) -> Self {
        ReadFailure::Csv(e)
    }
}

/// One bucket to import and where.
#[derive(Debug, Clone)]
pub struct ImportJob {
    pub stem: String,
    pub metadata: BucketMetadata,
    pub org: Org,
    pub final_name: String,
}

impl ImportJob {
    /// The state key: source `org/bucket` and destination `org/bucket`.
    pub fn key(&self) -> String {
        format!(
            "csv:{}/{} -> {}/{}",
            self.metadata.org_name, self.metadata.name, self.org.name, self.final_name
        )
    }
}

/// What an import wrote.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOutcome {
    pub rows: u64,
    /// Points influxd dropped as older than the bucket's retention (expired meanwhile).
    pub expired: u64,
}

struct Batch {
    seq: u64,
    lines: u64,
    data: Bytes,
    /// Where to restart once this batch and every earlier one are written.
    resume_after: CsvResume,
}

/// Imports one bucket (resuming when the state says so).
pub async fn import_bucket(
    api: &InfluxApi,
    store: &Store,
    state: &StateFile,
    job: &ImportJob,
    parallel: usize,
    gzip_wire: bool,
    progress: &Progress,
) -> Result<ImportOutcome, ImportError> {
    let key = job.key();
    let mut entry = state.bucket_or_begin(&key, &job.org.id, &job.org.name, &job.final_name).await?;
    if entry.complete {
        tracing::info!(
            "bucket {} was already restored as {}/{}",
            job.metadata.name,
            entry.org_name,
            entry.final_name
        );
        return Ok(ImportOutcome { rows: entry.rows_written, expired: 0 });
    }

    // The staging bucket: the recorded one, one left by an attempt that died before recording
    // it (its points are simply written again), or a new one.
    let found = api.find_bucket(&entry.org_id, &entry.staging_name).await?;
    let bucket_id = match (found, &entry.bucket_id) {
        (Some(b), Some(id)) if b.id == *id => {
            tracing::info!(
                "resuming the import of {} into staging bucket {}",
                job.metadata.name,
                entry.staging_name
            );
            b.id
        }
        (Some(b), _) => {
            entry.csv_resume = None;
            entry.rows_written = 0;
            b.id
        }
        (None, _) => {
            entry.csv_resume = None;
            entry.rows_written = 0;
            let created = api
                .create_bucket(&NewBucket {
                    org_id: entry.org_id.clone(),
                    name: entry.staging_name.clone(),
                    description: job.metadata.description.clone().filter(|d| !d.is_empty()),
                    retention_rules: vec![job.metadata.retention_rule()],
                })
                .await?;
            tracing::info!(
                "created staging bucket {}/{} (retention {} s, shard-group duration {} s)",
                entry.org_name,
                created.name,
                created.retention_seconds(),
                created.shard_group_duration_seconds().unwrap_or(0)
            );
            created.id
        }
    };
    entry.bucket_id = Some(bucket_id.clone());
    state.put_bucket(&entry).await?;

    let file = data_file(&job.stem);
    let resume = entry.csv_resume.unwrap_or_default();
    let total_bytes = store.size(&file).await?;
    let bytes_bar = progress.bytes(&format!("import {}", job.metadata.name), Some(total_bytes));
    bytes_bar.inc(resume.block_offset);
    let rows_bar = progress.rows(&format!("import {}", job.metadata.name), None);
    rows_bar.inc(entry.rows_written);

    let (tx, rx) = mpsc::channel::<Batch>(parallel.max(1));
    let reader = {
        let (store, file, bytes_bar) = (store.clone(), file.clone(), bytes_bar.clone());
        tokio::spawn(async move { read_batches(store, file, resume, tx, bytes_bar).await })
    };

    let org_id = entry.org_id.clone();
    let batches = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
    let mut writes = Box::pin(
        batches
            .map(|batch| {
                let (api, org_id, bucket_id) = (api.clone(), org_id.clone(), bucket_id.clone());
                async move {
                    let expired = write_batch(&api, &org_id, &bucket_id, &batch, gzip_wire).await?;
                    Ok::<(Batch, u64), ApiError>((batch, expired))
                }
            })
            .buffer_unordered(parallel.max(1)),
    );

    // Acknowledged batches not yet part of the unbroken run.
    let mut acked: BTreeMap<u64, (u64, CsvResume)> = BTreeMap::new();
    let mut next_seq = 0u64;
    let mut checkpoint = entry.csv_resume;
    let mut rows_done = entry.rows_written;
    let mut expired = 0u64;
    let mut last_save = Instant::now();
    let mut failure: Option<ImportError> = None;
    while let Some(r) = writes.next().await {
        match r {
            Ok((batch, dropped)) => {
                rows_bar.inc(batch.lines);
                expired += dropped;
                acked.insert(batch.seq, (batch.lines, batch.resume_after));
                while let Some((lines, resume_after)) = acked.remove(&next_seq) {
                    rows_done += lines;
                    checkpoint = Some(resume_after);
                    next_seq += 1;
                }
                if last_save.elapsed() >= CHECKPOINT_EVERY {
                    save_checkpoint(state, &key, checkpoint, rows_done).await?;
                    last_save = Instant::now();
                }
            }
            Err(e) => {
                failure = Some(ImportError::Api(e));
                break;
            }
        }
    }
    drop(writes);
    save_checkpoint(state, &key, checkpoint, rows_done).await?;
    let read_result = reader.await.map_err(|e| ImportError::Plan(format!("the CSV reader stopped: {e}")))?;
    bytes_bar.finish_and_clear();
    rows_bar.finish_and_clear();
    if let Some(f) = failure {
        return Err(f);
    }
    match read_result {
        Ok(()) => {}
        Err(ReadError::Store(e)) => return Err(ImportError::Store(e)),
        Err(ReadError::Failure(ReadFailure::Csv(e))) => return Err(ImportError::Csv { file, source: e }),
        Err(ReadError::Failure(ReadFailure::Point(e))) => return Err(ImportError::Point { file, source: e }),
        // The writers stopped first; their error was returned above.
        Err(ReadError::Closed) => {}
    }

    // All written: the bucket gets its name.
    api.rename_bucket(&bucket_id, &entry.final_name).await.map_err(|e| {
        if e.status() == Some(422) {
            ImportError::Plan(format!(
                "the data is in {}/{}, but renaming it to {:?} failed: a bucket of that name appeared meanwhile ({e})",
                entry.org_name, entry.staging_name, entry.final_name
            ))
        } else {
            ImportError::Api(e)
        }
    })?;
    state
        .update(|s| {
            if let Some(b) = s.bucket_mut(&key) {
                b.complete = true;
                b.rows_written = rows_done;
            }
        })
        .await?;
    if expired > 0 {
        tracing::warn!(
            "{expired} point(s) of {} were older than the bucket's retention and were dropped by the destination",
            job.metadata.name
        );
    }
    tracing::info!("{rows_done} record(s) migrated into {}/{}", entry.org_name, entry.final_name);
    Ok(ImportOutcome { rows: rows_done, expired })
}

async fn save_checkpoint(
    state: &StateFile,
    key: &str,
    at: Option<CsvResume>,
    rows: u64,
) -> Result<(), StoreError> {
    state
        .update(|s| {
            if let Some(b) = s.bucket_mut(key) {
                b.csv_resume = at;
                b.rows_written = rows;
            }
        })
        .await
}

enum ReadError {
    Store(StoreError),
    Failure(ReadFailure),
    /// The writers stopped taking batches.
    Closed,
}

/// Reads the file from `resume` and sends line-protocol batches.
async fn read_batches(
    store: Store,
    file: String,
    resume: CsvResume,
    tx: mpsc::Sender<Batch>,
    bytes_bar: indicatif::ProgressBar,
) -> Result<(), ReadError> {
    let mut stream = store.reader(&file, resume.block_offset).await.map_err(ReadError::Store)?;
    let mut csv = AnnotatedCsv::at(true, resume.block_offset);
    let mut seq = 0u64;
    let mut current: Vec<u8> = Vec::with_capacity(BATCH_BYTES);
    let mut lines = 0u64;
    let mut last_resume = resume;
    let mut ready: Vec<Batch> = Vec::new();
    let mut at_end = false;
    while !at_end {
        let chunk = match stream.next().await {
            Some(c) => c.map_err(ReadError::Store)?,
            None => {
                at_end = true;
                Bytes::new()
            }
        };
        bytes_bar.inc(chunk.len() as u64);
        let mut on_row = |row: &Row<'_>| -> Result<(), ReadFailure> {
            if row.block_start == resume.block_offset && row.index_in_block < resume.rows_in_block {
                return Ok(());
            }
            if encode(row, &mut current).map_err(ReadFailure::Point)? {
                lines += 1;
            }
            last_resume = CsvResume { block_offset: row.block_start, rows_in_block: row.index_in_block + 1 };
            if lines as usize >= BATCH_LINES || current.len() >= BATCH_BYTES {
                ready.push(Batch {
                    seq,
                    lines,
                    data: Bytes::from(std::mem::take(&mut current)),
                    resume_after: last_resume,
                });
                current.reserve(BATCH_BYTES);
                seq += 1;
                lines = 0;
            }
            Ok(())
        };
        csv.push(&chunk, &mut on_row).map_err(ReadError::Failure)?;
        if at_end && (lines > 0 || !current.is_empty()) {
            ready.push(Batch {
                seq,
                lines,
                data: Bytes::from(std::mem::take(&mut current)),
                resume_after: last_resume,
            });
            seq += 1;
        }
        for b in ready.drain(..) {
            if tx.send(b).await.is_err() {
                return Err(ReadError::Closed);
            }
        }
    }
    Ok(())
}

/// Writes one batch with retries; returns how many points influxd dropped as expired.
async fn write_batch(
    api: &InfluxApi,
    org_id: &str,
    bucket_id: &str,
    batch: &Batch,
    gzip: bool,
) -> Result<u64, ApiError> {
    if batch.data.is_empty() {
        return Ok(0);
    }
    let body = if gzip {
        gzip_bytes(&batch.data, 1).map_err(|e| ApiError::Client(format!("compressing a batch: {e}")))?
    } else {
        batch.data.clone()
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(15));
    loop {
        match api.write(OrgRef::Id(org_id), bucket_id, Precision::Nanoseconds, body.clone(), gzip).await {
            Ok(()) => return Ok(0),
            // influxd drops points older than the retention with a 422 "partial write" and keeps
            // the rest: those points have expired at the source too.
            Err(e)
                if e.status() == Some(422)
                    && e.server_message().is_some_and(|m| m.contains("beyond retention policy")) =>
            {
                let dropped = e
                    .server_message()
                    .and_then(|m| m.rsplit("dropped=").next())
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                return Ok(dropped);
            }
            Err(e) if e.is_transient() && backoff.attempts() + 1 < ATTEMPTS => {
                let wait = backoff.next_delay(e.retry_after());
                tracing::warn!(
                    "write of {} line(s): {e}; retrying in {:.1} s",
                    batch.lines,
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}
