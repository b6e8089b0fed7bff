//! A local API Gateway: HTTP on loopback in, REST API proxy events (payload 1.0) to the
//! functions through the Lambda runtime API, their proxy responses back out.
//!
//! It plays the client-side signing proxy too: a client sends `Authorization: Token …` as it
//! would to InfluxDB, and the request reaches the functions with that header moved to
//! `X-Original-Authorization` and a SigV4-shaped `Authorization` in its place — what
//! `aws-sigv4-proxy --duplicate-headers Authorization` does. Routes follow `infra/wiring.yaml`:
//! `POST /api/v2/write` and `POST /write` go to the kinesis-writer, everything else to the
//! query-router (which answers unknown paths itself). Every body travels base64-encoded, as with
//! the API's `BinaryMediaTypes: ["*/*"]`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::events::HttpRequest;
use crate::lambda::Invoker;

/// A running local gateway; stops when dropped.
#[derive(Debug)]
pub struct LocalGateway {
    pub url: String,
    task: JoinHandle<()>,
}

struct Routes {
    writer: Invoker,
    router: Invoker,
}

impl LocalGateway {
    /// Starts the gateway on a free loopback port.
    pub async fn start(writer: Invoker, router: Invoker) -> LocalGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the local gateway");
        let addr: SocketAddr = listener.local_addr().expect("gateway address");
        let routes = Arc::new(Routes { writer, router });
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

/// Whether a request goes to the kinesis-writer (the write routes of infra/wiring.yaml).
pub fn is_write_route(method: &str, path: &str) -> bool {
    method == "POST" && matches!(path.trim_end_matches('/'), "/api/v2/write" | "/write")
}

impl Routes {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return plain(400, &format!("reading the request body: {e}")),
        };
        let method = parts.method.as_str().to_string();
        let path = parts.uri.path().to_string();
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
        let write = is_write_route(&method, &path);
        let (route, invoker) =
            if write { ("kinesis-writer", &self.writer) } else { ("query-router", &self.router) };
        match invoker.invoke(&request.rest_event()).await {
            Ok(inv) if inv.status == 200 && inv.payload.get("statusCode").is_some() => to_http(&inv.payload),
            Ok(inv) => plain(502, &format!("{route} failed: {}", inv.payload)),
            Err(e) => plain(502, &format!("{route} did not answer: {e}")),
        }
    }
}

/// A proxy response event as HTTP.
fn to_http(payload: &Value) -> Response<Full<Bytes>> {
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
    builder
        .body(Full::new(body))
        .unwrap_or_else(|e| plain(502, &format!("bad response from the function: {e}")))
}

/// API Gateway's own kind of error (not InfluxDB's): `{"message": …}`.
fn plain(status: u16, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "message": message }).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
