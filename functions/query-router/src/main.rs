//! The query-router Lambda function: set-up once per cold start, then one `handle` per
//! invocation (see the library for the request's journey).
//!
//! The cold start reads the settings (failing with the name of a missing variable), loads the
//! AWS configuration from the standard chain (`AWS_ENDPOINT_URL` included, which is how tests
//! point it at moto) and builds the Secrets Manager client, the secret cache and the HTTP client.
//! None of that makes a network call: the secret is first read by the first invocation.

use std::time::Duration;

use anyhow::Context;
use lambda_runtime::{LambdaEvent, service_fn};
use query_router::{Config, Deps, TransferMode, handle_streaming, handle_within};
use serde_json::Value;

/// Time kept back from the invocation's deadline to write the 504 before Lambda ends the
/// invocation.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // JSON logs; also required for the runtime to report errors to CloudWatch.
    shared::logging::init_lambda();
    let config = Config::from_env().context("query-router cannot start")?;
    // Bounded retries and timeouts: a stalled Secrets Manager must not stall every query.
    let aws = shared::sdk::load().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&aws);
    let deps = Deps::new(config, secrets).context("query-router cannot start")?;
    tracing::info!(
        secret_id = %deps.config().secret_id,
        secret_ttl_s = deps.config().secret_ttl.as_secs_f64(),
        upstream_timeout_s = deps.config().upstream_timeout.as_secs_f64(),
        max_response_bytes = deps.config().max_response_bytes,
        transfer_mode = deps.config().transfer_mode.as_str(),
        "query router ready"
    );
    let deps = &deps;
    let ran = match deps.config().transfer_mode {
        TransferMode::Stream => {
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
                let time_left = time_left(event.context.deadline);
                Ok::<_, lambda_runtime::Error>(handle_streaming(deps, event.payload, time_left).await)
            }))
            .await
        }
        TransferMode::Buffered => {
            lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
                let time_left = time_left(event.context.deadline);
                Ok::<Value, lambda_runtime::Error>(handle_within(deps, event.payload, time_left).await)
            }))
            .await
        }
    };
    ran.map_err(|e| anyhow::anyhow!("the Lambda runtime stopped: {e}"))
}

/// The time until `deadline_ms` less the margin; `None` when there is no usable deadline
/// (`shared::deadline`): the configured upstream timeout then applies alone.
fn time_left(deadline_ms: u64) -> Option<Duration> {
    shared::deadline::time_left(deadline_ms).map(|left| left.saturating_sub(DEADLINE_MARGIN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn the_deadline_bounds_the_wait_only_when_it_is_in_the_future() {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let left = time_left(now_ms + 10_000).expect("a deadline 10 s ahead");
        assert!(left <= Duration::from_millis(9_500) && left > Duration::from_millis(8_000), "{left:?}");
        assert_eq!(time_left(now_ms + 200), Some(Duration::ZERO), "less than the margin left");
        assert_eq!(time_left(0), None);
        assert_eq!(time_left(600_000), None, "cargo lambda watch's relative value");
        assert_eq!(time_left(now_ms - 1_000), None);
    }
}
