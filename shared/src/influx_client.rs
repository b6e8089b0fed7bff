//! Talking to InfluxDB: one HTTP client, one way to send a write, and one function that decides
//! what a writer does with the answer.
//!
//! The decision follows DESIGN.md's failure classes:
//!
//! | answer | class | action |
//! |---|---|---|
//! | 2xx | done | checkpoint |
//! | 400 `invalid`, 422 `unprocessable entity` (influxd's error body) | the data is bad | dead-letter the record with the answer; continue |
//! | 400, 422 with any other body (a proxy, a TLS port spoken to in plain HTTP) | configuration | retry, never drop; log the hint |
//! | 413 | too big | split at line boundaries and resend |
//! | 401, 403, 404 | configuration | retry, never drop; log loudly |
//! | 408, 429, 5xx, timeout, connection error | transient | retry with backoff, honouring `Retry-After` |
//!
//! Request building ([`write_request`]), classification ([`classify`], [`classify_transport`])
//! and the send ([`send_write`]) are separate so each can be tested on its own; backoff is the
//! caller's ([`Backoff`]).

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;

use crate::envelope::{Api, WriteParams};
use crate::influx_error::{ErrorCode, message_of};
use crate::sensitive::Sensitive;

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("building the HTTP client failed: {0}")]
pub struct ClientError(#[from] reqwest::Error);

/// Timeouts and TLS settings of the client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Whole-request timeout.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Accept any TLS certificate. Off unless the operator asks (`--skip-verify`).
    pub skip_verify: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            skip_verify: false,
        }
    }
}

/// The one reqwest client (rustls, connection reuse, timeouts). Response bodies are *not*
/// decompressed automatically: callers that relay bodies (the query router) must see them as the
/// server sent them.
pub fn http_client(opts: &ClientOptions) -> Result<reqwest::Client, ClientError> {
    Ok(reqwest::Client::builder()
        .timeout(opts.timeout)
        .connect_timeout(opts.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(50))
        .tcp_keepalive(Duration::from_secs(30))
        .danger_accept_invalid_certs(opts.skip_verify)
        .no_gzip()
        .user_agent(concat!("influx-live-migration/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// The clients for the endpoints of the endpoint secret: one that verifies TLS, and one that
/// accepts any certificate, built on first use, for an endpoint whose `skip_verify` the secret
/// sets. Every component that talks to an endpoint picks its client here, so the secret's
/// setting holds for the writers, the admission check and the router alike.
#[derive(Debug)]
pub struct EndpointClients {
    options: ClientOptions,
    verified: reqwest::Client,
    unverified: std::sync::OnceLock<Result<reqwest::Client, String>>,
}

impl EndpointClients {
    /// Builds the verifying client (`options.skip_verify` is ignored: the endpoint decides).
    pub fn new(options: ClientOptions) -> Result<EndpointClients, ClientError> {
        let options = ClientOptions { skip_verify: false, ..options };
        Ok(EndpointClients {
            verified: http_client(&options)?,
            options,
            unverified: std::sync::OnceLock::new(),
        })
    }

    /// The client for an endpoint: TLS verified unless `skip_verify`.
    pub fn get(&self, skip_verify: bool) -> Result<&reqwest::Client, &str> {
        if !skip_verify {
            return Ok(&self.verified);
        }
        self.unverified
            .get_or_init(|| {
                http_client(&ClientOptions { skip_verify: true, ..self.options.clone() })
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

/// The class of a failed write that is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Wrong token, missing permission, missing bucket or org: an operator must act.
    Configuration,
    /// Overload, server error, timeout, connection trouble: it will pass.
    Transient,
}

/// What a writer does after a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteAction {
    /// The database has the data.
    Done,
    /// Try again later; the data must not be dropped.
    Retry { class: RetryClass, status: Option<u16>, reason: String, retry_after: Option<Duration> },
    /// The database refused the data itself: keep it aside with the reason and move on.
    DeadLetter { status: u16, reason: String },
    /// The request was too large: split it at line boundaries and send the halves.
    Split,
}

impl WriteAction {
    pub fn is_done(&self) -> bool {
        matches!(self, WriteAction::Done)
    }
}

/// Decides what to do with an answer to a write (see the module table).
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> WriteAction {
    let reason = || message_of(body);
    match status {
        200..=299 => WriteAction::Done,
        400 | 422 if is_refused_data(status, body) => WriteAction::DeadLetter { status, reason: reason() },
        400 | 422 => WriteAction::Retry {
            class: RetryClass::Configuration,
            status: Some(status),
            reason: format!(
                "the database answered {status} without an InfluxDB error body for a write ({}): check the \
                 endpoint's URL scheme (http or https) and port, and any proxy in front of it",
                snippet(body)
            ),
            retry_after: retry_after(headers),
        },
        413 => WriteAction::Split,
        401 | 403 | 404 => WriteAction::Retry {
            class: RetryClass::Configuration,
            status: Some(status),
            reason: reason(),
            retry_after: retry_after(headers),
        },
        _ => WriteAction::Retry {
            class: RetryClass::Transient,
            status: Some(status),
            reason: reason(),
            retry_after: retry_after(headers),
        },
    }
}

/// Whether a 400/422 is influxd refusing the data of a write: its error JSON with the code a
/// write gets for bad line protocol (400 `invalid`) or a partial write (422 `unprocessable
/// entity`) and a message. Anything else (a proxy's page, a TLS port answering plain HTTP, an
/// empty body) says nothing about the data.
fn is_refused_data(status: u16, body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        code: String,
        message: String,
    }
    let Ok(e) = serde_json::from_slice::<ErrorBody>(body) else { return false };
    let code = match status {
        400 => ErrorCode::Invalid,
        _ => ErrorCode::UnprocessableEntity,
    };
    e.code == code.as_str() && !e.message.trim().is_empty()
}

/// The start of a body that is not InfluxDB's, for a log line.
fn snippet(body: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "empty body".into();
    }
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// Decides what to do when no answer came (timeout, refused or reset connection, TLS failure):
/// always a transient retry — the write may or may not have landed, and replaying it is
/// idempotent because every line carries its timestamp.
pub fn classify_transport(err: &reqwest::Error) -> WriteAction {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "connection failed"
    };
    WriteAction::Retry {
        class: RetryClass::Transient,
        status: None,
        reason: format!("{kind}: {}", error_chain(err)),
        retry_after: None,
    }
}

/// An error and its sources on one line (reqwest's top-level message alone is vague). URLs in
/// reqwest errors carry no credentials: tokens travel in headers, never in URLs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        let m = e.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = e.source();
    }
    s
}

/// `Retry-After` in seconds (the HTTP-date form is treated as absent).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Builds a write request (not sent): `POST {base}{path}?{params}` with the credential and a gzip
/// body.
pub fn write_request(
    client: &reqwest::Client,
    base_url: &str,
    api: Api,
    params: &WriteParams,
    authorization: Option<&Sensitive>,
    gzip_body: Bytes,
) -> reqwest::RequestBuilder {
    let mut req = client
        .post(format!("{}{}", base_url.trim_end_matches('/'), api.path()))
        .query(&params.query_pairs())
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(http::header::CONTENT_ENCODING, "gzip")
        .body(gzip_body);
    if let Some(v) = authorization.and_then(Sensitive::header_value) {
        req = req.header(http::header::AUTHORIZATION, v);
    }
    req
}

/// Sends a write and classifies the outcome.
pub async fn send_write(request: reqwest::RequestBuilder) -> WriteAction {
    match request.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            match resp.bytes().await {
                Ok(body) => classify(status, &headers, &body),
                Err(e) if (200..300).contains(&status) => {
                    tracing::debug!(error = %error_chain(&e), "write succeeded but its empty body was not read");
                    WriteAction::Done
                }
                Err(e) => classify_transport(&e),
            }
        }
        Err(e) => classify_transport(&e),
    }
}

/// Exponential backoff with full jitter, capped; a server's `Retry-After` wins when longer.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { initial, max, attempt: 0 }
    }

    /// The wait before the next attempt.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << self.attempt.min(16)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let jittered = exp.mul_f64(0.5 + rand::random::<f64>() * 0.5);
        match retry_after {
            Some(ra) if ra > jittered => ra,
            _ => jittered,
        }
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_retry_after(s: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, http::HeaderValue::from_str(s).unwrap());
        h
    }

    #[test]
    fn failure_class_table() {
        let none = HeaderMap::new();
        let body = br#"{"code":"x","message":"why"}"#;
        let invalid = br#"{"code":"invalid","message":"why"}"#;
        let partial = br#"{"code":"unprocessable entity","message":"why"}"#;
        assert_eq!(classify(204, &none, b""), WriteAction::Done);
        assert_eq!(
            classify(400, &none, invalid),
            WriteAction::DeadLetter { status: 400, reason: "why".into() }
        );
        assert_eq!(
            classify(422, &none, partial),
            WriteAction::DeadLetter { status: 422, reason: "why".into() }
        );
        assert_eq!(classify(413, &none, body), WriteAction::Split);
        for s in [401, 403, 404] {
            assert!(
                matches!(classify(s, &none, body), WriteAction::Retry { class: RetryClass::Configuration, status: Some(x), .. } if x == s),
                "{s}"
            );
        }
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(classify(s, &none, body), WriteAction::Retry { class: RetryClass::Transient, status: Some(x), .. } if x == s),
                "{s}"
            );
        }
    }

    #[test]
    fn a_400_is_bad_data_only_with_influxds_error_body_for_a_write() {
        // Regression: every 400/422 was dead-lettered, so an `http://` URL in front of a TLS
        // server, or a proxy answering 400, moved the whole stream into dead-letter storage.
        let none = HeaderMap::new();
        let parse = br#"{"code":"invalid","message":"unable to parse 'm v=': missing field value"}"#;
        assert!(matches!(classify(400, &none, parse), WriteAction::DeadLetter { status: 400, .. }));
        let partial = br#"{"code":"unprocessable entity","message":"failure writing points to database: partial write: field type conflict"}"#;
        assert!(matches!(classify(422, &none, partial), WriteAction::DeadLetter { status: 422, .. }));
        let not_influx: [(u16, &[u8]); 6] = [
            (400, b"Client sent an HTTP request to an HTTPS server.\n"),
            (400, b""),
            (400, b"<html><body><h1>400 Bad Request</h1></body></html>"),
            (400, br#"{"message":"Bad Request"}"#),
            (400, br#"{"code":"unauthorized","message":"unauthorized access"}"#),
            (422, br#"{"code":"conflict","message":"bucket with name b already exists"}"#),
        ];
        for (status, body) in not_influx {
            match classify(status, &none, body) {
                WriteAction::Retry { class: RetryClass::Configuration, status: Some(s), reason, .. } => {
                    assert_eq!(s, status);
                    assert!(
                        reason.contains("without an InfluxDB error body for a write")
                            && reason.contains("URL scheme"),
                        "{reason}"
                    );
                }
                other => panic!("{status} {:?}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn retry_after_is_honoured() {
        match classify(503, &with_retry_after("7"), b"") {
            WriteAction::Retry { retry_after, .. } => assert_eq!(retry_after, Some(Duration::from_secs(7))),
            other => panic!("{other:?}"),
        }
        assert_eq!(retry_after(&with_retry_after("Wed, 21 Oct 2026 07:28:00 GMT")), None);
        let mut b = Backoff::new(Duration::from_millis(10), Duration::from_millis(100));
        assert_eq!(b.next_delay(Some(Duration::from_secs(3))), Duration::from_secs(3));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay(None)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(delays[9] >= Duration::from_secs(1), "{delays:?}");
        assert!(delays[0] <= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_transient_retry() {
        let client =
            http_client(&ClientOptions { connect_timeout: Duration::from_secs(2), ..Default::default() })
                .unwrap();
        // Port 1 on loopback: nothing listens there.
        let req = write_request(
            &client,
            "http://127.0.0.1:1",
            Api::V2,
            &WriteParams::default(),
            None,
            Bytes::new(),
        );
        match send_write(req).await {
            WriteAction::Retry { class: RetryClass::Transient, status: None, reason, .. } => {
                assert!(reason.contains("connect"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn write_request_carries_params_auth_and_gzip() {
        let client = http_client(&ClientOptions::default()).unwrap();
        let params = WriteParams {
            org: Some("o r g".into()),
            bucket: Some("b".into()),
            precision: Some("s".into()),
            ..Default::default()
        };
        let req = write_request(
            &client,
            "http://h:1/",
            Api::V2,
            &params,
            Some(&Sensitive::new("Token t")),
            Bytes::from_static(b"x"),
        )
        .build()
        .unwrap();
        assert_eq!(req.url().as_str(), "http://h:1/api/v2/write?org=o+r+g&bucket=b&precision=s");
        assert_eq!(req.headers()["authorization"], "Token t");
        assert!(req.headers()["authorization"].is_sensitive());
        assert_eq!(req.headers()["content-encoding"], "gzip");
    }
}
