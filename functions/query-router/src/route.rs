//! Which requests the read endpoint serves, and the InfluxDB-shaped refusal for everything else.
//!
//! The gateway sends reads here and writes to the Kinesis writer. What a dashboard, Grafana, the
//! `influx` CLI or a client library does to read is: a Flux query (`POST /api/v2/query`), an
//! InfluxQL query (`GET|POST /query`), and the read-only calls they make before querying (list
//! buckets, orgs and DBRP mappings, `/health`, `/ping`). Anything else gets what influxd's own
//! router answers for an unknown path or a wrong method — `404 {"code":"not found"}` or
//! `405 {"code":"method not allowed","message":"allow: …"}` with an `Allow` header (influxdb
//! `http/router.go`) — with a message that says where writes go, because a client that reaches
//! this function with a write has been pointed at the wrong route.
//!
//! Paths match exactly (influxd's paths are case-sensitive; its v1 paths `/query` and `/ping` are
//! matched exactly too, `http/platform_handler.go`).

use http::Method;

use shared::gateway::GatewayResponse;
use shared::influx_error::{ErrorCode, InfluxError};

/// A request this function forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /api/v2/query`: Flux, JSON body or `application/vnd.flux`.
    FluxQuery,
    /// `GET|POST /query`: InfluxQL through the 1.x compatibility API.
    InfluxQl,
    /// `GET /api/v2/buckets`
    Buckets,
    /// `GET /api/v2/orgs`
    Orgs,
    /// `GET /api/v2/dbrps`
    Dbrps,
    /// `GET /health`
    Health,
    /// `GET|HEAD /ping`
    Ping,
}

impl Route {
    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Route::FluxQuery => "flux",
            Route::InfluxQl => "influxql",
            Route::Buckets => "buckets",
            Route::Orgs => "orgs",
            Route::Dbrps => "dbrps",
            Route::Health => "health",
            Route::Ping => "ping",
        }
    }
}

/// Every path served, with its route and methods, in the order the 404 message lists them. The
/// deployed API (`infra/wiring.yaml`) routes exactly these to this function; a test holds the
/// two together.
pub const SERVED: &[(&str, Route, &[&str])] = &[
    ("/api/v2/query", Route::FluxQuery, &["POST"]),
    ("/query", Route::InfluxQl, &["GET", "POST"]),
    ("/api/v2/buckets", Route::Buckets, &["GET"]),
    ("/api/v2/orgs", Route::Orgs, &["GET"]),
    ("/api/v2/dbrps", Route::Dbrps, &["GET"]),
    ("/health", Route::Health, &["GET"]),
    ("/ping", Route::Ping, &["GET", "HEAD"]),
];

/// Where the same gateway takes writes (the Kinesis writer's routes).
const WRITES_GO_TO: &str = "writes go to /api/v2/write or /write on the same gateway";

/// Why a request is not forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The path is not one this function serves.
    NotFound,
    /// The path is served, but not with this method.
    MethodNotAllowed { allow: &'static [&'static str] },
}

/// The route of a request, or why there is none.
pub fn route(method: &Method, path: &str) -> Result<Route, Rejection> {
    let (_, route, methods) = SERVED.iter().find(|(p, _, _)| *p == path).ok_or(Rejection::NotFound)?;
    if methods.contains(&method.as_str()) {
        Ok(*route)
    } else {
        Err(Rejection::MethodNotAllowed { allow: methods })
    }
}

impl Rejection {
    /// The error influxd's router would give, with directions to the write routes.
    pub fn error(&self) -> InfluxError {
        match self {
            Rejection::NotFound => {
                let served: Vec<String> =
                    SERVED.iter().map(|(p, _, m)| format!("{} {p}", m.join("|"))).collect();
                InfluxError::new(
                    ErrorCode::NotFound,
                    format!(
                        "path not found: this endpoint only serves reads ({}); {WRITES_GO_TO}",
                        served.join(", ")
                    ),
                )
            }
            Rejection::MethodNotAllowed { allow } => InfluxError::new(
                ErrorCode::MethodNotAllowed,
                format!("allow: {}; this endpoint only serves reads: {WRITES_GO_TO}", allow.join(", ")),
            ),
        }
    }

    /// The response: the error body, and `Allow` on a 405 (RFC 9110 §15.5.6 requires it).
    pub fn response(&self) -> GatewayResponse {
        let response = GatewayResponse::error(&self.error());
        match self {
            Rejection::NotFound => response,
            Rejection::MethodNotAllowed { allow } => response.with_header("allow", &allow.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_read_route_is_served_with_its_methods() {
        let table = [
            ("POST", "/api/v2/query", Route::FluxQuery),
            ("GET", "/query", Route::InfluxQl),
            ("POST", "/query", Route::InfluxQl),
            ("GET", "/api/v2/buckets", Route::Buckets),
            ("GET", "/api/v2/orgs", Route::Orgs),
            ("GET", "/api/v2/dbrps", Route::Dbrps),
            ("GET", "/health", Route::Health),
            ("GET", "/ping", Route::Ping),
            ("HEAD", "/ping", Route::Ping),
        ];
        for (method, path, expected) in table {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(route(&m, path), Ok(expected), "{method} {path}");
        }
    }

    #[test]
    fn writes_and_unknown_paths_are_not_found_and_say_where_writes_go() {
        for path in ["/api/v2/write", "/write", "/api/v2/tasks", "/api/v2/buckets/0123456789abcdef", "/", ""]
        {
            assert_eq!(route(&Method::POST, path), Err(Rejection::NotFound), "{path}");
        }
        // Paths are case-sensitive in influxd.
        assert_eq!(route(&Method::POST, "/API/v2/query"), Err(Rejection::NotFound));
        let e = Rejection::NotFound.error();
        assert_eq!(e.status(), 404);
        assert_eq!(e.code.as_str(), "not found");
        assert!(e.message.starts_with("path not found: this endpoint only serves reads"), "{}", e.message);
        assert!(
            e.message.contains("writes go to /api/v2/write or /write on the same gateway"),
            "{}",
            e.message
        );
        assert!(e.message.contains("POST /api/v2/query"), "{}", e.message);
        assert!(e.message.contains("GET|HEAD /ping"), "{}", e.message);
    }

    #[test]
    fn a_known_path_with_a_wrong_method_is_405_with_allow() {
        let r = route(&Method::POST, "/api/v2/buckets").unwrap_err();
        assert_eq!(r, Rejection::MethodNotAllowed { allow: &["GET"] });
        let resp = r.response();
        assert_eq!(resp.status, 405);
        assert_eq!(resp.headers["allow"], "GET");
        assert_eq!(resp.headers["x-platform-error-code"], "method not allowed");
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(body["code"], "method not allowed");
        assert_eq!(
            body["message"],
            "allow: GET; this endpoint only serves reads: writes go to /api/v2/write or /write on the same gateway"
        );

        let r = route(&Method::DELETE, "/query").unwrap_err();
        assert_eq!(r.response().headers["allow"], "GET, POST");
        let r = route(&Method::GET, "/api/v2/query").unwrap_err();
        assert_eq!(r.response().headers["allow"], "POST");
        assert!(route(&Method::HEAD, "/health").is_err());
    }
}
