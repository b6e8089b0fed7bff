//! `cutover`: send reads to the destination.
//!
//! Preconditions, each printed with its verdict:
//! 1. the destination writer is unthrottled, and at least one enabled event source mapping feeds
//!    it (otherwise the destination is not receiving the writes clients make now);
//! 2. nothing holds writes back from it: no shard its writer is stopped at (a stall record), no
//!    active park rule (its records go to dead-letter storage), and no dead letter of a record
//!    the source took that no `redrive` resolved (one both databases refused is noted: neither
//!    holds it). Its lag (IteratorAge) is
//!    printed as an indication, never taken as proof;
//! 3. the barrier ([`crate::live::barrier_wait`]): a barrier put into every open shard of the
//!    stream, passed by both stream writers in every shard within `--barrier-timeout`. Kinesis
//!    keeps order within a shard and the gateway acknowledges a write only once it is in the
//!    stream, so every write acknowledged before the barrier was put is then in both databases.
//!    While waiting, the command prints what holds each writer; at the timeout it refuses;
//! 4. `verify` passes over the window (same flags as `verify`), which ends exactly where the
//!    barrier was put: no margin, no estimate;
//! 5. no write reached the source without passing through the gateway over the last
//!    `--bypass-lookback` seconds of that window ([`crate::compare::bypass`]): a writer still writing
//!    straight to the source would lose its points when the source is switched off.
//!
//! 6. (not a check) scheduled work is handed to the destination ([`crate::live::handover`]):
//!    tasks, checks and rules stop at the source, the runs the destination missed are replayed
//!    there, and they start at the destination. Reads switch only once that is done; a
//!    handover that fails stops the cutover (exit 1) and a rerun goes on from where it stopped.
//!    `--dry-run` prints the plan and changes nothing.
//!
//! Any failure refuses with exit 4 and changes nothing; `--force` turns every refusal into a loud
//! `FORCED` and goes on (without a barrier, the window then ends where the writers' lag says).
//! The switch itself is [`crate::aws::endpoint::switch_reads`] (a new secret
//! version with an idempotency token); afterwards the command prints when every router will
//! have switched: now plus the routers' secret cache time. Reads already on the destination make
//! it a no-op.

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use shared::secret::Role;

use crate::aws::concurrency;
use crate::aws::deployment::{Aws, Deployment};
use crate::aws::endpoint::{self, Switched};
use crate::aws::event_source;
use crate::aws::lag::{AnyLag, LagReading, LagSource};
use crate::aws::replay_bound::ReplayBound;
use crate::aws::stalls;
use crate::exit::Exit;
use crate::live::barrier_wait;
use crate::live::bypass_check::{self, BypassArgs};
use crate::live::databases::{Databases, InfluxArgs};
use crate::live::handover;
use crate::live::options::CommonArgs;
use crate::live::verify::{CompareArgs, Known, WindowArgs, compare_databases};
use crate::output::{Output, Verdict};
use crate::scheduled::transfer::{Side, hand_over};

#[derive(Debug, Args)]
pub struct CutoverArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub influx: InfluxArgs,
    #[command(flatten)]
    pub window: WindowArgs,
    #[command(flatten)]
    pub compare: CompareArgs,
    #[command(flatten)]
    pub bypass: BypassArgs,
    /// How long to wait for both stream writers to pass the barrier in every shard before
    /// refusing (a writer behind by more than this, or held by a stall, refuses).
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub barrier_timeout: u64,
    /// Cut over even when a precondition does not hold (each is reported as FORCED).
    #[arg(long)]
    pub force: bool,
    /// Make the checks and print the handover of scheduled work, but change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(args: CutoverArgs) -> anyhow::Result<Exit> {
    let mut out = Output::new("cutover", args.common.json);
    let aws = Aws::connect(&args.common.aws).await;
    let dep = Deployment::resolve(&args.common.aws, &aws).await?;
    let secret_id = dep.secret_id()?.to_string();
    let function = dep.destination_function()?.to_string();

    let current = endpoint::read(&aws.secrets, &secret_id).await?;
    if current.secret.read == Role::Destination {
        out.check(
            "read endpoint",
            Verdict::Ok,
            format!(
                "reads already go to the destination ({}), secret version {}",
                current.secret.destination.host(),
                current.version_id
            ),
        );
        out.note("nothing to do: cutover is already done");
        let data = json!({"switched": Switched::Already { version_id: current.version_id.clone() }});
        return Ok(out.finish(Exit::Success, data));
    }
    out.check("read endpoint", Verdict::Info, current.describe());

    let force = args.force;
    let judge = |ok: bool| match (ok, force) {
        (true, _) => Verdict::Ok,
        (false, true) => Verdict::Forced,
        (false, false) => Verdict::Refused,
    };
    // Checks that did not hold, as "name: detail" (refusals, or with --force, overrides).
    let mut failed_checks: Vec<String> = Vec::new();

    // 1. The destination writer runs and is fed.
    let throttle = concurrency::current(&aws.lambda, &function).await?;
    let runs = !throttle.is_throttled();
    let detail = format!("{function} is {}", throttle.describe());
    out.check("destination writer unthrottled", judge(runs), &detail);
    if !runs {
        failed_checks.push(format!("destination writer unthrottled: {detail}"));
    }
    let mappings = event_source::of_function(&aws.lambda, &function).await?;
    let enabled = mappings.iter().filter(|m| m.is_enabled()).count();
    let fed = enabled > 0 && enabled == mappings.len();
    let detail = if mappings.is_empty() {
        format!("no event source mapping invokes {function}")
    } else {
        mappings.iter().map(|m| m.describe()).collect::<Vec<_>>().join("; ")
    };
    out.check("destination mapping enabled", judge(fed), &detail);
    if !fed {
        failed_checks.push(format!("destination mapping enabled: {detail}"));
    }
    for m in &mappings {
        for risk in m.drop_risks() {
            out.warn(format!("mapping {} of {function}: {risk}", m.uuid));
        }
    }

    // 2. Its lag, as an indication only: IteratorAge is the age of the last record of a batch and
    // reaches CloudWatch late; the barrier below is the proof.
    let lag_source = AnyLag::new(&args.common.aws.lag_source, aws.cloudwatch.clone());
    let lag = match lag_source.read(&function).await {
        Ok(l) => l,
        Err(e) => LagReading::unknown(&function, lag_source.name(), format!("could not be read: {e}")),
    };
    out.check(
        "destination lag",
        Verdict::Info,
        format!("{}; from {} (an indication: the barrier below is the proof)", lag.describe(), lag.source),
    );

    // 2b. Nothing holds writes back from the destination: a shard its writer is stopped at, or a
    // park rule setting a shard's records aside, means acknowledged writes it does not hold.
    match dep.dead_letter_bucket.as_deref() {
        Some(bucket) => match stalls::pending(&aws.s3, bucket, Role::Destination).await {
            Ok(found) if found.is_empty() => out.check(
                "nothing pending",
                Verdict::Ok,
                "no destination shard is stalled and no park rule is active",
            ),
            Ok(found) => {
                for f in found {
                    out.check("pending", judge(false), &f);
                    failed_checks.push(format!("pending at the destination: {f}"));
                }
            }
            Err(e) => {
                let detail = format!("the stall records could not be read: {e}");
                out.check("nothing pending", judge(false), &detail);
                failed_checks.push(format!("nothing pending: {detail}"));
            }
        },
        None => {
            let detail = "no dead-letter bucket named (--stack or --dead-letter-bucket): stalls and park rules cannot be read";
            out.check("nothing pending", judge(false), detail);
            failed_checks.push(format!("nothing pending: {detail}"));
        }
    }

    // Whether a check found the destination writer held (throttled, unfed, stalled, parked): it
    // cannot pass a barrier then, so neither the barrier nor the comparison is tried. Dead letters
    // hold nothing back, so the checks after them still run and the operator sees every refusal.
    let writer_held = !failed_checks.is_empty();

    // Dead letters: records a client was told were written and the destination refused. One the
    // source refused too is data neither database holds (noted, not a difference); one only the
    // destination refused is missing there until `redrive` lands it.
    if let Some(bucket) = dep.dead_letter_bucket.as_deref() {
        match stalls::unresolved(&aws.s3, bucket, &dep.dead_letter_prefix).await {
            Ok(found) => {
                if found.both > 0 {
                    out.note(format!(
                        "{} dead letter(s) were refused by both databases: data neither holds (not a difference \
                         between them); `influx-migration redrive --target destination` lists them",
                        found.both
                    ));
                }
                if found.destination_only.is_empty() {
                    out.check(
                        "no unresolved dead letter",
                        Verdict::Ok,
                        "every record the destination writer set aside was also refused by the source, or redriven",
                    );
                } else {
                    let named: Vec<String> = found
                        .destination_only
                        .iter()
                        .take(stalls::NAMED)
                        .map(|(k, r)| {
                            format!("s3://{bucket}/{k} ({})", r.as_deref().unwrap_or("no reason recorded"))
                        })
                        .collect();
                    let more = found.destination_only.len().saturating_sub(named.len());
                    let detail = format!(
                        "{} record(s) the source holds were set aside by the destination writer and never redriven: {}{}; \
                         fix the cause and run `influx-migration redrive --target destination`",
                        found.destination_only.len(),
                        named.join("; "),
                        if more > 0 { format!("; and {more} more") } else { String::new() }
                    );
                    out.check("no unresolved dead letter", judge(false), &detail);
                    failed_checks.push(format!("dead letters at the destination: {detail}"));
                }
            }
            Err(e) => {
                let detail = format!("the dead letters could not be listed: {e}");
                out.check("no unresolved dead letter", judge(false), &detail);
                failed_checks.push(format!("no unresolved dead letter: {detail}"));
            }
        }
    }

    // 3. Both writers hold every write acknowledged before the barrier. Skipped when the
    // destination writer is held (it cannot pass it).
    let mut barrier_json = Value::Null;
    let mut bound: Option<ReplayBound> = None;
    let mut barrier_passed = false;
    if writer_held && !force {
        out.check("barrier", Verdict::Unknown, "skipped: the destination writer is held (see above)");
    } else {
        let timeout = Duration::from_secs(args.barrier_timeout);
        match barrier_wait::prove(&mut out, &aws, &dep, &lag_source, timeout).await {
            Ok(proof) => {
                out.check("barrier", Verdict::Ok, proof.describe());
                bound = Some(proof.bound());
                barrier_json = proof.to_json();
                barrier_passed = true;
            }
            Err(e) => {
                let detail = e.to_string();
                out.check("barrier", judge(false), &detail);
                failed_checks.push(format!("barrier: {detail}"));
            }
        }
    }

    // 4. The data agrees, up to the barrier (never a fixed settle window, which can end before
    // the seeding's snapshot and so compare only what the snapshot copied). Skipped without the
    // barrier, unless forced.
    let mut verify_json = Value::Null;
    let mut bypass_json = Value::Null;
    if !barrier_passed && !force {
        out.check(
            "verify",
            Verdict::Unknown,
            "skipped: without the barrier there is nothing to compare up to",
        );
    } else {
        if bound.is_none() {
            // Forced past the barrier: the lag's estimate is all there is.
            let source_lag = match dep.source_function.as_deref() {
                Some(f) => lag_source.read(f).await.ok(),
                None => None,
            };
            bound = ReplayBound::from_readings(&lag, source_lag.as_ref());
        }
        let live_since = crate::live::verify::live_since(&aws, &dep, &mappings).await;
        let compared = compare_databases(
            &mut out,
            &args.influx,
            &args.window,
            &args.compare,
            Known {
                secret: Some(&current.secret),
                replayed: bound.as_ref(),
                live_since: live_since.as_ref(),
            },
            false,
        )
        .await?;
        let report = &compared.report;
        let clean = compared.is_clean();
        let detail = if clean {
            format!("{} bucket(s) agree ({})", report.buckets.len(), report.window)
        } else if report.buckets.is_empty() {
            format!("no bucket was compared ({})", report.window)
        } else {
            format!("{} difference(s) ({})", report.differences(), report.window)
        };
        out.check("verify", judge(clean), &detail);
        if !clean {
            failed_checks.push(format!("verify: {detail}"));
        }
        verify_json = report.to_json();

        // 5. No writer still writes straight to the source: its points would never reach the
        // destination, and are lost when the source is switched off.
        let found = bypass_check::check(
            &mut out,
            &compared.dbs,
            &compared.pairs,
            compared.until(),
            &args.bypass,
            judge(false),
        )
        .await?;
        if found.any {
            failed_checks.push(
                "bypass: writes reach the source without passing through the gateway (see above)".to_string(),
            );
        }
        bypass_json = found.json;
    }

    if !failed_checks.is_empty() && !force {
        out.note(
            "cutover refused: nothing was changed; reads stay on the source. Fix the above, or pass --force to cut over anyway",
        );
        let data = json!({"refused": out.refusals(), "barrier": barrier_json, "verify": verify_json, "bypass": bypass_json, "lag": lag, "throttle": throttle});
        return Ok(out.finish(Exit::Refused, data));
    }
    for o in &failed_checks {
        out.warn(format!("--force: cutting over although {o}"));
    }

    // 6. Scheduled work moves to the destination before reads do: from here on tasks, checks
    // and rules run there, and what they missed is replayed on the destination's complete data.
    let dbs = Databases::connect(&args.influx, Some(&current.secret))?;
    let handed = hand_over(
        &mut out,
        Side { api: &dbs.src, name: "source" },
        Side { api: &dbs.dst, name: "destination" },
        &current.secret.mappings.orgs,
        args.dry_run,
    )
    .await;
    let handover_json = handover::json_of(&handed);
    if let Err(e) = handed {
        out.warn(format!("handing scheduled work to the destination failed: {e}"));
        out.note(
            "reads stay on the source. Run cutover again: the handover goes on from where it stopped \
             (or run rollback to give scheduled work back to the source)",
        );
        let data = json!({"handover": handover_json, "barrier": barrier_json, "verify": verify_json, "bypass": bypass_json, "lag": lag});
        return Ok(out.finish(Exit::Failure, data));
    }
    if args.dry_run {
        out.note("dry run: nothing was changed; reads stay on the source");
        let data = json!({"handover": handover_json, "barrier": barrier_json, "verify": verify_json, "bypass": bypass_json, "lag": lag});
        return Ok(out.finish(Exit::Success, data));
    }

    let switched = endpoint::switch_reads(&aws.secrets, &current, Role::Destination).await?;
    let router = dep.router_function.as_deref();
    let when =
        endpoint::report_switch(&mut out, &aws.lambda, router, &current, Role::Destination, &switched).await;
    out.note(
        "the source writer keeps replaying to the source: `influx-migration rollback` switches reads back at any time",
    );
    let mut data = json!({
        "switched": switched,
        "handover": handover_json,
        "forced": failed_checks,
        "barrier": barrier_json,
        "verify": verify_json,
        "bypass": bypass_json,
        "lag": lag,
        "throttle": throttle,
    });
    if let Some(d) = data.as_object_mut() {
        d.extend(when);
    }
    Ok(out.finish(Exit::Success, data))
}
