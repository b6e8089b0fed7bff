//! `park`: the operator's decision to set aside the records that stall a shard.
//!
//! A writer stopped by a configuration failure (a revoked token, a deleted bucket) retries the
//! record forever: it must never drop data, and behind it the shard's records wait until the
//! stream's retention runs out. `park` writes a rule (`parked/<target>/<shard>.json`) that the
//! writer reads at its next failure: every record of that shard failing with that status goes
//! to dead-letter storage, with the operator's note in its reason, and the shard moves on. The
//! rule names one status (a 403 rule does not park a 404), expires (`--minutes`), and is removed
//! with `--release`. Parked records come back with `influx-migration redrive` once the cause is
//! fixed.
//!
//! Nothing is parked without an explicit `--note`, only configuration stalls are parked (a
//! transient failure passes by itself), and running the same command twice writes the same
//! rule again.

use clap::Args;
use serde_json::json;
use shared::secret::Role;
use shared::stall::{ParkRule, StallClass};

use crate::aws::deployment::{Aws, Deployment};
use crate::aws::stalls;
use crate::exit::Exit;
use crate::live::options::CommonArgs;
use crate::output::{Output, Verdict};

#[derive(Debug, Args)]
pub struct ParkArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Which writer: `destination` or `source`.
    #[arg(long, default_value = "destination", value_parser = parse_target)]
    pub target: Role,
    /// The shard (repeatable). Default: every shard of that writer stalled now for a
    /// configuration reason.
    #[arg(long = "shard", value_name = "SHARD_ID")]
    pub shards: Vec<String>,
    /// Every open shard of the stream, stalled now or not (a revoked token stalls them all, one
    /// after the other). The status is the one the stalled shards share, or --status.
    #[arg(long, conflicts_with = "shards")]
    pub all_shards: bool,
    /// Park failures with this HTTP status. Default: the status the shard is stalled with now.
    #[arg(long)]
    pub status: Option<u16>,
    /// How long the rule holds; after that, failures stall the shard again.
    #[arg(long, default_value_t = 60, value_name = "MINUTES")]
    pub minutes: u64,
    /// Why (e.g. a ticket): kept in the reason of every record parked. Required to park.
    #[arg(long, required_unless_present = "release")]
    pub note: Option<String>,
    /// Remove the rule instead: failures stall the shard again.
    #[arg(long)]
    pub release: bool,
}

/// The stream's open shards.
async fn open_shards(kinesis: &aws_sdk_kinesis::Client, stream: &str) -> anyhow::Result<Vec<String>> {
    let out = kinesis.list_shards().stream_name(stream).send().await.map_err(|e| {
        anyhow::anyhow!("listing the shards of {stream}: {}", crate::aws::sdk_error::describe(&e))
    })?;
    Ok(out
        .shards()
        .iter()
        .filter(|s| s.sequence_number_range().and_then(|r| r.ending_sequence_number()).is_none())
        .map(|s| s.shard_id().to_string())
        .collect())
}

/// `source` or `destination`.
pub fn parse_target(s: &str) -> Result<Role, String> {
    match s.to_ascii_lowercase().as_str() {
        "destination" => Ok(Role::Destination),
        "source" => Ok(Role::Source),
        _ => Err("must be \"destination\" or \"source\"".into()),
    }
}

pub async fn run(args: ParkArgs) -> anyhow::Result<Exit> {
    let mut out = Output::new("park", args.common.json);
    let aws = Aws::connect(&args.common.aws).await;
    let dep = Deployment::resolve(&args.common.aws, &aws).await?;
    let bucket = dep.dead_letter_bucket()?.to_string();
    let target = args.target;
    let now = stalls::now_ms();

    if args.release {
        let shards: Vec<String> = if args.shards.is_empty() {
            stalls::rules(&aws.s3, &bucket)
                .await?
                .into_iter()
                .filter(|r| r.target == target)
                .map(|r| r.shard_id)
                .collect()
        } else {
            args.shards.clone()
        };
        for shard in &shards {
            stalls::delete_rule(&aws.s3, &bucket, target, shard).await?;
            out.did(format!("released {shard} of the {} writer: failures stall it again", target.as_str()));
        }
        if shards.is_empty() {
            out.note(format!("no park rule for the {} writer", target.as_str()));
        }
        return Ok(out.finish(Exit::Success, json!({"released": shards})));
    }

    let note = args.note.clone().unwrap_or_default();
    let stalled: Vec<_> =
        stalls::stalls(&aws.s3, &bucket).await?.into_iter().filter(|s| s.target == target).collect();
    let shards: Vec<String> = if args.all_shards {
        let stream = dep.stream_name.as_deref().ok_or_else(|| {
            anyhow::anyhow!("--all-shards needs the stream: pass --stack <core stack> or --stream-name")
        })?;
        open_shards(&aws.kinesis, stream).await?
    } else if args.shards.is_empty() {
        stalled.iter().map(|s| s.shard_id.clone()).collect()
    } else {
        args.shards.clone()
    };
    // The status the stalled shards share stands for the shards not stalled yet.
    let mut statuses: Vec<Option<u16>> =
        stalled.iter().filter(|s| s.class == StallClass::Configuration).map(|s| s.status).collect();
    statuses.dedup();
    let shared_status = if statuses.len() == 1 { statuses[0] } else { None };
    if shards.is_empty() {
        out.check(
            "stalled shards",
            Verdict::Refused,
            format!("no shard of the {} writer is stalled: nothing to park", target.as_str()),
        );
        return Ok(out.finish(Exit::Refused, json!({"parked": []})));
    }
    let mut rules = Vec::new();
    let mut refused = false;
    for shard in &shards {
        let stall = stalled.iter().find(|s| &s.shard_id == shard);
        if let Some(s) = stall {
            out.check("stall", Verdict::Info, stalls::describe(s, dep.retention_hours, now));
        }
        if let Some(s) = stall
            && s.is_newer_format()
        {
            out.check(
                shard,
                Verdict::Refused,
                "stopped at a record of a newer format than its stream writer reads (a barrier of `cutover`, \
                 or a record of a later gateway): no park rule releases it, since such a record is never \
                 written nor dead-lettered. Deploy the stream writer of the same release as the CLI and the \
                 gateway; it then goes on by itself",
            );
            refused = true;
            continue;
        }
        let status = match (args.status, stall) {
            (Some(st), _) => Some(st),
            (None, Some(s)) if s.class == StallClass::Configuration => s.status,
            (None, Some(s)) => {
                out.check(
                    shard,
                    Verdict::Refused,
                    format!(
                        "stalled for a {} reason, which passes by itself; only configuration failures are parked",
                        s.class.as_str()
                    ),
                );
                refused = true;
                continue;
            }
            (None, None) if args.all_shards && shared_status.is_some() => shared_status,
            (None, None) => {
                out.check(
                    shard,
                    Verdict::Refused,
                    "not stalled now: give --status to park a failure before it happens",
                );
                refused = true;
                continue;
            }
        };
        let rule = ParkRule {
            target,
            shard_id: shard.clone(),
            status,
            parked_at_ms: now,
            expires_at_ms: now + (args.minutes as i64) * 60_000,
            note: note.clone(),
        };
        stalls::put_rule(&aws.s3, &bucket, &rule).await?;
        out.did(format!(
            "parked {shard} of the {} writer: records failing with {} go to dead-letter storage until {}",
            target.as_str(),
            status.map(|s| s.to_string()).unwrap_or_else(|| "no status".into()),
            stalls::rfc3339_ms(rule.expires_at_ms),
        ));
        rules.push(rule);
    }
    if !rules.is_empty() {
        out.note(format!(
            "the writer parks at its next retry; once the cause is fixed: influx-migration park --release --target {t}, then influx-migration redrive --target {t}",
            t = target.as_str()
        ));
    }
    let exit = if refused { Exit::Refused } else { Exit::Success };
    Ok(out.finish(exit, json!({"parked": rules})))
}
