//! The stream-writer: a batch of Kinesis records replayed, in order, into one database.
//!
//! A batch's journey ([`handle`]):
//! 1. The endpoint secret names this instance's database (`TARGET`) and, for the destination,
//!    the optional bucket/org/token mappings.
//! 2. [`batch::plan`] decodes the records (in shard order) and groups consecutive records that
//!    go to the same place with the same credential into one write, up to `MAX_WRITE_BYTES`.
//! 3. [`replay::Replayer::run`] sends each write (the records' gzip bodies concatenated: a valid
//!    gzip stream), following the failure classes of DESIGN.md: done; 413 split and resend; 400/422
//!    narrowed down to the guilty record, which goes whole to dead-letter storage with the
//!    database's answer; 401/403/404 and transient errors retried with backoff until the
//!    invocation's time is nearly up.
//!    A barrier (`shared::barrier`) is a step of its own: reaching it means every record before it
//!    is durable, and [`barrier::BarrierBook`] records that this writer passed it; it is never
//!    written to the database nor dead-lettered.
//! 4. The answer names the first record not durably written (`batchItemFailures`): Lambda
//!    checkpoints before it and retries from there, so nothing after a failure is skipped and
//!    nothing before it is written twice more than needed (replays are idempotent anyway: every
//!    line carries its timestamp).

pub mod barrier;
pub mod batch;
pub mod config;
pub mod dead_letter;
pub mod replay;
pub mod stall;
pub mod stop;

use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use shared::influx_client::{ClientOptions, EndpointClients};
use shared::secret::{SecretCache, SecretsManagerSource};
use shared::stall::StallClass;

pub use barrier::BarrierBook;
pub use batch::{Item, Step, WriteGroup};
pub use config::{Config, ConfigError};
pub use dead_letter::DeadLetters;
pub use replay::{Parking, Replayer, Stats};
pub use stall::StallBook;
pub use stop::Stop;

/// Everything a batch needs, built once per cold start.
pub struct Deps {
    pub config: Config,
    pub secret: SecretCache<SecretsManagerSource>,
    /// TLS verified unless the secret's `skip_verify` (or `SKIP_VERIFY`) says otherwise.
    pub http: EndpointClients,
    pub dead_letters: DeadLetters,
    pub stalls: StallBook,
    pub barriers: BarrierBook,
}

impl Deps {
    /// Builds the clients; makes no network call.
    pub fn new(
        config: Config,
        aws: &aws_config::SdkConfig,
    ) -> Result<Deps, shared::influx_client::ClientError> {
        let secret = SecretCache::new(
            SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(aws), config.secret_id.clone()),
            config.secret_ttl,
        );
        let http = EndpointClients::new(ClientOptions {
            timeout: config.write_timeout,
            connect_timeout: Duration::from_secs(5),
            skip_verify: false,
        })?;
        let s3 = dead_letter::s3_client(aws);
        let dead_letters = DeadLetters::new(
            s3.clone(),
            config.dead_letter_bucket.clone(),
            config.dead_letter_prefix.clone(),
            config.target,
        );
        let function_name =
            std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "stream-writer".into());
        let barriers = BarrierBook::new(s3.clone(), config.dead_letter_bucket.clone(), config.target);
        let stalls = StallBook::new(
            s3,
            config.dead_letter_bucket.clone(),
            config.target,
            config.stall_alert,
            function_name,
        );
        Ok(Deps { config, secret, http, dead_letters, stalls, barriers })
    }
}

/// How long an invocation retries when the runtime gives no usable deadline.
pub const FALLBACK_BUDGET: Duration = Duration::from_secs(30);

/// When this invocation must stop retrying and answer: the Lambda deadline less a margin for the
/// answer itself. Lambda sends the deadline as ms since the epoch; a value that is not in the
/// future (local emulators such as cargo lambda 1.9 send a duration) means "unknown", and
/// [`FALLBACK_BUDGET`] applies.
pub fn deadline_of(ctx: &lambda_runtime::Context) -> Instant {
    match shared::deadline::time_left(ctx.deadline) {
        Some(left) => {
            Instant::now() + left.saturating_sub(Duration::from_secs(3)).max(Duration::from_millis(500))
        }
        None => Instant::now() + FALLBACK_BUDGET,
    }
}

/// Replays one Kinesis batch and answers with the first record not durably written, if any.
pub async fn handle(deps: &Deps, event: &KinesisEvent, deadline: Instant) -> KinesisEventResponse {
    let started = Instant::now();
    let items: Vec<Item<'_>> =
        event.records.iter().enumerate().map(|(i, r)| Item::from_event(i, r)).collect();
    let mut response = KinesisEventResponse::default();
    let Some(first) = items.first() else { return response };
    let target = deps.config.target.as_str();
    let secret = match deps.secret.get().await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(target, error = %e, "cannot read the endpoint secret; the whole batch will be retried");
            let stop = Stop { at: 0, reason: e.to_string(), class: StallClass::Configuration, status: None };
            deps.stalls.stopped(first, &stop, bucket_of(first)).await;
            response.batch_item_failures.push(failure(first.sequence_number));
            return response;
        }
    };
    let endpoint = secret.endpoint(deps.config.target);
    // The secret's `skip_verify` for this endpoint; `SKIP_VERIFY` turns it off for this writer's
    // endpoint too.
    let http = match deps.http.get(endpoint.skip_verify || deps.config.skip_verify) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(target, error = %e, "cannot build the HTTP client; the whole batch will be retried");
            let stop = Stop::other(0, format!("building the HTTP client: {e}"));
            deps.stalls.stopped(first, &stop, bucket_of(first)).await;
            response.batch_item_failures.push(failure(first.sequence_number));
            return response;
        }
    };
    let steps = batch::plan(&items, deps.config.target, &secret.mappings, deps.config.max_write_bytes);
    let replayer = Replayer::new(http, endpoint, &deps.dead_letters, deadline, deps.config.write_timeout)
        .with_parking(Parking::new(&deps.stalls, first.shard_id))
        .with_barriers(&deps.barriers)
        .with_concurrency(deps.config.write_concurrency);
    let outcome = run_with_heartbeat(deps, &replayer, &items, &steps).await;
    let stats = replayer.stats();
    // Records left to the source alone, before any stop (those after it come back in the retry).
    let done_before = outcome.as_ref().err().map_or(items.len(), |s| s.at);
    let mut source_only: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let parts = steps.iter().flat_map(|step| match step {
        Step::Concurrent(parts) => parts.as_slice(),
        other => std::slice::from_ref(other),
    });
    for step in parts {
        if let Step::Skip { index } = step
            && *index < done_before
        {
            *source_only.entry(bucket_of(&items[*index]).unwrap_or_default()).or_default() += 1;
        }
    }
    deps.stalls.count_source_only(first.shard_id, &source_only).await;
    match outcome {
        Ok(()) => {
            deps.stalls.progressed(first.shard_id).await;
            tracing::info!(
                target,
                endpoint = %endpoint.host(),
                records = items.len(),
                writes = stats.writes,
                dead_lettered = stats.dead_lettered,
                parked = stats.parked,
                source_only = stats.source_only,
                barriers = stats.barriers,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "batch written"
            );
        }
        Err(stop) => {
            let item = &items[stop.at];
            tracing::warn!(
                target,
                endpoint = %endpoint.host(),
                records = items.len(),
                written_before = stop.at,
                retry_from = item.sequence_number,
                reason = %stop.reason,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "batch stopped; Lambda will retry from the first record not written"
            );
            deps.stalls.stopped(item, &stop, bucket_of(item)).await;
            response.batch_item_failures.push(failure(item.sequence_number));
        }
    }
    response
}

/// Runs the batch; every `STALL_HEARTBEAT_SECONDS` meanwhile, when a write is being retried,
/// records the stall and publishes `StalledSeconds` (an invocation retries for up to its whole
/// timeout, and a metric published only when it ends leaves the alarm's one-minute periods
/// empty: it would go back to OK while the shard is still stuck).
async fn run_with_heartbeat(
    deps: &Deps,
    replayer: &Replayer<'_>,
    items: &[Item<'_>],
    steps: &[Step],
) -> Result<(), Stop> {
    let run = replayer.run(items, steps);
    tokio::pin!(run);
    let mut beat = tokio::time::interval(deps.config.stall_heartbeat);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await; // the first tick is immediate; nothing has failed yet
    loop {
        tokio::select! {
            outcome = &mut run => return outcome,
            _ = beat.tick() => {
                if let Some((stop, first_failure_ms)) = replayer.failing_now()
                    && let Some(item) = items.get(stop.at)
                {
                    deps.stalls.still_stopped(item, &stop, bucket_of(item), first_failure_ms).await;
                }
            }
        }
    }
}

/// The bucket (v2) or `db[/rp]` (v1) a record writes to, as the client named it.
fn bucket_of(item: &Item<'_>) -> Option<String> {
    item.decoded.as_ref().ok()?.header.params.bucket_name()
}

fn failure(sequence_number: &str) -> KinesisBatchItemFailure {
    let mut f = KinesisBatchItemFailure::default();
    f.item_identifier = Some(sequence_number.to_string());
    f
}
