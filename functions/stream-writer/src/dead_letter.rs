//! Dead-letter storage: records the database refuses as bad data, kept whole with the reason.
//!
//! One S3 object per record, at `<prefix><target>/<shard>/<sequence number>.json`: the same
//! record always lands at the same key, so a retried batch overwrites rather than duplicates.
//! The object holds what an operator needs to understand and replay the record — the database's
//! answer, where it came from in the stream, the write's API and parameters, and the data
//! itself — but never the client's credential:
//! - a readable record: its line protocol (or, when its body is not valid gzip, the body as it
//!   was, base64) and its parameters; the credential is not stored;
//! - a record whose header cannot be read: the header as JSON without `authorization` when it is
//!   JSON at all, and the body as it was;
//! - bytes that are not a stream record: kept base64, with every `Token`/`Bearer`/`Basic`
//!   credential in them blanked.

use base64::Engine;
use serde::Serialize;
use shared::envelope::{Api, Frame, Target, WriteParams};
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
    /// `params` are the client's, not what was sent to this database: the record stopped before
    /// the mappings (a write to a bucket outside them, parked). A redrive applies the mappings
    /// in force then, so a mapping added since takes effect.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub params_as_sent_by_client: bool,
    /// The target at the source the gateway resolved the write to (when it could): what the
    /// mappings match on, whatever the client called the bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved: Option<Target>,
    pub request_id: Option<String>,
    pub received_at_ns: Option<i64>,
    pub chunk: Option<u32>,
    pub chunks: Option<u32>,
    /// The record's line protocol (when the record and its body could be read, and it is
    /// UTF-8: what an operator reads).
    pub line_protocol: Option<String>,
    /// The record's line protocol, base64, when it is not UTF-8: the gateway passes such bytes
    /// (influxd judges them), and a redrive must write exactly them, not replacement characters.
    pub line_protocol_base64: Option<String>,
    /// The record's compressed body as it was, base64, when it could not be read as line
    /// protocol (not valid gzip, or the header around it unreadable).
    pub body_gzip_base64: Option<String>,
    /// The header of a record whose header did not read as this format's, without its
    /// credential (when it is JSON at all).
    pub header_without_credential: Option<serde_json::Value>,
    /// Bytes that are not a stream record at all, base64, credentials blanked.
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
            params_as_sent_by_client: false,
            resolved: None,
            request_id: None,
            received_at_ns: None,
            chunk: None,
            chunks: None,
            line_protocol: None,
            line_protocol_base64: None,
            body_gzip_base64: None,
            header_without_credential: None,
            unreadable_record_base64: None,
        };
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        match &item.decoded {
            Ok(r) => {
                letter.request_id = Some(r.header.request_id.clone());
                letter.received_at_ns = Some(r.header.received_at_ns);
                letter.chunk = Some(r.header.chunk);
                letter.chunks = Some(r.header.chunks);
                match r.body() {
                    Ok(b) => match String::from_utf8(b) {
                        Ok(text) => letter.line_protocol = Some(text),
                        Err(e) => letter.line_protocol_base64 = Some(b64(e.as_bytes())),
                    },
                    Err(_) => letter.body_gzip_base64 = Some(b64(r.gzip_body)),
                }
                if letter.api.is_none() {
                    letter.api = Some(r.header.api);
                    letter.params = Some(r.header.params.clone());
                    letter.params_as_sent_by_client = true;
                }
                letter.resolved = r.header.target.clone();
            }
            Err(_) => match Frame::split(item.data) {
                Ok(frame) => {
                    letter.header_without_credential = header_without_credential(frame.header);
                    letter.body_gzip_base64 = Some(b64(frame.body));
                }
                Err(_) => letter.unreadable_record_base64 = Some(b64(&blank_credentials(item.data))),
            },
        }
        letter
    }
}

/// A header's JSON without its `authorization` field; `None` when it is not a JSON object.
fn header_without_credential(header: &[u8]) -> Option<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_slice(header).ok()?;
    v.as_object_mut()?.remove("authorization");
    Some(v)
}

/// `bytes` with the credential after every `Token `, `Bearer ` or `Basic ` (any case) blanked
/// with `*`: what an Authorization header's value looks like, wherever it stands.
fn blank_credentials(bytes: &[u8]) -> Vec<u8> {
    const SCHEMES: [&[u8]; 3] = [b"token ", b"bearer ", b"basic "];
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i < out.len() {
        let scheme =
            SCHEMES.iter().find(|s| out.len() - i >= s.len() && out[i..i + s.len()].eq_ignore_ascii_case(s));
        match scheme {
            Some(s) => {
                i += s.len();
                while i < out.len() && !out[i].is_ascii_whitespace() && !matches!(out[i], b'"' | b',' | b'}')
                {
                    out[i] = b'*';
                    i += 1;
                }
            }
            None => i += 1,
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_blanked_wherever_they_stand() {
        let raw = br#"garbage {"authorization":"Token s3cr3t-TOKEN=="} Bearer abc.def, basic dXNlcjpw more"#;
        let out = String::from_utf8(blank_credentials(raw)).unwrap();
        assert!(!out.contains("s3cr3t") && !out.contains("abc.def") && !out.contains("dXNlcjpw"), "{out}");
        assert!(out.contains("\"Token ***") && out.contains("Bearer ***") && out.ends_with(" more"), "{out}");
    }

    /// A dead letter turned a body that is not UTF-8 into replacement characters
    /// (`from_utf8_lossy`), so a redrive wrote U+FFFD where the client's bytes were.
    #[test]
    fn a_body_that_is_not_utf8_is_kept_byte_for_byte() {
        use shared::envelope::{Header, Record, encode, gzip};
        let body: &[u8] = b"m,host=caf\xe9 v=1 1\nm,host=ok v=2 2\n";
        let header = Header {
            api: Api::V2,
            params: WriteParams { org: Some("o".into()), bucket: Some("b".into()), ..Default::default() },
            target: None,
            authorization: Some(shared::sensitive::Sensitive::new("Token secret-token")),
            received_at_ns: 1,
            content_type: None,
            request_id: "r".into(),
            chunk: 0,
            chunks: 1,
            lines: 2,
            raw_bytes: body.len() as u64,
        };
        let data = encode(&header, &gzip(body).unwrap()).unwrap();
        let arrival = serde_json::from_value(serde_json::json!(1_700_000_000.5)).unwrap();
        let item = Item {
            index: 0,
            sequence_number: "1",
            shard_id: "shardId-000000000000",
            partition_key: "k",
            approximate_arrival: &arrival,
            data: &data,
            decoded: Record::decode(&data),
        };
        let endpoint = Endpoint { url: "http://db:8086".into(), skip_verify: false };
        let letter = DeadLetter::new(Role::Destination, &item, &endpoint, None, Some(400), "bad");
        let stored = letter.line_protocol_base64.as_deref().expect("the bytes, base64");
        assert_eq!(base64::engine::general_purpose::STANDARD.decode(stored).unwrap(), body);
        assert_eq!(letter.line_protocol, None, "no lossy copy beside the exact one");
        let json = serde_json::to_string(&letter).unwrap();
        assert!(!json.contains("secret-token"), "{json}");

        // UTF-8 stays readable as it was.
        let data = encode(&header, &gzip(b"m v=1 1\n").unwrap()).unwrap();
        let item = Item { data: &data, decoded: Record::decode(&data), ..item };
        let letter = DeadLetter::new(Role::Destination, &item, &endpoint, None, Some(400), "bad");
        assert_eq!(letter.line_protocol.as_deref(), Some("m v=1 1\n"));
        assert_eq!(letter.line_protocol_base64, None);
    }

    #[test]
    fn a_header_keeps_everything_but_its_credential() {
        let h =
            header_without_credential(br#"{"api":"v2","authorization":"Token t","request_id":"r"}"#).unwrap();
        assert_eq!(h, serde_json::json!({"api": "v2", "request_id": "r"}));
        assert_eq!(header_without_credential(b"{not json"), None);
    }
}
