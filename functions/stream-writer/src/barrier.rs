//! Passing a barrier (`shared::barrier`): once every record before it in its shard is durably in
//! this writer's database, the writer records so in the dead-letter bucket, where `cutover`
//! reads it.
//!
//! The replay is sequential within a batch and a batch stops at its first record not durably
//! written, so reaching a barrier step means everything before it is done. Recording it is not
//! best effort: a barrier whose proof could not be stored stops the batch there (Lambda retries
//! it), because `cutover` waits for that proof and nothing else.

use shared::barrier::{Barrier, Passed, passed_key};
use shared::secret::Role;

use crate::stall::now_ms;

/// Where this writer records the barriers it passed.
pub struct BarrierBook {
    s3: aws_sdk_s3::Client,
    bucket: String,
    target: Role,
}

impl BarrierBook {
    pub fn new(s3: aws_sdk_s3::Client, bucket: String, target: Role) -> BarrierBook {
        BarrierBook { s3, bucket, target }
    }

    /// Records that this writer passed `barrier`, read from `shard_id` at `sequence_number`.
    /// Returns the key written.
    pub async fn passed(
        &self,
        barrier: &Barrier,
        shard_id: &str,
        sequence_number: &str,
    ) -> Result<String, String> {
        let proof = Passed {
            target: self.target,
            id: barrier.id.clone(),
            shard_id: shard_id.to_string(),
            sequence_number: sequence_number.to_string(),
            put_at_ns: barrier.put_at_ns,
            passed_at_ms: now_ms(),
        };
        let key = passed_key(self.target, shard_id, &barrier.id);
        let body = serde_json::to_vec(&proof).map_err(|e| e.to_string())?;
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(body.into())
            .send()
            .await
            .map_err(|e| {
                format!("s3://{}/{key}: {}", self.bucket, aws_sdk_s3::error::DisplayErrorContext(&e))
            })?;
        Ok(key)
    }
}
