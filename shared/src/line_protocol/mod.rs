//! Line protocol as influxd 2.7.12 reads it: where a body's lines start and end, which lines it
//! refuses and why, and the time it gives a line without one.
//!
//! The gateway must refuse a malformed write exactly as influxd would (same status, same
//! `{"code","message"}` body, nothing stored) and must stamp lines that carry no timestamp with
//! its receive time, so that the source and the destination store the same points when the
//! stream is replayed later. "Exactly as influxd" means its *parser*, `models.ParsePointsWithPrecision`
//! (models/points.go), not the line-protocol spec: the two differ (see below), and the contract
//! is the server's behaviour. Each rule is ported in `split` (how a body is cut into lines) and
//! `point` (how a line is parsed), next to the Go function it mirrors; `storage` adds the few
//! refusals that come later in influxd but depend on the line alone.
//!
//! What a body goes through (`ParsePointsWithPrecision`, `http/points/points_parser.go`):
//! 1. it is cut into lines by `scanLine` (newlines inside quoted string values and after a
//!    backslash do not end a line);
//! 2. blank lines (spaces, tabs, NUL) and lines whose first non-blank byte is `#` are skipped;
//! 3. leading spaces/tabs/NULs are dropped, and so is a newline at the very end of the line —
//!    nothing else: a `\r` before the `\n` stays part of the line (influxd 2.7.12 refuses
//!    `cpu v=1\r` as "invalid number", and stores `cpu s="x"\r` with the string value `x"`);
//! 4. every line is parsed; **every** refused line is reported, each as
//!    `unable to parse '<line>': <reason>`, joined with `\n`, no cap; one refused line refuses
//!    the whole body: 400, code `invalid`, nothing stored;
//! 5. the storage then drops lines it cannot store (422 `unprocessable entity`, the other lines
//!    *are* stored) or fails the write (500) — see [`RejectKind`].
//!
//! Lines are slices of the body ([`Line::text`]); besides the `Vec` that [`validate`] returns and
//! small scratch buffers reused from line to line, only refused lines allocate.
//!
//! Known limit of re-sending accepted lines: influxd cuts lines with a state machine that
//! differs from its parser's, so a line that influxd accepted at the *end* of a body while its
//! cutter still thought it was inside a quoted value (e.g. `m\\ a="b v=1` with no newline after
//! it) would swallow whatever follows it if it were written before other lines. Real clients do
//! not write such lines; [`Line::write_stamped`] documents the rest.

mod go_text;
mod point;
mod precision;
mod reject;
mod split;
mod storage;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io::Write as _;

use crate::influx_error::{ErrorCode, InfluxError};

pub use precision::{InvalidPrecision, Precision, V1Precision};
pub use reject::RejectKind;
pub use split::{RawLine, SplitLines};

/// One logical line (a point) of a write body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The point's bytes as influxd's parser reads them: no leading blanks, no terminating
    /// `'\n'`; never blank, never a comment. influxd drops no `\r`, so neither do we.
    pub text: &'a [u8],
    /// 1-based number of the physical line on which it starts (quoted string fields can hold
    /// `'\n'`).
    pub number: usize,
    /// Whether the line ends with a timestamp.
    pub has_timestamp: bool,
}

impl Line<'_> {
    /// Appends the line to `out`, terminated by `'\n'`, so that influxd reads the same point from
    /// it: a line without a timestamp gets `timestamp` (in the request's precision, e.g. from
    /// [`Precision::timestamp_for`]).
    ///
    /// The timestamp is appended after the line; trailing blanks are harmless there. The one
    /// exception is a line whose timestamp scan stopped at a newline (influxd then ignores
    /// everything after it, e.g. ` m=" v=1 \nanything`): only the key and fields are written, as
    /// appending would leave the stamp unread.
    ///
    /// A line that ends with a lone backslash (`m a="x"\`, which influxd accepts: the last string
    /// value is read as `"x"\` and stored without its first and last byte) cannot take a stamp
    /// as it is: the backslash would escape the stamp's space. That last byte is never stored,
    /// so it is written as `_` instead, which ends the value the same way and reads back as the
    /// same point.
    pub fn write_stamped(&self, timestamp: i64, out: &mut Vec<u8>) {
        if self.has_timestamp {
            out.extend_from_slice(self.text);
        } else {
            let (base, bridge) = self.stamp_split();
            out.extend_from_slice(base);
            out.extend_from_slice(bridge);
            // Writing to a Vec cannot fail.
            let _ = write!(out, " {timestamp}");
        }
        out.push(b'\n');
    }

    /// For a line without a timestamp: what a stamp (` <timestamp>`) follows, in two parts: the
    /// line's bytes to keep, and the bytes between them and the stamp: `_` in place of a lone
    /// trailing backslash, which would escape the stamp's space (see [`Line::write_stamped`]),
    /// else nothing. Every writer that stamps lines goes through this.
    pub fn stamp_split(&self) -> (&[u8], &'static [u8]) {
        let base = self.stamp_base();
        let backslashes = base.iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 1 { (&base[..base.len() - 1], b"_") } else { (base, b"") }
    }

    /// For a line without a timestamp: the part a stamp (` <timestamp>`) is appended to, so that
    /// influxd reads it (see [`Line::write_stamped`]): the whole line, or only its key and fields
    /// when the timestamp scan stopped at a newline.
    pub fn stamp_base(&self) -> &[u8] {
        if memchr::memchr(b'\n', self.text).is_none() {
            return self.text;
        }
        let mut scratch = point::Scratch::default();
        match point::parse_point(self.text, Precision::Nanoseconds, &mut scratch) {
            Ok(parsed) => &self.text[..parsed.fields_end],
            Err(_) => self.text,
        }
    }
}

/// Why a line is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based number of the physical line on which the refused line starts.
    pub number: usize,
    /// The line as influxd quotes it (leading blanks and a final newline removed), lossily as
    /// UTF-8 the way Go's JSON encoder does it (each invalid byte becomes U+FFFD).
    pub text: String,
    /// influxd's reason, e.g. `missing fields`, `invalid number`,
    /// `unable to parse integer 9223372036854775808: strconv.ParseInt: parsing "9223372036854775808": value out of range`.
    pub reason: String,
    pub kind: RejectKind,
}

/// influxd's message for this line written alone: `unable to parse '<text>': <reason>` for a
/// parse error (models/points.go), `failure writing points to database: partial write: <reason>
/// dropped=1` for a 422, `unexpected error writing points to database: <reason>` for a 500.
impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            RejectKind::Parse => write!(f, "unable to parse '{}': {}", self.text, self.reason),
            RejectKind::Unprocessable => {
                write!(f, "failure writing points to database: partial write: {} dropped=1", self.reason)
            }
            RejectKind::Internal => write!(f, "unexpected error writing points to database: {}", self.reason),
        }
    }
}

impl std::error::Error for LineError {}

/// Every refused line of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    pub errors: Vec<LineError>,
}

impl BodyError {
    fn any(&self, kind: RejectKind) -> bool {
        self.errors.iter().any(|e| e.kind == kind)
    }

    /// influxd's error code: `invalid` if any line fails to parse, else `internal error` if the
    /// engine would fail, else `unprocessable entity`.
    pub fn code(&self) -> ErrorCode {
        if self.any(RejectKind::Parse) || self.errors.is_empty() {
            ErrorCode::Invalid
        } else if self.any(RejectKind::Internal) {
            ErrorCode::Internal
        } else {
            ErrorCode::UnprocessableEntity
        }
    }

    /// 400 if any line fails to parse, else 500 if any line makes the engine fail, else 422.
    pub fn status(&self) -> u16 {
        self.code().status()
    }

    /// influxd's message text:
    /// - parse errors: every refused line's `unable to parse '<line>': <reason>`, in body order,
    ///   joined with `\n` (`ParsePointsWithPrecision`); lines only the storage refuses are not
    ///   mentioned, as influxd never gets that far;
    /// - else engine failures: `unexpected error writing points to database: <first reason>`;
    /// - else `failure writing points to database: partial write: <first reason> dropped=<n>`
    ///   (`tsdb.PartialWriteError`). influxd reports per shard: when the dropped lines fall in
    ///   different shard groups (times a shard-group duration apart) it names only one shard's
    ///   first reason and count; this message counts them all.
    pub fn message(&self) -> String {
        match self.code() {
            ErrorCode::Invalid => {
                let parse = self.errors.iter().filter(|e| e.kind == RejectKind::Parse);
                parse.map(LineError::to_string).collect::<Vec<_>>().join("\n")
            }
            ErrorCode::Internal => {
                let first = self.errors.iter().find(|e| e.kind == RejectKind::Internal);
                first.map(LineError::to_string).unwrap_or_default()
            }
            _ => {
                let dropped: Vec<&LineError> =
                    self.errors.iter().filter(|e| e.kind == RejectKind::Unprocessable).collect();
                format!(
                    "failure writing points to database: partial write: {} dropped={}",
                    dropped.first().map(|e| e.reason.as_str()).unwrap_or_default(),
                    dropped.len()
                )
            }
        }
    }

    /// The error as influxd would answer it (status, code, message).
    pub fn to_influx_error(&self) -> InfluxError {
        InfluxError::new(self.code(), self.message())
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for BodyError {}

/// Iterator over a body's lines, validating each; see [`lines`].
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    split: SplitLines<'a>,
    precision: Precision,
    scratch: point::Scratch,
}

/// Iterates over a body's points, skipping blank lines and comments, each validated as influxd
/// 2.7.12 would validate it with this precision (the precision decides which timestamps are in
/// range).
pub fn lines(body: &[u8], precision: Precision) -> Lines<'_> {
    Lines { split: SplitLines::new(body), precision, scratch: point::Scratch::default() }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Result<Line<'a>, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let raw = self.split.next()?;
            let block = raw.bytes;
            // ParsePointsWithPrecision: skip empty and all-blank lines and comments, drop the
            // leading blanks and one final newline, parse the rest.
            let start = point::skip_whitespace(block, 0);
            if start >= block.len() || block[start] == b'#' {
                continue;
            }
            let end = if block.ends_with(b"\n") { block.len() - 1 } else { block.len() };
            let text = &block[start..end];
            let refused = match point::parse_point(text, self.precision, &mut self.scratch) {
                Err(reason) => Some((RejectKind::Parse, reason.render(text))),
                Ok(parsed) => match storage::check(text, &parsed, self.precision) {
                    None => {
                        return Some(Ok(Line {
                            text,
                            number: raw.number,
                            has_timestamp: parsed.timestamp.is_some(),
                        }));
                    }
                    refused => refused,
                },
            };
            let (kind, reason) = refused?;
            return Some(Err(LineError {
                number: raw.number,
                text: go_text::lossy(text),
                reason: go_text::lossy(&reason),
                kind,
            }));
        }
    }
}

/// Validates a whole body as influxd does: every line, or every refused line.
pub fn validate(body: &[u8], precision: Precision) -> Result<Vec<Line<'_>>, BodyError> {
    let mut accepted = Vec::with_capacity(memchr::memchr_iter(b'\n', body).count() + 1);
    let mut errors = Vec::new();
    for line in lines(body, precision) {
        match line {
            Ok(line) if errors.is_empty() => accepted.push(line),
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(accepted) } else { Err(BodyError { errors }) }
}

/// Why a body's timestamps could not be expressed in another unit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RescaleError {
    /// Line `number` is not one influxd's parser accepts, or has no timestamp: what influxd makes of
    /// it depends on the request (its precision, its time), so it is sent as it came.
    #[error("line {number} cannot be rewritten: influxd would refuse it or give it the server's time")]
    Line { number: usize },
    /// `to` is coarser than `from`: a timestamp would lose digits.
    #[error("{from} timestamps cannot be written in {to} without losing digits")]
    Coarser { from: Precision, to: Precision },
}

/// The body with every timestamp rewritten from `from` units to `to` units (`to` no coarser), so
/// that a write with `precision=to` stores exactly the points a write of `body` with
/// `precision=from` stores. Each line keeps its bytes but the timestamp digits and ends with
/// `'\n'`; blank lines and comments are left out. Every line must carry a timestamp (a stream
/// record's lines always do: the gateway stamps the others) and be one influxd accepts.
pub fn rescale(body: &[u8], from: Precision, to: Precision) -> Result<Vec<u8>, RescaleError> {
    if from.nanos_per_unit() % to.nanos_per_unit() != 0 {
        return Err(RescaleError::Coarser { from, to });
    }
    let factor = from.nanos_per_unit() / to.nanos_per_unit();
    let mut out = Vec::with_capacity(body.len() + body.len() / 4);
    let mut scratch = point::Scratch::default();
    for raw in SplitLines::new(body) {
        let block = raw.bytes;
        let start = point::skip_whitespace(block, 0);
        if start >= block.len() || block[start] == b'#' {
            continue;
        }
        let end = if block.ends_with(b"\n") { block.len() - 1 } else { block.len() };
        let text = &block[start..end];
        let refused = RescaleError::Line { number: raw.number };
        // influxd's parser: it finds the timestamp and checks its range. What the storage
        // refuses later does not depend on the timestamp's unit: the rewritten line is refused
        // the same way.
        let parsed = point::parse_point(text, from, &mut scratch).map_err(|_| refused.clone())?;
        let Some((ts_start, ts_end)) = parsed.timestamp else { return Err(refused) };
        let ts = go_text::parse_int(&text[ts_start..ts_end]).map_err(|_| refused.clone())?;
        // In range: parse_point checked ts * from's nanoseconds, and to's unit divides them.
        let scaled = ts * factor;
        out.extend_from_slice(&text[..ts_start]);
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{scaled}");
        out.extend_from_slice(&text[ts_end..]);
        out.push(b'\n');
    }
    Ok(out)
}

/// Cuts a body into lines exactly where influxd cuts it, without validating: blank lines and
/// comments included, never inside a quoted string field. For splitting a body that is too
/// large: a piece made of whole lines, each followed by the `'\n'` that ended it in the body,
/// is read by influxd exactly as those lines were read in the whole body (the cutter's state
/// starts afresh at each line).
pub fn split_lines(body: &[u8]) -> SplitLines<'_> {
    SplitLines::new(body)
}
