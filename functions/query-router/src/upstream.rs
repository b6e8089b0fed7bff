//! The request to the read database and the reading of its answer.
//!
//! The request is the client's, re-addressed: same method and path, the query string (after the
//! destination's renames), the client's end-to-end headers (`Accept`, `Accept-Encoding`,
//! `Content-Type`, `Prefer`, …) with hop-by-hop and gateway headers removed
//! (`shared::headers::for_upstream`), the client's credential (restored from
//! `X-Original-Authorization`, mapped when reading the destination), and the body as it came. Building it is pure ([`build`]); only [`send`] does I/O.
//!
//! Streamed (the default), the answer's body is relayed as it arrives (`stream`); buffered, it is
//! read whole (one response event), but never more of it than can be relayed: once the bytes seen
//! rule it out ([`ResponseLimit::rules_out`]) reading stops and the connection is dropped. The shared client does not decompress: a gzip answer is relayed
//! as influxd sent it.
//!
//! Errors never carry the URL: InfluxQL's `p` query parameter may hold a token, and reqwest
//! errors print their URL (`reqwest::Error::without_url`).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use shared::gateway::GatewayRequest;
use shared::headers::for_upstream;
use shared::influx_client::error_chain;
use shared::sensitive::Sensitive;

use crate::response::{Answer, ResponseLimit, Size};

/// Why no answer could be relayed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No complete answer within the time allowed.
    #[error("no complete answer within {:.1} s: {reason}", after.as_secs_f64())]
    Timeout { after: Duration, reason: String },
    /// Connection refused, reset, TLS failure, or the answer broke off.
    #[error("{reason}")]
    Failed { reason: String },
    /// The answer is larger than a gateway response can carry.
    #[error("the answer does not fit a gateway response")]
    TooLarge(Size),
}

/// The URL for `path` and `query` on the database at `base` (no trailing slash).
pub fn url(base: &str, path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return format!("{base}{path}");
    }
    let prefix = format!("{base}{path}?");
    let start = prefix.len();
    let mut s = form_urlencoded::Serializer::for_suffix(prefix, start);
    for (k, v) in query {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The request to send: the client's request re-addressed to `base`, with `query` and
/// `authorization` (already mapped for the destination when it is the read endpoint).
pub fn build(
    client: &reqwest::Client,
    base: &str,
    request: &GatewayRequest,
    query: &[(String, String)],
    authorization: Option<&Sensitive>,
    timeout: Duration,
) -> reqwest::RequestBuilder {
    let headers = for_upstream(&request.headers, authorization);
    let mut builder = client
        .request(request.method.clone(), url(base, &request.path, query))
        .headers(headers)
        .timeout(timeout);
    if !request.body.is_empty() {
        builder = builder.body(request.body.clone());
    }
    builder
}

/// Sends the request and waits for the answer's status and headers (the body is read by the
/// caller: whole with [`send`], or streamed).
pub async fn open(
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<reqwest::Response, UpstreamError> {
    request.send().await.map_err(|e| transport(e, timeout))
}

/// Sends the request and reads the answer, stopping early when it cannot fit `limit`.
pub async fn send(
    request: reqwest::RequestBuilder,
    timeout: Duration,
    limit: ResponseLimit,
) -> Result<Answer, UpstreamError> {
    let mut response = open(request, timeout).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let encoded = headers.contains_key(http::header::CONTENT_ENCODING);
    let announced = response.content_length().and_then(|n| usize::try_from(n).ok());
    if let Some(n) = announced
        && limit.rules_out(n, encoded)
    {
        return Err(UpstreamError::TooLarge(Size::AtLeast { body: n }));
    }
    // Chunks are kept as they come and joined once at the end: one copy of the body, instead of
    // the repeated copies of a buffer that grows (chunked answers announce no length).
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    while let Some(chunk) = response.chunk().await.map_err(|e| transport(e, timeout))? {
        len += chunk.len();
        chunks.push(chunk);
        if limit.rules_out(len, encoded) {
            return Err(UpstreamError::TooLarge(Size::AtLeast { body: len }));
        }
    }
    let body = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => {
            let mut joined = BytesMut::with_capacity(len);
            for c in &chunks {
                joined.extend_from_slice(c);
            }
            joined.freeze()
        }
    };
    Ok(Answer { status, headers, body })
}

fn transport(e: reqwest::Error, timeout: Duration) -> UpstreamError {
    let e = e.without_url();
    let reason = error_chain(&e);
    if e.is_timeout() {
        UpstreamError::Timeout { after: timeout, reason }
    } else {
        UpstreamError::Failed { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shared::influx_client::{ClientOptions, http_client};

    fn request(headers: serde_json::Value, body: Option<&str>) -> GatewayRequest {
        GatewayRequest::from_event(json!({
            "resource": "/{proxy+}", "path": "/api/v2/query", "httpMethod": "POST",
            "headers": headers, "multiValueHeaders": {},
            "queryStringParameters": {"org": "o"}, "multiValueQueryStringParameters": {"org": ["o"]},
            "requestContext": {"accountId": "1", "stage": "prod", "requestId": "r", "httpMethod": "POST",
                "identity": {"sourceIp": "127.0.0.1"}, "resourcePath": "/{proxy+}", "apiId": "a", "path": "/prod/api/v2/query"},
            "body": body, "isBase64Encoded": false
        }))
        .unwrap()
    }

    #[test]
    fn urls_keep_the_query_and_encode_it() {
        assert_eq!(url("http://h:8086", "/ping", &[]), "http://h:8086/ping");
        let q = vec![
            ("q".to_string(), "SELECT \"v\" FROM m WHERE t='a b'&x".to_string()),
            ("db".into(), "d".into()),
        ];
        assert_eq!(
            url("https://h/prefix", "/query", &q),
            "https://h/prefix/query?q=SELECT+%22v%22+FROM+m+WHERE+t%3D%27a+b%27%26x&db=d"
        );
    }

    #[test]
    fn the_request_carries_the_clients_headers_and_body_and_the_given_credential() {
        let client = http_client(&ClientOptions::default()).unwrap();
        let r = request(
            json!({
                "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/execute-api/aws4_request",
                "X-Original-Authorization": "Token source-token",
                "Accept": "application/csv", "Accept-Encoding": "gzip", "Content-Type": "application/vnd.flux",
                "Prefer": "return-no-content", "Host": "abc.execute-api.us-east-1.amazonaws.com",
                "X-Amz-Date": "20260101T000000Z", "X-Forwarded-For": "1.2.3.4", "Via": "1.1 x.cloudfront.net",
                "X-Amzn-Trace-Id": "Root=1-2-3"
            }),
            Some("from(bucket: \"b\") |> range(start: -1h)"),
        );
        let mapped = Sensitive::new("Token destination-token");
        let q = vec![("org".to_string(), "o".to_string())];
        let built = build(&client, "http://127.0.0.1:8086", &r, &q, Some(&mapped), Duration::from_secs(3))
            .build()
            .unwrap();
        assert_eq!(built.method(), http::Method::POST);
        assert_eq!(built.url().as_str(), "http://127.0.0.1:8086/api/v2/query?org=o");
        assert_eq!(built.timeout(), Some(&Duration::from_secs(3)));
        let h = built.headers();
        assert_eq!(h["authorization"], "Token destination-token");
        assert!(h["authorization"].is_sensitive());
        assert_eq!(h["accept"], "application/csv");
        assert_eq!(h["accept-encoding"], "gzip");
        assert_eq!(h["content-type"], "application/vnd.flux");
        assert_eq!(h["prefer"], "return-no-content");
        for gone in
            ["host", "x-amz-date", "x-forwarded-for", "via", "x-amzn-trace-id", "x-original-authorization"]
        {
            assert!(h.get(gone).is_none(), "{gone} was forwarded");
        }
        let body = built.body().and_then(|b| b.as_bytes()).unwrap();
        assert_eq!(body, b"from(bucket: \"b\") |> range(start: -1h)");
    }

    #[test]
    fn no_credential_means_no_authorization_header_and_no_body_means_none_sent() {
        let client = http_client(&ClientOptions::default()).unwrap();
        let r = request(json!({"Authorization": "AWS4-HMAC-SHA256 Credential=x"}), None);
        let built = build(&client, "http://h", &r, &[], None, Duration::from_secs(1)).build().unwrap();
        assert!(built.headers().get("authorization").is_none());
        assert!(built.body().is_none());
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_failure_whose_message_has_no_url() {
        let client = http_client(&ClientOptions::default()).unwrap();
        let r = request(json!({}), None);
        let q = vec![("p".to_string(), "secret-token-in-url".to_string())];
        // Port 1 on loopback: nothing listens there.
        let rb = build(&client, "http://127.0.0.1:1", &r, &q, None, Duration::from_secs(5));
        match send(rb, Duration::from_secs(5), ResponseLimit::default()).await {
            Err(UpstreamError::Failed { reason }) => {
                assert!(!reason.contains("secret-token-in-url"), "{reason}");
                assert!(!reason.contains("127.0.0.1:1/"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
}
