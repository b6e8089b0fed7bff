//! Native restore over `/api/v2/restore/*`, of a directory written by [`crate::seeding::backup`] or by
//! `influx backup`, resumable.
//!
//! **One bucket** (influx-cli `partialRestore`, made restartable): the bucket is created under a
//! staging name `<dest-bucket>.restoring-<id>` through `restore/bucketMetadata` (which also creates
//! its empty shards and answers the shard ID mapping); the shards are uploaded in parallel; only
//! when every shard is in is the bucket renamed to its final name (`PATCH /api/v2/buckets/{id}`;
//! data lives under the bucket ID, so it stays). A failure halfway therefore never leaves a
//! bucket under the user's name, and the state file ([`crate::seeding::restore_state`]) lets
//! `--retry-restore-dir` continue into the same staging bucket, skipping finished shards.
//!
//! **Full** (influx-cli `fullRestore`): KV store (which replaces every token, user, org, bucket,
//! dashboard and task at the destination and answers the restored operator token, used from then
//! on), SQL store, then every shard under its original ID. Each step is recorded so a retry
//! resumes after the last finished one.
//!
//! Uploads stream from the file to the request body with `Content-Encoding: gzip` (the `.tar.gz`
//! files are sent as they are on disk); a transient failure (connection, 5xx, 429) is retried
//! with backoff: uploading a shard again is harmless (the same points land on themselves).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use indicatif::ProgressBar;
use shared::influx_client::Backoff;
use shared::sensitive::Sensitive;

use crate::influx::api::{ApiError, InfluxApi, Org};
use crate::influx::compression::gzip_stream;
use crate::influx::manifest::{BucketManifest, FileEntry, Manifest, ManifestError};
use crate::seeding::progress::Progress;
use crate::seeding::restore_state::StateFile;
use crate::seeding::store::{Store, StoreError};

/// How uploads go out.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Uploads at once (`--parallel`).
    pub parallel: usize,
    /// Compress raw files on the wire (files stored gzip'd always travel gzip'd).
    pub wire_gzip: bool,
}

/// Attempts per upload before the restore fails.
pub const ATTEMPTS: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("reading the backup: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{0}")]
    Plan(String),
    #[error("shard {shard} of bucket {bucket:?}: {source}")]
    Shard { bucket: String, shard: u64, source: Box<RestoreError> },
}

/// Reads and merges every `*.manifest` of the directory (as `influx restore` does).
pub async fn load_manifest(store: &Store) -> Result<Manifest, RestoreError> {
    let mut manifests = Vec::new();
    for name in store.list().await? {
        if name.ends_with(".manifest") {
            let text = store.read_small(&name).await?;
            manifests.push((name.clone(), crate::influx::manifest::parse(&name, &text)?));
        }
    }
    crate::influx::manifest::merge(manifests).ok_or_else(|| {
        RestoreError::Plan(format!("no backup manifest (*.manifest) found in {}", store.describe()))
    })
}

/// One bucket to restore and where.
#[derive(Debug, Clone)]
pub struct BucketTarget {
    pub source: BucketManifest,
    pub org: Org,
    pub final_name: String,
}

impl BucketTarget {
    /// The state key: source `org/bucket` and destination `org/bucket` (restoring the same backup
    /// again under another name is another restore).
    pub fn key(&self) -> String {
        format!(
            "{}/{} -> {}/{}",
            self.source.organization_name, self.source.bucket_name, self.org.name, self.final_name
        )
    }
}

/// Restores one bucket into a staging bucket and renames it when complete.
pub async fn restore_bucket(
    api: &InfluxApi,
    store: &Store,
    state: &StateFile,
    target: &BucketTarget,
    transfer: Transfer,
    progress: &Progress,
) -> Result<(), RestoreError> {
    let key = target.key();
    let mut progress_entry =
        state.bucket_or_begin(&key, &target.org.id, &target.org.name, &target.final_name).await?;
    if progress_entry.complete {
        tracing::info!(
            "bucket {key} was already restored as {}/{}",
            progress_entry.org_name,
            progress_entry.final_name
        );
        return Ok(());
    }

    // The staging bucket: reuse it when the state has one that still exists.
    let mut found = api.find_bucket(&progress_entry.org_id, &progress_entry.staging_name).await?;
    if let Some(id) = &progress_entry.bucket_id {
        if found.as_ref().map(|b| &b.id) != Some(id) {
            tracing::warn!(
                "the staging bucket {} recorded in the state file is gone; restoring bucket {key} from the start",
                progress_entry.staging_name
            );
            progress_entry.bucket_id = None;
            progress_entry.shard_map.clear();
            progress_entry.shards_done.clear();
        } else {
            tracing::info!(
                "resuming into staging bucket {} ({} of {} shard(s) already restored)",
                progress_entry.staging_name,
                progress_entry.shards_done.len(),
                target.source.shards().count()
            );
        }
    }
    if progress_entry.bucket_id.is_none() {
        // A staging bucket from an attempt that died before recording its shard mapping is of no
        // use (the mapping is only ever answered once): remove it and start over.
        if let Some(orphan) = found.take() {
            tracing::warn!("removing the unfinished staging bucket {} from an earlier attempt", orphan.name);
            api.delete_bucket(&orphan.id).await?;
        }
        let mut manifest = target.source.clone();
        manifest.organization_id = progress_entry.org_id.clone();
        manifest.organization_name = progress_entry.org_name.clone();
        manifest.bucket_name = progress_entry.staging_name.clone();
        tracing::info!(
            "restoring bucket {key} as {}/{} (staging name {})",
            progress_entry.org_name,
            progress_entry.final_name,
            progress_entry.staging_name
        );
        let restored = api.restore_bucket_metadata(&manifest).await?;
        progress_entry.bucket_id = Some(restored.id.clone());
        progress_entry.shard_map = restored.shard_mappings.iter().map(|m| (m.old_id, m.new_id)).collect();
        state.put_bucket(&progress_entry).await?;
    }

    // The shards still to upload.
    let mut todo = Vec::new();
    for shard in target.source.shards() {
        if progress_entry.shards_done.contains(&shard.id) {
            continue;
        }
        let Some(file) = shard.file() else {
            tracing::warn!("shard {} of bucket {key} has no file in the manifest; skipping", shard.id);
            continue;
        };
        match progress_entry.shard_map.get(&shard.id) {
            Some(new_id) => todo.push((shard.id, *new_id, file)),
            None => tracing::warn!(
                "the server did not map shard {} of bucket {key}; skipping (as influx restore does)",
                shard.id
            ),
        }
    }
    upload_shards(api, store, state, Some(&key), todo, transfer, progress).await?;

    // Every shard is in: give the bucket its name.
    let id = progress_entry.bucket_id.clone().unwrap_or_default();
    api.rename_bucket(&id, &progress_entry.final_name).await.map_err(|e| {
        if e.status() == Some(422) {
            RestoreError::Plan(format!(
                "every shard is restored into {}/{}, but renaming it to {:?} failed: a bucket of that name appeared at the \
                 destination meanwhile ({e}). Rename or remove that bucket, then run the retry command",
                progress_entry.org_name, progress_entry.staging_name, progress_entry.final_name
            ))
        } else {
            RestoreError::Api(e)
        }
    })?;
    state
        .update(|s| {
            if let Some(b) = s.bucket_mut(&key) {
                b.complete = true;
            }
        })
        .await?;
    tracing::info!("bucket {}/{} restored", progress_entry.org_name, progress_entry.final_name);
    Ok(())
}

/// Uploads `(backed-up id, destination id, file)` shards in parallel, recording each one done
/// (under bucket `bucket_key`, or in the full-restore list when `None`).
async fn upload_shards(
    api: &InfluxApi,
    store: &Store,
    state: &StateFile,
    bucket_key: Option<&str>,
    todo: Vec<(u64, u64, FileEntry)>,
    transfer: Transfer,
    progress: &Progress,
) -> Result<(), RestoreError> {
    if todo.is_empty() {
        return Ok(());
    }
    let total_bytes: u64 = todo.iter().map(|(_, _, f)| f.size.max(0) as u64).sum();
    let bytes_bar = progress.bytes("restore", Some(total_bytes));
    let shards_bar = progress.shards("restore", todo.len() as u64);
    let label = bucket_key.unwrap_or("(full restore)").to_string();
    let mut results = futures::stream::iter(todo)
        .map(|(old, new, file)| {
            let (api, store, state, bytes_bar, shards_bar) =
                (api.clone(), store.clone(), state.clone(), bytes_bar.clone(), shards_bar.clone());
            let key = bucket_key.map(str::to_string);
            let label = label.clone();
            async move {
                tracing::info!("restoring shard {old} as {new} from {}", file.file_name);
                upload_shard(&api, &store, new, &file, transfer.wire_gzip, &bytes_bar).await.map_err(
                    |e| RestoreError::Shard { bucket: label.clone(), shard: old, source: Box::new(e) },
                )?;
                state
                    .update(|s| match &key {
                        Some(k) => {
                            if let Some(b) = s.bucket_mut(k) {
                                b.shards_done.insert(old);
                            }
                        }
                        None => {
                            s.shards_done.insert(old);
                        }
                    })
                    .await?;
                shards_bar.inc(1);
                Ok::<(), RestoreError>(())
            }
        })
        .buffer_unordered(transfer.parallel.max(1));
    // Stop at the first failure; uploads already running finish (and are recorded) only if
    // they complete before the stream is dropped.
    let mut first_error = None;
    while let Some(r) = results.next().await {
        if let Err(e) = r {
            first_error = Some(e);
            break;
        }
    }
    drop(results);
    bytes_bar.finish_and_clear();
    shards_bar.finish_and_clear();
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One shard upload with retries; each attempt streams the file again.
async fn upload_shard(
    api: &InfluxApi,
    store: &Store,
    shard_id: u64,
    file: &FileEntry,
    wire_gzip: bool,
    bar: &ProgressBar,
) -> Result<(), RestoreError> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(15));
    loop {
        let (body, gzip) = file_body(store, file, wire_gzip, Some(bar.clone())).await?;
        match api.restore_shard(shard_id, body, gzip).await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_transient() && backoff.attempts() + 1 < ATTEMPTS => {
                let wait = backoff.next_delay(e.retry_after());
                tracing::warn!("shard {shard_id}: {e}; retrying in {:.1} s", wait.as_secs_f64());
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(RestoreError::Api(e)),
        }
    }
}

/// A request body streaming `file`, and whether it is gzip'd: a gzip'd file goes as it is on disk;
/// a raw one is compressed on the fly when `wire_gzip`, else sent raw.
async fn file_body(
    store: &Store,
    file: &FileEntry,
    wire_gzip: bool,
    bar: Option<ProgressBar>,
) -> Result<(reqwest::Body, bool), RestoreError> {
    let stream = store.reader(&file.file_name, 0).await?;
    let counted = stream.map(move |r| {
        if let (Ok(b), Some(bar)) = (&r, &bar) {
            bar.inc(b.len() as u64);
        }
        r.map_err(|e| std::io::Error::other(e.to_string()))
    });
    if file.is_gzip() {
        Ok((reqwest::Body::wrap_stream(counted), true))
    } else if wire_gzip {
        Ok((reqwest::Body::wrap_stream(gzip_stream(Box::pin(counted), 1)), true))
    } else {
        Ok((reqwest::Body::wrap_stream(counted), false))
    }
}

/// What a full restore did to the destination's token.
pub struct FullOutcome {
    /// The destination client to use from now on (the restored operator token).
    pub api: InfluxApi,
    pub token_replaced: bool,
}

/// After the KV store was restored, the destination accepts the source's tokens: the client to
/// go on with (the given token if it still works, else `fallback`, the source's), and whether it
/// changed. A plain error when neither works.
async fn usable_after_kv(
    api: InfluxApi,
    fallback: Option<&Sensitive>,
) -> Result<(InfluxApi, bool), RestoreError> {
    match api.orgs().await {
        Ok(_) => return Ok((api, false)),
        Err(e) if !e.is_unauthorized() => return Err(e.into()),
        Err(_) => {}
    }
    if let Some(t) = fallback {
        let other = api.with_token(t.clone());
        match other.orgs().await {
            Ok(_) => return Ok((other, true)),
            Err(e) if !e.is_unauthorized() => return Err(e.into()),
            Err(_) => {}
        }
    }
    Err(RestoreError::Plan(
        "the restored metadata replaced the destination's tokens with the source's, and neither INFLUX_DEST_TOKEN \
         nor the operator token (--operator-token, INFLUX_OPERATOR_TOKEN or INFLUX_SRC_TOKEN) is accepted by the \
         destination now: set INFLUX_OPERATOR_TOKEN to the source's operator token and run the command again with \
         --retry-restore-dir"
            .into(),
    ))
}

/// The KV snapshot, unzipped.
pub async fn read_kv(store: &Store, kv: &FileEntry) -> Result<Vec<u8>, RestoreError> {
    let raw = store.read_small(&kv.file_name).await?;
    if !kv.is_gzip() {
        return Ok(raw);
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&raw[..]), &mut out).map_err(|e| {
        RestoreError::Plan(format!("the KV snapshot {} is not valid gzip: {e}", kv.file_name))
    })?;
    Ok(out)
}

/// Before a KV snapshot whose tokens are hashed (InfluxDB 2.9) replaces the destination's tokens:
/// after it, the destination accepts only the source's tokens and the restore cannot say which is
/// the operator's, so the operator token to go on with must be known now and be one of the
/// snapshot's operator authorizations. Checked against the snapshot itself, so a wrong or missing
/// token is found while the destination is still as it was. A snapshot this reader cannot parse
/// is let through (the check after the restore still stands).
async fn check_operator_for_hashed_kv(
    store: &Store,
    kv: &FileEntry,
    operator: Option<&Sensitive>,
) -> Result<(), RestoreError> {
    let snapshot = read_kv(store, kv).await?;
    let auths = match crate::influx::kv_snapshot::authorizations(&snapshot) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("the KV snapshot could not be read here ({e}); restoring it anyway");
            return Ok(());
        }
    };
    if !auths.values().any(|a| a.is_hashed()) {
        return Ok(());
    }
    let Some(token) = operator else {
        return Err(RestoreError::Plan(
            "this backup's tokens are hashed (InfluxDB 2.9 or later): once its metadata is restored, the destination \
             accepts only the source's tokens, and which one is the operator's cannot be read from the backup. \
             Nothing was changed at the destination. Give the source's operator token with --operator-token or \
             INFLUX_OPERATOR_TOKEN (or set INFLUX_SRC_TOKEN to it)"
                .into(),
        ));
    };
    match auths.values().find(|a| a.has_token(token.expose())) {
        Some(a) if a.is_operator() => Ok(()),
        Some(_) => Err(RestoreError::Plan(
            "the operator token given is one of the backup's tokens but not its operator token (the one made when \
             the source was set up): the restore needs that one to go on after the metadata replaces the \
             destination's tokens. Nothing was changed at the destination"
                .into(),
        )),
        None => Err(RestoreError::Plan(
            "the operator token given (--operator-token, INFLUX_OPERATOR_TOKEN or INFLUX_SRC_TOKEN) is not a token \
             of the backed-up source: no authorization in the backup's metadata has it. Nothing was changed at the \
             destination. Give the source's operator token"
                .into(),
        )),
    }
}

/// Full restore: KV, SQL, then every shard under its original ID.
pub async fn restore_full(
    api: &InfluxApi,
    store: &Store,
    state: &StateFile,
    manifest: &Manifest,
    transfer: Transfer,
    progress: &Progress,
    operator_token: Option<&Sensitive>,
) -> Result<FullOutcome, RestoreError> {
    let mut api = api.clone();
    let mut token_replaced = false;
    let st = state.get().await;
    if st.complete {
        tracing::info!("this full restore already completed");
        return Ok(FullOutcome { api, token_replaced });
    }
    if !st.kv_done {
        check_operator_for_hashed_kv(store, &manifest.kv, operator_token).await?;
        tracing::info!(
            "restoring the KV snapshot {} (replaces every token, user, bucket, dashboard and task)",
            manifest.kv.file_name
        );
        let (body, gzip) = file_body(store, &manifest.kv, transfer.wire_gzip, None).await?;
        let token = api.restore_kv(body, gzip).await?;
        state.update(|s| s.kv_done = true).await?;
        match token {
            Some(t) if t != *api.token() => {
                tracing::warn!(
                    "restoring the KV snapshot replaced the destination's tokens: its operator token is now the source's"
                );
                api = api.with_token(t);
                token_replaced = true;
            }
            Some(_) => {}
            // InfluxDB 2.9 stores tokens hashed: the restore cannot say which is the operator
            // token. The destination now accepts the source's tokens, so the source's operator
            // token (checked against the snapshot above) is the one to go on with.
            None => {
                tracing::info!(
                    "the restored metadata holds hashed tokens: going on with the source's operator token"
                );
                (api, token_replaced) = usable_after_kv(api, operator_token).await?;
            }
        }
    } else {
        // The KV store was restored by an earlier attempt: the destination's tokens are the
        // source's now. Use the given token if it still works, else the source's.
        tracing::info!("the KV snapshot was restored by an earlier attempt");
        (api, token_replaced) = usable_after_kv(api, operator_token).await?;
    }
    if let Some(sql) = &manifest.sql
        && !state.get().await.sql_done
    {
        tracing::info!("restoring the SQL snapshot {}", sql.file_name);
        let (body, gzip) = file_body(store, sql, transfer.wire_gzip, None).await?;
        api.restore_sql(body, gzip).await?;
        state.update(|s| s.sql_done = true).await?;
    }
    let done = state.get().await.shards_done;
    let mut todo = Vec::new();
    let mut seen = BTreeMap::new();
    for b in &manifest.buckets {
        for shard in b.shards() {
            if done.contains(&shard.id) || seen.insert(shard.id, ()).is_some() {
                continue;
            }
            if let Some(file) = shard.file() {
                todo.push((shard.id, shard.id, file));
            }
        }
    }
    upload_shards(&api, store, state, None, todo, transfer, progress).await?;
    state.update(|s| s.complete = true).await?;
    Ok(FullOutcome { api, token_replaced })
}
