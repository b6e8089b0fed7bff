//! Barriers through the stream (`shared::barrier`): putting one into every open shard, and
//! reading which writers have passed it.
//!
//! A round is one barrier ID put into every open shard, each with an explicit hash key at the
//! start of the shard's range, so that it lands in that shard. A stream resharded while the round
//! is put is listed again until every open shard holds the barrier: a shard split after the
//! barrier went into its parent needs nothing more, since writers finish a parent before they
//! read its children.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use serde::Serialize;
use shared::barrier::{Barrier, Control, Passed, passed_key};
use shared::secret::Role;
use time::OffsetDateTime;

/// Why a barrier could not be put or read.
#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    #[error("listing the shards of stream {stream}: {reason}")]
    List { stream: String, reason: String },
    #[error("putting a barrier into shard {shard} of stream {stream}: {reason}")]
    Put { stream: String, shard: String, reason: String },
    #[error("the stream {stream} kept being resharded while the barrier was put; try again")]
    Resharding { stream: String },
    #[error("reading s3://{bucket}/{key}: {reason}")]
    Read { bucket: String, key: String, reason: String },
    #[error("encoding the barrier: {0}")]
    Encode(String),
}

/// One barrier, as put.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub id: String,
    /// Before the first record was put: every write acknowledged before it lies before the
    /// barrier in its shard.
    #[serde(with = "time::serde::rfc3339")]
    pub put_at: OffsetDateTime,
    /// Shard → the barrier's sequence number there.
    pub shards: BTreeMap<String, String>,
}

/// An open shard and the first hash key of its range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OpenShard {
    id: String,
    starting_hash_key: String,
}

async fn open_shards(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<OpenShard>, BarrierError> {
    let mut shards = Vec::new();
    let mut token: Option<String> = None;
    loop {
        // With a NextToken, ListShards takes no stream name.
        let req = match &token {
            Some(t) => kinesis.list_shards().next_token(t),
            None => kinesis.list_shards().stream_name(stream),
        };
        let out = req.send().await.map_err(|e| BarrierError::List {
            stream: stream.to_string(),
            reason: crate::aws::sdk_error::describe(&e),
        })?;
        for s in out.shards() {
            let open = s.sequence_number_range().is_some_and(|r| r.ending_sequence_number().is_none());
            if open && let Some(range) = s.hash_key_range() {
                shards.push(OpenShard {
                    id: s.shard_id().to_string(),
                    starting_hash_key: range.starting_hash_key().to_string(),
                });
            }
        }
        match out.next_token() {
            Some(t) => token = Some(t.to_string()),
            None => return Ok(shards),
        }
    }
}

/// Puts a new barrier into every open shard of `stream`.
pub async fn put(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> Result<Round, BarrierError> {
    let put_at = OffsetDateTime::now_utc();
    // Unique per round: the time to the nanosecond and this process.
    let id = format!("{}-{}", put_at.unix_timestamp_nanos(), std::process::id());
    let mut round = Round { id, put_at, shards: BTreeMap::new() };
    // A few passes: a reshard between listing and putting sends a barrier into a shard other
    // than the one meant, and leaves another open shard without one.
    for _ in 0..5 {
        let open = open_shards(kinesis, stream).await?;
        let missing: Vec<&OpenShard> = open.iter().filter(|s| !round.shards.contains_key(&s.id)).collect();
        if missing.is_empty() && !open.is_empty() {
            return Ok(round);
        }
        for shard in missing {
            let record = Control::Barrier(Barrier {
                id: round.id.clone(),
                put_at_ns: i64::try_from(put_at.unix_timestamp_nanos()).unwrap_or(i64::MAX),
                shard_id: shard.id.clone(),
            })
            .encode()
            .map_err(|e| BarrierError::Encode(e.to_string()))?;
            let out = kinesis
                .put_record()
                .stream_name(stream)
                .partition_key("influx-migration-barrier")
                .explicit_hash_key(&shard.starting_hash_key)
                .data(Blob::new(record))
                .send()
                .await
                .map_err(|e| BarrierError::Put {
                    stream: stream.to_string(),
                    shard: shard.id.clone(),
                    reason: crate::aws::sdk_error::describe(&e),
                })?;
            round.shards.insert(out.shard_id().to_string(), out.sequence_number().to_string());
        }
    }
    Err(BarrierError::Resharding { stream: stream.to_string() })
}

/// Which (writer, shard) pairs of `round` have a proof of passing, read from `bucket`.
pub async fn passed(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    round: &Round,
    targets: &[Role],
) -> Result<BTreeMap<(Role, String), Passed>, BarrierError> {
    let mut found = BTreeMap::new();
    for target in targets {
        for shard in round.shards.keys() {
            let key = passed_key(*target, shard, &round.id);
            let bytes = match s3.get_object().bucket(bucket).key(&key).send().await {
                Ok(out) => out.body.collect().await.map_err(|e| BarrierError::Read {
                    bucket: bucket.into(),
                    key: key.clone(),
                    reason: e.to_string(),
                })?,
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => continue,
                Err(e) => {
                    return Err(BarrierError::Read {
                        bucket: bucket.into(),
                        key,
                        reason: crate::aws::sdk_error::describe(&e),
                    });
                }
            };
            match serde_json::from_slice::<Passed>(&bytes.into_bytes()) {
                Ok(p) => {
                    found.insert((*target, shard.clone()), p);
                }
                Err(e) => {
                    return Err(BarrierError::Read { bucket: bucket.into(), key, reason: e.to_string() });
                }
            }
        }
    }
    Ok(found)
}

/// The (writer, shard) pairs still to pass, in words: `destination writer in shardId-…`.
pub fn missing(
    round: &Round,
    targets: &[Role],
    passed: &BTreeMap<(Role, String), Passed>,
) -> BTreeSet<(Role, String)> {
    targets
        .iter()
        .flat_map(|t| round.shards.keys().map(move |s| (*t, s.clone())))
        .filter(|k| !passed.contains_key(k))
        .collect()
}

/// How often the proofs are read while waiting.
pub const POLL: Duration = Duration::from_millis(500);
