//! Go's text conventions that leak into influxd's answers, reproduced so that the gateway's error
//! bodies read exactly like influxd's.
//!
//! influxd builds its messages with `fmt` and `strconv`, and its HTTP layer encodes them with
//! `encoding/json`. Four of their conventions are visible to a client:
//! - `strconv` number parsing (`ParseInt`, `ParseUint`, `ParseFloat`, `ParseBool`) decides which
//!   values the storage engine can read, and its `*NumError` text ends up in messages
//!   (`strconv.ParseInt: parsing "…": value out of range`);
//! - `%q` / `strconv.Quote` quotes keys and values in some messages;
//! - `encoding/json` replaces every byte that is not part of valid UTF-8 with U+FFFD, one
//!   replacement per byte (Rust's `from_utf8_lossy` uses one per maximal invalid sequence).
//!
//! The parsers here follow Go 1.2x `strconv` (`atoi.go`, `atof.go`: `ParseUint`, `ParseInt`,
//! `readFloat`, `special`, `underscoreOK`, `atofHex`) rule for rule; the Go source is the reference.

/// Why a Go `strconv` parse failed (`strconv.ErrSyntax` / `strconv.ErrRange`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumError {
    Syntax,
    Range,
}

impl NumError {
    /// `(*strconv.NumError).Error()`: `strconv.<func>: parsing "<quoted input>": <reason>`.
    pub(crate) fn message(self, func: &str, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() + 48);
        out.extend_from_slice(b"strconv.");
        out.extend_from_slice(func.as_bytes());
        out.extend_from_slice(b": parsing ");
        quote_into(input, &mut out);
        out.extend_from_slice(match self {
            NumError::Syntax => b": invalid syntax",
            NumError::Range => b": value out of range",
        });
        out
    }
}

/// `strconv.ParseUint(s, 10, 64)`: decimal digits only (no sign, no underscores with an explicit
/// base); the first offending byte decides between syntax and range error, scanning left to right.
pub(crate) fn parse_uint(s: &[u8]) -> Result<u64, NumError> {
    if s.is_empty() {
        return Err(NumError::Syntax);
    }
    let mut n: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return Err(NumError::Syntax);
        }
        n = n.checked_mul(10).and_then(|n| n.checked_add(u64::from(c - b'0'))).ok_or(NumError::Range)?;
    }
    Ok(n)
}

/// `strconv.ParseInt(s, 10, 64)`: an optional `+`/`-`, then `ParseUint` of the rest, then the
/// signed range check.
pub(crate) fn parse_int(s: &[u8]) -> Result<i64, NumError> {
    let (negative, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = parse_uint(digits)?;
    const CUTOFF: u64 = 1 << 63;
    if negative {
        if magnitude > CUTOFF {
            return Err(NumError::Range);
        }
        Ok((magnitude as i64).wrapping_neg())
    } else {
        i64::try_from(magnitude).map_err(|_| NumError::Range)
    }
}

/// `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &[u8]) -> Result<bool, NumError> {
    match s {
        b"1" | b"t" | b"T" | b"TRUE" | b"true" | b"True" => Ok(true),
        b"0" | b"f" | b"F" | b"FALSE" | b"false" | b"False" => Ok(false),
        _ => Err(NumError::Syntax),
    }
}

/// `strconv.ParseFloat(s, 64)`: Go's grammar (which differs from Rust's `f64::from_str`: hex
/// mantissas with a `p` exponent and `_` digit separators are accepted, `+nan` is not) and Go's
/// range rule (a finite input that rounds to ±Inf is `ErrRange`; underflow to 0 is not an error).
pub(crate) fn parse_float(s: &[u8]) -> Result<f64, NumError> {
    if let Some(value) = special_float(s) {
        return Ok(value);
    }
    let Some(form) = read_float(s) else {
        return Err(NumError::Syntax);
    };
    if form.hex {
        return hex_float(&form);
    }
    // The grammar is checked; Rust's decimal parser reads the same digits (underscores removed)
    // and rounds correctly, as Go does.
    let cleaned: Vec<u8> = s.iter().copied().filter(|&c| c != b'_').collect();
    let text = std::str::from_utf8(&cleaned).map_err(|_| NumError::Syntax)?;
    let value: f64 = text.parse().map_err(|_| NumError::Syntax)?;
    if value.is_infinite() { Err(NumError::Range) } else { Ok(value) }
}

/// Go `special`: `[+-]?(inf|infinity)` and `nan` (no sign), case-insensitive, whole input only.
fn special_float(s: &[u8]) -> Option<f64> {
    let (sign, rest) = match s.first()? {
        b'+' => (1.0, &s[1..]),
        b'-' => (-1.0, &s[1..]),
        _ => (1.0, s),
    };
    if rest.eq_ignore_ascii_case(b"inf") || rest.eq_ignore_ascii_case(b"infinity") {
        return Some(sign * f64::INFINITY);
    }
    if rest.len() == s.len() && s.eq_ignore_ascii_case(b"nan") {
        return Some(f64::NAN);
    }
    None
}

/// What Go's `readFloat` learnt from a syntactically valid input.
struct FloatForm {
    hex: bool,
    negative: bool,
    /// Up to 16 hex digits of mantissa (hex inputs only).
    mantissa: u64,
    /// Binary exponent to apply to `mantissa` (hex inputs only).
    exp2: i64,
    /// Non-zero digits were dropped from the mantissa (hex inputs only).
    truncated: bool,
}

/// Go `readFloat` + `underscoreOK`: `None` when the whole input is not a float literal.
fn read_float(s: &[u8]) -> Option<FloatForm> {
    let lower = |c: u8| c | 0x20;
    let mut i = 0;
    let mut negative = false;
    let mut underscores = false;
    match s.first()? {
        b'+' => i += 1,
        b'-' => {
            i += 1;
            negative = true
        }
        _ => {}
    }
    let mut hex = false;
    if i + 2 < s.len() && s[i] == b'0' && lower(s[i + 1]) == b'x' {
        hex = true;
        i += 2;
    }
    let max_mantissa_digits = if hex { 16 } else { 19 };
    let (mut saw_dot, mut saw_digits) = (false, false);
    let (mut nd, mut nd_mant, mut dp) = (0i64, 0i64, 0i64);
    let mut mantissa: u64 = 0;
    let mut truncated = false;
    while i < s.len() {
        let c = s[i];
        if c == b'_' {
            underscores = true;
        } else if c == b'.' {
            if saw_dot {
                break;
            }
            saw_dot = true;
            dp = nd;
        } else if c.is_ascii_digit() || (hex && (b'a'..=b'f').contains(&lower(c))) {
            saw_digits = true;
            let digit =
                if c.is_ascii_digit() { u64::from(c - b'0') } else { u64::from(lower(c) - b'a' + 10) };
            if c == b'0' && nd == 0 {
                dp -= 1;
            } else {
                nd += 1;
                if nd_mant < max_mantissa_digits {
                    mantissa = mantissa * if hex { 16 } else { 10 } + digit;
                    nd_mant += 1;
                } else if c != b'0' {
                    truncated = true;
                }
            }
        } else {
            break;
        }
        i += 1;
    }
    if !saw_digits {
        return None;
    }
    if !saw_dot {
        dp = nd;
    }
    if hex {
        dp *= 4;
        nd_mant *= 4;
    }
    let exp_char = if hex { b'p' } else { b'e' };
    if i < s.len() && lower(s[i]) == exp_char {
        i += 1;
        let mut esign = 1i64;
        match s.get(i)? {
            b'+' => i += 1,
            b'-' => {
                i += 1;
                esign = -1
            }
            _ => {}
        }
        if !s.get(i)?.is_ascii_digit() {
            return None;
        }
        let mut e = 0i64;
        while i < s.len() && (s[i].is_ascii_digit() || s[i] == b'_') {
            if s[i] == b'_' {
                underscores = true;
            } else if e < 10000 {
                e = e * 10 + i64::from(s[i] - b'0');
            }
            i += 1;
        }
        dp += e * esign;
    } else if hex {
        // Go: a hexadecimal mantissa must have a 'p' exponent.
        return None;
    }
    if underscores && !underscore_ok(&s[..i]) {
        return None;
    }
    if i != s.len() {
        return None;
    }
    let exp2 = if mantissa != 0 { dp - nd_mant } else { 0 };
    Some(FloatForm { hex, negative, mantissa, exp2, truncated })
}

/// Go `underscoreOK`: underscores only between digits (a base prefix counts as a digit).
fn underscore_ok(s: &[u8]) -> bool {
    let lower = |c: u8| c | 0x20;
    let mut s = s;
    if let Some(b'-' | b'+') = s.first() {
        s = &s[1..];
    }
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(lower(s[1]), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = lower(s[1]) == b'x';
    }
    while i < s.len() {
        let c = s[i];
        if c.is_ascii_digit() || (hex && (b'a'..=b'f').contains(&lower(c))) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i += 1;
    }
    saw != b'_'
}

/// Go `atofHex` for float64: rounds the mantissa to 53 bits (half to even, with the dropped
/// digits as a sticky bit) and reports `ErrRange` when the result overflows.
fn hex_float(form: &FloatForm) -> Result<f64, NumError> {
    let sign = if form.negative { -1.0 } else { 1.0 };
    if form.mantissa == 0 {
        return Ok(sign * 0.0);
    }
    let mut mantissa = form.mantissa;
    let mut exp = form.exp2;
    let mut sticky = form.truncated;
    // Normalise to 54 bits (53 + one rounding bit), folding lower bits into the sticky bit.
    while mantissa >> 54 != 0 {
        sticky |= mantissa & 1 != 0;
        mantissa >>= 1;
        exp += 1;
    }
    while mantissa >> 53 == 0 {
        mantissa <<= 1;
        exp -= 1;
    }
    // Now 2^53 <= mantissa < 2^54: value = mantissa * 2^exp. Round away the lowest bit, unless the
    // value is subnormal, where more bits go (approximated by letting f64 arithmetic round).
    let top = exp + 53; // value < 2^(top + 1)
    if top >= 1024 {
        return Err(NumError::Range);
    }
    let round_bit = mantissa & 1;
    let mut m = mantissa >> 1;
    let mut e = exp + 1;
    if round_bit == 1 && (sticky || m & 1 == 1) {
        m += 1;
        if m >> 53 != 0 {
            m >>= 1;
            e += 1;
        }
    }
    if e + 52 >= 1024 {
        return Err(NumError::Range);
    }
    // m * 2^e with m < 2^53 and e small enough: exact in f64 unless subnormal.
    // Underflow is not an error in Go; the exact subnormal value does not matter to any caller.
    Ok(sign * (m as f64) * 2f64.powi(e.clamp(-2000, 2000) as i32))
}

/// Appends `strconv.Quote(string(input))` to `out`: Go's double-quoted form with `\"`, `\\`,
/// `\a\b\f\n\r\t\v`, `\xNN` for invalid UTF-8 bytes and ASCII controls, `\uNNNN`/`\UNNNNNNNN`
/// for other non-printable runes.
///
/// Go's `unicode.IsPrint` is exact for ASCII here; beyond ASCII it is approximated (controls,
/// separators other than U+0020, format characters, private use and non-characters are treated
/// as non-printable). Only message text depends on it, never an accept/reject decision.
pub(crate) fn quote_into(input: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut rest = input;
    while !rest.is_empty() {
        let (ch, len) = decode_rune(rest);
        match ch {
            None => {
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(rest[0] >> 4)],
                    HEX[usize::from(rest[0] & 15)],
                ]);
            }
            Some(c) => {
                let code = c as u32;
                match c {
                    '"' => out.extend_from_slice(b"\\\""),
                    '\\' => out.extend_from_slice(b"\\\\"),
                    _ if is_print(c) => out.extend_from_slice(&rest[..len]),
                    '\u{7}' => out.extend_from_slice(b"\\a"),
                    '\u{8}' => out.extend_from_slice(b"\\b"),
                    '\u{c}' => out.extend_from_slice(b"\\f"),
                    '\n' => out.extend_from_slice(b"\\n"),
                    '\r' => out.extend_from_slice(b"\\r"),
                    '\t' => out.extend_from_slice(b"\\t"),
                    '\u{b}' => out.extend_from_slice(b"\\v"),
                    _ if code < 0x20 || code == 0x7f => {
                        let b = code as u8;
                        out.extend_from_slice(&[
                            b'\\',
                            b'x',
                            HEX[usize::from(b >> 4)],
                            HEX[usize::from(b & 15)],
                        ]);
                    }
                    _ if code < 0x10000 => out.extend_from_slice(format!("\\u{code:04x}").as_bytes()),
                    _ => out.extend_from_slice(format!("\\U{code:08x}").as_bytes()),
                }
            }
        }
        rest = &rest[len.max(1)..];
    }
    out.push(b'"');
}

/// Decodes one rune as Go's `utf8.DecodeRune` does: `(None, 1)` for an invalid byte.
fn decode_rune(s: &[u8]) -> (Option<char>, usize) {
    let width = match s[0] {
        0x00..=0x7f => return (Some(char::from(s[0])), 1),
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return (None, 1),
    };
    match s.get(..width).and_then(|bytes| std::str::from_utf8(bytes).ok()) {
        Some(text) => (text.chars().next(), width),
        None => (None, 1),
    }
}

fn is_print(c: char) -> bool {
    let code = c as u32;
    if code < 0x80 {
        return (0x20..0x7f).contains(&code);
    }
    !(c.is_control()
        || matches!(code, 0xa0 | 0xad | 0x1680 | 0x180e | 0x3000 | 0xfeff)
        || (0x2000..=0x200f).contains(&code)
        || (0x2028..=0x202f).contains(&code)
        || (0x205f..=0x206f).contains(&code)
        || (0xfff9..=0xfffb).contains(&code)
        || (0xe000..=0xf8ff).contains(&code)
        || (0xe0000..=0xe007f).contains(&code)
        || code >= 0xf0000
        || (code & 0xfffe) == 0xfffe)
}

/// The text a client reads after Go's `encoding/json` encoded `bytes`: valid UTF-8 is kept,
/// every other byte becomes U+FFFD (one per byte, as Go does).
pub(crate) fn lossy(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => {
            let mut out = String::with_capacity(bytes.len() + 8);
            let mut rest = bytes;
            while !rest.is_empty() {
                match std::str::from_utf8(rest) {
                    Ok(text) => {
                        out.push_str(text);
                        break;
                    }
                    Err(e) => {
                        let (valid, after) = rest.split_at(e.valid_up_to());
                        // `valid` is valid UTF-8 by construction.
                        out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                        out.push(char::REPLACEMENT_CHARACTER);
                        rest = &after[1..];
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_uint_matches_go_on_range_and_syntax_order() {
        assert_eq!(parse_uint(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_uint(b"18446744073709551616"), Err(NumError::Range));
        assert_eq!(parse_uint(b"+1"), Err(NumError::Syntax), "ParseUint takes no sign");
        assert_eq!(parse_uint(b""), Err(NumError::Syntax));
        assert_eq!(parse_uint(b"1_000"), Err(NumError::Syntax), "no underscores with base 10");
        // Go reports the first problem scanning left to right.
        assert_eq!(parse_uint(b"99999999999999999999x"), Err(NumError::Range));
        assert_eq!(parse_uint(b"9x9999999999999999999999"), Err(NumError::Syntax));
    }

    #[test]
    fn parse_int_matches_go_including_a_syntax_error_past_the_signed_range() {
        assert_eq!(parse_int(b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_int(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_int(b"9223372036854775808"), Err(NumError::Range));
        assert_eq!(parse_int(b"-9223372036854775809"), Err(NumError::Range));
        assert_eq!(parse_int(b"+5"), Ok(5));
        assert_eq!(parse_int(b"-"), Err(NumError::Syntax));
        // Fits u64, then a bad byte: Go's ParseUint says syntax before the signed check runs.
        assert_eq!(parse_int(b"18446744073709551615x"), Err(NumError::Syntax));
    }

    #[test]
    fn parse_float_accepts_what_go_accepts() {
        // Each expectation was checked with Go's strconv.ParseFloat(s, 64).
        for ok in [
            "1",
            "1.",
            ".5",
            "-.5",
            "1e5",
            "1E+5",
            "1e-400",
            "1_000",
            "0x1p3",
            "0x.8p1",
            "0x_1p0",
            "nan",
            "NaN",
            "Inf",
            "-infinity",
            "+inf",
        ] {
            assert!(parse_float(ok.as_bytes()).is_ok(), "{ok} parses in Go");
        }
        for syntax in
            [".", "1e", "e5", "-", "+nan", "infin", "0x1", "1__0", "_1", "1e5e5", "1.2.3", "1\"", ""]
        {
            assert_eq!(
                parse_float(syntax.as_bytes()),
                Err(NumError::Syntax),
                "{syntax} is a syntax error in Go"
            );
        }
        for range in ["1e400", "-1e309", "0x1p99999", "0x1p1024"] {
            assert_eq!(parse_float(range.as_bytes()), Err(NumError::Range), "{range} overflows in Go");
        }
        assert_eq!(parse_float(b"0x1p3"), Ok(8.0));
        assert_eq!(parse_float(b"0x1.8p1"), Ok(3.0));
        assert_eq!(parse_float(b"0x1.fffffffffffffp1023"), Ok(f64::MAX));
    }

    #[test]
    fn parse_bool_takes_go_spellings_only() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t.as_bytes()), Ok(true));
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f.as_bytes()), Ok(false));
        }
        for bad in ["tRUE", "yes", "", "truE"] {
            assert_eq!(parse_bool(bad.as_bytes()), Err(NumError::Syntax));
        }
    }

    #[test]
    fn quote_matches_go_strconv_quote() {
        let q = |b: &[u8]| {
            let mut out = Vec::new();
            quote_into(b, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(q(b"time"), "\"time\"");
        assert_eq!(q(b"a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(q(b"\xff"), "\"\\xff\"");
        assert_eq!(q(b"\x00\n\t\x7f"), "\"\\x00\\n\\t\\x7f\"");
        assert_eq!(q("é😀".as_bytes()), "\"é😀\"");
        assert_eq!(q("\u{200b}".as_bytes()), "\"\\u200b\"");
    }

    #[test]
    fn lossy_replaces_each_invalid_byte_like_go_json() {
        assert_eq!(lossy(b"ok"), "ok");
        // A truncated 4-byte sequence is three invalid bytes for Go (Rust's lossy gives one).
        assert_eq!(lossy(b"a\xf0\x9f\x98b"), "a\u{fffd}\u{fffd}\u{fffd}b");
        assert_eq!(lossy(b"\xff\xfe"), "\u{fffd}\u{fffd}");
    }

    #[test]
    fn num_error_message_is_go_form() {
        assert_eq!(
            String::from_utf8(NumError::Range.message("ParseInt", b"9223372036854775808")).unwrap(),
            "strconv.ParseInt: parsing \"9223372036854775808\": value out of range"
        );
        assert_eq!(
            String::from_utf8(NumError::Syntax.message("ParseFloat", b"1\"")).unwrap(),
            "strconv.ParseFloat: parsing \"1\\\"\": invalid syntax"
        );
    }
}
