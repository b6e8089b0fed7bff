//! The proof `cutover` (and `verify --barrier`) rests on: a barrier through the stream, passed by
//! both stream writers in every shard (`shared::barrier`, [`crate::aws::barrier`]).
//!
//! Two rounds. The first fixes the window's end: every write acknowledged before it was put lies
//! before it in its shard, so once both writers have passed it, both databases hold every such
//! write. The second, put once the first is passed, covers the writes that were in flight at the
//! first (received before its time, acknowledged after it): without it the comparison could
//! catch a point stamped just before the window's end in one writer's hands and not yet in the
//! other's. While waiting, every [`REPORT_EVERY`] the command prints what each missing writer is
//! held by (its stall record, a park rule, or its lag); at the timeout it fails plainly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::secret::Role;
use time::OffsetDateTime;

use crate::aws::barrier::{self, Round};
use crate::aws::deployment::{Aws, Deployment};
use crate::aws::lag::{AnyLag, LagSource, rfc3339};
use crate::aws::replay_bound::ReplayBound;
use crate::aws::stalls;
use crate::output::{Output, human_duration};

/// How often the command says what it is still waiting for.
pub const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Both writers passed both rounds in every shard.
#[derive(Debug, Clone)]
pub struct Proof {
    /// The window ends here.
    pub until: OffsetDateTime,
    pub first: Round,
    pub second: Round,
    pub targets: Vec<Role>,
    pub waited: Duration,
}

impl Proof {
    /// The replay bound it proves, to compare up to.
    pub fn bound(&self) -> ReplayBound {
        ReplayBound::proven(
            self.until,
            format!("barrier {} passed by both writers in every shard", self.first.id),
        )
    }

    /// For the operator: what was proven, and how.
    pub fn describe(&self) -> String {
        format!(
            "both rounds of barrier {} passed by the {} writer(s) in {} shard(s) within {}: every write acknowledged before {} is in both databases",
            self.first.id,
            self.targets.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(" and "),
            self.first.shards.len(),
            human_duration(self.waited),
            rfc3339(self.until)
        )
    }

    pub fn to_json(&self) -> Value {
        json!({
            "until": rfc3339(self.until),
            "first": self.first,
            "second": self.second,
            "targets": self.targets.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            "waited_ms": self.waited.as_millis() as u64,
        })
    }
}

/// Why there is no proof.
#[derive(Debug, thiserror::Error)]
pub enum NotProven {
    #[error("{0}")]
    Deployment(String),
    #[error(transparent)]
    Barrier(#[from] barrier::BarrierError),
    #[error(
        "not every writer passed barrier {id} within {}: {}. Nothing is proven about the writes acknowledged \
         since {since}; fix what holds the writer (`influx-migration status`, `park`) and run the command again \
         (or give more time with --barrier-timeout)",
        human_duration(*timeout),
        waiting.join("; ")
    )]
    Timeout { id: String, since: String, timeout: Duration, waiting: Vec<String> },
}

/// Puts both rounds and waits, at most `timeout` in all, for both writers to pass them.
pub async fn prove(
    out: &mut Output,
    aws: &Aws,
    dep: &Deployment,
    lag: &AnyLag,
    timeout: Duration,
) -> Result<Proof, NotProven> {
    let stream = dep.stream_name.as_deref().ok_or_else(|| {
        NotProven::Deployment("no stream named (--stack or --stream-name): no barrier can be put".into())
    })?;
    let bucket = dep.dead_letter_bucket.as_deref().ok_or_else(|| {
        NotProven::Deployment(
            "no dead-letter bucket named (--stack or --dead-letter-bucket): the writers' proofs cannot be read".into(),
        )
    })?;
    let mut targets = vec![Role::Destination];
    let mut functions = BTreeMap::from([(Role::Destination, dep.destination_function.clone())]);
    match &dep.source_function {
        Some(f) => {
            targets.push(Role::Source);
            functions.insert(Role::Source, Some(f.clone()));
        }
        None => out.warn(
            "no source stream writer named (--stack or --source-function): only the destination writer is waited for",
        ),
    }
    let started = Instant::now();
    let deadline = started + timeout;
    let first = barrier::put(&aws.kinesis, stream).await?;
    out.note(format!(
        "barrier {} put into {} shard(s) of {stream} at {}; waiting for the writers to pass it",
        first.id,
        first.shards.len(),
        rfc3339(first.put_at)
    ));
    let held = Held { aws, bucket, targets: &targets, functions: &functions, lag };
    held.wait(out, &first, deadline, timeout).await?;
    let second = barrier::put(&aws.kinesis, stream).await?;
    held.wait(out, &second, deadline, timeout).await?;
    let proof = Proof { until: first.put_at, first, second, targets, waited: started.elapsed() };
    Ok(proof)
}

/// What the wait needs to say what holds a writer.
struct Held<'a> {
    aws: &'a Aws,
    bucket: &'a str,
    targets: &'a [Role],
    functions: &'a BTreeMap<Role, Option<String>>,
    lag: &'a AnyLag,
}

impl Held<'_> {
    async fn wait(
        &self,
        out: &mut Output,
        round: &Round,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), NotProven> {
        let mut next_report = Instant::now() + REPORT_EVERY;
        loop {
            let passed = barrier::passed(&self.aws.s3, self.bucket, round, self.targets).await?;
            let missing = barrier::missing(round, self.targets, &passed);
            if missing.is_empty() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(NotProven::Timeout {
                    id: round.id.clone(),
                    since: rfc3339(round.put_at),
                    timeout,
                    waiting: self.why(&missing).await,
                });
            }
            if now >= next_report {
                for w in self.why(&missing).await {
                    out.note(format!("waiting for {w}"));
                }
                next_report = now + REPORT_EVERY;
            }
            tokio::time::sleep(barrier::POLL.min(deadline.saturating_duration_since(now))).await;
        }
    }

    /// Each missing writer and shard, with what holds it: a stall record, a park rule, or its
    /// lag as an indication.
    async fn why(&self, missing: &BTreeSet<(Role, String)>) -> Vec<String> {
        let now = shared::stall::now_ms();
        let stalls = stalls::stalls(&self.aws.s3, self.bucket).await.unwrap_or_default();
        let rules = stalls::rules(&self.aws.s3, self.bucket).await.unwrap_or_default();
        let mut lines = Vec::new();
        for (target, shard) in missing {
            let mut held = Vec::new();
            if let Some(s) = stalls.iter().find(|s| s.target == *target && &s.shard_id == shard) {
                held.push(format!("stalled: {}", stalls::describe(s, None, now)));
            }
            if let Some(r) =
                rules.iter().find(|r| r.target == *target && &r.shard_id == shard && now < r.expires_at_ms)
            {
                held.push(format!("park rule active until {}", stalls::rfc3339_ms(r.expires_at_ms)));
            }
            if held.is_empty() {
                let lag = match self.functions.get(target).and_then(Option::as_deref) {
                    Some(f) => match self.lag.read(f).await {
                        Ok(l) => format!("replaying, {}", l.describe()),
                        Err(e) => format!("replaying (its lag could not be read: {e})"),
                    },
                    None => "replaying".to_string(),
                };
                held.push(lag);
            }
            lines.push(format!("the {} writer in {shard} ({})", target.as_str(), held.join("; ")));
        }
        lines
    }
}
