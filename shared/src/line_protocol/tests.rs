//! Unit tests of the line-protocol scanner: a table of single lines with influxd 2.7.12's
//! decision and reason for each, whole bodies (reporting, line numbers, comments, CRLF), the
//! storage-level refusals, stamping, and properties (round trip of generated valid lines,
//! splitting never inside a quoted string, no panic on any input).
//!
//! Every expected reason in the table is influxd's text for that line: taken from the Go source
//! (models/points.go, tsdb/*) and confirmed by running `models.ParsePointsWithPrecision` of
//! influxd v2.7.12 on each line; the differential test (tests/tests/line_protocol_differential.rs)
//! checks the decisions against a running influxd.

use proptest::prelude::*;

use super::*;

/// What influxd does with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Stored; whether the line carries a timestamp.
    Stored { timestamp: bool },
    /// Refused at parse time (400) with this reason.
    Parse(&'static str),
    /// Parsed, then dropped by the storage (422).
    Dropped,
    /// Parsed, then the engine fails (500) or influxd crashes.
    Internal,
}
use Expect::*;

const NS: Precision = Precision::Nanoseconds;
const US: Precision = Precision::Microseconds;
const MS: Precision = Precision::Milliseconds;
const S: Precision = Precision::Seconds;
const TS: Expect = Stored { timestamp: true };
const NO_TS: Expect = Stored { timestamp: false };
const RANGE: &str = "time outside range -9223372036854775806 - 9223372036854775806";

#[rustfmt::skip]
const TABLE: &[(&str, Precision, Expect)] = &[
    // Measurement: a comma or space ends it unless the previous byte is a backslash.
    ("cpu v=1", NS, NO_TS),
    ("cpu", NS, Parse("missing fields")),
    ("cpu ", NS, Parse("invalid field format")),
    (",cpu v=1", NS, Parse("missing measurement")),
    ("cpu\\ load v=1", NS, NO_TS),
    ("cpu\\,x v=1", NS, NO_TS),
    ("cpu\\\\,x=1 v=1", NS, NO_TS),      // `\\,`: the comma follows a backslash, so it is escaped
    ("c\"p=u v=1", NS, NO_TS),            // quotes and `=` are plain bytes in a measurement
    ("été v=1", NS, NO_TS),
    ("cpu\\", NS, Parse("missing fields")),
    // Tags.
    ("cpu,host=a v=1", NS, NO_TS),
    ("cpu,host=a,region=b v=1", NS, NO_TS),
    ("cpu,region=b,host=a v=1", NS, NO_TS),
    ("cpu, v=1", NS, Parse("missing tag key")),
    ("cpu,=a v=1", NS, Parse("missing tag key")),
    ("cpu,host v=1", NS, Parse("missing tag value")),
    ("cpu,host= v=1", NS, Parse("missing tag value")),
    ("cpu,host=a", NS, Parse("missing fields")),
    ("cpu,host=a=b v=1", NS, Parse("invalid tag format")),
    ("cpu,a== v=1", NS, NO_TS),           // the first byte of a tag value may be `=`
    ("cpu,host=a\\ b v=1", NS, NO_TS),
    ("cpu,host=a\\,b v=1", NS, NO_TS),
    ("cpu,host=a\\=b v=1", NS, NO_TS),
    ("cpu,ho\\ st=a v=1", NS, NO_TS),
    ("cpu,ho\\=st=a v=1", NS, NO_TS),
    ("cpu,host=a,host=b v=1", NS, Parse("duplicate tags")),
    ("cpu,b=1,a=2,b=3 v=1", NS, Parse("duplicate tags")),   // unsorted: found after sorting
    ("cpu,time=1 v=1", NS, Parse("cannot use reserved tag key \"time\"")),
    ("cpu,_field=1 v=1", NS, Parse("cannot use reserved tag key \"_field\"")),
    ("cpu,_measurement=1 v=1", NS, Parse("cannot use reserved tag key \"_measurement\"")),
    ("cpu,\u{0}=1 v=1", NS, Parse("cannot use reserved tag key \"\\x00\"")),
    ("cpu,_time=1 v=1", NS, NO_TS),
    ("cpu,host=\"a b\" v=1", NS, Parse("invalid field format")),   // tag values are never quoted
    // Field keys.
    ("cpu v=", NS, Parse("missing field value")),
    ("cpu =1", NS, Parse("missing field key")),
    ("cpu v=1,=2", NS, Parse("missing field key")),
    ("cpu v=1,", NS, Parse("invalid field format")),
    ("cpu v=1,w", NS, Parse("invalid field format")),
    ("cpu v", NS, Parse("invalid field format")),
    ("cpu v=1,,w=2", NS, Parse("invalid field format")),
    ("cpu v=,w=2", NS, Parse("missing field value")),
    ("cpu \t=1", NS, NO_TS),              // the "missing field key" check looks for a space only
    ("cpu v\\ x=1", NS, NO_TS),
    ("cpu v\\,x=1", NS, NO_TS),
    ("cpu v\\=x=1", NS, NO_TS),
    ("cpu a\\\\=1", NS, Parse("invalid value: field-key=a\\\\=1")),
    ("cpu a\\\\=1,b=2", NS, NO_TS),       // stored as one field named `a\=1,b`
    ("cpu \"v\"=1", NS, NO_TS),
    // String values: spaces, commas, `=`, escaped quotes and backslashes, raw newlines.
    ("cpu s=\"a b\"", NS, NO_TS),
    ("cpu s=\"a,b=c\"", NS, NO_TS),
    ("cpu s=\"a\\\"b\"", NS, NO_TS),
    ("cpu s=\"a\\\\\"", NS, NO_TS),
    ("cpu s=\"a\nb\"", NS, NO_TS),
    ("cpu s=\"\"", NS, NO_TS),
    ("cpu s=\"abc", NS, Parse("unbalanced quotes")),
    ("cpu s=\"a\"b", NS, NO_TS),           // bytes after the closing quote are kept
    ("cpu s=\"a\\nb\"", NS, NO_TS),
    ("cpu s=\"a\" 1", NS, TS),
    ("cpu s='a'", NS, Parse("invalid boolean")),
    // Carriage returns and trailing blanks: influxd 2.7.12 drops no `\r`.
    ("cpu v=1\r", NS, Parse("invalid number")),
    ("cpu v=1 123\r", NS, Parse("bad timestamp")),
    ("cpu s=\"x\"\r", NS, NO_TS),          // stored, with the string value `x"`
    ("cpu v=true\r", NS, Parse("invalid boolean")),
    ("cpu v=1 ", NS, NO_TS),
    ("cpu v=1   ", NS, NO_TS),
    ("cpu v=1 123 ", NS, TS),
    ("cpu v=1\t", NS, Parse("invalid number")),
    ("cpu v=1 123\t", NS, Parse("bad timestamp")),
    ("cpu v=1 1 2", NS, Parse("point is invalid")),
    // Integers.
    ("cpu v=1i", NS, NO_TS),
    ("cpu v=-1i", NS, NO_TS),
    ("cpu v=9223372036854775807i", NS, NO_TS),
    ("cpu v=9223372036854775808i", NS, Parse("unable to parse integer 9223372036854775808: strconv.ParseInt: parsing \"9223372036854775808\": value out of range")),
    ("cpu v=-9223372036854775808i", NS, NO_TS),
    ("cpu v=-9223372036854775809i", NS, Parse("unable to parse integer -9223372036854775809: strconv.ParseInt: parsing \"-9223372036854775809\": value out of range")),
    ("cpu v=0009223372036854775807i", NS, NO_TS),
    ("cpu v=1.5i", NS, Parse("invalid number")),
    ("cpu v=1e3i", NS, Parse("invalid number")),
    ("cpu v=i", NS, Parse("invalid boolean")),
    ("cpu v=-i", NS, Parse("invalid number")),
    ("cpu v=1i1", NS, Parse("invalid number")),
    ("cpu v=1ii", NS, Parse("invalid number")),
    // Unsigned integers.
    ("cpu v=1u", NS, NO_TS),
    ("cpu v=0u", NS, NO_TS),
    ("cpu v=18446744073709551615u", NS, NO_TS),
    ("cpu v=18446744073709551616u", NS, Parse("unable to parse unsigned 18446744073709551616: strconv.ParseUint: parsing \"18446744073709551616\": value out of range")),
    ("cpu v=-1u", NS, Parse("invalid number")),
    ("cpu v=1.0u", NS, Parse("invalid number")),
    ("cpu v=1iu", NS, Parse("invalid number")),
    // Floats.
    ("cpu v=1.5", NS, NO_TS),
    ("cpu v=-1.5", NS, NO_TS),
    ("cpu v=.5", NS, NO_TS),
    ("cpu v=5.", NS, NO_TS),
    ("cpu v=-.5", NS, NO_TS),
    ("cpu v=1e10", NS, NO_TS),
    ("cpu v=1E-10", NS, NO_TS),
    ("cpu v=1e+10", NS, NO_TS),
    ("cpu v=1.7976931348623157e308", NS, NO_TS),
    ("cpu v=1e309", NS, Parse("invalid float")),
    ("cpu v=-1e309", NS, Parse("invalid float")),
    ("cpu v=1e-400", NS, NO_TS),           // underflow to 0 is not an error
    ("cpu v=1.2.3", NS, Parse("invalid number")),
    ("cpu v=1e", NS, Parse("invalid float")),
    ("cpu v=.", NS, Parse("invalid number")),
    ("cpu v=-", NS, Parse("invalid number")),
    ("cpu v=--1", NS, Parse("invalid number")),
    ("cpu v=1-1", NS, Parse("invalid number")),
    ("cpu v=NaN", NS, Parse("invalid number")),
    ("cpu v=nan", NS, Parse("invalid number")),
    ("cpu v=Inf", NS, Parse("invalid boolean")),
    ("cpu v=-Inf", NS, Parse("invalid number")),
    ("cpu v=0x10", NS, Parse("invalid number")),
    ("cpu v=1_000", NS, Parse("invalid number")),
    ("cpu v=-e5", NS, Parse("invalid float")),
    ("cpu v=1ee5", NS, Parse("invalid float")),
    // Booleans: every spelling influxd takes, and near misses.
    ("cpu v=t", NS, NO_TS),
    ("cpu v=T", NS, NO_TS),
    ("cpu v=true", NS, NO_TS),
    ("cpu v=True", NS, NO_TS),
    ("cpu v=TRUE", NS, NO_TS),
    ("cpu v=f", NS, NO_TS),
    ("cpu v=F", NS, NO_TS),
    ("cpu v=false", NS, NO_TS),
    ("cpu v=False", NS, NO_TS),
    ("cpu v=FALSE", NS, NO_TS),
    ("cpu v=tRUE", NS, Parse("invalid boolean")),
    ("cpu v=truE", NS, Parse("invalid boolean")),
    ("cpu v=yes", NS, Parse("invalid boolean")),
    ("cpu v=fals", NS, Parse("invalid boolean")),
    ("cpu v=t1", NS, Parse("invalid boolean")),
    // Timestamps at and beyond the range, for each precision.
    ("cpu v=1 0", NS, TS),
    ("cpu v=1 -1", NS, TS),
    ("cpu v=1 1700000000000000000", NS, TS),
    ("cpu v=1 9223372036854775806", NS, TS),
    ("cpu v=1 9223372036854775807", NS, Parse(RANGE)),
    ("cpu v=1 -9223372036854775806", NS, TS),
    ("cpu v=1 -9223372036854775807", NS, Parse(RANGE)),
    ("cpu v=1 -9223372036854775808", NS, Parse(RANGE)),
    ("cpu v=1 9223372036854775808", NS, Parse("strconv.ParseInt: parsing \"9223372036854775808\": value out of range")),
    ("cpu v=1 9223372036854775", US, TS),
    ("cpu v=1 9223372036854776", US, Parse(RANGE)),
    ("cpu v=1 -9223372036854775", US, TS),
    ("cpu v=1 -9223372036854776", US, Parse(RANGE)),
    ("cpu v=1 9223372036854", MS, TS),
    ("cpu v=1 9223372036855", MS, Parse(RANGE)),
    ("cpu v=1 -9223372036854", MS, TS),
    ("cpu v=1 -9223372036855", MS, Parse(RANGE)),
    ("cpu v=1 9223372036", S, TS),
    ("cpu v=1 9223372037", S, Parse(RANGE)),
    ("cpu v=1 -9223372036", S, TS),
    ("cpu v=1 -9223372037", S, Parse(RANGE)),
    ("cpu v=1 12a", NS, Parse("bad timestamp")),
    ("cpu v=1 -", NS, Parse("strconv.ParseInt: parsing \"-\": invalid syntax")),
    ("cpu v=1 +1", NS, Parse("bad timestamp")),
    ("cpu v=1 1.5", NS, Parse("bad timestamp")),
    ("cpu v=1 --1", NS, Parse("bad timestamp")),
    ("cpu v=1  \t 5", NS, TS),
    // Refused by the storage, whatever is stored already.
    ("cpu time=1", NS, Dropped),
    ("cpu time=1,time=2", NS, Dropped),
    ("cpu time=1,v=2", NS, NO_TS),          // the `time` field is left out, `v` stored
    ("cpu v=1,time=2", NS, NO_TS),
    ("cpu v=1,v=\"x\"", NS, Dropped),     // one field, two types in the same point
    ("cpu v=1i,v=2", NS, Dropped),
    ("cpu v=1,v=2", NS, NO_TS),             // same type twice: stored
    ("cpu time=1,time=\"x\",v=1", NS, NO_TS), // `time` fields are left out before the type check
    ("cpu a\\\\=\",b=1\"", NS, Internal),   // the engine reads `1"` as a float: 500
    ("cpu a\\\\=\",b=t1\"", NS, Internal),  // ... or `t1"` as a bool
    ("cpu \\=\\\\=\"=\" 1", NS, Internal),  // a lone `"` string value: influxd 2.7.12 crashes
];

fn decide(line: &[u8], precision: Precision) -> (Expect, Option<LineError>) {
    let results: Vec<_> = lines(line, precision).collect();
    assert_eq!(results.len(), 1, "one line in {:?}", String::from_utf8_lossy(line));
    match results.into_iter().next() {
        Some(Ok(l)) => {
            assert_eq!(l.text, line, "the line is returned whole");
            assert_eq!(l.number, 1);
            (Stored { timestamp: l.has_timestamp }, None)
        }
        Some(Err(e)) => {
            let expect = match e.kind {
                RejectKind::Parse => Parse(""),
                RejectKind::Unprocessable => Dropped,
                RejectKind::Internal => Internal,
            };
            (expect, Some(e))
        }
        None => unreachable!(),
    }
}

#[test]
fn every_table_line_gets_influxd_decision_and_reason() {
    let mut failures = Vec::new();
    for &(line, precision, expect) in TABLE {
        let (got, error) = decide(line.as_bytes(), precision);
        let ok = match (expect, &error) {
            (Parse(reason), Some(e)) => {
                e.kind == RejectKind::Parse
                    && e.reason == reason
                    && e.text == line
                    && e.to_string() == format!("unable to parse '{line}': {reason}")
            }
            _ => got == expect,
        };
        if !ok {
            failures.push(format!("{line:?} ({precision}): expected {expect:?}, got {got:?} {error:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} lines differ:\n{}",
        failures.len(),
        TABLE.len(),
        failures.join("\n")
    );
}

#[test]
fn table_covers_each_reason_influxd_has() {
    let reasons: std::collections::BTreeSet<&str> = TABLE
        .iter()
        .filter_map(|(_, _, e)| if let Parse(r) = e { Some(r.split(':').next().unwrap_or(r)) } else { None })
        .collect();
    for reason in [
        "missing measurement",
        "missing fields",
        "missing tag key",
        "missing tag value",
        "invalid tag format",
        "cannot use reserved tag key \"time\"",
        "duplicate tags",
        "missing field key",
        "missing field value",
        "unbalanced quotes",
        "invalid field format",
        "invalid number",
        "invalid boolean",
        "invalid float",
        "unable to parse integer 9223372036854775808",
        "unable to parse unsigned 18446744073709551616",
        "invalid value",
        "bad timestamp",
        "strconv.ParseInt",
        "time outside range -9223372036854775806 - 9223372036854775806",
        "point is invalid",
    ] {
        assert!(reasons.contains(reason), "no table line for {reason:?}");
    }
}

#[test]
fn reserved_ff_tag_key_is_quoted_like_go() {
    let e = lines(b"cpu,\xff=1 v=1", NS).next().unwrap().unwrap_err();
    assert_eq!(e.reason, "cannot use reserved tag key \"\\xff\"");
    // Go's JSON encoder turns the invalid byte of the quoted line into U+FFFD.
    assert_eq!(e.text, "cpu,\u{fffd}=1 v=1");
}

#[test]
fn key_length_limit_counts_measurement_tags_and_field_key() {
    // MaxKeyLength = 65535 for measurement + tags ...
    let at_limit = format!("{} v=1", "m".repeat(65535 - 4 - 1));
    assert!(lines(at_limit.as_bytes(), NS).next().unwrap().is_ok());
    let key = "m".repeat(65536);
    let e = lines(format!("{key} v=1").as_bytes(), NS).next().unwrap().unwrap_err();
    assert_eq!(e.reason, "max key length exceeded: 65536 > 65535");
    // ... and, per field, key + 4 + field key (the storage's series key).
    let e = lines(format!("{} vv=1", "m".repeat(65530)).as_bytes(), NS).next().unwrap().unwrap_err();
    assert_eq!(e.reason, "max key length exceeded: 65536 > 65535");
}

#[test]
fn long_number_forms_are_range_checked_like_influxd() {
    // Checked from 25 characters on, without an exponent: 309 nines overflow, 308 do not.
    let fits = format!("cpu v={}", "9".repeat(308));
    assert!(lines(fits.as_bytes(), NS).next().unwrap().is_ok());
    let over = format!("cpu v={}", "9".repeat(309));
    assert_eq!(lines(over.as_bytes(), NS).next().unwrap().unwrap_err().reason, "invalid float");
}

#[test]
fn string_values_over_one_mebibyte_are_dropped_by_the_storage() {
    let max = format!("cpu s=\"{}\"", "x".repeat(1_048_576));
    assert!(lines(max.as_bytes(), NS).next().unwrap().is_ok(), "exactly 1 MiB is stored");
    let over = format!("cpu s=\"{}\"", "x".repeat(1_048_577));
    let e = lines(over.as_bytes(), NS).next().unwrap().unwrap_err();
    assert_eq!(e.kind, RejectKind::Unprocessable);
    assert_eq!(e.reason, "input field \"s\" on measurement \"cpu\" is too long, 1048577 > 1048576");
    // The limit applies after unescaping: 1048577 escaped quotes are 2 MiB of text.
    let escaped = format!("cpu s=\"{}\"", "\\\"".repeat(1_048_577));
    assert_eq!(lines(escaped.as_bytes(), NS).next().unwrap().unwrap_err().kind, RejectKind::Unprocessable);
    // 524289 escaped quotes are 1 MiB + 2 of text but 524289 bytes of value: stored.
    let short = format!("cpu s=\"{}\"", "\\\"".repeat(524_289));
    assert!(lines(short.as_bytes(), NS).next().unwrap().is_ok());
}

#[test]
fn a_body_reports_every_parse_error_joined_by_newlines() {
    let body = b"ok v=1\nbad1 v=\nok2 v=2\n  bad2 x\n";
    let err = validate(body, NS).unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(err.code(), crate::influx_error::ErrorCode::Invalid);
    assert_eq!(
        err.message(),
        "unable to parse 'bad1 v=': missing field value\nunable to parse 'bad2 x': invalid field format"
    );
    assert_eq!(err.errors.iter().map(|e| e.number).collect::<Vec<_>>(), vec![2, 4]);
    let influx = err.to_influx_error();
    assert_eq!(influx.status(), 400);
    assert_eq!(influx.message, err.message());
}

#[test]
fn storage_refusals_give_422_or_500_and_parse_errors_win() {
    let err = validate(b"a v=1\ncpu time=1\nb v=2\ncpu2 time=5\n", NS).unwrap_err();
    assert_eq!(err.status(), 422);
    assert_eq!(
        err.message(),
        "failure writing points to database: partial write: invalid field name: input field \"time\" on measurement \"cpu\" is invalid dropped=2"
    );
    let err = validate(b"a v=1\ncpu time=1\nm a\\\\=\",b=1\"\n", NS).unwrap_err();
    assert_eq!(err.status(), 500);
    assert_eq!(
        err.message(),
        "unexpected error writing points to database: engine: unable to parse floating point value \"1\\\"\": strconv.ParseFloat: parsing \"1\\\"\": invalid syntax"
    );
    // Any parse error refuses the body before the storage sees it.
    let err = validate(b"cpu time=1\nbad\n", NS).unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(err.message(), "unable to parse 'bad': missing fields");
    assert_eq!(err.errors.len(), 2, "both refused lines are listed");
}

#[test]
fn blank_lines_comments_and_leading_blanks_are_skipped() {
    let body = b"\n   \n\t\n# a comment v=1\n  # indented comment\n\x00cpu v=1\n\n";
    let got = validate(body, NS).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].text, b"cpu v=1");
    assert_eq!(got[0].number, 6);
    assert!(validate(b"", NS).unwrap().is_empty());
    assert!(validate(b"\n\n# only comments\n", NS).unwrap().is_empty());
}

#[test]
fn a_comment_with_an_open_quote_hides_the_following_lines() {
    // influxd's line cutter sees `="` after a space as an open string: the comment runs on.
    let got = validate(b"# note x=\"\ncpu v=1\nbroken\n", NS).unwrap();
    assert!(got.is_empty(), "nothing after the comment is parsed: {got:?}");
}

#[test]
fn line_numbers_count_newlines_inside_strings() {
    let body = b"a s=\"1\n2\n3\"\nb v=1\n\nc v=\n";
    let results: Vec<_> = lines(body, NS).collect();
    assert_eq!(results[0].as_ref().unwrap().number, 1);
    assert_eq!(results[0].as_ref().unwrap().text, b"a s=\"1\n2\n3\"");
    assert_eq!(results[1].as_ref().unwrap().number, 4);
    assert_eq!(results[2].as_ref().unwrap_err().number, 6);
}

#[test]
fn crlf_bodies_are_refused_unless_each_line_ends_in_a_string() {
    let err = validate(b"a v=1\r\nb v=2\r\n", NS).unwrap_err();
    assert_eq!(
        err.message(),
        "unable to parse 'a v=1\r': invalid number\nunable to parse 'b v=2\r': invalid number"
    );
    let ok = validate(b"a s=\"x\"\r\n", NS).unwrap();
    assert_eq!(ok[0].text, b"a s=\"x\"\r", "the carriage return stays in the line");
}

#[test]
fn write_stamped_appends_the_time_only_where_missing() {
    let body = b"a v=1\nb v=2 5\n  c s=\"x y\" \n";
    let mut out = Vec::new();
    for line in validate(body, S).unwrap() {
        line.write_stamped(1_700_000_000, &mut out);
    }
    assert_eq!(out, b"a v=1 1700000000\nb v=2 5\nc s=\"x y\"  1700000000\n");
    let again = validate(&out, S).unwrap();
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|l| l.has_timestamp));
}

#[test]
fn write_stamped_drops_what_influxd_ignores_after_a_newline() {
    // Leading blank + `="` in the measurement: influxd cuts one line, reads `m="` / `v=1` and
    // ignores `m2 v=2` (its timestamp scan stops at the newline).
    let body = b" m=\" v=1 \nm2 v=2";
    let got = validate(body, NS).unwrap();
    assert_eq!(got.len(), 1);
    assert!(!got[0].has_timestamp);
    let mut out = Vec::new();
    got[0].write_stamped(42, &mut out);
    assert_eq!(out, b"m=\" v=1 42\n");
    let again = validate(&out, NS).unwrap();
    assert_eq!(again.len(), 1);
    assert!(again[0].has_timestamp);
}

/// CI found `\a a=""\` (proptest): a line that ends with a lone backslash took the stamp as
/// `\a a=""\ 7`, where the backslash escapes the space and the stamp is read as part of the
/// fields, so the point had no timestamp again.
#[test]
fn write_stamped_a_line_ending_in_a_lone_backslash_keeps_its_stamp() {
    for (body, stamped) in [
        (&b"\\a a=\"\"\\"[..], &b"\\a a=\"\"_ 7\n"[..]),
        (b"m s=\"x\"y\\\\\\", b"m s=\"x\"y\\\\_ 7\n"),
        (b"m s=\"x\"\\\\", b"m s=\"x\"\\\\ 7\n"),
    ] {
        let got = validate(body, NS).unwrap();
        assert_eq!(got.len(), 1, "{}", String::from_utf8_lossy(body));
        let mut out = Vec::new();
        got[0].write_stamped(7, &mut out);
        assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(stamped));
        let again = validate(&out, NS).unwrap();
        assert_eq!(again.len(), 1);
        assert!(again[0].has_timestamp, "{:?}", again[0]);
    }
}

#[test]
fn split_lines_keeps_every_line_including_comments() {
    let body = b"a v=1\n# c\n\nb s=\"x\ny\"\n";
    let raw: Vec<_> = split_lines(body).map(|l| (l.bytes, l.start, l.number)).collect();
    assert_eq!(
        raw,
        vec![(&b"a v=1"[..], 0, 1), (&b"# c"[..], 6, 2), (&b""[..], 10, 3), (&b"b s=\"x\ny\""[..], 11, 4)]
    );
}

#[test]
fn line_error_display_is_influxd_message_for_the_line_alone() {
    let parse = lines(b"cpu v=x", NS).next().unwrap().unwrap_err();
    assert_eq!(parse.to_string(), "unable to parse 'cpu v=x': invalid boolean");
    let dropped = lines(b"cpu time=1", NS).next().unwrap().unwrap_err();
    assert_eq!(
        dropped.to_string(),
        "failure writing points to database: partial write: invalid field name: input field \"time\" on measurement \"cpu\" is invalid dropped=1"
    );
    let body_error = BodyError { errors: vec![dropped.clone()] };
    assert_eq!(body_error.message(), dropped.to_string());
}

// ---- properties ----

/// A measurement, tag key/value or field key: printable ASCII and some UTF-8, with the bytes that
/// need escaping escaped.
fn name(escapes: &'static [char]) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            8 => proptest::char::range('a', 'z'),
            1 => Just('é'),
            1 => proptest::sample::select(vec![' ', ',', '=', '"', '.', '-', '#']),
        ],
        1..8,
    )
    .prop_map(move |chars| {
        let mut out = String::new();
        for (i, c) in chars.into_iter().enumerate() {
            // A line may not start with `#` (a comment); keep `"` off the first byte too.
            if i == 0 && (c == '#' || c == '"') {
                out.push('x');
            }
            if escapes.contains(&c) {
                out.push('\\');
            }
            out.push(c);
        }
        out
    })
    .prop_filter("reserved tag keys", |s| !matches!(s.as_str(), "time" | "_field" | "_measurement"))
}

/// A field value of any type, as line protocol text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:?}")),
        any::<i64>().prop_map(|i| format!("{i}i")),
        any::<u64>().prop_map(|u| format!("{u}u")),
        proptest::sample::select(vec!["t", "T", "true", "True", "TRUE", "f", "F", "false", "False", "FALSE"])
            .prop_map(str::to_string),
        proptest::collection::vec(
            prop_oneof![
                6 => proptest::char::range(' ', '~'),
                1 => Just('\n'),
                1 => Just('é'),
            ],
            0..12
        )
        .prop_map(|chars| {
            let s: String = chars.into_iter().collect();
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
        }),
    ]
}

prop_compose! {
    fn valid_line()(
        measurement in name(&[' ', ',']),
        tags in proptest::collection::btree_map(name(&[' ', ',', '=']), name(&[' ', ',', '=']), 0..4),
        fields in proptest::collection::vec((name(&[' ', ',', '=']), value()), 1..5),
        timestamp in proptest::option::of(-9_223_372_036_854_775_806i64..=9_223_372_036_854_775_806),
    ) -> (String, bool) {
        let mut line = measurement;
        for (k, v) in &tags {
            line.push_str(&format!(",{k}={v}"));
        }
        line.push(' ');
        let fields: Vec<String> = fields.iter().enumerate().map(|(i, (k, v))| format!("{k}{i}={v}")).collect();
        line.push_str(&fields.join(","));
        if let Some(ts) = timestamp {
            line.push_str(&format!(" {ts}"));
        }
        (line, timestamp.is_some())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn generated_valid_lines_are_accepted_and_returned_exactly(
        generated in proptest::collection::vec(valid_line(), 1..8),
        crlf_free_blank in proptest::sample::select(vec!["", "\n", "# comment\n", "  \n"]),
    ) {
        let mut body = String::new();
        let mut expected_numbers = Vec::new();
        let mut number = 1;
        for (line, _) in &generated {
            body.push_str(crlf_free_blank);
            number += crlf_free_blank.matches('\n').count();
            expected_numbers.push(number);
            body.push_str(line);
            body.push('\n');
            number += line.matches('\n').count() + 1;
        }
        let got = validate(body.as_bytes(), NS);
        prop_assert!(got.is_ok(), "refused: {:?}", got.err().map(|e| e.message()));
        let got = got.unwrap_or_default();
        prop_assert_eq!(got.len(), generated.len());
        for ((line, ts), (parsed, number)) in generated.iter().zip(got.iter().zip(expected_numbers)) {
            prop_assert_eq!(parsed.text, line.as_bytes());
            prop_assert_eq!(parsed.has_timestamp, *ts);
            prop_assert_eq!(parsed.number, number);
        }
    }

    #[test]
    fn splitting_never_cuts_inside_a_quoted_string(
        generated in proptest::collection::vec(valid_line(), 1..8),
    ) {
        let body: String = generated.iter().map(|(l, _)| format!("{l}\n")).collect();
        let pieces: Vec<&[u8]> = split_lines(body.as_bytes()).map(|l| l.bytes).collect();
        let expected: Vec<&[u8]> = generated.iter().map(|(l, _)| l.as_bytes()).collect();
        prop_assert_eq!(pieces, expected);
    }

    #[test]
    fn any_bytes_never_panic_and_splitting_loses_nothing(
        body in proptest::collection::vec(
            prop_oneof![
                4 => proptest::sample::select(b"ab =,\"\\\n\r\t#1.-eiutf".to_vec()),
                1 => any::<u8>(),
            ],
            0..64,
        ),
    ) {
        let results: Vec<_> = lines(&body, NS).collect();
        for line in results.iter().flatten() {
            prop_assert!(!line.text.is_empty());
        }
        let _ = validate(&body, S);
        // The pieces tile the body, each ended by one newline (the last one possibly by the end).
        let mut pos = 0;
        for piece in split_lines(&body) {
            prop_assert_eq!(piece.start, pos);
            prop_assert_eq!(&body[pos..pos + piece.bytes.len()], piece.bytes);
            pos += piece.bytes.len();
            if pos < body.len() {
                prop_assert_eq!(body[pos], b'\n');
                pos += 1;
            }
        }
        prop_assert_eq!(pos, body.len());
    }

    #[test]
    fn stamped_lines_read_back_as_the_same_number_of_stamped_points(
        body in proptest::collection::vec(
            prop_oneof![
                6 => proptest::sample::select(b"ab =,\"\\\n\t1.-tf".to_vec()),
                1 => proptest::sample::select(vec![b'x', b'#', 0u8]),
            ],
            0..48,
        ),
    ) {
        let accepted: Vec<Line<'_>> = lines(&body, NS).filter_map(Result::ok).collect();
        let mut out = Vec::new();
        for line in &accepted {
            line.write_stamped(7, &mut out);
        }
        let again: Vec<_> = lines(&out, NS).collect();
        prop_assert_eq!(again.len(), accepted.len(), "re-read of {:?}", String::from_utf8_lossy(&out));
        for line in again {
            prop_assert!(line.as_ref().map(|l| l.has_timestamp).unwrap_or(false), "{:?}", line);
        }
    }
}

#[test]
fn rescale_rewrites_only_the_timestamp_digits() {
    let body = b"cpu,host=a v=1 1700000001\n# comment\n\n  mem s=\"a b\nc 5\",i=2i -3  \nw\\ x v=1 7\n";
    let out = rescale(body, Precision::Seconds, Precision::Nanoseconds).unwrap();
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "cpu,host=a v=1 1700000001000000000\nmem s=\"a b\nc 5\",i=2i -3000000000  \nw\\ x v=1 7000000000\n"
    );
    // influxd reads the same points from both.
    let before = validate(body, Precision::Seconds).unwrap().len();
    assert_eq!(validate(&out, Precision::Nanoseconds).unwrap().len(), before);
    let ms = rescale(b"m v=1 1700000001234\n", Precision::Milliseconds, Precision::Microseconds).unwrap();
    assert_eq!(ms, b"m v=1 1700000001234000\n");
    assert_eq!(rescale(b"m v=1 5\n", Precision::Nanoseconds, Precision::Nanoseconds).unwrap(), b"m v=1 5\n");
}

#[test]
fn rescale_refuses_what_it_cannot_rewrite_exactly() {
    assert_eq!(
        rescale(b"m v=1 5\nm v=2\n", Precision::Seconds, Precision::Nanoseconds),
        Err(RescaleError::Line { number: 2 }),
        "a line without a timestamp takes the server's time"
    );
    assert_eq!(
        rescale(b"m v=\n", Precision::Seconds, Precision::Nanoseconds),
        Err(RescaleError::Line { number: 1 }),
        "a line influxd refuses"
    );
    assert!(matches!(
        rescale(b"m v=1 5\n", Precision::Nanoseconds, Precision::Seconds),
        Err(RescaleError::Coarser { .. })
    ));
    // Out of range in seconds: influxd refuses it; rewritten it would be a different point.
    assert!(rescale(b"m v=1 9300000000\n", Precision::Seconds, Precision::Nanoseconds).is_err());
}
