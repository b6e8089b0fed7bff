//! Writes that reached the source without passing through the gateway.
//!
//! During a live migration every client write goes through the gateway into the stream, and the
//! two stream writers replay the stream into both databases. A point that is at the source and
//! not at the destination, after the seeding's snapshot and up to where the writers have
//! replayed, therefore came from somewhere else: a writer someone forgot to move, still writing
//! straight to the source. Its points will never reach the destination; when the source is
//! switched off they are lost. (A point older than the snapshot is in the destination already,
//! copied by the seeding, so "at the source and not at the destination" also means "newer than
//! the snapshot".)
//!
//! The check is cheap enough for `status`: over a recent window (the last hour up to the replay
//! bound, by default), influxd counts each measurement's values per minute on both sides
//! (`aggregateWindow(fn: count)` is pushed down to the storage engine); a minute with more values
//! at the source than at the destination holds bypassing writes. The newest such minute is then
//! counted again per second, so the report says to the second when the last one arrived — the
//! operator's list of writers still to move, per bucket and measurement. A minute where the
//! destination has extra values of the same measurement could hide a bypassing write; `verify
//! --content` compares value by value and finds it.

use std::collections::BTreeMap;

use crate::flux_csv::annotated::{CsvError, Row, parse_time_ns};
use crate::influx_api::{Bucket, InfluxApi};
use crate::verify::{VerifyError, stream_rows};

const MINUTE_NS: i64 = 60_000_000_000;
const SECOND_NS: i64 = 1_000_000_000;

/// Values of one measurement that reached the source and not the destination.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Bypassed {
    pub measurement: String,
    /// Values at the source beyond those at the destination, summed over the minutes where the
    /// source has more.
    pub values: u64,
    /// The start of the newest second in which the source got values the destination did not.
    #[serde(serialize_with = "as_rfc3339")]
    pub newest_ns: i64,
}

fn as_rfc3339<S: serde::Serializer>(ns: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::digest::rfc3339_ns(*ns))
}

/// Values per (measurement, window end) over `[start_ns, stop_ns)` in windows of `every_ns`,
/// optionally of one measurement.
async fn counts(
    api: &InfluxApi,
    bucket: &Bucket,
    measurement: Option<&str>,
    start_ns: i64,
    stop_ns: i64,
    every_ns: i64,
) -> Result<BTreeMap<(String, i64), u64>, VerifyError> {
    let filter = match measurement {
        Some(m) => format!(" |> filter(fn: (r) => r._measurement == \"{}\")", crate::digest::flux_string(m)),
        None => String::new(),
    };
    let flux = format!(
        "from(bucketID: \"{}\") |> range(start: time(v: {start_ns}), stop: time(v: {stop_ns})){filter} \
         |> aggregateWindow(every: {every_ns}ns, fn: count, createEmpty: false) \
         |> group(columns: [\"_measurement\", \"_time\"]) |> sum()",
        bucket.id
    );
    let mut out = BTreeMap::new();
    let mut on_row = |row: &Row<'_>| -> Result<(), CsvError> {
        let (Some(m), Some(t), Some(v)) =
            (row.named("_measurement"), row.named("_time"), row.named("_value"))
        else {
            return Ok(());
        };
        let (Some(t), Ok(v)) = (parse_time_ns(t), std::str::from_utf8(v).unwrap_or("").parse::<u64>()) else {
            return Ok(());
        };
        *out.entry((String::from_utf8_lossy(m).into_owned(), t)).or_insert(0) += v;
        Ok(())
    };
    stream_rows(api, bucket, &flux, &mut on_row).await?;
    Ok(out)
}

/// Per measurement, the values where the source has more than the destination: (values, the
/// newest window's end).
fn source_excess(
    src: &BTreeMap<(String, i64), u64>,
    dst: &BTreeMap<(String, i64), u64>,
) -> BTreeMap<String, (u64, i64)> {
    let mut out: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for (key, &s) in src {
        let d = dst.get(key).copied().unwrap_or(0);
        if s > d {
            let e = out.entry(key.0.clone()).or_insert((0, i64::MIN));
            e.0 += s - d;
            e.1 = e.1.max(key.1);
        }
    }
    out
}

/// The measurements of `s_bucket` at the source with values in `[start_ns, stop_ns)` that the
/// destination's `d_bucket` lacks.
pub async fn detect(
    src: &InfluxApi,
    s_bucket: &Bucket,
    dst: &InfluxApi,
    d_bucket: &Bucket,
    start_ns: i64,
    stop_ns: i64,
) -> Result<Vec<Bypassed>, VerifyError> {
    if start_ns >= stop_ns {
        return Ok(Vec::new());
    }
    let (s, d) = tokio::join!(
        counts(src, s_bucket, None, start_ns, stop_ns, MINUTE_NS),
        counts(dst, d_bucket, None, start_ns, stop_ns, MINUTE_NS)
    );
    let mut found = Vec::new();
    for (measurement, (values, minute_end)) in source_excess(&s?, &d?) {
        // The newest minute, per second: when the last bypassing write arrived.
        let a = (minute_end - MINUTE_NS).max(start_ns);
        let b = minute_end.min(stop_ns);
        let (s, d) = tokio::join!(
            counts(src, s_bucket, Some(&measurement), a, b, SECOND_NS),
            counts(dst, d_bucket, Some(&measurement), a, b, SECOND_NS)
        );
        let newest_end = source_excess(&s?, &d?).get(&measurement).map(|e| e.1).unwrap_or(minute_end);
        found.push(Bypassed { measurement, values, newest_ns: (newest_end - SECOND_NS).max(a) });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_minutes_with_more_at_the_source_count_and_the_newest_is_kept() {
        let src = BTreeMap::from([
            (("cpu".to_string(), 60), 10),
            (("cpu".to_string(), 120), 12),
            (("cpu".to_string(), 180), 5),
            (("mem".to_string(), 60), 3),
        ]);
        let dst = BTreeMap::from([
            (("cpu".to_string(), 60), 10),
            (("cpu".to_string(), 120), 9),
            (("cpu".to_string(), 180), 7),
            (("mem".to_string(), 60), 3),
            (("disk".to_string(), 60), 4),
        ]);
        let e = source_excess(&src, &dst);
        assert_eq!(e.get("cpu"), Some(&(3, 120)), "minute 180 has more at the destination: not a bypass");
        assert_eq!(e.get("mem"), None);
        assert_eq!(e.get("disk"), None, "only at the destination is not a bypass");
        let only_src = source_excess(&BTreeMap::from([(("new".to_string(), 240), 2)]), &BTreeMap::new());
        assert_eq!(only_src.get("new"), Some(&(2, 240)));
    }
}
