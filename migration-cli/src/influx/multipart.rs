//! A streaming reader for `multipart/mixed` bodies (RFC 2046 §5.1).
//!
//! `GET /api/v2/backup/metadata` answers one multipart body holding the whole KV store (bolt),
//! the SQL store (sqlite) and the bucket manifest (influxdb `http/backup_service.go`). The KV part
//! alone can be hundreds of megabytes, so parts are read chunk by chunk and never held whole.
//!
//! Layout: optional preamble, then for each part `--<boundary>\r\n`, header lines, an empty line
//! and the content; each content ends at `\r\n--<boundary>`; the last delimiter is followed by
//! `--`. Go's `mime/multipart` writer (what influxd uses) writes exactly that.

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};

/// What went wrong while reading a multipart body.
#[derive(Debug, thiserror::Error)]
pub enum MultipartError<E> {
    #[error("malformed multipart body: {0}")]
    Malformed(String),
    #[error(transparent)]
    Source(E),
}

/// The headers of one part that matter here.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartHeaders {
    /// `name` from `Content-Disposition: attachment; name="kv"`.
    pub name: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// Just after a delimiter: either `--` (the end) or a new part's headers follow.
    AfterDelimiter,
    /// Inside a part's content.
    Body,
    Done,
}

/// Reads parts from a stream of chunks.
pub struct MultipartReader<S> {
    inner: S,
    buf: BytesMut,
    /// `\r\n--<boundary>`.
    delimiter: Vec<u8>,
    state: State,
    eof: bool,
}

/// Headers bigger than this mean the body is not what we think it is.
const MAX_HEADER_BYTES: usize = 16 * 1024;

impl<S, E> MultipartReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    pub fn new(inner: S, boundary: &str) -> Self {
        let mut buf = BytesMut::new();
        // A body may start with the delimiter without a preceding CRLF; prepending one lets a
        // single search pattern find every delimiter.
        buf.extend_from_slice(b"\r\n");
        MultipartReader {
            inner,
            buf,
            delimiter: format!("\r\n--{boundary}").into_bytes(),
            state: State::Preamble,
            eof: false,
        }
    }

    /// Reads more input; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool, MultipartError<E>> {
        if self.eof {
            return Ok(false);
        }
        match self.inner.next().await {
            Some(Ok(chunk)) => {
                self.buf.extend_from_slice(&chunk);
                Ok(true)
            }
            Some(Err(e)) => Err(MultipartError::Source(e)),
            None => {
                self.eof = true;
                Ok(false)
            }
        }
    }

    fn find(&self, needle: &[u8]) -> Option<usize> {
        memchr::memmem::find(&self.buf, needle)
    }

    /// Moves to the next part and returns its headers; `None` after the last part. Whatever is
    /// left of the current part is skipped.
    pub async fn next_part(&mut self) -> Result<Option<PartHeaders>, MultipartError<E>> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Body => while self.read_chunk().await?.is_some() {},
                State::Preamble => match self.find(&self.delimiter.clone()) {
                    Some(i) => {
                        self.buf.advance(i + self.delimiter.len());
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        // Keep a tail that could be the start of the delimiter.
                        let keep = self.delimiter.len();
                        if self.buf.len() > keep {
                            let drop = self.buf.len() - keep;
                            self.buf.advance(drop);
                        }
                        if !self.fill().await? {
                            return Err(MultipartError::Malformed("no boundary found".into()));
                        }
                    }
                },
                State::AfterDelimiter => {
                    while self.buf.len() < 2 {
                        if !self.fill().await? {
                            return Err(MultipartError::Malformed("body ends after a boundary".into()));
                        }
                    }
                    if &self.buf[..2] == b"--" {
                        self.state = State::Done;
                        return Ok(None);
                    }
                    let end = loop {
                        if let Some(i) = self.find(b"\r\n\r\n") {
                            break i;
                        }
                        if self.buf.len() > MAX_HEADER_BYTES {
                            return Err(MultipartError::Malformed("part headers too long".into()));
                        }
                        if !self.fill().await? {
                            return Err(MultipartError::Malformed("body ends inside part headers".into()));
                        }
                    };
                    let raw = self.buf.split_to(end + 4);
                    let headers = parse_headers(&raw);
                    self.state = State::Body;
                    return Ok(Some(headers));
                }
            }
        }
    }

    /// The next chunk of the current part's content; `None` at its end.
    pub async fn read_chunk(&mut self) -> Result<Option<Bytes>, MultipartError<E>> {
        if self.state != State::Body {
            return Ok(None);
        }
        loop {
            if let Some(i) = self.find(&self.delimiter.clone()) {
                if i > 0 {
                    return Ok(Some(self.buf.split_to(i).freeze()));
                }
                self.buf.advance(self.delimiter.len());
                self.state = State::AfterDelimiter;
                return Ok(None);
            }
            // No delimiter yet: everything except a possible delimiter prefix is content.
            let safe = self.buf.len().saturating_sub(self.delimiter.len() - 1);
            if safe > 0 {
                return Ok(Some(self.buf.split_to(safe).freeze()));
            }
            if !self.fill().await? {
                return Err(MultipartError::Malformed("body ends inside a part".into()));
            }
        }
    }
}

fn parse_headers(raw: &[u8]) -> PartHeaders {
    let text = String::from_utf8_lossy(raw);
    let mut h = PartHeaders::default();
    for line in text.split("\r\n") {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if key.trim().eq_ignore_ascii_case("content-type") {
            h.content_type = Some(value.to_string());
        } else if key.trim().eq_ignore_ascii_case("content-disposition") {
            h.name = disposition_name(value);
        }
    }
    h
}

/// `name` parameter of a `Content-Disposition` value, quoted or not.
fn disposition_name(value: &str) -> Option<String> {
    for param in value.split(';').skip(1) {
        let Some((k, v)) = param.split_once('=') else { continue };
        if k.trim().eq_ignore_ascii_case("name") {
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v);
            return Some(v.replace("\\\"", "\"").replace("\\\\", "\\"));
        }
    }
    None
}

/// The `boundary` parameter of a `multipart/*` content type.
pub fn boundary_of(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim();
        Some(v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v).to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = MultipartReader<futures::stream::Iter<std::vec::IntoIter<Result<Bytes, std::io::Error>>>>;

    fn reader(body: &[u8], chunk: usize, boundary: &str) -> R {
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            body.chunks(chunk).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        MultipartReader::new(futures::stream::iter(chunks), boundary)
    }

    async fn read_all(r: &mut R) -> Vec<(PartHeaders, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(h) = r.next_part().await.unwrap() {
            let mut content = Vec::new();
            while let Some(c) = r.read_chunk().await.unwrap() {
                content.extend_from_slice(&c);
            }
            out.push((h, content));
        }
        out
    }

    /// The shape Go's mime/multipart writer produces for /api/v2/backup/metadata.
    fn go_body(boundary: &str, kv: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: attachment; name=\"kv\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        b.extend_from_slice(kv);
        b.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Disposition: attachment; name=\"sql\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        b.extend_from_slice(b"SQLITE\r\n--not-a-boundary");
        b.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Disposition: attachment; name=\"buckets\"\r\nContent-Type: application/json; charset=utf-8\r\n\r\n").as_bytes());
        b.extend_from_slice(b"[{\"bucketName\":\"b\"}]\n");
        b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        b
    }

    #[tokio::test]
    async fn reads_every_part_whatever_the_chunk_size() {
        let boundary = "0f1e2d3c4b5a";
        // Binary content holding CR, LF, dashes and a near-boundary.
        let kv: Vec<u8> =
            (0..70_000u32).map(|i| (i % 256) as u8).chain(b"\r\n--0f1e2d3c4b".iter().copied()).collect();
        let body = go_body(boundary, &kv);
        for chunk in [1, 3, 17, 1000, body.len()] {
            let mut r = reader(&body, chunk, boundary);
            let parts = read_all(&mut r).await;
            assert_eq!(parts.len(), 3, "chunk size {chunk}");
            assert_eq!(parts[0].0.name.as_deref(), Some("kv"));
            assert_eq!(parts[0].1, kv, "chunk size {chunk}");
            assert_eq!(parts[1].0.name.as_deref(), Some("sql"));
            assert_eq!(parts[1].1, b"SQLITE\r\n--not-a-boundary");
            assert_eq!(parts[2].0.name.as_deref(), Some("buckets"));
            assert_eq!(parts[2].0.content_type.as_deref(), Some("application/json; charset=utf-8"));
            assert_eq!(parts[2].1, b"[{\"bucketName\":\"b\"}]\n");
        }
    }

    #[tokio::test]
    async fn skipping_a_part_moves_to_the_next() {
        let body = go_body("xyz", b"0123456789");
        let mut r = reader(&body, 4, "xyz");
        assert_eq!(r.next_part().await.unwrap().unwrap().name.as_deref(), Some("kv"));
        assert_eq!(r.next_part().await.unwrap().unwrap().name.as_deref(), Some("sql"));
        assert_eq!(r.next_part().await.unwrap().unwrap().name.as_deref(), Some("buckets"));
        assert!(r.next_part().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_cut_body_is_an_error() {
        let body = go_body("xyz", b"0123456789");
        let mut r = reader(&body[..body.len() / 2], 5, "xyz");
        let mut failed = false;
        loop {
            match r.next_part().await {
                Ok(Some(_)) => loop {
                    match r.read_chunk().await {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                },
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
            if failed {
                break;
            }
        }
        assert!(failed);
    }

    #[test]
    fn boundary_is_read_from_the_content_type() {
        assert_eq!(boundary_of("multipart/mixed; boundary=abc123").as_deref(), Some("abc123"));
        assert_eq!(boundary_of("multipart/mixed; boundary=\"a b\"").as_deref(), Some("a b"));
        assert_eq!(boundary_of("application/json"), None);
    }
}
