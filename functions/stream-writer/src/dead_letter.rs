//! Dead-letter storage: records the database refuses as bad data, kept whole with the reason.
//!
//! One S3 object per record, at `<prefix><target>/<shard>/<sequence number>.json`: the same
//! record always lands at the same key, so a retried batch overwrites rather than duplicates.
//! The object holds what an operator needs to understand and replay the record — the database's
//! answer, where it came from in the stream, the write's API and parameters, and the line
//! protocol itself — but never the client's credential.

use base64::Engine;
use serde::Serialize;
use shared::envelope::{Api, WriteParams};
use shared::secret::{Endpoint, Role};

use crate::batch::Item;

/// An S3 client; path-style addressing when an endpoint override is set (S3-compatible servers
/// and local emulators have no per-bucket host names).
pub fn s3_client(aws: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let overridden =
        std::env::var_os("AWS_ENDPOINT_URL_S3").is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some();
    let conf = aws_sdk_s3::config::Builder::from(aws).force_path_style(overridden).build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// One refused record, as stored.
#[derive(Debug, Serialize)]
pub struct DeadLetter {
    pub target: &'static str,
    pub endpoint: String,
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub approximate_arrival: Option<String>,
    pub status: Option<u16>,
    pub reason: String,
    pub api: Option<Api>,
    pub params: Option<WriteParams>,
    pub request_id: Option<String>,
    pub received_at_ns: Option<i64>,
    pub chunk: Option<u32>,
    pub chunks: Option<u32>,
    /// The record's line protocol (when the record could be read).
    pub line_protocol: Option<String>,
    /// The raw record, base64 (only when it could not be read as a stream record).
    pub unreadable_record_base64: Option<String>,
}

impl DeadLetter {
    pub fn new(
        role: Role,
        item: &Item<'_>,
        endpoint: &Endpoint,
        target: Option<(Api, &WriteParams)>,
        status: Option<u16>,
        reason: &str,
    ) -> DeadLetter {
        let mut letter = DeadLetter {
            target: role.as_str(),
            endpoint: endpoint.host(),
            shard_id: item.shard_id.to_string(),
            sequence_number: item.sequence_number.to_string(),
            partition_key: item.partition_key.to_string(),
            approximate_arrival: serde_json::to_value(item.approximate_arrival).ok().map(|v| v.to_string()),
            status,
            reason: reason.to_string(),
            api: target.map(|t| t.0),
            params: target.map(|t| t.1.clone()),
            request_id: None,
            received_at_ns: None,
            chunk: None,
            chunks: None,
            line_protocol: None,
            unreadable_record_base64: None,
        };
        match &item.decoded {
            Ok(r) => {
                letter.request_id = Some(r.header.request_id.clone());
                letter.received_at_ns = Some(r.header.received_at_ns);
                letter.chunk = Some(r.header.chunk);
                letter.chunks = Some(r.header.chunks);
                letter.line_protocol = r.body().ok().map(|b| String::from_utf8_lossy(&b).into_owned());
                if letter.api.is_none() {
                    letter.api = Some(r.header.api);
                    letter.params = Some(r.header.params.clone());
                }
            }
            Err(_) => {
                letter.unreadable_record_base64 =
                    Some(base64::engine::general_purpose::STANDARD.encode(item.data));
            }
        }
        letter
    }
}

/// Why a dead letter could not be stored.
#[derive(Debug, thiserror::Error)]
#[error("S3 PutObject to {bucket}/{key} failed: {reason}")]
pub struct DeadLetterError {
    pub bucket: String,
    pub key: String,
    pub reason: String,
}

/// The dead-letter bucket of one target.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    s3: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    target: Role,
}

impl DeadLetters {
    pub fn new(s3: aws_sdk_s3::Client, bucket: String, prefix: String, target: Role) -> DeadLetters {
        DeadLetters { s3, bucket, prefix, target }
    }

    /// Which database this storage belongs to.
    pub fn target(&self) -> Role {
        self.target
    }

    /// The object key of a record.
    pub fn key(&self, shard_id: &str, sequence_number: &str) -> String {
        format!("{}{}/{}/{}.json", self.prefix, self.target.as_str(), shard_id, sequence_number)
    }

    /// Stores a refused record; returns its key.
    pub async fn put(&self, letter: &DeadLetter) -> Result<String, DeadLetterError> {
        let key = self.key(&letter.shard_id, &letter.sequence_number);
        let body = serde_json::to_vec_pretty(letter).unwrap_or_default();
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(body.into())
            .send()
            .await
            .map_err(|e| DeadLetterError {
                bucket: self.bucket.clone(),
                key: key.clone(),
                reason: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
            })?;
        Ok(key)
    }
}
