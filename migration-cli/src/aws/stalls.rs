//! The writers' stall records and the operator's park rules, in the dead-letter bucket
//! (`shared::stall` has the layout).

use aws_sdk_s3::Client;
use shared::secret::Role;
use shared::stall::{COUNT_PREFIX, PARK_PREFIX, ParkRule, STALL_PREFIX, SourceOnly, Stall, park_key};

/// Why the stall records could not be read or a rule written.
#[derive(Debug, thiserror::Error)]
pub enum StallError {
    #[error("reading s3://{bucket}/{key}: {reason}")]
    Read { bucket: String, key: String, reason: String },
    #[error("writing s3://{bucket}/{key}: {reason}")]
    Write { bucket: String, key: String, reason: String },
}

/// Every object's key under `prefix`.
pub async fn keys(s3: &Client, bucket: &str, prefix: &str) -> Result<Vec<String>, StallError> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = s3.list_objects_v2().bucket(bucket).prefix(prefix);
        if let Some(t) = &token {
            req = req.continuation_token(t);
        }
        let out = req.send().await.map_err(|e| StallError::Read {
            bucket: bucket.into(),
            key: format!("{prefix}*"),
            reason: crate::aws::sdk_error::describe(&e),
        })?;
        keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        match out.next_continuation_token() {
            Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_string()),
            _ => return Ok(keys),
        }
    }
}

/// What holds back acknowledged writes from `target` now: each shard its writer is stopped at
/// (the stall in words) and each park rule still sending that shard's records to dead-letter
/// storage. Empty when nothing does.
pub async fn pending(s3: &Client, bucket: &str, target: Role) -> Result<Vec<String>, StallError> {
    let now = now_ms();
    let mut found: Vec<String> = stalls(s3, bucket)
        .await?
        .iter()
        .filter(|s| s.target == target)
        .map(|s| format!("stalled: {}", describe(s, None, now)))
        .collect();
    for rule in rules(s3, bucket).await?.iter().filter(|r| r.target == target && now < r.expires_at_ms) {
        found.push(format!(
            "park rule on shard {} active until {}: its records failing with {} go to dead-letter storage ({}); \
             `influx-migration park --release --target {} --shard {}` once the cause is fixed",
            rule.shard_id,
            rfc3339_ms(rule.expires_at_ms),
            rule.status.map(|s| s.to_string()).unwrap_or_else(|| "no status".into()),
            rule.note,
            target.as_str(),
            rule.shard_id
        ));
    }
    Ok(found)
}

/// The destination's dead letters that no redrive resolved (`redrive` moves each one that lands
/// under `redriven/`): records acknowledged to a client that the destination does not hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unresolved {
    /// Dead-lettered by the destination writer only (the source took the record): each key,
    /// with the reason for the first few ([`NAMED`]).
    pub destination_only: Vec<(String, Option<String>)>,
    /// Dead-lettered by both writers (same shard and sequence number): data neither database
    /// holds, so not a difference between them.
    pub both: usize,
}

/// How many dead letters a refusal names with their reason.
pub const NAMED: usize = 5;

/// The destination's unresolved dead letters under `prefix` (the writers' `DEAD_LETTER_PREFIX`),
/// each paired with the source's dead letter of the same record, if any.
pub async fn unresolved(s3: &Client, bucket: &str, prefix: &str) -> Result<Unresolved, StallError> {
    let dst_prefix = format!("{prefix}{}/", Role::Destination.as_str());
    let src_prefix = format!("{prefix}{}/", Role::Source.as_str());
    let (dst, src) = tokio::join!(keys(s3, bucket, &dst_prefix), keys(s3, bucket, &src_prefix));
    let src: std::collections::BTreeSet<String> =
        src?.into_iter().filter_map(|k| k.strip_prefix(&src_prefix).map(str::to_string)).collect();
    let mut found = Unresolved::default();
    for key in dst? {
        let rest = key.strip_prefix(&dst_prefix).unwrap_or(&key);
        if src.contains(rest) {
            found.both += 1;
            continue;
        }
        let reason = if found.destination_only.len() < NAMED {
            get(s3, bucket, &key).await?.and_then(|b| {
                serde_json::from_slice::<serde_json::Value>(&b).ok()?["reason"].as_str().map(str::to_string)
            })
        } else {
            None
        };
        found.destination_only.push((key, reason));
    }
    Ok(found)
}

/// One object's bytes; `None` when it does not exist.
pub async fn get(s3: &Client, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StallError> {
    let err = |reason: String| StallError::Read { bucket: bucket.into(), key: key.into(), reason };
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => {
            let bytes = out.body.collect().await.map_err(|e| err(e.to_string()))?;
            Ok(Some(bytes.into_bytes().to_vec()))
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(err(crate::aws::sdk_error::describe(&e))),
    }
}

/// Every stall record of both writers (unreadable ones are skipped with a warning).
pub async fn stalls(s3: &Client, bucket: &str) -> Result<Vec<Stall>, StallError> {
    read_all(s3, bucket, STALL_PREFIX, "a stall record").await
}

/// Every park rule (expired ones included: the caller says so).
pub async fn rules(s3: &Client, bucket: &str) -> Result<Vec<ParkRule>, StallError> {
    read_all(s3, bucket, PARK_PREFIX, "a park rule").await
}

/// Every object under `prefix` read as `T`; one that does not read is skipped with a warning.
async fn read_all<T: serde::de::DeserializeOwned>(
    s3: &Client,
    bucket: &str,
    prefix: &str,
    what: &str,
) -> Result<Vec<T>, StallError> {
    let mut out = Vec::new();
    for key in keys(s3, bucket, prefix).await? {
        if let Some(bytes) = get(s3, bucket, &key).await? {
            match serde_json::from_slice::<T>(&bytes) {
                Ok(v) => out.push(v),
                Err(e) => tracing::warn!("s3://{bucket}/{key} is not {what}: {e}"),
            }
        }
    }
    Ok(out)
}

/// Per bucket, the records the destination writer left to the source alone (`"unmapped":
/// "source-only"`), summed over its shards.
pub async fn source_only(
    s3: &Client,
    bucket: &str,
) -> Result<std::collections::BTreeMap<String, u64>, StallError> {
    let mut total = std::collections::BTreeMap::new();
    let prefix = format!("{COUNT_PREFIX}{}/source-only/", Role::Destination.as_str());
    for key in keys(s3, bucket, &prefix).await? {
        if let Some(bytes) = get(s3, bucket, &key).await?
            && let Ok(count) = serde_json::from_slice::<SourceOnly>(&bytes)
        {
            for (b, n) in count.by_bucket {
                *total.entry(b).or_insert(0u64) += n;
            }
        }
    }
    Ok(total)
}

/// The counts in words: `3 record(s) to a, 1 to b`.
pub fn describe_source_only(counts: &std::collections::BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts.iter().map(|(b, n)| format!("{n} to {b}")).collect();
    format!(
        "write records the destination writer left to the source alone (buckets outside mappings.buckets, \"unmapped\": \"source-only\"): {}",
        parts.join(", ")
    )
}

/// Writes a park rule (replacing the shard's previous one).
pub async fn put_rule(s3: &Client, bucket: &str, rule: &ParkRule) -> Result<(), StallError> {
    let key = park_key(rule.target, &rule.shard_id);
    let body = serde_json::to_vec_pretty(rule).unwrap_or_default();
    s3.put_object()
        .bucket(bucket)
        .key(&key)
        .content_type("application/json")
        .body(body.into())
        .send()
        .await
        .map_err(|e| StallError::Write {
            bucket: bucket.into(),
            key,
            reason: crate::aws::sdk_error::describe(&e),
        })?;
    Ok(())
}

/// Removes a shard's park rule (no error when there is none).
pub async fn delete_rule(s3: &Client, bucket: &str, target: Role, shard_id: &str) -> Result<(), StallError> {
    let key = park_key(target, shard_id);
    s3.delete_object().bucket(bucket).key(&key).send().await.map_err(|e| StallError::Write {
        bucket: bucket.into(),
        key,
        reason: crate::aws::sdk_error::describe(&e),
    })?;
    Ok(())
}

pub use shared::stall::now_ms;

/// A time in ms since the epoch as RFC 3339.
pub fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// One line about a stall: shard, since, why, the bucket, and the expiry headroom.
pub fn describe(stall: &Stall, retention_hours: Option<u32>, now: i64) -> String {
    let mut line = format!(
        "{} writer, {}: stopped at record {} since {} ({}, {} failed batch(es)); {} {}",
        stall.target.as_str(),
        stall.shard_id,
        stall.sequence_number,
        rfc3339_ms(stall.since_ms),
        crate::output::human_duration(std::time::Duration::from_millis(stall.stalled_ms(now) as u64)),
        stall.failures,
        stall.class.as_str(),
        stall.reason,
    );
    if let Some(b) = &stall.bucket {
        line.push_str(&format!("; bucket {b}"));
    }
    match retention_hours.and_then(|h| stall.expiry_headroom_ms(h, now)) {
        Some(left) if left > 0 => line.push_str(&format!(
            "; the record expires from the stream in {}",
            crate::output::human_duration(std::time::Duration::from_millis(left as u64))
        )),
        Some(_) => line.push_str("; the record has EXPIRED from the stream"),
        None => {}
    }
    line
}
