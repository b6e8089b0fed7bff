//! Header rewriting between the gateway and InfluxDB.
//!
//! Behind an IAM-authorised API Gateway, clients reach us through a SigV4 signing proxy
//! (`aws-sigv4-proxy --duplicate-headers Authorization`). The proxy's signature takes the
//! `Authorization` header, and the client's own `Authorization: Token …` travels as
//! `X-Original-Authorization`. Before anything is sent to InfluxDB the token goes back where
//! influxd expects it, and every header that only meant something between client, proxy and
//! gateway is dropped.

use http::{HeaderMap, HeaderName};

use crate::sensitive::Sensitive;

/// Where aws-sigv4-proxy puts the client's own `Authorization` header.
pub const ORIGINAL_AUTHORIZATION: &str = "x-original-authorization";

/// Headers that describe one hop, not the request (RFC 9110 §7.6.1), plus `host` and
/// `content-length`, which the next hop sets itself.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Prefixes of headers added by the signing proxy, API Gateway, CloudFront or load balancers.
const GATEWAY_PREFIXES: &[&str] = &["x-amz-", "x-amzn-", "x-forwarded-", "cloudfront-", "x-original-"];
const GATEWAY_HEADERS: &[&str] = &["forwarded", "via", "x-api-key", "x-real-ip"];

/// The InfluxDB credential of a request: `X-Original-Authorization` when present, otherwise an
/// `Authorization` header that is not a SigV4 signature. Header names are case-insensitive.
pub fn influx_authorization(headers: &HeaderMap) -> Option<Sensitive> {
    if let Some(v) = headers.get(ORIGINAL_AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if !v.is_empty() {
            return Some(Sensitive::new(v));
        }
    }
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    if v.is_empty() || is_sigv4(v) { None } else { Some(Sensitive::new(v)) }
}

/// Whether an `Authorization` value is an AWS signature rather than an InfluxDB credential.
pub fn is_sigv4(value: &str) -> bool {
    value.starts_with("AWS4-HMAC-SHA256") || value.starts_with("AWS4-ECDSA-P256-SHA256")
}

/// Whether a header must not be forwarded to InfluxDB.
pub fn is_gateway_only(name: &HeaderName) -> bool {
    let n = name.as_str();
    HOP_BY_HOP.contains(&n)
        || GATEWAY_HEADERS.contains(&n)
        || GATEWAY_PREFIXES.iter().any(|p| n.starts_with(p))
}

/// The headers to send to InfluxDB for an incoming request: every end-to-end header of the
/// client, without hop-by-hop and gateway-only ones (and without any header the `Connection`
/// header names), and `authorization` as `Authorization`: the client's credential
/// ([`influx_authorization`], restored from `X-Original-Authorization`), or what it maps to.
pub fn for_upstream(incoming: &HeaderMap, authorization: Option<&Sensitive>) -> HeaderMap {
    let named_by_connection: Vec<String> = incoming
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let mut out = HeaderMap::with_capacity(incoming.len());
    for (name, value) in incoming {
        if is_gateway_only(name)
            || name == http::header::AUTHORIZATION
            || named_by_connection.iter().any(|c| c == name.as_str())
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Some(v) = authorization.and_then(Sensitive::header_value) {
        out.insert(http::header::AUTHORIZATION, v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), http::HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn original_authorization_wins_over_the_signature_whatever_its_case() {
        let h = map(&[
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/execute-api/aws4_request"),
            ("X-ORIGINAL-AUTHORIZATION", "Token abc"),
        ]);
        assert_eq!(influx_authorization(&h).unwrap().expose(), "Token abc");
        let up = for_upstream(&h, influx_authorization(&h).as_ref());
        assert_eq!(up["authorization"], "Token abc");
        assert!(up.get("x-original-authorization").is_none());
    }

    #[test]
    fn plain_token_authorization_is_kept_and_a_lone_signature_is_dropped() {
        assert_eq!(influx_authorization(&map(&[("authorization", "Token t")])).unwrap().expose(), "Token t");
        let signed = map(&[("authorization", "AWS4-HMAC-SHA256 Credential=x")]);
        assert!(influx_authorization(&signed).is_none());
        assert!(for_upstream(&signed, influx_authorization(&signed).as_ref()).get("authorization").is_none());
    }

    #[test]
    fn hop_by_hop_and_gateway_headers_are_removed_and_the_rest_forwarded() {
        let h = map(&[
            ("Connection", "keep-alive, X-Custom-Hop"),
            ("X-Custom-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Host", "abc.execute-api.us-east-1.amazonaws.com"),
            ("Content-Length", "10"),
            ("X-Amz-Date", "20260101T000000Z"),
            ("X-Amz-Security-Token", "secret-session"),
            ("X-Amzn-Trace-Id", "Root=1"),
            ("X-Forwarded-For", "1.2.3.4"),
            ("Via", "1.1 cloudfront"),
            ("CloudFront-Viewer-Country", "DE"),
            ("Accept", "application/csv"),
            ("Accept-Encoding", "gzip"),
            ("Content-Type", "application/vnd.flux"),
            ("Prefer", "return-no-content"),
        ]);
        let up = for_upstream(&h, influx_authorization(&h).as_ref());
        let names: Vec<&str> = up.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["accept", "accept-encoding", "content-type", "prefer"]);
    }
}
