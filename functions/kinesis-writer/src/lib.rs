//! The kinesis-writer: a client's write, as API Gateway hands it over, into the Kinesis stream.
//!
//! A request's journey ([`handle`]):
//! 1. [`request::WriteRequest::parse`] — the route (`POST /api/v2/write` or v1 `POST /write`), the
//!    parameters that change a write's meaning, validated as influxd validates them, the client's
//!    credential, and the body (base64 and gzip undone, size-limited).
//! 2. `shared::line_protocol::validate` — every line checked as influxd 2.7 would; a bad line is
//!    answered 400 with influxd's message naming it, and nothing is queued.
//! 3. [`admission::Admission::check`] — an empty write to the source with the same parameters and
//!    credential (cached): a wrong token, org or bucket is answered now, exactly as influxd answers
//!    it, instead of entering the stream where it could only be retried forever.
//!    The admitted write's canonical target (org and bucket, IDs and names, as influxd resolves
//!    them; [`target`]) is asked the same way and carried in the record for the mappings.
//! 4. [`records::prepare`] — lines without a timestamp get the receive time in the request's
//!    precision, and the lines are cut into compressed records within Kinesis' 1 MiB limit.
//! 5. [`sink::KinesisSink::put_all`] — the records in order (`PutRecord` with
//!    `SequenceNumberForOrdering`), throttling retried with backoff inside the gateway's time
//!    limit. Only when every record is accepted does the client get 204; when the time runs out,
//!    503 with `Retry-After`.

pub mod admission;
pub mod config;
pub mod records;
pub mod request;
pub mod sink;
pub mod target;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use shared::gateway::{GatewayError, GatewayRequest, GatewayResponse, PayloadFormat};
use shared::influx_error::{ErrorCode, InfluxError};
use shared::line_protocol::{self, BodyError, Line, RejectKind};

pub use admission::{Admission, Verdict};
pub use config::{Config, ConfigError};
pub use request::WriteRequest;
pub use sink::{KinesisSink, PutError};

/// Everything a request needs, built once per cold start.
pub struct Deps {
    pub config: Config,
    pub sink: KinesisSink,
    pub admission: Option<Admission>,
}

impl Deps {
    /// Builds the clients; makes no network call.
    pub fn new(
        config: Config,
        aws: &aws_config::SdkConfig,
    ) -> Result<Deps, shared::influx_client::ClientError> {
        let sink = KinesisSink::new(aws_sdk_kinesis::Client::new(aws), config.stream_name.clone());
        let admission = match &config.secret_id {
            Some(id) => Some(Admission::new(
                shared::secret::SecretCache::new(
                    shared::secret::SecretsManagerSource::new(
                        aws_sdk_secretsmanager::Client::new(aws),
                        id.clone(),
                    ),
                    config.secret_ttl,
                ),
                config.admission_ttl,
            )?),
            None => None,
        };
        Ok(Deps { config, sink, admission })
    }
}

/// When this invocation must have answered: the Lambda deadline less a margin, and never later
/// than the put budget (API Gateway gives up after 29 s). A deadline that is not in the future
/// (local emulators such as cargo lambda 1.9 send a duration, not a time) means "unknown": the
/// put budget alone applies.
pub fn deadline_of(ctx: &lambda_runtime::Context, budget: Duration) -> Instant {
    match shared::deadline::time_left(ctx.deadline) {
        Some(left) => Instant::now() + left.saturating_sub(Duration::from_millis(500)).min(budget),
        None => Instant::now() + budget,
    }
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// Handles one API Gateway event and returns the response event.
pub async fn handle(deps: &Deps, event: Value, deadline: Instant) -> Value {
    let started = Instant::now();
    let received_at_ns = now_ns();
    let gateway = match GatewayRequest::from_event(event) {
        Ok(r) => r,
        Err(e @ GatewayError::BadBase64(_)) => {
            return GatewayResponse::error(&InfluxError::new(ErrorCode::Invalid, e.to_string()))
                .into_event(PayloadFormat::Rest);
        }
        Err(e @ GatewayError::NotAGatewayEvent(_)) => {
            tracing::error!(error = %e, "invocation is not an API Gateway proxy event");
            return GatewayResponse::error(&InfluxError::new(ErrorCode::Internal, e.to_string()))
                .into_event(PayloadFormat::Rest);
        }
    };
    let format = gateway.format;
    let (response, summary) = write(deps, &gateway, received_at_ns, deadline).await;
    tracing::info!(
        request_id = gateway.request_id.as_deref().unwrap_or(""),
        path = %gateway.path,
        status = response.status,
        lines = summary.lines,
        records = summary.records,
        body_bytes = summary.body_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "write"
    );
    response.into_event(format)
}

/// What a request became, for the log line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub lines: usize,
    pub records: usize,
    pub body_bytes: usize,
}

async fn write(
    deps: &Deps,
    gateway: &GatewayRequest,
    received_at_ns: i64,
    deadline: Instant,
) -> (GatewayResponse, Summary) {
    let mut summary = Summary::default();
    let write = match WriteRequest::parse(gateway, deps.config.max_body_bytes) {
        Ok(w) => w,
        Err(e) => return (GatewayResponse::error(&e), summary),
    };
    summary.body_bytes = write.body.len();
    let (lines, partial) = match screen(&write) {
        Ok(screened) => screened,
        Err(e) => return (GatewayResponse::error(&e), summary),
    };
    summary.lines = lines.len();
    let mut target = None;
    if let Some(admission) = &deps.admission {
        match admission.check(&write).await {
            Verdict::Admitted => target = admission.resolve(&write).await,
            Verdict::Refused(response) => return (response, summary),
            Verdict::Unchecked(why) => {
                tracing::warn!(reason = %why, "could not check the write against the source; queuing it anyway (the stream keeps it until the source takes it)");
            }
        }
    }
    if lines.is_empty() {
        let response =
            partial.as_ref().map(GatewayResponse::error).unwrap_or_else(GatewayResponse::no_content);
        return (response, summary);
    }
    let prepared = match records::prepare(
        &write,
        target,
        &lines,
        received_at_ns,
        deps.config.partition_key_mode,
        deps.config.max_record_bytes,
    ) {
        Ok(p) => p,
        Err(e) => return (GatewayResponse::error(&e), summary),
    };
    summary.records = prepared.records.len();
    match deps.sink.put_all(&prepared.records, &prepared.partition_key, deadline).await {
        Ok(_) => match partial {
            // The accepted lines are queued; the client hears about the dropped ones as influxd
            // would tell it.
            Some(e) => (GatewayResponse::error(&e), summary),
            None => (GatewayResponse::no_content(), summary),
        },
        Err(e) => (e.response(), summary),
    }
}

/// Checks every line as influxd 2.7 would and decides what the gateway does with the body:
/// - a line influxd cannot parse: 400 with influxd's message, nothing queued (influxd refuses
///   the whole body);
/// - a line influxd parses but then fails on with a 500, or that crashes influxd 2.7.12 (see
///   `RejectKind::Internal`): 400 naming the line, nothing queued — forwarding it would fail
///   the write on every replay or take both databases down, and a 500 would make clients retry;
/// - lines influxd refuses alone with 422 (partial write): the other lines are queued and the
///   client gets influxd's 422, so both databases store what influxd alone would have stored.
pub fn screen(write: &WriteRequest) -> Result<(Vec<Line<'_>>, Option<InfluxError>), InfluxError> {
    let mut accepted = Vec::new();
    let mut errors = Vec::new();
    for line in line_protocol::lines(&write.body, write.precision.unit()) {
        match line {
            Ok(l) => accepted.push(l),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        return Ok((accepted, None));
    }
    if errors.iter().any(|e| e.kind == RejectKind::Parse) {
        return Err(BodyError { errors }.to_influx_error());
    }
    if let Some(e) = errors.iter().find(|e| e.kind == RejectKind::Internal) {
        return Err(InfluxError::new(
            ErrorCode::Invalid,
            format!(
                "line {} is refused: InfluxDB 2.7 cannot store it and fails the whole write (or crashes) on it ({}); \
                 check the escaping of its field keys",
                e.number, e
            ),
        ));
    }
    Ok((accepted, Some(BodyError { errors }.to_influx_error())))
}
