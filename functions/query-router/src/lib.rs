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
pub mod upstream;

use std::borrow::Cow;
use std::time::{Duration, Instant};

use serde_json::Value;
use shared::gateway::{GatewayError, GatewayRequest, GatewayResponse, PayloadFormat};
use shared::headers::influx_authorization;
use shared::influx_client::{ClientOptions, EndpointClients};
use shared::secret::{Role, SecretCache, SecretSource, SecretsManagerSource};

pub use crate::config::{Config, ConfigError};
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
    let request = match GatewayRequest::from_event(event) {
        Ok(r) => r,
        Err(e) => {
            // serde's message may quote parts of the event: log and answer only the kind.
            let why = match e {
                GatewayError::NotAGatewayEvent(_) => {
                    "the event is not an API Gateway REST or HTTP API proxy request".to_string()
                }
                GatewayError::BadBase64(_) => e.to_string(),
            };
            tracing::warn!(error = %why, "unreadable event");
            return response::bad_event(&why).into_event(format);
        }
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
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        request_id = request.request_id.as_deref().unwrap_or(""),
        "read request answered"
    );
    outcome.response.into_event(request.format)
}

/// The response and what the log line says about how it came about.
struct Outcome {
    response: GatewayResponse,
    route: Option<Route>,
    read: Option<Role>,
    upstream: Option<String>,
}

async fn answer<S: SecretSource>(
    deps: &Deps<S>,
    request: &GatewayRequest,
    time_left: Option<Duration>,
) -> Outcome {
    let request_id = request.request_id.as_deref();
    let route = match route::route(&request.method, &request.path) {
        Ok(r) => r,
        Err(rejection) => {
            return Outcome { response: rejection.response(), route: None, read: None, upstream: None };
        }
    };
    // Every path below sets the response; the placeholder costs nothing.
    let mut outcome =
        Outcome { response: GatewayResponse::no_content(), route: Some(route), read: None, upstream: None };

    let secret = match deps.secret.get().await {
        Ok(s) => s,
        Err(e) => {
            // SecretError names the secret and the failure, never its value.
            tracing::warn!(error = %e, "no endpoint secret has been read yet");
            outcome.response = response::endpoint_unknown(request_id);
            return outcome;
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
            return outcome;
        }
    };
    let timeout = time_left.map_or(deps.config.upstream_timeout, |t| t.min(deps.config.upstream_timeout));
    let outgoing = upstream::build(client, endpoint.base(), request, &query, authorization.as_ref(), timeout);

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
        Err(UpstreamError::TooLarge(size)) => {
            tracing::warn!(upstream = %host, size = ?size, limit = deps.limit.0, "answer too large for the gateway");
            response::too_large(size, deps.limit)
        }
        Err(e @ UpstreamError::Timeout { .. }) => {
            tracing::warn!(upstream = %host, error = %e, "database timed out");
            response::gateway_timeout(timeout, request_id)
        }
        Err(e @ UpstreamError::Failed { .. }) => {
            tracing::warn!(upstream = %host, error = %e, "database unreachable");
            response::bad_gateway(request_id)
        }
    };
    outcome
}
