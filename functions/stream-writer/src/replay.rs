//! Sending the planned writes, in order, and deciding what each answer means.
//!
//! Each write follows DESIGN.md's failure classes (`shared::influx_client::classify`):
//! - done: next write;
//! - 413: a write of several records is split in two and each half resent; a single record is
//!   split at line boundaries (never inside a quoted string) until it fits; a single line that
//!   still does not fit is bad data;
//! - 400 / 422: the data is bad. When several records were coalesced, each is resent on its own
//!   so that only the guilty one goes to dead-letter storage (resending the innocent ones is
//!   idempotent: every line carries its timestamp). The record goes whole, with the answer;
//! - 401 / 403 / 404 (configuration) and 429 / 5xx / timeouts (transient): retried with
//!   backoff, honouring `Retry-After`, until the invocation's deadline; then the batch stops at
//!   that record and Lambda retries from there. Nothing is ever dropped.
//!
//! Parking: when a write fails for a configuration reason and the operator has parked the
//! shard for that status (`influx-migration park`, a `shared::stall::ParkRule`), the record goes
//! to dead-letter storage with the operator's note instead of being retried — the same path as
//! bad data, narrowed to each record of a coalesced write. Nothing else is ever parked.
//!
//! The deadline is checked before every write, not only after a failure: a write starts only
//! with at least [`MIN_WRITE_TIME`] left, and its timeout is the time left (or the client's
//! write timeout, when shorter). A database that hangs therefore gets the batch handed back as
//! `batchItemFailures` before the invocation times out.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use shared::envelope::{Api, FORMAT_VERSION, WriteParams, gzip};
use shared::influx_client::{Backoff, RetryClass, WriteAction, send_write, write_request};
use shared::line_protocol::{rescale, split_lines};
use shared::secret::Endpoint;
use shared::sensitive::Sensitive;
use shared::stall::{NEWER_FORMAT, ParkRule, StallClass, UNMAPPED_REASON};

use crate::barrier::BarrierBook;
use crate::batch::{Form, Item, Step, WriteGroup};
use crate::dead_letter::{DeadLetter, DeadLetters};
use crate::stall::{StallBook, now_ms};
use crate::stop::Stop;

/// Targets written at the same time unless configured.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// The least time left before the deadline for a write to start.
pub const MIN_WRITE_TIME: Duration = Duration::from_millis(250);

/// The operator's park rule for the batch's shard, read once per batch and only when a write
/// fails for a configuration reason (a batch that goes through reads nothing).
pub struct Parking<'a> {
    pub book: &'a StallBook,
    pub shard_id: &'a str,
    rule: tokio::sync::OnceCell<Option<ParkRule>>,
}

impl<'a> Parking<'a> {
    pub fn new(book: &'a StallBook, shard_id: &'a str) -> Parking<'a> {
        Parking { book, shard_id, rule: tokio::sync::OnceCell::new() }
    }

    async fn rule(&self) -> Option<&ParkRule> {
        self.rule.get_or_init(|| self.book.park_rule(self.shard_id)).await.as_ref()
    }
}

/// Counters for the batch's log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub writes: usize,
    pub dead_lettered: usize,
    /// Writes to buckets outside the migration (`"unmapped": "source-only"`), not replayed.
    pub source_only: usize,
    /// Records moved to dead-letter storage by the operator's park rule.
    pub parked: usize,
    /// Barriers passed (`shared::barrier`).
    pub barriers: usize,
}

/// Sends one batch's writes to one database.
pub struct Replayer<'a> {
    http: &'a reqwest::Client,
    endpoint: &'a Endpoint,
    dead_letters: &'a DeadLetters,
    deadline: Instant,
    /// One write's timeout, as configured (`WRITE_TIMEOUT_SECONDS`); shortened to the time left.
    write_timeout: Duration,
    writes: AtomicUsize,
    dead_lettered: AtomicUsize,
    source_only: AtomicUsize,
    parked: AtomicUsize,
    barriers_passed: AtomicUsize,
    parking: Option<Parking<'a>>,
    barriers: Option<&'a BarrierBook>,
    /// Lanes written at the same time (`WRITE_CONCURRENCY`).
    concurrency: usize,
    /// Records whose write is failing and being retried now: the last failure, and when the
    /// first one came (ms since the epoch). Read by the stall heartbeat ([`Self::failing_now`]).
    failing: std::sync::Mutex<std::collections::BTreeMap<usize, (Stop, i64)>>,
}

/// Where a write goes and as whom.
struct Target<'g> {
    api: Api,
    params: &'g WriteParams,
    authorization: Option<&'g Sensitive>,
}

type Boxed<'f, T> = Pin<Box<dyn Future<Output = T> + Send + 'f>>;

impl<'a> Replayer<'a> {
    pub fn new(
        http: &'a reqwest::Client,
        endpoint: &'a Endpoint,
        dead_letters: &'a DeadLetters,
        deadline: Instant,
        write_timeout: Duration,
    ) -> Self {
        Replayer {
            http,
            endpoint,
            dead_letters,
            deadline,
            write_timeout,
            writes: AtomicUsize::new(0),
            dead_lettered: AtomicUsize::new(0),
            source_only: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            barriers_passed: AtomicUsize::new(0),
            parking: None,
            barriers: None,
            concurrency: DEFAULT_CONCURRENCY,
            failing: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// The earliest record of the batch whose write is being retried now, with its last failure
    /// and when its first failure came: a shard stopped there until it goes through.
    pub fn failing_now(&self) -> Option<(Stop, i64)> {
        self.failing.lock().unwrap_or_else(|p| p.into_inner()).first_key_value().map(|(_, v)| v.clone())
    }

    fn set_failing(&self, index: usize, failure: Option<Stop>) {
        let mut failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        match failure {
            Some(stop) => {
                let first = failing.get(&index).map_or_else(now_ms, |(_, first)| *first);
                failing.insert(index, (stop, first));
            }
            None => {
                failing.remove(&index);
            }
        }
    }

    /// Writes up to `n` targets at the same time.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Honours the operator's park rule for the batch's shard.
    pub fn with_parking(mut self, parking: Parking<'a>) -> Self {
        self.parking = Some(parking);
        self
    }

    /// Records the barriers it passes there (without it, a barrier stops the batch: its proof
    /// has nowhere to go).
    pub fn with_barriers(mut self, barriers: &'a BarrierBook) -> Self {
        self.barriers = Some(barriers);
        self
    }

    pub fn stats(&self) -> Stats {
        Stats {
            writes: self.writes.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            source_only: self.source_only.load(Ordering::Relaxed),
            parked: self.parked.load(Ordering::Relaxed),
            barriers: self.barriers_passed.load(Ordering::Relaxed),
        }
    }

    /// Runs the steps in order; stops at the first record that could not be written.
    pub async fn run(&self, items: &[Item<'_>], steps: &[Step]) -> Result<(), Stop> {
        for step in steps {
            self.step(items, step).await?;
        }
        Ok(())
    }

    /// Runs one step. The parts of a [`Step::Concurrent`] all run, `concurrency` at a time, even
    /// when one stops: the batch then stops at the earliest record one of them could not write,
    /// and every record before it is durable (each lane writes in order and stops at its first
    /// failure; a record of another lane is either written or after its own lane's stop).
    fn step<'f>(&'f self, items: &'f [Item<'f>], step: &'f Step) -> Boxed<'f, Result<(), Stop>> {
        Box::pin(async move {
            match step {
                Step::Concurrent(parts) => {
                    let mut runs: Vec<Boxed<'f, Result<(), Stop>>> = Vec::with_capacity(parts.len());
                    for part in parts {
                        runs.push(self.step(items, part));
                    }
                    let done: Vec<Result<(), Stop>> =
                        futures::stream::iter(runs).buffer_unordered(self.concurrency).collect().await;
                    match done.into_iter().filter_map(Result::err).min_by_key(|s| s.at) {
                        Some(stop) => Err(stop),
                        None => Ok(()),
                    }
                }
                Step::Lane(groups) => {
                    for group in groups {
                        self.write_group(items, group, 0, group.items.len()).await?;
                    }
                    Ok(())
                }
                Step::Skip { .. } => {
                    self.source_only.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Step::Unreadable { index, error } => {
                    let item = &items[*index];
                    self.dead_letter(item, None, format!("not a readable stream record: {error}"), None).await
                }
                Step::Barrier { index, barrier } => {
                    // Every step before this one is done (a failure would have returned).
                    let item = &items[*index];
                    let Some(book) = self.barriers else {
                        return Err(Stop::other(
                            *index,
                            "a barrier reached a writer with nowhere to record it",
                        ));
                    };
                    match book.passed(barrier, item.shard_id, item.sequence_number).await {
                        Ok(key) => {
                            self.barriers_passed.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(
                                barrier = %barrier.id, shard = item.shard_id, sequence_number = item.sequence_number, key = %key,
                                "barrier passed: every record before it in this shard is durably written"
                            );
                        }
                        Err(e) => {
                            return Err(Stop::other(
                                *index,
                                format!("could not record passing barrier {}: {e}", barrier.id),
                            ));
                        }
                    }
                    Ok(())
                }
                Step::Newer { index, version } => {
                    let item = &items[*index];
                    let reason = format!(
                        "stream record format version {version} {NEWER_FORMAT} ({FORMAT_VERSION}): deploy \
                         the stream writer of the same release as the kinesis-writer and the CLI; the \
                         record is retried, never dropped"
                    );
                    tracing::error!(
                        shard = item.shard_id,
                        sequence_number = item.sequence_number,
                        "{reason}"
                    );
                    Err(Stop { at: *index, reason, class: StallClass::Configuration, status: None })
                }
                Step::Unmapped { index, bucket } => {
                    let item = &items[*index];
                    let reason = format!(
                        "bucket {bucket:?} {UNMAPPED_REASON} and \
                         \"unmapped\" is \"fail\": add a mapping for it (or set \"unmapped\": \
                         \"source-only\"), or park the shard; the record is retried, never dropped"
                    );
                    if let Some(parked) = self.parked_reason(None, &reason).await {
                        return self.dead_letter(item, None, parked, None).await;
                    }
                    tracing::error!(shard = item.shard_id, sequence_number = item.sequence_number, bucket = %bucket, "{reason}");
                    Err(Stop { at: *index, reason, class: StallClass::Configuration, status: None })
                }
                Step::Write(group) => self.write_group(items, group, 0, group.items.len()).await,
            }
        })
    }

    /// Writes the members `from..to` (positions in `group.items`) of a group, in order.
    fn write_group<'f>(
        &'f self,
        items: &'f [Item<'f>],
        group: &'f WriteGroup,
        from: usize,
        to: usize,
    ) -> Boxed<'f, Result<(), Stop>> {
        Box::pin(async move {
            // One record goes as it came: a write that fails for it alone is about it alone.
            let form = if to - from == 1 { &group.own[from] } else { &group.form };
            let merged = group.own[from..to].iter().any(|own| own != form);
            let members = &group.items[from..to];
            let Some(body) = self.body(items, group, form, from, to) else {
                return self.write_as_sent(items, group, from, to).await;
            };
            let target =
                Target { api: form.api, params: &form.params, authorization: form.authorization.as_ref() };
            match self.send(&target, Bytes::from(body), members[0], merged).await? {
                WriteAction::Done => Ok(()),
                WriteAction::Split if members.len() > 1 => {
                    let half = from + members.len() / 2;
                    self.write_group(items, group, from, half).await?;
                    self.write_group(items, group, half, to).await
                }
                WriteAction::Split => self.split_record(items, &target, members[0]).await,
                WriteAction::DeadLetter { .. } if members.len() > 1 => {
                    // Find the guilty record(s): each on its own, in order.
                    for at in from..to {
                        self.write_group(items, group, at, at + 1).await?;
                    }
                    Ok(())
                }
                WriteAction::DeadLetter { status, reason } => {
                    self.dead_letter(&items[members[0]], Some(&target), reason, Some(status)).await
                }
                // Only a merged write comes back for its credential, org or bucket.
                WriteAction::Retry { .. } if merged => self.write_as_sent(items, group, from, to).await,
                WriteAction::Retry { .. } => unreachable_retry(members[0]),
            }
        })
    }

    /// The members `from..to` as they came: runs of one form, in order.
    async fn write_as_sent(
        &self,
        items: &[Item<'_>],
        group: &WriteGroup,
        from: usize,
        to: usize,
    ) -> Result<(), Stop> {
        for run in group.part(from, to).as_sent() {
            self.write_group(items, &run, 0, run.items.len()).await?;
        }
        Ok(())
    }

    /// The gzip body of members `from..to` in `form`: each record's body as it is when its unit
    /// is the form's, else rewritten to it. `None` when a record cannot be rewritten exactly
    /// (`shared::line_protocol::rescale`).
    fn body(
        &self,
        items: &[Item<'_>],
        group: &WriteGroup,
        form: &Form,
        from: usize,
        to: usize,
    ) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        for (index, own) in group.items[from..to].iter().zip(&group.own[from..to]) {
            let Ok(record) = &items[*index].decoded else { continue };
            if own.unit == form.unit {
                body.extend_from_slice(record.gzip_body);
                continue;
            }
            let raw = record.body().ok()?;
            let rewritten = rescale(&raw, own.unit, form.unit).ok()?;
            body.extend_from_slice(&gzip(&rewritten).ok()?);
        }
        Some(body)
    }

    /// A single record the database found too large: send it in pieces of whole lines.
    async fn split_record(&self, items: &[Item<'_>], target: &Target<'_>, index: usize) -> Result<(), Stop> {
        let item = &items[index];
        let raw = match &item.decoded {
            Ok(r) => r
                .body()
                .map_err(|e| Stop::other(index, format!("decompressing a record to split it: {e}")))?,
            Err(e) => return Err(Stop::other(index, e.to_string())),
        };
        let mut pending: Vec<Vec<u8>> = vec![raw];
        while let Some(piece) = pending.pop() {
            let starts: Vec<usize> = split_lines(&piece).map(|l| l.start).collect();
            let body = gzip(&piece).map_err(|e| Stop::other(index, e.to_string()))?;
            match self.send(target, Bytes::from(body), index, false).await? {
                WriteAction::Done => {}
                WriteAction::Split if starts.len() > 1 => {
                    let cut = starts[starts.len() / 2];
                    // Handle the first half first: push the second half below it.
                    pending.push(piece[cut..].to_vec());
                    pending.push(piece[..cut].to_vec());
                }
                WriteAction::Split => {
                    return self
                        .dead_letter(
                            item,
                            Some(target),
                            "a single line is larger than the database accepts (413)".into(),
                            Some(413),
                        )
                        .await;
                }
                WriteAction::DeadLetter { status, reason } => {
                    return self.dead_letter(item, Some(target), reason, Some(status)).await;
                }
                WriteAction::Retry { .. } => return unreachable_retry(index),
            }
        }
        Ok(())
    }

    /// Sends one body, retrying configuration and transient failures until the deadline. Never
    /// returns `Retry`: when time runs out it stops the batch at `index`.
    ///
    /// A `merged` write that fails for its credential, org or bucket is not retried: it comes
    /// back as `Retry` at once, to be sent as its records came.
    async fn send(
        &self,
        target: &Target<'_>,
        gzip_body: Bytes,
        index: usize,
        merged: bool,
    ) -> Result<WriteAction, Stop> {
        let result = self.send_retrying(target, gzip_body, index, merged).await;
        self.set_failing(index, None);
        result
    }

    async fn send_retrying(
        &self,
        target: &Target<'_>,
        gzip_body: Bytes,
        index: usize,
        merged: bool,
    ) -> Result<WriteAction, Stop> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        // The last failure, "<status> from <host>: <reason>", its class and status, for the stop.
        let mut last_failure: Option<(String, StallClass, Option<u16>)> = None;
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left < MIN_WRITE_TIME {
                let near = format!(
                    "the invocation's deadline is {} ms away: no write started, the batch is handed back",
                    left.as_millis()
                );
                return Err(match last_failure {
                    Some((f, class, status)) => {
                        Stop { at: index, reason: format!("{f} ({near})"), class, status }
                    }
                    None => Stop { at: index, reason: near, class: StallClass::Transient, status: None },
                });
            }
            let req = write_request(
                self.http,
                self.endpoint.base(),
                target.api,
                target.params,
                target.authorization,
                gzip_body.clone(),
            )
            .timeout(left.min(self.write_timeout));
            let action = send_write(req).await;
            self.writes.fetch_add(1, Ordering::Relaxed);
            let WriteAction::Retry { class, status, reason, retry_after } = action else { return Ok(action) };
            if merged && class == RetryClass::Configuration {
                tracing::info!(
                    status, reason = %reason,
                    "a merged write was refused for its credential, org or bucket: its records go again as they came"
                );
                return Ok(WriteAction::Retry { class, status, reason, retry_after });
            }
            let wait = backoff.next_delay(retry_after);
            let host = self.endpoint.host();
            match class {
                RetryClass::Configuration => tracing::error!(
                    endpoint = %host, status, reason = %reason, api = ?target.api, bucket = target.params.bucket.as_deref().or(target.params.db.as_deref()),
                    "the database refuses this write's credential, org or bucket: fix the configuration; the write is retried, never dropped"
                ),
                RetryClass::Transient => {
                    tracing::warn!(endpoint = %host, status, reason = %reason, wait_ms = wait.as_millis() as u64, "write failed; retrying")
                }
            }
            let status_text = status.map(|s| s.to_string()).unwrap_or_else(|| "no answer".into());
            let failure = format!("{status_text} from {host}: {reason}");
            if class == RetryClass::Configuration
                && let Some(parked) = self.parked_reason(status, &failure).await
            {
                return Ok(WriteAction::DeadLetter { status: status.unwrap_or(0), reason: parked });
            }
            let class = match class {
                RetryClass::Configuration => StallClass::Configuration,
                RetryClass::Transient => StallClass::Transient,
            };
            if Instant::now() + wait >= self.deadline {
                return Err(Stop { at: index, reason: failure, class, status });
            }
            self.set_failing(index, Some(Stop { at: index, reason: failure.clone(), class, status }));
            last_failure = Some((failure, class, status));
            tokio::time::sleep(wait).await;
        }
    }

    /// When the operator's park rule covers a configuration failure with `status`, the reason
    /// its record is dead-lettered with (and it is counted as parked); `None` otherwise.
    async fn parked_reason(&self, status: Option<u16>, failure: &str) -> Option<String> {
        let rule = self.parking.as_ref()?.rule().await?;
        if !rule.applies(status, now_ms()) {
            return None;
        }
        self.parked.fetch_add(1, Ordering::Relaxed);
        Some(format!("parked by the operator ({}) after: {failure}", rule.note))
    }

    async fn dead_letter(
        &self,
        item: &Item<'_>,
        target: Option<&Target<'_>>,
        reason: String,
        status: Option<u16>,
    ) -> Result<(), Stop> {
        let letter = DeadLetter::new(
            self.dead_letters.target(),
            item,
            self.endpoint,
            target.map(|t| (t.api, t.params)),
            status,
            &reason,
        );
        match self.dead_letters.put(&letter).await {
            Ok(key) => {
                self.dead_lettered.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    key = %key, status, reason = %reason, shard = item.shard_id, sequence_number = item.sequence_number,
                    "record refused by the database as bad data; kept in dead-letter storage and skipped"
                );
                Ok(())
            }
            Err(e) => Err(Stop::other(
                item.index,
                format!("could not store a refused record in dead-letter storage: {e}"),
            )),
        }
    }
}

fn unreachable_retry(index: usize) -> Result<(), Stop> {
    // `send` turns every Retry into a Stop; reaching this would be a bug, and the safe answer is
    // to stop the batch here so the record is retried rather than skipped.
    Err(Stop::other(index, "internal: a retry escaped the retry loop"))
}
