//! Client traffic through the gateway for the whole of a live migration: writers in every shape
//! InfluxDB clients use, and readers running Flux and InfluxQL queries.
//!
//! Writers cycle through v2 and v1 (`/api/v2/write`, `/write?db=&rp=`), gzip and plain bodies,
//! lines with and without timestamps, and the four precisions. Every point has a unique `id` tag
//! (its own series, so no two points can overwrite each other, not even two untimestamped lines
//! of one request) and an integer field equal to its sequence number. A point counts as
//! acknowledged only when the gateway answered 204 to its request; those are what must be found
//! in both databases at the end. Readers record every answer that is not a 200.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// Who the clients are and how hard they push.
#[derive(Debug, Clone)]
pub struct TrafficConfig {
    pub gateway_url: String,
    pub org: String,
    pub bucket: String,
    pub token: String,
    pub writers: usize,
    pub readers: usize,
    /// Lines per write request.
    pub lines_per_write: usize,
    /// Pause between two requests of one writer.
    pub write_pause: Duration,
    /// Pause between two queries of one reader.
    pub read_pause: Duration,
}

/// A point a client was told is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckedPoint {
    pub id: String,
    pub seq: i64,
}

/// A failed read: when (seconds since the traffic started), what, and the answer.
#[derive(Debug, Clone)]
pub struct FailedRead {
    pub at_secs: f64,
    pub query: &'static str,
    pub status: Option<u16>,
    pub detail: String,
}

/// Counters of the traffic so far.
#[derive(Debug, Clone, Default)]
pub struct TrafficStats {
    pub write_requests_ok: u64,
    pub write_requests_failed: u64,
    pub points_acknowledged: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
}

/// Running traffic; stops when dropped.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    acked: Arc<Mutex<Vec<AckedPoint>>>,
    failed_reads: Arc<Mutex<Vec<FailedRead>>>,
    write_failures: Arc<Mutex<Vec<String>>>,
    counters: Arc<[AtomicU64; 5]>,
}

const WRITE_OK: usize = 0;
const WRITE_FAILED: usize = 1;
const POINTS: usize = 2;
const READ_OK: usize = 3;
const READ_FAILED: usize = 4;

/// The shape of one write request.
#[derive(Debug, Clone, Copy)]
struct Shape {
    v1: bool,
    gzip: bool,
    timestamps: bool,
    precision: &'static str,
}

fn shape(n: u64) -> Shape {
    const PRECISIONS: [&str; 4] = ["ns", "us", "ms", "s"];
    Shape {
        v1: n % 2 == 1,
        gzip: (n / 2) % 2 == 1,
        timestamps: (n / 4).is_multiple_of(2),
        precision: PRECISIONS[((n / 8) % 4) as usize],
    }
}

impl Traffic {
    /// Starts the writers and readers.
    pub fn start(config: TrafficConfig) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let failed_reads = Arc::new(Mutex::new(Vec::new()));
        let write_failures = Arc::new(Mutex::new(Vec::new()));
        let counters: Arc<[AtomicU64; 5]> = Arc::new(Default::default());
        let http = reqwest::Client::builder()
            .no_gzip()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("traffic http client");
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..config.writers {
            let (config, http, stop, acked, counters, failures) = (
                config.clone(),
                http.clone(),
                stop.clone(),
                acked.clone(),
                counters.clone(),
                write_failures.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut seq: i64 = 0;
                let mut n: u64 = w as u64;
                while !stop.load(Ordering::SeqCst) {
                    let s = shape(n);
                    n += 1;
                    let (request, points) = write_request(&http, &config, w, &mut seq, s);
                    match request.send().await {
                        Ok(resp) if resp.status().as_u16() == 204 => {
                            counters[WRITE_OK].fetch_add(1, Ordering::SeqCst);
                            counters[POINTS].fetch_add(points.len() as u64, Ordering::SeqCst);
                            acked.lock().unwrap_or_else(|p| p.into_inner()).extend(points);
                        }
                        Ok(resp) => {
                            counters[WRITE_FAILED].fetch_add(1, Ordering::SeqCst);
                            let status = resp.status().as_u16();
                            let body = resp.text().await.unwrap_or_default();
                            failures
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(format!("{status}: {body}"));
                        }
                        Err(e) => {
                            counters[WRITE_FAILED].fetch_add(1, Ordering::SeqCst);
                            failures.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string());
                        }
                    }
                    tokio::time::sleep(config.write_pause).await;
                }
            }));
        }
        for r in 0..config.readers {
            let (config, http, stop, counters, failed) =
                (config.clone(), http.clone(), stop.clone(), counters.clone(), failed_reads.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = r;
                while !stop.load(Ordering::SeqCst) {
                    let (name, req) = read_request(&http, &config, n);
                    n += 1;
                    let outcome = match req.send().await {
                        Ok(resp) if resp.status().as_u16() == 200 => match resp.bytes().await {
                            Ok(_) => Ok(()),
                            Err(e) => Err((Some(200), e.to_string())),
                        },
                        Ok(resp) => {
                            let status = resp.status().as_u16();
                            Err((Some(status), resp.text().await.unwrap_or_default()))
                        }
                        Err(e) => Err((None, e.to_string())),
                    };
                    match outcome {
                        Ok(()) => {
                            counters[READ_OK].fetch_add(1, Ordering::SeqCst);
                        }
                        Err((status, detail)) => {
                            counters[READ_FAILED].fetch_add(1, Ordering::SeqCst);
                            failed.lock().unwrap_or_else(|p| p.into_inner()).push(FailedRead {
                                at_secs: started.elapsed().as_secs_f64(),
                                query: name,
                                status,
                                detail,
                            });
                        }
                    }
                    tokio::time::sleep(config.read_pause).await;
                }
            }));
        }
        Traffic { stop, tasks, acked, failed_reads, write_failures, counters }
    }

    pub fn stats(&self) -> TrafficStats {
        let c = |i: usize| self.counters[i].load(Ordering::SeqCst);
        TrafficStats {
            write_requests_ok: c(WRITE_OK),
            write_requests_failed: c(WRITE_FAILED),
            points_acknowledged: c(POINTS),
            reads_ok: c(READ_OK),
            reads_failed: c(READ_FAILED),
        }
    }

    /// Stops every client and waits for the requests in flight.
    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }

    pub fn acknowledged(&self) -> Vec<AckedPoint> {
        self.acked.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn failed_reads(&self) -> Vec<FailedRead> {
        self.failed_reads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn write_failures(&self) -> Vec<String> {
        self.write_failures.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The client's own clock in `precision` (every point has its own series, so two points with the
/// same time never overwrite each other). Recent times matter: `verify` leaves out the last
/// moments, which are still on their way to the destination.
fn timestamp(precision: &str) -> i64 {
    let ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    match precision {
        "s" => ns / 1_000_000_000,
        "ms" => ns / 1_000_000,
        "us" => ns / 1_000,
        _ => ns,
    }
}

fn write_request(
    http: &reqwest::Client,
    config: &TrafficConfig,
    writer: usize,
    seq: &mut i64,
    s: Shape,
) -> (reqwest::RequestBuilder, Vec<AckedPoint>) {
    let mut body = String::new();
    let mut points = Vec::with_capacity(config.lines_per_write);
    let variant = format!(
        "{}-{}-{}-{}",
        if s.v1 { "v1" } else { "v2" },
        if s.gzip { "gzip" } else { "plain" },
        if s.timestamps { "ts" } else { "nots" },
        s.precision
    );
    for _ in 0..config.lines_per_write {
        *seq += 1;
        let id = format!("w{writer}-{seq}");
        body.push_str(&format!("traffic,id={id},variant={variant} seq={seq}i,value={seq}.25"));
        if s.timestamps {
            body.push_str(&format!(" {}", timestamp(s.precision)));
        }
        body.push('\n');
        points.push(AckedPoint { id, seq: *seq });
    }
    let req = if s.v1 {
        http.post(format!("{}/write", config.gateway_url)).query(&[
            ("db", config.bucket.as_str()),
            ("rp", "autogen"),
            ("precision", s.precision),
        ])
    } else {
        http.post(format!("{}/api/v2/write", config.gateway_url)).query(&[
            ("org", config.org.as_str()),
            ("bucket", config.bucket.as_str()),
            ("precision", s.precision),
        ])
    };
    let req = req
        .header("Authorization", format!("Token {}", config.token))
        .header("Content-Type", "text/plain; charset=utf-8");
    let req = if s.gzip {
        req.header("Content-Encoding", "gzip")
            .body(shared::envelope::gzip(body.as_bytes()).unwrap_or_default())
    } else {
        req.body(body)
    };
    (req, points)
}

fn read_request(
    http: &reqwest::Client,
    config: &TrafficConfig,
    n: usize,
) -> (&'static str, reqwest::RequestBuilder) {
    let auth = format!("Token {}", config.token);
    if n.is_multiple_of(2) {
        let flux = format!(
            "from(bucket: \"{}\") |> range(start: -1d) |> filter(fn: (r) => r._measurement == \"traffic\" and r._field == \"seq\") |> group() |> count()",
            config.bucket
        );
        let req = http
            .post(format!("{}/api/v2/query", config.gateway_url))
            .query(&[("org", config.org.as_str())])
            .header("Authorization", auth)
            .header("Accept", "application/csv")
            .json(&serde_json::json!({"query": flux, "type": "flux", "dialect": {"annotations": ["group", "datatype", "default"]}}));
        ("flux", req)
    } else {
        let req = http
            .get(format!("{}/query", config.gateway_url))
            .query(&[("db", config.bucket.as_str()), ("q", "SELECT count(seq) FROM traffic")])
            .header("Authorization", auth);
        ("influxql", req)
    }
}

/// What the end of a migration is checked against: every acknowledged point, by id, with its
/// sequence number, must be in `rows` (Flux records of field `seq`). Returns the ids missing and
/// those with a wrong value.
pub fn missing_points(acked: &[AckedPoint], rows: &[crate::flux::FluxRecord]) -> (Vec<String>, Vec<String>) {
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for r in rows {
        if let (Some(id), Some(v)) = (r.get("id"), r.get("_value")) {
            found.insert(id.to_string(), v.to_string());
        }
    }
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for p in acked {
        match found.get(&p.id) {
            None => missing.push(p.id.clone()),
            Some(v) if v != &p.seq.to_string() => wrong.push(format!("{}: {v} != {}", p.id, p.seq)),
            Some(_) => {}
        }
    }
    (missing, wrong)
}

/// A writer someone forgot to move behind the gateway: it writes straight to the source until it
/// is moved ([`ForgottenWriter::move_to`]), then through the gateway. Its points are
/// `forgotten,writer=direct seq=<n>i,v=<float> <ns>`, ten per request; it keeps the seq and
/// value of every point acknowledged, and how many went straight to the source.
pub struct ForgottenWriter {
    stop: Arc<AtomicBool>,
    target: Arc<Mutex<String>>,
    task: Option<JoinHandle<()>>,
    acked: Arc<Mutex<Vec<(i64, String)>>>,
    direct: Arc<AtomicU64>,
}

impl ForgottenWriter {
    /// Starts writing to `url` (the source) into `org`/`bucket` with `token`, a request every
    /// `pause`.
    pub fn start(url: &str, org: &str, bucket: &str, token: &str, pause: Duration) -> ForgottenWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let target = Arc::new(Mutex::new(url.to_string()));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let direct = Arc::new(AtomicU64::new(0));
        let source = url.to_string();
        let (org, bucket, token) = (org.to_string(), bucket.to_string(), token.to_string());
        let task = {
            let (stop, target, acked, direct) = (stop.clone(), target.clone(), acked.clone(), direct.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut seq: i64 = 0;
                while !stop.load(Ordering::SeqCst) {
                    let url = target.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
                    let batch: Vec<(i64, String)> =
                        (0..10).map(|i| (seq + i, format!("{}.75", (seq + i) * 11))).collect();
                    let body: String = batch
                        .iter()
                        .enumerate()
                        .map(|(i, (s, v))| {
                            format!("forgotten,writer=direct seq={s}i,v={v} {}\n", now + i as i64)
                        })
                        .collect();
                    let answer = client
                        .post(format!("{url}/api/v2/write"))
                        .query(&[("org", org.as_str()), ("bucket", bucket.as_str()), ("precision", "ns")])
                        .header("Authorization", format!("Token {token}"))
                        .body(body)
                        .send()
                        .await;
                    if answer.is_ok_and(|r| r.status().as_u16() == 204) {
                        if url == source {
                            direct.fetch_add(batch.len() as u64, Ordering::SeqCst);
                        }
                        acked.lock().unwrap_or_else(|p| p.into_inner()).extend(batch);
                        seq += 10;
                    }
                    tokio::time::sleep(pause).await;
                }
            })
        };
        ForgottenWriter { stop, target, task: Some(task), acked, direct }
    }

    /// The operator moves it: from now on it writes to `url` (the gateway).
    pub fn move_to(&self, url: &str) {
        *self.target.lock().unwrap_or_else(|p| p.into_inner()) = url.to_string();
    }

    pub async fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// seq → value of every acknowledged point.
    pub fn acknowledged(&self) -> Vec<(i64, String)> {
        self.acked.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Points acknowledged by the source itself (before the move).
    pub fn direct(&self) -> u64 {
        self.direct.load(Ordering::SeqCst)
    }
}

impl Drop for ForgottenWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}
