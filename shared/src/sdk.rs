//! The AWS SDK configuration every function loads once at cold start.
//!
//! The standard chain (credentials, region, `AWS_ENDPOINT_URL` for an endpoint override, which is
//! how the tests point the functions at moto), with bounded retries and timeouts: the SDK's
//! defaults have no operation timeout at all, and a stalled Secrets Manager or Kinesis call must
//! not hold an invocation until Lambda kills it. A failed secret refresh falls back to the cached
//! value, a failed `PutRecord` is retried by the caller within its own budget, and a failed
//! dead-letter `PutObject` makes the batch retry, so one quick SDK retry is enough.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

/// Loads the SDK configuration (no network call: credentials are resolved on first use).
pub async fn load() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(
            RetryConfig::standard().with_max_attempts(2).with_initial_backoff(Duration::from_millis(100)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(4))
                .operation_timeout(Duration::from_secs(9))
                .build(),
        )
        .load()
        .await
}
