//! The query router: API Gateway read requests to the database the endpoint secret names for
//! reads.
//!
//! Dashboards, Grafana, scripts and applications keep querying through the gateway for the whole
//! migration and must get exactly what InfluxDB would have answered. A request's journey, which
//! [`handle`] follows top to bottom:
//!
//! 1. the API Gateway event (REST or HTTP API) becomes a `shared::gateway::GatewayRequest`;
//! 2. [`route`] decides whether it is a read this function serves (Flux, InfluxQL, and the
//!    read-only calls tools make first); anything else gets influxd's 404/405 shape with
//!    directions to the write routes, without touching the secret or the database;
//! 3. the endpoint secret (cached, last good value on a failed refresh: `shared::secret`) names
//!    the read endpoint; when it is the destination, [`mapping`] maps the token and renames
//!    `org`/`orgID` (and InfluxQL's `db`/`rp`);
//! 4. [`upstream`] sends the client's request there — token restored from
//!    `X-Original-Authorization`, hop-by-hop and gateway headers removed — and reads the answer,
//!    no more of it than can be relayed;
//! 5. [`response`] relays status, the headers clients read and the body (base64 when not UTF-8
//!    text, e.g. gzip), or answers an InfluxDB-shaped 413 (too large for the gateway: narrow the
//!    time range), 502 (database unreachable), 504 (no answer in time) or 503 (the secret was
//!    never readable).
//!
//! Each request is logged once (method, path, status, upstream host, duration); tokens and
//! query text never are.

pub mod config;
pub mod mapping;
pub mod response;
pub mod route;
pub mod stream;
pub mod upstream;

use std::borrow::Cow;
use std::time::{Duration, Instant};

use serde_json::Value;
use shared::gateway::{GatewayError, GatewayRequest, GatewayResponse, PayloadFormat};
use shared::headers::influx_authorization;
use shared::influx_client::{ClientOptions, EndpointClients};
use shared::secret::{Role, SecretCache, SecretSource, SecretsManagerSource};

pub use crate::config::{Config, ConfigError, TransferMode};
use crate::response::ResponseLimit;
use crate::route::Route;
use crate::upstream::UpstreamError;

/// The longest wait for a TCP/TLS connection to the database (within the upstream timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything built once per cold start: the settings, the secret cache and the HTTP clients.
/// Building it makes no network call.
#[derive(Debug)]
pub struct Deps<S = SecretsManagerSource> {
    config: Config,
    secret: SecretCache<S>,
    limit: ResponseLimit,
    clients: EndpointClients,
}

impl Deps<SecretsManagerSource> {
    /// The production dependencies: the secret from Secrets Manager through `secrets`.
    pub fn new(
        config: Config,
        secrets: aws_sdk_secretsmanager::Client,
    ) -> Result<Self, shared::influx_client::ClientError> {
        let source = SecretsManagerSource::new(secrets, config.secret_id.clone());
        Deps::with_source(config, source)
    }
}

impl<S: SecretSource> Deps<S> {
    /// The dependencies with the secret read from `source`.
    pub fn with_source(config: Config, source: S) -> Result<Self, shared::influx_client::ClientError> {
        let clients = EndpointClients::new(ClientOptions {
            timeout: config.upstream_timeout,
            connect_timeout: CONNECT_TIMEOUT.min(config.upstream_timeout),
            skip_verify: false,
        })?;
        Ok(Deps {
            secret: SecretCache::new(source, config.secret_ttl),
            limit: ResponseLimit(config.max_response_bytes),
            clients,
            config,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The client for an endpoint; TLS verification stays on unless the secret turns it off.
    fn client(&self, skip_verify: bool) -> Result<&reqwest::Client, &str> {
        self.clients.get(skip_verify)
    }
}

/// Answers one API Gateway event (REST or HTTP API) with the response event in the same format.
pub async fn handle<S: SecretSource>(deps: &Deps<S>, event: Value) -> Value {
    handle_within(deps, event, None).await
}

/// As [`handle`], with the time left before the invocation's deadline: the database gets at most
/// that long (and never more than `UPSTREAM_TIMEOUT_SECONDS`), so the client hears a 504 from us
/// rather than nothing from a killed invocation.
pub async fn handle_within<S: SecretSource>(
    deps: &Deps<S>,
    event: Value,
    time_left: Option<Duration>,
) -> Value {
    let started = Instant::now();
    let format = if event.get("version").and_then(Value::as_str) == Some("2.0") {
        PayloadFormat::HttpApi
    } else {
        PayloadFormat::Rest
    };
    let request = match read_event(event) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_event(format),
    };
    let outcome = answer(deps, &request, time_left).await;
    tracing::info!(
        method = %request.method,
        path = %request.path,
        route = outcome.route.map(Route::name).unwrap_or("none"),
        status = outcome.response.status,
        upstream = outcome.upstream.as_deref().unwrap_or("none"),
        read = outcome.read.map(Role::as_str).unwrap_or("none"),
        response_bytes = outcome.response.body.len(),
        transfer = "BUFFERED",
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        request_id = request.request_id.as_deref().unwrap_or(""),
        "read request answered"
    );
    outcome.response.into_event(request.format)
}

/// The request in an API Gateway event, or the 400 for an event that is not one.
fn read_event(event: Value) -> Result<GatewayRequest, Box<GatewayResponse>> {
    GatewayRequest::from_event(event).map_err(|e| {
        // serde's message may quote parts of the event: log and answer only the kind.
        let why = match e {
            GatewayError::NotAGatewayEvent(_) => {
                "the event is not an API Gateway REST or HTTP API proxy request".to_string()
            }
            GatewayError::BadBase64(_) => e.to_string(),
        };
        tracing::warn!(error = %why, "unreadable event");
        Box::new(response::bad_event(&why))
    })
}

/// The response and what the log line says about how it came about.
struct Outcome {
    response: GatewayResponse,
    route: Option<Route>,
    read: Option<Role>,
    upstream: Option<String>,
}

/// A request ready to go to the read database.
struct Prepared {
    outgoing: reqwest::RequestBuilder,
    timeout: Duration,
    host: String,
    route: Route,
}

/// Steps 2–4 up to the request to the database: the route, the secret, the mapping. `Err` is the
/// answer when the request goes no further (refused, or nowhere to send it).
async fn prepare<S: SecretSource>(
    deps: &Deps<S>,
    request: &GatewayRequest,
    time_left: Option<Duration>,
    outcome: &mut Outcome,
) -> Option<Prepared> {
    let request_id = request.request_id.as_deref();
    let route = match route::route(&request.method, &request.path) {
        Ok(r) => r,
        Err(rejection) => {
            outcome.response = rejection.response();
            return None;
        }
    };
    outcome.route = Some(route);

    let secret = match deps.secret.get().await {
        Ok(s) => s,
        Err(e) => {
            // SecretError names the secret and the failure, never its value.
            tracing::warn!(error = %e, "no endpoint secret has been read yet");
            outcome.response = response::endpoint_unknown(request_id);
            return None;
        }
    };
    let endpoint = secret.read_endpoint();
    let host = endpoint.host();
    outcome.read = Some(secret.read);
    outcome.upstream = Some(host.clone());

    let authorization = influx_authorization(&request.headers);
    let (query, authorization) = match secret.read {
        Role::Source => (Cow::Borrowed(&request.query), authorization),
        Role::Destination => (
            Cow::Owned(mapping::query_for_destination(route, &request.query, &secret.mappings)),
            authorization.map(|a| secret.mappings.map_token(&a)),
        ),
    };
    let client = match deps.client(endpoint.skip_verify) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(upstream = %host, error = %e, "building the HTTP client failed");
            outcome.response = response::internal(request_id);
            return None;
        }
    };
    let timeout = time_left.map_or(deps.config.upstream_timeout, |t| t.min(deps.config.upstream_timeout));
    let outgoing = upstream::build(client, endpoint.base(), request, &query, authorization.as_ref(), timeout);
    Some(Prepared { outgoing, timeout, host, route })
}

/// The answer read whole (buffered mode).
async fn answer<S: SecretSource>(
    deps: &Deps<S>,
    request: &GatewayRequest,
    time_left: Option<Duration>,
) -> Outcome {
    let request_id = request.request_id.as_deref();
    // Every path below sets the response; the placeholder costs nothing.
    let mut outcome =
        Outcome { response: GatewayResponse::no_content(), route: None, read: None, upstream: None };
    let Some(Prepared { outgoing, timeout, host, .. }) =
        prepare(deps, request, time_left, &mut outcome).await
    else {
        return outcome;
    };
    outcome.response = match upstream::send(outgoing, timeout, deps.limit).await {
        Ok(answer) => {
            let relayed = response::relay(answer);
            match deps.limit.check(&relayed) {
                Some(too_large) => {
                    tracing::warn!(upstream = %host, body_bytes = relayed.body.len(), limit = deps.limit.0, "answer too large for the gateway");
                    too_large
                }
                None => relayed,
            }
        }
        Err(e) => failed(e, &host, timeout, deps.limit, request_id),
    };
    outcome
}

/// The InfluxDB-shaped answer when no answer from the database can be relayed.
fn failed(
    e: UpstreamError,
    host: &str,
    timeout: Duration,
    limit: ResponseLimit,
    request_id: Option<&str>,
) -> GatewayResponse {
    match e {
        UpstreamError::TooLarge(size) => {
            tracing::warn!(upstream = %host, size = ?size, limit = limit.0, "answer too large for the gateway");
            response::too_large(size, limit)
        }
        e @ UpstreamError::Timeout { .. } => {
            tracing::warn!(upstream = %host, error = %e, "database timed out");
            response::gateway_timeout(timeout, request_id)
        }
        e @ UpstreamError::Failed { .. } => {
            tracing::warn!(upstream = %host, error = %e, "database unreachable");
            response::bad_gateway(request_id)
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Streamed answers (`RESPONSE_TRANSFER_MODE=STREAM`)

/// A streamed answer as the Lambda runtime sends it: the prelude (status and headers), then the
/// body as influxd sends it.
pub type Streamed = lambda_runtime::StreamResponse<stream::Body>;

/// As [`handle_within`], streaming the answer: status and headers as soon as influxd's arrive,
/// then the body chunk by chunk (see [`stream`]). Errors before the first byte are the same
/// InfluxDB-shaped answers as buffered; the request is logged once its answer has ended.
pub async fn handle_streaming<S: SecretSource>(
    deps: &Deps<S>,
    event: Value,
    time_left: Option<Duration>,
) -> Streamed {
    let started = Instant::now();
    let request = match read_event(event) {
        Ok(r) => r,
        Err(refusal) => return whole(*refusal),
    };
    let request_id = request.request_id.as_deref();
    let mut outcome =
        Outcome { response: GatewayResponse::no_content(), route: None, read: None, upstream: None };
    let log = LogLine::new(&request, started);
    let Some(Prepared { outgoing, timeout, host, route }) =
        prepare(deps, &request, time_left, &mut outcome).await
    else {
        log.write(&outcome, outcome.response.status, outcome.response.body.len(), "whole");
        return whole(outcome.response);
    };
    let read_started = tokio::time::Instant::now();
    let opened = match upstream::open(outgoing, timeout).await {
        Ok(r) => r,
        Err(e) => {
            outcome.response = failed(e, &host, timeout, deps.limit, request_id);
            log.write(&outcome, outcome.response.status, outcome.response.body.len(), "whole");
            return whole(outcome.response);
        }
    };
    let max_bytes = deps.limit.0;
    if let Some(n) = opened.content_length().and_then(|n| usize::try_from(n).ok())
        && n > max_bytes
    {
        outcome.response = failed(
            UpstreamError::TooLarge(response::Size::AtLeast { body: n }),
            &host,
            timeout,
            deps.limit,
            request_id,
        );
        log.write(&outcome, outcome.response.status, outcome.response.body.len(), "whole");
        return whole(outcome.response);
    }
    let status = opened.status().as_u16();
    let headers = response::relayed_headers(opened.headers());
    let shape = stream::Shape::of(route, &headers);
    let limits = stream::Limits { deadline: read_started + timeout, after: timeout, max_bytes };
    let body = stream::relay_body(opened, stream::Relay::new(shape), limits, move |relay, end| {
        let ended = match &end {
            stream::End::Complete => "complete",
            stream::End::Broke(why) => {
                // The reason (the upstream's error) goes to the log only; the client reads the
                // message in the body.
                if let stream::Break::Upstream { reason } = why {
                    tracing::warn!(upstream = %host, error = %reason, relayed_bytes = relay.relayed(), "the database broke off its answer");
                } else {
                    tracing::warn!(upstream = %host, ended = why.kind(), relayed_bytes = relay.relayed(), "the answer was ended early");
                }
                why.kind()
            }
            stream::End::Abandoned => "abandoned by the client",
        };
        log.write(&outcome, status, relay.relayed(), ended);
    });
    lambda_runtime::StreamResponse { metadata_prelude: prelude(status, headers), stream: body }
}

/// A whole response sent as a stream (the errors answered before any byte of influxd's).
fn whole(response: GatewayResponse) -> Streamed {
    lambda_runtime::StreamResponse {
        metadata_prelude: prelude(response.status, response.headers),
        stream: stream::whole(response.body),
    }
}

/// The prelude of a streamed response. API Gateway reads `headers` as one value per name, so a
/// header influxd sent twice is joined, as HTTP allows.
fn prelude(status: u16, headers: http::HeaderMap) -> lambda_runtime::MetadataPrelude {
    let mut single = http::HeaderMap::with_capacity(headers.len());
    for name in headers.keys() {
        let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        if let Ok(v) = http::HeaderValue::from_str(&values.join(", ")) {
            single.insert(name.clone(), v);
        }
    }
    lambda_runtime::MetadataPrelude {
        status_code: http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY),
        headers: single,
        cookies: Vec::new(),
    }
}

/// The one log line of a streamed request, written when its answer has ended.
struct LogLine {
    method: String,
    path: String,
    request_id: String,
    started: Instant,
}

impl LogLine {
    fn new(request: &GatewayRequest, started: Instant) -> LogLine {
        LogLine {
            method: request.method.to_string(),
            path: request.path.clone(),
            request_id: request.request_id.clone().unwrap_or_default(),
            started,
        }
    }

    fn write(&self, outcome: &Outcome, status: u16, bytes: usize, ended: &str) {
        tracing::info!(
            method = %self.method,
            path = %self.path,
            route = outcome.route.map(Route::name).unwrap_or("none"),
            status,
            upstream = outcome.upstream.as_deref().unwrap_or("none"),
            read = outcome.read.map(Role::as_str).unwrap_or("none"),
            response_bytes = bytes,
            transfer = "STREAM",
            ended,
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            request_id = %self.request_id,
            "read request answered"
        );
    }
}
