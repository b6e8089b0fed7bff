//! A streamed answer: influxd's body relayed chunk by chunk as it arrives, and ended the way
//! influxd ends an answer that fails part-way.
//!
//! Streaming keeps the router's memory flat whatever the answer's size: a chunk is handed to the
//! Lambda runtime, whose body channel holds one chunk at a time (it waits until the previous one
//! was sent), so a slow client slows the read from influxd instead of filling memory.
//!
//! # When the answer breaks off
//!
//! The status (200) and headers are gone by then, so the break can only be told in the body. A
//! client must never take a cut answer for a whole one, so the stream ends the way influxd ends an
//! answer whose query fails after its first bytes:
//! - **Flux, annotated CSV** (`flux/csv` `EncodeError`): a blank line, then an error table — the
//!   annotations the answer uses (`#datatype,string,string`, `#group,true,true`, `#default,,`),
//!   the header `,error,reference` and the row `,<message>,`. Client libraries and the influx CLI
//!   raise it as the query's error.
//! - **InfluxQL, CSV** (`influxql/query` `csvFormatter`): the records `error` and `<message>`.
//! - **InfluxQL, JSON**: a line `{"error":"<message>"}`, the shape of influxd's query errors (a
//!   JSON answer cut mid-document is invalid JSON anyway; a chunked answer gets the error line
//!   its client reads).
//!
//! Rows of a CSV answer are relayed whole: the bytes after the last complete row (quote-aware:
//! a quoted value may hold a line break) wait for the rest of their row, so on a break only whole
//! rows precede the error, as with influxd. A compressed or binary answer (gzip, msgpack) has no
//! place for an error: it ends where it broke off, which its decoder reports (a gzip stream
//! without its trailer, a msgpack value cut short).
//!
//! The same ending is used when the answer outgrows the streamed-response limit (Lambda's 200 MB)
//! or the invocation's time runs out, each with its own message.

use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use shared::influx_client::error_chain;

use crate::route::Route;

/// A streamed body as the Lambda runtime takes it. It never yields an error: `lambda_runtime`
/// 1.5 writes a stream error into the body as text (its "error trailer"), which would reach the
/// client as part of the answer; a break is told in the body's own format instead (see above).
pub type Body = Pin<Box<dyn Stream<Item = Result<Bytes, Infallible>> + Send>>;

/// A body of `bytes` (nothing when empty).
pub fn whole(bytes: Bytes) -> Body {
    if bytes.is_empty() {
        Box::pin(futures::stream::empty())
    } else {
        Box::pin(futures::stream::once(async move { Ok(bytes) }))
    }
}

/// How a streamed answer ended, for its log line.
#[derive(Debug)]
pub enum End<'a> {
    /// influxd's answer, all of it.
    Complete,
    /// Ended early, with influxd's error for the shape.
    Broke(&'a Break),
    /// The client (the Lambda runtime) stopped reading before the end.
    Abandoned,
}

/// The limits of one streamed answer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// When the answer must be complete (the invocation's deadline, or the upstream timeout).
    pub deadline: tokio::time::Instant,
    /// The time from the start of the read to `deadline`, for the message.
    pub after: Duration,
    /// The most body bytes a streamed response may carry.
    pub max_bytes: usize,
}

/// Room kept below `max_bytes` for the error that ends an oversized answer.
const ENDING_ROOM: usize = 1024;

/// influxd's answer body relayed as it arrives, ended as [`Relay`] says; `on_end` hears once how
/// it ended.
pub fn relay_body<F>(response: reqwest::Response, relay: Relay, limits: Limits, on_end: F) -> Body
where
    F: FnOnce(&Relay, End<'_>) + Send + 'static,
{
    let state = Relaying { response: Some(response), relay, limits, on_end: Some(on_end) };
    Box::pin(futures::stream::unfold(state, |mut state| async move {
        state.next().await.map(|bytes| (Ok(bytes), state))
    }))
}

struct Relaying<F: FnOnce(&Relay, End<'_>)> {
    response: Option<reqwest::Response>,
    relay: Relay,
    limits: Limits,
    on_end: Option<F>,
}

impl<F: FnOnce(&Relay, End<'_>)> Relaying<F> {
    /// The next bytes for the client; `None` once the answer has ended.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            let response = self.response.as_mut()?;
            let why = match tokio::time::timeout_at(self.limits.deadline, response.chunk()).await {
                Ok(Ok(Some(chunk))) => {
                    let size = self.relay.relayed() + self.relay.held() + chunk.len();
                    if size > self.limits.max_bytes.saturating_sub(ENDING_ROOM) {
                        Break::TooLarge { limit: self.limits.max_bytes }
                    } else {
                        let out = self.relay.accept(chunk);
                        if out.is_empty() {
                            continue;
                        }
                        return Some(out);
                    }
                }
                Ok(Ok(None)) => {
                    self.response = None;
                    let rest = self.relay.finish();
                    self.end(End::Complete);
                    return (!rest.is_empty()).then_some(rest);
                }
                Ok(Err(e)) if e.is_timeout() => Break::Deadline { after: self.limits.after },
                // Never the URL: InfluxQL's `p` parameter may hold a token.
                Ok(Err(e)) => Break::Upstream { reason: error_chain(&e.without_url()) },
                Err(_elapsed) => Break::Deadline { after: self.limits.after },
            };
            // Dropping the response closes the connection: influxd stops the query.
            self.response = None;
            let tail = self.relay.broken(&why);
            self.end(End::Broke(&why));
            return (!tail.is_empty()).then_some(tail);
        }
    }

    fn end(&mut self, how: End<'_>) {
        if let Some(f) = self.on_end.take() {
            f(&self.relay, how);
        }
    }
}

impl<F: FnOnce(&Relay, End<'_>)> Drop for Relaying<F> {
    fn drop(&mut self) {
        self.end(End::Abandoned);
    }
}

/// What the body is, as far as ending it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Flux's annotated CSV (`POST /api/v2/query`, `text/csv`).
    FluxCsv,
    /// InfluxQL's CSV (`/query`, `application/csv`).
    InfluxqlCsv,
    /// InfluxQL's JSON (`/query`, `application/json`), one document or one per line (chunked).
    InfluxqlJson,
    /// Compressed, binary, or not a query answer: nothing can be appended.
    Opaque,
}

impl Shape {
    /// The shape of a `route`'s answer with these headers.
    pub fn of(route: Route, headers: &HeaderMap) -> Shape {
        if headers.contains_key(CONTENT_ENCODING) {
            return Shape::Opaque;
        }
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
            .unwrap_or_default();
        match (route, content_type.as_str()) {
            (Route::FluxQuery, "text/csv" | "application/csv") => Shape::FluxCsv,
            (Route::InfluxQl, "application/csv" | "text/csv") => Shape::InfluxqlCsv,
            (Route::InfluxQl, "application/json") => Shape::InfluxqlJson,
            _ => Shape::Opaque,
        }
    }

    fn is_csv(self) -> bool {
        matches!(self, Shape::FluxCsv | Shape::InfluxqlCsv)
    }
}

/// Why a streamed answer ended before influxd's did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The database's answer broke off (connection reset or closed mid-body).
    Upstream { reason: String },
    /// The invocation's time (or `UPSTREAM_TIMEOUT_SECONDS`) ran out.
    Deadline { after: Duration },
    /// The answer outgrew the streamed-response limit.
    TooLarge { limit: usize },
}

impl Break {
    /// What the client reads in the error (never the query text or a token).
    pub fn message(&self, relayed: usize) -> String {
        match self {
            Break::Upstream { .. } => format!(
                "the database behind this gateway broke off its answer after {relayed} bytes; this answer is \
                 incomplete; run the query again"
            ),
            Break::Deadline { after } => format!(
                "the answer did not complete within {:.0} s, the longest a read through this gateway may \
                 take; this answer is incomplete; narrow the time range or aggregate",
                after.as_secs_f64()
            ),
            Break::TooLarge { limit } => format!(
                "the answer is larger than the {limit} bytes a response through this gateway can carry; \
                 this answer is incomplete; narrow the time range, select fewer series or fields, or \
                 aggregate (e.g. aggregateWindow() in Flux, GROUP BY time() in InfluxQL)"
            ),
        }
    }

    /// A short name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Break::Upstream { .. } => "upstream broke off",
            Break::Deadline { .. } => "deadline",
            Break::TooLarge { .. } => "too large",
        }
    }
}

/// The body relayed so far and what is needed to end it: whole CSV rows, the Flux annotations in
/// use. Pure (no I/O): [`Relay::accept`] takes each chunk as it arrives, [`Relay::finish`] or
/// [`Relay::broken`] the end.
#[derive(Debug)]
pub struct Relay {
    shape: Shape,
    /// The start of a row still waiting for its end (CSV shapes only).
    held: BytesMut,
    /// Inside a quoted CSV value at the end of what was scanned.
    in_quotes: bool,
    /// Flux: the annotation names of the first table, in order, while they are being read.
    annotations: Vec<String>,
    annotations_done: bool,
    relayed: usize,
    last: Option<u8>,
}

impl Relay {
    pub fn new(shape: Shape) -> Relay {
        Relay {
            shape,
            held: BytesMut::new(),
            in_quotes: false,
            annotations: Vec::new(),
            annotations_done: shape != Shape::FluxCsv,
            relayed: 0,
            last: None,
        }
    }

    /// Bytes handed to the client so far.
    pub fn relayed(&self) -> usize {
        self.relayed
    }

    /// Bytes received and not yet relayed.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// The part of `chunk` (with what was held) that can go to the client now: all of it, or for
    /// CSV up to the end of the last complete row. Empty when the chunk ends no row.
    pub fn accept(&mut self, chunk: Bytes) -> Bytes {
        let out = if self.shape.is_csv() {
            let scanned_from = self.held.len();
            self.held.extend_from_slice(&chunk);
            match self.last_row_end(scanned_from) {
                Some(end) => self.held.split_to(end).freeze(),
                None => Bytes::new(),
            }
        } else {
            chunk
        };
        self.note(&out);
        out
    }

    /// The rest at the answer's normal end (a last row without its line break).
    pub fn finish(&mut self) -> Bytes {
        let rest = self.held.split().freeze();
        self.note(&rest);
        rest
    }

    /// The end of an answer that broke off: the held partial row is dropped, and influxd's
    /// error for the shape follows (nothing for an opaque body).
    pub fn broken(&mut self, why: &Break) -> Bytes {
        self.held.clear();
        let message = why.message(self.relayed);
        let text = match self.shape {
            Shape::Opaque => return Bytes::new(),
            Shape::FluxCsv => {
                let mut t = String::new();
                if self.relayed > 0 {
                    t.push_str(self.line_end("\r\n"));
                    t.push_str("\r\n");
                }
                for a in &self.annotations {
                    t.push_str(match a.as_str() {
                        "datatype" => "#datatype,string,string\r\n",
                        "group" => "#group,true,true\r\n",
                        "default" => "#default,,\r\n",
                        _ => "",
                    });
                }
                t.push_str(",error,reference\r\n");
                t.push_str(&format!(",{},\r\n", csv_field(&message)));
                t
            }
            Shape::InfluxqlCsv => {
                format!(
                    "{}error\n{}\n",
                    if self.relayed > 0 { self.line_end("\n") } else { "" },
                    csv_field(&message)
                )
            }
            Shape::InfluxqlJson => {
                let line = serde_json::json!({ "error": message }).to_string();
                format!("{}{line}\n", if self.relayed > 0 { self.line_end("\n") } else { "" })
            }
        };
        let out = Bytes::from(text);
        self.note(&out);
        out
    }

    /// `eol` when the last relayed byte did not end a line.
    fn line_end(&self, eol: &'static str) -> &'static str {
        if self.last == Some(b'\n') { "" } else { eol }
    }

    fn note(&mut self, out: &[u8]) {
        if out.is_empty() {
            return;
        }
        self.relayed += out.len();
        self.last = out.last().copied();
        if !self.annotations_done {
            for line in out.split(|&b| b == b'\n') {
                match line.strip_prefix(b"#") {
                    Some(rest) => {
                        let name = rest.split(|&b| b == b',').next().unwrap_or_default();
                        self.annotations.push(String::from_utf8_lossy(name).into_owned());
                    }
                    None if line.is_empty() || line == b"\r" => {}
                    None => {
                        self.annotations_done = true;
                        break;
                    }
                }
            }
        }
    }

    /// The index just past the last line break outside quotes in `held`, scanning from `from`.
    fn last_row_end(&mut self, from: usize) -> Option<usize> {
        let mut end = None;
        for (i, &b) in self.held[from..].iter().enumerate() {
            match b {
                // A doubled quote inside a quoted value toggles twice: no net change.
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => end = Some(from + i + 1),
                _ => {}
            }
        }
        end
    }
}

/// A CSV field as Go's `encoding/csv` writes it: quoted (quotes doubled) when it holds a comma,
/// a quote or a line break, or starts with a space.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) || s.starts_with([' ', '\t']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    const FLUX: &str = "#group,false,false,true,false\r\n#datatype,string,long,string,double\r\n#default,_result,,,\r\n,result,table,host,_value\r\n,,0,\"a,\"\"b\"\"\nc\",1.5\r\n,,0,d,2.5\r\n";

    /// Feeds `text` in chunks of `size` and returns what was relayed.
    fn relay_in_chunks(relay: &mut Relay, text: &str, size: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for c in text.as_bytes().chunks(size) {
            out.extend_from_slice(&relay.accept(Bytes::copy_from_slice(c)));
        }
        out
    }

    #[test]
    fn shapes_follow_the_route_and_the_content_type() {
        let csv = headers(&[("content-type", "text/csv; charset=utf-8")]);
        assert_eq!(Shape::of(Route::FluxQuery, &csv), Shape::FluxCsv);
        let gz = headers(&[("content-type", "text/csv; charset=utf-8"), ("content-encoding", "gzip")]);
        assert_eq!(Shape::of(Route::FluxQuery, &gz), Shape::Opaque);
        assert_eq!(
            Shape::of(Route::InfluxQl, &headers(&[("content-type", "application/json")])),
            Shape::InfluxqlJson
        );
        assert_eq!(
            Shape::of(Route::InfluxQl, &headers(&[("content-type", "application/csv")])),
            Shape::InfluxqlCsv
        );
        assert_eq!(
            Shape::of(Route::InfluxQl, &headers(&[("content-type", "application/x-msgpack")])),
            Shape::Opaque
        );
        assert_eq!(
            Shape::of(Route::Buckets, &headers(&[("content-type", "application/json")])),
            Shape::Opaque
        );
    }

    #[test]
    fn a_whole_answer_is_relayed_byte_for_byte_whatever_the_chunking() {
        for size in [1, 2, 3, 7, 64, 4096] {
            for shape in [Shape::FluxCsv, Shape::Opaque] {
                let mut relay = Relay::new(shape);
                let mut out = relay_in_chunks(&mut relay, FLUX, size);
                out.extend_from_slice(&relay.finish());
                assert_eq!(out, FLUX.as_bytes(), "chunks of {size}, {shape:?}");
                assert_eq!(relay.relayed(), FLUX.len());
            }
        }
        // A last row without its line break still arrives.
        let mut relay = Relay::new(Shape::InfluxqlCsv);
        let mut out = relay_in_chunks(&mut relay, "name,tags,time\ncpu,,1", 4);
        out.extend_from_slice(&relay.finish());
        assert_eq!(out, b"name,tags,time\ncpu,,1");
    }

    #[test]
    fn csv_rows_are_relayed_whole_and_a_quoted_line_break_does_not_end_a_row() {
        let mut relay = Relay::new(Shape::FluxCsv);
        // Up to the middle of the quoted value with a line break in it.
        let cut = FLUX.find("c\",1.5").unwrap();
        let out = relay_in_chunks(&mut relay, &FLUX[..cut], 5);
        assert!(out.ends_with(b",result,table,host,_value\r\n"), "{}", String::from_utf8_lossy(&out));
        assert_eq!(relay.held(), cut - out.len());
    }

    #[test]
    fn a_flux_answer_that_breaks_off_ends_with_influxds_error_table() {
        let mut relay = Relay::new(Shape::FluxCsv);
        let cut = FLUX.find(",,0,d").unwrap() + 3;
        let mut out = relay_in_chunks(&mut relay, &FLUX[..cut], 10);
        let why = Break::Upstream { reason: "connection reset".into() };
        out.extend_from_slice(&relay.broken(&why));
        let text = String::from_utf8(out).unwrap();
        let rows_end = FLUX.find(",,0,d").unwrap();
        let expected = format!(
            "{}\r\n#group,true,true\r\n#datatype,string,string\r\n#default,,\r\n,error,reference\r\n,the database behind this gateway broke off its answer after {rows_end} bytes; this answer is incomplete; run the query again,\r\n",
            &FLUX[..rows_end]
        );
        assert_eq!(text, expected);
        assert!(!text.contains("connection reset"), "the upstream's reason stays in the log");
    }

    #[test]
    fn a_flux_answer_without_annotations_or_bytes_gets_a_bare_error_table() {
        let mut relay = Relay::new(Shape::FluxCsv);
        let out = relay.broken(&Break::Deadline { after: Duration::from_secs(899) });
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            text.starts_with(",error,reference\r\n,\"the answer did not complete within 899 s,"),
            "{text}"
        );
        let mut relay = Relay::new(Shape::FluxCsv);
        relay_in_chunks(&mut relay, ",result,table,_value\r\n,,0,1\r\n", 8);
        let text = String::from_utf8(relay.broken(&Break::TooLarge { limit: 100 }).to_vec()).unwrap();
        assert_eq!(
            text,
            "\r\n,error,reference\r\n,\"the answer is larger than the 100 bytes a response through this gateway can carry; this answer is incomplete; narrow the time range, select fewer series or fields, or aggregate (e.g. aggregateWindow() in Flux, GROUP BY time() in InfluxQL)\",\r\n"
        );
    }

    #[test]
    fn influxql_answers_end_with_influxds_error_records() {
        let mut relay = Relay::new(Shape::InfluxqlJson);
        let mut out =
            relay_in_chunks(&mut relay, "{\"results\":[{\"statement_id\":0,\"series\":[", 9).to_vec();
        out.extend_from_slice(&relay.broken(&Break::Upstream { reason: "eof".into() }));
        let text = String::from_utf8(out).unwrap();
        let (_, last) = text.trim_end().rsplit_once('\n').unwrap();
        let error: serde_json::Value = serde_json::from_str(last).unwrap();
        assert!(error["error"].as_str().unwrap().starts_with("the database behind this gateway broke off"));

        let mut relay = Relay::new(Shape::InfluxqlCsv);
        let mut out = relay_in_chunks(&mut relay, "name,tags,time,v\ncpu,,1,2\ncpu,,3", 6);
        out.extend_from_slice(&relay.broken(&Break::Upstream { reason: "eof".into() }));
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("name,tags,time,v\ncpu,,1,2\nerror\nthe database behind this gateway broke off"),
            "{text}"
        );
        assert!(!text.contains("cpu,,3"), "the partial row is dropped");
    }

    #[test]
    fn an_opaque_answer_ends_where_it_broke_off() {
        let mut relay = Relay::new(Shape::Opaque);
        assert_eq!(&relay.accept(Bytes::from_static(b"\x1f\x8b\x08")).to_vec(), b"\x1f\x8b\x08");
        assert!(relay.broken(&Break::Upstream { reason: "eof".into() }).is_empty());
    }
}
