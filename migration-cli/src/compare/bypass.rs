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
//! The check is cheap enough for `status`, whatever the number of series: over a recent window
//! (the last hour up to the replay bound, by default) influxd counts each measurement's values
//! on both sides (`group(columns: ["_measurement"]) |> count()`, which the storage engine answers
//! itself without handing a row per series to Flux); a measurement with more values at the
//! source holds bypassing writes. When the last one arrived is then found to the second by
//! halving: the newest start `t` whose `[t, end)` still has more values at the source (a dozen
//! counts of ever smaller ranges for an hour). That is the operator's list of writers still to
//! move, per bucket and measurement. Values the destination has and the source does not, in the
//! same measurement and window, could hide a bypassing write from counts; `verify --content`
//! compares value by value and finds it.

use std::collections::BTreeMap;

use crate::compare::query::{CompareError, stream_rows};
use crate::influx::annotated_csv::{CsvError, Row};
use crate::influx::api::{Bucket, InfluxApi};

const SECOND_NS: i64 = 1_000_000_000;

/// Values of one measurement that reached the source and not the destination.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Bypassed {
    pub measurement: String,
    /// Values at the source beyond those at the destination over the window.
    pub values: u64,
    /// The start of a second (or less) holding the newest value the source got and the destination
    /// did not.
    #[serde(serialize_with = "as_rfc3339")]
    pub newest_ns: i64,
}

fn as_rfc3339<S: serde::Serializer>(ns: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::compare::digest::rfc3339_ns(*ns))
}

/// Values per measurement in `[start_ns, stop_ns)`, optionally of one measurement.
async fn counts(
    api: &InfluxApi,
    bucket: &Bucket,
    measurement: Option<&str>,
    start_ns: i64,
    stop_ns: i64,
) -> Result<BTreeMap<String, u64>, CompareError> {
    let filter = match measurement {
        Some(m) => {
            format!(" |> filter(fn: (r) => r._measurement == \"{}\")", crate::compare::digest::flux_string(m))
        }
        None => String::new(),
    };
    let flux = format!(
        "from(bucketID: \"{}\") |> range(start: time(v: {start_ns}), stop: time(v: {stop_ns})){filter} \
         |> group(columns: [\"_measurement\"]) |> count()",
        bucket.id
    );
    let mut out = BTreeMap::new();
    let mut on_row = |row: &Row<'_>| -> Result<(), CsvError> {
        let (Some(m), Some(v)) = (row.named("_measurement"), row.named("_value")) else {
            return Ok(());
        };
        if let Ok(v) = std::str::from_utf8(v).unwrap_or("").parse::<u64>() {
            *out.entry(String::from_utf8_lossy(m).into_owned()).or_insert(0) += v;
        }
        Ok(())
    };
    stream_rows(api, bucket, &flux, &mut on_row).await?;
    Ok(out)
}

/// Per measurement, how many more values the source has than the destination (only those with
/// more).
fn source_excess(src: &BTreeMap<String, u64>, dst: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    src.iter()
        .filter_map(|(m, &s)| {
            let d = dst.get(m).copied().unwrap_or(0);
            (s > d).then(|| (m.clone(), s - d))
        })
        .collect()
}

/// The next range to look at when halving `[lo, hi)` for the newest time with an excess:
/// `None` once it is at most a second wide.
fn midpoint(lo: i64, hi: i64) -> Option<i64> {
    (hi - lo > SECOND_NS).then(|| lo + (hi - lo) / 2)
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
) -> Result<Vec<Bypassed>, CompareError> {
    if start_ns >= stop_ns {
        return Ok(Vec::new());
    }
    let (s, d) = tokio::join!(
        counts(src, s_bucket, None, start_ns, stop_ns),
        counts(dst, d_bucket, None, start_ns, stop_ns)
    );
    let mut found = Vec::new();
    for (measurement, values) in source_excess(&s?, &d?) {
        // [lo, stop) has an excess, [hi, stop) has none: halve until they are a second apart.
        let (mut lo, mut hi) = (start_ns, stop_ns);
        while let Some(mid) = midpoint(lo, hi) {
            let (s, d) = tokio::join!(
                counts(src, s_bucket, Some(&measurement), mid, stop_ns),
                counts(dst, d_bucket, Some(&measurement), mid, stop_ns)
            );
            if source_excess(&s?, &d?).contains_key(&measurement) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        found.push(Bypassed { measurement, values, newest_ns: lo });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_measurements_with_more_at_the_source_count() {
        let src = BTreeMap::from([("cpu".to_string(), 12), ("mem".to_string(), 3)]);
        let dst = BTreeMap::from([("cpu".to_string(), 9), ("mem".to_string(), 3), ("disk".to_string(), 4)]);
        let e = source_excess(&src, &dst);
        assert_eq!(e, BTreeMap::from([("cpu".to_string(), 3)]), "only at the destination is not a bypass");
        let only_src = source_excess(&BTreeMap::from([("new".to_string(), 2)]), &BTreeMap::new());
        assert_eq!(only_src.get("new"), Some(&2));
    }

    #[test]
    fn halving_an_hour_takes_a_dozen_steps_and_ends_a_second_wide() {
        let (mut lo, mut hi) = (0i64, 3_600 * SECOND_NS);
        let newest = 2_000 * SECOND_NS + 123;
        let mut steps = 0;
        while let Some(mid) = midpoint(lo, hi) {
            steps += 1;
            if mid <= newest { lo = mid } else { hi = mid }
        }
        assert!(steps <= 12, "{steps}");
        assert!(lo <= newest && newest < hi && hi - lo <= SECOND_NS);
    }
}
