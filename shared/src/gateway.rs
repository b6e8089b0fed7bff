//! API Gateway proxy events in, API Gateway proxy responses out.
//!
//! The same functions sit behind a REST API (payload format 1.0) and an HTTP API (payload format
//! 2.0). Both are normalised into one [`GatewayRequest`] — method, path without the stage, query
//! pairs, headers, and the body with base64 undone (but *not* gunzipped: the handler decides what
//! `Content-Encoding` means) — and a [`GatewayResponse`] is written back in the format the request
//! came in.
//!
//! API Gateway base64-encodes a request body when its `Content-Type` matches the API's binary media
//! types (REST) or is not text (HTTP API); responses must be base64 with `isBase64Encoded: true`
//! when they are not UTF-8 text. Invalid base64 becomes a typed error, never a panic.

use aws_lambda_events::apigw::{
    ApiGatewayProxyRequest, ApiGatewayProxyResponse, ApiGatewayV2httpRequest, ApiGatewayV2httpResponse,
};
use aws_lambda_events::encodings::Body;
use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::Value;

use crate::influx_error::InfluxError;

/// Which payload format a request arrived in (and its response must use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// REST API, payload format 1.0.
    Rest,
    /// HTTP API, payload format 2.0.
    HttpApi,
}

/// Why an event could not be read as an API Gateway request.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the event is not an API Gateway proxy request: {0}")]
    NotAGatewayEvent(serde_json::Error),
    #[error("the request body is marked base64 but is not valid base64: {0}")]
    BadBase64(base64::DecodeError),
}

/// One HTTP request as the function sees it, whatever the gateway's payload format.
#[derive(Debug, Clone)]
pub struct GatewayRequest {
    pub format: PayloadFormat,
    pub method: Method,
    /// The path without any stage prefix, e.g. `/api/v2/write`.
    pub path: String,
    /// Query parameters in arrival order (a name may repeat).
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    /// The body as the client sent it (base64 undone, compression kept).
    pub body: Bytes,
    pub request_id: Option<String>,
}

impl GatewayRequest {
    /// Reads a REST (1.0) or HTTP API (2.0) proxy event.
    pub fn from_event(event: Value) -> Result<GatewayRequest, GatewayError> {
        if event.get("version").and_then(Value::as_str) == Some("2.0") {
            let e: ApiGatewayV2httpRequest =
                serde_json::from_value(event).map_err(GatewayError::NotAGatewayEvent)?;
            Self::from_http_api(e)
        } else {
            let e: ApiGatewayProxyRequest =
                serde_json::from_value(event).map_err(GatewayError::NotAGatewayEvent)?;
            Self::from_rest(e)
        }
    }

    fn from_rest(e: ApiGatewayProxyRequest) -> Result<GatewayRequest, GatewayError> {
        let mut query: Vec<(String, String)> = Vec::new();
        let source = if e.multi_value_query_string_parameters.is_empty() {
            &e.query_string_parameters
        } else {
            &e.multi_value_query_string_parameters
        };
        for (k, v) in source.iter() {
            query.push((k.to_string(), v.to_string()));
        }
        // HashMap order is arbitrary; sort by name (stable for repeated names) so that what we
        // forward is deterministic.
        query.sort_by(|a, b| a.0.cmp(&b.0));
        let mut headers = e.headers;
        for (name, value) in e.multi_value_headers.iter() {
            if !headers.contains_key(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        Ok(GatewayRequest {
            format: PayloadFormat::Rest,
            method: e.http_method,
            path: e.path.unwrap_or_else(|| "/".into()),
            query,
            headers,
            body: decode_body(e.body, e.is_base64_encoded)?,
            request_id: e.request_context.request_id,
        })
    }

    fn from_http_api(e: ApiGatewayV2httpRequest) -> Result<GatewayRequest, GatewayError> {
        let ctx = &e.request_context;
        let mut path = e.raw_path.clone().or_else(|| ctx.http.path.clone()).unwrap_or_else(|| "/".into());
        if let Some(stage) = ctx.stage.as_deref()
            && stage != "$default"
        {
            let prefix = format!("/{stage}");
            if path == prefix {
                path = "/".into();
            } else if let Some(rest) = path.strip_prefix(&format!("{prefix}/")) {
                path = format!("/{rest}");
            }
        }
        let query = match e.raw_query_string.as_deref() {
            Some(raw) => form_urlencoded::parse(raw.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
            None => e.query_string_parameters.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        let mut headers = e.headers;
        if let Some(cookies) = &e.cookies
            && !cookies.is_empty()
            && let Ok(v) = HeaderValue::from_str(&cookies.join("; "))
        {
            headers.insert(http::header::COOKIE, v);
        }
        Ok(GatewayRequest {
            format: PayloadFormat::HttpApi,
            method: ctx.http.method.clone(),
            path,
            query,
            headers,
            body: decode_body(e.body, e.is_base64_encoded)?,
            request_id: ctx.request_id.clone(),
        })
    }

    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The query string to forward (percent-encoded, without `?`).
    pub fn query_string(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.query {
            s.append_pair(k, v);
        }
        s.finish()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn decode_body(body: Option<String>, base64: bool) -> Result<Bytes, GatewayError> {
    match body {
        None => Ok(Bytes::new()),
        Some(b) if base64 => base64::engine::general_purpose::STANDARD
            .decode(b.as_bytes())
            .map(Bytes::from)
            .map_err(GatewayError::BadBase64),
        Some(b) => Ok(Bytes::from(b)),
    }
}

/// A response to write back through the gateway.
#[derive(Debug, Clone)]
pub struct GatewayResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl GatewayResponse {
    /// 204 with no body: what influxd answers a successful write.
    pub fn no_content() -> GatewayResponse {
        GatewayResponse { status: 204, headers: HeaderMap::new(), body: Bytes::new() }
    }

    /// An InfluxDB-shaped error.
    pub fn error(e: &InfluxError) -> GatewayResponse {
        GatewayResponse { status: e.status(), headers: e.headers(), body: Bytes::from(e.to_json()) }
    }

    /// Adds a header (replacing one of the same name).
    pub fn with_header(mut self, name: &'static str, value: &str) -> GatewayResponse {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    /// Whether the body must travel base64-encoded: it is compressed or not UTF-8 text.
    pub fn is_binary(&self) -> bool {
        self.headers.contains_key(http::header::CONTENT_ENCODING) || std::str::from_utf8(&self.body).is_err()
    }

    /// The size of the event this response becomes, before JSON escaping: the body (base64 when
    /// binary) plus the headers. The Lambda response payload limit applies to this.
    pub fn encoded_len(&self) -> usize {
        let body = if self.is_binary() { self.body.len().div_ceil(3) * 4 } else { self.body.len() };
        let headers: usize = self.headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 6).sum();
        body + headers + 128
    }

    /// The response event in `format`. A text body's buffer becomes the event's string as it
    /// is: serialising it through `aws_lambda_events` ([`GatewayResponse::serialized_event`])
    /// copies it twice (`from_utf8_lossy(..).into_owned()`, then `serde_json::to_value`), and on a
    /// 5 MB query answer those copies cost more than everything else the router does. Both
    /// payload formats carry the body in `body` beside `isBase64Encoded`; a test holds the two
    /// ways equal.
    pub fn into_event(self, format: PayloadFormat) -> Value {
        if self.body.is_empty() || self.is_binary() {
            return self.serialized_event(format);
        }
        let GatewayResponse { status, headers, body } = self;
        // Not binary, so valid UTF-8; `Vec::from` reuses the buffer when the body owns it alone.
        let text = match String::from_utf8(Vec::from(body)) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        let mut event = GatewayResponse { status, headers, body: Bytes::new() }.serialized_event(format);
        if let Some(fields) = event.as_object_mut() {
            fields.insert("body".to_string(), Value::String(text));
            fields.insert("isBase64Encoded".to_string(), Value::Bool(false));
        }
        event
    }

    /// The response event as `aws_lambda_events` serialises it.
    fn serialized_event(self, format: PayloadFormat) -> Value {
        let binary = self.is_binary();
        let body = if self.body.is_empty() {
            None
        } else if binary {
            Some(Body::Binary(self.body.to_vec()))
        } else {
            Some(Body::Text(String::from_utf8_lossy(&self.body).into_owned()))
        };
        let result = match format {
            PayloadFormat::Rest => {
                let mut r = ApiGatewayProxyResponse::default();
                r.status_code = i64::from(self.status);
                r.headers = self.headers;
                r.body = body;
                r.is_base64_encoded = binary;
                serde_json::to_value(r)
            }
            PayloadFormat::HttpApi => {
                let mut r = ApiGatewayV2httpResponse::default();
                r.status_code = i64::from(self.status);
                r.headers = self.headers;
                r.body = body;
                r.is_base64_encoded = binary;
                serde_json::to_value(r)
            }
        };
        result.unwrap_or_else(|e| {
            serde_json::json!({
                "statusCode": 500,
                "headers": {"content-type": "application/json; charset=utf-8"},
                "body": serde_json::json!({"code": "internal error", "message": format!("encoding the response: {e}")}).to_string(),
                "isBase64Encoded": false
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn rest_event(method: &str, path: &str, query: Value, body: Option<&str>, b64: bool) -> Value {
        json!({
            "resource": "/{proxy+}", "path": path, "httpMethod": method,
            "headers": {"Content-Type": "text/plain; charset=utf-8", "X-Original-Authorization": "Token t"},
            "multiValueHeaders": {"Content-Type": ["text/plain; charset=utf-8"], "X-Original-Authorization": ["Token t"]},
            "queryStringParameters": query.clone(),
            "multiValueQueryStringParameters": query.as_object().map(|m| m.iter().map(|(k, v)| (k.clone(), json!([v]))).collect::<serde_json::Map<_, _>>()),
            "pathParameters": {"proxy": path.trim_start_matches('/')},
            "stageVariables": null,
            "requestContext": {"accountId": "123456789012", "resourceId": "abc", "stage": "prod", "requestId": "req-1",
                "identity": {"sourceIp": "127.0.0.1"}, "resourcePath": "/{proxy+}", "httpMethod": method, "apiId": "api", "path": format!("/prod{path}")},
            "body": body, "isBase64Encoded": b64
        })
    }

    fn http_api_event(path: &str, raw_query: &str, body: &str, b64: bool) -> Value {
        json!({
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": raw_query,
            "headers": {"content-type": "text/plain", "x-original-authorization": "Token t"},
            "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "x", "domainPrefix": "x",
                "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"},
                "requestId": "req-2", "routeKey": "$default", "stage": "live", "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 0},
            "body": body, "isBase64Encoded": b64
        })
    }

    #[test]
    fn reads_rest_events_with_query_and_plain_body() {
        let ev =
            rest_event("POST", "/api/v2/write", json!({"org": "o", "bucket": "b"}), Some("m f=1i 1"), false);
        let r = GatewayRequest::from_event(ev).unwrap();
        assert_eq!(r.format, PayloadFormat::Rest);
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.path, "/api/v2/write");
        assert_eq!(r.query_param("bucket"), Some("b"));
        assert_eq!(r.query_param("org"), Some("o"));
        assert_eq!(&r.body[..], b"m f=1i 1");
        assert_eq!(r.header("x-original-authorization"), Some("Token t"));
        assert_eq!(r.request_id.as_deref(), Some("req-1"));
    }

    #[test]
    fn reads_http_api_events_strips_the_stage_and_decodes_base64() {
        let body = base64::engine::general_purpose::STANDARD.encode(b"\x1f\x8b binary");
        let ev = http_api_event("/live/api/v2/write", "org=o&bucket=a%20b&precision=s", &body, true);
        let r = GatewayRequest::from_event(ev).unwrap();
        assert_eq!(r.format, PayloadFormat::HttpApi);
        assert_eq!(r.path, "/api/v2/write");
        assert_eq!(r.query_param("bucket"), Some("a b"));
        assert_eq!(&r.body[..], b"\x1f\x8b binary");
        assert_eq!(r.query_string(), "org=o&bucket=a+b&precision=s");
    }

    #[test]
    fn invalid_base64_is_an_error_not_a_panic() {
        let ev = rest_event("POST", "/api/v2/write", json!({}), Some("***not base64***"), true);
        assert!(matches!(GatewayRequest::from_event(ev), Err(GatewayError::BadBase64(_))));
    }

    #[test]
    fn a_non_gateway_event_is_an_error() {
        assert!(matches!(
            GatewayRequest::from_event(json!({"Records": []})),
            Err(GatewayError::NotAGatewayEvent(_))
        ));
    }

    #[test]
    fn text_responses_stay_text_and_binary_ones_are_base64() {
        let r =
            GatewayResponse { status: 200, headers: HeaderMap::new(), body: Bytes::from_static(b"a,b\r\n") };
        let v = r.into_event(PayloadFormat::Rest);
        assert_eq!(v["statusCode"], 200);
        assert_eq!(v["body"], "a,b\r\n");
        assert_eq!(v["isBase64Encoded"], false);

        let mut h = HeaderMap::new();
        h.insert("content-encoding", HeaderValue::from_static("gzip"));
        let r = GatewayResponse { status: 200, headers: h, body: Bytes::from_static(b"\x1f\x8b\x08") };
        let v = r.into_event(PayloadFormat::HttpApi);
        assert_eq!(v["isBase64Encoded"], true);
        assert_eq!(v["body"], base64::engine::general_purpose::STANDARD.encode(b"\x1f\x8b\x08"));
    }

    #[test]
    fn the_event_is_the_one_aws_lambda_events_writes_for_every_kind_of_body() {
        let mut csv = HeaderMap::new();
        csv.insert("content-type", HeaderValue::from_static("text/csv; charset=utf-8"));
        csv.insert("x-influxdb-version", HeaderValue::from_static("v2.7.12"));
        let mut gzip = HeaderMap::new();
        gzip.insert("content-type", HeaderValue::from_static("text/csv"));
        gzip.insert("content-encoding", HeaderValue::from_static("gzip"));
        let bodies: [(&HeaderMap, Bytes); 5] = [
            (&csv, Bytes::from_static(b",result,table\r\n,_result,0\r\n\"q\" \xc3\xa9")),
            (&csv, Bytes::new()),
            (&csv, Bytes::from(vec![b'x'; 100_000])),
            (&csv, Bytes::from_static(b"\xff\xfe not UTF-8")),
            (&gzip, Bytes::from_static(b"\x1f\x8b\x08\x00")),
        ];
        for (headers, body) in bodies {
            for format in [PayloadFormat::Rest, PayloadFormat::HttpApi] {
                let r = GatewayResponse { status: 200, headers: headers.clone(), body: body.clone() };
                assert_eq!(r.clone().into_event(format), r.serialized_event(format), "{format:?} {body:?}");
            }
        }
        // A 204 without a body.
        let empty = GatewayResponse { status: 204, headers: HeaderMap::new(), body: Bytes::new() };
        assert_eq!(
            empty.clone().into_event(PayloadFormat::Rest),
            empty.serialized_event(PayloadFormat::Rest)
        );
    }

    #[test]
    fn no_content_has_no_body() {
        let v = GatewayResponse::no_content().into_event(PayloadFormat::Rest);
        assert_eq!(v["statusCode"], 204);
        assert!(v.get("body").is_none() || v["body"].is_null());
    }
}
