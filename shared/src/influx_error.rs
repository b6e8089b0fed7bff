//! InfluxDB's error body and status codes, so that clients behind the gateway get the answers
//! they would get from influxd itself.
//!
//! influxd writes `{"code":"<code>","message":"<text>"}` with `Content-Type: application/json;
//! charset=utf-8` and `X-Platform-Error-Code: <code>` (influxdb `kit/transport/http/error_handler.go`);
//! the code decides the status (`kit/platform/errors/errors.go`).

use serde::{Deserialize, Serialize};

/// The error codes influxd uses, with their HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Internal,
    NotImplemented,
    NotFound,
    Conflict,
    Invalid,
    UnprocessableEntity,
    EmptyValue,
    Unavailable,
    Forbidden,
    TooManyRequests,
    Unauthorized,
    MethodNotAllowed,
    RequestTooLarge,
    /// Not an influxd code: the gateway could not reach the database in time (504).
    GatewayTimeout,
    /// Not an influxd code: the database's answer could not be relayed (502).
    BadGateway,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Internal => "internal error",
            ErrorCode::NotImplemented => "not implemented",
            ErrorCode::NotFound => "not found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Invalid => "invalid",
            ErrorCode::UnprocessableEntity => "unprocessable entity",
            ErrorCode::EmptyValue => "empty value",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooManyRequests => "too many requests",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::MethodNotAllowed => "method not allowed",
            ErrorCode::RequestTooLarge => "request too large",
            ErrorCode::GatewayTimeout => "gateway timeout",
            ErrorCode::BadGateway => "bad gateway",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::Internal => 500,
            ErrorCode::NotImplemented => 501,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict | ErrorCode::UnprocessableEntity => 422,
            ErrorCode::Invalid | ErrorCode::EmptyValue => 400,
            ErrorCode::Unavailable => 503,
            ErrorCode::Forbidden => 403,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Unauthorized => 401,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTooLarge => 413,
            ErrorCode::GatewayTimeout => 504,
            ErrorCode::BadGateway => 502,
        }
    }
}

/// An error as influxd would answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InfluxError {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Serialize, Deserialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
}

impl InfluxError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> InfluxError {
        InfluxError { code, message: message.into() }
    }

    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// The JSON body influxd would send.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Body { code: self.code.as_str(), message: &self.message })
            .unwrap_or_else(|_| String::from(r#"{"code":"internal error","message":"error"}"#))
    }

    /// The headers influxd sends with an error body.
    pub fn headers(&self) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h.insert("x-platform-error-code", http::HeaderValue::from_static(self.code.as_str()));
        h
    }
}

impl std::fmt::Display for InfluxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status(), self.code.as_str(), self.message)
    }
}

impl std::error::Error for InfluxError {}

/// The `message` of an influxd error body, or the body itself when it is not one.
pub fn message_of(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Owned {
        message: String,
    }
    match serde_json::from_slice::<Owned>(body) {
        Ok(b) => b.message,
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_influxd_shape() {
        let e = InfluxError::new(ErrorCode::Invalid, "unable to parse 'x': missing fields");
        assert_eq!(e.status(), 400);
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(v["code"], "invalid");
        assert_eq!(v["message"], "unable to parse 'x': missing fields");
        assert_eq!(e.headers()["x-platform-error-code"], "invalid");
    }

    #[test]
    fn statuses_follow_influxd() {
        assert_eq!(ErrorCode::RequestTooLarge.status(), 413);
        assert_eq!(ErrorCode::Conflict.status(), 422);
        assert_eq!(ErrorCode::NotFound.status(), 404);
        assert_eq!(ErrorCode::Unavailable.status(), 503);
    }

    #[test]
    fn message_of_reads_influx_bodies_and_plain_text() {
        assert_eq!(message_of(br#"{"code":"invalid","message":"bad"}"#), "bad");
        assert_eq!(message_of(b"plain failure\n"), "plain failure");
    }
}
