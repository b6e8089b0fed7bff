//! Restore progress, kept in the backup directory so a failed restore resumes where it stopped.
//!
//! `influx-migration-state.json` sits beside the backup files (`influx restore` reads only
//! `*.manifest` files and AWS's script only `bucket_*`/`metadata_*`, so neither trips on it).
//! It records, per bucket, the staging bucket created at the destination, the shard ID mapping the
//! server returned, the shards already uploaded and, for CSV, how far the file was written; for
//! `--full`, whether KV and SQL are restored and which shards are in, or, when the metadata is
//! rebuilt through the API, which source object became which destination object. It holds no
//! token.
//!
//! Every change is written at once (atomically for local directories), so what the file says is
//! done is done at the destination.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::seeding::store::{Store, StoreError};

pub const STATE_FILE: &str = "influx-migration-state.json";

/// Progress of one bucket's restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketProgress {
    /// `org/bucket` at the source (the key).
    pub source: String,
    /// Destination org ID and name.
    pub org_id: String,
    pub org_name: String,
    /// The name the bucket gets once complete.
    pub final_name: String,
    /// The name it has while data is going in.
    pub staging_name: String,
    /// The staging bucket's ID, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_id: Option<String>,
    /// Backed-up shard ID to destination shard ID.
    #[serde(default)]
    pub shard_map: BTreeMap<u64, u64>,
    /// Backed-up shard IDs already uploaded.
    #[serde(default)]
    pub shards_done: BTreeSet<u64>,
    /// CSV: the offset of the block to restart from and the rows of it already written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv_resume: Option<CsvResume>,
    #[serde(default)]
    pub rows_written: u64,
    /// Renamed to its final name: this bucket is complete.
    #[serde(default)]
    pub complete: bool,
}

/// Where a CSV import restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CsvResume {
    pub block_offset: u64,
    pub rows_in_block: u64,
}

/// The whole state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreState {
    /// When the backup began (RFC3339): data newer than this is not expected at the destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_started_at: Option<String>,
    /// `bucket`, `full` or `csv`.
    #[serde(default)]
    pub mode: String,
    /// The source host the backup came from (`scheme://host:port`).
    #[serde(default)]
    pub source_host: String,
    /// The destination host of the last restore attempt.
    #[serde(default)]
    pub destination_host: String,
    #[serde(default)]
    pub buckets: Vec<BucketProgress>,
    /// `--full`: the KV store is restored (the destination's tokens are now the source's).
    #[serde(default)]
    pub kv_done: bool,
    #[serde(default)]
    pub sql_done: bool,
    /// `--full`: shard IDs uploaded.
    #[serde(default)]
    pub shards_done: BTreeSet<u64>,
    #[serde(default)]
    pub complete: bool,
    /// `--full`: `rebuild` when the metadata is recreated through the API because the
    /// destination is older than the source (see [`crate::seeding::rebuild`]); empty for a KV restore.
    /// Decided once, before the backup, so a retry resumes the same way.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub full_method: String,
    /// The versions `/health` reported when the method was decided.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub destination_version: String,
    /// `--full` rebuild: kind → source ID → destination ID of every object made (or found) at
    /// the destination. What is here is not made again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub id_map: BTreeMap<String, BTreeMap<String, String>>,
}

/// [`RestoreState::full_method`] of a rebuild.
pub const REBUILD: &str = "rebuild";

impl RestoreState {
    /// The destination ID recorded for source object `id` of `kind`.
    pub fn mapped(&self, kind: &str, id: &str) -> Option<&str> {
        self.id_map.get(kind)?.get(id).map(String::as_str)
    }

    pub fn bucket(&self, source: &str) -> Option<&BucketProgress> {
        self.buckets.iter().find(|b| b.source == source)
    }

    pub fn bucket_mut(&mut self, source: &str) -> Option<&mut BucketProgress> {
        self.buckets.iter_mut().find(|b| b.source == source)
    }
}

/// Shared, persisted state: change it with [`StateFile::update`], which writes it out.
#[derive(Clone)]
pub struct StateFile {
    store: Store,
    state: Arc<Mutex<RestoreState>>,
}

impl StateFile {
    /// Loads the state from the directory, or starts an empty one.
    pub async fn load(store: &Store) -> Result<StateFile, StoreError> {
        let state = match store.read_small(STATE_FILE).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "ignoring unreadable {STATE_FILE} ({e}); the restore starts from the beginning"
                );
                RestoreState::default()
            }),
            Err(_) => RestoreState::default(),
        };
        Ok(StateFile { store: store.clone(), state: Arc::new(Mutex::new(state)) })
    }

    pub async fn get(&self) -> RestoreState {
        self.state.lock().await.clone()
    }

    /// Bucket `key`'s progress: the recorded entry (complete or not), or a new one, recorded
    /// now, that restores into the staging bucket `<final_name>.restoring-<8 hex digits>`.
    pub async fn bucket_or_begin(
        &self,
        key: &str,
        org_id: &str,
        org_name: &str,
        final_name: &str,
    ) -> Result<BucketProgress, StoreError> {
        if let Some(p) = self.state.lock().await.bucket(key) {
            return Ok(p.clone());
        }
        let p = BucketProgress {
            source: key.to_string(),
            org_id: org_id.to_string(),
            org_name: org_name.to_string(),
            final_name: final_name.to_string(),
            staging_name: format!(
                "{final_name}.restoring-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            ..Default::default()
        };
        self.update(|s| s.buckets.push(p.clone())).await?;
        Ok(p)
    }

    /// Records `entry` as its bucket's progress (before any transfer for that bucket runs:
    /// it replaces the whole entry).
    pub async fn put_bucket(&self, entry: &BucketProgress) -> Result<(), StoreError> {
        self.update(|s| {
            if let Some(b) = s.bucket_mut(&entry.source) {
                *b = entry.clone();
            }
        })
        .await
    }

    /// Applies `change` and writes the file; the lock is held while writing so updates from
    /// parallel transfers are written in order.
    pub async fn update<R>(&self, change: impl FnOnce(&mut RestoreState) -> R) -> Result<R, StoreError> {
        let mut guard = self.state.lock().await;
        let r = change(&mut guard);
        let text = serde_json::to_vec_pretty(&*guard).unwrap_or_default();
        self.store.write_small(STATE_FILE, &text).await?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bucket_is_begun_once_and_its_entry_put_back_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::Local(tmp.path().to_path_buf());
        let sf = StateFile::load(&store).await.unwrap();
        let mut first = sf.bucket_or_begin("o/b", "0001", "org", "b2").await.unwrap();
        assert!(first.staging_name.starts_with("b2.restoring-"), "{}", first.staging_name);
        assert_eq!(first.staging_name.len(), "b2.restoring-".len() + 8);
        first.bucket_id = Some("0123".into());
        sf.put_bucket(&first).await.unwrap();
        let again = StateFile::load(&store).await.unwrap();
        let second = again.bucket_or_begin("o/b", "0001", "org", "b2").await.unwrap();
        assert_eq!(second, first);
        assert_eq!(again.get().await.buckets.len(), 1);
    }

    #[test]
    fn a_state_file_from_before_the_rebuild_resumes_as_a_restore() {
        let old: RestoreState =
            serde_json::from_str(r#"{"mode": "full", "kv_done": true, "shards_done": [1]}"#).unwrap();
        assert_eq!(old.full_method, "");
        assert!(old.id_map.is_empty());
        let mut s = RestoreState { full_method: REBUILD.into(), ..Default::default() };
        s.id_map.entry("buckets".into()).or_default().insert("a".into(), "b".into());
        let back: RestoreState = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(back.mapped("buckets", "a"), Some("b"));
        assert_eq!(back.full_method, REBUILD);
    }

    #[tokio::test]
    async fn progress_survives_a_reload() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::Local(tmp.path().to_path_buf());
        let sf = StateFile::load(&store).await.unwrap();
        sf.update(|s| {
            s.mode = "bucket".into();
            s.buckets.push(BucketProgress {
                source: "o/b".into(),
                final_name: "b2".into(),
                staging_name: "b2.restoring-1".into(),
                bucket_id: Some("0123".into()),
                shard_map: [(1, 11), (2, 12)].into_iter().collect(),
                ..Default::default()
            });
        })
        .await
        .unwrap();
        sf.update(|s| s.bucket_mut("o/b").unwrap().shards_done.insert(1)).await.unwrap();
        let again = StateFile::load(&store).await.unwrap().get().await;
        let b = again.bucket("o/b").unwrap();
        assert_eq!(b.shard_map.get(&2), Some(&12));
        assert_eq!(b.shards_done.iter().copied().collect::<Vec<_>>(), vec![1]);
        assert!(!b.complete);
    }
}
