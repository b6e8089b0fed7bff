//! Cutting a write body into lines exactly where influxd 2.7.12 cuts it.
//!
//! influxd does not split on every `'\n'`: `models.scanLine` (models/points.go) walks the body
//! with its own small state machine, and a newline inside what it takes for a quoted string
//! field value does not end the line. Its rules, which this module mirrors:
//! - a backslash skips the next byte, but only while at least two more bytes follow it
//!   (`buf[i] == '\\' && i+2 < len(buf)`), so `\` + newline joins two physical lines;
//! - "fields mode" starts at the first (unskipped) space of the line, *including leading
//!   whitespace*; from then on unquoted `=` and `,` are counted, and a `"` toggles quoting only
//!   while more `=` than `,` were seen (i.e. in a field value position);
//! - an unquoted `'\n'` ends the line.
//!
//! The state machine's view can differ from the parser's (`scanFields`) on odd input: e.g. a
//! comment `# a="` swallows every following line up to the next closing quote, and leading
//! whitespace makes tag `=`/`,` count. influxd behaves that way, so we do too.

use memchr::memchr3;

/// Returns the end (exclusive, the index of the terminating `'\n'` or `buf.len()`) of the line
/// that starts at `start`: Go `scanLine(buf, start)`.
pub(super) fn scan_line(buf: &[u8], start: usize) -> usize {
    // Fast path: without a quote or backslash before the next newline, the state machine cannot
    // do anything but stop at that newline.
    let rest = &buf[start..];
    match memchr3(b'\n', b'"', b'\\', rest) {
        None => return buf.len(),
        Some(offset) if rest[offset] == b'\n' => return start + offset,
        Some(_) => {}
    }
    scan_line_slow(buf, start)
}

fn scan_line_slow(buf: &[u8], start: usize) -> usize {
    let mut i = start;
    let mut quoted = false;
    let mut fields = false;
    let mut equals = 0usize;
    let mut commas = 0usize;
    while i < buf.len() {
        if quoted {
            // While quoted only a backslash pair or a quote changes anything (`=`/`,` are not
            // counted, newlines do not end the line): jump to the next one.
            match memchr::memchr2(b'"', b'\\', &buf[i..]) {
                Some(offset) => i += offset,
                None => return buf.len(),
            }
        }
        let c = buf[i];
        if c == b'\\' && i + 2 < buf.len() {
            i += 2;
            continue;
        }
        if c == b' ' {
            fields = true;
        }
        if fields {
            if !quoted && c == b'=' {
                i += 1;
                equals += 1;
                continue;
            } else if !quoted && c == b',' {
                i += 1;
                commas += 1;
                continue;
            } else if c == b'"' && equals > commas {
                i += 1;
                quoted = !quoted;
                continue;
            }
        }
        if c == b'\n' && !quoted {
            break;
        }
        if !fields && !quoted {
            // Before fields mode only a space, a backslash or a newline matters: jump to the next.
            match memchr3(b' ', b'\\', b'\n', &buf[i + 1..]) {
                Some(offset) => i += 1 + offset,
                None => i = buf.len(),
            }
            continue;
        }
        i += 1;
    }
    i
}

/// One line of a body as influxd's scanner cuts it (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawLine<'a> {
    /// The line's bytes, without the `'\n'` that ended it. May be blank or a comment, and may hold
    /// newlines (inside a quoted string field, or after a backslash).
    pub bytes: &'a [u8],
    /// Offset of `bytes` in the body.
    pub start: usize,
    /// 1-based number of the physical line (counted by `'\n'`) on which it starts.
    pub number: usize,
}

/// Iterator over the lines of a body as influxd cuts them, blank lines and comments included;
/// see [`split_lines`](super::split_lines).
#[derive(Debug, Clone)]
pub struct SplitLines<'a> {
    body: &'a [u8],
    pos: usize,
    number: usize,
}

impl<'a> SplitLines<'a> {
    pub(super) fn new(body: &'a [u8]) -> SplitLines<'a> {
        SplitLines { body, pos: 0, number: 1 }
    }
}

impl<'a> Iterator for SplitLines<'a> {
    type Item = RawLine<'a>;

    fn next(&mut self) -> Option<RawLine<'a>> {
        // Go `ParsePointsWithPrecision`: `for pos < len(buf) { pos, block = scanLine(buf, pos); pos++ ...`
        if self.pos >= self.body.len() {
            return None;
        }
        let start = self.pos;
        let end = scan_line(self.body, start);
        let bytes = &self.body[start..end];
        let number = self.number;
        // Newlines the scanner kept inside the line, plus the one that ended it.
        let inner = memchr::memchr_iter(b'\n', bytes).count();
        self.number += inner + 1;
        self.pos = end + 1;
        Some(RawLine { bytes, start, number })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(body: &[u8]) -> Vec<&[u8]> {
        SplitLines::new(body).map(|l| l.bytes).collect()
    }

    #[test]
    fn plain_lines_split_on_newlines_and_a_final_newline_adds_nothing() {
        assert_eq!(cut(b"a v=1\nb v=2\n"), vec![&b"a v=1"[..], b"b v=2"]);
        assert_eq!(cut(b"a v=1\n\nb v=2"), vec![&b"a v=1"[..], b"", b"b v=2"]);
        assert_eq!(cut(b"\n"), vec![&b""[..]]);
        assert!(cut(b"").is_empty());
    }

    #[test]
    fn a_newline_inside_a_quoted_field_value_does_not_end_the_line() {
        assert_eq!(cut(b"a s=\"x\ny\" 1\nb v=2"), vec![&b"a s=\"x\ny\" 1"[..], b"b v=2"]);
        // Quotes in the key are not string delimiters.
        assert_eq!(cut(b"a\"b v=1\nc v=2"), vec![&b"a\"b v=1"[..], b"c v=2"]);
        // An escaped quote inside the string does not close it.
        assert_eq!(cut(b"a s=\"x\\\"\ny\"\nb v=2"), vec![&b"a s=\"x\\\"\ny\""[..], b"b v=2"]);
    }

    #[test]
    fn backslash_newline_joins_lines_except_at_the_very_end() {
        assert_eq!(cut(b"a v=1\\\nb v=2"), vec![&b"a v=1\\\nb v=2"[..]]);
        // `i+2 < len(buf)`: a backslash with only one byte after it skips nothing.
        assert_eq!(cut(b"a v=1\\\n"), vec![&b"a v=1\\"[..]]);
    }

    #[test]
    fn a_comment_with_an_open_quote_swallows_the_following_lines() {
        assert_eq!(cut(b"# x=\"\ncpu v=1\ncpu v=2\n"), vec![&b"# x=\"\ncpu v=1\ncpu v=2\n"[..]]);
        // Still quoted at the end of the body: the final newline stays inside the line.
        assert_eq!(cut(b" =\"\n"), vec![&b" =\"\n"[..]]);
    }

    #[test]
    fn leading_whitespace_makes_key_equals_count() {
        // Without leading space the quote is in the measurement: not a string.
        assert_eq!(cut(b"m=\" v=1\nn v=2"), vec![&b"m=\" v=1"[..], b"n v=2"]);
        // With it, fields mode starts at once and the quote opens a "string".
        assert_eq!(cut(b" m=\" v=1\nn v=2"), vec![&b" m=\" v=1\nn v=2"[..]]);
    }

    #[test]
    fn line_numbers_count_physical_lines() {
        let numbers: Vec<usize> =
            SplitLines::new(b"a v=1\n\nb s=\"x\ny\"\nc v=3\n").map(|l| l.number).collect();
        assert_eq!(numbers, vec![1, 2, 3, 5]);
    }
}
