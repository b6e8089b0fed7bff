//! Reads as a client makes them (to the local gateway or straight to influxd), timed to the first
//! body byte, and the bulk data large answers are made of.

use std::time::{Duration, Instant};

use crate::servers::influxd::Influxd;

/// Nanoseconds of the first bulk point.
pub const BULK_T0: i64 = 1_764_547_200_000_000_000;

/// Writes `n` points of `bulk` (tag `host`, a float and an integer field) into `db`'s bucket: a
/// Flux answer of about 193 bytes and an InfluxQL JSON answer of about 55 bytes per point.
pub async fn load_bulk(db: &Influxd, n: usize) {
    const BATCH: usize = 50_000;
    for start in (0..n).step_by(BATCH) {
        let mut body = String::with_capacity(BATCH * 60);
        for i in start..(start + BATCH).min(n) {
            body.push_str(&format!(
                "bulk,host=host-{} value={}.25,n={i}i {}\n",
                i % 7,
                i * 3,
                BULK_T0 + i as i64 * 1_000_000
            ));
        }
        db.write_ok(&db.bucket, "ns", body).await;
    }
}

/// Every `bulk` point, as a Flux query.
pub fn flux_bulk(db: &Influxd) -> Read {
    let q = format!(
        "from(bucket: \"{}\") |> range(start: 2025-01-01T00:00:00Z, stop: 2027-01-01T00:00:00Z) |> filter(fn: (r) => r._measurement == \"bulk\")",
        db.bucket
    );
    flux(db, &q)
}

/// Every `bulk` point, as an InfluxQL query (JSON).
pub fn influxql_bulk(db: &Influxd) -> Read {
    Read {
        method: reqwest::Method::GET,
        path: "/query",
        query: vec![("db", db.bucket.clone()), ("q", "SELECT * FROM bulk".into())],
        headers: Vec::new(),
        body: None,
    }
}

/// Response headers as (lower-case name, value) pairs, for comparing answers.
pub fn header_pairs(headers: &reqwest::header::HeaderMap) -> std::collections::BTreeMap<String, String> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect()
}

/// An HTTP answer as a client receives it, and when its first body byte came.
pub struct Fetched {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
    pub first_byte: Duration,
    pub total: Duration,
}

impl Fetched {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One read, to the gateway or straight to influxd (`base`), with the source's token, read to its
/// end; an answer that breaks off is an error naming how much had arrived.
pub async fn fetch(base: &str, read: &Read, token: &str) -> Result<Fetched, String> {
    let client = reqwest::Client::builder().no_gzip().build().expect("client");
    let started = Instant::now();
    let mut req = client
        .request(read.method.clone(), format!("{base}{}", read.path))
        .query(&read.query)
        .header("Authorization", format!("Token {token}"));
    for (k, v) in &read.headers {
        req = req.header(*k, v);
    }
    if let Some(b) = &read.body {
        req = req.body(b.clone());
    }
    let mut resp = req.send().await.map_err(|e| format!("sending: {e}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    let mut first_byte = None;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                first_byte.get_or_insert_with(|| started.elapsed());
                body.extend_from_slice(&c);
            }
            Ok(None) => break,
            Err(e) => return Err(format!("the answer broke off after {} bytes: {e}", body.len())),
        }
    }
    let total = started.elapsed();
    Ok(Fetched { status, headers, body, first_byte: first_byte.unwrap_or(total), total })
}

/// A read request: what a client sends.
#[derive(Debug, Clone)]
pub struct Read {
    pub method: reqwest::Method,
    pub path: &'static str,
    pub query: Vec<(&'static str, String)>,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<String>,
}

/// A Flux query as the influx CLI sends it: JSON body, all annotations.
pub fn flux(db: &Influxd, query: &str) -> Read {
    let body = serde_json::json!({
        "query": query, "type": "flux",
        "dialect": {"header": true, "delimiter": ",", "annotations": ["datatype", "group", "default"]}
    });
    Read {
        method: reqwest::Method::POST,
        path: "/api/v2/query",
        query: vec![("org", db.org.clone())],
        headers: vec![("Content-Type", "application/json".into()), ("Accept", "application/csv".into())],
        body: Some(body.to_string()),
    }
}
