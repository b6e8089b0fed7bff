//! `metadata_<bucket>.json`: a bucket's definition, in the shape AWS's script writes.
//!
//! The script dumps the Python client's bucket object (`bucket.to_dict()`, snake_case keys, dates
//! as text) and adds `org_name`; its restore reads `retention_rules[0].every_seconds`,
//! `retention_rules[0].shard_group_duration_seconds` and `org_name`. The same keys are written
//! here and read leniently (unknown keys kept), so either tool reads the other's files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::influx::api::{Bucket, RetentionRule};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataRule {
    #[serde(rename = "type", default = "expire")]
    pub kind: String,
    #[serde(default)]
    pub every_seconds: i64,
    #[serde(default)]
    pub shard_group_duration_seconds: Option<i64>,
}

fn expire() -> String {
    "expire".into()
}

/// The metadata file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketMetadata {
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub org_id: Option<String>,
    pub org_name: String,
    #[serde(default)]
    pub retention_rules: Vec<MetadataRule>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl BucketMetadata {
    pub fn from_bucket(b: &Bucket, org_name: &str) -> BucketMetadata {
        BucketMetadata {
            id: Some(b.id.clone()),
            name: b.name.clone(),
            kind: Some(b.kind.clone()),
            description: b.description.clone(),
            org_id: Some(b.org_id.clone()),
            org_name: org_name.to_string(),
            retention_rules: b
                .retention_rules
                .iter()
                .map(|r| MetadataRule {
                    kind: r.kind.clone(),
                    every_seconds: r.every_seconds,
                    shard_group_duration_seconds: r.shard_group_duration_seconds,
                })
                .collect(),
            created_at: b.created_at.clone(),
            updated_at: b.updated_at.clone(),
            extra: [("labels".to_string(), Value::Array(Vec::new()))].into_iter().collect(),
        }
    }

    pub fn retention_seconds(&self) -> i64 {
        self.retention_rules.first().map(|r| r.every_seconds).unwrap_or(0)
    }

    pub fn shard_group_duration_seconds(&self) -> Option<i64> {
        self.retention_rules.first().and_then(|r| r.shard_group_duration_seconds).filter(|s| *s > 0)
    }

    /// The rule to create the bucket with: same retention, same shard-group duration.
    pub fn retention_rule(&self) -> RetentionRule {
        RetentionRule {
            kind: "expire".into(),
            every_seconds: self.retention_seconds(),
            shard_group_duration_seconds: self.shard_group_duration_seconds(),
        }
    }
}

/// The part of a file name that stands for a bucket: its name, with `/` and `%` escaped so a
/// `db/rp`-style name stays one file name.
pub fn stem_of(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

pub fn metadata_file(stem: &str) -> String {
    format!("metadata_{stem}.json")
}

pub fn data_file(stem: &str) -> String {
    format!("bucket_{stem}.csv")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the AWS script writes (json.dump of the Python client's bucket dict).
    const SCRIPT_METADATA: &str = r#"{"links": {"labels": "/api/v2/buckets/1/labels"}, "id": "0a1b2c3d4e5f6a7b", "type": "user", "name": "gap-test", "description": null, "org_id": "1122334455667788", "rp": null, "schema_type": null, "created_at": "2024-03-01 10:00:00.123456+00:00", "updated_at": "2024-03-01 10:00:00.123456+00:00", "retention_rules": [{"type": "expire", "every_seconds": 0, "shard_group_duration_seconds": 604800}], "labels": [], "org_name": "test-org"}"#;

    #[test]
    fn the_scripts_metadata_is_read() {
        let m: BucketMetadata = serde_json::from_str(SCRIPT_METADATA).unwrap();
        assert_eq!(m.name, "gap-test");
        assert_eq!(m.org_name, "test-org");
        assert_eq!(m.retention_seconds(), 0);
        assert_eq!(m.shard_group_duration_seconds(), Some(604_800));
        // Unknown keys survive a rewrite.
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["schema_type"], Value::Null);
        assert!(v["links"].is_object());
    }

    #[test]
    fn file_names_follow_the_script_and_escape_slashes() {
        assert_eq!(data_file(&stem_of("gap-test")), "bucket_gap-test.csv");
        assert_eq!(metadata_file(&stem_of("db/rp")), "metadata_db%2Frp.json");
    }
}
