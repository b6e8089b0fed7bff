//! Reading Flux annotated CSV in tests, and comparing points value by value.

use std::collections::BTreeMap;

/// One row of a Flux result: column name to cell text, plus the column's `#datatype`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FluxRecord {
    pub values: BTreeMap<String, String>,
    pub datatypes: BTreeMap<String, String>,
}

impl FluxRecord {
    pub fn get(&self, column: &str) -> Option<&str> {
        self.values.get(column).map(String::as_str)
    }

    /// The record without the bookkeeping columns (`result`, `table`, `_start`, `_stop`), so that
    /// two servers' answers to the same query compare equal when their points do.
    pub fn point(&self) -> BTreeMap<String, (String, String)> {
        self.values
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "" | "result" | "table" | "_start" | "_stop"))
            .map(|(k, v)| (k.clone(), (self.datatypes.get(k).cloned().unwrap_or_default(), v.clone())))
            .collect()
    }
}

/// Parses annotated CSV (with `#datatype`; `#group`/`#default` rows are skipped) into records.
/// Handles several tables, schema changes and quoted cells holding commas, quotes and newlines.
pub fn parse_annotated_csv(text: &str) -> Vec<FluxRecord> {
    let mut out = Vec::new();
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut datatypes: Vec<String> = Vec::new();
    let mut header: Option<Vec<String>> = None;
    for row in reader.records() {
        let row = row.expect("well-formed CSV from influxd");
        let first = row.get(0).unwrap_or("");
        if row.len() == 1 && first.is_empty() {
            header = None;
            continue;
        }
        if first == "#datatype" {
            datatypes = row.iter().map(str::to_string).collect();
            header = None;
            continue;
        }
        if first.starts_with('#') {
            header = None;
            continue;
        }
        match &header {
            None => header = Some(row.iter().map(str::to_string).collect()),
            Some(h) => {
                let mut rec = FluxRecord { values: BTreeMap::new(), datatypes: BTreeMap::new() };
                for (i, cell) in row.iter().enumerate() {
                    let name = h.get(i).cloned().unwrap_or_default();
                    if name.is_empty() {
                        continue;
                    }
                    if let Some(dt) = datatypes.get(i) {
                        rec.datatypes.insert(name.clone(), dt.clone());
                    }
                    // Flux writes CSV with Go's encoding/csv and UseCRLF: a '\n' inside a quoted
                    // cell comes out as "\r\n" (and a lone '\r' is dropped), so undo the first.
                    rec.values.insert(name, cell.replace("\r\n", "\n"));
                }
                out.push(rec);
            }
        }
    }
    out
}

/// Sorts rows by measurement, tag values, field and time.
/// `(_time, _value)` of each row, sorted: what a test compares of derived points.
pub fn time_values(rows: &[FluxRecord]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get("_time").unwrap_or("").to_string(), r.get("_value").unwrap_or("").to_string()))
        .collect();
    v.sort();
    v
}

pub fn sort_points(rows: &mut [FluxRecord]) {
    rows.sort_by_key(|r| r.point().into_iter().collect::<Vec<_>>());
}

/// Asserts that two dumps hold the same points with the same values and types, naming the first
/// difference.
pub fn assert_same_points(left_name: &str, left: &[FluxRecord], right_name: &str, right: &[FluxRecord]) {
    let l: Vec<_> = left.iter().map(FluxRecord::point).collect();
    let r: Vec<_> = right.iter().map(FluxRecord::point).collect();
    if l == r {
        return;
    }
    let first = l.iter().zip(r.iter()).position(|(a, b)| a != b).unwrap_or(l.len().min(r.len()));
    panic!(
        "{left_name} has {} values, {right_name} has {}; first difference at #{first}:\n  {left_name}: {:?}\n  {right_name}: {:?}",
        l.len(),
        r.len(),
        l.get(first),
        r.get(first)
    );
}
