//! Native backup over `/api/v2/backup/*`, writing exactly what `influx backup` writes.
//!
//! Files (influx-cli `clients/backup/backup.go`): with `<base>` = the UTC start time as
//! `20060102T150405Z`, `<base>.bolt.gz` (KV store), `<base>.sqlite.gz` (SQL store),
//! `<base>.<shardID>.tar.gz` per shard and `<base>.manifest` (manifest version 2, pretty JSON,
//! uncompressed) — the CLI's default `--compression gzip`; without gzip on the wire (see
//! `--wire-compression`, and `--gzip-compression-level none` against InfluxDB 2.9+) the files
//! are `.bolt`, `.sqlite` and `.tar`, exactly what `influx backup --compression none` writes. So `influx restore` reads a directory written here,
//! and [`crate::seeding::restore`] reads one `influx backup` wrote.
//!
//! The KV and SQL snapshots are always whole (as with the CLI); a bucket filter only chooses
//! which buckets' shards are downloaded and listed. Shards download in parallel (`--parallel`),
//! each streamed from the response to the file: when the server gzip'd the body (it does for
//! bodies of 1400 bytes and more when asked, unless a 2.9+ server was asked for level `none`;
//! what arrived is read from the answer, never assumed) those bytes are the `.tar.gz` as they
//! are; a raw body is compressed on the way. A transfer that fails midway is retried from the
//! start.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::ProgressBar;
use shared::influx_client::Backoff;
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

use crate::influx::api::{ApiError, BackupWire, GzipLevel, InfluxApi};
use crate::influx::compression::Gzip;
use crate::influx::manifest::{
    BucketManifest, COMPRESSION_GZIP, COMPRESSION_NONE, FileEntry, MANIFEST_VERSION, Manifest,
};
use crate::seeding::progress::Progress;
use crate::seeding::store::{FileWriter, Store, StoreError};

/// `influx backup`'s base-name format (Go layout `20060102T150405Z`).
const BASE_FORMAT: &[FormatItem<'static>] = format_description!("[year][month][day]T[hour][minute][second]Z");

/// How long a shard download keeps retrying transient failures (5xx, 429, connection errors)
/// before the backup fails. influxd answers 500 to a shard backup while live writes keep its
/// cache snapshotter busy, for seconds at a time; a seeding that may have run for hours must not
/// fail on that. A source that is down fails the backup after this long.
const RETRY_FOR: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("writing the backup: {0}")]
    Store(#[from] StoreError),
    #[error("the server's bucket manifest could not be read: {0}")]
    Manifest(String),
    #[error("{0}")]
    Refused(String),
}

/// Which buckets to back up (all when both are `None`).
#[derive(Debug, Clone, Default)]
pub struct BucketFilter {
    pub org: Option<String>,
    pub bucket: Option<String>,
}

impl BucketFilter {
    fn matches(&self, b: &BucketManifest) -> bool {
        self.org.as_ref().is_none_or(|o| *o == b.organization_name)
            && self.bucket.as_ref().is_none_or(|n| *n == b.bucket_name)
    }
}

/// How a backup travels and is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupCompression {
    /// What to ask the source for. A level is sent only to InfluxDB 2.9 and later.
    pub wire: BackupWire,
    /// Store the files gzip'd (`.gz`, as `influx backup` does by default) or raw.
    pub files_gzip: bool,
}

impl BackupCompression {
    /// gzip on the wire and on disk, or neither: what `--wire-compression` chooses alone.
    pub fn plain(gzip: bool) -> BackupCompression {
        BackupCompression { wire: BackupWire { accept_gzip: gzip, level: None }, files_gzip: gzip }
    }

    /// With `--gzip-compression-level`: gzip is accepted (as `influx backup` always does) and
    /// the level sent; files are stored raw for `none` (as `influx backup
    /// --gzip-compression-level none` stores them), gzip'd otherwise.
    pub fn with_level(level: GzipLevel) -> BackupCompression {
        BackupCompression {
            wire: BackupWire { accept_gzip: true, level: Some(level) },
            files_gzip: level != GzipLevel::None,
        }
    }
}

/// What a backup wrote.
#[derive(Debug, Clone, Copy)]
pub struct BackupOutcome {
    /// Bytes of shard files.
    pub bytes: u64,
    pub shards: usize,
}

/// Backs the source up into `store` (which must exist).
pub async fn backup(
    api: &InfluxApi,
    store: &Store,
    filter: &BucketFilter,
    parallel: usize,
    compression: BackupCompression,
    progress: &Progress,
) -> Result<BackupOutcome, BackupError> {
    let health = api.health().await?;
    if health.is_legacy() {
        return Err(BackupError::Refused(format!(
            "{} runs InfluxDB {}, whose backup API (2.0.x) is not supported; upgrade the source to 2.1 or later",
            api.host(),
            health.version.unwrap_or_default()
        )));
    }
    let mut compression = compression;
    if let Some(level) = compression.wire.level
        && health.version_numbers().is_some_and(|v| v < (2, 9))
    {
        // Before 2.9 the header means nothing to influxd: don't send it, and say what happens.
        let version = health.version.clone().unwrap_or_default();
        if level == GzipLevel::None {
            tracing::warn!(
                "{} runs InfluxDB {version}, which has no backup compression levels (2.9 added them); \
                 --gzip-compression-level none is honoured by not asking it for gzip",
                api.host()
            );
            compression.wire = BackupWire { accept_gzip: false, level: None };
        } else {
            tracing::warn!(
                "{} runs InfluxDB {version}, which ignores --gzip-compression-level (2.9 added it); \
                 it compresses the backup at its own default level",
                api.host()
            );
            compression.wire.level = None;
        }
    }
    let base = OffsetDateTime::now_utc().format(BASE_FORMAT).unwrap_or_else(|_| "backup".into());
    let bytes_bar = progress.bytes("backup", None);
    tracing::info!("downloading the metadata snapshot (KV, SQL, bucket manifest) from {}", api.host());
    let (kv, sql, buckets) = download_metadata(api, store, &base, compression, &bytes_bar).await?;

    let mut selected: Vec<BucketManifest> = buckets.into_iter().filter(|b| filter.matches(b)).collect();
    let shard_total: usize = selected.iter().map(|b| b.shards().count()).sum();
    let shards_bar = progress.shards("backup", shard_total as u64);
    let shard_ids: Vec<u64> = selected.iter().flat_map(|b| b.shards().map(|s| s.id)).collect();

    let total_bytes = Arc::new(AtomicU64::new(0));
    let results: Vec<(u64, Result<Option<FileEntry>, BackupError>)> = futures::stream::iter(shard_ids)
        .map(|id| {
            let (api, store, base, bar, total) =
                (api.clone(), store.clone(), base.clone(), bytes_bar.clone(), total_bytes.clone());
            let shards_bar = shards_bar.clone();
            async move {
                let r = download_shard(&api, &store, &base, id, compression, &bar).await;
                if let Ok(Some(f)) = &r {
                    total.fetch_add(f.size as u64, Ordering::Relaxed);
                }
                shards_bar.inc(1);
                (id, r)
            }
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    shards_bar.finish_and_clear();
    bytes_bar.finish_and_clear();

    let mut files = std::collections::BTreeMap::new();
    for (id, r) in results {
        match r? {
            Some(f) => {
                files.insert(id, f);
            }
            None => tracing::warn!("shard {id} was removed during the backup (retention); it is left out"),
        }
    }
    // Shards deleted mid-backup are left out of the manifest, as influx backup does.
    for b in &mut selected {
        for rp in &mut b.retention_policies {
            for sg in &mut rp.shard_groups {
                sg.shards.retain(|s| files.contains_key(&s.id));
                for s in &mut sg.shards {
                    if let Some(f) = files.get(&s.id) {
                        s.file_name = Some(f.file_name.clone());
                        s.size = Some(f.size);
                        s.compression = Some(f.compression);
                    }
                }
            }
        }
    }
    let manifest = Manifest { version: MANIFEST_VERSION, kv, sql, buckets: selected };
    let manifest_file = format!("{base}.manifest");
    let mut text = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Manifest(e.to_string()))?;
    text.push(b'\n');
    store.write_small(&manifest_file, &text).await?;
    let bytes = total_bytes.load(Ordering::Relaxed);
    Ok(BackupOutcome { bytes, shards: files.len() })
}

/// Reads the multipart metadata answer into `<base>.bolt.gz`, `<base>.sqlite.gz` and the bucket
/// manifest.
async fn download_metadata(
    api: &InfluxApi,
    store: &Store,
    base: &str,
    compression: BackupCompression,
    bar: &ProgressBar,
) -> Result<(FileEntry, Option<FileEntry>, Vec<BucketManifest>), BackupError> {
    let mut md = api.backup_metadata(compression.wire).await?;
    let gzip = compression.files_gzip;
    let ext = if gzip { ".gz" } else { "" };
    let (mut kv, mut sql, mut buckets) = (None, None, None);
    while let Some(part) = md.next_part().await? {
        match part.name.as_deref() {
            Some(which @ ("kv" | "sql")) => {
                let name =
                    if which == "kv" { format!("{base}.bolt{ext}") } else { format!("{base}.sqlite{ext}") };
                let mut file = BackupFile::create(store, &name, gzip).await?;
                let result: Result<(), BackupError> = async {
                    while let Some(chunk) = md.chunk().await? {
                        bar.inc(chunk.len() as u64);
                        file.write(&chunk).await?;
                    }
                    Ok(())
                }
                .await;
                let size = file.finish_after(result).await?;
                let compression = if gzip { COMPRESSION_GZIP } else { COMPRESSION_NONE };
                let entry = FileEntry { file_name: name, size, compression };
                if which == "kv" {
                    kv = Some(entry);
                } else {
                    sql = Some(entry);
                }
            }
            Some("buckets") => {
                let mut raw = Vec::new();
                while let Some(chunk) = md.chunk().await? {
                    raw.extend_from_slice(&chunk);
                    if raw.len() > 256 * 1024 * 1024 {
                        return Err(BackupError::Manifest(
                            "the bucket manifest is larger than 256 MiB".into(),
                        ));
                    }
                }
                buckets = Some(
                    serde_json::from_slice::<Vec<BucketManifest>>(&raw)
                        .map_err(|e| BackupError::Manifest(e.to_string()))?,
                );
            }
            other => {
                return Err(BackupError::Manifest(format!(
                    "unexpected part {other:?} in the metadata snapshot"
                )));
            }
        }
    }
    let kv = kv.ok_or_else(|| BackupError::Manifest("the metadata snapshot has no kv part".into()))?;
    let buckets =
        buckets.ok_or_else(|| BackupError::Manifest("the metadata snapshot has no buckets part".into()))?;
    Ok((kv, sql, buckets))
}

/// A file of the backup being written, gzip'd here (level 6, as `influx backup`) when the bytes
/// arrive uncompressed but must be stored compressed.
struct BackupFile {
    writer: FileWriter,
    gzip: Option<Gzip>,
}

impl BackupFile {
    async fn create(store: &Store, name: &str, compress: bool) -> Result<BackupFile, BackupError> {
        Ok(BackupFile { writer: store.writer(name).await?, gzip: compress.then(|| Gzip::new(6)) })
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), BackupError> {
        match &mut self.gzip {
            Some(g) => {
                let out = g.push(chunk).map_err(|e| BackupError::Manifest(e.to_string()))?;
                self.writer.write(&out).await?;
            }
            None => self.writer.write(chunk).await?,
        }
        Ok(())
    }

    /// Completes the file when `copied` is `Ok` and returns its size; otherwise gives it up
    /// (an S3 upload is aborted) and returns the error.
    async fn finish_after(mut self, copied: Result<(), BackupError>) -> Result<i64, BackupError> {
        let tail = match (copied, self.gzip.take()) {
            (Err(e), _) => Err(e),
            (Ok(()), None) => Ok(None),
            (Ok(()), Some(g)) => g.finish().map(Some).map_err(|e| BackupError::Manifest(e.to_string())),
        };
        let tail_written = match tail {
            Ok(Some(t)) => self.writer.write(&t).await.map_err(BackupError::from),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = tail_written {
            self.writer.abort().await;
            return Err(e);
        }
        Ok(self.writer.finish().await? as i64)
    }
}

/// Downloads one shard to `<base>.<id>.tar.gz` (files gzip'd, or the server gzip'd the body) or
/// `<base>.<id>.tar`, retrying transient
/// failures from the start. `None` when the shard no longer exists.
async fn download_shard(
    api: &InfluxApi,
    store: &Store,
    base: &str,
    id: u64,
    compression: BackupCompression,
    bar: &ProgressBar,
) -> Result<Option<FileEntry>, BackupError> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
    let mut first_failure: Option<Instant> = None;
    loop {
        let mut name = String::new();
        let attempt: Result<Option<FileEntry>, BackupError> = async {
            let Some(mut dl) = api.backup_shard(id, compression.wire).await? else {
                return Ok(None);
            };
            tracing::debug!("backing up shard {id} (gzip on the wire: {})", dl.gzip);
            // The server gzips only bodies of 1400 bytes and more: compress the rest here so every
            // file of a gzip backup is gzip'd, as influx backup does.
            let stored_gzip = compression.files_gzip || dl.gzip;
            name = if stored_gzip { format!("{base}.{id}.tar.gz") } else { format!("{base}.{id}.tar") };
            let mut file = BackupFile::create(store, &name, stored_gzip && !dl.gzip).await?;
            let copied: Result<(), BackupError> = async {
                while let Some(chunk) = dl.body.next().await {
                    let chunk = chunk?;
                    bar.inc(chunk.len() as u64);
                    file.write(&chunk).await?;
                }
                Ok(())
            }
            .await;
            let size = file.finish_after(copied).await?;
            let compression = if stored_gzip { COMPRESSION_GZIP } else { COMPRESSION_NONE };
            Ok(Some(FileEntry { file_name: name.clone(), size, compression }))
        }
        .await;
        match attempt {
            Err(BackupError::Api(e))
                if e.is_transient()
                    && first_failure.get_or_insert_with(Instant::now).elapsed() < RETRY_FOR =>
            {
                let wait = backoff.next_delay(e.retry_after());
                let failing_for = first_failure.map_or(0, |t| t.elapsed().as_secs());
                tracing::warn!(
                    "shard {id}: {e}; retrying in {:.1} s (failing for {failing_for} s; giving up after {} s)",
                    wait.as_secs_f64(),
                    RETRY_FOR.as_secs()
                );
                if !name.is_empty() {
                    store.remove(&name).await;
                }
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_names_have_the_cli_layout() {
        let t = OffsetDateTime::from_unix_timestamp(1_706_695_502).unwrap();
        assert_eq!(t.format(BASE_FORMAT).unwrap(), "20240131T100502Z");
    }
}
