//! The query router (`functions/query-router`) end to end: the real binary behind
//! `cargo lambda watch`, invoked with real API Gateway REST (1.0) and HTTP API (2.0) events,
//! reading its endpoint secret from moto Secrets Manager and querying real influxd 2.7.12.
//!
//! What a user checks: the answer through the gateway is the answer influxd gives (status,
//! `Content-Type`, `Content-Encoding`, version headers, body byte for byte); errors have
//! influxd's shape; a cutover of the read endpoint reaches every router within the cache time
//! without a failed request; a Secrets Manager outage changes nothing for readers.
//!
//! Needs `cargo build --workspace --all-targets` first (the router binary).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use testbed::flux::parse_annotated_csv;
use testbed::stack::lambda::{Invocation, workspace_binary};
use testbed::{FaultProxy, Influxd, LambdaRuntime, Moto};

const REST_EVENT: &str = include_str!("../data/query_router/rest_api_event.json");
const HTTP_API_EVENT: &str = include_str!("../data/query_router/http_api_event.json");
const SECRET_ID: &str = "live-migration/endpoints";
/// A fixed window that holds every point the tests write (2026), so answers do not depend on now.
const RANGE: &str = "range(start: 2026-01-01T00:00:00Z, stop: 2027-01-01T00:00:00Z)";
/// 2026-01-01T00:00:00Z in seconds.
const T0: u64 = 1_767_225_600;

// ------------------------------------------------------------------------------------------------
// Requests as a client sends them, and as API Gateway hands them to the function.

/// One HTTP request from a client (its token is added per target).
#[derive(Debug, Clone)]
struct Call {
    method: &'static str,
    path: &'static str,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<String>,
}

impl Call {
    fn new(method: &'static str, path: &'static str) -> Call {
        Call { method, path, query: Vec::new(), headers: Vec::new(), body: None }
    }
    fn query(mut self, name: &str, value: &str) -> Call {
        self.query.push((name.into(), value.into()));
        self
    }
    fn header(mut self, name: &str, value: &str) -> Call {
        self.headers.push((name.into(), value.into()));
        self
    }
    fn body(mut self, body: impl Into<String>) -> Call {
        self.body = Some(body.into());
        self
    }
    /// `POST /api/v2/query?org=…` with a JSON body asking for every annotation.
    fn flux(org: &str, query: &str) -> Call {
        Call::new("POST", "/api/v2/query").query("org", org).header("Content-Type", "application/json").body(
            json!({"query": query, "type": "flux",
                   "dialect": {"header": true, "annotations": ["group", "datatype", "default"]}})
            .to_string(),
        )
    }
    fn query_string(&self) -> String {
        let url = reqwest::Url::parse_with_params("http://x/", &self.query).expect("query string");
        url.query().unwrap_or("").to_string()
    }
}

/// The REST API (payload 1.0) event API Gateway sends for `call` coming through aws-sigv4-proxy:
/// the SigV4 signature in `Authorization`, the client's token in `X-Original-Authorization`.
fn rest_event(call: &Call, authorization: &str) -> Value {
    let mut ev: Value = serde_json::from_str(REST_EVENT).expect("REST event template");
    ev["path"] = json!(call.path);
    ev["httpMethod"] = json!(call.method);
    ev["pathParameters"]["proxy"] = json!(call.path.trim_start_matches('/'));
    ev["requestContext"]["httpMethod"] = json!(call.method);
    ev["requestContext"]["path"] = json!(format!("/prod{}", call.path));
    let headers = call
        .headers
        .iter()
        .cloned()
        .chain([("X-Original-Authorization".to_string(), authorization.to_string())]);
    for (name, value) in headers {
        ev["headers"][&name] = json!(value);
        ev["multiValueHeaders"][&name] = json!([value]);
    }
    if !call.query.is_empty() {
        let mut single = serde_json::Map::new();
        let mut multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in &call.query {
            single.insert(k.clone(), json!(v));
            multi.entry(k.clone()).or_default().push(v.clone());
        }
        ev["queryStringParameters"] = Value::Object(single);
        ev["multiValueQueryStringParameters"] = json!(multi);
    }
    if let Some(body) = &call.body {
        ev["body"] = json!(body);
    }
    ev
}

/// The HTTP API (payload 2.0) event for `call` on stage `live`.
fn http_api_event(call: &Call, authorization: &str) -> Value {
    let mut ev: Value = serde_json::from_str(HTTP_API_EVENT).expect("HTTP API event template");
    let raw_path = format!("/live{}", call.path);
    ev["rawPath"] = json!(raw_path);
    ev["rawQueryString"] = json!(call.query_string());
    ev["requestContext"]["http"]["method"] = json!(call.method);
    ev["requestContext"]["http"]["path"] = json!(raw_path);
    ev["pathParameters"]["proxy"] = json!(call.path.trim_start_matches('/'));
    ev["headers"]["x-original-authorization"] = json!(authorization);
    for (name, value) in &call.headers {
        ev["headers"][name.to_ascii_lowercase()] = json!(value);
    }
    ev["headers"]["content-length"] = json!(call.body.as_ref().map_or(0, String::len).to_string());
    if let Some(body) = &call.body {
        ev["body"] = json!(body);
    }
    ev
}

/// An HTTP answer, from the router (decoded from the response event) or from influxd.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    /// Lower-case names.
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    /// Whether the response event carried the body base64-encoded.
    base64: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// What API Gateway makes of the function's answer: a streamed one is its prelude's status and
/// headers and its body; a response event is read for status, headers, body with base64 undone.
fn from_event(inv: &Invocation) -> Answer {
    if inv.streamed() {
        let headers = inv
            .headers
            .iter()
            .filter(|(k, _)| {
                !matches!(k.as_str(), "lambda-runtime-function-response-mode" | "transfer-encoding" | "date")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        return Answer { status: inv.status, headers, body: inv.body.clone(), base64: false };
    }
    assert_eq!(inv.status, 200, "the invocation itself failed: {}", inv.payload);
    let p = &inv.payload;
    let status = p["statusCode"].as_u64().unwrap_or_else(|| panic!("no statusCode: {p}")) as u16;
    let mut headers = BTreeMap::new();
    if let Some(m) = p["multiValueHeaders"].as_object() {
        for (k, v) in m {
            let joined: Vec<&str> = v.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            headers.insert(k.to_ascii_lowercase(), joined.join(", "));
        }
    }
    if let Some(m) = p["headers"].as_object() {
        for (k, v) in m {
            headers.insert(k.to_ascii_lowercase(), v.as_str().unwrap_or_default().to_string());
        }
    }
    let base64 = p["isBase64Encoded"].as_bool().unwrap_or(false);
    let body = match p["body"].as_str() {
        None => Vec::new(),
        Some(b) if base64 => {
            base64::engine::general_purpose::STANDARD.decode(b).expect("isBase64Encoded body is base64")
        }
        Some(b) => b.as_bytes().to_vec(),
    };
    Answer { status, headers, body, base64 }
}

/// Sends `call` straight to influxd, as a client without the gateway would (no decompression).
async fn direct(influxd: &Influxd, call: &Call) -> Answer {
    let client = reqwest::Client::builder().no_gzip().build().expect("client");
    let mut req = client
        .request(
            reqwest::Method::from_bytes(call.method.as_bytes()).expect("method"),
            format!("{}{}", influxd.url, call.path),
        )
        .header("Authorization", influxd.auth());
    if !call.query.is_empty() {
        req = req.query(&call.query);
    }
    for (k, v) in &call.headers {
        req = req.header(k, v);
    }
    if let Some(b) = &call.body {
        req = req.body(b.clone());
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{} {} to influxd: {e}", call.method, call.path));
    let status = resp.status().as_u16();
    let headers = testbed::reads::header_pairs(resp.headers());
    let body = resp.bytes().await.expect("influxd body").to_vec();
    Answer { status, headers, body, base64: false }
}

/// Status, the relayed headers and the body are the same (`Date` and the other hop headers are
/// not relayed, so they are not compared). One exception, streamed: `lambda_runtime` 1.5 gives
/// every streamed response a `Content-Type` (application/octet-stream when there is none), so a
/// bodiless 204 that influxd sends without one arrives with it.
fn assert_identical(what: &str, routed: &Answer, direct: &Answer) {
    assert_eq!(routed.status, direct.status, "{what}: status; routed body {}", routed.text());
    if direct.status == 204 && direct.header("content-type").is_none() && !routed.base64 {
        assert!(
            matches!(routed.header("content-type"), None | Some("application/octet-stream")),
            "{what}: content-type {:?}",
            routed.header("content-type")
        );
    } else {
        assert_eq!(
            routed.header("content-type"),
            direct.header("content-type"),
            "{what}: header content-type"
        );
    }
    for h in ["content-encoding", "x-influxdb-build", "x-influxdb-version", "x-platform-error-code"] {
        assert_eq!(routed.header(h), direct.header(h), "{what}: header {h}");
    }
    assert!(
        routed.body == direct.body,
        "{what}: bodies differ ({} vs {} bytes)\n--- routed:\n{}\n--- direct:\n{}",
        routed.body.len(),
        direct.body.len(),
        routed.text(),
        direct.text()
    );
}

// ------------------------------------------------------------------------------------------------
// The bed: influxd(s), moto with the endpoint secret, and the router behind cargo lambda watch.

fn secret(read_url: &str, destination_url: &str, read: &str, mappings: Value) -> String {
    json!({"source": {"url": read_url}, "destination": {"url": destination_url}, "read": read, "mappings": mappings})
        .to_string()
}

async fn secrets_client(moto: &Moto) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&moto.sdk_config().await)
}

async fn create_secret(client: &aws_sdk_secretsmanager::Client, value: String) {
    client
        .create_secret()
        .name(SECRET_ID)
        .secret_string(value)
        .send()
        .await
        .expect("create the endpoint secret");
}

async fn put_secret(client: &aws_sdk_secretsmanager::Client, value: String) {
    client
        .put_secret_value()
        .secret_id(SECRET_ID)
        .secret_string(value)
        .send()
        .await
        .expect("update the endpoint secret");
}

/// The router's environment: moto (or `aws_endpoint` in front of it) and the settings.
fn router_env(moto: &Moto, aws_endpoint: Option<&str>, settings: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = moto.env();
    if let Some(url) = aws_endpoint {
        for (k, v) in &mut env {
            if k == "AWS_ENDPOINT_URL" {
                *v = url.to_string();
            }
        }
    }
    env.push(("SECRET_ID".into(), SECRET_ID.into()));
    env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

/// The router binary behind `cargo lambda watch`, one instance.
async fn start_router(env: &[(String, String)]) -> LambdaRuntime {
    LambdaRuntime::start("query-router", env).await
}

async fn invoke(router: &LambdaRuntime, event: &Value) -> Answer {
    from_event(&router.invoke(event).await)
}

/// Escapes a string field value for line protocol.
fn lp_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Every field type, tags with non-ASCII text, a string with a comma, quotes and a newline, and
/// `bulk` points enough for a gzip'd answer (influxd compresses from 1400 bytes on).
async fn load_varied_points(influxd: &Influxd, bulk: usize) {
    let tricky = lp_string("comma, \"quote\" and\nnewline");
    let mut lines = vec![
        format!("cpu,host=a,region=eu usage=12.5,count=3i,ucount=7u,ok=true,note=\"plain\" {T0}"),
        format!("cpu,host=a,region=eu usage=13.75,count=4i,ucount=8u,ok=false,note=\"second\" {}", T0 + 60),
        format!("cpu,host=b,region=us usage=-0.25,count=-4i,ucount=0u,ok=false,note=\"{tricky}\" {T0}"),
        format!("mem,host=a used=1024i,free=99.5 {T0}"),
        format!("text,host=ü,lang=zh note=\"{}\" {T0}", lp_string("héllo 中文 ✓")),
    ];
    for i in 0..bulk {
        lines.push(format!("bulk,host=h{} value={}.5,n={i}i {}", i % 3, i, T0 + 10 * i as u64));
    }
    influxd.write_ok(&influxd.bucket, "s", lines.join("\n")).await;
}

// ------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_through_the_router_are_byte_identical_to_influxd() {
    let (source, moto) = tokio::join!(Influxd::start_named("source"), Moto::start());
    load_varied_points(&source, 200).await;
    let sm = secrets_client(&moto).await;
    create_secret(&sm, secret(&source.url, "http://127.0.0.1:9", "source", json!({}))).await;
    let streamed = start_router(&router_env(&moto, None, &[("SECRET_TTL_SECONDS", "1")])).await;
    let buffered = start_router(&router_env(
        &moto,
        None,
        &[("SECRET_TTL_SECONDS", "1"), ("RESPONSE_TRANSFER_MODE", "BUFFERED")],
    ))
    .await;

    let b = source.bucket.as_str();
    let several_tables = format!(
        "from(bucket: \"{b}\") |> {RANGE} |> filter(fn: (r) => r._measurement == \"cpu\" or r._measurement == \"mem\" or r._measurement == \"text\")"
    );
    let influxql = "SELECT * FROM cpu; SELECT mean(value) FROM bulk GROUP BY host";
    let calls: Vec<(&str, Call)> = vec![
        ("Flux, JSON body, org, all annotations", Call::flux(&source.org, &several_tables)),
        (
            "Flux, application/vnd.flux, orgID, no annotations",
            Call::new("POST", "/api/v2/query")
                .query("orgID", &source.org_id)
                .header("Content-Type", "application/vnd.flux")
                .header("Accept", "application/csv")
                .body(several_tables.clone()),
        ),
        (
            "Flux with Prefer: return-no-content",
            Call::flux(&source.org, &several_tables).header("Prefer", "return-no-content"),
        ),
        (
            "Flux error: unknown bucket",
            Call::flux(&source.org, &format!("from(bucket: \"nope\") |> {RANGE}")),
        ),
        (
            "InfluxQL GET, q in the query string, epoch=ms, JSON",
            Call::new("GET", "/query").query("db", b).query("q", influxql).query("epoch", "ms"),
        ),
        (
            "InfluxQL POST, form body, CSV",
            Call::new("POST", "/query")
                .header("Content-Type", "application/x-www-form-urlencoded")
                .header("Accept", "application/csv")
                .body(
                    reqwest::Url::parse_with_params(
                        "http://x/",
                        &[("db", b), ("rp", "autogen"), ("q", influxql)],
                    )
                    .expect("form")
                    .query()
                    .unwrap_or_default()
                    .to_string(),
                ),
        ),
        (
            "InfluxQL POST, application/vnd.influxql body",
            Call::new("POST", "/query")
                .query("db", b)
                .header("Content-Type", "application/vnd.influxql")
                .body("SELECT usage, note FROM cpu WHERE host = 'b'"),
        ),
        (
            "InfluxQL chunked",
            Call::new("GET", "/query")
                .query("db", b)
                .query("q", "SELECT * FROM bulk")
                .query("chunked", "true")
                .query("chunk_size", "50"),
        ),
        (
            "InfluxQL msgpack (binary)",
            Call::new("GET", "/query")
                .query("db", b)
                .query("q", "SELECT * FROM cpu")
                .header("Accept", "application/x-msgpack"),
        ),
        ("buckets", Call::new("GET", "/api/v2/buckets").query("org", &source.org)),
        ("orgs", Call::new("GET", "/api/v2/orgs")),
        ("dbrps", Call::new("GET", "/api/v2/dbrps").query("orgID", &source.org_id)),
        ("health", Call::new("GET", "/health")),
        ("ping", Call::new("GET", "/ping")),
        ("ping HEAD", Call::new("HEAD", "/ping")),
    ];
    let auth = source.auth();
    for (what, call) in &calls {
        let want = direct(&source, call).await;
        for (format, event) in [("REST", rest_event(call, &auth)), ("HTTP API", http_api_event(call, &auth))]
        {
            let got = invoke(&streamed, &event).await;
            assert_identical(&format!("{what} ({format}, streamed)"), &got, &want);
            let got = invoke(&buffered, &event).await;
            assert_identical(&format!("{what} ({format}, buffered)"), &got, &want);
            let is_text = std::str::from_utf8(&want.body).is_ok();
            assert_eq!(
                got.base64, !is_text,
                "{what} ({format}): base64 exactly when the body is not UTF-8 text"
            );
        }
    }

    // The comparisons above are only worth something if influxd answered what a user expects.
    let flux = direct(&source, &calls[0].1).await;
    assert_eq!(flux.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = flux.text();
    assert!(text.starts_with("#group,false,false,"), "{text}");
    assert!(text.contains("\r\n#datatype,string,long,dateTime:RFC3339"), "{text}");
    let rows = parse_annotated_csv(&text);
    assert_eq!(rows.len(), 3 * 5 + 2 + 1, "cpu: 3 points x 5 fields, mem: 2 fields, text: 1 field");
    let notes: Vec<&str> =
        rows.iter().filter(|r| r.get("_field") == Some("note")).filter_map(|r| r.get("_value")).collect();
    assert!(notes.contains(&"comma, \"quote\" and\nnewline"), "{notes:?}");
    assert!(notes.contains(&"héllo 中文 ✓"), "{notes:?}");
    assert_eq!(direct(&source, &calls[2].1).await.status, 204, "Prefer: return-no-content");
    let missing = direct(&source, &calls[3].1).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["code"], "not found");
    let v1 = direct(&source, &calls[4].1).await.json();
    assert_eq!(v1["results"][0]["series"][0]["name"], "cpu");
    assert_eq!(v1["results"][0]["series"][0]["values"][0][0], json!(T0 * 1000), "epoch=ms");
    assert_eq!(v1["results"][1]["series"].as_array().map(Vec::len), Some(3), "one series per host");
    let csv = direct(&source, &calls[5].1).await;
    assert_eq!(csv.header("content-type"), Some("application/csv"));
    assert!(csv.text().starts_with("name,tags,time,"), "{}", csv.text());
    let msgpack = direct(&source, &calls[8].1).await;
    assert_eq!(msgpack.header("content-type"), Some("application/x-msgpack"));
    assert!(std::str::from_utf8(&msgpack.body).is_err(), "msgpack is binary: the base64 path is exercised");
    let buckets = direct(&source, &calls[9].1).await.json();
    assert!(buckets["buckets"].as_array().unwrap().iter().any(|x| x["name"] == b), "{buckets}");
    assert_eq!(direct(&source, &calls[13].1).await.status, 204);
    assert!(direct(&source, &calls[13].1).await.header("x-influxdb-version").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_answers_come_back_intact() {
    let (source, moto) = tokio::join!(Influxd::start_named("source"), Moto::start());
    load_varied_points(&source, 300).await;
    let sm = secrets_client(&moto).await;
    create_secret(&sm, secret(&source.url, "http://127.0.0.1:9", "source", json!({}))).await;
    let router = start_router(&router_env(&moto, None, &[])).await;
    let buffered = start_router(&router_env(&moto, None, &[("RESPONSE_TRANSFER_MODE", "BUFFERED")])).await;
    let auth = source.auth();

    let bulk = format!(
        "from(bucket: \"{}\") |> {RANGE} |> filter(fn: (r) => r._measurement == \"bulk\")",
        source.bucket
    );
    let cases = [
        ("Flux", Call::flux(&source.org, &bulk)),
        ("InfluxQL", Call::new("GET", "/query").query("db", &source.bucket).query("q", "SELECT * FROM bulk")),
    ];
    for (what, plain) in cases {
        let gzip = plain.clone().header("Accept-Encoding", "gzip");
        let uncompressed = direct(&source, &plain).await;
        assert_eq!(uncompressed.status, 200, "{what}: {}", uncompressed.text());
        assert!(uncompressed.body.len() > 10_000, "{what}: a body worth compressing");
        let compressed = direct(&source, &gzip).await;
        assert_eq!(compressed.header("content-encoding"), Some("gzip"), "{what}");
        // influxd's gzip (Go compress/gzip behind gziphandler) is deterministic for the same
        // answer, so the bytes themselves can be compared, not only their content.
        assert_eq!(
            direct(&source, &gzip).await.body,
            compressed.body,
            "{what}: influxd's gzip is deterministic"
        );
        for (format, event) in
            [("REST", rest_event(&gzip, &auth)), ("HTTP API", http_api_event(&gzip, &auth))]
        {
            for (mode, router) in [("streamed", &router), ("buffered", &buffered)] {
                let got = invoke(router, &event).await;
                let label = format!("{what} gzip ({format}, {mode})");
                assert_eq!(
                    got.base64,
                    mode == "buffered",
                    "{label}: a buffered gzip body travels base64-encoded"
                );
                assert_identical(&label, &got, &compressed);
                let inflated =
                    shared::envelope::gunzip(&got.body, uncompressed.body.len()).expect("valid gzip");
                assert!(
                    inflated == uncompressed.body,
                    "{label}: decompressed answer differs from the plain one"
                );
            }
        }
    }

    // Under 1400 bytes influxd does not compress even when asked: relayed as plain text.
    let small = Call::flux(
        &source.org,
        &format!(
            "from(bucket: \"{}\") |> {RANGE} |> filter(fn: (r) => r._measurement == \"mem\")",
            source.bucket
        ),
    )
    .header("Accept-Encoding", "gzip");
    let want = direct(&source, &small).await;
    assert_eq!(want.header("content-encoding"), None);
    let got = invoke(&router, &rest_event(&small, &auth)).await;
    assert!(!got.base64);
    assert_identical("small Flux answer with Accept-Encoding: gzip", &got, &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_oversized_answers_and_database_failures_get_influxdb_shaped_errors() {
    let (source, moto) = tokio::join!(Influxd::start_named("source"), Moto::start());
    load_varied_points(&source, 600).await;
    let proxy = FaultProxy::start(&source.url).await;
    let sm = secrets_client(&moto).await;
    create_secret(&sm, secret(&proxy.url, "http://127.0.0.1:9", "source", json!({}))).await;
    // Buffered: one response event per answer, so an answer over the limit is a 413.
    let settings = [
        ("UPSTREAM_TIMEOUT_SECONDS", "2"),
        ("MAX_RESPONSE_BYTES", "20000"),
        ("RESPONSE_TRANSFER_MODE", "BUFFERED"),
    ];
    let router = start_router(&router_env(&moto, None, &settings)).await;
    let auth = source.auth();

    // Writes and unknown paths: 404 saying where writes go; wrong methods: 405 with Allow.
    let write = Call::new("POST", "/api/v2/write")
        .query("org", &source.org)
        .query("bucket", &source.bucket)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body("m v=1 1");
    for (call, status, code, allow) in [
        (write, 404, "not found", None),
        (Call::new("POST", "/write").query("db", "x").body("m v=1"), 404, "not found", None),
        (Call::new("GET", "/api/v2/tasks"), 404, "not found", None),
        (Call::new("POST", "/api/v2/buckets").body("{}"), 405, "method not allowed", Some("GET")),
        (Call::new("DELETE", "/query"), 405, "method not allowed", Some("GET, POST")),
        (Call::new("GET", "/api/v2/query"), 405, "method not allowed", Some("POST")),
    ] {
        for event in [rest_event(&call, &auth), http_api_event(&call, &auth)] {
            let got = invoke(&router, &event).await;
            let what = format!("{} {}", call.method, call.path);
            assert_eq!(got.status, status, "{what}: {}", got.text());
            assert_eq!(got.header("content-type"), Some("application/json; charset=utf-8"), "{what}");
            assert_eq!(got.header("x-platform-error-code"), Some(code), "{what}");
            assert_eq!(got.header("allow"), allow, "{what}");
            let body = got.json();
            assert_eq!(body["code"], code, "{what}");
            let message = body["message"].as_str().unwrap_or_default();
            assert!(message.contains("this endpoint only serves reads"), "{what}: {message}");
            assert!(
                message.contains("writes go to /api/v2/write or /write on the same gateway"),
                "{what}: {message}"
            );
        }
    }
    assert_eq!(proxy.stats().seen, 0, "refused requests never reach the database");
    let stored = source
        .query(&format!(
            "from(bucket: \"{}\") |> range(start: 0) |> filter(fn: (r) => r._measurement == \"m\")",
            source.bucket
        ))
        .await;
    assert!(stored.is_empty(), "the refused writes stored nothing: {stored:?}");

    // A query whose answer is larger than MAX_RESPONSE_BYTES: 413 naming sizes and what to do.
    let marker = "// query-text-marker-7f3a";
    let big = Call::flux(
        &source.org,
        &format!(
            "{marker}\nfrom(bucket: \"{}\") |> {RANGE} |> filter(fn: (r) => r._measurement == \"bulk\")",
            source.bucket
        ),
    );
    let full = direct(&source, &big).await;
    assert!(full.body.len() > 20_000, "the answer is {} bytes", full.body.len());
    for event in [rest_event(&big, &auth), http_api_event(&big, &auth)] {
        let got = invoke(&router, &event).await;
        assert_eq!(got.status, 413, "{}", got.text());
        assert_eq!(got.header("x-platform-error-code"), Some("request too large"));
        let body = got.json();
        assert_eq!(body["code"], "request too large");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("the 20000 bytes a response through this gateway can carry"), "{message}");
        assert!(message.contains("narrow the time range"), "{message}");
        assert!(message.contains("aggregateWindow()"), "{message}");
        assert!(message.starts_with("the answer to this query is "), "{message}");
    }
    // The same answer gzip'd fits, and arrives whole.
    let gz = big.clone().header("Accept-Encoding", "gzip");
    let got = invoke(&router, &rest_event(&gz, &auth)).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.header("content-encoding"), Some("gzip"));
    assert!(shared::envelope::gunzip(&got.body, full.body.len()).expect("gzip") == full.body);
    // A small answer is untouched by the limit.
    let small = Call::flux(
        &source.org,
        &format!(
            "from(bucket: \"{}\") |> {RANGE} |> filter(fn: (r) => r._measurement == \"mem\")",
            source.bucket
        ),
    );
    assert_identical(
        "small answer",
        &invoke(&router, &rest_event(&small, &auth)).await,
        &direct(&source, &small).await,
    );

    // The database stalls past UPSTREAM_TIMEOUT_SECONDS: 504.
    proxy.stall_next(1, Duration::from_secs(6));
    let got = invoke(&router, &rest_event(&small, &auth)).await;
    assert_eq!(got.status, 504, "{}", got.text());
    assert_eq!(got.json()["code"], "gateway timeout");
    assert!(got.json()["message"].as_str().unwrap_or_default().contains("did not answer within 2.0 s"));
    // The connection is reset: 502.
    proxy.reset_next(1);
    let got = invoke(&router, &http_api_event(&small, &auth)).await;
    assert_eq!(got.status, 502, "{}", got.text());
    assert_eq!(got.json()["code"], "bad gateway");
    assert_eq!(got.header("x-platform-error-code"), Some("bad gateway"));
    // The database itself answers 503 with Retry-After: relayed as it is.
    proxy.fail_next(1, 7);
    let got = invoke(&router, &rest_event(&small, &auth)).await;
    assert_eq!(got.status, 503);
    assert_eq!(got.header("retry-after"), Some("7"));
    assert_eq!(got.json()["code"], "unavailable");
    assert_eq!(proxy.stats().stalled, 1);
    assert_eq!(proxy.stats().reset, 1);
    // And the database is healthy again.
    assert_eq!(invoke(&router, &rest_event(&small, &auth)).await.status, 200);

    // The log names the database host for every failure, and never the token or the query text.
    let log = router.function_log();
    let host = proxy.url.clone();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("database timed out") || l.contains("database unreachable"))
        .collect();
    assert_eq!(failures.len(), 2, "{log}");
    for line in failures {
        assert!(line.contains(&format!("\"upstream\":\"{host}\"")), "{line}");
    }
    let answered = log.lines().filter(|l| l.contains("read request answered")).count();
    assert!(answered >= 20, "one line per request: {answered}");
    assert!(log.contains("\"status\":413") && log.contains("\"status\":405"), "{log}");
    assert!(!log.contains(&source.token), "the token leaked into the log");
    assert!(!log.contains("query-text-marker"), "query text leaked into the log");

    // Streamed, the same failures before the first byte get the same answers; an answer that
    // outgrows the limit has already begun (200), so it ends with influxd's error table.
    let settings = [("UPSTREAM_TIMEOUT_SECONDS", "2"), ("MAX_RESPONSE_BYTES", "20000")];
    let streamed = start_router(&router_env(&moto, None, &settings)).await;
    let got = invoke(&streamed, &rest_event(&Call::new("GET", "/api/v2/tasks"), &auth)).await;
    assert_eq!((got.status, got.json()["code"].as_str()), (404, Some("not found")));
    let got = invoke(&streamed, &rest_event(&big, &auth)).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let text = got.text();
    assert!(text.len() <= 20_000, "the streamed answer stopped at the limit: {} bytes", text.len());
    let cut = text.rfind("\r\n\r\n").expect("a blank line before the error table");
    assert!(full.body.starts_with(&got.body[..cut]), "whole rows of the answer before the error");
    assert!(
        text[cut..].contains(",error,reference\r\n,\"the answer is larger than the 20000 bytes a response through this gateway can carry;"),
        "{}",
        &text[cut..]
    );
    proxy.stall_next(1, Duration::from_secs(6));
    let got = invoke(&streamed, &rest_event(&small, &auth)).await;
    assert_eq!((got.status, got.json()["code"].as_str()), (504, Some("gateway timeout")));
    proxy.reset_next(1);
    let got = invoke(&streamed, &http_api_event(&small, &auth)).await;
    assert_eq!((got.status, got.json()["code"].as_str()), (502, Some("bad gateway")));
    assert_eq!(got.header("x-platform-error-code"), Some("bad gateway"));
    let log = streamed.function_log();
    assert!(log.contains("\"ended\":\"too large\""), "{log}");
    assert!(!log.contains(&source.token), "the token leaked into the log");
}

/// Marker values: which database (and org) answered.
const SOURCE: &str = "source";
const DESTINATION: &str = "destination";

/// Writes the `whoami` marker (`value` = which database this is) into `org`/`bucket`.
async fn write_marker(influxd: &Influxd, org: &str, bucket: &str, value: &str) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v2/write", influxd.url))
        .query(&[("org", org), ("bucket", bucket), ("precision", "s")])
        .header("Authorization", influxd.auth())
        .body(format!("whoami value=\"{value}\" {T0}"))
        .send()
        .await
        .expect("write the marker");
    assert_eq!(resp.status(), 204, "{}", resp.text().await.unwrap_or_default());
}

/// The marker a Flux answer carries.
fn flux_marker(answer: &Answer) -> Option<String> {
    if answer.status != 200 {
        return None;
    }
    let rows = parse_annotated_csv(&answer.text());
    rows.first().and_then(|r| r.get("_value")).map(str::to_string)
}

/// The marker an InfluxQL JSON answer carries.
fn influxql_marker(answer: &Answer) -> Option<String> {
    if answer.status != 200 {
        return None;
    }
    answer.json()["results"][0]["series"][0]["values"][0][1].as_str().map(str::to_string)
}

/// Two databases told apart by their marker; the destination's org is named differently and its
/// operator token differs, so reads there only work through the secret's mappings.
struct TwoDatabases {
    source: Influxd,
    destination: Influxd,
    moto: Moto,
    sm: aws_sdk_secretsmanager::Client,
}

const DEST_ORG: &str = "migrated-org";

impl TwoDatabases {
    async fn start() -> TwoDatabases {
        let (source, destination, moto) =
            tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"), Moto::start());
        write_marker(&source, &source.org, &source.bucket, SOURCE).await;
        let dest_org_id = destination.create_org(DEST_ORG).await;
        destination.create_bucket_in(&dest_org_id, &destination.bucket).await;
        write_marker(&destination, DEST_ORG, &destination.bucket, DESTINATION).await;
        // What InfluxQL reads on the destination: the bucket of the token's own org.
        write_marker(&destination, &destination.org, &destination.bucket, DESTINATION).await;
        let sm = secrets_client(&moto).await;
        TwoDatabases { source, destination, moto, sm }
    }

    fn secret(&self, read: &str) -> String {
        let mappings = json!({
            "orgs": {self.source.org.clone(): DEST_ORG},
            "tokens": {self.source.token.clone(): self.destination.token.clone()}
        });
        secret(&self.source.url, &self.destination.url, read, mappings)
    }

    /// A Flux and an InfluxQL read of the marker, with the *source's* token and names, as the
    /// clients keep sending them through the cutover.
    fn reads(&self) -> (Call, Call) {
        let flux = Call::flux(
            &self.source.org,
            &format!(
                "from(bucket: \"{}\") |> {RANGE} |> filter(fn: (r) => r._measurement == \"whoami\")",
                self.source.bucket
            ),
        );
        let influxql = Call::new("GET", "/query")
            .query("db", &self.source.bucket)
            .query("q", "SELECT value FROM whoami");
        (flux, influxql)
    }
}

/// One request of the load.
#[derive(Debug, Clone)]
struct Sample {
    sent: Instant,
    done: Instant,
    status: u16,
    marker: Option<String>,
    what: &'static str,
}

impl TwoDatabases {
    /// The load's events: Flux and InfluxQL, REST and HTTP API.
    fn load_events(&self) -> Arc<Vec<(&'static str, Value)>> {
        let (flux, influxql) = self.reads();
        let auth = self.source.auth();
        Arc::new(vec![
            ("flux REST", rest_event(&flux, &auth)),
            ("influxql HTTP API", http_api_event(&influxql, &auth)),
            ("flux HTTP API", http_api_event(&flux, &auth)),
            ("influxql REST", rest_event(&influxql, &auth)),
        ])
    }
}

/// `tasks` clients querying through `router` back to back until `until`.
async fn load(
    router: Arc<LambdaRuntime>,
    events: Arc<Vec<(&'static str, Value)>>,
    tasks: usize,
    until: Instant,
) -> Vec<Sample> {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (router, events) = (router.clone(), events.clone());
        handles.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut i = t;
            while Instant::now() < until {
                let (what, event) = &events[i % events.len()];
                i += 1;
                let sent = Instant::now();
                let answer = invoke(&router, event).await;
                let done = Instant::now();
                let marker =
                    if what.starts_with("flux") { flux_marker(&answer) } else { influxql_marker(&answer) };
                samples.push(Sample { sent, done, status: answer.status, marker, what });
            }
            samples
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("load task"));
    }
    all
}

/// How many "read request answered" lines each running router instance has logged (from the
/// tail of its log).
fn answered_per_instance(router: &LambdaRuntime) -> Vec<usize> {
    router
        .logs()
        .split("--- ")
        .filter(|section| section.starts_with("query-router (pid"))
        .map(|section| section.matches("read request answered").count())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_under_load_reaches_every_router_within_the_cache_time_without_a_failed_request() {
    let bed = TwoDatabases::start().await;
    create_secret(&bed.sm, bed.secret(SOURCE)).await;
    let ttl = Duration::from_secs(1);
    let env = router_env(&bed.moto, None, &[("SECRET_TTL_SECONDS", "1")]);
    let router = start_router(&env).await;
    router.add_instance();
    let router = Arc::new(router);

    let flip_at = Instant::now() + Duration::from_secs(3);
    let end = flip_at + ttl + Duration::from_secs(4);
    let (samples, (flip_started, flip_done)) =
        tokio::join!(load(router.clone(), bed.load_events(), 4, end), async {
            tokio::time::sleep_until(flip_at.into()).await;
            let started = Instant::now();
            put_secret(&bed.sm, bed.secret(DESTINATION)).await;
            (started, Instant::now())
        });

    let settled = flip_done + ttl + Duration::from_secs(1);
    eprintln!(
        "cutover: {} requests, {} before the flip, {} after the cache time; flip took {:?}",
        samples.len(),
        samples.iter().filter(|s| s.done < flip_started).count(),
        samples.iter().filter(|s| s.sent >= settled).count(),
        flip_done - flip_started
    );
    let failed: Vec<&Sample> = samples.iter().filter(|s| s.status != 200 || s.marker.is_none()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {failed:?}\n{}",
        failed.len(),
        samples.len(),
        router.logs()
    );
    for s in &samples {
        let m = s.marker.as_deref().unwrap_or_default();
        assert!(m == SOURCE || m == DESTINATION, "{} answered {m:?}", s.what);
    }
    let before: Vec<&Sample> = samples.iter().filter(|s| s.done < flip_started).collect();
    assert!(before.len() >= 10, "only {} requests before the flip", before.len());
    for s in &before {
        assert_eq!(s.marker.as_deref(), Some(SOURCE), "{} before the flip", s.what);
    }
    // Within the cache time (plus a second for a refresh that was under way at the flip) every
    // router has switched.
    let after: Vec<&Sample> = samples.iter().filter(|s| s.sent >= settled).collect();
    assert!(after.len() >= 10, "only {} requests after the cache time", after.len());
    for s in &after {
        assert_eq!(
            s.marker.as_deref(),
            Some(DESTINATION),
            "{} sent {:?} after the flip",
            s.what,
            s.sent.duration_since(flip_done)
        );
    }
    assert!(
        after.iter().any(|s| s.what.starts_with("flux"))
            && after.iter().any(|s| s.what.starts_with("influxql"))
    );
    let per_instance = answered_per_instance(&router);
    assert_eq!(per_instance.len(), 2, "{}", router.logs());
    assert!(per_instance.iter().all(|n| *n > 0), "both routers served requests: {per_instance:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_secrets_manager_fails_routers_keep_answering_from_the_last_good_endpoint() {
    let bed = TwoDatabases::start().await;
    create_secret(&bed.sm, bed.secret(SOURCE)).await;
    // The routers reach Secrets Manager only through this proxy; the test's own client does not.
    let sm_proxy = FaultProxy::start(&bed.moto.url).await;
    let env = router_env(&bed.moto, Some(&sm_proxy.url), &[("SECRET_TTL_SECONDS", "1")]);
    let router = start_router(&env).await;
    router.add_instance();

    // A cold start builds clients only: nothing reaches Secrets Manager before an invocation.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sm_proxy.stats().seen, 0, "a cold start called Secrets Manager");

    let (flux, influxql) = bed.reads();
    let auth = bed.source.auth();
    let (flux_ev, ql_ev) = (rest_event(&flux, &auth), http_api_event(&influxql, &auth));
    for _ in 0..3 {
        assert_eq!(flux_marker(&invoke(&router, &flux_ev).await).as_deref(), Some(SOURCE));
        assert_eq!(influxql_marker(&invoke(&router, &ql_ev).await).as_deref(), Some(SOURCE));
    }
    assert!(sm_proxy.stats().forwarded >= 1);

    // Secrets Manager answers 503 for 6 s, and meanwhile the operator flips reads (in Secrets
    // Manager itself): the routers cannot see the flip and keep the last good endpoint.
    let outage = Duration::from_secs(6);
    sm_proxy.fail_for(outage, 1);
    let outage_end = Instant::now() + outage;
    put_secret(&bed.sm, bed.secret(DESTINATION)).await;
    let mut answered = 0;
    while Instant::now() + Duration::from_millis(700) < outage_end {
        for (ev, marker) in
            [(&flux_ev, flux_marker as fn(&Answer) -> Option<String>), (&ql_ev, influxql_marker)]
        {
            let a = invoke(&router, ev).await;
            assert_eq!(a.status, 200, "during the outage: {}", a.text());
            assert_eq!(
                marker(&a).as_deref(),
                Some(SOURCE),
                "the last good endpoint is kept during the outage"
            );
            answered += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered >= 10, "only {answered} requests during the outage");
    assert!(sm_proxy.stats().failed >= 2, "the routers did try to refresh: {:?}", sm_proxy.stats());
    let log = router.function_log();
    assert!(log.contains("secret refresh failed; serving the last good value"), "{log}");
    assert!(
        !log.contains(&bed.source.token) && !log.contains(&bed.destination.token),
        "a token leaked into the log"
    );

    // As it recovers, Secrets Manager resets a few connections; nothing fails for readers.
    tokio::time::sleep_until(outage_end.into()).await;
    sm_proxy.reset_next(3);
    // After the outage, the routers pick up the flip: within the retry interval after a failed
    // refresh (2 s), twice over for the resets, plus the cache time and a second of slack.
    let settled = Instant::now() + Duration::from_secs(2 * 2 + 1 + 1);
    while Instant::now() < settled {
        let a = invoke(&router, &flux_ev).await;
        assert_eq!(a.status, 200, "while recovering: {}", a.text());
        assert!(matches!(flux_marker(&a).as_deref(), Some(SOURCE | DESTINATION)));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..4 {
        assert_eq!(flux_marker(&invoke(&router, &flux_ev).await).as_deref(), Some(DESTINATION));
        assert_eq!(influxql_marker(&invoke(&router, &ql_ev).await).as_deref(), Some(DESTINATION));
    }
    assert_eq!(sm_proxy.stats().reset, 3, "the resets were seen by the routers");

    // A cold start during an outage has no last good value: 503, InfluxDB-shaped, retryable.
    sm_proxy.fail_for(Duration::from_secs(3), 1);
    let outage_end = Instant::now() + Duration::from_secs(3);
    router.restart();
    let a = invoke(&router, &flux_ev).await;
    assert_eq!(a.status, 503, "{}", a.text());
    assert_eq!(a.json()["code"], "unavailable");
    assert_eq!(a.header("x-platform-error-code"), Some("unavailable"));
    assert_eq!(a.header("retry-after"), Some("1"));
    tokio::time::sleep_until(outage_end.into()).await;
    let a = invoke(&router, &flux_ev).await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(flux_marker(&a).as_deref(), Some(DESTINATION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_without_secret_id_fails_naming_the_variable() {
    let mut cmd = tokio::process::Command::new(workspace_binary("query-router"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        // Nothing listens there: the function must stop before it ever asks for an event.
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env("AWS_REGION", "us-east-1")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("the function exits at once")
        .expect("run the function binary");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("environment variable SECRET_ID must be set"), "stderr: {stderr}");
}
