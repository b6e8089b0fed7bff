//! A small HTTP proxy that sits in front of a real server and injects faults.
//!
//! Faults: added latency on every request; the next N requests answered 503 with `Retry-After`
//! (InfluxDB's error shape); every request answered 503 for a while; the next N connections reset
//! (TCP RST before any response); the next N requests stalled (held without an answer, then the
//! connection dropped); every request answered with a given status and a plain-text body until
//! healed (a load balancer or proxy in front of the database, not InfluxDB); request bodies over a
//! size answered 413, as a proxy's body limit does; requests to one path answered 500 for a while;
//! the next N requests held before they are forwarded (a slow query); the next N answers cut off
//! after a number of body bytes (the connection dropped mid-answer, as a dying server or a broken
//! network does). Everything else is forwarded byte for byte, the answer streamed as it comes.
//!
//! The proxy closes each connection after one response, so a per-connection fault is a
//! per-request fault even for clients that pool connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

#[derive(Debug, Default)]
struct Faults {
    latency_ms: AtomicU64,
    fail_next: AtomicU64,
    retry_after_s: AtomicU64,
    reset_next: AtomicU64,
    stall_next: AtomicU64,
    stall_ms: AtomicU64,
    hold_next: AtomicU64,
    hold_ms: AtomicU64,
    cut_next: AtomicU64,
    cut_after: AtomicU64,
    fail_until: Mutex<Option<Instant>>,
    answer_plain: Mutex<Option<(u16, String)>>,
    fail_path_until: Mutex<Option<(String, Instant)>>,
    panic_gets: Mutex<Option<(String, u64)>>,
    max_body: AtomicU64,
    too_large: AtomicU64,
    seen: AtomicU64,
    forwarded: AtomicU64,
    failed: AtomicU64,
    reset: AtomicU64,
    stalled: AtomicU64,
    held: AtomicU64,
    cut: AtomicU64,
}

/// Takes one from a counter if it is above zero.
fn take(counter: &AtomicU64) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

/// A running fault proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    pub url: String,
    faults: Arc<Faults>,
    task: JoinHandle<()>,
}

/// What the proxy has seen so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyStats {
    pub seen: u64,
    pub forwarded: u64,
    pub failed: u64,
    pub reset: u64,
    pub stalled: u64,
    /// Requests answered 413 by the body limit.
    pub too_large: u64,
    /// Requests held before they were forwarded.
    pub held: u64,
    /// Answers cut off mid-body.
    pub cut: u64,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port forwarding to `upstream` (e.g. `http://127.0.0.1:8086`).
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fault proxy");
        let addr: SocketAddr = listener.local_addr().expect("proxy address");
        let faults = Arc::new(Faults::default());
        let upstream = upstream.trim_end_matches('/').to_string();
        let client = reqwest::Client::builder()
            .no_gzip()
            .timeout(Duration::from_secs(300))
            .build()
            .expect("proxy http client");
        let state = faults.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = state.clone();
                let client = client.clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if take(&state.reset_next) {
                        state.seen.fetch_add(1, Ordering::SeqCst);
                        state.reset.fetch_add(1, Ordering::SeqCst);
                        let mut stream = stream;
                        let mut buf = [0u8; 1024];
                        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
                        // SO_LINGER 0: close() sends RST instead of FIN.
                        let _ = stream.set_zero_linger();
                        drop(stream);
                        return;
                    }
                    let svc =
                        service_fn(move |req| handle(req, state.clone(), client.clone(), upstream.clone()));
                    let _ = http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FaultProxy { url: format!("http://{addr}"), faults, task }
    }

    /// Adds `latency` before every request is forwarded.
    pub fn set_latency(&self, latency: Duration) {
        self.faults.latency_ms.store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Answers the next `n` requests with 503 and `Retry-After: retry_after_s`.
    pub fn fail_next(&self, n: u64, retry_after_s: u64) {
        self.faults.retry_after_s.store(retry_after_s, Ordering::SeqCst);
        self.faults.fail_next.store(n, Ordering::SeqCst);
    }

    /// Answers every request with 503 (`Retry-After: retry_after_s`) for `period` from now.
    pub fn fail_for(&self, period: Duration, retry_after_s: u64) {
        self.faults.retry_after_s.store(retry_after_s, Ordering::SeqCst);
        *self.faults.fail_until.lock().expect("fault lock") = Some(Instant::now() + period);
    }

    /// Answers every request whose path starts with `prefix` with 500 in InfluxDB's error shape
    /// (as influxd does when, say, a shard snapshot fails) for `period` from now; other requests
    /// pass.
    pub fn fail_path_for(&self, prefix: &str, period: Duration) {
        *self.faults.fail_path_until.lock().expect("fault lock") =
            Some((prefix.to_string(), Instant::now() + period));
    }

    /// Answers the next `n` GETs whose path starts with `prefix` with 500 and the body influxd
    /// sends when a handler panics and its middleware recovers (`a panic has occurred: <path>:
    /// runtime error: ...`). influxd 2.7 to 2.9 do this when asked for a finished task run whose
    /// record in `_tasks` is not yet whole: the by-ID reader logs a field it cannot parse through a
    /// nil logger (`task/backend/analytical_storage.go`).
    pub fn panic_next_gets(&self, prefix: &str, n: u64) {
        *self.faults.panic_gets.lock().expect("fault lock") = Some((prefix.to_string(), n));
    }

    /// Resets the next `n` connections before answering.
    pub fn reset_next(&self, n: u64) {
        self.faults.reset_next.store(n, Ordering::SeqCst);
    }

    /// Holds the next `n` requests for `hold` without answering, then drops the connection.
    pub fn stall_next(&self, n: u64, hold: Duration) {
        self.faults.stall_ms.store(hold.as_millis() as u64, Ordering::SeqCst);
        self.faults.stall_next.store(n, Ordering::SeqCst);
    }

    /// Holds the next `n` requests for `hold`, then forwards them and relays the answer: a query
    /// the database takes `hold` longer to answer.
    pub fn hold_next(&self, n: u64, hold: Duration) {
        self.faults.hold_ms.store(hold.as_millis() as u64, Ordering::SeqCst);
        self.faults.hold_next.store(n, Ordering::SeqCst);
    }

    /// Relays the status, headers and first `after_bytes` body bytes of the next `n` answers,
    /// then drops the connection without ending the body: the answer breaks off mid-stream.
    pub fn cut_next(&self, n: u64, after_bytes: u64) {
        self.faults.cut_after.store(after_bytes, Ordering::SeqCst);
        self.faults.cut_next.store(n, Ordering::SeqCst);
    }

    /// Answers every request with `status` and `body` as plain text (not InfluxDB's error shape)
    /// until [`FaultProxy::heal`].
    pub fn answer_plain(&self, status: u16, body: &str) {
        *self.faults.answer_plain.lock().expect("fault lock") = Some((status, body.to_string()));
    }

    /// Answers 413 (a proxy's plain page) to every request whose body is larger than `max_bytes`
    /// as sent (compressed bodies count compressed), until [`FaultProxy::heal`].
    pub fn limit_body(&self, max_bytes: u64) {
        self.faults.max_body.store(max_bytes, Ordering::SeqCst);
    }

    /// Clears every fault.
    pub fn heal(&self) {
        self.faults.latency_ms.store(0, Ordering::SeqCst);
        self.faults.fail_next.store(0, Ordering::SeqCst);
        self.faults.reset_next.store(0, Ordering::SeqCst);
        self.faults.stall_next.store(0, Ordering::SeqCst);
        self.faults.hold_next.store(0, Ordering::SeqCst);
        self.faults.cut_next.store(0, Ordering::SeqCst);
        *self.faults.fail_until.lock().expect("fault lock") = None;
        *self.faults.answer_plain.lock().expect("fault lock") = None;
        *self.faults.fail_path_until.lock().expect("fault lock") = None;
        *self.faults.panic_gets.lock().expect("fault lock") = None;
        self.faults.max_body.store(0, Ordering::SeqCst);
    }

    /// Counters of what the proxy did.
    pub fn stats(&self) -> ProxyStats {
        let f = &self.faults;
        ProxyStats {
            seen: f.seen.load(Ordering::SeqCst),
            forwarded: f.forwarded.load(Ordering::SeqCst),
            failed: f.failed.load(Ordering::SeqCst),
            reset: f.reset.load(Ordering::SeqCst),
            stalled: f.stalled.load(Ordering::SeqCst),
            too_large: f.too_large.load(Ordering::SeqCst),
            held: f.held.load(Ordering::SeqCst),
            cut: f.cut.load(Ordering::SeqCst),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug)]
struct Stalled;
impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stalled by the fault proxy")
    }
}
impl std::error::Error for Stalled {}

/// What the proxy answers with: a whole body, or the upstream's streamed as it comes.
type ProxyBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn whole(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

async fn handle(
    req: Request<Incoming>,
    faults: Arc<Faults>,
    client: reqwest::Client,
    upstream: String,
) -> Result<Response<ProxyBody>, Stalled> {
    faults.seen.fetch_add(1, Ordering::SeqCst);
    let latency = faults.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if take(&faults.stall_next) {
        faults.stalled.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(faults.stall_ms.load(Ordering::SeqCst))).await;
        return Err(Stalled);
    }
    if take(&faults.hold_next) {
        faults.held.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(faults.hold_ms.load(Ordering::SeqCst))).await;
    }
    let plain = faults.answer_plain.lock().expect("fault lock").clone();
    if let Some((status, body)) = plain {
        faults.failed.fetch_add(1, Ordering::SeqCst);
        let _ = req.into_body().collect().await;
        let resp = Response::builder()
            .status(status)
            .header("Content-Type", "text/html")
            .body(whole(body))
            .unwrap_or_else(|_| bad_gateway("building the plain answer"));
        return Ok(resp);
    }
    let path_failing =
        faults.fail_path_until.lock().expect("fault lock").as_ref().is_some_and(|(prefix, until)| {
            req.uri().path().starts_with(prefix.as_str()) && Instant::now() < *until
        });
    let panicking = req.method() == hyper::Method::GET && {
        let mut armed = faults.panic_gets.lock().expect("fault lock");
        match armed.as_mut() {
            Some((prefix, n)) if *n > 0 && req.uri().path().starts_with(prefix.as_str()) => {
                *n -= 1;
                true
            }
            _ => false,
        }
    };
    if panicking {
        faults.failed.fetch_add(1, Ordering::SeqCst);
        let message = format!(
            "a panic has occurred: {}: runtime error: invalid memory address or nil pointer dereference",
            req.uri().path()
        );
        let body = serde_json::json!({"code": "internal error", "message": message}).to_string();
        return Ok(Response::builder()
            .status(500)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-Platform-Error-Code", "internal error")
            .body(whole(body))
            .unwrap_or_else(|_| bad_gateway("building the 500")));
    }
    if path_failing {
        faults.failed.fetch_add(1, Ordering::SeqCst);
        let _ = req.into_body().collect().await;
        let body = r#"{"code":"internal error","message":"injected by the fault proxy"}"#;
        let resp = Response::builder()
            .status(500)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("X-Platform-Error-Code", "internal error")
            .body(whole(Bytes::from_static(body.as_bytes())))
            .expect("static response");
        return Ok(resp);
    }
    let in_window = faults.fail_until.lock().expect("fault lock").is_some_and(|until| Instant::now() < until);
    if in_window || take(&faults.fail_next) {
        faults.failed.fetch_add(1, Ordering::SeqCst);
        // Drain the body so the client sees the answer rather than a broken pipe.
        let _ = req.into_body().collect().await;
        let body = r#"{"code":"unavailable","message":"service unavailable (injected by the fault proxy)"}"#;
        let resp = Response::builder()
            .status(503)
            .header("Content-Type", "application/json; charset=utf-8")
            .header("Retry-After", faults.retry_after_s.load(Ordering::SeqCst).to_string())
            .header("X-Platform-Error-Code", "unavailable")
            .body(whole(Bytes::from_static(body.as_bytes())))
            .expect("static response");
        return Ok(resp);
    }
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(bad_gateway(&format!("reading the request body: {e}"))),
    };
    let max_body = faults.max_body.load(Ordering::SeqCst);
    if max_body > 0 && body.len() as u64 > max_body {
        faults.too_large.fetch_add(1, Ordering::SeqCst);
        let page = "<html><head><title>413 Request Entity Too Large</title></head></html>";
        return Ok(Response::builder()
            .status(413)
            .header("Content-Type", "text/html")
            .body(whole(Bytes::from_static(page.as_bytes())))
            .unwrap_or_else(|_| bad_gateway("building the 413")));
    }
    Ok(forward(parts, body, &client, &upstream, &faults).await)
}

async fn forward(
    parts: http::request::Parts,
    body: Bytes,
    client: &reqwest::Client,
    upstream: &str,
    faults: &Faults,
) -> Response<ProxyBody> {
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut out = client.request(parts.method.clone(), format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "connection" | "content-length" | "transfer-encoding") {
            out = out.header(name, value);
        }
    }
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(e) => return bad_gateway(&format!("upstream {upstream}: {e}")),
    };
    faults.forwarded.fetch_add(1, Ordering::SeqCst);
    let mut builder = Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        if !matches!(name.as_str(), "connection" | "content-length" | "transfer-encoding") {
            builder = builder.header(name, value);
        }
    }
    // Streamed as it arrives; a cut answer ends with an error, which makes hyper drop the
    // connection without the body's end (no last chunk).
    let cut_after = take(&faults.cut_next).then(|| faults.cut_after.load(Ordering::SeqCst));
    if cut_after.is_some() {
        faults.cut.fetch_add(1, Ordering::SeqCst);
    }
    let chunks = futures::stream::unfold((resp, 0u64), move |(mut resp, sent)| async move {
        if cut_after.is_some_and(|limit| sent >= limit) {
            let cut: Box<dyn std::error::Error + Send + Sync> = "cut off by the fault proxy".into();
            return Some((Err(cut), (resp, sent)));
        }
        match resp.chunk().await {
            Ok(Some(mut chunk)) => {
                if let Some(limit) = cut_after {
                    chunk.truncate(usize::try_from(limit - sent).unwrap_or(usize::MAX).min(chunk.len()));
                }
                let sent = sent + chunk.len() as u64;
                Some((Ok(Frame::data(chunk)), (resp, sent)))
            }
            Ok(None) => None,
            Err(e) => Some((Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>), (resp, sent))),
        }
    });
    // After an error the stream must end: hyper stops reading it anyway, but be explicit.
    let chunks = chunks.scan(false, |failed, item| {
        let done = *failed;
        *failed |= item.is_err();
        futures::future::ready((!done).then_some(item))
    });
    builder
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .unwrap_or_else(|_| bad_gateway("building the response"))
}

fn bad_gateway(why: &str) -> Response<ProxyBody> {
    let body =
        serde_json::json!({"code": "internal error", "message": format!("fault proxy: {why}")}).to_string();
    Response::builder()
        .status(502)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(whole(body))
        .unwrap_or_else(|_| Response::new(whole(Bytes::new())))
}
