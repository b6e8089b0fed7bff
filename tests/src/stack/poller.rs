//! Reading a Kinesis stream the way a Lambda event source mapping does, for the functions that
//! moto cannot run itself.
//!
//! Semantics kept from the real thing (../shared/docs/live-migration-facts.md §B4):
//! - per shard, in order; batches of up to `batch_size` records from one shard;
//! - the start is `TRIM_HORIZON` or `AT_TIMESTAMP`;
//! - `ReportBatchItemFailures`: the checkpoint moves past what the function reports done; with a
//!   failure it moves to just before the *lowest* reported sequence number and the next batch
//!   starts there; an empty list means the whole batch is done; a malformed answer (missing or
//!   empty identifier, or one not in the batch) means the whole batch failed;
//! - a function error (crash, timeout, error payload) retries the same batch; retries are
//!   unlimited and nothing is ever skipped.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_kinesis::types::ShardIteratorType;
use serde_json::Value;

use crate::stack::events::{StreamRecord, kinesis_event};
use crate::stack::lambda::Invoker;

/// Where a new poller starts reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StartPosition {
    TrimHorizon,
    /// Seconds since the epoch.
    AtTimestamp(f64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    Start,
    At(String),
    After(String),
}

/// What one poll did.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivery {
    /// Nothing new in the shard.
    Empty,
    /// The function took the whole batch.
    Done { records: usize, iterator_age_ms: u64 },
    /// The function reported a failure: the checkpoint is before `retry_from`.
    Partial { records: usize, done: usize, retry_from: String },
    /// The invocation failed as a whole; the same batch comes again.
    FunctionError(String),
}

/// Where a shard stands after its last poll: what its IteratorAge is and whether it is caught up.
///
/// On AWS, IteratorAge is the age of the last record of the batch the mapping hands the function,
/// emitted with every invocation, failed ones included: while a batch keeps failing it keeps
/// growing. A shard is caught up only when a read finds nothing after its checkpoint; a failed
/// invocation, a failed read or a shard not read yet is never "idle".
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ShardProgress {
    /// Not read yet, or the last read of the stream failed: nothing is known.
    Unknown,
    /// The last read found nothing after the checkpoint.
    CaughtUp,
    /// The function took the last batch; the age of its last record when it was delivered.
    Delivered { iterator_age_ms: u64 },
    /// Records wait that the function has not processed (its last invocation failed, whole or in
    /// part); when the oldest of them arrived, in seconds since the epoch.
    Waiting { oldest_arrival: f64 },
}

impl ShardProgress {
    /// The IteratorAge at `now` (seconds since the epoch): it grows while records wait.
    pub fn iterator_age_ms(&self, now: f64) -> u64 {
        match *self {
            ShardProgress::Unknown | ShardProgress::CaughtUp => 0,
            ShardProgress::Delivered { iterator_age_ms } => iterator_age_ms,
            ShardProgress::Waiting { oldest_arrival } => ((now - oldest_arrival) * 1000.0).max(0.0) as u64,
        }
    }

    pub fn is_caught_up(&self) -> bool {
        *self == ShardProgress::CaughtUp
    }
}

/// One shard's event source mapping.
#[derive(Debug)]
pub struct ShardPoller {
    kinesis: aws_sdk_kinesis::Client,
    pub stream_name: String,
    pub stream_arn: String,
    pub shard_id: String,
    start: StartPosition,
    position: Position,
    pub batch_size: i32,
    /// Records delivered and acknowledged so far.
    pub acknowledged: u64,
    /// Age of the last record of the last batch the function finished, in ms (CloudWatch's
    /// IteratorAge).
    pub iterator_age_ms: u64,
    /// Where the shard stands after the last poll.
    pub progress: ShardProgress,
}

/// Milliseconds since the epoch.
fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl ShardPoller {
    pub fn new(
        kinesis: aws_sdk_kinesis::Client,
        stream_name: &str,
        stream_arn: &str,
        shard_id: &str,
        start: StartPosition,
        batch_size: i32,
    ) -> ShardPoller {
        ShardPoller {
            kinesis,
            stream_name: stream_name.into(),
            stream_arn: stream_arn.into(),
            shard_id: shard_id.into(),
            start,
            position: Position::Start,
            batch_size,
            acknowledged: 0,
            iterator_age_ms: 0,
            progress: ShardProgress::Unknown,
        }
    }

    /// One poller per shard of `stream_name`.
    pub async fn for_stream(
        kinesis: &aws_sdk_kinesis::Client,
        stream_name: &str,
        start: StartPosition,
        batch_size: i32,
    ) -> Result<Vec<ShardPoller>, String> {
        let desc = kinesis.describe_stream_summary().stream_name(stream_name).send().await.map_err(|e| {
            format!(
                "describe_stream_summary {stream_name}: {}",
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            )
        })?;
        let arn = desc.stream_description_summary().map(|d| d.stream_arn().to_string()).unwrap_or_default();
        let shards = kinesis.list_shards().stream_name(stream_name).send().await.map_err(|e| {
            format!("list_shards {stream_name}: {}", aws_sdk_kinesis::error::DisplayErrorContext(&e))
        })?;
        Ok(shards
            .shards()
            .iter()
            .map(|s| ShardPoller::new(kinesis.clone(), stream_name, &arn, s.shard_id(), start, batch_size))
            .collect())
    }

    /// Takes over another poller's checkpoint (to peek at what it would read next).
    pub fn clone_position_from(&mut self, other: &ShardPoller) {
        self.position = other.position.clone();
        self.start = other.start;
    }

    /// Reads the next batch (without delivering it).
    pub async fn read_batch(&self) -> Result<Vec<StreamRecord>, String> {
        let mut req =
            self.kinesis.get_shard_iterator().stream_name(&self.stream_name).shard_id(&self.shard_id);
        req = match (&self.position, self.start) {
            (Position::Start, StartPosition::TrimHorizon) => {
                req.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            (Position::Start, StartPosition::AtTimestamp(t)) => req
                .shard_iterator_type(ShardIteratorType::AtTimestamp)
                .timestamp(aws_sdk_kinesis::primitives::DateTime::from_secs_f64(t)),
            (Position::At(seq), _) => {
                req.shard_iterator_type(ShardIteratorType::AtSequenceNumber).starting_sequence_number(seq)
            }
            (Position::After(seq), _) => {
                req.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).starting_sequence_number(seq)
            }
        };
        let iterator = req
            .send()
            .await
            .map_err(|e| format!("get_shard_iterator: {}", aws_sdk_kinesis::error::DisplayErrorContext(&e)))?
            .shard_iterator
            .ok_or("no shard iterator")?;
        let out = self
            .kinesis
            .get_records()
            .shard_iterator(iterator)
            .limit(self.batch_size)
            .send()
            .await
            .map_err(|e| format!("get_records: {}", aws_sdk_kinesis::error::DisplayErrorContext(&e)))?;
        // Lambda caps a batch at the 6 MB invocation payload; base64 grows data by 4/3.
        let mut total = 0usize;
        let mut batch = Vec::new();
        for r in out.records() {
            let size = r.data().as_ref().len() * 4 / 3 + 512;
            if !batch.is_empty() && total + size > 5_500_000 {
                break;
            }
            total += size;
            batch.push(StreamRecord {
                shard_id: self.shard_id.clone(),
                sequence_number: r.sequence_number().to_string(),
                partition_key: r.partition_key().unwrap_or_default().to_string(),
                data: r.data().as_ref().to_vec(),
                arrival: r.approximate_arrival_timestamp().map(|t| t.as_secs_f64()).unwrap_or_else(now_secs),
            });
        }
        Ok(batch)
    }

    /// Reads a batch and delivers it to the function; moves the checkpoint as Lambda would, and
    /// records where the shard stands ([`ShardPoller::progress`]).
    pub async fn poll(&mut self, invoker: &Invoker) -> Result<Delivery, String> {
        let batch = match self.read_batch().await {
            Ok(b) => b,
            Err(e) => {
                // A stream that cannot be read says nothing about what waits in it.
                if !matches!(self.progress, ShardProgress::Waiting { .. }) {
                    self.progress = ShardProgress::Unknown;
                }
                return Err(e);
            }
        };
        let delivery = self.deliver(invoker, &batch).await;
        self.progress = match &delivery {
            Delivery::Empty => ShardProgress::CaughtUp,
            Delivery::Done { iterator_age_ms, .. } => {
                ShardProgress::Delivered { iterator_age_ms: *iterator_age_ms }
            }
            Delivery::Partial { done, .. } => ShardProgress::Waiting { oldest_arrival: batch[*done].arrival },
            Delivery::FunctionError(_) => ShardProgress::Waiting { oldest_arrival: batch[0].arrival },
        };
        Ok(delivery)
    }

    /// Delivers `batch` (empty: nothing to do) and moves the checkpoint.
    async fn deliver(&mut self, invoker: &Invoker, batch: &[StreamRecord]) -> Delivery {
        if batch.is_empty() {
            return Delivery::Empty;
        }
        let event = kinesis_event(&self.stream_arn, batch);
        let answer = match invoker.invoke(&event).await {
            Ok(a) => a,
            Err(e) => return Delivery::FunctionError(e),
        };
        if answer.status != 200
            || answer.payload.get("errorType").is_some()
            || answer.payload.get("errorMessage").is_some()
        {
            return Delivery::FunctionError(format!("status {}: {}", answer.status, answer.payload));
        }
        let failures: Vec<Option<String>> = answer
            .payload
            .get("batchItemFailures")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|f| f.get("itemIdentifier").and_then(Value::as_str).map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if failures.is_empty() {
            let last = batch.last().expect("batch is not empty");
            self.position = Position::After(last.sequence_number.clone());
            self.acknowledged += batch.len() as u64;
            self.iterator_age_ms = ((now_secs() - last.arrival) * 1000.0).max(0.0) as u64;
            return Delivery::Done { records: batch.len(), iterator_age_ms: self.iterator_age_ms };
        }
        // The lowest reported sequence number, if every identifier names a record of the batch.
        let lowest = failures
            .iter()
            .map(|f| f.as_ref().and_then(|id| batch.iter().position(|r| &r.sequence_number == id)))
            .collect::<Option<Vec<usize>>>()
            .and_then(|positions| positions.into_iter().min());
        match lowest {
            Some(done) => {
                let retry_from = batch[done].sequence_number.clone();
                if done > 0 {
                    self.iterator_age_ms = ((now_secs() - batch[done - 1].arrival) * 1000.0).max(0.0) as u64;
                }
                self.acknowledged += done as u64;
                self.position = Position::At(retry_from.clone());
                Delivery::Partial { records: batch.len(), done, retry_from }
            }
            None => Delivery::FunctionError(format!("malformed batchItemFailures: {}", answer.payload)),
        }
    }

    /// Polls until the shard is empty, retrying failures, for at most `timeout`. Returns every
    /// delivery, in order.
    pub async fn drain(&mut self, invoker: &Invoker, timeout: Duration) -> Result<Vec<Delivery>, String> {
        let deadline = Instant::now() + timeout;
        let mut log = Vec::new();
        loop {
            let d = self.poll(invoker).await?;
            let empty = d == Delivery::Empty;
            let failed = matches!(d, Delivery::Partial { .. } | Delivery::FunctionError(_));
            log.push(d);
            if empty {
                return Ok(log);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "shard {} not drained within {timeout:?}; deliveries: {log:?}",
                    self.shard_id
                ));
            }
            if failed {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_shard_ages_from_its_oldest_unprocessed_record() {
        let waiting = ShardProgress::Waiting { oldest_arrival: 1_000.0 };
        assert_eq!(waiting.iterator_age_ms(1_000.5), 500);
        assert_eq!(waiting.iterator_age_ms(1_030.0), 30_000, "it keeps growing while the batch fails");
        assert!(!waiting.is_caught_up());
    }

    #[test]
    fn only_a_read_that_found_nothing_is_caught_up() {
        assert!(ShardProgress::CaughtUp.is_caught_up());
        assert_eq!(ShardProgress::CaughtUp.iterator_age_ms(5.0), 0);
        assert!(!ShardProgress::Unknown.is_caught_up(), "a shard never read, or unreadable, is not idle");
        let delivered = ShardProgress::Delivered { iterator_age_ms: 1_200 };
        assert!(!delivered.is_caught_up());
        assert_eq!(delivered.iterator_age_ms(1e9), 1_200, "the age when the batch was handed over");
    }
}
