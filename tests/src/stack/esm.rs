//! A local event source mapping: what Lambda does between a Kinesis stream and a function, for
//! the local stack (moto keeps mappings but cannot run them).
//!
//! The mapping's configuration is read from moto's Lambda API, as created by
//! `infra/wiring.yaml`: its state (enabled or not), batch size, starting position and timestamp,
//! and the stream. Before every poll the function's reserved concurrency is read too: at 0 (the
//! destination writer during the seeding) nothing is invoked and the records wait, exactly as
//! `influx-migration throttle` / `unthrottle` expect. Reading and checkpointing follow
//! [`crate::stack::poller`] (ordered, checkpoint at the first reported failure, unlimited retries).
//!
//! Each mapping publishes its lag to the JSON file the CLI reads with `--lag-source file:<path>`:
//! `{"functions": {"<name>": {"iterator_age_ms", "updated_at", "pending_records"}}}`.
//!
//! The lag is what IteratorAge would say on AWS, never better: a shard is idle only when a read
//! found nothing after its checkpoint; while an invocation fails (a crashed function, a timeout,
//! an error payload, a partial batch failure) its records wait and the age grows from the oldest
//! of them ([`crate::stack::poller::ShardProgress`]). `pending_records` is published only when counted
//! (0 when every shard is caught up).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinHandle;

use crate::stack::lambda::Invoker;
use crate::stack::poller::{Delivery, ShardPoller, ShardProgress, StartPosition};

/// What a mapping is doing, for reports and tests.
#[derive(Debug, Clone, Default)]
pub struct MappingState {
    pub function: String,
    pub enabled: bool,
    pub throttled: bool,
    /// Records the function has acknowledged.
    pub acknowledged: u64,
    /// Age of the newest record the function finished, or of the oldest waiting one while the
    /// function cannot run (ms).
    pub iterator_age_ms: u64,
    pub pending_records: u64,
    pub batches: u64,
    pub partial_failures: u64,
    pub function_errors: u64,
    /// (seconds since the mapping started, iterator age in ms), one entry per loop.
    pub history: Vec<(f64, u64)>,
    pub last_error: Option<String>,
    /// Loops that found every shard empty while the function could run: caught up.
    pub idle_loops: u64,
    /// Idle loops in a row, up to now (0 after any loop that was not idle).
    pub consecutive_idle_loops: u64,
    /// Failed invocations (whole or partial) in a row, up to now.
    pub consecutive_failures: u64,
    /// When the mapping started (the origin of `history`'s times).
    pub started: Option<std::time::Instant>,
}

/// The lag file, shared by the mappings of one stack.
#[derive(Debug, Clone)]
pub struct LagFile {
    pub path: PathBuf,
    entries: Arc<Mutex<BTreeMap<String, serde_json::Value>>>,
}

impl LagFile {
    pub fn new(path: PathBuf) -> LagFile {
        LagFile { path, entries: Arc::new(Mutex::new(BTreeMap::new())) }
    }

    /// Records the lag of `function`; `pending_records` only when it was counted.
    fn publish(&self, function: &str, iterator_age_ms: u64, pending_records: Option<u64>) {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let doc = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            let mut entry = json!({"iterator_age_ms": iterator_age_ms, "updated_at": now});
            if let Some(p) = pending_records {
                entry["pending_records"] = json!(p);
            }
            entries.insert(function.to_string(), entry);
            json!({ "functions": *entries })
        };
        // Write then rename: a reader never sees half a file.
        let tmp = self.path.with_extension("tmp");
        if std::fs::write(&tmp, doc.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, &self.path);
        }
    }
}

/// A running local mapping; stops when dropped.
#[derive(Debug)]
pub struct LocalMapping {
    state: Arc<Mutex<MappingState>>,
    stop: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl LocalMapping {
    /// Starts the mapping of `function` (its configuration read from moto), invoking through
    /// `invoker`.
    pub fn start(
        lambda: aws_sdk_lambda::Client,
        kinesis: aws_sdk_kinesis::Client,
        function: &str,
        invoker: Invoker,
        lag: LagFile,
    ) -> LocalMapping {
        let state =
            Arc::new(Mutex::new(MappingState { function: function.to_string(), ..Default::default() }));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(
            lambda,
            kinesis,
            function.to_string(),
            invoker,
            lag,
            state.clone(),
            stop.clone(),
        ));
        LocalMapping { state, stop, task }
    }

    pub fn state(&self) -> MappingState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for LocalMapping {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.abort();
    }
}

/// The mapping's configuration as moto holds it.
struct Config {
    enabled: bool,
    stream_name: String,
    start: StartPosition,
    batch_size: i32,
}

async fn read_config(lambda: &aws_sdk_lambda::Client, function: &str) -> Result<Config, String> {
    // moto matches FunctionName only in the form the mapping was created with (the wiring stack
    // uses ARNs), so list them all and match the function's name at the end of its ARN.
    let out = lambda.list_event_source_mappings().send().await.map_err(|e| {
        format!("list_event_source_mappings: {}", aws_sdk_lambda::error::DisplayErrorContext(&e))
    })?;
    let suffix = format!(":function:{function}");
    let m = out
        .event_source_mappings()
        .iter()
        .find(|m| {
            m.event_source_arn().is_some_and(|a| a.contains(":kinesis:"))
                && m.function_arn().is_some_and(|f| f.ends_with(&suffix) || f == function)
        })
        .ok_or_else(|| format!("no Kinesis event source mapping for {function}"))?;
    let arn = m.event_source_arn().unwrap_or_default();
    let stream_name = arn.rsplit('/').next().unwrap_or_default().to_string();
    let start = match (m.starting_position().map(|p| p.as_str()), m.starting_position_timestamp()) {
        (Some("AT_TIMESTAMP"), Some(t)) => StartPosition::AtTimestamp(t.as_secs_f64()),
        _ => StartPosition::TrimHorizon,
    };
    let state = m.state().unwrap_or("Enabled");
    Ok(Config {
        enabled: !matches!(state, "Disabled" | "Disabling"),
        stream_name,
        start,
        batch_size: m.batch_size().unwrap_or(100).clamp(1, 10_000),
    })
}

async fn is_throttled(lambda: &aws_sdk_lambda::Client, function: &str) -> Result<bool, String> {
    let out = lambda.get_function_concurrency().function_name(function).send().await.map_err(|e| {
        format!("get_function_concurrency: {}", aws_sdk_lambda::error::DisplayErrorContext(&e))
    })?;
    Ok(out.reserved_concurrent_executions() == Some(0))
}

async fn run(
    lambda: aws_sdk_lambda::Client,
    kinesis: aws_sdk_kinesis::Client,
    function: String,
    invoker: Invoker,
    lag: LagFile,
    state: Arc<Mutex<MappingState>>,
    stop: Arc<AtomicBool>,
) {
    let started = Instant::now();
    state.lock().unwrap_or_else(|p| p.into_inner()).started = Some(started);
    let mut pollers: Vec<ShardPoller> = Vec::new();
    let set = |f: &dyn Fn(&mut MappingState)| f(&mut state.lock().unwrap_or_else(|p| p.into_inner()));
    while !stop.load(Ordering::SeqCst) {
        let config = match read_config(&lambda, &function).await {
            Ok(c) => c,
            Err(e) => {
                set(&|s| s.last_error = Some(e.clone()));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if pollers.is_empty() {
            match ShardPoller::for_stream(&kinesis, &config.stream_name, config.start, config.batch_size)
                .await
            {
                Ok(p) => pollers = p,
                Err(e) => {
                    set(&|s| s.last_error = Some(e.clone()));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let throttled = is_throttled(&lambda, &function).await.unwrap_or(false);
        if !config.enabled || throttled {
            // Nothing runs; the records wait. Report how old the oldest waiting one is.
            let (mut oldest_age, mut pending, mut unreadable) = (0u64, 0u64, false);
            for p in &pollers {
                let mut probe = ShardPoller::new(
                    kinesis.clone(),
                    &p.stream_name,
                    &p.stream_arn,
                    &p.shard_id,
                    config.start,
                    10_000,
                );
                probe.clone_position_from(p);
                match probe.read_batch().await {
                    Ok(batch) => {
                        pending += batch.len() as u64;
                        if let Some(first) = batch.first() {
                            oldest_age = oldest_age.max(age_ms(first.arrival));
                        }
                    }
                    // Not counted: the count published must not pretend the shard is empty.
                    Err(_) => unreadable = true,
                }
            }
            lag.publish(&function, oldest_age, (!unreadable).then_some(pending));
            set(&|s| {
                s.enabled = config.enabled;
                s.throttled = throttled;
                s.consecutive_idle_loops = 0;
                s.iterator_age_ms = oldest_age;
                s.pending_records = pending;
                s.history.push((started.elapsed().as_secs_f64(), oldest_age));
            });
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        let mut failed = false;
        let mut last_error = None;
        for p in pollers.iter_mut() {
            match p.poll(&invoker).await {
                Ok(Delivery::Empty) => {}
                Ok(Delivery::Done { .. }) => set(&|s| s.batches += 1),
                Ok(Delivery::Partial { .. }) => {
                    failed = true;
                    set(&|s| {
                        s.batches += 1;
                        s.partial_failures += 1;
                    });
                }
                Ok(Delivery::FunctionError(e)) => {
                    failed = true;
                    set(&|s| s.function_errors += 1);
                    last_error = Some(e);
                }
                Err(e) => {
                    failed = true;
                    last_error = Some(e);
                }
            }
        }
        let progress: Vec<ShardProgress> = pollers.iter().map(|p| p.progress).collect();
        let (idle, age) = summarize(&progress, now_secs());
        let acknowledged: u64 = pollers.iter().map(|p| p.acknowledged).sum();
        lag.publish(&function, age, idle.then_some(0));
        set(&|s| {
            s.enabled = true;
            s.throttled = false;
            if let Some(e) = &last_error {
                s.last_error = Some(e.clone());
            } else if !failed {
                s.last_error = None;
            }
            s.consecutive_failures = if failed { s.consecutive_failures + 1 } else { 0 };
            if idle {
                s.idle_loops += 1;
                s.consecutive_idle_loops += 1;
                s.pending_records = 0;
            } else {
                s.consecutive_idle_loops = 0;
            }
            s.acknowledged = acknowledged;
            s.iterator_age_ms = age;
            s.history.push((started.elapsed().as_secs_f64(), age));
        });
        if failed {
            // Lambda backs off before it retries a failed batch.
            tokio::time::sleep(Duration::from_millis(500)).await;
        } else if idle {
            // The mapping's batching window.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// The mapping's view of its shards after one loop: idle only when every shard's read found
/// nothing (no shards at all is not idle), and the IteratorAge of the furthest-behind shard.
fn summarize(shards: &[ShardProgress], now: f64) -> (bool, u64) {
    let idle = !shards.is_empty() && shards.iter().all(ShardProgress::is_caught_up);
    let age = shards.iter().map(|s| s.iterator_age_ms(now)).max().unwrap_or(0);
    (idle, age)
}

fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn age_ms(arrival_secs: f64) -> u64 {
    ((now_secs() - arrival_secs) * 1000.0).max(0.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_whose_invocations_all_failed_is_not_idle_and_its_lag_grows() {
        // Regression: every poll failing (a dead function answering nothing) was counted as an
        // idle loop, published as lag 0 and pending 0.
        let failing = [
            ShardProgress::Waiting { oldest_arrival: 100.0 },
            ShardProgress::Waiting { oldest_arrival: 130.0 },
        ];
        assert_eq!(summarize(&failing, 160.0), (false, 60_000));
        assert_eq!(summarize(&failing, 220.0), (false, 120_000));
    }

    #[test]
    fn idle_needs_every_shard_caught_up() {
        assert_eq!(summarize(&[ShardProgress::CaughtUp, ShardProgress::CaughtUp], 1.0), (true, 0));
        let one_behind = [ShardProgress::CaughtUp, ShardProgress::Delivered { iterator_age_ms: 700 }];
        assert_eq!(summarize(&one_behind, 1.0), (false, 700));
        let one_unread = [ShardProgress::CaughtUp, ShardProgress::Unknown];
        assert_eq!(summarize(&one_unread, 1.0), (false, 0), "a shard not read is not caught up");
        assert_eq!(summarize(&[], 1.0), (false, 0), "no shard listed yet is not idle");
    }
}
