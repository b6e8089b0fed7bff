//! Putting a request's records into Kinesis, in order, within the gateway's time limit.
//!
//! Records go one by one with `PutRecord` (not `PutRecords`, which is neither atomic nor ordered),
//! each naming the previous record's sequence number in `SequenceNumberForOrdering`, so the
//! chunks of one request keep their order on their shard. Throttling and service errors are
//! retried with jittered backoff until the deadline; then the client is told 503 with
//! `Retry-After`, never 204: a 204 means every record is in the stream.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::{DisplayErrorContext, SdkError};
use aws_sdk_kinesis::operation::put_record::PutRecordError;
use aws_sdk_kinesis::primitives::Blob;
use bytes::Bytes;
use shared::gateway::GatewayResponse;
use shared::influx_client::Backoff;
use shared::influx_error::{ErrorCode, InfluxError};

/// Why a request could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// Kinesis kept throttling (or failing transiently) until the deadline.
    #[error("the stream is busy: {queued} of {total} parts queued before the time limit ({last_error})")]
    Busy { queued: usize, total: usize, last_error: String },
    /// Kinesis refused for a reason that retrying will not fix (missing stream, no permission).
    #[error("the stream refused the write after {queued} of {total} parts: {reason}")]
    Refused { queued: usize, total: usize, reason: String },
}

impl PutError {
    /// The answer for the client.
    pub fn response(&self) -> GatewayResponse {
        match self {
            PutError::Busy { .. } => GatewayResponse::error(&InfluxError::new(
                ErrorCode::Unavailable,
                format!("{self}; nothing is acknowledged, retry the write"),
            ))
            .with_header("retry-after", "1"),
            PutError::Refused { .. } => GatewayResponse::error(&InfluxError::new(
                ErrorCode::Internal,
                format!("{self}; the gateway's stream configuration needs attention"),
            )),
        }
    }
}

/// Whether a failed `PutRecord` is worth retrying.
pub fn is_retryable(err: &SdkError<PutRecordError>) -> bool {
    match err {
        SdkError::ServiceError(e) => {
            let e = e.err();
            e.is_provisioned_throughput_exceeded_exception()
                || e.is_kms_throttling_exception()
                || e.is_internal_failure_exception()
                || e.meta().code().is_some_and(|c| {
                    c.contains("Throttl") || c == "ServiceUnavailable" || c == "LimitExceededException"
                })
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        _ => false,
    }
}

/// The Kinesis stream of this deployment.
#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    stream_name: String,
}

impl KinesisSink {
    pub fn new(client: aws_sdk_kinesis::Client, stream_name: String) -> KinesisSink {
        KinesisSink { client, stream_name }
    }

    /// Puts `records` in order under `partition_key`; returns their sequence numbers.
    pub async fn put_all(
        &self,
        records: &[Bytes],
        partition_key: &str,
        deadline: Instant,
    ) -> Result<Vec<String>, PutError> {
        let mut sequence_numbers: Vec<String> = Vec::with_capacity(records.len());
        for record in records {
            let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
            loop {
                let mut put = self
                    .client
                    .put_record()
                    .stream_name(&self.stream_name)
                    .partition_key(partition_key)
                    .data(Blob::new(record.to_vec()));
                if let Some(previous) = sequence_numbers.last() {
                    put = put.sequence_number_for_ordering(previous);
                }
                match put.send().await {
                    Ok(out) => {
                        sequence_numbers.push(out.sequence_number);
                        break;
                    }
                    Err(e) => {
                        let queued = sequence_numbers.len();
                        let reason = DisplayErrorContext(&e).to_string();
                        if !is_retryable(&e) {
                            tracing::error!(error = %reason, stream = %self.stream_name, "PutRecord refused");
                            return Err(PutError::Refused { queued, total: records.len(), reason });
                        }
                        let wait = backoff.next_delay(None);
                        if Instant::now() + wait >= deadline {
                            tracing::warn!(error = %reason, attempts = backoff.attempts(), "PutRecord still failing at the deadline");
                            return Err(PutError::Busy { queued, total: records.len(), last_error: reason });
                        }
                        tracing::debug!(error = %reason, wait_ms = wait.as_millis() as u64, "PutRecord throttled; retrying");
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        Ok(sequence_numbers)
    }
}
