//! The stream record format: what kinesis-writer puts into Kinesis and the stream writers read.
//!
//! # Layout (format version 1)
//!
//! ```text
//! offset  size  field
//! 0       3     magic  b"ILM"  (InfluxDB Live Migration)
//! 3       1     format version (1)
//! 4       4     header length H, unsigned, big-endian
//! 8       H     header: UTF-8 JSON, see [`Header`]
//! 8+H     ..    body: one gzip member holding whole lines of line protocol, each ending in '\n'
//! ```
//!
//! The header carries everything that changes what a write means — which API (`v2`
//! `/api/v2/write` or v1 `/write`), `org`/`orgID`/`bucket`/`precision` (v2) or `db`/`rp`/
//! `precision` (v1) — plus the client's credential (the writers need it; the stream is encrypted
//! at rest), the gateway's receive time, the content type, the request ID and the chunk position.
//! A reader rejects any other magic or version, so the format can change without a replay ever
//! misreading a record.
//!
//! # Size
//!
//! Kinesis limits a record to 1 MiB counting the data blob *and* the partition key
//! (<https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecord.html>), and moto does
//! not enforce it for `PutRecord`, so [`Chunker`] enforces it here: a body is cut at line
//! boundaries into chunks whose *compressed* record stays within the limit. Lines are whole units
//! (a quoted string field may hold a newline; the line protocol scanner hands over complete lines),
//! so a cut never falls inside a point. A chunk also holds at most [`MAX_RAW_CHUNK`] uncompressed
//! bytes, so that one replayed write stays small enough for the database to take in one go.
//!
//! The gzip body lets the stream writer concatenate several records' bodies into one request
//! without recompressing: a sequence of gzip members is itself a valid gzip stream (RFC 1952 §2.2),
//! and influxd's reader accepts it.

use std::io::{Read, Write};

use bytes::Bytes;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use crate::sensitive::Sensitive;

/// First bytes of every record.
pub const MAGIC: &[u8; 3] = b"ILM";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Kinesis' record limit: data blob plus partition key.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// The most uncompressed line protocol one record carries.
pub const MAX_RAW_CHUNK: usize = 8 * 1024 * 1024;
/// Kinesis' limit on a partition key, in characters.
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

const PREFIX_LEN: usize = 8;
/// gzip header (10) + trailer (8).
const GZIP_OVERHEAD: usize = 18;

/// Why a record could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the record is {len} bytes, too short for the {PREFIX_LEN}-byte prefix")]
    Truncated { len: usize },
    #[error("the record does not start with the ILM magic: not a stream record of this product")]
    BadMagic,
    #[error("stream record format version {0} is not supported (this build reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u8),
    #[error("the header length {header} runs past the end of the {len}-byte record")]
    HeaderOutOfBounds { header: usize, len: usize },
    #[error("the record header is not valid: {0}")]
    BadHeader(serde_json::Error),
    #[error("the record body is not valid gzip: {0}")]
    BadBody(std::io::Error),
    #[error("line {line} alone compresses to more than the {limit}-byte record limit")]
    LineTooLarge { line: usize, limit: usize },
    #[error("the partition key and header leave no room for data within {0} bytes")]
    NoRoom(usize),
    #[error("compressing the record body failed: {0}")]
    Compress(std::io::Error),
}

/// Which write API a record replays to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `POST /api/v2/write`
    V2,
    /// `POST /write` (InfluxDB 1.x compatibility API)
    V1,
}

impl Api {
    /// The write path on the database.
    pub fn path(self) -> &'static str {
        match self {
            Api::V2 => "/api/v2/write",
            Api::V1 => "/write",
        }
    }
}

/// The request parameters that change what a write means. Only the ones the client sent are set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WriteParams {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub org: Option<String>,
    #[serde(rename = "orgID", skip_serializing_if = "Option::is_none", default)]
    pub org_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub precision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub db: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rp: Option<String>,
}

impl WriteParams {
    /// The bucket as the client named it: v2 `bucket`, or v1 `db/rp` (`db` alone without `rp`).
    pub fn bucket_name(&self) -> Option<String> {
        match (&self.bucket, &self.db, &self.rp) {
            (Some(b), _, _) => Some(b.clone()),
            (None, Some(db), Some(rp)) => Some(format!("{db}/{rp}")),
            (None, Some(db), None) => Some(db.clone()),
            _ => None,
        }
    }

    /// The parameters as query pairs, in a fixed order.
    pub fn query_pairs(&self) -> Vec<(&'static str, &str)> {
        let mut q = Vec::with_capacity(6);
        let fields: [(&'static str, &Option<String>); 6] = [
            ("org", &self.org),
            ("orgID", &self.org_id),
            ("bucket", &self.bucket),
            ("db", &self.db),
            ("rp", &self.rp),
            ("precision", &self.precision),
        ];
        for (name, value) in fields {
            if let Some(v) = value {
                q.push((name, v.as_str()));
            }
        }
        q
    }
}

/// Where a write lands at the source, as influxd resolves it: the org (by `org`, `orgID`, or
/// for v1 the only org) and the bucket (by name or ID, or for v1 through the DBRP mapping of
/// `db` and `rp`, the default one when `rp` is absent), with IDs and names. The gateway sets it
/// when the source answers its questions; the destination writer's mappings match on it,
/// whatever the client called the bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub org_id: String,
    pub org: String,
    pub bucket_id: String,
    pub bucket: String,
    /// v1: the retention policy of the DBRP mapping the write resolved through.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rp: Option<String>,
}

/// The record header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub api: Api,
    pub params: WriteParams,
    /// The canonical target, when the gateway could resolve it (absent in records of older
    /// gateways: readers ignore fields they do not know, so this needs no new format version).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<Target>,
    /// The client's `Authorization` value (already restored from `X-Original-Authorization`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub authorization: Option<Sensitive>,
    /// When the gateway received the request, nanoseconds since the Unix epoch.
    pub received_at_ns: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub content_type: Option<String>,
    /// The gateway request ID, shared by all chunks of one request.
    pub request_id: String,
    /// This chunk's position (0-based) and the number of chunks the request became.
    pub chunk: u32,
    pub chunks: u32,
    /// Lines and uncompressed bytes in this record's body.
    pub lines: u32,
    pub raw_bytes: u64,
}

/// A decoded record: its header and its (still compressed) body.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    pub header: Header,
    /// One gzip member of complete lines.
    pub gzip_body: &'a [u8],
}

/// A record's frame, read without interpreting its header: what is kept of a record whose
/// header cannot be read (its body, and where the header was).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub version: u8,
    /// The header's bytes (JSON in this format version; may hold a credential).
    pub header: &'a [u8],
    /// The compressed body.
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Splits a record into version, header and body: the magic and the header length must
    /// hold; the version and the header's content are not checked.
    pub fn split(data: &'a [u8]) -> Result<Frame<'a>, EnvelopeError> {
        if data.len() < PREFIX_LEN {
            return Err(EnvelopeError::Truncated { len: data.len() });
        }
        if &data[0..3] != MAGIC {
            return Err(EnvelopeError::BadMagic);
        }
        let header_len = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
        let end = PREFIX_LEN
            .checked_add(header_len)
            .filter(|e| *e <= data.len())
            .ok_or(EnvelopeError::HeaderOutOfBounds { header: header_len, len: data.len() })?;
        Ok(Frame { version: data[3], header: &data[PREFIX_LEN..end], body: &data[end..] })
    }
}

impl<'a> Record<'a> {
    /// Reads a record; never panics, whatever the bytes.
    pub fn decode(data: &'a [u8]) -> Result<Record<'a>, EnvelopeError> {
        let frame = Frame::split(data)?;
        if frame.version != FORMAT_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(frame.version));
        }
        let header: Header = serde_json::from_slice(frame.header).map_err(EnvelopeError::BadHeader)?;
        Ok(Record { header, gzip_body: frame.body })
    }

    /// Whether the body is valid gzip, checked by decompressing it to nowhere (no allocation):
    /// a body a database cannot read must be set aside, not retried forever (influxd answers 500
    /// to a corrupt gzip stream).
    pub fn check_body(&self) -> Result<(), EnvelopeError> {
        std::io::copy(&mut MultiGzDecoder::new(self.gzip_body), &mut std::io::sink())
            .map(|_| ())
            .map_err(EnvelopeError::BadBody)
    }

    /// The body's line protocol, uncompressed.
    pub fn body(&self) -> Result<Vec<u8>, EnvelopeError> {
        gunzip(self.gzip_body, self.header.raw_bytes.min(MAX_RAW_CHUNK as u64) as usize)
    }
}

/// Decompresses gzip (one or several members), with a capacity hint.
pub fn gunzip(data: &[u8], hint: usize) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::with_capacity(hint);
    MultiGzDecoder::new(data).read_to_end(&mut out).map_err(EnvelopeError::BadBody)?;
    Ok(out)
}

/// Compresses `data` as one gzip member at the level the gateway uses.
pub fn gzip(data: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let mut e = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), Compression::fast());
    e.write_all(data).map_err(EnvelopeError::Compress)?;
    e.finish().map_err(EnvelopeError::Compress)
}

/// An upper bound of what `n` bytes can become inside a deflate stream (stored blocks are the worst
/// case: 5 bytes of block header per 16 KiB, zlib's `deflateBound` plus slack).
/// Staged bytes handed to the encoder at once. Measured with the `pipeline` bench: one deflate
/// call per line (and one per stamp) cost about as much as the compression itself.
const STAGE_BYTES: usize = 32 * 1024;

fn deflate_bound(n: usize) -> usize {
    n + 5 * (n / 16_383 + 1) + 16
}

/// Builds the records of one request: feed it complete lines, get records back, each within the
/// size limit.
pub struct Chunker {
    header: Header,
    /// Bytes available for the gzip body of each record.
    body_limit: usize,
    raw_limit: usize,
    done: Vec<(Vec<u8>, u32, u64)>,
    current: Option<GzEncoder<Vec<u8>>>,
    /// Lines of the current chunk not yet handed to the encoder: each write into a `GzEncoder`
    /// costs a deflate call, so lines go in by the block (see [`STAGE_BYTES`]).
    staged: Vec<u8>,
    lines: u32,
    raw: u64,
    /// Uncompressed bytes (staged ones included) since the encoder's output length was last exact.
    pending: usize,
    line_number: usize,
}

impl Chunker {
    /// A chunker for records of `header` (its chunk fields are filled in by [`Chunker::finish`]),
    /// each at most `max_record` bytes together with a partition key of `partition_key_len` bytes.
    pub fn new(
        header: Header,
        max_record: usize,
        partition_key_len: usize,
    ) -> Result<Chunker, EnvelopeError> {
        // Size the header as it will be with the widest chunk numbers, so that filling them in
        // can only make it smaller.
        let mut widest = header.clone();
        widest.chunk = u32::MAX;
        widest.chunks = u32::MAX;
        widest.lines = u32::MAX;
        widest.raw_bytes = u64::MAX;
        let header_len = serde_json::to_vec(&widest).map_err(EnvelopeError::BadHeader)?.len();
        let overhead = PREFIX_LEN + header_len + partition_key_len + GZIP_OVERHEAD;
        let body_limit =
            max_record.checked_sub(overhead).filter(|l| *l > 64).ok_or(EnvelopeError::NoRoom(max_record))?;
        Ok(Chunker {
            header,
            body_limit,
            raw_limit: MAX_RAW_CHUNK,
            done: Vec::new(),
            current: None,
            staged: Vec::with_capacity(STAGE_BYTES + 4096),
            lines: 0,
            raw: 0,
            pending: 0,
            line_number: 0,
        })
    }

    /// Lowers the uncompressed bytes per record (tests use it to force several chunks).
    pub fn with_raw_limit(mut self, raw_limit: usize) -> Chunker {
        self.raw_limit = raw_limit.max(1);
        self
    }

    /// Adds one complete line. `line` must not contain the terminating newline; `suffix` (for
    /// example `b" 1700000000000000000"`, a stamped timestamp) is appended before it.
    pub fn push_line(&mut self, line: &[u8], suffix: &[u8]) -> Result<(), EnvelopeError> {
        self.line_number += 1;
        let len = line.len() + suffix.len() + 1;
        if self.current.is_some() {
            let out_len = self.current.as_ref().map(|e| e.get_ref().len()).unwrap_or(0);
            let fits = |out: usize, pending: usize| out + deflate_bound(pending + len) <= self.body_limit;
            let raw_ok = self.raw + len as u64 <= self.raw_limit as u64;
            if !raw_ok {
                self.close_chunk()?;
            } else if !fits(out_len, self.pending) {
                // The estimate is pessimistic; make it exact and look again.
                let enc = self.current.as_mut().expect("checked above");
                enc.write_all(&self.staged).map_err(EnvelopeError::Compress)?;
                self.staged.clear();
                enc.flush().map_err(EnvelopeError::Compress)?;
                self.pending = 0;
                let out_len = enc.get_ref().len();
                if !fits(out_len, 0) {
                    self.close_chunk()?;
                }
            }
        }
        if self.current.is_none() {
            if deflate_bound(len) > self.body_limit {
                // A single line that cannot fit even on its own, compressed, would never fit.
                let compressed = gzip_line(line, suffix)?;
                if compressed.len() > self.body_limit + GZIP_OVERHEAD {
                    return Err(EnvelopeError::LineTooLarge {
                        line: self.line_number,
                        limit: self.body_limit,
                    });
                }
            }
            self.current = Some(GzEncoder::new(Vec::with_capacity(64 * 1024), Compression::fast()));
        }
        self.staged.extend_from_slice(line);
        self.staged.extend_from_slice(suffix);
        self.staged.push(b'\n');
        if self.staged.len() >= STAGE_BYTES {
            let enc = self.current.as_mut().expect("created above");
            enc.write_all(&self.staged).map_err(EnvelopeError::Compress)?;
            self.staged.clear();
        }
        self.pending += len;
        self.lines += 1;
        self.raw += len as u64;
        Ok(())
    }

    fn close_chunk(&mut self) -> Result<(), EnvelopeError> {
        if let Some(mut enc) = self.current.take() {
            enc.write_all(&self.staged).map_err(EnvelopeError::Compress)?;
            self.staged.clear();
            let body = enc.finish().map_err(EnvelopeError::Compress)?;
            self.done.push((body, self.lines, self.raw));
        }
        self.lines = 0;
        self.raw = 0;
        self.pending = 0;
        Ok(())
    }

    /// Finishes and returns the encoded records, in order. A request with no lines gives none.
    pub fn finish(mut self) -> Result<Vec<Bytes>, EnvelopeError> {
        self.close_chunk()?;
        let chunks = self.done.len() as u32;
        let mut out = Vec::with_capacity(self.done.len());
        for (i, (body, lines, raw)) in self.done.into_iter().enumerate() {
            let mut header = self.header.clone();
            header.chunk = i as u32;
            header.chunks = chunks;
            header.lines = lines;
            header.raw_bytes = raw;
            out.push(encode(&header, &body)?);
        }
        Ok(out)
    }
}

fn gzip_line(line: &[u8], suffix: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let mut v = Vec::with_capacity(line.len() + suffix.len() + 1);
    v.extend_from_slice(line);
    v.extend_from_slice(suffix);
    v.push(b'\n');
    gzip(&v)
}

/// Encodes one record from a header and an already-compressed body.
pub fn encode(header: &Header, gzip_body: &[u8]) -> Result<Bytes, EnvelopeError> {
    let h = serde_json::to_vec(header).map_err(EnvelopeError::BadHeader)?;
    let mut out = Vec::with_capacity(PREFIX_LEN + h.len() + gzip_body.len());
    out.extend_from_slice(MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&(h.len() as u32).to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(gzip_body);
    Ok(Bytes::from(out))
}

/// How records are spread over shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKeyMode {
    /// A random key per request (default): load spreads evenly over shards; order holds only
    /// within a request (its chunks share the key).
    Random,
    /// One key per destination bucket (`org/bucket`, or `db/rp` for v1): all writes to a bucket
    /// keep their order, at the cost of one shard per busy bucket.
    PerBucket,
}

impl PartitionKeyMode {
    /// Reads `random` or `bucket` (the `PARTITION_KEY_MODE` setting).
    pub fn parse(s: &str) -> Option<PartitionKeyMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "random" | "" => Some(PartitionKeyMode::Random),
            "bucket" | "per-bucket" | "per_bucket" => Some(PartitionKeyMode::PerBucket),
            _ => None,
        }
    }

    /// The partition key for a request with these parameters.
    pub fn key(self, api: Api, params: &WriteParams) -> String {
        match self {
            PartitionKeyMode::Random => format!("{:032x}", rand::random::<u128>()),
            PartitionKeyMode::PerBucket => {
                let key = match api {
                    Api::V2 => format!(
                        "v2/{}/{}",
                        params.org_id.as_deref().or(params.org.as_deref()).unwrap_or(""),
                        params.bucket.as_deref().unwrap_or("")
                    ),
                    Api::V1 => format!(
                        "v1/{}/{}",
                        params.db.as_deref().unwrap_or(""),
                        params.rp.as_deref().unwrap_or("")
                    ),
                };
                if key.chars().count() <= MAX_PARTITION_KEY_CHARS {
                    key
                } else {
                    format!("h/{:016x}", fnv1a(key.as_bytes()))
                }
            }
        }
    }
}

/// FNV-1a, 64 bit: a stable hash for over-long partition keys (stable across builds, unlike
/// `std`'s hasher).
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> Header {
        Header {
            api: Api::V2,
            params: WriteParams {
                org: Some("my-org".into()),
                bucket: Some("b".into()),
                precision: Some("ns".into()),
                ..Default::default()
            },
            target: None,
            authorization: Some(Sensitive::new("Token secret")),
            received_at_ns: 1_700_000_000_123_456_789,
            content_type: Some("text/plain; charset=utf-8".into()),
            request_id: "req".into(),
            chunk: 0,
            chunks: 0,
            lines: 0,
            raw_bytes: 0,
        }
    }

    fn records_of(lines: &[Vec<u8>], max_record: usize, key_len: usize) -> Vec<Bytes> {
        let mut c = Chunker::new(header(), max_record, key_len).unwrap();
        for l in lines {
            c.push_line(l, b"").unwrap();
        }
        c.finish().unwrap()
    }

    fn joined_bodies(records: &[Bytes]) -> Vec<u8> {
        let mut all = Vec::new();
        for r in records {
            all.extend(Record::decode(r).unwrap().body().unwrap());
        }
        all
    }

    #[test]
    fn round_trip_of_one_small_record() {
        let recs = records_of(&[b"m,t=a f=1i 1".to_vec(), b"m f=\"x y\" 2".to_vec()], MAX_RECORD_BYTES, 32);
        assert_eq!(recs.len(), 1);
        let r = Record::decode(&recs[0]).unwrap();
        assert_eq!(r.header.chunk, 0);
        assert_eq!(r.header.chunks, 1);
        assert_eq!(r.header.lines, 2);
        assert_eq!(r.header.authorization.as_ref().unwrap().expose(), "Token secret");
        assert_eq!(r.body().unwrap(), b"m,t=a f=1i 1\nm f=\"x y\" 2\n");
    }

    #[test]
    fn incompressible_body_over_the_limit_is_split_within_the_limit_at_line_boundaries() {
        // Random hex strings compress to about half: 3 MiB of them needs several records.
        let lines: Vec<Vec<u8>> = (0..3000)
            .map(|i| {
                let s: String =
                    (0..1000).map(|_| char::from(b"0123456789abcdef"[rand::random_range(0..16)])).collect();
                format!("m,i={i} s=\"{s}\" {i}").into_bytes()
            })
            .collect();
        let recs = records_of(&lines, MAX_RECORD_BYTES, 32);
        assert!(recs.len() >= 2, "expected a split, got {} record(s)", recs.len());
        for (i, r) in recs.iter().enumerate() {
            assert!(r.len() + 32 <= MAX_RECORD_BYTES, "record {i} is {} bytes", r.len());
            let d = Record::decode(r).unwrap();
            assert_eq!(d.header.chunk as usize, i);
            assert_eq!(d.header.chunks as usize, recs.len());
            assert!(d.body().unwrap().ends_with(b"\n"));
        }
        let mut expected = Vec::new();
        for l in &lines {
            expected.extend_from_slice(l);
            expected.push(b'\n');
        }
        assert_eq!(joined_bodies(&recs), expected);
    }

    #[test]
    fn raw_limit_forces_chunks() {
        let lines: Vec<Vec<u8>> = (0..100).map(|i| format!("m f={i}i {i}").into_bytes()).collect();
        let mut c = Chunker::new(header(), MAX_RECORD_BYTES, 10).unwrap().with_raw_limit(100);
        for l in &lines {
            c.push_line(l, b"").unwrap();
        }
        let recs = c.finish().unwrap();
        assert!(recs.len() > 10);
        for r in &recs {
            assert!(Record::decode(r).unwrap().header.raw_bytes <= 100);
        }
    }

    #[test]
    fn concatenated_bodies_are_one_valid_gzip_stream() {
        let a = records_of(&[b"a f=1 1".to_vec()], MAX_RECORD_BYTES, 1);
        let b = records_of(&[b"b f=2 2".to_vec()], MAX_RECORD_BYTES, 1);
        let mut cat = Record::decode(&a[0]).unwrap().gzip_body.to_vec();
        cat.extend_from_slice(Record::decode(&b[0]).unwrap().gzip_body);
        assert_eq!(gunzip(&cat, 0).unwrap(), b"a f=1 1\nb f=2 2\n");
    }

    #[test]
    fn suffix_is_appended_before_the_newline() {
        let mut c = Chunker::new(header(), MAX_RECORD_BYTES, 1).unwrap();
        c.push_line(b"m f=1", b" 42").unwrap();
        let recs = c.finish().unwrap();
        assert_eq!(Record::decode(&recs[0]).unwrap().body().unwrap(), b"m f=1 42\n");
    }

    #[test]
    fn a_line_that_cannot_fit_is_refused() {
        let s: String =
            (0..300_000).map(|_| char::from(b"0123456789abcdef"[rand::random_range(0..16)])).collect();
        let mut c = Chunker::new(header(), 100_000, 10).unwrap();
        let err = c.push_line(format!("m s=\"{s}\"").as_bytes(), b"").unwrap_err();
        assert!(matches!(err, EnvelopeError::LineTooLarge { line: 1, .. }), "{err}");
    }

    #[test]
    fn decode_rejects_foreign_and_future_records() {
        assert!(matches!(Record::decode(b"abc"), Err(EnvelopeError::Truncated { .. })));
        assert!(matches!(Record::decode(b"XYZ\x01\0\0\0\0"), Err(EnvelopeError::BadMagic)));
        assert!(matches!(Record::decode(b"ILM\x02\0\0\0\0"), Err(EnvelopeError::UnsupportedVersion(2))));
        assert!(matches!(
            Record::decode(b"ILM\x01\0\0\0\xff{}"),
            Err(EnvelopeError::HeaderOutOfBounds { .. })
        ));
        assert!(matches!(Record::decode(b"ILM\x01\0\0\0\x02{}"), Err(EnvelopeError::BadHeader(_))));
    }

    #[test]
    fn header_json_never_shows_the_token_in_debug() {
        let h = header();
        assert!(!format!("{h:?}").contains("secret"));
    }

    #[test]
    fn partition_keys() {
        let p = WriteParams { org: Some("o".into()), bucket: Some("b".into()), ..Default::default() };
        assert_eq!(PartitionKeyMode::PerBucket.key(Api::V2, &p), "v2/o/b");
        let a = PartitionKeyMode::Random.key(Api::V2, &p);
        let b = PartitionKeyMode::Random.key(Api::V2, &p);
        assert_ne!(a, b);
        assert!(a.len() <= MAX_PARTITION_KEY_CHARS);
        let long = WriteParams { bucket: Some("x".repeat(400)), ..Default::default() };
        let k = PartitionKeyMode::PerBucket.key(Api::V2, &long);
        assert!(k.len() <= MAX_PARTITION_KEY_CHARS);
        assert_eq!(k, PartitionKeyMode::PerBucket.key(Api::V2, &long));
        assert_eq!(PartitionKeyMode::parse("bucket"), Some(PartitionKeyMode::PerBucket));
        assert_eq!(PartitionKeyMode::parse("nonsense"), None);
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Record::decode(&data).map(|r| r.body());
        }

        #[test]
        fn decode_never_panics_on_mutated_records(flip in 0usize..400, byte in any::<u8>()) {
            let recs = records_of(&[b"m,t=a f=1i 1".to_vec()], MAX_RECORD_BYTES, 1);
            let mut data = recs[0].to_vec();
            let i = flip % data.len();
            data[i] = byte;
            let _ = Record::decode(&data).map(|r| r.body());
        }

        #[test]
        fn round_trip_keeps_every_line_in_order(
            lines in proptest::collection::vec("[a-z]{1,8}(,[a-z]{1,4}=[a-z0-9]{1,6}){0,3} [a-z]{1,5}=(\"[ -~]{0,40}\"|[0-9]{1,6}i|t) [0-9]{1,19}", 1..60),
            max_record in 600usize..4000,
        ) {
            let lines: Vec<Vec<u8>> = lines.into_iter().map(String::into_bytes).collect();
            let mut c = Chunker::new(header(), max_record, 8).unwrap();
            let mut expected = Vec::new();
            for l in &lines {
                c.push_line(l, b"").unwrap();
                expected.extend_from_slice(l);
                expected.push(b'\n');
            }
            let recs = c.finish().unwrap();
            for r in &recs {
                prop_assert!(r.len() + 8 <= max_record);
            }
            prop_assert_eq!(joined_bodies(&recs), expected);
        }
    }
}
