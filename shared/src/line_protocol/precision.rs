//! The `precision` query parameter of a write: how influxd 2.7.12 reads it on the v2 and the v1
//! path, and the timestamp it gives a line that has none.
//!
//! v2 (`http/write_handler.go` decodeWriteRequest): empty or absent means `ns`; anything but
//! `ns|us|ms|s` is refused with 400 `invalid precision; valid precision units are ns, us, ms, and
//! s` (`models.ValidPrecision`).
//!
//! v1 (`http/legacy/write_handler.go` decodeWriteRequest): the value is passed to the parser
//! unchecked. The parser uses it twice (`models/points.go`):
//! - `GetPrecisionMultiplier` scales written timestamps: only `us`, `ms` and `s` scale; `n`, `u`,
//!   `m`, `h`, `rfc3339` or any other value leave timestamps in nanoseconds;
//! - `(*point).SetPrecision` truncates the server time given to lines without a timestamp: `u`/`us`
//!   to the microsecond, `ms`, `s`, and also `m` to the minute and `h` to the hour.
//!
//! So a v1 write with `precision=h` reads `cpu v=1 5` as 5 ns, yet stamps `cpu v=1` with the
//! current hour. [`V1Precision`] keeps both halves; [`Precision::from_v1`] is its timestamp unit.

use std::fmt;

/// The unit of the timestamps in a write body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

/// A v2 `precision` value influxd refuses. Its `Display` is influxd's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid precision; valid precision units are ns, us, ms, and s")]
pub struct InvalidPrecision {
    /// The value the client sent.
    pub given: String,
}

impl Precision {
    /// v2 `/api/v2/write?precision=`: `None` or `""` => ns; `ns|us|ms|s` accepted, case-sensitive
    /// (influxd `models.ValidPrecision`); anything else is an error whose `Display` is influxd's
    /// message (status 400, code `invalid`).
    pub fn from_v2(param: Option<&str>) -> Result<Precision, InvalidPrecision> {
        match param.unwrap_or("") {
            "" | "ns" => Ok(Precision::Nanoseconds),
            "us" => Ok(Precision::Microseconds),
            "ms" => Ok(Precision::Milliseconds),
            "s" => Ok(Precision::Seconds),
            other => Err(InvalidPrecision { given: other.to_owned() }),
        }
    }

    /// v1 `/write?precision=`: the unit influxd 2.7.12 reads timestamps in. Never an error:
    /// `us`, `ms`, `s` scale; every other value (the 1.x `n`, `u`, `m`, `h` included) is
    /// nanoseconds (`models.GetPrecisionMultiplier`). See [`V1Precision`] for the time given to
    /// lines without a timestamp, which does depend on `u`, `m` and `h`.
    pub fn from_v1(param: Option<&str>) -> Precision {
        V1Precision::parse(param).unit()
    }

    /// `"ns" | "us" | "ms" | "s"`: the v2 spelling, valid on both paths.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Nanoseconds => "ns",
            Precision::Microseconds => "us",
            Precision::Milliseconds => "ms",
            Precision::Seconds => "s",
        }
    }

    pub fn nanos_per_unit(self) -> i64 {
        match self {
            Precision::Nanoseconds => 1,
            Precision::Microseconds => 1_000,
            Precision::Milliseconds => 1_000_000,
            Precision::Seconds => 1_000_000_000,
        }
    }

    /// The timestamp influxd would give a line without one, received at `now_ns` (ns since the
    /// epoch), in this precision's units. influxd truncates the server time to the precision
    /// (`(*point).SetPrecision` -> `time.Time.Truncate`, which rounds towards the past, also
    /// before 1970), so this is `floor(now_ns / nanos_per_unit)`.
    pub fn timestamp_for(self, now_ns: i64) -> i64 {
        now_ns.div_euclid(self.nanos_per_unit())
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a v1 `/write?precision=` value means to influxd 2.7.12: the unit of written timestamps
/// and the truncation of the server time given to lines without a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct V1Precision {
    unit: Precision,
    /// `SetPrecision`'s truncation of the default time, in ns (1 = none).
    truncate_ns: i64,
}

impl V1Precision {
    /// Reads the parameter as influxd does; absent or empty means `ns`.
    pub fn parse(param: Option<&str>) -> V1Precision {
        const MINUTE: i64 = 60_000_000_000;
        let (unit, truncate_ns) = match param.unwrap_or("ns") {
            "us" => (Precision::Microseconds, 1_000),
            "ms" => (Precision::Milliseconds, 1_000_000),
            "s" => (Precision::Seconds, 1_000_000_000),
            // Timestamps stay in ns, but SetPrecision still truncates the default time.
            "u" => (Precision::Nanoseconds, 1_000),
            "m" => (Precision::Nanoseconds, MINUTE),
            "h" => (Precision::Nanoseconds, 60 * MINUTE),
            _ => (Precision::Nanoseconds, 1),
        };
        V1Precision { unit, truncate_ns }
    }

    /// The unit of the timestamps written in the body.
    pub fn unit(self) -> Precision {
        self.unit
    }

    /// The timestamp influxd would give a line without one, received at `now_ns`, in
    /// [`V1Precision::unit`]s: the server time truncated as `SetPrecision` does (to the minute for
    /// `m`, to the hour for `h`), then expressed in the unit.
    pub fn timestamp_for(self, now_ns: i64) -> i64 {
        let truncated = now_ns - now_ns.rem_euclid(self.truncate_ns);
        self.unit.timestamp_for(truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_accepts_exactly_influxd_units() {
        assert_eq!(Precision::from_v2(None), Ok(Precision::Nanoseconds));
        assert_eq!(Precision::from_v2(Some("")), Ok(Precision::Nanoseconds), "empty means ns in influxd");
        assert_eq!(Precision::from_v2(Some("ns")), Ok(Precision::Nanoseconds));
        assert_eq!(Precision::from_v2(Some("us")), Ok(Precision::Microseconds));
        assert_eq!(Precision::from_v2(Some("ms")), Ok(Precision::Milliseconds));
        assert_eq!(Precision::from_v2(Some("s")), Ok(Precision::Seconds));
        for bad in ["n", "u", "m", "h", "NS", "Ms", " s", "µs", "rfc3339", "1"] {
            let err = Precision::from_v2(Some(bad)).expect_err(bad);
            assert_eq!(err.to_string(), "invalid precision; valid precision units are ns, us, ms, and s");
            assert_eq!(err.given, bad);
        }
    }

    #[test]
    fn v1_scales_only_us_ms_s_and_reads_everything_else_as_ns() {
        assert_eq!(Precision::from_v1(None), Precision::Nanoseconds);
        assert_eq!(Precision::from_v1(Some("us")), Precision::Microseconds);
        assert_eq!(Precision::from_v1(Some("ms")), Precision::Milliseconds);
        assert_eq!(Precision::from_v1(Some("s")), Precision::Seconds);
        for ns in ["", "ns", "n", "u", "m", "h", "rfc3339", "seconds", "S"] {
            assert_eq!(Precision::from_v1(Some(ns)), Precision::Nanoseconds, "{ns}");
        }
    }

    #[test]
    fn timestamp_for_truncates_towards_the_past() {
        let now = 1_700_000_123_456_789_012;
        assert_eq!(Precision::Nanoseconds.timestamp_for(now), now);
        assert_eq!(Precision::Microseconds.timestamp_for(now), 1_700_000_123_456_789);
        assert_eq!(Precision::Milliseconds.timestamp_for(now), 1_700_000_123_456);
        assert_eq!(Precision::Seconds.timestamp_for(now), 1_700_000_123);
        // Before 1970 Go's Truncate still rounds down: -1.5 s is second -2.
        assert_eq!(Precision::Seconds.timestamp_for(-1_500_000_000), -2);
        assert_eq!(Precision::Milliseconds.timestamp_for(-1), -1);
    }

    #[test]
    fn v1_default_time_is_truncated_for_u_m_and_h_but_stays_in_ns() {
        let now = 1_700_000_123_456_789_012; // 2023-11-14T22:15:23.456789012Z
        assert_eq!(V1Precision::parse(Some("u")).timestamp_for(now), 1_700_000_123_456_789_000);
        assert_eq!(V1Precision::parse(Some("m")).timestamp_for(now), 1_700_000_100_000_000_000);
        assert_eq!(V1Precision::parse(Some("h")).timestamp_for(now), 1_699_999_200_000_000_000);
        assert_eq!(V1Precision::parse(Some("n")).timestamp_for(now), now);
        assert_eq!(V1Precision::parse(Some("bogus")).timestamp_for(now), now);
        assert_eq!(V1Precision::parse(None).timestamp_for(now), now);
        assert_eq!(V1Precision::parse(Some("s")).timestamp_for(now), 1_700_000_123);
        assert_eq!(V1Precision::parse(Some("h")).unit(), Precision::Nanoseconds);
    }

    #[test]
    fn as_str_and_nanos_agree() {
        for p in
            [Precision::Nanoseconds, Precision::Microseconds, Precision::Milliseconds, Precision::Seconds]
        {
            assert_eq!(Precision::from_v2(Some(p.as_str())), Ok(p));
            assert_eq!(p.timestamp_for(p.nanos_per_unit() * 7), 7);
        }
    }
}
