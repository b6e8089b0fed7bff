//! The answer the client gets: influxd's answer relayed, or an InfluxDB-shaped error.
//!
//! A relayed answer keeps influxd's status, body and the headers a client reads: `Content-Type`,
//! `Content-Encoding` (a gzip body is relayed compressed, base64 in the event), `Vary` (it goes
//! with `Content-Encoding`), `Retry-After`, `X-Platform-Error-Code` (part of influxd's error
//! shape) and every `X-Influxdb-*` (`X-Influxdb-Build`, `X-Influxdb-Version`, which the 1.x shell
//! and client libraries read). Hop-by-hop and length headers are the gateway's business.
//!
//! # The size limit
//!
//! API Gateway invokes the function synchronously, and a synchronous Lambda response is at most
//! 6 MB (<https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>; the service's
//! own error names 6,291,556 bytes, and 6 MiB = 6,291,456 is kept as the default). The limit
//! applies to the JSON response event: the body JSON-escaped when it is text, base64 (4/3) when it
//! is binary, plus the headers. A larger answer would reach the client as a bare 502 from API
//! Gateway, or — worse — be cut; instead the client gets 413 `request too large` naming the size
//! and the limit and saying how to ask for less. 413, not 5xx: retrying the same query fails the
//! same way.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use shared::gateway::GatewayResponse;
use shared::influx_error::{ErrorCode, InfluxError};

/// The default `MAX_RESPONSE_BYTES` of a buffered answer: Lambda's 6 MB synchronous response
/// payload.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// The default `MAX_RESPONSE_BYTES` of a streamed answer: Lambda's 200 MB response stream
/// (<https://docs.aws.amazon.com/lambda/latest/dg/configuration-response-streaming.html>), read
/// as 200,000,000 bytes so that neither reading of "MB" lets an answer past it.
pub const DEFAULT_MAX_STREAMED_BYTES: usize = 200_000_000;

/// What influxd answered, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Whether a response header is relayed to the client.
pub fn is_relayed(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(n, "content-type" | "content-encoding" | "vary" | "retry-after" | "x-platform-error-code")
        || n.starts_with("x-influxdb-")
}

/// The headers of influxd's answer that are relayed ([`is_relayed`]).
pub fn relayed_headers(headers: &HeaderMap) -> HeaderMap {
    let mut relayed = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if is_relayed(name) {
            relayed.append(name.clone(), value.clone());
        }
    }
    relayed
}

/// influxd's answer as the gateway response.
pub fn relay(answer: Answer) -> GatewayResponse {
    GatewayResponse { status: answer.status, headers: relayed_headers(&answer.headers), body: answer.body }
}

/// The largest response event the gateway can carry, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimit(pub usize);

impl Default for ResponseLimit {
    fn default() -> Self {
        ResponseLimit(DEFAULT_MAX_RESPONSE_BYTES)
    }
}

impl ResponseLimit {
    /// Whether a body of which `raw_len` bytes have been seen so far can no longer fit, whatever
    /// follows: a text body costs at least its length, a compressed one (always base64) 4/3 of it.
    /// Lets the router stop reading a huge answer early instead of buffering all of it.
    pub fn rules_out(&self, raw_len: usize, content_encoded: bool) -> bool {
        let least = if content_encoded { raw_len.div_ceil(3) * 4 } else { raw_len };
        least > self.0
    }

    /// The 413 for a response that does not fit, or `None` when it does.
    pub fn check(&self, response: &GatewayResponse) -> Option<GatewayResponse> {
        let size = payload_len(response);
        (size > self.0).then(|| too_large(Size::Exact { body: response.body.len(), payload: size }, *self))
    }
}

/// The size of the response event: `GatewayResponse::encoded_len` (base64 when binary, headers)
/// plus what JSON escaping adds to a text body (CSV ends lines in CRLF, JSON answers are full of
/// quotes: both grow when escaped).
pub fn payload_len(response: &GatewayResponse) -> usize {
    let escapes = if response.is_binary() { 0 } else { json_escape_growth(&response.body) };
    response.encoded_len() + escapes
}

/// Bytes JSON escaping adds to a UTF-8 text: one for `"`, `\` and the control characters with a
/// short escape (`\b \t \n \f \r`), five for the other control characters (`\u00XX`), as
/// serde_json writes them.
pub fn json_escape_growth(text: &[u8]) -> usize {
    text.iter().map(|&b| usize::from(ESCAPE_GROWTH[usize::from(b)])).sum()
}

/// What escaping adds to each byte (see [`json_escape_growth`]).
static ESCAPE_GROWTH: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = 5;
        i += 1;
    }
    t[0x08] = 1;
    t[0x09] = 1;
    t[0x0a] = 1;
    t[0x0c] = 1;
    t[0x0d] = 1;
    t[b'"' as usize] = 1;
    t[b'\\' as usize] = 1;
    t
};

/// How big an oversized answer was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Read whole: the body, and the response event it would have made.
    Exact { body: usize, payload: usize },
    /// Not read whole: the announced length, or the bytes read when they ruled it out.
    AtLeast { body: usize },
}

/// 413 `request too large`: the size, the limit, and how to ask for less.
pub fn too_large(size: Size, limit: ResponseLimit) -> GatewayResponse {
    let what = match size {
        Size::Exact { body, payload } => {
            format!("the answer to this query is {body} bytes ({payload} bytes as an API Gateway response)")
        }
        Size::AtLeast { body } => format!("the answer to this query is at least {body} bytes"),
    };
    let message = format!(
        "{what}, larger than the {} bytes a response through this gateway can carry; narrow the time \
         range, select fewer series or fields, or aggregate (e.g. aggregateWindow() in Flux, \
         GROUP BY time() in InfluxQL)",
        limit.0
    );
    GatewayResponse::error(&InfluxError::new(ErrorCode::RequestTooLarge, message))
}

/// 502: the database could not be reached or broke off its answer.
pub fn bad_gateway(request_id: Option<&str>) -> GatewayResponse {
    GatewayResponse::error(&InfluxError::new(
        ErrorCode::BadGateway,
        format!(
            "the database behind this gateway could not be reached or broke off its answer; try again{}",
            request_id_note(request_id)
        ),
    ))
}

/// 504: no complete answer within the time the gateway can wait.
pub fn gateway_timeout(after: Duration, request_id: Option<&str>) -> GatewayResponse {
    GatewayResponse::error(&InfluxError::new(
        ErrorCode::GatewayTimeout,
        format!(
            "the database behind this gateway did not answer within {:.1} s; narrow the time range or \
             try again{}",
            after.as_secs_f64(),
            request_id_note(request_id)
        ),
    ))
}

/// 503: the endpoint secret has never been read, so there is nowhere to send the query.
pub fn endpoint_unknown(request_id: Option<&str>) -> GatewayResponse {
    GatewayResponse::error(&InfluxError::new(
        ErrorCode::Unavailable,
        format!(
            "the gateway could not read which database answers reads; try again shortly{}",
            request_id_note(request_id)
        ),
    ))
    .with_header("retry-after", "1")
}

/// 400: the event could not be read as an API Gateway request.
pub fn bad_event(why: &str) -> GatewayResponse {
    GatewayResponse::error(&InfluxError::new(ErrorCode::Invalid, why.to_string()))
}

/// 500: the router itself failed (it could not build its HTTP client).
pub fn internal(request_id: Option<&str>) -> GatewayResponse {
    GatewayResponse::error(&InfluxError::new(
        ErrorCode::Internal,
        format!("the query router failed; see its log{}", request_id_note(request_id)),
    ))
}

fn request_id_note(request_id: Option<&str>) -> String {
    request_id.map(|id| format!(" (request {id})")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use shared::gateway::PayloadFormat;

    fn answer(headers: &[(&str, &str)], body: &'static [u8]) -> Answer {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        Answer { status: 200, headers: h, body: Bytes::from_static(body) }
    }

    #[test]
    fn relays_what_clients_read_and_drops_the_rest() {
        let a = answer(
            &[
                ("Content-Type", "text/csv; charset=utf-8"),
                ("Content-Encoding", "gzip"),
                ("Vary", "Accept-Encoding"),
                ("X-Influxdb-Build", "OSS"),
                ("X-Influxdb-Version", "v2.7.12"),
                ("X-Platform-Error-Code", "invalid"),
                ("Date", "Wed, 25 Nov 2026 10:00:00 GMT"),
                ("Transfer-Encoding", "chunked"),
                ("Content-Length", "3"),
                ("Connection", "keep-alive"),
                ("Trace-Id", "abc"),
            ],
            b"\x1f\x8b\x08",
        );
        let r = relay(a);
        let names: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "content-type",
                "content-encoding",
                "vary",
                "x-influxdb-build",
                "x-influxdb-version",
                "x-platform-error-code"
            ]
        );
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"\x1f\x8b\x08");
    }

    #[test]
    fn escape_growth_matches_serde_json() {
        let samples: [&[u8]; 5] = [
            b",result,table,_time\r\n,,0,2026-01-01T00:00:00Z\r\n",
            br#"{"results":[{"statement_id":0,"series":[{"name":"m","columns":["time","v"]}]}]}"#,
            b"tab\tback\\slash\x01\x1f\x7f form\x0c bell\x08 plain",
            "unicode é ü 中文 \u{2028}".as_bytes(),
            b"",
        ];
        for s in samples {
            let text = std::str::from_utf8(s).unwrap();
            let json = serde_json::to_string(text).unwrap();
            assert_eq!(json.len() - 2, s.len() + json_escape_growth(s), "{text:?}");
        }
    }

    #[test]
    fn escape_growth_sees_every_byte_value_at_every_position_of_a_word() {
        for b in 0..=255u8 {
            for at in 0..17 {
                let mut text = vec![b'a'; 17];
                text[at] = b;
                assert_eq!(
                    json_escape_growth(&text),
                    usize::from(ESCAPE_GROWTH[usize::from(b)]),
                    "byte {b:#04x} at {at}"
                );
            }
        }
        // Several specials in one word, and high bytes next to them.
        assert_eq!(json_escape_growth(b"\"\r\n\x01\xc3\xa9\\\x7f"), 1 + 1 + 1 + 5 + 1);
    }

    #[test]
    fn payload_len_is_never_below_the_serialized_event() {
        // Text with many escapes, and binary; the estimate must cover what Lambda receives.
        let text = GatewayResponse {
            status: 200,
            headers: relay(answer(&[("Content-Type", "application/json")], b"")).headers,
            body: Bytes::from("\"q\",\r\n".repeat(1000)),
        };
        let bin = relay(answer(&[("Content-Encoding", "gzip")], b""));
        let bin = GatewayResponse { body: Bytes::from(vec![0x8bu8; 3001]), ..bin };
        for r in [text, bin] {
            for format in [PayloadFormat::Rest, PayloadFormat::HttpApi] {
                let estimate = payload_len(&r);
                let actual = serde_json::to_vec(&r.clone().into_event(format)).unwrap().len();
                assert!(estimate >= actual, "estimate {estimate} < actual {actual}");
                assert!(estimate - actual < 300, "estimate {estimate} far above actual {actual}");
            }
        }
    }

    #[test]
    fn the_limit_admits_what_fits_and_answers_413_for_the_rest() {
        let body = Bytes::from("a,b\r\n".repeat(200)); // 1000 bytes, 200 CRLF escapes -> 1400 in JSON
        let r = GatewayResponse { status: 200, headers: HeaderMap::new(), body };
        let size = payload_len(&r);
        assert!(ResponseLimit(size).check(&r).is_none());
        let refused = ResponseLimit(size - 1).check(&r).expect("one byte over the limit");
        assert_eq!(refused.status, 413);
        assert_eq!(refused.headers["x-platform-error-code"], "request too large");
        let body: serde_json::Value = serde_json::from_slice(&refused.body).unwrap();
        assert_eq!(body["code"], "request too large");
        let msg = body["message"].as_str().unwrap();
        assert!(msg.contains(&format!("is 1000 bytes ({size} bytes as an API Gateway response)")), "{msg}");
        assert!(msg.contains(&format!("larger than the {} bytes", size - 1)), "{msg}");
        assert!(msg.contains("narrow the time range"), "{msg}");
        assert!(msg.contains("aggregateWindow()"), "{msg}");
    }

    #[test]
    fn reading_stops_once_the_body_alone_rules_the_answer_out() {
        let limit = ResponseLimit(4000);
        assert!(!limit.rules_out(4000, false));
        assert!(limit.rules_out(4001, false));
        assert!(!limit.rules_out(3000, true)); // 3000 bytes base64 = 4000
        assert!(limit.rules_out(3001, true));
        let msg = too_large(Size::AtLeast { body: 4001 }, limit);
        let body: serde_json::Value = serde_json::from_slice(&msg.body).unwrap();
        assert!(
            body["message"].as_str().unwrap().starts_with("the answer to this query is at least 4001 bytes")
        );
    }

    #[test]
    fn errors_are_influxdb_shaped() {
        let cases = [
            (bad_gateway(Some("r1")), 502, "bad gateway"),
            (gateway_timeout(Duration::from_secs(25), None), 504, "gateway timeout"),
            (endpoint_unknown(None), 503, "unavailable"),
            (bad_event("not an API Gateway event"), 400, "invalid"),
            (internal(None), 500, "internal error"),
        ];
        for (r, status, code) in cases {
            assert_eq!(r.status, status);
            assert_eq!(r.headers["content-type"], "application/json; charset=utf-8");
            assert_eq!(r.headers["x-platform-error-code"], code);
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["code"], code);
            assert!(!body["message"].as_str().unwrap().is_empty());
        }
        let body: serde_json::Value = serde_json::from_slice(&bad_gateway(Some("r1")).body).unwrap();
        assert!(body["message"].as_str().unwrap().ends_with("(request r1)"));
    }
}
