//! Reading Flux annotated CSV incrementally: bytes in, typed rows out, nothing buffered whole.
//!
//! Format (flux `csv/result.go`; influxdb-v2-protocol.md §4.7): tables come in blocks. A block
//! starts with annotation rows (`#group`, `#datatype`, `#default`, first cell is the annotation
//! name), then a header row, then data rows; the first column is the annotation column and is
//! empty on header and data rows. A new block (fresh annotations) comes whenever the schema
//! changes, so one block may hold many tables (told apart by the `table` column). An error
//! that happens after rows were sent arrives as a table with the header `,error,reference`.
//!
//! [`CsvScanner`] splits bytes into CSV records with `csv-core` (quoted cells may hold commas,
//! quotes and newlines) and reports each record's byte offset; [`AnnotatedReader`] tracks
//! the current block's columns and hands out [`Row`]s. The offset of a block's first record is a
//! place a reader can restart from (a resumable restore does), since a block describes itself.

use std::fmt;

/// Why an annotated CSV could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    /// The query failed on the server after it had started answering.
    #[error("the query failed on the server: {0}")]
    Query(String),
    #[error("{0}")]
    Malformed(String),
}

/// A column's `#datatype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    String,
    Long,
    UnsignedLong,
    Double,
    Boolean,
    DateTime,
    Duration,
    Other,
}

impl DataType {
    pub fn parse(s: &str) -> DataType {
        match s {
            "string" => DataType::String,
            "long" => DataType::Long,
            "unsignedLong" => DataType::UnsignedLong,
            "double" => DataType::Double,
            "boolean" => DataType::Boolean,
            "duration" => DataType::Duration,
            s if s.starts_with("dateTime") => DataType::DateTime,
            _ => DataType::Other,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataType::String => "string",
            DataType::Long => "long",
            DataType::UnsignedLong => "unsignedLong",
            DataType::Double => "double",
            DataType::Boolean => "boolean",
            DataType::DateTime => "dateTime",
            DataType::Duration => "duration",
            DataType::Other => "other",
        })
    }
}

/// One CSV record: cells as byte slices.
pub struct Record<'a> {
    data: &'a [u8],
    ends: &'a [usize],
}

impl<'a> Record<'a> {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Cell `i`, empty when the record is shorter.
    pub fn get(&self, i: usize) -> &'a [u8] {
        if i >= self.ends.len() {
            return b"";
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
}

/// Splits a byte stream into CSV records, remembering where each started.
pub struct CsvScanner {
    reader: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    out_len: usize,
    n_ends: usize,
    /// Bytes consumed so far (plus the starting offset).
    pos: u64,
    /// Offset of the record being read.
    record_start: u64,
    /// Whether the current record has consumed any byte.
    in_record: bool,
}

impl Default for CsvScanner {
    fn default() -> Self {
        CsvScanner::new(0)
    }
}

impl CsvScanner {
    /// A scanner whose first byte is at `offset` of the underlying file.
    pub fn new(offset: u64) -> CsvScanner {
        CsvScanner {
            reader: csv_core::ReaderBuilder::new().build(),
            out: vec![0; 4096],
            ends: vec![0; 64],
            out_len: 0,
            n_ends: 0,
            pos: offset,
            record_start: offset,
            in_record: false,
        }
    }

    /// Feeds `input` (an empty slice means the end of the data) and calls `on_record` with each
    /// complete record and its starting offset.
    pub fn push<E>(
        &mut self,
        mut input: &[u8],
        on_record: &mut impl FnMut(&Record<'_>, u64) -> Result<(), E>,
    ) -> Result<(), E> {
        let at_end = input.is_empty();
        loop {
            if !self.in_record {
                // Blank lines between records are skipped by csv-core; a record starts at the
                // first byte that is not a line end.
                let skip = input.iter().take_while(|b| **b == b'\n' || **b == b'\r').count();
                self.pos += skip as u64;
                input = &input[skip..];
                self.record_start = self.pos;
            }
            let (res, nin, nout, nend) =
                self.reader.read_record(input, &mut self.out[self.out_len..], &mut self.ends[self.n_ends..]);
            if nin > 0 {
                self.in_record = true;
            }
            input = &input[nin..];
            self.pos += nin as u64;
            self.out_len += nout;
            self.n_ends += nend;
            match res {
                csv_core::ReadRecordResult::InputEmpty => {
                    if !at_end {
                        return Ok(());
                    }
                }
                csv_core::ReadRecordResult::OutputFull => {
                    let n = self.out.len() * 2;
                    self.out.resize(n, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let n = self.ends.len() * 2;
                    self.ends.resize(n, 0);
                }
                csv_core::ReadRecordResult::Record => {
                    let (len, n) = (self.out_len, self.n_ends);
                    self.out_len = 0;
                    self.n_ends = 0;
                    self.in_record = false;
                    let rec = Record { data: &self.out[..len], ends: &self.ends[..n] };
                    on_record(&rec, self.record_start)?;
                }
                csv_core::ReadRecordResult::End => return Ok(()),
            }
        }
    }
}

/// The columns of the current block.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    pub names: Vec<String>,
    pub datatypes: Vec<DataType>,
    pub defaults: Vec<String>,
    pub time: Option<usize>,
    pub value: Option<usize>,
    pub measurement: Option<usize>,
    pub field: Option<usize>,
    /// Group-key columns that are tags: not `result`, `table`, `_start`, `_stop`,
    /// `_measurement`, `_field`.
    pub tags: Vec<(usize, String)>,
}

impl Columns {
    fn from_header(
        header: &Record<'_>,
        datatypes: &[String],
        group: &[String],
        defaults: &[String],
    ) -> Columns {
        let names: Vec<String> =
            (0..header.len()).map(|i| String::from_utf8_lossy(header.get(i)).into_owned()).collect();
        let find = |n: &str| names.iter().position(|c| c == n);
        let dt = |i: usize| datatypes.get(i).map(|s| DataType::parse(s)).unwrap_or(DataType::String);
        let grp = |i: usize| group.get(i).is_some_and(|g| g == "true");
        let mut tags = Vec::new();
        for (i, n) in names.iter().enumerate() {
            if i == 0 || !grp(i) {
                continue;
            }
            if matches!(
                n.as_str(),
                "" | "result" | "table" | "_start" | "_stop" | "_measurement" | "_field" | "_time" | "_value"
            ) {
                continue;
            }
            tags.push((i, n.clone()));
        }
        tags.sort_by(|a, b| a.1.cmp(&b.1));
        Columns {
            datatypes: (0..names.len()).map(dt).collect(),
            defaults: (0..names.len()).map(|i| defaults.get(i).cloned().unwrap_or_default()).collect(),
            time: find("_time"),
            value: find("_value"),
            measurement: find("_measurement"),
            field: find("_field"),
            tags,
            names,
        }
    }

    /// Cell `i` of `rec`, or the column's `#default` when the cell is empty.
    pub fn cell<'a>(&'a self, rec: &Record<'a>, i: usize) -> &'a [u8] {
        let v = rec.get(i);
        if v.is_empty() { self.defaults.get(i).map(|d| d.as_bytes()).unwrap_or(b"") } else { v }
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|c| c == name)
    }
}

/// A data row of the current block.
pub struct Row<'a> {
    pub columns: &'a Columns,
    pub record: &'a Record<'a>,
    /// Offset of the record that started this row's block.
    pub block_start: u64,
    /// 0-based index of this row within its block.
    pub index_in_block: u64,
    /// Offset of this row's record.
    pub offset: u64,
}

impl<'a> Row<'a> {
    pub fn cell(&self, i: usize) -> &'a [u8] {
        self.columns.cell(self.record, i)
    }

    pub fn named(&self, name: &str) -> Option<&'a [u8]> {
        self.columns.index_of(name).map(|i| self.cell(i))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Annotations or a header.
    BlockStart,
    /// Annotations were read; the header comes next.
    Header,
    Data,
    /// The header of an error table was read; its message comes next.
    ErrorRow,
}

/// Tracks blocks and columns over a sequence of records.
pub struct AnnotatedReader {
    expect: Expect,
    datatypes: Vec<String>,
    group: Vec<String>,
    defaults: Vec<String>,
    columns: Columns,
    block_start: u64,
    index_in_block: u64,
    /// Whether rows with no `#datatype` annotation are refused (typed readers need it).
    require_datatypes: bool,
}

impl AnnotatedReader {
    pub fn new(require_datatypes: bool) -> AnnotatedReader {
        AnnotatedReader {
            expect: Expect::BlockStart,
            datatypes: Vec::new(),
            group: Vec::new(),
            defaults: Vec::new(),
            columns: Columns::default(),
            block_start: 0,
            index_in_block: 0,
            require_datatypes,
        }
    }

    /// Takes one record; calls `on_row` for data rows.
    pub fn record<E: From<CsvError>>(
        &mut self,
        rec: &Record<'_>,
        offset: u64,
        on_row: &mut impl FnMut(&Row<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let first = rec.get(0);
        if first.first() == Some(&b'#') {
            if matches!(self.expect, Expect::BlockStart | Expect::Data) {
                // A new block begins.
                self.datatypes.clear();
                self.group.clear();
                self.defaults.clear();
                self.block_start = offset;
                self.index_in_block = 0;
            }
            let cells = || (0..rec.len()).map(|i| String::from_utf8_lossy(rec.get(i)).into_owned()).collect();
            match first {
                b"#datatype" => self.datatypes = cells(),
                b"#group" => self.group = cells(),
                b"#default" => self.defaults = cells(),
                _ => {}
            }
            self.expect = Expect::Header;
            return Ok(());
        }
        match self.expect {
            Expect::BlockStart | Expect::Header => {
                if self.expect == Expect::BlockStart {
                    self.block_start = offset;
                    self.index_in_block = 0;
                    self.datatypes.clear();
                    self.group.clear();
                    self.defaults.clear();
                }
                if rec.len() >= 2 && rec.get(1) == b"error" && rec.get(2) == b"reference" {
                    self.expect = Expect::ErrorRow;
                    return Ok(());
                }
                if self.require_datatypes && self.datatypes.is_empty() {
                    return Err(E::from(CsvError::Malformed(
                        "the CSV has no #datatype annotation; export it with annotations (influx query --raw)".into(),
                    )));
                }
                self.columns = Columns::from_header(rec, &self.datatypes, &self.group, &self.defaults);
                self.expect = Expect::Data;
                Ok(())
            }
            Expect::ErrorRow => {
                let msg = String::from_utf8_lossy(rec.get(1)).into_owned();
                Err(E::from(CsvError::Query(msg)))
            }
            Expect::Data => {
                // A header repeated without annotations (plain CSV between tables).
                if rec.get(0).is_empty() && rec.len() == self.columns.names.len() {
                    let same_header = (1..rec.len()).all(|i| rec.get(i) == self.columns.names[i].as_bytes());
                    if same_header {
                        return Ok(());
                    }
                }
                let row = Row {
                    columns: &self.columns,
                    record: rec,
                    block_start: self.block_start,
                    index_in_block: self.index_in_block,
                    offset,
                };
                self.index_in_block += 1;
                on_row(&row)
            }
        }
    }
}

/// Feeds bytes through a scanner and a reader into `on_row`: the whole pipeline for callers
/// that read a stream.
pub struct AnnotatedCsv {
    scanner: CsvScanner,
    reader: AnnotatedReader,
}

impl AnnotatedCsv {
    pub fn new(require_datatypes: bool) -> AnnotatedCsv {
        AnnotatedCsv::at(require_datatypes, 0)
    }

    /// A reader whose first byte is at `offset` of the file (a block start, when resuming).
    pub fn at(require_datatypes: bool, offset: u64) -> AnnotatedCsv {
        AnnotatedCsv { scanner: CsvScanner::new(offset), reader: AnnotatedReader::new(require_datatypes) }
    }

    /// Feeds a chunk; an empty chunk ends the input.
    pub fn push<E: From<CsvError>>(
        &mut self,
        chunk: &[u8],
        on_row: &mut impl FnMut(&Row<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let reader = &mut self.reader;
        self.scanner.push(chunk, &mut |rec: &Record<'_>, off: u64| reader.record(rec, off, on_row))
    }
}

// ---------------------------------------------------------------- values

/// Nanoseconds since the epoch from RFC3339 text as Flux writes it (`2020-01-01T00:00:00.000000001Z`);
/// other offsets (`+02:00`) are accepted too.
pub fn parse_time_ns(text: &[u8]) -> Option<i64> {
    fn num(b: &[u8]) -> Option<i64> {
        if b.is_empty() {
            return None;
        }
        let mut n = 0i64;
        for &c in b {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    }
    if text.len() < 20 || text[4] != b'-' || text[7] != b'-' || !matches!(text[10], b'T' | b't' | b' ') {
        return None;
    }
    let year = num(&text[0..4])?;
    let month = num(&text[5..7])?;
    let day = num(&text[8..10])?;
    let hour = num(&text[11..13])?;
    let min = num(&text[14..16])?;
    let sec = num(&text[17..19])?;
    let mut rest = &text[19..];
    let mut nanos = 0i64;
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let frac = &rest[1..1 + digits.min(9)];
        nanos = num(frac)? * 10i64.pow(9 - frac.len() as u32);
        rest = &rest[1 + digits..];
    }
    let offset_s = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let s = num(&[*h1, *h2])? * 3600 + num(&[*m1, *m2])? * 60;
            if *sign == b'+' { s } else { -s }
        }
        _ => return None,
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    // Near the bottom of the range `secs * 1e9` alone overflows although the sum does not.
    if secs < 0 && nanos > 0 {
        (secs + 1).checked_mul(1_000_000_000)?.checked_sub(1_000_000_000 - nanos)
    } else {
        secs.checked_mul(1_000_000_000)?.checked_add(nanos)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two blocks (long then double), a quoted tag value holding a comma and a newline, CRLF
    /// line ends and blank lines between blocks: what influxd answered in the test bed.
    const SAMPLE: &str = "#group,false,false,true,true,false,false,true,true,true\r\n\
#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,long,string,string,string\r\n\
#default,_result,,,,,,,,\r\n\
,result,table,_start,_stop,_time,_value,_field,_measurement,host\r\n\
,,0,1970-01-01T00:00:00Z,2262-01-01T00:00:00Z,2020-01-01T00:00:00Z,1,n,cpu,\"a,b\nc\"\r\n\
,,0,1970-01-01T00:00:00Z,2262-01-01T00:00:00Z,2020-01-01T00:00:01.5Z,2,n,cpu,\"a,b\nc\"\r\n\
\r\n\
#group,false,false,true,true,false,false,true,true\r\n\
#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string\r\n\
#default,_result,,,,,,,\r\n\
,result,table,_start,_stop,_time,_value,_field,_measurement\r\n\
,,1,1970-01-01T00:00:00Z,2262-01-01T00:00:00Z,1990-01-01T00:00:00.000000001Z,0.5,f,mem\r\n\
\r\n";

    /// measurement, field, value, tags, value type, block start, index in block
    type Parsed = (String, String, String, Vec<(String, String)>, DataType, u64, u64);

    fn rows(input: &str, chunk: usize) -> Vec<Parsed> {
        let mut csv = AnnotatedCsv::new(true);
        let mut out = Vec::new();
        let mut on_row = |row: &Row<'_>| -> Result<(), CsvError> {
            let c = row.columns;
            let s = |i: Option<usize>| String::from_utf8_lossy(row.cell(i.unwrap())).into_owned();
            let tags = c
                .tags
                .iter()
                .map(|(i, n)| (n.clone(), String::from_utf8_lossy(row.cell(*i)).into_owned()))
                .collect();
            out.push((
                s(c.measurement),
                s(c.field),
                s(c.value),
                tags,
                c.datatypes[c.value.unwrap()],
                row.block_start,
                row.index_in_block,
            ));
            Ok(())
        };
        for piece in input.as_bytes().chunks(chunk) {
            csv.push(piece, &mut on_row).unwrap();
        }
        csv.push(b"", &mut on_row).unwrap();
        out
    }

    #[test]
    fn rows_types_tags_and_block_offsets_whatever_the_chunking() {
        let second_block = SAMPLE.find("\r\n\r\n#group").unwrap() as u64 + 4;
        for chunk in [1, 2, 7, 64, SAMPLE.len()] {
            let r = rows(SAMPLE, chunk);
            assert_eq!(r.len(), 3, "chunk {chunk}");
            assert_eq!(r[0].0, "cpu");
            assert_eq!(r[0].1, "n");
            assert_eq!(r[0].2, "1");
            assert_eq!(r[0].3, vec![("host".to_string(), "a,b\nc".to_string())]);
            assert_eq!(r[0].4, DataType::Long);
            assert_eq!((r[0].5, r[0].6), (0, 0));
            assert_eq!((r[1].5, r[1].6), (0, 1));
            assert_eq!(r[2].0, "mem");
            assert_eq!(r[2].4, DataType::Double);
            assert!(r[2].3.is_empty());
            assert_eq!((r[2].5, r[2].6), (second_block, 0), "chunk {chunk}");
        }
    }

    #[test]
    fn an_error_table_is_an_error() {
        let text = "#datatype,string,string\r\n#group,true,true\r\n#default,,\r\n,error,reference\r\n,boom: out of memory,\r\n";
        let mut csv = AnnotatedCsv::new(true);
        let mut on_row = |_: &Row<'_>| -> Result<(), CsvError> { Ok(()) };
        let r = csv.push(text.as_bytes(), &mut on_row).and_then(|_| csv.push(b"", &mut on_row));
        assert_eq!(r, Err(CsvError::Query("boom: out of memory".into())));
    }

    #[test]
    fn csv_without_annotations_is_refused_when_types_are_needed() {
        let mut csv = AnnotatedCsv::new(true);
        let mut on_row = |_: &Row<'_>| -> Result<(), CsvError> { Ok(()) };
        let r = csv.push(b",result,table,_value\r\n,,0,1\r\n", &mut on_row);
        assert!(matches!(r, Err(CsvError::Malformed(_))));
    }

    #[test]
    fn times_parse_to_nanoseconds() {
        assert_eq!(parse_time_ns(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_time_ns(b"2020-01-01T00:00:00.000000001Z"), Some(1_577_836_800_000_000_001));
        assert_eq!(parse_time_ns(b"1990-01-01T00:01:00Z"), Some(631_152_060_000_000_000));
        assert_eq!(parse_time_ns(b"1969-12-31T23:59:59.5Z"), Some(-500_000_000));
        assert_eq!(parse_time_ns(b"1677-09-21T00:12:43.145224194Z"), Some(i64::MIN + 2));
        assert_eq!(parse_time_ns(b"2262-04-11T23:47:16.854775806Z"), Some(i64::MAX - 1));
        assert_eq!(parse_time_ns(b"2020-01-01T02:00:00+02:00"), Some(1_577_836_800_000_000_000));
        assert_eq!(parse_time_ns(b"2020-01-01T00:00:00.5"), None);
        assert_eq!(parse_time_ns(b"garbage"), None);
    }
}
