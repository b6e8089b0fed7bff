//! A local API Gateway: HTTP on loopback in, REST API proxy events (payload 1.0) to the
//! functions through the Lambda runtime API, their proxy responses back out.
//!
//! It plays the client-side signing proxy too: a client sends `Authorization: Token …` as it
//! would to InfluxDB, and the request reaches the functions with that header moved to
//! `X-Original-Authorization` and a SigV4-shaped `Authorization` in its place — what
//! `aws-sigv4-proxy --duplicate-headers Authorization` does. Its routes are the deployed API's:
//! [`ApiRoutes`] is read from the REST API that `infra/wiring.yaml` created (in moto), each
//! method to the function its integration invokes; a path or method the API lacks gets API
//! Gateway's own answer (403 `Missing Authentication Token`) and reaches no function, so no test
//! can pass through a route users cannot reach. Every request body travels base64-encoded, as
//! with the API's `BinaryMediaTypes: ["*/*"]`.
//!
//! A route whose integration streams (`ResponseTransferMode: STREAM`, which API Gateway invokes
//! through `InvokeWithResponseStream`, integration URI `.../response-streaming-invocations`)
//! streams here too: status and headers from the function's prelude as soon as they come, then
//! the body chunk by chunk, chunked to the client. `cargo lambda watch` 1.9.2 has an
//! `InvokeWithResponseStream` endpoint, but it collects the whole answer before replying and
//! keeps only the prelude's status; its `Invoke` endpoint streams a streaming function's answer
//! with the prelude's status and headers (as a function URL does), so that is the one used. A
//! function whose stream breaks off (it crashed, or its timeout ended it) breaks the client's
//! answer off too (the connection closes without the body's end), as API Gateway's does ("transfer
//! closed with outstanding read data remaining"); a function that answers a streaming route
//! without streaming, or the other way round, gets API Gateway's 502.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::stack::events::HttpRequest;
use crate::stack::lambda::Invoker;

/// A running local gateway; stops when dropped.
#[derive(Debug)]
pub struct LocalGateway {
    pub url: String,
    task: JoinHandle<()>,
}

/// Which function a route invokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    KinesisWriter,
    QueryRouter,
}

/// How an integration returns the function's answer (`ResponseTransferMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    Buffered,
    Stream,
}

/// The deployed API's routes: (method, path) -> function and transfer mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiRoutes(std::collections::BTreeMap<(String, String), (Target, Transfer)>);

impl ApiRoutes {
    /// From API Gateway's `GetResources` answer (`items`, each with `path` and its
    /// `resourceMethods` and their integration URI), given the two functions' names.
    pub fn from_resources(resources: &Value, writer: &str, router: &str) -> Result<ApiRoutes, String> {
        let items = resources["items"].as_array().ok_or("GetResources answered no items")?;
        let mut routes = std::collections::BTreeMap::new();
        for item in items {
            let path = item["path"].as_str().ok_or("a resource without a path")?;
            let Some(methods) = item["resourceMethods"].as_object() else { continue };
            for (method, m) in methods {
                let uri = m["methodIntegration"]["uri"].as_str().unwrap_or_default();
                let invokes =
                    |f: &str| uri.contains(&format!(":function:{f}/")) || uri.contains(&format!("/{f}/"));
                let target = if invokes(writer) {
                    Target::KinesisWriter
                } else if invokes(router) {
                    Target::QueryRouter
                } else {
                    return Err(format!("{method} {path} invokes neither function: {uri}"));
                };
                // moto keeps the integration's URI (not its ResponseTransferMode): a streaming
                // integration is the one that invokes with InvokeWithResponseStream.
                let transfer = if uri.ends_with("/response-streaming-invocations") {
                    Transfer::Stream
                } else {
                    Transfer::Buffered
                };
                routes.insert((method.clone(), path.to_string()), (target, transfer));
            }
        }
        Ok(ApiRoutes(routes))
    }

    /// The function for a request; API Gateway ignores one trailing slash.
    pub fn target(&self, method: &str, path: &str) -> Option<Target> {
        self.route(method, path).map(|(t, _)| t)
    }

    /// The function for a request and how its answer comes back.
    pub fn route(&self, method: &str, path: &str) -> Option<(Target, Transfer)> {
        let path = match path.trim_end_matches('/') {
            "" => "/",
            p => p,
        };
        self.0.get(&(method.to_string(), path.to_string())).copied()
    }

    /// Every route, as `METHOD /path`.
    pub fn list(&self) -> Vec<String> {
        self.0.keys().map(|(m, p)| format!("{m} {p}")).collect()
    }
}

struct Routes {
    writer: Invoker,
    router: Invoker,
    api: ApiRoutes,
}

impl LocalGateway {
    /// Starts the gateway on a free loopback port, serving exactly `api`'s routes.
    pub async fn start(writer: Invoker, router: Invoker, api: ApiRoutes) -> LocalGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the local gateway");
        let addr: SocketAddr = listener.local_addr().expect("gateway address");
        let routes = Arc::new(Routes { writer, router, api });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let routes = routes.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let routes = routes.clone();
                        async move { Ok::<_, Infallible>(routes.handle(req).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        LocalGateway { url: format!("http://{addr}"), task }
    }
}

impl Drop for LocalGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the gateway answers with: a whole body, or a function's streamed one.
type GatewayBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn whole(bytes: Bytes) -> GatewayBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

impl Routes {
    async fn handle(&self, req: Request<Incoming>) -> Response<GatewayBody> {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return plain(400, &format!("reading the request body: {e}")),
        };
        let method = parts.method.as_str().to_string();
        let path = parts.uri.path().to_string();
        let Some((target, transfer)) = self.api.route(&method, &path) else {
            // What API Gateway answers for a path or method the REST API does not have.
            return Response::builder()
                .status(403)
                .header("Content-Type", "application/json")
                .header("x-amzn-ErrorType", "MissingAuthenticationTokenException")
                .body(whole(Bytes::from_static(br#"{"message":"Missing Authentication Token"}"#)))
                .unwrap_or_else(|_| plain(403, "Missing Authentication Token"));
        };
        let mut request = HttpRequest { method: method.clone(), path: path.clone(), ..Default::default() };
        if let Some(q) = parts.uri.query() {
            request.query =
                form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        }
        for (name, value) in &parts.headers {
            let Ok(v) = value.to_str() else { continue };
            match name.as_str() {
                // What aws-sigv4-proxy --duplicate-headers Authorization does.
                "authorization" => {
                    request.headers.push(("X-Original-Authorization".into(), v.into()));
                    request.headers.push((
                        "Authorization".into(),
                        "AWS4-HMAC-SHA256 Credential=AKIDLOCAL/20261125/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=0".into(),
                    ));
                }
                "host" | "connection" | "content-length" | "transfer-encoding" => {}
                _ => request.headers.push((name.as_str().to_string(), v.into())),
            }
        }
        request.body = body.to_vec();
        request.base64 = true;
        let (route, invoker) = match target {
            Target::KinesisWriter => ("kinesis-writer", &self.writer),
            Target::QueryRouter => ("query-router", &self.router),
        };
        let answer = match invoker.invoke_open(&request.rest_event()).await {
            Ok(a) => a,
            Err(e) => return plain(502, &format!("{route} did not answer: {e}")),
        };
        let streamed = answer
            .headers()
            .get("lambda-runtime-function-response-mode")
            .is_some_and(|v| v.as_bytes() == b"streaming");
        match (transfer, streamed) {
            (Transfer::Stream, true) => streamed_to_http(answer),
            (Transfer::Buffered, false) => match crate::stack::lambda::Invocation::read_from(answer).await {
                Ok(inv) if inv.status == 200 && inv.payload.get("statusCode").is_some() => {
                    to_http(&inv.payload)
                }
                Ok(inv) => plain(502, &format!("{route} failed: {}", inv.payload)),
                Err(e) => plain(502, &format!("{route} did not answer: {e}")),
            },
            (Transfer::Stream, false) => {
                let body = answer.text().await.unwrap_or_default();
                plain(502, &format!("{route} did not stream its answer to a streaming route: {body}"))
            }
            (Transfer::Buffered, true) => {
                plain(502, &format!("{route} streamed its answer to a buffered route"))
            }
        }
    }
}

/// A function's streamed answer as HTTP: the prelude's status and headers, then the body as it
/// comes (an error mid-body ends the client's answer without its end).
fn streamed_to_http(answer: reqwest::Response) -> Response<GatewayBody> {
    let mut builder = Response::builder().status(answer.status().as_u16());
    for (name, value) in answer.headers() {
        // The runtime API's own headers, and lengths (API Gateway streams chunked).
        if !matches!(
            name.as_str(),
            "lambda-runtime-function-response-mode"
                | "transfer-encoding"
                | "content-length"
                | "x-amzn-remapped-content-length"
                | "connection"
                | "date"
        ) {
            builder = builder.header(name, value);
        }
    }
    let chunks = futures::stream::unfold(Some(answer), |answer| async move {
        let mut answer = answer?;
        match answer.chunk().await {
            Ok(Some(c)) => Some((Ok(Frame::data(c)), Some(answer))),
            Ok(None) => None,
            Err(e) => Some((Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>), None)),
        }
    });
    builder
        .body(BodyExt::boxed(StreamBody::new(chunks)))
        .unwrap_or_else(|e| plain(502, &format!("bad streamed response from the function: {e}")))
}

/// A proxy response event as HTTP.
fn to_http(payload: &Value) -> Response<GatewayBody> {
    let status = payload["statusCode"].as_u64().unwrap_or(502) as u16;
    let mut builder = Response::builder().status(status);
    if let Some(h) = payload.get("headers").and_then(Value::as_object) {
        for (k, v) in h {
            if let Some(v) = v.as_str() {
                builder = builder.header(k, v);
            }
        }
    }
    if let Some(h) = payload.get("multiValueHeaders").and_then(Value::as_object) {
        for (k, vs) in h {
            if payload.get("headers").and_then(|h| h.get(k)).is_some() {
                continue;
            }
            for v in vs.as_array().into_iter().flatten().filter_map(Value::as_str) {
                builder = builder.header(k, v);
            }
        }
    }
    let body = match payload.get("body").and_then(Value::as_str) {
        None => Bytes::new(),
        Some(b) if payload["isBase64Encoded"].as_bool() == Some(true) => {
            match base64::engine::general_purpose::STANDARD.decode(b) {
                Ok(bytes) => Bytes::from(bytes),
                Err(e) => return plain(502, &format!("the function's body is not valid base64: {e}")),
            }
        }
        Some(b) => Bytes::from(b.to_string()),
    };
    builder.body(whole(body)).unwrap_or_else(|e| plain(502, &format!("bad response from the function: {e}")))
}

/// API Gateway's own kind of error (not InfluxDB's): `{"message": …}`.
fn plain(status: u16, message: &str) -> Response<GatewayBody> {
    let body = serde_json::json!({ "message": message }).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(whole(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(whole(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resources() -> Value {
        let uri = |f: &str| {
            format!(
                "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:{f}/invocations"
            )
        };
        let m = |f: &str| json!({"authorizationType": "AWS_IAM", "methodIntegration": {"type": "AWS_PROXY", "uri": uri(f)}});
        let streamed = json!({"authorizationType": "AWS_IAM", "methodIntegration": {"type": "AWS_PROXY",
            "uri": "arn:aws:apigateway:us-east-1:lambda:path/2021-11-15/functions/arn:aws:lambda:us-east-1:123456789012:function:p-query-router/response-streaming-invocations"}});
        json!({"items": [
            {"path": "/"},
            {"path": "/api/v2/write", "resourceMethods": {"POST": m("p-kinesis-writer")}},
            {"path": "/query", "resourceMethods": {"GET": m("p-query-router"), "POST": streamed}},
        ]})
    }

    #[test]
    fn routes_come_from_the_deployed_methods_and_nothing_else() {
        let api = ApiRoutes::from_resources(&resources(), "p-kinesis-writer", "p-query-router").unwrap();
        assert_eq!(api.list(), ["GET /query", "POST /api/v2/write", "POST /query"]);
        assert_eq!(api.target("POST", "/api/v2/write"), Some(Target::KinesisWriter));
        assert_eq!(api.target("POST", "/api/v2/write/"), Some(Target::KinesisWriter));
        assert_eq!(api.target("GET", "/query"), Some(Target::QueryRouter));
        assert_eq!(api.route("GET", "/query"), Some((Target::QueryRouter, Transfer::Buffered)));
        assert_eq!(api.route("POST", "/query"), Some((Target::QueryRouter, Transfer::Stream)));
        assert_eq!(api.route("POST", "/api/v2/write"), Some((Target::KinesisWriter, Transfer::Buffered)));
        // Regression: every non-write request went to the router, so tests passed for routes
        // the deployed API does not have.
        assert_eq!(api.target("GET", "/api/v2/buckets"), None);
        assert_eq!(api.target("GET", "/api/v2/write"), None);
    }

    #[test]
    fn a_method_invoking_an_unknown_function_is_an_error() {
        let e = ApiRoutes::from_resources(&resources(), "other-writer", "p-query-router").unwrap_err();
        assert!(e.contains("POST /api/v2/write"), "{e}");
    }
}
