//! Probe points: written through the local stack's gateway, read back from either database,
//! compared value by value. Each point is `probe,phase=<phase> seq=<i>i,v=<value>` with its own
//! timestamp, so a phase's points can be told apart and counted at each end.

use std::collections::BTreeMap;

use crate::servers::influxd::Influxd;
use crate::stack::LocalStack;

/// Writes `n` probe points of `phase` through the gateway to `path` (`/api/v2/write` or `/write`)
/// with `query`, in `requests` requests, as the source's operator; panics unless each is
/// acknowledged (204). Returns seq -> value as acknowledged.
pub async fn write(
    stack: &LocalStack,
    path: &str,
    query: &[(&str, &str)],
    phase: &str,
    n: u64,
    requests: u64,
) -> BTreeMap<String, String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    write_at(stack, path, query, phase, n, requests, now).await
}

/// [`write`], the points stamped from `base_ns` on (one nanosecond apart).
pub async fn write_at(
    stack: &LocalStack,
    path: &str,
    query: &[(&str, &str)],
    phase: &str,
    n: u64,
    requests: u64,
    base_ns: i64,
) -> BTreeMap<String, String> {
    let base = base_ns;
    let mut written = BTreeMap::new();
    let per = n.div_ceil(requests.max(1));
    let client = reqwest::Client::new();
    for r in 0..requests.max(1) {
        let mut body = String::new();
        for i in r * per..((r + 1) * per).min(n) {
            let value = format!("{}.25", i * 7 + 1);
            body.push_str(&format!("probe,phase={phase} seq={i}i,v={value} {}\n", base + i as i64));
            written.insert(i.to_string(), value);
        }
        let resp = client
            .post(format!("{}{path}", stack.gateway.url))
            .query(query)
            .header("Authorization", format!("Token {}", stack.source.token))
            .body(body)
            .send()
            .await
            .expect("write through the gateway");
        let status = resp.status().as_u16();
        assert_eq!(
            status,
            204,
            "{phase}: the gateway acknowledged the write: {}",
            resp.text().await.unwrap_or_default()
        );
    }
    written
}

/// [`write`] to the source's org and bucket with the v2 API.
pub async fn write_v2(stack: &LocalStack, phase: &str, n: u64, requests: u64) -> BTreeMap<String, String> {
    let query = [("org", stack.source.org.as_str()), ("bucket", stack.source.bucket.as_str())];
    write(stack, "/api/v2/write", &query, phase, n, requests).await
}

/// seq -> v of the phase's probe points in `bucket` of `db`.
pub async fn read(stack: &LocalStack, db: &Influxd, bucket: &str, phase: &str) -> BTreeMap<String, String> {
    let flux = format!(
        "from(bucket: \"{bucket}\") |> range(start: 0) |> filter(fn: (r) => r._measurement == \"probe\" and r.phase == \"{phase}\") |> pivot(rowKey: [\"_time\"], columnKey: [\"_field\"], valueColumn: \"_value\")"
    );
    db.query_as(&flux, &stack.source.token)
        .await
        .iter()
        .map(|r| (r.get("seq").unwrap_or("").to_string(), r.get("v").unwrap_or("").to_string()))
        .collect()
}

/// How many acknowledged points are present with their value.
pub fn present(acked: &BTreeMap<String, String>, got: &BTreeMap<String, String>) -> usize {
    acked.iter().filter(|(k, v)| got.get(*k) == Some(*v)).count()
}

/// One row of the live path's fault matrix: a case and what became of its acknowledged points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatrixRow {
    pub case: String,
    pub acknowledged: usize,
    pub at_source: usize,
    pub at_destination: usize,
    pub dead_lettered: usize,
    pub parked: usize,
    pub redriven: usize,
}

/// Prints `rows` as the fault matrix's table (the tests that make them print theirs; together
/// they are the matrix).
pub fn print_matrix(rows: &[MatrixRow]) {
    println!(
        "{:<52} {:>12}  {:>9}  {:>14}  {:>13}  {:>6}  {:>8}",
        "case", "acknowledged", "at source", "at destination", "dead-lettered", "parked", "redriven"
    );
    for r in rows {
        println!(
            "{:<52} {:>12}  {:>9}  {:>14}  {:>13}  {:>6}  {:>8}",
            r.case, r.acknowledged, r.at_source, r.at_destination, r.dead_lettered, r.parked, r.redriven
        );
    }
}
