//! One row of a raw Flux result (`from |> range`) as one line-protocol point, types kept exact.
//!
//! A raw row is one field value of one series: `_measurement`, the tag columns (the table's
//! group key minus `_start`/`_stop`/`_measurement`/`_field`), `_field`, `_value` typed by its
//! `#datatype`, and `_time`. Encoding (influxdb-v2-protocol.md §5):
//!
//! | datatype | line protocol |
//! |---|---|
//! | long | `<v>i` |
//! | unsignedLong | `<v>u` |
//! | double | `<v>` (Flux writes shortest round-trip decimals) |
//! | boolean | `true` / `false` |
//! | string | `"<v>"` with `"` and `\` escaped |
//!
//! Measurements escape comma and space; tag keys, tag values and field keys escape comma, `=`
//! and space. Timestamps are written in nanoseconds. A row whose `_value` is empty (null) has no
//! field to write and is skipped.

use crate::influx::annotated_csv::{Columns, DataType, Row, parse_time_ns};

/// Why a row cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointError {
    #[error(
        "the CSV has no {0} column; it must come from a raw query (from |> range), as influx query --raw writes it"
    )]
    MissingColumn(&'static str),
    #[error("row at byte {offset}: invalid time {text:?}")]
    Time { offset: u64, text: String },
    #[error("row at byte {offset}: a {datatype} value {text:?} cannot be written as line protocol")]
    Value { offset: u64, datatype: String, text: String },
}

/// The columns a row needs, checked once per block.
pub fn check_columns(c: &Columns) -> Result<(usize, usize, usize, usize), PointError> {
    Ok((
        c.measurement.ok_or(PointError::MissingColumn("_measurement"))?,
        c.field.ok_or(PointError::MissingColumn("_field"))?,
        c.value.ok_or(PointError::MissingColumn("_value"))?,
        c.time.ok_or(PointError::MissingColumn("_time"))?,
    ))
}

fn escape_into(out: &mut Vec<u8>, s: &[u8], specials: &[u8]) {
    if !s.iter().any(|b| specials.contains(b)) {
        out.extend_from_slice(s);
        return;
    }
    for &b in s {
        if specials.contains(&b) {
            out.push(b'\\');
        }
        out.push(b);
    }
}

const MEASUREMENT: &[u8] = b", ";
const KEY: &[u8] = b",= ";

/// Appends `row` as a line (with its `\n`) to `out`; false when the row has no value.
pub fn encode(row: &Row<'_>, out: &mut Vec<u8>) -> Result<bool, PointError> {
    Ok(encode_parts(row, out)?.is_some())
}

/// Where the parts of a line [`encode_parts`] appended are, as offsets into its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineParts {
    /// The series key: measurement and tags, escaped (`m,host=a`).
    pub series: (usize, usize),
    /// The field key, escaped.
    pub field: (usize, usize),
    /// The value as line protocol writes it (`1i`, `2.5`, `"s"`, `true`).
    pub value: (usize, usize),
    /// The time, nanoseconds.
    pub ns: i64,
}

/// As [`encode`], and says where the series key, field key and value are in the line; `None`
/// when the row has no value.
pub fn encode_parts(row: &Row<'_>, out: &mut Vec<u8>) -> Result<Option<LineParts>, PointError> {
    let c = row.columns;
    let (mi, fi, vi, ti) = check_columns(c)?;
    let value = row.cell(vi);
    if value.is_empty() {
        return Ok(None);
    }
    let time_text = row.cell(ti);
    let ns = parse_time_ns(time_text).ok_or_else(|| PointError::Time {
        offset: row.offset,
        text: String::from_utf8_lossy(time_text).into_owned(),
    })?;
    let start = out.len();
    escape_into(out, row.cell(mi), MEASUREMENT);
    for (i, key) in &c.tags {
        let v = row.cell(*i);
        if v.is_empty() {
            continue;
        }
        out.push(b',');
        escape_into(out, key.as_bytes(), KEY);
        out.push(b'=');
        escape_into(out, v, KEY);
    }
    let series = (start, out.len());
    out.push(b' ');
    let field_start = out.len();
    escape_into(out, row.cell(fi), KEY);
    let field = (field_start, out.len());
    out.push(b'=');
    let value_start = out.len();
    let bad = |out: &mut Vec<u8>| {
        out.truncate(start);
        PointError::Value {
            offset: row.offset,
            datatype: c.datatypes[vi].to_string(),
            text: String::from_utf8_lossy(value).into_owned(),
        }
    };
    match c.datatypes[vi] {
        DataType::Long => {
            if !is_integer(value) {
                return Err(bad(out));
            }
            out.extend_from_slice(value);
            out.push(b'i');
        }
        DataType::UnsignedLong => {
            if !value.iter().all(u8::is_ascii_digit) {
                return Err(bad(out));
            }
            out.extend_from_slice(value);
            out.push(b'u');
        }
        DataType::Double => {
            // NaN and infinities have no line-protocol form (and influxd never stores them).
            if value.iter().any(|b| b.is_ascii_alphabetic() && !matches!(b, b'e' | b'E')) {
                return Err(bad(out));
            }
            out.extend_from_slice(value);
        }
        DataType::Boolean => match value {
            b"true" => out.extend_from_slice(b"true"),
            b"false" => out.extend_from_slice(b"false"),
            _ => return Err(bad(out)),
        },
        DataType::String | DataType::Other | DataType::DateTime | DataType::Duration => {
            out.push(b'"');
            // Flux writes CSV with CRLF line ends (Go's csv.Writer with UseCRLF), which turns
            // every `\n` inside a value into `\r\n` and drops every `\r`: so `\r\n` in a cell
            // was `\n` in the database. (A carriage return itself cannot survive a CSV export;
            // the native backup path keeps it.)
            if memchr::memmem::find(value, b"\r\n").is_some() {
                let fixed: Vec<u8> = unix_newlines(value);
                escape_into(out, &fixed, b"\"\\");
            } else {
                escape_into(out, value, b"\"\\");
            }
            out.push(b'"');
        }
    }
    let value_at = (value_start, out.len());
    use std::io::Write as _;
    let _ = writeln!(out, " {ns}");
    Ok(Some(LineParts { series, field, value: value_at, ns }))
}

/// `\r\n` → `\n`.
fn unix_newlines(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'\r' && v.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

fn is_integer(v: &[u8]) -> bool {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influx::annotated_csv::{AnnotatedCsv, CsvError};

    #[derive(Debug)]
    #[allow(dead_code)] // the payloads are read through Debug in failure messages
    enum E {
        Csv(CsvError),
        Point(PointError),
    }
    impl From<CsvError> for E {
        fn from(e: CsvError) -> Self {
            E::Csv(e)
        }
    }

    fn lines(csv_text: &str) -> Result<String, E> {
        let mut csv = AnnotatedCsv::new(true);
        let mut out = Vec::new();
        let mut on_row = |row: &Row<'_>| -> Result<(), E> {
            encode(row, &mut out).map_err(E::Point)?;
            Ok(())
        };
        csv.push(csv_text.as_bytes(), &mut on_row)?;
        csv.push(b"", &mut on_row)?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn table(datatype: &str, value: &str) -> String {
        format!(
            "#group,false,false,true,true,false,false,true,true,true\r\n\
#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,{datatype},string,string,string\r\n\
#default,_result,,,,,,,,\r\n\
,result,table,_start,_stop,_time,_value,_field,_measurement,host\r\n\
,,0,1970-01-01T00:00:00Z,2262-01-01T00:00:00Z,2020-01-01T00:00:00.000000001Z,{value},f,m,h1\r\n"
        )
    }

    #[test]
    fn each_type_keeps_its_line_protocol_form() {
        let t = "m,host=h1 f=";
        let ts = " 1577836800000000001\n";
        assert_eq!(lines(&table("long", "-42")).unwrap(), format!("{t}-42i{ts}"));
        assert_eq!(
            lines(&table("unsignedLong", "18446744073709551615")).unwrap(),
            format!("{t}18446744073709551615u{ts}")
        );
        assert_eq!(lines(&table("double", "1.5")).unwrap(), format!("{t}1.5{ts}"));
        assert_eq!(
            lines(&table("double", "100000000000000000000000")).unwrap(),
            format!("{t}100000000000000000000000{ts}")
        );
        assert_eq!(lines(&table("boolean", "true")).unwrap(), format!("{t}true{ts}"));
        assert_eq!(
            lines(&table("string", "\"say \"\"hi\"\" \\ there\"")).unwrap(),
            format!("{t}\"say \\\"hi\\\" \\\\ there\"{ts}")
        );
        // A newline inside a value, as Flux's CRLF CSV writes it.
        assert_eq!(lines(&table("string", "\"a\r\nb\"")).unwrap(), format!("{t}\"a\nb\"{ts}"));
    }

    #[test]
    fn names_are_escaped_and_empty_tags_left_out() {
        let text = "#group,false,false,true,true,false,false,true,true,true,true\r\n\
#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,long,string,string,string,string\r\n\
#default,_result,,,,,,,,,\r\n\
,result,table,_start,_stop,_time,_value,_field,_measurement,zone,a key\r\n\
,,0,1970-01-01T00:00:00Z,2262-01-01T00:00:00Z,1970-01-01T00:00:01Z,1,\"f,=x\",\"my m,1\",,\"v=1,2\"\r\n";
        assert_eq!(lines(text).unwrap(), "my\\ m\\,1,a\\ key=v\\=1\\,2 f\\,\\=x=1i 1000000000\n");
    }

    #[test]
    fn nulls_are_skipped_and_nonsense_refused() {
        assert_eq!(lines(&table("long", "")).unwrap(), "");
        assert!(matches!(lines(&table("double", "NaN")), Err(E::Point(PointError::Value { .. }))));
        assert!(matches!(lines(&table("long", "1.5")), Err(E::Point(PointError::Value { .. }))));
    }
}
