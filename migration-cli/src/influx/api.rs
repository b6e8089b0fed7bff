//! A typed async client for the InfluxDB OSS 2.x HTTP API: the calls the seeding migration and the
//! live-migration operations make.
//!
//! One [`InfluxApi`] is one server and one token. Every method is one HTTP request; retrying is
//! the caller's decision ([`ApiError::is_transient`] says when it is safe), because only the
//! caller knows whether the request can be repeated (a shard upload can, a bucket creation
//! cannot).
//!
//! Errors ([`ApiError`]) name the host as `scheme://host:port` only, the call (`GET
//! /api/v2/buckets`), the status and influxd's own message; the token never appears in them
//! (it travels in the `Authorization` header, marked sensitive, and is held in
//! [`shared::sensitive::Sensitive`]).
//!
//! Bodies are streamed: backup downloads and query results come back as [`ByteStream`]s, restore
//! uploads take a [`reqwest::Body`] (build one from a stream with `Body::wrap_stream`), so nothing
//! is held whole in memory. The underlying client is [`shared::influx_client::http_client`], which
//! does not decompress on its own; gzip is asked for and undone here where it helps (backup
//! metadata, query results) and passed through untouched where the bytes are stored as they came
//! (shard snapshots: the server's gzip stream *is* the `.tar.gz` file `influx backup` writes).
//!
//! Endpoints and their answers: ../../shared/docs/influxdb-v2-protocol.md §1-§4.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use shared::influx_client::{ClientOptions, error_chain, http_client, retry_after};
use shared::sensitive::Sensitive;

use crate::influx::compression::gunzip_stream;
use crate::influx::manifest::BucketManifest;
use crate::influx::multipart::{MultipartError, MultipartReader, PartHeaders, boundary_of};

/// A stream of body bytes; errors carry the host and the call.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, ApiError>> + Send>>;

/// Page size for list calls (influxd accepts 1..=100; `paging.go` DecodeFindOptions).
const PAGE: usize = 100;

/// Why a call failed. Every variant names the host (`scheme://host:port`) and the call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error(
        "{host:?} is not a usable InfluxDB address ({reason}); expected <scheme>://<host>:<port>, e.g. http://127.0.0.1:8086"
    )]
    InvalidHost { host: String, reason: String },
    #[error("{call} on {host}: could not connect: {detail}")]
    Connect { host: String, call: String, detail: String },
    #[error("{call} on {host}: no answer within {seconds} s")]
    Timeout { host: String, call: String, seconds: u64 },
    #[error("{call} on {host}: {detail}")]
    Transport { host: String, call: String, detail: String },
    #[error("{call} on {host} answered HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status {
        host: String,
        call: String,
        status: u16,
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("{call} on {host}: unexpected answer: {detail}")]
    Decode { host: String, call: String, detail: String },
    #[error("building the HTTP client: {0}")]
    Client(String),
}

impl ApiError {
    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// influxd's message, when the server answered.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            ApiError::Status { message, .. } => Some(message),
            _ => None,
        }
    }

    /// Whether repeating an idempotent call may succeed: no connection, a timeout, a cut body,
    /// 408, 429 or a 5xx (DESIGN.md failure classes).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Connect { .. } | ApiError::Timeout { .. } | ApiError::Transport { .. } => true,
            ApiError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            _ => false,
        }
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn is_unauthorized(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
}

/// Settings of an [`InfluxApi`].
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Accept any TLS certificate (`--skip-verify`). Off by default.
    pub skip_verify: bool,
    /// Limit for calls with small bodies (everything but streams).
    pub call_timeout: Duration,
    pub connect_timeout: Duration,
    /// A streamed body that delivers nothing for this long is abandoned (a stalled server).
    pub idle_timeout: Duration,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            skip_verify: false,
            call_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// `GET /health`.
#[derive(Debug, Clone, Deserialize)]
pub struct Health {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub version: Option<String>,
}

impl Health {
    /// `(major, minor)` from the version text (`v2.7.12`, `2.7.5-rc1`); `None` for builds that
    /// report no number (`dev`), which influx-cli treats as current (`api_check.go`).
    pub fn version_numbers(&self) -> Option<(u64, u64)> {
        let v = self.version.as_deref()?;
        let start = v.find(|c: char| c.is_ascii_digit())?;
        let mut parts = v[start..].split(|c: char| !c.is_ascii_digit());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    }

    /// 2.0.x servers lack `/backup/metadata`, `/restore/bucketMetadata` and gzip (the CLI's
    /// `ServerIsLegacy`).
    pub fn is_legacy(&self) -> bool {
        matches!(self.version_numbers(), Some((_, 0)))
    }
}

/// An organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Org {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A bucket's retention rule (`retentionRules[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRule {
    #[serde(rename = "type", default = "expire")]
    pub kind: String,
    /// 0 is infinite.
    #[serde(rename = "everySeconds", default)]
    pub every_seconds: i64,
    #[serde(rename = "shardGroupDurationSeconds", default, skip_serializing_if = "Option::is_none")]
    pub shard_group_duration_seconds: Option<i64>,
}

fn expire() -> String {
    "expire".into()
}

/// A bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub id: String,
    #[serde(rename = "orgID")]
    pub org_id: String,
    pub name: String,
    /// `user` or `system`.
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "retentionRules", default)]
    pub retention_rules: Vec<RetentionRule>,
    #[serde(rename = "createdAt", default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(rename = "updatedAt", default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

impl Bucket {
    /// Retention in seconds; 0 is infinite.
    pub fn retention_seconds(&self) -> i64 {
        self.retention_rules.first().map(|r| r.every_seconds).unwrap_or(0)
    }

    pub fn shard_group_duration_seconds(&self) -> Option<i64> {
        self.retention_rules.first().and_then(|r| r.shard_group_duration_seconds)
    }

    pub fn is_system(&self) -> bool {
        self.kind == "system" || self.name.starts_with('_')
    }
}

/// `POST /api/v2/buckets`.
#[derive(Debug, Clone, Serialize)]
pub struct NewBucket {
    #[serde(rename = "orgID")]
    pub org_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "retentionRules")]
    pub retention_rules: Vec<RetentionRule>,
}

/// One permission of an authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    pub action: String,
    pub resource: Value,
}

/// A token and what it may do. The token itself is redacted in `Debug`.
#[derive(Debug, Clone, Deserialize)]
pub struct Authorization {
    #[serde(default)]
    pub token: Sensitive,
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

/// What `/api/v2/restore/bucketMetadata` created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredBucket {
    pub id: String,
    pub name: String,
    #[serde(rename = "shardMappings", default)]
    pub shard_mappings: Vec<ShardMapping>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMapping {
    #[serde(rename = "oldId")]
    pub old_id: u64,
    #[serde(rename = "newId")]
    pub new_id: u64,
}

/// How a query names its organization.
#[derive(Debug, Clone, Copy)]
pub enum OrgRef<'a> {
    Id(&'a str),
}

impl OrgRef<'_> {
    fn pair(&self) -> (&'static str, &str) {
        match self {
            OrgRef::Id(i) => ("orgID", i),
        }
    }
}

/// The compression levels InfluxDB 2.9+ offers for backup downloads (request header
/// `Gzip-Compression-Level`, IDB 2.9 `http/backup_service.go`): `default` (gzip's 6), `full`
/// (9), `speedy` (1), `none` (the answer is not gzip'd at all). Older servers ignore the header
/// and gzip at their default level whenever gzip is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GzipLevel {
    Default,
    Full,
    Speedy,
    None,
}

impl GzipLevel {
    /// The header value influxd 2.9 reads.
    pub fn header_value(self) -> &'static str {
        match self {
            GzipLevel::Default => "default",
            GzipLevel::Full => "full",
            GzipLevel::Speedy => "speedy",
            GzipLevel::None => "none",
        }
    }
}

/// What a backup download asks the server for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BackupWire {
    /// `Accept-Encoding: gzip`.
    pub accept_gzip: bool,
    /// `Gzip-Compression-Level` (send only to 2.9+; older servers ignore it).
    pub level: Option<GzipLevel>,
}

impl BackupWire {
    fn apply(self, mut req: RequestBuilder) -> RequestBuilder {
        if self.accept_gzip {
            req = req.header(ACCEPT_ENCODING, "gzip");
        }
        if let Some(level) = self.level {
            req = req.header("Gzip-Compression-Level", level.header_value());
        }
        req
    }
}

/// One snapshot of a shard being downloaded.
pub struct ShardDownload {
    /// The body is gzip'd (the server compressed it; small bodies, and every body from a 2.9
    /// server asked for level `none`, are sent raw).
    pub gzip: bool,
    pub body: ByteStream,
}

/// The `/api/v2/backup/metadata` answer, read part by part (`kv`, `sql`, `buckets`).
pub struct MetadataDownload {
    reader: MultipartReader<ByteStream>,
    host: String,
}

impl MetadataDownload {
    const CALL: &'static str = "GET /api/v2/backup/metadata";

    fn map(&self, e: MultipartError<ApiError>) -> ApiError {
        match e {
            MultipartError::Source(e) => e,
            MultipartError::Malformed(detail) => {
                ApiError::Decode { host: self.host.clone(), call: Self::CALL.into(), detail }
            }
        }
    }

    /// The next part's headers (its `name` says which); `None` after the last.
    pub async fn next_part(&mut self) -> Result<Option<PartHeaders>, ApiError> {
        let r = self.reader.next_part().await;
        r.map_err(|e| self.map(e))
    }

    /// The next chunk of the current part; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        let r = self.reader.read_chunk().await;
        r.map_err(|e| self.map(e))
    }
}

/// One InfluxDB server reached with one token.
#[derive(Clone)]
pub struct InfluxApi {
    /// Base URL without a trailing slash (may carry a path prefix).
    base: String,
    /// `scheme://host:port`, for messages.
    host: String,
    token: Sensitive,
    http: reqwest::Client,
    options: ApiOptions,
}

impl std::fmt::Debug for InfluxApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxApi").field("host", &self.host).field("token", &self.token).finish()
    }
}

/// `scheme://host:port` of a URL (no user info, path or query): what messages may show.
/// Whether an annotated CSV answer holds a data row: a line that is neither an annotation, nor
/// blank, nor a table's header (the first plain line after annotations).
fn has_rows(csv: &str) -> bool {
    let mut header_seen = false;
    for line in csv.lines().map(str::trim_end) {
        if line.is_empty() || line.starts_with('#') {
            header_seen = false;
        } else if !header_seen {
            header_seen = true;
        } else {
            return true;
        }
    }
    false
}

pub fn host_label(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    let host =
        if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
    match url.port_or_known_default() {
        Some(p) => format!("{}://{}:{}", url.scheme(), host, p),
        None => format!("{}://{}", url.scheme(), host),
    }
}

impl InfluxApi {
    /// A client for the server at `url` (`http://127.0.0.1:8086`, `https://host:8086`).
    pub fn new(url: &str, token: Sensitive, options: ApiOptions) -> Result<InfluxApi, ApiError> {
        let invalid =
            |reason: &str| ApiError::InvalidHost { host: url.to_string(), reason: reason.to_string() };
        let parsed = reqwest::Url::parse(url.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(invalid("no host name"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid("credentials belong in the token variables, not in the URL"));
        }
        let host = host_label(&parsed);
        let mut base = format!("{host}{}", parsed.path());
        while base.ends_with('/') {
            base.pop();
        }
        let http = http_client(&ClientOptions {
            // Streams (backups, restores, exports) may run for hours; small calls get
            // `call_timeout` per request and streams an idle timeout.
            timeout: Duration::from_secs(7 * 24 * 3600),
            connect_timeout: options.connect_timeout,
            skip_verify: options.skip_verify,
        })
        .map_err(|e| ApiError::Client(e.to_string()))?;
        Ok(InfluxApi { base, host, token, http, options })
    }

    /// `scheme://host:port`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The base URL as given (without a trailing slash).
    #[cfg(test)]
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The same server reached with another token (after a full restore replaced the tokens).
    pub fn with_token(&self, token: Sensitive) -> InfluxApi {
        InfluxApi { token, ..self.clone() }
    }

    pub fn token(&self) -> &Sensitive {
        &self.token
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if !self.token.is_empty()
            && let Some(v) = Sensitive::new(format!("Token {}", self.token.expose())).header_value()
        {
            req = req.header(AUTHORIZATION, v);
        }
        req
    }

    fn transport(&self, call: &str, e: &reqwest::Error, seconds: u64) -> ApiError {
        if e.is_timeout() {
            ApiError::Timeout { host: self.host.clone(), call: call.into(), seconds }
        } else if e.is_connect() {
            ApiError::Connect { host: self.host.clone(), call: call.into(), detail: connect_detail(e) }
        } else {
            ApiError::Transport { host: self.host.clone(), call: call.into(), detail: error_chain(e) }
        }
    }

    /// Sends a request; a non-2xx answer becomes [`ApiError::Status`] with influxd's message.
    async fn send(&self, call: &str, req: RequestBuilder, small: bool) -> Result<Response, ApiError> {
        let req = if small { req.timeout(self.options.call_timeout) } else { req };
        let seconds = if small { self.options.call_timeout.as_secs() } else { 0 };
        let resp = req.send().await.map_err(|e| self.transport(call, &e, seconds))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.status_error(call, resp).await)
    }

    async fn status_error(&self, call: &str, resp: Response) -> ApiError {
        let status = resp.status().as_u16();
        let retry = retry_after(resp.headers());
        let gz = is_gzip(&resp);
        let raw = tokio::time::timeout(Duration::from_secs(30), resp.bytes()).await.ok().and_then(Result::ok);
        let raw = raw.unwrap_or_default();
        let body = if gz {
            shared::envelope::gunzip(&raw, 0).unwrap_or_else(|_| raw.to_vec())
        } else {
            raw.to_vec()
        };
        #[derive(Deserialize)]
        struct E {
            code: Option<String>,
            message: Option<String>,
        }
        let (code, message) = match serde_json::from_slice::<E>(&body) {
            Ok(E { code, message: Some(m) }) => (code, m),
            Ok(E { code, message: None }) => (code, reason_phrase(status)),
            Err(_) => {
                let text = String::from_utf8_lossy(&body).trim().to_string();
                let text = if text.is_empty() { reason_phrase(status) } else { truncate(&text, 300) };
                (None, text)
            }
        };
        ApiError::Status {
            host: self.host.clone(),
            call: call.into(),
            status,
            code,
            message,
            retry_after: retry,
        }
    }

    async fn json<T: DeserializeOwned>(&self, call: &str, resp: Response) -> Result<T, ApiError> {
        let bytes =
            resp.bytes().await.map_err(|e| self.transport(call, &e, self.options.call_timeout.as_secs()))?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
            host: self.host.clone(),
            call: call.into(),
            detail: format!("{e}: {}", truncate(&String::from_utf8_lossy(&bytes), 200)),
        })
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T, ApiError> {
        let call = format!("GET {}", path_only(path));
        let resp = self.send(&call, self.request(Method::GET, path).query(query), true).await?;
        self.json(&call, resp).await
    }

    /// Turns a response body into a [`ByteStream`] with an idle timeout, gunzipping when
    /// `gunzip` and the server compressed.
    fn body_stream(&self, call: &str, resp: Response, gunzip: bool) -> ByteStream {
        let gz = is_gzip(&resp);
        let host = self.host.clone();
        let call_s = call.to_string();
        let idle = self.options.idle_timeout;
        let raw = resp.bytes_stream().map_err({
            let host = host.clone();
            let call = call_s.clone();
            move |e| {
                if e.is_timeout() {
                    ApiError::Timeout { host: host.clone(), call: call.clone(), seconds: 0 }
                } else {
                    ApiError::Transport {
                        host: host.clone(),
                        call: call.clone(),
                        detail: format!("the answer was cut off: {}", error_chain(&e)),
                    }
                }
            }
        });
        let raw = with_idle_timeout(Box::pin(raw), idle, host.clone(), call_s.clone());
        if !(gunzip && gz) {
            return raw;
        }
        self.gunzipped(call, raw)
    }

    /// Decompresses a gzip'd answer body.
    fn gunzipped(&self, call: &str, raw: ByteStream) -> ByteStream {
        let host = self.host.clone();
        let call_s = call.to_string();
        // Corrupt gzip surfaces as an io::Error inside the codec; give it the host and call.
        Box::pin(gunzip_stream(raw).map_err(move |e| match e {
            ApiError::Decode { host: h, detail, .. } if h.is_empty() => {
                ApiError::Decode { host: host.clone(), call: call_s.clone(), detail }
            }
            other => other,
        }))
    }

    // ---------------------------------------------------------------- health and tenancy

    /// `GET /health`: influxd's own check (no token needed). Anything that is not an InfluxDB
    /// health document (another service on that port) is an error.
    pub async fn health(&self) -> Result<Health, ApiError> {
        let call = "GET /health";
        let resp = match self.send(call, self.request(Method::GET, "/health"), true).await {
            Ok(r) => r,
            // influxd answers 503 with the same document while it is not ready.
            Err(ApiError::Status { status: 503, message, .. }) => {
                return Err(ApiError::Status {
                    host: self.host.clone(),
                    call: call.into(),
                    status: 503,
                    code: None,
                    message,
                    retry_after: None,
                });
            }
            Err(e) => return Err(e),
        };
        let health: Health = self.json(call, resp).await.map_err(|_| ApiError::Decode {
            host: self.host.clone(),
            call: call.into(),
            detail: "this is not an InfluxDB 2.x server (no health document); check the host and port".into(),
        })?;
        if health.status != "pass" {
            return Err(ApiError::Decode {
                host: self.host.clone(),
                call: call.into(),
                detail: format!("the server is not healthy: status {:?}, {}", health.status, health.message),
            });
        }
        Ok(health)
    }

    /// Every organization the token can see (`GET /api/v2/orgs`, paged). A bad token is a 401.
    pub async fn orgs(&self) -> Result<Vec<Org>, ApiError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            orgs: Vec<Org>,
        }
        let mut out = Vec::new();
        loop {
            let offset = out.len().to_string();
            let limit = PAGE.to_string();
            let page: Page = self
                .get_json("/api/v2/orgs", &[("limit", limit.as_str()), ("offset", offset.as_str())])
                .await?;
            let n = page.orgs.len();
            out.extend(page.orgs);
            if n < PAGE {
                return Ok(out);
            }
        }
    }

    /// The organization called `name`, if it exists (influxd answers 404 for an unknown name).
    pub async fn find_org(&self, name: &str) -> Result<Option<Org>, ApiError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            orgs: Vec<Org>,
        }
        match self.get_json::<Page>("/api/v2/orgs", &[("org", name)]).await {
            Ok(p) => Ok(p.orgs.into_iter().find(|o| o.name == name)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The organization with this ID.
    pub async fn org_by_id(&self, id: &str) -> Result<Option<Org>, ApiError> {
        match self.get_json::<Org>(&format!("/api/v2/orgs/{id}"), &[]).await {
            Ok(o) => Ok(Some(o)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/v2/orgs`.
    pub async fn create_org(&self, name: &str) -> Result<Org, ApiError> {
        let call = "POST /api/v2/orgs";
        let resp = self
            .send(call, self.request(Method::POST, "/api/v2/orgs").json(&json!({"name": name})), true)
            .await?;
        self.json(call, resp).await
    }

    /// Buckets, all of them or those of one org (`GET /api/v2/buckets`, paged). System buckets
    /// are included; see [`Bucket::is_system`].
    pub async fn buckets(&self, org_id: Option<&str>) -> Result<Vec<Bucket>, ApiError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            buckets: Vec<Bucket>,
        }
        let mut out = Vec::new();
        loop {
            let offset = out.len().to_string();
            let limit = PAGE.to_string();
            let mut q = vec![("limit", limit.as_str()), ("offset", offset.as_str())];
            if let Some(o) = org_id {
                q.push(("orgID", o));
            }
            let page: Page = self.get_json("/api/v2/buckets", &q).await?;
            let n = page.buckets.len();
            out.extend(page.buckets);
            if n < PAGE {
                return Ok(out);
            }
        }
    }

    /// Every user bucket of every org the token sees (system buckets left out), each with its
    /// org's name (the org ID when the org is not visible).
    pub async fn user_buckets(&self) -> Result<Vec<(Bucket, String)>, ApiError> {
        let orgs = self.orgs().await?;
        let buckets = self.buckets(None).await?;
        Ok(buckets
            .into_iter()
            .filter(|b| !b.is_system())
            .map(|b| {
                let org = orgs
                    .iter()
                    .find(|o| o.id == b.org_id)
                    .map(|o| o.name.clone())
                    .unwrap_or_else(|| b.org_id.clone());
                (b, org)
            })
            .collect())
    }

    /// Buckets called `name`, in one org or in any (names are unique per org only).
    pub async fn find_buckets(&self, org_id: Option<&str>, name: &str) -> Result<Vec<Bucket>, ApiError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            buckets: Vec<Bucket>,
        }
        let mut q = vec![("name", name)];
        if let Some(o) = org_id {
            q.push(("orgID", o));
        }
        match self.get_json::<Page>("/api/v2/buckets", &q).await {
            Ok(p) => Ok(p.buckets.into_iter().filter(|b| b.name == name).collect()),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The bucket called `name` in org `org_id`, if it exists.
    pub async fn find_bucket(&self, org_id: &str, name: &str) -> Result<Option<Bucket>, ApiError> {
        Ok(self.find_buckets(Some(org_id), name).await?.into_iter().next())
    }

    /// Whether the bucket holds no point at all, at any time InfluxDB can store.
    pub async fn bucket_is_empty(&self, org_id: &str, bucket_id: &str) -> Result<bool, ApiError> {
        let flux = format!(
            "from(bucketID: \"{bucket_id}\") |> range(start: 1677-09-21T00:12:43.145224194Z, stop: 2262-04-11T23:47:16.854775806Z) |> limit(n: 1) |> keep(columns: [\"_time\"])"
        );
        let mut body = self.query(OrgRef::Id(org_id), &flux, false).await?;
        let mut text = Vec::new();
        while let Some(chunk) = futures::StreamExt::next(&mut body).await {
            text.extend_from_slice(&chunk?);
        }
        Ok(!has_rows(&String::from_utf8_lossy(&text)))
    }

    /// `POST /api/v2/buckets`.
    pub async fn create_bucket(&self, bucket: &NewBucket) -> Result<Bucket, ApiError> {
        let call = "POST /api/v2/buckets";
        let resp = self.send(call, self.request(Method::POST, "/api/v2/buckets").json(bucket), true).await?;
        self.json(call, resp).await
    }

    /// Renames a bucket (`PATCH /api/v2/buckets/{id}`). Data lives under the bucket ID, so it
    /// stays; v1 virtual DBRP mappings derive from the name and follow it.
    pub async fn rename_bucket(&self, id: &str, name: &str) -> Result<Bucket, ApiError> {
        let call = "PATCH /api/v2/buckets/{id}";
        let resp = self
            .send(
                call,
                self.request(Method::PATCH, &format!("/api/v2/buckets/{id}")).json(&json!({"name": name})),
                true,
            )
            .await?;
        self.json(call, resp).await
    }

    /// `DELETE /api/v2/buckets/{id}`.
    pub async fn delete_bucket(&self, id: &str) -> Result<(), ApiError> {
        let call = "DELETE /api/v2/buckets/{id}";
        self.send(call, self.request(Method::DELETE, &format!("/api/v2/buckets/{id}")), true).await?;
        Ok(())
    }

    /// Every authorization the token can read. Only an operator token can read all of them, which
    /// makes this the cheap check that a token can run a backup or a full restore.
    pub async fn authorizations(&self) -> Result<Vec<Authorization>, ApiError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            authorizations: Vec<Authorization>,
        }
        let page: Page = self.get_json("/api/v2/authorizations", &[]).await?;
        Ok(page.authorizations)
    }

    // ---------------------------------------------------------------- backup

    /// `GET /api/v2/backup/metadata` (operator token): the KV store, the SQL store and the bucket
    /// manifest of the whole server, as one consistent snapshot, read part by part. `wire` says
    /// what to ask for; whether the answer is gzip'd is read from its `Content-Encoding` (a 2.9
    /// server asked for level `none` answers raw although gzip was accepted), and undone here.
    pub async fn backup_metadata(&self, wire: BackupWire) -> Result<MetadataDownload, ApiError> {
        let call = MetadataDownload::CALL;
        let req = wire.apply(self.request(Method::GET, "/api/v2/backup/metadata"));
        let resp = self.send(call, req, false).await?;
        let ct = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let boundary = boundary_of(&ct).ok_or_else(|| ApiError::Decode {
            host: self.host.clone(),
            call: call.into(),
            detail: format!("expected a multipart answer, got content type {ct:?}"),
        })?;
        let said_gzip = is_gzip(&resp);
        let (magic, raw) = peek_gzip(self.body_stream(call, resp, false)).await?;
        let body = if said_gzip || magic { self.gunzipped(call, raw) } else { raw };
        Ok(MetadataDownload { reader: MultipartReader::new(body, &boundary), host: self.host.clone() })
    }

    /// `GET /api/v2/backup/shards/{id}`: the shard's TSM snapshot (a tar), asked for as `wire`
    /// says; the server gzips only bodies of 1400 bytes and more, and a 2.9 server asked for
    /// level `none` not at all, so [`ShardDownload::gzip`] says what arrived: the
    /// `Content-Encoding`, or the gzip magic at the start of the body when a proxy dropped that
    /// header (a tar starts with a file name, never with `1f 8b`). `None` when the shard no
    /// longer exists (deleted by retention during the backup; `influx backup` warns and leaves it
    /// out the same way).
    pub async fn backup_shard(
        &self,
        shard_id: u64,
        wire: BackupWire,
    ) -> Result<Option<ShardDownload>, ApiError> {
        let call = format!("GET /api/v2/backup/shards/{shard_id}");
        let req = wire.apply(self.request(Method::GET, &format!("/api/v2/backup/shards/{shard_id}")));
        match self.send(&call, req, false).await {
            Ok(resp) => {
                let said_gzip = is_gzip(&resp);
                let (magic, body) = peek_gzip(self.body_stream(&call, resp, false)).await?;
                Ok(Some(ShardDownload { gzip: said_gzip || magic, body }))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    // ---------------------------------------------------------------- restore

    fn upload(&self, path: &str, body: reqwest::Body, gzip: bool) -> RequestBuilder {
        let mut req =
            self.request(Method::POST, path).header(CONTENT_TYPE, "application/octet-stream").body(body);
        if gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        req
    }

    /// `POST /api/v2/restore/kv`: **replaces** the server's whole metadata store (tokens, users,
    /// orgs, buckets, dashboards, tasks) and recreates empty shards for every shard group in it.
    /// Returns the operator token found in the restored store, which the following calls must use.
    pub async fn restore_kv(&self, body: reqwest::Body, gzip: bool) -> Result<Option<Sensitive>, ApiError> {
        let call = "POST /api/v2/restore/kv";
        let resp = self.send(call, self.upload("/api/v2/restore/kv", body, gzip), false).await?;
        #[derive(Deserialize)]
        struct Answer {
            token: Option<Sensitive>,
        }
        let a: Answer = self.json(call, resp).await?;
        Ok(a.token.filter(|t| !t.is_empty()))
    }

    /// `POST /api/v2/restore/sql`: replaces the SQL store (notebooks, annotations, remotes...).
    pub async fn restore_sql(&self, body: reqwest::Body, gzip: bool) -> Result<(), ApiError> {
        let call = "POST /api/v2/restore/sql";
        self.send(call, self.upload("/api/v2/restore/sql", body, gzip), false).await?;
        Ok(())
    }

    /// `POST /api/v2/restore/bucketMetadata`: creates a bucket (name, org, retention and shard
    /// group duration from the manifest) with empty shards, and says which new shard ID stands
    /// for which backed-up one. 422 when a bucket of that name exists.
    pub async fn restore_bucket_metadata(
        &self,
        manifest: &BucketManifest,
    ) -> Result<RestoredBucket, ApiError> {
        let call = "POST /api/v2/restore/bucketMetadata";
        let req = self.request(Method::POST, "/api/v2/restore/bucketMetadata").json(&manifest.for_server());
        let resp = self.send(call, req, true).await?;
        self.json(call, resp).await
    }

    /// `POST /api/v2/restore/shards/{id}`: overlays a shard snapshot (tar, gzip'd when `gzip`)
    /// onto an existing shard. Repeating it is harmless: the same points land on themselves.
    pub async fn restore_shard(
        &self,
        shard_id: u64,
        body: reqwest::Body,
        gzip: bool,
    ) -> Result<(), ApiError> {
        let call = format!("POST /api/v2/restore/shards/{shard_id}");
        self.send(&call, self.upload(&format!("/api/v2/restore/shards/{shard_id}"), body, gzip), false)
            .await?;
        Ok(())
    }

    // ---------------------------------------------------------------- query and write

    /// `POST /api/v2/query`: runs a Flux query and streams the annotated CSV answer (annotations
    /// `group`, `datatype`, `default`, as `influx query --raw` asks). `gzip` asks the server to
    /// compress on the wire (undone here). An error that happens after rows were sent arrives as
    /// an `error` table inside the CSV (see §4.7); readers must look for it.
    pub async fn query(&self, org: OrgRef<'_>, flux: &str, gzip: bool) -> Result<ByteStream, ApiError> {
        let call = "POST /api/v2/query";
        let (k, v) = org.pair();
        let mut req = self.request(Method::POST, "/api/v2/query").query(&[(k, v)]).json(&json!({
            "query": flux,
            "type": "flux",
            "dialect": {"header": true, "delimiter": ",", "annotations": ["group", "datatype", "default"]},
        }));
        if gzip {
            req = req.header(ACCEPT_ENCODING, "gzip");
        }
        // The answer to a query starts only when the first rows are ready; influxd may plan for
        // a while on a big bucket, so the call is not limited by `call_timeout`.
        let resp = self.send(call, req, false).await?;
        Ok(self.body_stream(call, resp, true))
    }

    /// `POST /api/v2/write` of line protocol into bucket `bucket` (name or ID) of org `org`.
    pub async fn write(
        &self,
        org: OrgRef<'_>,
        bucket: &str,
        precision: shared::line_protocol::Precision,
        body: Bytes,
        gzip: bool,
    ) -> Result<(), ApiError> {
        let call = "POST /api/v2/write";
        let (k, v) = org.pair();
        let mut req = self
            .request(Method::POST, "/api/v2/write")
            .query(&[(k, v), ("bucket", bucket), ("precision", precision.as_str())])
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body);
        if gzip {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        self.send(call, req, true).await?;
        Ok(())
    }
}

/// Generic JSON calls, for the many small metadata objects the `--full` rebuild copies
/// ([`crate::seeding::rebuild`]) whose shapes differ between kinds and are passed through mostly as they
/// come. Errors never quote an answer's body: an authorization's answer holds its token.
impl InfluxApi {
    /// `GET path?query`, the answer as JSON.
    pub async fn get_value(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, ApiError> {
        self.send_value(Method::GET, path, query, None).await
    }

    /// The `{"<key>": [...]}` items of every page of a list call paged by `offset` (100 a page).
    pub async fn list_all(
        &self,
        path: &str,
        query: &[(&str, &str)],
        key: &str,
    ) -> Result<Vec<Value>, ApiError> {
        let mut out: Vec<Value> = Vec::new();
        loop {
            let offset = out.len().to_string();
            let mut q = query.to_vec();
            q.push(("limit", "100"));
            q.push(("offset", &offset));
            let page = self.get_value(path, &q).await?;
            let items = page.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
            let n = items.len();
            out.extend(items);
            if n < 100 {
                return Ok(out);
            }
        }
    }

    /// Any call with an optional JSON body; the answer as JSON (`Null` when it has no body, as a
    /// 204 has not).
    pub async fn send_value(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let call = format!("{method} {}", path_only(path));
        let mut req = self.request(method, path).query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = self.send(&call, req, true).await?;
        let bytes =
            resp.bytes().await.map_err(|e| self.transport(&call, &e, self.options.call_timeout.as_secs()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode {
            host: self.host.clone(),
            call: call.clone(),
            detail: format!("the answer is not JSON ({e})"),
        })
    }
}

impl InfluxApi {
    /// `POST /api/v2/delete`: deletes the points of bucket `bucket_id` whose time is within
    /// `[start, stop]` (both RFC3339, both inclusive) and whose series matches `predicate`
    /// (`_measurement="m" AND tag="v"`; InfluxDB cannot delete by field).
    pub async fn delete(
        &self,
        org: OrgRef<'_>,
        bucket_id: &str,
        start: &str,
        stop: &str,
        predicate: &str,
    ) -> Result<(), ApiError> {
        let call = "POST /api/v2/delete";
        let (k, v) = org.pair();
        let req = self
            .request(Method::POST, "/api/v2/delete")
            .query(&[(k, v), ("bucketID", bucket_id)])
            .json(&json!({"start": start, "stop": stop, "predicate": predicate}));
        self.send(call, req, true).await?;
        Ok(())
    }
}

/// The first two bytes of every gzip member (RFC 1952 §2.3.1).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether `body` starts with the gzip magic, and the same body, whole: a backup answer whose
/// `Content-Encoding` was dropped on the way (by a proxy) is still recognised. Neither a tar (a
/// file name first) nor a multipart body (`--boundary` first) can start with `1f 8b`.
async fn peek_gzip(mut body: ByteStream) -> Result<(bool, ByteStream), ApiError> {
    let mut head = Vec::new();
    while head.len() < GZIP_MAGIC.len() {
        match body.next().await {
            Some(chunk) => head.extend_from_slice(&chunk?),
            None => break,
        }
    }
    let gzip = head.starts_with(&GZIP_MAGIC);
    let first = futures::stream::iter((!head.is_empty()).then(|| Ok(Bytes::from(head))));
    Ok((gzip, Box::pin(first.chain(body))))
}

fn is_gzip(resp: &Response) -> bool {
    resp.headers()
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"))
}

fn reason_phrase(status: u16) -> String {
    StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("error").to_string()
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `/api/v2/buckets/0123` → `/api/v2/buckets/0123`; the query string is never part of a call
/// name.
fn path_only(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// The useful part of a connection error: "connection refused", "dns error: ...", a TLS reason.
fn connect_detail(e: &reqwest::Error) -> String {
    let chain = error_chain(e);
    let lower = chain.to_ascii_lowercase();
    if lower.contains("connection refused") {
        "connection refused (is the host and port right, and is InfluxDB running?)".into()
    } else if lower.contains("dns error")
        || lower.contains("failed to lookup")
        || lower.contains("name or service")
    {
        format!("the host name does not resolve ({chain})")
    } else if lower.contains("certificate") || lower.contains("tls") {
        format!("TLS failed ({chain}); pass --skip-verify only if you trust this server")
    } else {
        chain
    }
}

fn with_idle_timeout(inner: ByteStream, idle: Duration, host: String, call: String) -> ByteStream {
    Box::pin(futures::stream::unfold(Some(inner), move |state| {
        let host = host.clone();
        let call = call.clone();
        async move {
            let mut inner = state?;
            match tokio::time::timeout(idle, inner.next()).await {
                Ok(Some(item)) => {
                    let failed = item.is_err();
                    Some((item, if failed { None } else { Some(inner) }))
                }
                Ok(None) => None,
                Err(_) => Some((
                    Err(ApiError::Transport {
                        host,
                        call,
                        detail: format!(
                            "the server sent nothing for {} s; the transfer was abandoned",
                            idle.as_secs()
                        ),
                    }),
                    None,
                )),
            }
        }
    }))
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::Decode {
            host: String::new(),
            call: "gzip".into(),
            detail: format!("corrupt gzip data: {e}"),
        }
    }
}

/// A copy of `object` for a create call: without the fields the server sets, in org `org_id`.
pub fn for_create(object: &Value, org_id: &str) -> Value {
    let mut m: Map<String, Value> = object.as_object().cloned().unwrap_or_default();
    for k in [
        "id",
        "links",
        "labels",
        "createdAt",
        "updatedAt",
        "ownerID",
        "taskID",
        "latestCompleted",
        "latestScheduled",
        "lastRunStatus",
        "lastRunError",
        "orgID",
        "org",
    ] {
        m.remove(k);
    }
    m.insert("orgID".into(), Value::String(org_id.to_string()));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_answer_with_only_annotations_and_headers_has_no_rows() {
        assert!(!super::has_rows(""));
        assert!(!super::has_rows("\r\n"));
        assert!(!super::has_rows(
            "#group,false,false\n#datatype,string,long\n#default,_result,\n,result,table\n\n"
        ));
        assert!(super::has_rows(
            "#group,false,false,false\n#datatype,string,long,dateTime:RFC3339\n#default,_result,,\n,result,table,_time\n,,0,2024-01-01T00:00:00Z\n"
        ));
        assert!(super::has_rows(",result,table,_time\r\n,,0,2024-01-01T00:00:00Z\r\n"));
    }

    use super::*;

    #[test]
    fn host_labels_never_carry_paths_or_queries() {
        let u = reqwest::Url::parse("https://db.example.com:8086/prefix/?x=1").unwrap();
        assert_eq!(host_label(&u), "https://db.example.com:8086");
        let u = reqwest::Url::parse("http://localhost").unwrap();
        assert_eq!(host_label(&u), "http://localhost:80");
        let u = reqwest::Url::parse("http://[::1]:8086").unwrap();
        assert_eq!(host_label(&u), "http://[::1]:8086");
    }

    #[test]
    fn bad_hosts_are_refused_with_the_expected_form() {
        for bad in ["invalid_host", "localhost:8086", "ftp://h:1", "http://user:secret@h:8086"] {
            let e = InfluxApi::new(bad, Sensitive::new("t"), ApiOptions::default()).unwrap_err();
            let m = e.to_string();
            assert!(m.contains("<scheme>://<host>:<port>"), "{bad}: {m}");
            assert!(!m.contains("secret") || bad.contains("secret") && m.contains("credentials"), "{m}");
        }
        let ok =
            InfluxApi::new("http://127.0.0.1:8086/", Sensitive::new("t"), ApiOptions::default()).unwrap();
        assert_eq!(ok.url(), "http://127.0.0.1:8086");
        assert_eq!(ok.host(), "http://127.0.0.1:8086");
    }

    #[test]
    fn debug_output_hides_the_token() {
        let api = InfluxApi::new("http://h:1", Sensitive::new("super-secret-token"), ApiOptions::default())
            .unwrap();
        assert!(!format!("{api:?}").contains("super-secret"));
    }

    #[tokio::test]
    async fn a_body_is_recognised_as_gzip_by_its_magic_and_given_back_whole() {
        let body = |chunks: Vec<&'static [u8]>| -> ByteStream {
            Box::pin(futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c)))))
        };
        let all = |s: ByteStream| async { s.map(|c| c.unwrap().to_vec()).concat().await };
        // The magic split over two chunks, then more.
        let (gz, rest) = peek_gzip(body(vec![&[0x1f], &[0x8b, 8, 0], b"xyz"])).await.unwrap();
        assert!(gz);
        assert_eq!(all(rest).await, [0x1f, 0x8b, 8, 0, b'x', b'y', b'z']);
        // A tar starts with a file name; a multipart body with its boundary.
        for raw in [&b"000000001.tsm\0"[..], b"--abc\r\n"] {
            let (gz, rest) = peek_gzip(body(vec![raw])).await.unwrap();
            assert!(!gz);
            assert_eq!(all(rest).await, raw);
        }
        let (gz, rest) = peek_gzip(body(vec![])).await.unwrap();
        assert!(!gz);
        assert!(all(rest).await.is_empty());
    }

    #[test]
    fn a_compression_level_is_sent_as_2_9_reads_it() {
        let client = reqwest::Client::new();
        let req = |wire: BackupWire| wire.apply(client.get("http://127.0.0.1:1/")).build().unwrap();
        let r = req(BackupWire { accept_gzip: true, level: Some(GzipLevel::Speedy) });
        assert_eq!(r.headers()["accept-encoding"], "gzip");
        assert_eq!(r.headers()["gzip-compression-level"], "speedy");
        let r = req(BackupWire::default());
        assert!(r.headers().get("accept-encoding").is_none());
        assert!(r.headers().get("gzip-compression-level").is_none());
        let names: Vec<_> = [GzipLevel::Default, GzipLevel::Full, GzipLevel::Speedy, GzipLevel::None]
            .map(GzipLevel::header_value)
            .to_vec();
        assert_eq!(names, ["default", "full", "speedy", "none"]);
    }

    #[test]
    fn versions_are_read_like_the_influx_cli() {
        let h = |v: &str| Health { status: "pass".into(), message: String::new(), version: Some(v.into()) };
        assert_eq!(h("v2.7.12").version_numbers(), Some((2, 7)));
        assert!(!h("v2.7.12").is_legacy());
        assert!(h("2.0.9").is_legacy());
        assert_eq!(h("dev").version_numbers(), None);
        assert!(!h("dev").is_legacy());
    }

    #[test]
    fn status_errors_read_like_a_sentence_and_classify() {
        let e = ApiError::Status {
            host: "http://h:1".into(),
            call: "GET /api/v2/orgs".into(),
            status: 401,
            code: Some("unauthorized".into()),
            message: "unauthorized access".into(),
            retry_after: None,
        };
        assert_eq!(
            e.to_string(),
            "GET /api/v2/orgs on http://h:1 answered HTTP 401 (unauthorized): unauthorized access"
        );
        assert!(e.is_unauthorized() && !e.is_transient());
        let ApiError::Status { host, call, code, message, .. } = e.clone() else { unreachable!() };
        let busy = ApiError::Status { host, call, status: 503, code, message, retry_after: None };
        assert!(busy.is_transient());
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error_naming_host_and_call() {
        let api =
            InfluxApi::new("http://127.0.0.1:1", Sensitive::new("tok-123"), ApiOptions::default()).unwrap();
        let e = api.health().await.unwrap_err();
        assert!(matches!(e, ApiError::Connect { .. }), "{e:?}");
        let m = e.to_string();
        assert!(m.starts_with("GET /health on http://127.0.0.1:1: could not connect"), "{m}");
        assert!(!m.contains("tok-123"));
        assert!(e.is_transient());
    }
}
