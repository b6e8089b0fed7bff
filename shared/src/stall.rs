//! Stalls and parking: what a stream writer records when a shard cannot move on, and the
//! operator's instruction to set the blocking records aside.
//!
//! Both live in the dead-letter bucket, next to the dead letters, one small JSON object per
//! shard:
//!
//! | key | written by | holds |
//! |---|---|---|
//! | `stalls/<target>/<shard>.json` | the stream writer, at every batch that stops | [`Stall`]: the blocking record, since when, why, the bucket |
//! | `parked/<target>/<shard>.json` | `influx-migration park` | [`ParkRule`]: records of that shard failing with that status go to dead-letter storage until the rule expires or is released |
//! | `redriven/<dead-letter key>` | `influx-migration redrive` | the dead letters that were written again and landed |
//! | `counts/<target>/source-only/<shard>.json` | the destination writer | [`SourceOnly`]: per bucket, the records it did not replay because `"unmapped"` is `"source-only"` |
//! | `barriers/<target>/<shard>/<id>.json` | each stream writer | `crate::barrier::Passed`: it applied everything before barrier `<id>` in that shard |
//!
//! A writer deletes its shard's stall object once a batch of that shard goes through. A park
//! rule never covers a failure it was not made for: it names the status it parks (a 403 rule
//! does not park a 404), it expires, and an unreadable rule parks nothing.

use serde::{Deserialize, Serialize};

use crate::secret::Role;

/// Where stall objects live.
pub const STALL_PREFIX: &str = "stalls/";
/// Where park rules live.
pub const PARK_PREFIX: &str = "parked/";
/// Where redriven dead letters are moved.
pub const REDRIVEN_PREFIX: &str = "redriven/";
/// Where the writers keep their counts.
pub const COUNT_PREFIX: &str = "counts/";

/// Per bucket (as the client named it), how many records of one shard the destination writer
/// left to the source alone because the bucket is outside `mappings.buckets` and `"unmapped"` is
/// `"source-only"`. At least this many: a batch Lambda retries after a crash may count twice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOnly {
    pub shard_id: String,
    pub by_bucket: std::collections::BTreeMap<String, u64>,
    pub updated_ms: i64,
}

/// The key of a shard's source-only count.
pub fn source_only_key(target: Role, shard_id: &str) -> String {
    format!("{COUNT_PREFIX}{}/source-only/{shard_id}.json", target.as_str())
}

/// Why a batch stopped, as far as the operator is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StallClass {
    /// Wrong token, missing permission, missing bucket or org, a proxy's answer, a writer older
    /// than the gateway: it lasts until an operator acts.
    Configuration,
    /// Overload, server error, timeout, connection trouble: it passes by itself.
    Transient,
    /// Anything else (dead-letter storage unreachable, an internal error).
    Other,
}

impl StallClass {
    pub fn as_str(self) -> &'static str {
        match self {
            StallClass::Configuration => "configuration",
            StallClass::Transient => "transient",
            StallClass::Other => "other",
        }
    }
}

/// A shard that cannot move on: its first record not written, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stall {
    pub target: Role,
    pub shard_id: String,
    /// The blocking record.
    pub sequence_number: String,
    /// When this record first stopped a batch (ms since the epoch).
    pub since_ms: i64,
    /// When it last did.
    pub last_failure_ms: i64,
    /// How many batches it has stopped.
    pub failures: u64,
    pub class: StallClass,
    /// The database's status, when it answered.
    pub status: Option<u16>,
    /// The failure in words (never a credential).
    pub reason: String,
    /// The bucket (v2) or `db[/rp]` (v1) the record writes to, as the client named it.
    pub bucket: Option<String>,
    /// When the record entered the stream (ms since the epoch): it expires a retention later.
    pub arrival_ms: Option<i64>,
}

/// What a writer's stall reason says when it stopped at a record of a newer format (a barrier
/// or a data record of a later release): the text every release of the stream writer uses.
pub const NEWER_FORMAT: &str = "is newer than this stream writer reads";

/// The words of a destination writer's stop at a bucket outside `mappings.buckets` (with
/// `"unmapped": "fail"`); a record parked there keeps this in its reason, which is how `redrive`
/// knows the letter's parameters are the client's.
pub const UNMAPPED_REASON: &str = "is not in the endpoint secret's mappings.buckets";

impl Stall {
    /// Whether the writer stopped at a record of a newer format than it reads: no park rule
    /// releases it (the record is never sent anywhere); deploying the matching writer does.
    pub fn is_newer_format(&self) -> bool {
        self.reason.contains(NEWER_FORMAT)
    }

    /// How long the shard has been stalled at `now_ms`.
    pub fn stalled_ms(&self, now_ms: i64) -> i64 {
        (now_ms - self.since_ms).max(0)
    }

    /// Time left before the blocking record leaves a stream of `retention_hours`, at `now_ms`;
    /// negative once it has.
    pub fn expiry_headroom_ms(&self, retention_hours: u32, now_ms: i64) -> Option<i64> {
        self.arrival_ms.map(|a| a + i64::from(retention_hours) * 3_600_000 - now_ms)
    }
}

/// The operator's decision to move records that fail a shard into dead-letter storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkRule {
    pub target: Role,
    pub shard_id: String,
    /// The failure status this rule parks; `None` parks configuration failures without a status
    /// (a proxy or TLS failure that never reached InfluxDB).
    pub status: Option<u16>,
    pub parked_at_ms: i64,
    /// After this the rule parks nothing.
    pub expires_at_ms: i64,
    /// The operator's words, kept in each parked record's reason.
    pub note: String,
}

impl ParkRule {
    /// Whether a configuration failure with `status` at `now_ms` is to be parked.
    pub fn applies(&self, status: Option<u16>, now_ms: i64) -> bool {
        now_ms < self.expires_at_ms && self.status == status
    }
}

/// Milliseconds since the Unix epoch: the clock of every time in these objects.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The key of a shard's stall object.
pub fn stall_key(target: Role, shard_id: &str) -> String {
    format!("{STALL_PREFIX}{}/{shard_id}.json", target.as_str())
}

/// The key of a shard's park rule.
pub fn park_key(target: Role, shard_id: &str) -> String {
    format!("{PARK_PREFIX}{}/{shard_id}.json", target.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(status: Option<u16>) -> ParkRule {
        ParkRule {
            target: Role::Destination,
            shard_id: "shardId-000000000000".into(),
            status,
            parked_at_ms: 1_000,
            expires_at_ms: 2_000,
            note: "token revoked".into(),
        }
    }

    #[test]
    fn a_rule_parks_only_its_status_and_only_until_it_expires() {
        let r = rule(Some(403));
        assert!(r.applies(Some(403), 1_500));
        assert!(!r.applies(Some(404), 1_500), "a 403 rule must not park a 404");
        assert!(!r.applies(None, 1_500));
        assert!(!r.applies(Some(403), 2_000), "an expired rule parks nothing");
        assert!(rule(None).applies(None, 1_999));
    }

    #[test]
    fn headroom_is_retention_less_the_records_age() {
        let s = Stall {
            target: Role::Destination,
            shard_id: "s".into(),
            sequence_number: "1".into(),
            since_ms: 10_000,
            last_failure_ms: 20_000,
            failures: 2,
            class: StallClass::Configuration,
            status: Some(401),
            reason: "r".into(),
            bucket: Some("b".into()),
            arrival_ms: Some(5_000),
        };
        assert_eq!(s.expiry_headroom_ms(24, 3_605_000), Some(24 * 3_600_000 - 3_600_000));
        assert_eq!(s.stalled_ms(70_000), 60_000);
        assert_eq!(s.stalled_ms(0), 0);
    }

    #[test]
    fn keys_name_target_and_shard() {
        assert_eq!(stall_key(Role::Source, "shardId-1"), "stalls/source/shardId-1.json");
        assert_eq!(park_key(Role::Destination, "shardId-1"), "parked/destination/shardId-1.json");
    }
}
