//! Which time windows of a measurement differ between source and destination, by content.
//!
//! Counting (`crate::compare::counts`) passes when a value changed, or when one point is missing and
//! another is extra. A digest does not: every stored value — its series (measurement and tags),
//! field, time and value with its type (`1i`, `1u` and `1` differ) — is written as its
//! line-protocol line (`flux_csv::point`, the same encoding the CSV migration writes), hashed
//! (SHA-256, the first 128 bits), and the hashes of a window are added (wrapping): the sum does
//! not depend on the order influxd returns rows in, and a changed, missing or extra value
//! changes it. Each window keeps its count beside its sum.
//!
//! The rows are streamed through the CLI (`from |> range |> filter`, with `_start` and `_stop`
//! dropped: they repeat on every row, and leaving them out nearly halves the time influxd spends
//! writing the answer, 0.98 s against 1.78 s for a million points), never held: a window's state
//! is its count and its sum. Hashing in Flux instead (`contrib/qxip/hash` in a `map`) took 28 s
//! for the same million points. The measurement's time span
//! is split into [`SPLIT`] windows and read once from each side (both at once); a window whose
//! count or sum differs is split again and only it is read again, until a window is at most
//! [`FINEST`] wide or [`MAX_DEPTH`] splits deep. The result names those smallest windows.

use std::collections::VecDeque;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::compare::query::{CompareError, stream_rows};
use crate::compare::window::{MAX_TIME, MIN_TIME, TimeWindow};
use crate::influx::annotated_csv::{CsvError, Row, parse_time_ns};
use crate::influx::api::{Bucket, InfluxApi};
use crate::influx::raw_point;

/// Windows per split.
pub const SPLIT: i64 = 16;
/// A window this narrow is not split further.
pub const FINEST: Duration = Duration::from_secs(1);
/// Splits at the most (16^4 = 65,536 windows of the measurement's span).
pub const MAX_DEPTH: u32 = 4;
/// Differing windows `verify` reports at the most per measurement (the rest are counted).
pub const MAX_REPORTED: usize = 50;

/// The count and order-independent content sum of the values in a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowDigest {
    pub count: u64,
    pub sum: u128,
}

impl WindowDigest {
    /// Adds one value, given as its line-protocol line.
    pub fn add(&mut self, line: &[u8]) {
        let hash = Sha256::digest(line);
        let mut first = [0u8; 16];
        first.copy_from_slice(&hash[..16]);
        self.count += 1;
        self.sum = self.sum.wrapping_add(u128::from_le_bytes(first));
    }
}

/// A window that differs: `[start_ns, stop_ns)`, and the values each side has in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WindowDiff {
    pub start: String,
    pub stop: String,
    #[serde(skip)]
    pub start_ns: i64,
    #[serde(skip)]
    pub stop_ns: i64,
    pub source: u64,
    pub destination: u64,
}

impl WindowDiff {
    fn new(start_ns: i64, stop_ns: i64, source: u64, destination: u64) -> WindowDiff {
        WindowDiff {
            start: rfc3339_ns(start_ns),
            stop: rfc3339_ns(stop_ns),
            start_ns,
            stop_ns,
            source,
            destination,
        }
    }

    /// What differs, in words: `2026-01-01T00:00:00Z .. 2026-01-01T00:00:01Z: 10 at the source,
    /// 10 at the destination, content differs`.
    pub fn describe(&self) -> String {
        let what = if self.source == self.destination { ", content differs" } else { "" };
        format!(
            "{} .. {}: {} at the source, {} at the destination{what}",
            self.start, self.stop, self.source, self.destination
        )
    }
}

/// The differing windows of one measurement, and how many there were in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Differences {
    pub windows: Vec<WindowDiff>,
    pub total: usize,
}

/// `[start, stop)` split into [`SPLIT`] windows (fewer when it is narrower than that in ns).
pub fn split(start: i64, stop: i64) -> Vec<(i64, i64)> {
    let width = (i128::from(stop) - i128::from(start)).max(1);
    let parts = i128::from(SPLIT).min(width);
    (0..parts)
        .map(|i| {
            let a = i128::from(start) + width * i / parts;
            let b = i128::from(start) + width * (i + 1) / parts;
            (a as i64, b as i64)
        })
        .collect()
}

/// The index of the window of `windows` (contiguous, ascending) that holds `t`.
fn window_of(windows: &[(i64, i64)], t: i64) -> Option<usize> {
    let i = windows.partition_point(|&(_, b)| b <= t);
    (i < windows.len() && windows[i].0 <= t).then_some(i)
}

/// The Flux query for every stored value of `measurement` in `bucket` within `[start_ns,
/// stop_ns)`, one raw row per value, without `_start` and `_stop` (see the module doc). The
/// digest, `repair`'s window reads and its copies all read rows this way.
pub(crate) fn raw_rows(bucket: &Bucket, measurement: &str, start_ns: i64, stop_ns: i64) -> String {
    format!(
        "from(bucketID: \"{}\") |> range(start: time(v: {start_ns}), stop: time(v: {stop_ns})) \
         |> filter(fn: (r) => r._measurement == \"{}\") |> drop(columns: [\"_start\", \"_stop\"])",
        bucket.id,
        flux_string(measurement)
    )
}

/// Reads `measurement` of `bucket` over the span of `windows` and digests each window.
async fn digest_windows(
    api: &InfluxApi,
    bucket: &Bucket,
    measurement: &str,
    windows: &[(i64, i64)],
) -> Result<Vec<WindowDigest>, CompareError> {
    let (Some(first), Some(last)) = (windows.first(), windows.last()) else {
        return Ok(Vec::new());
    };
    let flux = raw_rows(bucket, measurement, first.0, last.1);
    let mut digests = vec![WindowDigest::default(); windows.len()];
    let mut line = Vec::with_capacity(256);
    let mut on_row = |row: &Row<'_>| -> Result<(), CsvError> {
        let Some(t) = row.named("_time").and_then(parse_time_ns) else { return Ok(()) };
        line.clear();
        // A row the encoder refuses is hashed as its raw cells: it still counts, and it still
        // differs when its content does.
        match raw_point::encode(row, &mut line) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(_) => {
                for i in 0..row.columns.names.len() {
                    line.extend_from_slice(row.cell(i));
                    line.push(b',');
                }
            }
        }
        if let Some(i) = window_of(windows, t) {
            digests[i].add(&line);
        }
        Ok(())
    };
    stream_rows(api, bucket, &flux, &mut on_row).await?;
    Ok(digests)
}

/// The earliest and latest time of `measurement` in `bucket` within `window`, if it has any.
async fn extent(
    api: &InfluxApi,
    bucket: &Bucket,
    measurement: &str,
    window: &TimeWindow,
) -> Result<Option<(i64, i64)>, CompareError> {
    let mut bounds: Option<(i64, i64)> = None;
    for (pick, keep) in [("first", "min"), ("last", "max")] {
        let flux = format!(
            "from(bucketID: \"{}\") |> range(start: {}, stop: {}) |> filter(fn: (r) => r._measurement == \"{}\") \
             |> {pick}() |> keep(columns: [\"_time\"]) |> group() |> {keep}(column: \"_time\")",
            bucket.id,
            window.flux_start(),
            window.flux_stop(),
            flux_string(measurement)
        );
        let mut on_row = |row: &Row<'_>| -> Result<(), CsvError> {
            if let Some(t) = row.named("_time").and_then(parse_time_ns) {
                bounds = Some(match bounds {
                    None => (t, t),
                    Some((a, b)) => (a.min(t), b.max(t)),
                });
            }
            Ok(())
        };
        stream_rows(api, bucket, &flux, &mut on_row).await?;
    }
    Ok(bounds)
}

/// The smallest windows of `measurement` over `window` whose values differ between the source
/// (`src`, `s_bucket`) and the destination (`dst`, `d_bucket`): the first `keep` of them, and
/// how many there are.
pub async fn differing_windows(
    src: &InfluxApi,
    s_bucket: &Bucket,
    dst: &InfluxApi,
    d_bucket: &Bucket,
    measurement: &str,
    window: &TimeWindow,
    keep: usize,
) -> Result<Differences, CompareError> {
    let (start, stop) = match bounded(window) {
        // A bounded window is split as it is: finding where the data lies costs a first() and a
        // last() per series at each end, which for a measurement of many series is more than
        // reading it once (in the demo, one series per point: minutes on 2 cores).
        Some(b) => b,
        None => {
            let (a, b) = tokio::join!(
                extent(src, s_bucket, measurement, window),
                extent(dst, d_bucket, measurement, window)
            );
            let span = match (a?, b?) {
                (None, None) => return Ok(Differences::default()),
                (Some(x), None) | (None, Some(x)) => x,
                (Some(x), Some(y)) => (x.0.min(y.0), x.1.max(y.1)),
            };
            // The span ends after its last value.
            (span.0, span.1.saturating_add(1))
        }
    };
    let finest = FINEST.as_nanos() as i64;
    let mut out = Differences::default();
    let mut todo: VecDeque<(Vec<(i64, i64)>, u32)> = VecDeque::from([(split(start, stop), 1)]);
    while let Some((windows, depth)) = todo.pop_front() {
        let (s, d) = tokio::join!(
            digest_windows(src, s_bucket, measurement, &windows),
            digest_windows(dst, d_bucket, measurement, &windows)
        );
        let (s, d) = (s?, d?);
        for (i, &(a, b)) in windows.iter().enumerate() {
            if s[i] == d[i] {
                continue;
            }
            if b - a > finest && depth < MAX_DEPTH {
                todo.push_back((split(a, b), depth + 1));
            } else {
                out.total += 1;
                if out.windows.len() < keep {
                    out.windows.push(WindowDiff::new(a, b, s[i].count, d[i].count));
                }
            }
        }
    }
    out.windows.sort_by_key(|w| w.start_ns);
    Ok(out)
}

/// A window with both ends, in ns (`[start, stop)`); `None` when an end is open.
fn bounded(window: &TimeWindow) -> Option<(i64, i64)> {
    let ns = |t: time::OffsetDateTime| i64::try_from(t.unix_timestamp_nanos()).ok();
    let (start, stop) = (ns(window.start?)?, ns(window.stop?)?);
    (start < stop).then_some((start, stop))
}

/// A string for a Flux string literal: `\`, `"` and `$` escaped (Flux interpolates `${…}` in
/// string literals, so a measurement named `cost${x}` would otherwise be read as an expression).
pub(crate) fn flux_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('$', "\\$")
}

/// Nanoseconds as an RFC3339 Flux time literal (whole nanoseconds; clamped to what influxd stores).
pub(crate) fn rfc3339_ns(ns: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)) {
        Ok(t) => t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| MIN_TIME.into()),
        Err(_) if ns < 0 => MIN_TIME.to_string(),
        Err(_) => MAX_TIME.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flux_string_escapes_backslashes_quotes_and_interpolation() {
        assert_eq!(flux_string(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(flux_string("cost${x}"), "cost\\${x}");
    }

    #[test]
    fn a_sum_of_hashes_ignores_order_and_sees_a_changed_or_swapped_value() {
        let lines: [&[u8]; 3] = [b"m,h=a v=1 1", b"m,h=a v=2 2", b"m,h=b v=3i 3"];
        let mut forward = WindowDigest::default();
        let mut backward = WindowDigest::default();
        for l in lines {
            forward.add(l);
        }
        for l in lines.iter().rev() {
            backward.add(l);
        }
        assert_eq!(forward, backward);
        // Same count, one value changed; one missing and one extra; a field's type changed.
        for other in [
            [&b"m,h=a v=1 1"[..], b"m,h=a v=2.5 2", b"m,h=b v=3i 3"],
            [&b"m,h=a v=1 1"[..], b"m,h=a v=2 2", b"m,h=b v=3i 4"],
            [&b"m,h=a v=1 1"[..], b"m,h=a v=2 2", b"m,h=b v=3 3"],
        ] {
            let mut d = WindowDigest::default();
            for l in other {
                d.add(l);
            }
            assert_eq!(d.count, forward.count);
            assert_ne!(d.sum, forward.sum, "{other:?}");
        }
    }

    #[test]
    fn splits_cover_the_span_without_gaps_and_rows_find_their_window() {
        for (a, b) in [(0i64, 1_000), (-5, 5), (10, 13), (0, i64::MAX / 2)] {
            let w = split(a, b);
            assert_eq!(w.first().unwrap().0, a);
            assert_eq!(w.last().unwrap().1, b);
            for pair in w.windows(2) {
                assert_eq!(pair[0].1, pair[1].0);
                assert!(pair[0].0 < pair[0].1);
            }
            assert_eq!(window_of(&w, a), Some(0));
            assert_eq!(window_of(&w, b - 1), Some(w.len() - 1));
            assert_eq!(window_of(&w, b), None);
            assert_eq!(window_of(&w, a - 1), None);
        }
        assert_eq!(split(10, 13).len(), 3, "no empty windows");
    }

    #[test]
    fn a_window_says_where_and_what() {
        let w = WindowDiff::new(1_764_547_200_000_000_000, 1_764_547_201_000_000_000, 10, 10);
        assert_eq!(
            w.describe(),
            "2025-12-01T00:00:00Z .. 2025-12-01T00:00:01Z: 10 at the source, 10 at the destination, content differs"
        );
        assert_eq!(rfc3339_ns(1), "1970-01-01T00:00:00.000000001Z");
    }
}
