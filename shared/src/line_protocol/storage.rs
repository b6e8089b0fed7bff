//! What influxd 2.7.12's storage does with a line its parser accepted, when the answer depends
//! on the line alone (never on data already stored).
//!
//! After `ParsePointsWithPrecision`, the write goes through the shard (`tsdb/shard.go`
//! `validateSeriesAndFields`, `tsdb/field_validator.go` `ValidateAndCreateFields`) and the TSM
//! engine (`tsdb/engine/tsm1/engine.go` `WritePoints`). Those re-read the field section with the
//! point's field iterator (`models.(*point).Next`: `scanTo` + `scanFieldValue`, key unescaped
//! with `pkg/escape.AppendUnescaped`, type guessed from the value's first and last byte) and:
//! - drop a point whose every field key is `time`: 422 `partial write: invalid field name: input
//!   field "time" on measurement "<m>" is invalid dropped=N` (fields named `time` next to other
//!   fields are silently left out);
//! - drop a point with a string value longer than `MaxFieldValueLength` = 1 MiB (1048576 bytes,
//!   not the 64 KiB the docs mention): 422 `input field "<k>" on measurement "<m>" is too long,
//!   <n> > 1048576`;
//! - drop a point that gives one field two types (`v=1,v="x"`): the first creates the field, the
//!   second conflicts with it, 422 `field type conflict: input field "v" on measurement "m" is
//!   type string, already exists as type float` (found by the differential test);
//! - fail the whole write with 500 `unexpected error writing points to database: engine: ...`
//!   when the iterator cannot convert a value (`unable to parse floating point value ...`) or
//!   sees an empty one (`unknown field type for ...`);
//! - **crash**: a string value that the iterator sees as a lone `"` makes `StringValue()` panic
//!   in a points-writer goroutine; nothing recovers it and influxd exits (seen on the real
//!   2.7.12 with `m \=\\="=" 1`). Such a line must never reach a database.
//!
//! The parser and the iterator only disagree on field keys holding an even run of backslashes
//! before `=` (e.g. `a\\=",b=1"`), so real clients never get here; the last two cases are
//! reported as [`RejectKind::Internal`].
//!
//! Type conflicts with stored data, or between two lines of one body (which also depend on the
//! shard each line's time falls in), retention and series limits depend on the database and are
//! left to the database.

use super::go_text::{self, NumError};
use super::point::{self, Parsed};
use super::reject::RejectKind;

/// `tsdb.MaxFieldValueLength`.
pub(super) const MAX_FIELD_VALUE_LENGTH: usize = 1_048_576;

/// The storage's verdict on a parsed line: `None` when it stores it.
pub(super) fn check(
    line: &[u8],
    parsed: &Parsed,
    precision: super::Precision,
) -> Option<(RejectKind, Vec<u8>)> {
    let fields = &line[parsed.fields_start..parsed.fields_end];
    // With plain fields the iterator sees exactly the parser's fields, whose values the parser
    // already validated; only an all-`time` point or a giant string can then be refused.
    let may_refuse = !parsed.plain_fields
        || parsed.repeated_field_key
        || fields.starts_with(b"time=")
        || fields.len() > MAX_FIELD_VALUE_LENGTH + 2;
    if !may_refuse {
        return None;
    }
    let name = || measurement_name(&line[..parsed.key_end]);

    // validateSeriesAndFields: "Skip any points with only invalid fields."
    if fields_of(fields).all(|f| f.key.as_ref() == b"time") {
        let mut reason = b"invalid field name: input field \"time\" on measurement \"".to_vec();
        reason.extend_from_slice(&name());
        reason.push(b'"');
        reason.extend_from_slice(b" is invalid");
        return Some((RejectKind::Unprocessable, reason));
    }
    // ValidateAndCreateFields, field by field: the size check (string fields, `time` included;
    // it only reads values when the point's text is over the limit: `StringSize()` with the
    // time's digits, which 20 bytes cover), then, `time` and empty values left out, the field's
    // type against the types created so far — by this very point too: `v=1,v="x"` is refused.
    let point_size = parsed.key_end + 1 + fields.len() + 20;
    let mut created: Vec<(std::borrow::Cow<'_, [u8]>, &'static str)> = Vec::new();
    for field in fields_of(fields) {
        if point_size > MAX_FIELD_VALUE_LENGTH && field.value.first() == Some(&b'"') {
            if field.value == b"\"" {
                // StringValue() panics on a lone quote (see the module doc): influxd exits.
                return Some((RejectKind::Internal, lone_quote(&field.key)));
            }
            let size = unescaped_string_len(field.value);
            if size > MAX_FIELD_VALUE_LENGTH {
                let mut reason = b"input field ".to_vec();
                go_text::quote_into(&field.key, &mut reason);
                reason.extend_from_slice(b" on measurement ");
                go_text::quote_into(&name(), &mut reason);
                reason
                    .extend_from_slice(format!(" is too long, {size} > {MAX_FIELD_VALUE_LENGTH}").as_bytes());
                return Some((RejectKind::Unprocessable, reason));
            }
        }
        let Some(kind) = type_name(field.value).filter(|_| field.key.as_ref() != b"time") else {
            continue;
        };
        match created.iter().find(|(key, _)| key.as_ref() == field.key.as_ref()) {
            Some((_, existing)) if *existing != kind => {
                let mut reason = b"field type conflict: input field ".to_vec();
                go_text::quote_into(&field.key, &mut reason);
                reason.extend_from_slice(b" on measurement ");
                go_text::quote_into(&name(), &mut reason);
                reason.extend_from_slice(
                    format!(" is type {kind}, already exists as type {existing}").as_bytes(),
                );
                return Some((RejectKind::Unprocessable, reason));
            }
            Some(_) => {}
            None => created.push((field.key.clone(), kind)),
        }
    }
    // tsm1 Engine.WritePoints: every non-`time` value must convert to its guessed type.
    for field in fields_of(fields) {
        if field.key.as_ref() == b"time" {
            continue;
        }
        if let Some(reason) = engine_conversion_error(&field, || point_text(line, parsed, precision)) {
            return Some((RejectKind::Internal, reason));
        }
    }
    None
}

/// The reason given for a value the engine would read as a lone `"`.
fn lone_quote(key: &[u8]) -> Vec<u8> {
    let mut reason = b"engine: string value of field ".to_vec();
    go_text::quote_into(key, &mut reason);
    reason.extend_from_slice(b" is a lone '\"' (influxd 2.7.12 panics and exits on this line)");
    reason
}

/// The influxql type name of the type `(*point).Next` guesses for a value; `None` for an empty
/// value (type `Empty`, which `ValidateAndCreateFields` skips).
fn type_name(value: &[u8]) -> Option<&'static str> {
    let first = *value.first()?;
    Some(match first {
        b'"' => "string",
        _ if b"0123456789-.nNiIu".contains(&first) => match value.last() {
            Some(b'i') => "integer",
            Some(b'u') => "unsigned",
            _ => "float",
        },
        _ => "boolean",
    })
}

/// `(*point).String()`: key, fields and the time in ns. The key is the line's (influxd would
/// show its tags sorted) and a line without a timestamp shows no time (influxd shows the server
/// time); only the text of an "unknown field type" message depends on it.
fn point_text(line: &[u8], parsed: &Parsed, precision: super::Precision) -> Vec<u8> {
    let mut out = line[..parsed.key_end].to_vec();
    out.push(b' ');
    out.extend_from_slice(&line[parsed.fields_start..parsed.fields_end]);
    if let Some((s, e)) = parsed.timestamp
        && let Ok(ts) = go_text::parse_int(&line[s..e])
    {
        out.extend_from_slice(format!(" {}", ts.saturating_mul(precision.nanos_per_unit())).as_bytes());
    }
    out
}

/// One field as the point's field iterator sees it.
struct Field<'a> {
    /// Unescaped (`AppendUnescaped`) when it holds an escape.
    key: std::borrow::Cow<'a, [u8]>,
    value: &'a [u8],
}

/// `(*point).Next` over the field section.
fn fields_of(fields: &[u8]) -> impl Iterator<Item = Field<'_>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= fields.len() {
            return None;
        }
        let eq = point::scan_to(fields, pos, b'=');
        let raw_key = &fields[pos..eq];
        let value_start = (eq + 1).min(fields.len());
        let value_end = point::scan_field_value(fields, value_start);
        pos = value_end + 1;
        let key = if is_escaped(raw_key) {
            std::borrow::Cow::Owned(append_unescaped(raw_key))
        } else {
            std::borrow::Cow::Borrowed(raw_key)
        };
        Some(Field { key, value: &fields[value_start..value_end] })
    })
}

/// `pkg/escape.IsEscaped`: a backslash before one of `,`, `"`, space, `=`.
fn is_escaped(b: &[u8]) -> bool {
    b.windows(2).any(|w| w[0] == b'\\' && matches!(w[1], b',' | b'"' | b' ' | b'='))
}

/// `pkg/escape.AppendUnescaped`: drops a backslash that precedes `,`, `"`, space or `=`.
fn append_unescaped(src: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(src.len());
    let mut i = 0;
    while i < src.len() {
        if src[i] == b'\\' && i + 1 < src.len() && matches!(src[i + 1], b',' | b'"' | b' ' | b'=') {
            i += 1;
            continue;
        }
        out.push(src[i]);
        i += 1;
    }
    out
}

/// The measurement as `(*point).Name()` returns it: the key up to the first comma not preceded
/// by a backslash, unescaped by `pkg/escape.Unescape` (`\,` `\"` `\ ` `\=`).
fn measurement_name(key: &[u8]) -> Vec<u8> {
    append_unescaped(&key[..point::scan_to(key, 0, b',')])
}

/// Length of `(*point).StringValue()`: the value without its first and last byte, with `\\` and
/// `\"` read as one byte (`unescapeStringField`).
fn unescaped_string_len(value: &[u8]) -> usize {
    if value.len() < 2 {
        return 0;
    }
    let inner = &value[1..value.len() - 1];
    let mut n = 0;
    let mut i = 0;
    while i < inner.len() {
        if inner[i] == b'\\' && i + 1 < inner.len() && matches!(inner[i + 1], b'\\' | b'"') {
            i += 2;
        } else {
            i += 1;
        }
        n += 1;
    }
    n
}

/// The engine's conversion of one value by its guessed type (`(*point).Next` then
/// `FloatValue`/`IntegerValue`/`UnsignedValue`/`BooleanValue`), as influxd's 500 reason.
fn engine_conversion_error(field: &Field<'_>, point_text: impl FnOnce() -> Vec<u8>) -> Option<Vec<u8>> {
    let value = field.value;
    let Some(&first) = value.first() else {
        // Type `Empty`: "unknown field type for %s: %s" with the point's text.
        let mut reason = b"engine: unknown field type for ".to_vec();
        reason.extend_from_slice(&field.key);
        reason.extend_from_slice(b": ");
        reason.extend_from_slice(&point_text());
        return Some(reason);
    };
    if first == b'"' {
        // `StringValue()` slices `valueBuf[1 : len(valueBuf)-1]`: a lone `"` panics with "slice
        // bounds out of range" in a goroutine of the points writer, which nothing recovers, so
        // influxd 2.7.12 exits and the client gets no answer at all.
        return (value.len() == 1).then(|| lone_quote(&field.key));
    }
    let (what, func, digits, result): (&str, &str, &[u8], Result<(), NumError>) = match type_name(value) {
        Some("integer") => {
            let d = &value[..value.len() - 1];
            ("integer", "ParseInt", d, go_text::parse_int(d).map(drop))
        }
        Some("unsigned") => {
            let d = &value[..value.len() - 1];
            ("unsigned", "ParseUint", d, go_text::parse_uint(d).map(drop))
        }
        Some("float") => ("floating point", "ParseFloat", value, go_text::parse_float(value).map(drop)),
        _ => ("bool", "ParseBool", value, go_text::parse_bool(value).map(drop)),
    };
    let err = result.err()?;
    let mut reason = format!("engine: unable to parse {what} value ").into_bytes();
    go_text::quote_into(digits, &mut reason);
    reason.extend_from_slice(b": ");
    reason.extend_from_slice(&err.message(func, digits));
    Some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_matches_pkg_escape() {
        assert_eq!(append_unescaped(b"a\\ b"), b"a b");
        assert_eq!(append_unescaped(b"a\\\\=1,b"), b"a\\=1,b");
        assert_eq!(append_unescaped(b"a\\tb"), b"a\\tb");
        assert!(is_escaped(b"a\\=b"));
        assert!(!is_escaped(b"a\\tb"));
        assert_eq!(measurement_name(b"m\\,x\\ y,t=1"), b"m,x y");
    }

    #[test]
    fn string_length_counts_escape_pairs_once() {
        assert_eq!(unescaped_string_len(b"\"abc\""), 3);
        assert_eq!(unescaped_string_len(b"\"a\\\"b\\\\c\""), 5);
        assert_eq!(unescaped_string_len(b"\"a\\nb\""), 4);
    }
}
