//! Parsing one line the way influxd 2.7.12's `models.parsePoint` does, to the same accept/reject
//! decision and the same reason text.
//!
//! Every function here is a port of the Go function it names (models/points.go at v2.7.12),
//! keeping its exact byte rules, including the ones that look accidental, because the contract is
//! "decide as influxd decides":
//! - escapes are checked differently in each scanner: the measurement and tag scanners treat a
//!   byte as escaped when the *previous byte* is `\` (so `\\,` is an escaped comma), while
//!   `scanFields` skips `\` + any byte as a pair;
//! - `walkFields` re-reads the fields with `scanTo`/`scanFieldValue`, whose escape rules differ
//!   again, and reports `invalid value: field-key=...` when it finds no `=` for a field;
//! - integers are range-checked only from 19 characters, unsigned from 20, floats only when in
//!   scientific notation or 25+ characters (shorter forms are always in range);
//! - after a timestamp only spaces may follow; without a timestamp nothing after the fields is
//!   checked if the timestamp scanner stopped at a newline.
//!
//! The parser never allocates on the success path; errors carry byte ranges and are rendered to
//! influxd's text only when asked.

use super::Precision;
use super::go_text::{self, NumError};

/// `models.MaxKeyLength`.
pub(super) const MAX_KEY_LENGTH: usize = 65535;
/// `models.MinNanoTime` / `MaxNanoTime` (models/time.go): the two lowest int64 values and the
/// highest are sentinels influxd keeps for itself.
pub(super) const MIN_NANO_TIME: i64 = i64::MIN + 2;
pub(super) const MAX_NANO_TIME: i64 = i64::MAX - 1;

/// Why influxd's parser refuses a line. Byte ranges point into the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    MissingMeasurement,
    MissingFields,
    MissingTagKey,
    MissingTagValue,
    InvalidTagFormat,
    /// `cannot use reserved tag key %q`; the Go-quoted key.
    ReservedTagKey(&'static str),
    DuplicateTags,
    MaxKeyLength(usize),
    MissingFieldKey,
    MissingFieldValue,
    UnbalancedQuotes,
    InvalidFieldFormat,
    InvalidNumber,
    InvalidBoolean,
    InvalidFloat,
    /// `unable to parse integer %s: %s`, digits range.
    IntegerRange(usize, usize),
    /// `unable to parse unsigned %s: %s`, digits range.
    UnsignedRange(usize, usize),
    /// `invalid value: field-key=%s`, key range.
    FieldWithoutValue(usize, usize),
    BadTimestamp,
    /// `strconv.ParseInt` refused the timestamp (range of the timestamp).
    TimestampNumber(NumError, usize, usize),
    TimeOutOfRange,
    InvalidPoint,
}

impl Reason {
    /// influxd's text for this reason (`err.Error()` in `ParsePointsWithPrecision`), as bytes:
    /// Go formats with `%s`, so invalid UTF-8 in the line passes through.
    pub(super) fn render(&self, line: &[u8]) -> Vec<u8> {
        let fixed = |s: &str| s.as_bytes().to_vec();
        match *self {
            Reason::MissingMeasurement => fixed("missing measurement"),
            Reason::MissingFields => fixed("missing fields"),
            Reason::MissingTagKey => fixed("missing tag key"),
            Reason::MissingTagValue => fixed("missing tag value"),
            Reason::InvalidTagFormat => fixed("invalid tag format"),
            Reason::ReservedTagKey(quoted) => fixed(&format!("cannot use reserved tag key {quoted}")),
            Reason::DuplicateTags => fixed("duplicate tags"),
            Reason::MaxKeyLength(n) => fixed(&format!("max key length exceeded: {n} > {MAX_KEY_LENGTH}")),
            Reason::MissingFieldKey => fixed("missing field key"),
            Reason::MissingFieldValue => fixed("missing field value"),
            Reason::UnbalancedQuotes => fixed("unbalanced quotes"),
            Reason::InvalidFieldFormat => fixed("invalid field format"),
            Reason::InvalidNumber => fixed("invalid number"),
            Reason::InvalidBoolean => fixed("invalid boolean"),
            Reason::InvalidFloat => fixed("invalid float"),
            Reason::IntegerRange(s, e) => {
                let mut out = b"unable to parse integer ".to_vec();
                out.extend_from_slice(&line[s..e]);
                out.extend_from_slice(b": ");
                out.extend_from_slice(&NumError::Range.message("ParseInt", &line[s..e]));
                out
            }
            Reason::UnsignedRange(s, e) => {
                let mut out = b"unable to parse unsigned ".to_vec();
                out.extend_from_slice(&line[s..e]);
                out.extend_from_slice(b": ");
                out.extend_from_slice(&NumError::Range.message("ParseUint", &line[s..e]));
                out
            }
            Reason::FieldWithoutValue(s, e) => {
                let mut out = b"invalid value: field-key=".to_vec();
                out.extend_from_slice(&line[s..e]);
                out
            }
            Reason::BadTimestamp => fixed("bad timestamp"),
            Reason::TimestampNumber(kind, s, e) => kind.message("ParseInt", &line[s..e]),
            Reason::TimeOutOfRange => fixed(&format!("time outside range {MIN_NANO_TIME} - {MAX_NANO_TIME}")),
            Reason::InvalidPoint => fixed("point is invalid"),
        }
    }
}

/// What the parser learnt about an accepted line (positions are offsets into the line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Parsed {
    /// End of `measurement[,tags]` (the key).
    pub key_end: usize,
    /// The field section.
    pub fields_start: usize,
    pub fields_end: usize,
    /// The timestamp digits, if any.
    pub timestamp: Option<(usize, usize)>,
    /// Whether influxd's field iterator is certain to see the same fields as its parser: true
    /// when the field section has no backslash and its unquoted `=` and `,` strictly alternate
    /// (`k=v,k=v`). Otherwise `scanTo`/`scanFieldValue` may cut keys and values elsewhere: their
    /// escape and quote rules differ from `scanFields`', which toggles quotes only while it has
    /// counted more `=` than `,` (so `a,b="x=",c=1` or `a="="=",b=",""` read differently).
    pub plain_fields: bool,
    /// With plain fields: whether a field key appears twice (the storage then compares types).
    pub repeated_field_key: bool,
}

/// Scratch space reused from line to line so that parsing does not allocate.
#[derive(Debug, Default, Clone)]
pub(super) struct Scratch {
    /// (start, end) of each tag key, in line order.
    tag_keys: Vec<(usize, usize)>,
    sorted: Vec<(usize, usize)>,
    /// (start, end) of each field key as `scanFields` delimits them, in line order.
    field_keys: Vec<(usize, usize)>,
}

/// Go `parsePoint(buf, defaultTime, precision)`. `buf` starts at a non-whitespace byte and has no
/// trailing newline (the caller strips them as `ParsePointsWithPrecision` does).
pub(super) fn parse_point(buf: &[u8], precision: Precision, scratch: &mut Scratch) -> Result<Parsed, Reason> {
    let key_end = scan_key(buf, scratch)?;
    // `len(key) == 0` => "missing measurement" cannot happen: scanMeasurement already refused it.
    if key_end > MAX_KEY_LENGTH {
        return Err(Reason::MaxKeyLength(key_end));
    }
    let (fields_start, fields_end, alternating) = scan_fields(buf, key_end, &mut scratch.field_keys)?;
    // `len(fields) == 0` => "missing fields" cannot happen either: scanFields says
    // "invalid field format" first.
    let fields = &buf[fields_start..fields_end];
    // walkFields with the series-key size check. With plain fields walkFields sees the same keys
    // as scanFields (so it cannot fail) and no field key is longer than the whole field section,
    // so the walk can only matter when the sizes come near the limit.
    let plain_fields = alternating && memchr::memchr(b'\\', fields).is_none();
    let repeated_field_key = plain_fields && has_duplicate(buf, &scratch.field_keys, &mut scratch.sorted);
    if !plain_fields || key_end + 4 + fields.len() > MAX_KEY_LENGTH {
        walk_fields_key_sizes(fields, fields_start, key_end)?;
    }
    let (end, ts_start) = scan_time(buf, fields_end)?;
    if ts_start == end {
        return Ok(Parsed {
            key_end,
            fields_start,
            fields_end,
            timestamp: None,
            plain_fields,
            repeated_field_key,
        });
    }
    let ts =
        go_text::parse_int(&buf[ts_start..end]).map_err(|e| Reason::TimestampNumber(e, ts_start, end))?;
    safe_calc_time(ts, precision)?;
    // "Determine if there are illegal non-whitespace characters after the timestamp block."
    if buf[end..].iter().any(|&c| c != b' ') {
        return Err(Reason::InvalidPoint);
    }
    Ok(Parsed {
        key_end,
        fields_start,
        fields_end,
        timestamp: Some((ts_start, end)),
        plain_fields,
        repeated_field_key,
    })
}

/// Go `SafeCalcTime` + `CheckTime`: the timestamp times the precision must not overflow and must
/// lie within `MinNanoTime..=MaxNanoTime`.
pub(super) fn safe_calc_time(ts: i64, precision: Precision) -> Result<i64, Reason> {
    match ts.checked_mul(precision.nanos_per_unit()) {
        Some(ns) if (MIN_NANO_TIME..=MAX_NANO_TIME).contains(&ns) => Ok(ns),
        _ => Err(Reason::TimeOutOfRange),
    }
}

/// Go `skipWhitespace`: spaces, tabs and NUL bytes.
pub(super) fn skip_whitespace(buf: &[u8], mut i: usize) -> usize {
    while i < buf.len() && matches!(buf[i], b' ' | b'\t' | 0) {
        i += 1;
    }
    i
}

/// Go `scanKey`: measurement and tags, the reserved tag keys, duplicate tags. Returns the end of
/// the key (the index of the space before the fields).
fn scan_key(buf: &[u8], scratch: &mut Scratch) -> Result<usize, Reason> {
    let start = skip_whitespace(buf, 0);
    let (more_tags, mut i) = scan_measurement(buf, start)?;
    scratch.tag_keys.clear();
    if more_tags {
        i = scan_tags(buf, i, &mut scratch.tag_keys)?;
    }
    // "Iterate over tags keys ensure that we do not encounter any of the reserved tag keys."
    for &(s, e) in &scratch.tag_keys {
        if let Some(quoted) = reserved_tag_key(&buf[s..e]) {
            return Err(Reason::ReservedTagKey(quoted));
        }
    }
    // Duplicate tag keys (compared as written, escapes included). Go checks neighbours in line
    // order and, if the tags are not sorted, again after sorting: any two equal keys are refused.
    if has_duplicate(buf, &scratch.tag_keys, &mut scratch.sorted) {
        return Err(Reason::DuplicateTags);
    }
    Ok(i)
}

/// Whether two of the `keys` ranges hold the same bytes: a check of neighbours when they are
/// sorted (the usual case), else a sort in `spare`.
fn has_duplicate(buf: &[u8], keys: &[(usize, usize)], spare: &mut Vec<(usize, usize)>) -> bool {
    let mut sorted = true;
    for pair in keys.windows(2) {
        match buf[pair[0].0..pair[0].1].cmp(&buf[pair[1].0..pair[1].1]) {
            std::cmp::Ordering::Greater => {
                sorted = false;
                break;
            }
            std::cmp::Ordering::Equal => return true,
            std::cmp::Ordering::Less => {}
        }
    }
    if sorted {
        return false;
    }
    spare.clear();
    spare.extend_from_slice(keys);
    spare.sort_unstable_by(|a, b| buf[a.0..a.1].cmp(&buf[b.0..b.1]));
    spare.windows(2).any(|p| buf[p[0].0..p[0].1] == buf[p[1].0..p[1].1])
}

/// `reservedTagKeys`: `\xff` (field key tag), `\x00` (measurement tag), `_field`,
/// `_measurement`, `time`. Returns the key as Go's `%q` prints it.
fn reserved_tag_key(key: &[u8]) -> Option<&'static str> {
    match key {
        b"\xff" => Some("\"\\xff\""),
        b"\x00" => Some("\"\\x00\""),
        b"_field" => Some("\"_field\""),
        b"_measurement" => Some("\"_measurement\""),
        b"time" => Some("\"time\""),
        _ => None,
    }
}

/// Go `scanMeasurement`: `Ok((true, i))` with `i` after the comma when tags follow, `Ok((false,
/// i))` with `i` at the space when fields follow.
fn scan_measurement(buf: &[u8], mut i: usize) -> Result<(bool, usize), Reason> {
    if i >= buf.len() || buf[i] == b',' {
        return Err(Reason::MissingMeasurement);
    }
    loop {
        i += 1;
        // Jump to the next byte that can end the measurement; a byte right after a backslash is
        // escaped (Go: `if buf[i-1] == '\\' { continue }`), so look at the byte before each hit.
        match memchr::memchr2(b',', b' ', &buf[i..]) {
            None => return Err(Reason::MissingFields),
            Some(offset) => i += offset,
        }
        if buf[i - 1] == b'\\' {
            continue;
        }
        return Ok((buf[i] == b',', if buf[i] == b',' { i + 1 } else { i }));
    }
}

/// Go `scanTags`: records each tag key's range; returns the index of the space before the fields.
fn scan_tags(buf: &[u8], mut i: usize, keys: &mut Vec<(usize, usize)>) -> Result<usize, Reason> {
    loop {
        let key_start = i;
        let equals = scan_tags_key(buf, i)?;
        keys.push((key_start, equals));
        let (more, next) = scan_tags_value(buf, equals + 1)?;
        if !more {
            return Ok(next);
        }
        i = next;
    }
}

/// Go `scanTagsKey`: returns the index of the `=` ending the key.
fn scan_tags_key(buf: &[u8], mut i: usize) -> Result<usize, Reason> {
    if i >= buf.len() || matches!(buf[i], b' ' | b',' | b'=') {
        return Err(Reason::MissingTagKey);
    }
    loop {
        i += 1;
        // Only a space, comma or `=` can end the key: jump to the next one.
        match memchr::memchr3(b' ', b',', b'=', &buf[i.min(buf.len())..]) {
            Some(offset) => i += offset,
            None => return Err(Reason::MissingTagValue),
        }
        if buf[i - 1] == b'\\' {
            continue;
        }
        return if buf[i] == b'=' { Ok(i) } else { Err(Reason::MissingTagValue) };
    }
}

/// Go `scanTagsValue`: `Ok((true, i))` after a comma (another tag follows), `Ok((false, i))` at
/// the space before the fields. The first byte is not checked for `=` (so `a==` is a tag whose
/// value is `=`), later unescaped ones are "invalid tag format".
fn scan_tags_value(buf: &[u8], mut i: usize) -> Result<(bool, usize), Reason> {
    if i >= buf.len() || matches!(buf[i], b',' | b' ') {
        return Err(Reason::MissingTagValue);
    }
    loop {
        i += 1;
        match memchr::memchr3(b'=', b',', b' ', &buf[i.min(buf.len())..]) {
            Some(offset) => i += offset,
            None => return Err(Reason::MissingFields),
        }
        let c = buf[i];
        if buf[i - 1] == b'\\' {
            continue;
        }
        return match c {
            b'=' => Err(Reason::InvalidTagFormat),
            b',' => Ok((true, i + 1)),
            _ => Ok((false, i)),
        };
    }
}

/// Go `isNumeric`.
fn is_numeric(c: u8) -> bool {
    c.is_ascii_digit() || c == b'.'
}

/// Go `scanFields`: returns the field section's `(start, end)` (`end` is the unquoted space or
/// the end of the line) and whether its unquoted `=` and `,` strictly alternated; records in
/// `keys` each key as delimited by a counted `,` and `=`.
fn scan_fields(
    buf: &[u8],
    from: usize,
    keys: &mut Vec<(usize, usize)>,
) -> Result<(usize, usize, bool), Reason> {
    let start = skip_whitespace(buf, from);
    let mut i = start;
    keys.clear();
    let mut key_start = start;
    let mut quoted = false;
    let mut equals = 0usize;
    let mut commas = 0usize;
    let mut alternating = true;
    while i < buf.len() {
        let c = buf[i];
        if c == b'\\' && i + 1 < buf.len() {
            i += 2;
            continue;
        }
        if quoted {
            // Inside a string only a backslash pair or the closing quote matter: jump ahead.
            match memchr::memchr2(b'"', b'\\', &buf[i..]) {
                None => {
                    i = buf.len();
                    break;
                }
                Some(offset) => {
                    i += offset;
                    if buf[i] == b'\\' {
                        // A pair is skipped; a backslash as the last byte is just a byte.
                        i = if i + 1 < buf.len() { i + 2 } else { buf.len() };
                        continue;
                    }
                    // A quote while quoted: equals > commas still holds (nothing was counted).
                    quoted = false;
                    i += 1;
                    continue;
                }
            }
        }
        if c == b'"' && equals > commas {
            quoted = true;
            i += 1;
            continue;
        }
        if c == b'=' {
            alternating &= equals == commas;
            equals += 1;
            keys.push((key_start, i));
            // "check for "... =123" but allow "a\ =123"" and the same after a comma. Go indexes
            // buf[i-2] here; i >= 2 whenever buf[i-1] is a space or comma (the key is not empty).
            let before = buf[i - 1];
            if (before == b' ' || before == b',') && (i < 2 || buf[i - 2] != b'\\') {
                return Err(Reason::MissingFieldKey);
            }
            let Some(&next) = buf.get(i + 1) else {
                return Err(Reason::MissingFieldValue);
            };
            if next == b',' || next == b' ' {
                return Err(Reason::MissingFieldValue);
            }
            if is_numeric(next) || next == b'-' || next == b'N' || next == b'n' {
                i = scan_number(buf, i + 1)?;
                continue;
            }
            if next != b'"' {
                i = scan_boolean(buf, i + 1)?;
                continue;
            }
        }
        if c == b',' {
            alternating &= commas + 1 == equals;
            commas += 1;
            key_start = i + 1;
        }
        if c == b' ' {
            break;
        }
        i += 1;
    }
    if quoted {
        return Err(Reason::UnbalancedQuotes);
    }
    // "check that all field sections had key and values (e.g. prevent "a=1,b")"
    if equals == 0 || commas != equals - 1 {
        return Err(Reason::InvalidFieldFormat);
    }
    Ok((start, i, alternating))
}

/// Go `scanNumber`: returns the index after the number (a comma, a space or the end).
fn scan_number(buf: &[u8], mut i: usize) -> Result<usize, Reason> {
    let start = i;
    let (mut is_int, mut is_unsigned) = (false, false);
    if i < buf.len() && buf[i] == b'-' {
        i += 1;
        if i == buf.len() {
            return Err(Reason::InvalidNumber);
        }
    }
    let (mut decimal, mut scientific) = (false, false);
    while i < buf.len() {
        let c = buf[i];
        if c == b',' || c == b' ' {
            break;
        }
        if c == b'i' && i > start && !(is_int || is_unsigned) {
            is_int = true;
            i += 1;
            continue;
        } else if c == b'u' && i > start && !(is_int || is_unsigned) {
            is_unsigned = true;
            i += 1;
            continue;
        }
        if c == b'.' {
            // "Can't have more than 1 decimal (e.g. 1.1.1 should fail)"
            if decimal {
                return Err(Reason::InvalidNumber);
            }
            decimal = true;
        }
        // "`e` is valid for floats but not as the first char"
        if i > start && (c == b'e' || c == b'E') {
            scientific = true;
            i += 1;
            continue;
        }
        // "+ and - are only valid at this point if they follow an e (scientific notation)"
        if (c == b'+' || c == b'-') && (buf[i - 1] == b'e' || buf[i - 1] == b'E') {
            i += 1;
            continue;
        }
        // "NaN is an unsupported value" (either branch gives the same error).
        if !is_numeric(c) {
            return Err(Reason::InvalidNumber);
        }
        i += 1;
    }
    if (is_int || is_unsigned) && (decimal || scientific) {
        return Err(Reason::InvalidNumber);
    }
    let numeric_digits =
        (i - start) - usize::from(is_int) - usize::from(decimal) - usize::from(buf[start] == b'-');
    if numeric_digits == 0 {
        return Err(Reason::InvalidNumber);
    }
    // Range checks only where the length allows an out-of-range value (maxInt64Digits = 19,
    // minInt64Digits = 20, maxUint64Digits = 20, maxFloat64Digits = 25, minFloat64Digits = 27).
    if is_int {
        // "Make sure the last char is an 'i' for integers (e.g. 9i10 is not valid)"
        if buf[i - 1] != b'i' {
            return Err(Reason::InvalidNumber);
        }
        let digits = &buf[start..i - 1];
        if digits.len() >= 19 && go_text::parse_int(digits).is_err() {
            return Err(Reason::IntegerRange(start, i - 1));
        }
    } else if is_unsigned {
        if buf[i - 1] != b'u' || buf[start] == b'-' {
            return Err(Reason::InvalidNumber);
        }
        let digits = &buf[start..i - 1];
        if digits.len() >= 20 && go_text::parse_uint(digits).is_err() {
            return Err(Reason::UnsignedRange(start, i - 1));
        }
    } else if (scientific || i - start >= 25) && go_text::parse_float(&buf[start..i]).is_err() {
        return Err(Reason::InvalidFloat);
    }
    Ok(i)
}

/// Go `scanBoolean`: `t`, `T`, `f`, `F`, `true`, `True`, `TRUE`, `false`, `False`, `FALSE`.
fn scan_boolean(buf: &[u8], i: usize) -> Result<usize, Reason> {
    let start = i;
    if !matches!(buf[start], b't' | b'f' | b'T' | b'F') {
        return Err(Reason::InvalidBoolean);
    }
    let end = match memchr::memchr2(b',', b' ', &buf[start + 1..]) {
        Some(offset) => start + 1 + offset,
        None => buf.len(),
    };
    match &buf[start..end] {
        b"t" | b"T" | b"f" | b"F" | b"true" | b"True" | b"TRUE" | b"false" | b"False" | b"FALSE" => Ok(end),
        _ => Err(Reason::InvalidBoolean),
    }
}

/// Go `scanTime`: returns `(end, start)` of the timestamp digits (equal when there is none). It
/// stops at a space or a newline; digits with at most a leading `-`, else "bad timestamp".
fn scan_time(buf: &[u8], from: usize) -> Result<(usize, usize), Reason> {
    let start = skip_whitespace(buf, from);
    let mut i = start;
    while i < buf.len() {
        let c = buf[i];
        if c == b'\n' || c == b' ' {
            break;
        }
        if i == start && c == b'-' {
            i += 1;
            continue;
        }
        if !c.is_ascii_digit() {
            return Err(Reason::BadTimestamp);
        }
        i += 1;
    }
    Ok((i, start))
}

/// Go `scanTo(buf, i, stop)`: up to the first `stop` not preceded by a backslash (a `stop` at
/// index 0 always stops). Returns the index of the stop byte or `buf.len()`.
pub(super) fn scan_to(buf: &[u8], mut i: usize, stop: u8) -> usize {
    while i < buf.len() {
        match memchr::memchr(stop, &buf[i..]) {
            None => return buf.len(),
            Some(offset) => i += offset,
        }
        if i == 0 || buf[i - 1] != b'\\' {
            return i;
        }
        i += 1;
    }
    i
}

/// Go `scanFieldValue(buf, i)`: a value up to the first unquoted comma; only `\"` and `\\` are
/// escapes, every other `"` toggles quoting. Returns the end index.
pub(super) fn scan_field_value(buf: &[u8], mut i: usize) -> usize {
    let mut quoted = false;
    while i < buf.len() {
        // Only a backslash, a quote or a comma can matter: jump to the next one.
        match memchr::memchr3(b'\\', b'"', b',', &buf[i..]) {
            Some(offset) => i += offset,
            None => return buf.len(),
        }
        let c = buf[i];
        if c == b'\\' && i + 1 < buf.len() && (buf[i + 1] == b'"' || buf[i + 1] == b'\\') {
            i += 2;
            continue;
        }
        if c == b'"' {
            i += 1;
            quoted = !quoted;
            continue;
        }
        if c == b',' && !quoted {
            break;
        }
        i += 1;
    }
    i
}

/// Go `walkFields` as `parsePoint` uses it: each field's key must be followed by `=` and at least
/// one byte ("invalid value: field-key=..."), and `len(key) + 4 + len(field key)` (the storage
/// series key, `seriesKeySize`) must not exceed `MaxKeyLength`. `offset` is where `fields`
/// starts in the line (for error ranges).
fn walk_fields_key_sizes(fields: &[u8], offset: usize, key_len: usize) -> Result<(), Reason> {
    let mut pos = 0;
    while pos < fields.len() {
        let rest = &fields[pos..];
        // walkFields re-slices, so scanTo's "index 0 always stops" applies at each field start.
        let eq = scan_to(rest, 0, b'=');
        if eq + 2 > rest.len() {
            return Err(Reason::FieldWithoutValue(offset + pos, offset + pos + eq));
        }
        let size = key_len + 4 + eq;
        if size > MAX_KEY_LENGTH {
            return Err(Reason::MaxKeyLength(size));
        }
        let value_start = pos + eq + 1;
        let value_end = value_start + scan_field_value(&fields[value_start..], 0);
        // Skip the comma.
        pos = value_end + 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(line: &str) -> Option<String> {
        let mut scratch = Scratch::default();
        parse_point(line.as_bytes(), Precision::Nanoseconds, &mut scratch)
            .err()
            .map(|r| String::from_utf8(r.render(line.as_bytes())).unwrap())
    }

    #[test]
    fn scan_to_treats_a_stop_after_a_backslash_as_escaped() {
        assert_eq!(scan_to(b"a=b", 0, b'='), 1);
        assert_eq!(scan_to(b"a\\=b=c", 0, b'='), 4);
        assert_eq!(scan_to(b"=a", 0, b'='), 0);
        assert_eq!(scan_to(b"abc", 0, b'='), 3);
    }

    #[test]
    fn scan_field_value_stops_at_the_first_unquoted_comma() {
        assert_eq!(scan_field_value(b"1,b=2", 0), 1);
        assert_eq!(scan_field_value(b"\"a,b\",c=1", 0), 5);
        assert_eq!(scan_field_value(b"\"a\\\",b\",c=1", 0), 7);
    }

    #[test]
    fn number_forms() {
        assert_eq!(reason("m v=1"), None);
        assert_eq!(reason("m v=-1.5e-3"), None);
        assert_eq!(reason("m v=1.2.3").as_deref(), Some("invalid number"));
        assert_eq!(reason("m v=1e").as_deref(), Some("invalid float"));
        assert_eq!(reason("m v=1i2").as_deref(), Some("invalid number"));
        assert_eq!(reason("m v=-u").as_deref(), Some("invalid number"));
    }
}
