//! A write request as influxd would read it: route, meaning-bearing parameters, credential, body.
//!
//! The checks follow influxd 2.7.12's order and wording (`http/write_handler.go`,
//! `http/legacy/write_handler.go`): v2 — `precision` (400 `invalid precision; …`), `bucket`
//! (404 `bucket not found`), `org`/`orgID` (400 `Please provide either orgID or org`); v1 — `db`
//! (400 `missing db`), `precision` never refused. The body is decompressed when
//! `Content-Encoding` says gzip, and a body over the size limit is answered 413 with influxd's
//! message. One deliberate difference: influxd answers a body that claims gzip but is not with a
//! bare 500 `internal error`; we answer 400 and say what is wrong.

use std::io::Read;

use base64::Engine;
use flate2::read::MultiGzDecoder;
use shared::envelope::{Api, WriteParams};
use shared::gateway::GatewayRequest;
use shared::headers::influx_authorization;
use shared::influx_error::{ErrorCode, InfluxError};
use shared::line_protocol::{Precision, V1Precision};
use shared::sensitive::Sensitive;

/// influxd's message for an over-size write.
pub const TOO_LARGE: &str = "unable to read data: points batch is too large";

/// How timestamps of this request are read and stamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamping {
    V2(Precision),
    V1(V1Precision),
}

impl Stamping {
    /// The unit of the timestamps in the body.
    pub fn unit(self) -> Precision {
        match self {
            Stamping::V2(p) => p,
            Stamping::V1(p) => p.unit(),
        }
    }

    /// The timestamp influxd would give a line without one, received at `now_ns`.
    pub fn timestamp_for(self, now_ns: i64) -> i64 {
        match self {
            Stamping::V2(p) => p.timestamp_for(now_ns),
            Stamping::V1(p) => p.timestamp_for(now_ns),
        }
    }
}

/// A parsed write request.
#[derive(Debug, Clone)]
pub struct WriteRequest {
    pub api: Api,
    /// The parameters exactly as the client sent them (only those that change a write's meaning).
    pub params: WriteParams,
    pub precision: Stamping,
    pub authorization: Option<Sensitive>,
    pub content_type: Option<String>,
    pub request_id: String,
    /// The line protocol, decompressed.
    pub body: Vec<u8>,
}

fn non_empty(v: Option<&str>) -> Option<String> {
    v.filter(|s| !s.is_empty()).map(str::to_string)
}

impl WriteRequest {
    /// Reads a gateway request as a write; the error is what influxd would answer.
    pub fn parse(req: &GatewayRequest, max_body_bytes: usize) -> Result<WriteRequest, InfluxError> {
        let path = req.path.trim_end_matches('/');
        let api = match path {
            "/api/v2/write" => Api::V2,
            "/write" => Api::V1,
            _ => {
                return Err(InfluxError::new(
                    ErrorCode::NotFound,
                    format!(
                        "path {} is not a write endpoint: this gateway route takes POST /api/v2/write and POST /write; \
                         queries go to /api/v2/query and /query",
                        req.path
                    ),
                ));
            }
        };
        if req.method != http::Method::POST {
            return Err(InfluxError::new(
                ErrorCode::MethodNotAllowed,
                format!("method {} is not allowed on {}: writes are POST", req.method, api.path()),
            ));
        }
        let q = |name: &str| req.query_param(name);
        let (params, precision) = match api {
            Api::V2 => {
                let precision = Precision::from_v2(q("precision"))
                    .map_err(|e| InfluxError::new(ErrorCode::Invalid, e.to_string()))?;
                let bucket = non_empty(q("bucket"))
                    .ok_or_else(|| InfluxError::new(ErrorCode::NotFound, "bucket not found"))?;
                let org = non_empty(q("org"));
                let org_id = non_empty(q("orgID"));
                if org.is_none() && org_id.is_none() {
                    return Err(InfluxError::new(ErrorCode::Invalid, "Please provide either orgID or org"));
                }
                let params = WriteParams {
                    org,
                    org_id,
                    bucket: Some(bucket),
                    precision: non_empty(q("precision")),
                    ..Default::default()
                };
                (params, Stamping::V2(precision))
            }
            Api::V1 => {
                let db =
                    non_empty(q("db")).ok_or_else(|| InfluxError::new(ErrorCode::Invalid, "missing db"))?;
                let params = WriteParams {
                    db: Some(db),
                    rp: non_empty(q("rp")),
                    org: non_empty(q("org")),
                    precision: non_empty(q("precision")),
                    ..Default::default()
                };
                (params, Stamping::V1(V1Precision::parse(q("precision"))))
            }
        };
        let authorization = influx_authorization(&req.headers).or_else(|| v1_credentials(req));
        let body = decode_body(req, max_body_bytes)?;
        Ok(WriteRequest {
            api,
            params,
            precision,
            authorization,
            content_type: req.header("content-type").map(str::to_string),
            request_id: req.request_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            body,
        })
    }
}

/// v1 clients may send credentials as `?u=&p=`; influxd accepts the same pair as HTTP Basic, so
/// the replay carries them that way (and never in a URL).
fn v1_credentials(req: &GatewayRequest) -> Option<Sensitive> {
    let user = req.query_param("u")?;
    let password = req.query_param("p")?;
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    Some(Sensitive::new(format!("Basic {pair}")))
}

fn decode_body(req: &GatewayRequest, max: usize) -> Result<Vec<u8>, InfluxError> {
    let too_large = || InfluxError::new(ErrorCode::RequestTooLarge, TOO_LARGE);
    let encoding = req.header("content-encoding").unwrap_or("").trim().to_ascii_lowercase();
    let gzip_declared = encoding == "gzip" || encoding == "x-gzip";
    // API Gateway can decompress a request itself before the function sees it; a body that
    // claims gzip but does not start with the gzip magic is then already plain text.
    if gzip_declared && req.body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity((req.body.len() * 8).min(max));
        let mut reader = MultiGzDecoder::new(&req.body[..]).take(max as u64 + 1);
        reader.read_to_end(&mut out).map_err(|e| {
            InfluxError::new(
                ErrorCode::Invalid,
                format!("the request body is declared as gzip (Content-Encoding: {encoding}) but is not valid gzip: {e}"),
            )
        })?;
        if out.len() > max {
            return Err(too_large());
        }
        Ok(out)
    } else {
        if req.body.len() > max {
            return Err(too_large());
        }
        Ok(req.body.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, Method};
    use shared::gateway::PayloadFormat;
    use std::io::Write;

    fn req(
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> GatewayRequest {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        GatewayRequest {
            format: PayloadFormat::Rest,
            method,
            path: path.into(),
            query: query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            headers: h,
            body: Bytes::copy_from_slice(body),
            request_id: Some("r".into()),
        }
    }

    fn err(r: GatewayRequest) -> InfluxError {
        WriteRequest::parse(&r, 1024).unwrap_err()
    }

    #[test]
    fn v2_parameters_are_checked_in_influxd_order_with_its_messages() {
        let e = err(req(Method::POST, "/api/v2/write", &[("precision", "x")], &[], b""));
        assert_eq!(
            (e.status(), e.message.as_str()),
            (400, "invalid precision; valid precision units are ns, us, ms, and s")
        );
        let e = err(req(Method::POST, "/api/v2/write", &[("org", "o")], &[], b""));
        assert_eq!((e.status(), e.message.as_str()), (404, "bucket not found"));
        let e = err(req(Method::POST, "/api/v2/write", &[("bucket", "b")], &[], b""));
        assert_eq!((e.status(), e.message.as_str()), (400, "Please provide either orgID or org"));
    }

    #[test]
    fn v2_keeps_the_parameters_as_sent() {
        let r = WriteRequest::parse(
            &req(
                Method::POST,
                "/api/v2/write",
                &[("orgID", "0123456789abcdef"), ("bucket", "b"), ("precision", "ms")],
                &[],
                b"m f=1",
            ),
            1024,
        )
        .unwrap();
        assert_eq!(r.api, Api::V2);
        assert_eq!(r.params.org_id.as_deref(), Some("0123456789abcdef"));
        assert_eq!(r.params.precision.as_deref(), Some("ms"));
        assert_eq!(r.precision, Stamping::V2(Precision::Milliseconds));
    }

    #[test]
    fn v1_needs_db_and_takes_u_p_as_basic_credentials() {
        let e = err(req(Method::POST, "/write", &[], &[], b""));
        assert_eq!((e.status(), e.message.as_str()), (400, "missing db"));
        let r = WriteRequest::parse(
            &req(Method::POST, "/write", &[("db", "d"), ("rp", "r"), ("u", "me"), ("p", "tok")], &[], b""),
            10,
        )
        .unwrap();
        assert_eq!(r.params.db.as_deref(), Some("d"));
        assert_eq!(r.params.rp.as_deref(), Some("r"));
        let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("me:tok"));
        assert_eq!(r.authorization.unwrap().expose(), expected);
    }

    #[test]
    fn original_authorization_is_the_credential() {
        let r = WriteRequest::parse(
            &req(
                Method::POST,
                "/write",
                &[("db", "d")],
                &[("authorization", "AWS4-HMAC-SHA256 x"), ("x-original-authorization", "Token t")],
                b"",
            ),
            10,
        )
        .unwrap();
        assert_eq!(r.authorization.unwrap().expose(), "Token t");
    }

    #[test]
    fn wrong_path_and_method_get_influx_shaped_errors() {
        assert_eq!(err(req(Method::POST, "/api/v2/query", &[], &[], b"")).status(), 404);
        assert_eq!(
            err(req(Method::GET, "/api/v2/write", &[("org", "o"), ("bucket", "b")], &[], b"")).status(),
            405
        );
    }

    #[test]
    fn gzip_bodies_are_decompressed_and_bad_gzip_is_a_400() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"m f=1 1\n").unwrap();
        let gz = e.finish().unwrap();
        let q = [("org", "o"), ("bucket", "b")];
        let r = WriteRequest::parse(
            &req(Method::POST, "/api/v2/write", &q, &[("content-encoding", "gzip")], &gz),
            1024,
        )
        .unwrap();
        assert_eq!(r.body, b"m f=1 1\n");
        let mut broken = gz.clone();
        broken.truncate(12);
        let e = err(req(Method::POST, "/api/v2/write", &q, &[("content-encoding", "gzip")], &broken));
        assert_eq!(e.status(), 400);
        assert!(e.message.contains("not valid gzip"), "{}", e.message);
        // Already decompressed by the gateway: taken as plain text.
        let r = WriteRequest::parse(
            &req(Method::POST, "/api/v2/write", &q, &[("content-encoding", "gzip")], b"m f=1 1\n"),
            1024,
        )
        .unwrap();
        assert_eq!(r.body, b"m f=1 1\n");
    }

    #[test]
    fn over_size_bodies_get_413_also_after_decompression() {
        let q = [("org", "o"), ("bucket", "b")];
        let e = err(req(Method::POST, "/api/v2/write", &q, &[], &[b'x'; 2000]));
        assert_eq!((e.status(), e.message.as_str()), (413, TOO_LARGE));
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&[b'x'; 100_000]).unwrap();
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 1024);
        let e = err(req(Method::POST, "/api/v2/write", &q, &[("content-encoding", "gzip")], &bomb));
        assert_eq!(e.status(), 413);
    }
}
