//! What influxd does with a line it refuses: the three outcomes the scanner tells apart.

/// What influxd does with a refused line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectKind {
    /// influxd answers 400 (`invalid`): a parse error; the whole request is refused, nothing is
    /// stored.
    Parse,
    /// influxd parses the line but its storage drops it whatever data already exists, and answers
    /// 422 (`unprocessable entity`, `partial write`) while storing the request's other lines.
    /// In 2.7.12: a point whose every field is named `time`, a point giving one field two types
    /// (`v=1,v="x"`), and a string value longer than 1 MiB (`tsdb.MaxFieldValueLength`). A type
    /// conflict with stored data or with another line of the same body is not detected here:
    /// it depends on the database (and on the shard each line's time falls in).
    Unprocessable,
    /// influxd parses the line but its storage engine cannot convert one of its values and the
    /// whole write fails with 500 (`internal error`, `unexpected error writing points to
    /// database: engine: ...`) — or, for a value the engine sees as a lone `"`, influxd 2.7.12
    /// panics and exits without answering. Only lines with an even run of backslashes before a
    /// field key's `=` get here (`m a\\=1,b=2` is stored, `m a\\=",b=1"` is a 500 and
    /// `m \=\\="=" 1` crashes the server); such a line must never be forwarded.
    Internal,
}
