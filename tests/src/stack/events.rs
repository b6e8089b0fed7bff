//! Real event JSON, shaped as AWS sends it: API Gateway proxy requests (REST payload 1.0 and
//! HTTP API payload 2.0) and Kinesis batches.

use base64::Engine;
use serde_json::{Map, Value, json};

/// An HTTP request to turn into a gateway event.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send the body base64-encoded (as API Gateway does for binary media types).
    pub base64: bool,
}

impl HttpRequest {
    pub fn post(path: &str) -> HttpRequest {
        HttpRequest { method: "POST".into(), path: path.into(), ..Default::default() }
    }

    pub fn get(path: &str) -> HttpRequest {
        HttpRequest { method: "GET".into(), path: path.into(), ..Default::default() }
    }

    pub fn query(mut self, k: &str, v: &str) -> Self {
        self.query.push((k.into(), v.into()));
        self
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }

    /// The client's InfluxDB token, where aws-sigv4-proxy `--duplicate-headers Authorization`
    /// puts it (the signature takes `Authorization`).
    pub fn token(self, token: &str) -> Self {
        self.header("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=0")
            .header("X-Original-Authorization", &format!("Token {token}"))
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn base64(mut self) -> Self {
        self.base64 = true;
        self
    }

    fn body_value(&self) -> Value {
        if self.body.is_empty() {
            Value::Null
        } else if self.base64 {
            Value::String(base64::engine::general_purpose::STANDARD.encode(&self.body))
        } else {
            Value::String(String::from_utf8_lossy(&self.body).into_owned())
        }
    }

    /// A REST API (payload format 1.0) proxy event, stage `prod`.
    pub fn rest_event(&self) -> Value {
        let mut headers = Map::new();
        let mut multi_headers = Map::new();
        for (k, v) in &self.headers {
            headers.insert(k.clone(), Value::String(v.clone()));
            if let Some(a) = multi_headers.entry(k.clone()).or_insert_with(|| json!([])).as_array_mut() {
                a.push(json!(v));
            }
        }
        let (single, multi) = query_maps(&self.query);
        json!({
            "resource": "/{proxy+}",
            "path": self.path,
            "httpMethod": self.method,
            "headers": headers,
            "multiValueHeaders": multi_headers,
            "queryStringParameters": single,
            "multiValueQueryStringParameters": multi,
            "pathParameters": {"proxy": self.path.trim_start_matches('/')},
            "stageVariables": null,
            "requestContext": {
                "accountId": "123456789012", "resourceId": "proxy", "stage": "prod",
                "requestId": uuid_like(), "extendedRequestId": uuid_like(),
                "identity": {"sourceIp": "127.0.0.1", "userAgent": "testbed"},
                "resourcePath": "/{proxy+}", "httpMethod": self.method, "apiId": "localapi",
                "path": format!("/prod{}", self.path), "protocol": "HTTP/1.1",
                "requestTimeEpoch": 0
            },
            "body": self.body_value(),
            "isBase64Encoded": self.base64
        })
    }

    /// An HTTP API (payload format 2.0) event, stage `$default`.
    pub fn http_api_event(&self) -> Value {
        let mut headers = Map::new();
        for (k, v) in &self.headers {
            let k = k.to_ascii_lowercase();
            match headers.get_mut(&k) {
                Some(Value::String(existing)) => {
                    existing.push(',');
                    existing.push_str(v);
                }
                _ => {
                    headers.insert(k, Value::String(v.clone()));
                }
            }
        }
        let raw_query = form_urlencoded_pairs(&self.query);
        let (single, _) = query_maps(&self.query);
        json!({
            "version": "2.0", "routeKey": "$default", "rawPath": self.path, "rawQueryString": raw_query,
            "headers": headers,
            "queryStringParameters": single,
            "requestContext": {
                "accountId": "123456789012", "apiId": "localapi", "domainName": "localhost", "domainPrefix": "localhost",
                "http": {"method": self.method, "path": self.path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "testbed"},
                "requestId": uuid_like(), "routeKey": "$default", "stage": "$default",
                "time": "25/Nov/2026:10:00:00 +0000", "timeEpoch": 0
            },
            "body": self.body_value(),
            "isBase64Encoded": self.base64
        })
    }
}

fn query_maps(query: &[(String, String)]) -> (Value, Value) {
    if query.is_empty() {
        return (Value::Null, Value::Null);
    }
    let mut single = Map::new();
    let mut multi = Map::new();
    for (k, v) in query {
        single.insert(k.clone(), Value::String(v.clone()));
        if let Some(a) = multi.entry(k.clone()).or_insert_with(|| json!([])).as_array_mut() {
            a.push(json!(v));
        }
    }
    (Value::Object(single), Value::Object(multi))
}

fn form_urlencoded_pairs(query: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in query {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&encode(k));
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn uuid_like() -> String {
    let n: u128 = rand::random();
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        n >> 96,
        (n >> 80) & 0xffff,
        (n >> 64) & 0xffff,
        (n >> 48) & 0xffff,
        n & 0xffff_ffff_ffff
    )
}

/// One Kinesis record as an event source mapping delivers it.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    /// Seconds since the epoch (Kinesis' ApproximateArrivalTimestamp).
    pub arrival: f64,
}

/// A Kinesis event (what the stream-writer receives) for `records` of `stream_arn`.
pub fn kinesis_event(stream_arn: &str, records: &[StreamRecord]) -> Value {
    let recs: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64::engine::general_purpose::STANDARD.encode(&r.data),
                    "approximateArrivalTimestamp": r.arrival
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{}:{}", r.shard_id, r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/stream-writer",
                "awsRegion": "us-east-1",
                "eventSourceARN": stream_arn
            })
        })
        .collect();
    json!({ "Records": recs })
}
