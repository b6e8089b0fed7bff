//! The backup manifest: what `influx backup` writes next to its files, and what influxd sends in
//! the `buckets` part of `/api/v2/backup/metadata` and takes in `/api/v2/restore/bucketMetadata`.
//!
//! The local manifest is version 2 of influx-cli (`internal/backup_restore/manifest.go`,
//! `ManifestVersion = 2`): `{"manifestVersion":2,"kv":FileEntry,"sql":FileEntry?,"buckets":[...]}`
//! where each shard entry inlines a FileEntry (`fileName`, `size`, `compression` as a number:
//! 0 none, 1 gzip). The bucket entries have the server's shape (influxdb `backup.go`
//! `BucketMetadataManifest`), so one set of types serves both. Times are kept as the text the
//! writer produced (RFC3339Nano) so a manifest read and written again is unchanged; fields this
//! code does not know are kept too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The manifest version this code reads and writes (influx-cli `ManifestVersion`).
pub const MANIFEST_VERSION: u32 = 2;

/// How a file on disk is compressed (influx-cli `FileCompression`, serialised as a number).
pub const COMPRESSION_NONE: u8 = 0;
pub const COMPRESSION_GZIP: u8 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "manifestVersion")]
    pub version: u32,
    pub kv: FileEntry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<FileEntry>,
    pub buckets: Vec<BucketManifest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    #[serde(rename = "fileName")]
    pub file_name: String,
    pub size: i64,
    pub compression: u8,
}

impl FileEntry {
    pub fn is_gzip(&self) -> bool {
        self.compression == COMPRESSION_GZIP
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketManifest {
    #[serde(rename = "organizationID")]
    pub organization_id: String,
    #[serde(rename = "organizationName")]
    pub organization_name: String,
    #[serde(rename = "bucketID")]
    pub bucket_id: String,
    #[serde(rename = "bucketName")]
    pub bucket_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "defaultRetentionPolicy", default)]
    pub default_retention_policy: String,
    #[serde(rename = "retentionPolicies", default)]
    pub retention_policies: Vec<RetentionPolicyManifest>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetentionPolicyManifest {
    pub name: String,
    #[serde(rename = "replicaN", default)]
    pub replica_n: i64,
    /// Nanoseconds; 0 is infinite.
    #[serde(default)]
    pub duration: i64,
    /// Nanoseconds.
    #[serde(rename = "shardGroupDuration", default)]
    pub shard_group_duration: i64,
    #[serde(rename = "shardGroups", default)]
    pub shard_groups: Vec<ShardGroupManifest>,
    #[serde(default)]
    pub subscriptions: Vec<Value>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardGroupManifest {
    pub id: u64,
    #[serde(rename = "startTime")]
    pub start_time: String,
    #[serde(rename = "endTime")]
    pub end_time: String,
    #[serde(rename = "deletedAt", default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
    #[serde(rename = "truncatedAt", default, skip_serializing_if = "Option::is_none")]
    pub truncated_at: Option<String>,
    #[serde(default)]
    pub shards: Vec<ShardManifest>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardManifest {
    pub id: u64,
    #[serde(rename = "shardOwners", default)]
    pub shard_owners: Vec<Value>,
    /// The local file (only in a local manifest).
    #[serde(rename = "fileName", default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<u8>,
}

impl ShardManifest {
    pub fn file(&self) -> Option<FileEntry> {
        Some(FileEntry {
            file_name: self.file_name.clone()?,
            size: self.size.unwrap_or(0),
            compression: self.compression.unwrap_or(COMPRESSION_NONE),
        })
    }
}

impl BucketManifest {
    /// Every shard of every shard group of every retention policy.
    pub fn shards(&self) -> impl Iterator<Item = &ShardManifest> {
        self.retention_policies.iter().flat_map(|rp| rp.shard_groups.iter()).flat_map(|sg| sg.shards.iter())
    }

    /// System buckets (`_monitoring`, `_tasks`): a partial restore never touches them
    /// (influx-cli `partialRestore` skips names starting with `_`).
    pub fn is_system(&self) -> bool {
        self.bucket_name.starts_with('_')
    }

    /// The form `/api/v2/restore/bucketMetadata` takes: the same document without local file
    /// fields.
    pub fn for_server(&self) -> BucketManifest {
        let mut m = self.clone();
        for rp in &mut m.retention_policies {
            for sg in &mut rp.shard_groups {
                for s in &mut sg.shards {
                    s.file_name = None;
                    s.size = None;
                    s.compression = None;
                }
            }
        }
        m
    }
}

/// Why a manifest could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{file} is not a backup manifest: {source}")]
    Json { file: String, source: serde_json::Error },
    #[error(
        "{file} has manifest version {version}; only version {MANIFEST_VERSION} (influx CLI 2.1 and later) is supported"
    )]
    Version { file: String, version: u64 },
}

/// Parses a manifest file's text, refusing other versions (a 2.0.x manifest has none).
pub fn parse(file: &str, text: &[u8]) -> Result<Manifest, ManifestError> {
    let probe: Value =
        serde_json::from_slice(text).map_err(|source| ManifestError::Json { file: file.into(), source })?;
    let version = probe.get("manifestVersion").and_then(Value::as_u64).unwrap_or(0);
    if version != u64::from(MANIFEST_VERSION) {
        return Err(ManifestError::Version { file: file.into(), version });
    }
    serde_json::from_value(probe).map_err(|source| ManifestError::Json { file: file.into(), source })
}

/// Merges the manifests of a directory the way `influx restore` does (influx-cli
/// `loadManifests`): in name order (names are UTC timestamps), the last KV/SQL entry wins and
/// buckets are deduplicated by `<org name>/<bucket name>`, the latest entry kept.
pub fn merge(mut manifests: Vec<(String, Manifest)>) -> Option<Manifest> {
    manifests.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Option<Manifest> = None;
    let mut buckets: BTreeMap<String, BucketManifest> = BTreeMap::new();
    for (_, m) in manifests {
        for b in &m.buckets {
            buckets.insert(format!("{}/{}", b.organization_name, b.bucket_name), b.clone());
        }
        out = Some(Manifest { version: m.version, kv: m.kv, sql: m.sql, buckets: Vec::new() });
    }
    let mut merged = out?;
    merged.buckets = buckets.into_values().collect();
    Some(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest as influx CLI 2.3.0 wrote it in the test bed (one bucket, two shards).
    const CLI_MANIFEST: &str = r#"{
  "manifestVersion": 2,
  "kv": {
    "fileName": "20240131T101502Z.bolt.gz",
    "size": 11482,
    "compression": 1
  },
  "sql": {
    "fileName": "20240131T101502Z.sqlite.gz",
    "size": 5721,
    "compression": 1
  },
  "buckets": [
    {
      "organizationID": "0a1b2c3d4e5f6a7b",
      "organizationName": "test-org",
      "bucketID": "1a1b2c3d4e5f6a7b",
      "bucketName": "test-bucket",
      "defaultRetentionPolicy": "autogen",
      "retentionPolicies": [
        {
          "name": "autogen",
          "replicaN": 1,
          "duration": 0,
          "shardGroupDuration": 604800000000000,
          "shardGroups": [
            {
              "id": 1,
              "startTime": "2023-12-28T00:00:00Z",
              "endTime": "2024-01-04T00:00:00Z",
              "shards": [
                {
                  "id": 1,
                  "shardOwners": [
                    {
                      "nodeID": 0
                    }
                  ],
                  "fileName": "20240131T101502Z.1.tar.gz",
                  "size": 1200,
                  "compression": 1
                }
              ]
            },
            {
              "id": 2,
              "startTime": "2024-01-04T00:00:00Z",
              "endTime": "2024-01-11T00:00:00Z",
              "deletedAt": "2024-01-20T00:00:00.123456789Z",
              "shards": [
                {
                  "id": 2,
                  "shardOwners": [],
                  "fileName": "20240131T101502Z.2.tar",
                  "size": 10240,
                  "compression": 0
                }
              ]
            }
          ],
          "subscriptions": []
        }
      ]
    }
  ]
}"#;

    #[test]
    fn a_cli_manifest_round_trips_unchanged() {
        let m = parse("x.manifest", CLI_MANIFEST.as_bytes()).unwrap();
        assert_eq!(m.kv.file_name, "20240131T101502Z.bolt.gz");
        assert!(m.kv.is_gzip());
        let shards: Vec<_> = m.buckets[0].shards().map(|s| (s.id, s.file().unwrap())).collect();
        assert_eq!(shards[0].1.file_name, "20240131T101502Z.1.tar.gz");
        assert!(shards[0].1.is_gzip());
        assert!(!shards[1].1.is_gzip());
        let again: Value = serde_json::to_value(&m).unwrap();
        let original: Value = serde_json::from_str(CLI_MANIFEST).unwrap();
        assert_eq!(again, original);
    }

    #[test]
    fn the_server_form_has_no_file_fields() {
        let m = parse("x.manifest", CLI_MANIFEST.as_bytes()).unwrap();
        let v = serde_json::to_value(m.buckets[0].for_server()).unwrap();
        let shard = &v["retentionPolicies"][0]["shardGroups"][0]["shards"][0];
        assert_eq!(shard["id"], 1);
        assert!(shard.get("fileName").is_none() && shard.get("size").is_none());
        assert_eq!(
            v["retentionPolicies"][0]["shardGroups"][1]["deletedAt"],
            "2024-01-20T00:00:00.123456789Z"
        );
    }

    #[test]
    fn other_versions_are_refused_with_the_file_name() {
        let e = parse("old.manifest", br#"{"kv":{"fileName":"a","size":1},"files":[]}"#).unwrap_err();
        assert!(e.to_string().contains("old.manifest") && e.to_string().contains("version 0"), "{e}");
    }

    #[test]
    fn merge_keeps_the_latest_entry_per_bucket() {
        let m1 = parse("a", CLI_MANIFEST.as_bytes()).unwrap();
        let mut m2 = m1.clone();
        m2.kv.file_name = "later.bolt.gz".into();
        m2.buckets[0].description = Some("newer".into());
        let merged =
            merge(vec![("20240201T000000Z.manifest".into(), m2), ("20240131T101502Z.manifest".into(), m1)])
                .unwrap();
        assert_eq!(merged.kv.file_name, "later.bolt.gz");
        assert_eq!(merged.buckets.len(), 1);
        assert_eq!(merged.buckets[0].description.as_deref(), Some("newer"));
    }
}
