//! A real `influxd` on a free loopback port, onboarded and ready: 2.7.12 unless a test asks for
//! another [`InfluxdVersion`].

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bed::TestBed;
use crate::flux::{self, FluxRecord};
use crate::servers::ports::free_port;
use crate::servers::process::ChildGuard;

/// How long a request to influxd may take unless a call says otherwise.
const QUERY_TIMEOUT: Duration = Duration::from_secs(120);

/// User, password and names every test instance is onboarded with.
pub const USER: &str = "operator";
pub const PASSWORD: &str = "operator-password";
pub const ORG: &str = "test-org";
pub const BUCKET: &str = "test-bucket";

/// The influxd versions the test bed installs (`tests/testbed/install.sh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InfluxdVersion {
    /// 2.7.12: what every test runs against unless it names a version.
    V2_7,
    /// 2.9.1: stores API tokens hashed by default (`--use-hashed-tokens`).
    V2_9,
}

impl InfluxdVersion {
    /// The installed binary.
    pub fn binary(self, bed: &TestBed) -> &Path {
        match self {
            InfluxdVersion::V2_7 => &bed.influxd,
            InfluxdVersion::V2_9 => bed.influxd_2_9(),
        }
    }

    /// `2.7.12` or `2.9.1`.
    pub fn label(self) -> &'static str {
        match self {
            InfluxdVersion::V2_7 => "2.7.12",
            InfluxdVersion::V2_9 => "2.9.1",
        }
    }
}

/// One running `influxd` with its own data directory; killed when dropped.
#[derive(Debug)]
pub struct Influxd {
    process: ChildGuard,
    /// Which influxd this is.
    pub version: InfluxdVersion,
    /// Kept for the lifetime of the server (dropping it deletes the bolt, engine and sqlite
    /// files); never read.
    _dir: tempfile::TempDir,
    pub port: u16,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// The operator token made by onboarding.
    pub token: String,
    pub org: String,
    pub org_id: String,
    pub bucket: String,
    pub bucket_id: String,
    pub user_id: String,
    http: reqwest::Client,
}

/// What a write answered.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub body: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Influxd {
    /// Starts and onboards a fresh influxd; panics with its log when that fails.
    pub async fn start() -> Influxd {
        Self::start_named("influxd").await
    }

    /// As [`Influxd::start`], naming the instance in logs and panics (e.g. "source").
    pub async fn start_named(name: &str) -> Influxd {
        Self::start_with_token(name, &format!("operator-token-{}", rand::random::<u64>())).await
    }

    /// As [`Influxd::start_named`], onboarded with a chosen operator token (two servers sharing a
    /// token stand for a source and a destination after a full migration).
    pub async fn start_with_token(name: &str, token: &str) -> Influxd {
        Self::start_with(InfluxdVersion::V2_7, name, token, false).await
    }

    /// As [`Influxd::start_named`], running `version`.
    pub async fn start_version(version: InfluxdVersion, name: &str) -> Influxd {
        let token = format!("operator-token-{}", rand::random::<u64>());
        Self::start_with(version, name, &token, false).await
    }

    /// As [`Influxd::start_version`], onboarded with a chosen operator token.
    pub async fn start_version_with_token(version: InfluxdVersion, name: &str, token: &str) -> Influxd {
        Self::start_with(version, name, token, false).await
    }

    /// As [`Influxd::start_with_token`], serving HTTPS only, with a self-signed certificate for
    /// 127.0.0.1 made by `openssl` (its `url` is `https://…`; the handle's own requests accept
    /// that certificate, a client that verifies TLS refuses it).
    pub async fn start_tls(name: &str, token: &str) -> Influxd {
        Self::start_with(InfluxdVersion::V2_7, name, token, true).await
    }

    async fn start_with(version: InfluxdVersion, name: &str, token: &str, tls: bool) -> Influxd {
        let bed = TestBed::get();
        let mut last_error = String::new();
        for _attempt in 0..3 {
            match Self::try_start(bed, version, name, token, tls).await {
                Ok(server) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start {name} (influxd {}): {last_error}", version.binary(bed).display());
    }

    async fn try_start(
        bed: &TestBed,
        version: InfluxdVersion,
        name: &str,
        token: &str,
        tls: bool,
    ) -> Result<Influxd, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let port = free_port();
        let mut command = Command::new(version.binary(bed));
        command
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .arg("--reporting-disabled")
            .arg(format!("--http-bind-address=127.0.0.1:{port}"))
            .arg(format!("--bolt-path={}", dir.path().join("influxd.bolt").display()))
            .arg(format!("--engine-path={}", dir.path().join("engine").display()))
            .arg(format!("--sqlite-path={}", dir.path().join("influxd.sqlite").display()))
            .arg("--log-level=warn")
            .arg("--storage-wal-fsync-delay=0s");
        if tls {
            let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            let out = Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=127.0.0.1",
                ])
                .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
                .arg(&key)
                .arg("-out")
                .arg(&cert)
                .output()
                .map_err(|e| format!("run openssl (Debian package openssl): {e}"))?;
            if !out.status.success() {
                return Err(format!("openssl req failed: {}", String::from_utf8_lossy(&out.stderr)));
            }
            command.arg(format!("--tls-cert={}", cert.display())).arg(format!("--tls-key={}", key.display()));
        }
        let log = dir.path().join("influxd.log");
        let mut process =
            ChildGuard::spawn(name, command, &log).map_err(|e| format!("spawn influxd: {e}"))?;
        let url = format!("{}://127.0.0.1:{port}", if tls { "https" } else { "http" });
        let http = reqwest::Client::builder()
            .timeout(QUERY_TIMEOUT)
            .danger_accept_invalid_certs(tls)
            .build()
            .map_err(|e| format!("http client: {e}"))?;

        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = process.exited() {
                return Err(format!("exited early ({status}); log:\n{}", process.log_tail(4000)));
            }
            if let Ok(resp) = http.get(format!("{url}/health")).send().await
                && resp.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("no /health answer within 60 s; log:\n{}", process.log_tail(4000)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let resp = http
            .post(format!("{url}/api/v2/setup"))
            .json(&json!({
                "username": USER, "password": PASSWORD, "org": ORG, "bucket": BUCKET,
                "token": token, "retentionPeriodSeconds": 0
            }))
            .send()
            .await
            .map_err(|e| format!("POST /api/v2/setup: {e}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| format!("setup reply: {e}"))?;
        if status.as_u16() != 201 {
            return Err(format!("POST /api/v2/setup answered {status}: {body}"));
        }
        let field = |path: &[&str]| -> String {
            let mut v = &body;
            for p in path {
                v = &v[*p];
            }
            v.as_str().unwrap_or_default().to_string()
        };
        Ok(Influxd {
            version,
            port,
            url,
            token: field(&["auth", "token"]),
            org: ORG.to_string(),
            org_id: field(&["org", "id"]),
            bucket: BUCKET.to_string(),
            bucket_id: field(&["bucket", "id"]),
            user_id: field(&["user", "id"]),
            process,
            _dir: dir,
            http,
        })
    }

    /// The tail of the server's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(8000)
    }

    /// The server's log file (it lives as long as `self`).
    pub fn log_path(&self) -> &std::path::Path {
        self.process.log_path()
    }

    /// Kills the server now (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// An `Authorization` header value for the operator token.
    pub fn auth(&self) -> String {
        format!("Token {}", self.token)
    }

    /// `POST /api/v2/write` of `body` into `bucket` (name) of the test org.
    pub async fn write(&self, bucket: &str, precision: &str, body: impl Into<reqwest::Body>) -> HttpAnswer {
        let resp = self
            .http
            .post(format!("{}/api/v2/write", self.url))
            .query(&[("org", self.org.as_str()), ("bucket", bucket), ("precision", precision)])
            .header("Authorization", self.auth())
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /api/v2/write to {}: {e}", self.url));
        answer(resp).await
    }

    /// Writes and panics unless influxd answered 204.
    pub async fn write_ok(&self, bucket: &str, precision: &str, body: impl Into<reqwest::Body>) {
        let a = self.write(bucket, precision, body).await;
        assert_eq!(a.status, 204, "write to {} answered {}: {}", self.url, a.status, a.body);
    }

    /// Writes with another token (after a full restore the source's tokens are the
    /// destination's); panics unless influxd answered 204.
    pub async fn write_ok_as(&self, bucket: &str, body: &str, token: &str) {
        let resp = self
            .http
            .post(format!("{}/api/v2/write", self.url))
            .query(&[("org", self.org.as_str()), ("bucket", bucket)])
            .header("Authorization", format!("Token {token}"))
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /api/v2/write to {}: {e}", self.url));
        let a = answer(resp).await;
        assert_eq!(a.status, 204, "write to {} answered {}: {}", self.url, a.status, a.body);
    }

    /// Runs a Flux query and returns the raw annotated CSV.
    pub async fn query_csv(&self, query: &str) -> String {
        self.query_csv_in(&self.org, query, &self.token).await
    }

    /// Runs a Flux query with another token (after a full restore the source's tokens are the
    /// destination's) and returns its rows.
    pub async fn query_as(&self, query: &str, token: &str) -> Vec<FluxRecord> {
        flux::parse_annotated_csv(&self.query_csv_in(&self.org, query, token).await)
    }

    /// Runs a Flux query in `org` (a name) with `token` and returns the raw annotated CSV;
    /// panics unless it answers 200.
    pub async fn query_csv_in(&self, org: &str, query: &str, token: &str) -> String {
        self.query_csv_within(org, query, token, QUERY_TIMEOUT).await
    }

    /// [`Self::query_as`] given up to `timeout` instead of two minutes: for the reads that
    /// fetch everything a long run wrote (a `--faults` demo's 2.3 million acknowledged points
    /// took longer than two minutes to read back on 2 cores, and the check panicked before it
    /// compared anything).
    pub async fn query_as_within(&self, query: &str, token: &str, timeout: Duration) -> Vec<FluxRecord> {
        flux::parse_annotated_csv(&self.query_csv_within(&self.org, query, token, timeout).await)
    }

    async fn query_csv_within(&self, org: &str, query: &str, token: &str, timeout: Duration) -> String {
        let resp = self
            .http
            .post(format!("{}/api/v2/query", self.url))
            .timeout(timeout)
            .query(&[("org", org)])
            .header("Authorization", format!("Token {token}"))
            .json(&json!({
                "query": query, "type": "flux",
                "dialect": {"header": true, "annotations": ["group", "datatype", "default"]}
            }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST /api/v2/query to {}: {e}", self.url));
        let a = answer(resp).await;
        assert_eq!(a.status, 200, "query answered {}: {}", a.status, a.body);
        a.body
    }

    /// Runs a Flux query and returns its rows, typed by the `#datatype` annotation.
    pub async fn query(&self, query: &str) -> Vec<FluxRecord> {
        flux::parse_annotated_csv(&self.query_csv(query).await)
    }

    /// Every point of `bucket` (all time), one record per field value, sorted by
    /// (measurement, tags, field, time).
    pub async fn dump(&self, bucket: &str) -> Vec<FluxRecord> {
        let mut rows = self
            .query(&format!(
                "from(bucket: \"{bucket}\") |> range(start: 0, stop: 2262-01-01T00:00:00Z) \
                 |> filter(fn: (r) => true)"
            ))
            .await;
        flux::sort_points(&mut rows);
        rows
    }

    /// Number of field values stored in `bucket` (all time): counted per series (tables of one
    /// value type each) and summed here.
    pub async fn count(&self, bucket: &str) -> u64 {
        let rows = self
            .query(&format!(
                "from(bucket: \"{bucket}\") |> range(start: 0, stop: 2262-01-01T00:00:00Z) |> count()"
            ))
            .await;
        rows.iter().filter_map(|r| r.get("_value").and_then(|v| v.parse::<u64>().ok())).sum()
    }

    /// Labels task `task_id` `influx-migration:held`, as a seeding leaves the destination's copy
    /// of scheduled work (inactive and held for the database that runs it).
    pub async fn label_task_held(&self, task_id: &str) {
        let (code, label) = self
            .api(
                reqwest::Method::POST,
                "/api/v2/labels",
                Some(serde_json::json!({"orgID": self.org_id, "name": "influx-migration:held"})),
            )
            .await;
        assert_eq!(code, 201, "create the held label: {label}");
        let (code, answer) = self
            .api(
                reqwest::Method::POST,
                &format!("/api/v2/tasks/{task_id}/labels"),
                Some(serde_json::json!({"labelID": label["label"]["id"]})),
            )
            .await;
        assert_eq!(code, 201, "label task {task_id} held: {answer}");
    }

    /// Sends any request to the server's API with the operator token.
    pub async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api_as(&self.token, method, path, body).await
    }

    /// As [`Influxd::api`] with another token (after a full restore the destination answers to
    /// the source's operator token).
    pub async fn api_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .header("Authorization", format!("Token {token}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{path} on {}: {e}", self.url));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Creates a bucket in the test org (infinite retention) and returns its ID.
    pub async fn create_bucket(&self, name: &str) -> String {
        self.create_bucket_in(&self.org_id.clone(), name).await
    }

    /// Creates a bucket in the org with ID `org_id` (infinite retention) and returns its ID.
    pub async fn create_bucket_in(&self, org_id: &str, name: &str) -> String {
        let (status, body) = self
            .api(
                reqwest::Method::POST,
                "/api/v2/buckets",
                Some(json!({"orgID": org_id, "name": name, "retentionRules": []})),
            )
            .await;
        assert_eq!(status, 201, "create bucket {name}: {body}");
        body["id"].as_str().unwrap_or_default().to_string()
    }

    /// Creates an org and returns its ID.
    pub async fn create_org(&self, name: &str) -> String {
        let (status, body) =
            self.api(reqwest::Method::POST, "/api/v2/orgs", Some(json!({"name": name}))).await;
        assert_eq!(status, 201, "create org {name}: {body}");
        body["id"].as_str().unwrap_or_default().to_string()
    }
}

async fn answer(resp: reqwest::Response) -> HttpAnswer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap_or_default();
    HttpAnswer { status, body, headers }
}
