//! The live-migration operations: one subcommand per step of the runbook (docs/runbook.md).
//!
//! | command | what it does |
//! |---|---|
//! | `status` | stream retention and expiry headroom, mappings, throttle, lag, read endpoint, newest point per bucket |
//! | `throttle` / `unthrottle` | reserved concurrency 0 / none on the destination writer (and its lag alarm's actions off / on) |
//! | `verify` | per bucket and measurement value counts (and with `--content` digests by time window) at source and destination; exit 3 on a difference |
//! | `repair` | makes the windows that differ right at the destination (or the source), then checks they match |
//! | `cutover` | reads to the destination, after checking the writer is unthrottled, caught up and verified |
//! | `cutover` also | hands scheduled work (tasks, checks, rules) to the destination first, replaying the runs it missed |
//! | `rollback` | reads back to the source, then scheduled work back to it |
//! | `handover` | only the handover of scheduled work, either way (for a `--full` seeding used without the live path) |
//! | `park` | records that stall a shard for a configuration reason go to dead-letter storage, by the operator's rule |
//! | `redrive` | dead-lettered records written again once their cause is fixed |
//! | `tokens` | after a `--full` rebuild with new tokens: what each client uses once it leaves the gateway; `--apply` maps clients' own tokens at the gateway |
//!
//! Every command is idempotent (a second run finds the work done and says so), prints each check
//! and each change, and with `--json` prints one JSON document on stdout instead. Exit codes:
//! [`crate::exit`] (3 = differences, 4 = a precondition refused).
//!
//! Configuration: the core stack's outputs (`--stack`) or explicit names
//! ([`crate::aws::deployment`]); the InfluxDB addresses from the endpoint secret or
//! `--src-host` / `--dest-host`, tokens from `INFLUX_SRC_TOKEN` / `INFLUX_DEST_TOKEN`
//! ([`databases`]); the lag from CloudWatch or the local stack's lag file ([`crate::aws::lag`]).
//!
//! Each command is one file named for it; [`options`] holds the flags every command takes,
//! [`databases`] the two InfluxDB servers a command talks to, [`bypass_check`] the check for
//! writes that bypass the gateway that `status`, `verify` and `cutover` make, and [`barrier_wait`]
//! the barrier through the stream that `cutover` (and `verify --barrier`) waits for. The work itself is
//! done by the engines ([`crate::compare`], [`crate::scheduled`]) and the clients
//! ([`crate::aws`], [`crate::influx`]).

mod barrier_wait;
mod bypass_check;
mod cutover;
mod databases;
mod handover;
mod options;
mod park;
mod redrive;
mod repair;
mod rollback;
mod status;
mod throttle;
mod tokens;
mod verify;

use clap::Subcommand;

use crate::exit::Exit;

#[derive(Debug, Subcommand)]
pub enum LiveCommand {
    /// Show the live migration's state: stream retention and how close the oldest unprocessed
    /// record is to expiry, each mapping, the destination writer's throttle and lag, the read
    /// endpoint, and per bucket the newest point at source and destination.
    Status(status::StatusArgs),
    /// Hold the destination writer (reserved concurrency 0): records wait in the stream.
    Throttle(throttle::ThrottleArgs),
    /// Release the destination writer (no reserved concurrency): it replays the waiting records.
    Unthrottle(throttle::ThrottleArgs),
    /// Compare per bucket and measurement the number of values at source and destination over a
    /// time window; exit 3 on any difference.
    Verify(verify::VerifyArgs),
    /// Make the time windows whose content differs right: values missing or changed at the
    /// destination are copied from the source (or the other way with --from destination); values
    /// only the repaired side holds are deleted with --delete-extra. Then checks each window
    /// matches; exit 3 if any still differs.
    Repair(repair::RepairArgs),
    /// Send reads to the destination. Refuses (exit 4) unless the destination writer is
    /// unthrottled, its lag is under the threshold and verify passes; --force overrides. Before
    /// the switch, scheduled work (tasks, checks, rules) moves to the destination, which replays
    /// the runs it missed.
    Cutover(cutover::CutoverArgs),
    /// Send reads back to the source, then hand scheduled work (tasks, checks, notification
    /// rules) back to it, replaying the runs it missed.
    Rollback(rollback::RollbackArgs),
    /// Hand scheduled work (tasks, checks, notification rules) to one database: held (inactive)
    /// at the other, the runs it missed replayed, then active. cutover and rollback do this
    /// themselves; this is for a --full seeding used without the live path.
    Handover(handover::HandoverArgs),
    /// Set aside the records that stall a shard: records of that shard failing with that status
    /// go to dead-letter storage (with your --note) until the rule expires or is released.
    Park(park::ParkArgs),
    /// Write dead-lettered records again (all, or by shard, bucket, reason or time) once their
    /// cause is fixed; each record that lands is moved under redriven/.
    Redrive(redrive::RedriveArgs),
    /// After a --full migration that rebuilt the metadata at an older destination (new tokens):
    /// per authorization, what a client uses once it leaves the gateway (tokens only with
    /// --show-tokens); --apply lets the gateway map the clients' own tokens to the new ones.
    Tokens(tokens::TokensArgs),
}

impl LiveCommand {
    /// The command's name and whether it was asked for JSON.
    fn name_and_json(&self) -> (&'static str, bool) {
        match self {
            LiveCommand::Status(a) => ("status", a.common.json),
            LiveCommand::Throttle(a) => ("throttle", a.common.json),
            LiveCommand::Unthrottle(a) => ("unthrottle", a.common.json),
            LiveCommand::Verify(a) => ("verify", a.common.json),
            LiveCommand::Repair(a) => ("repair", a.common.json),
            LiveCommand::Cutover(a) => ("cutover", a.common.json),
            LiveCommand::Rollback(a) => ("rollback", a.common.json),
            LiveCommand::Handover(a) => ("handover", a.common.json),
            LiveCommand::Park(a) => ("park", a.common.json),
            LiveCommand::Redrive(a) => ("redrive", a.common.json),
            LiveCommand::Tokens(a) => ("tokens", a.common.json),
        }
    }
}

pub async fn run(cmd: LiveCommand) -> anyhow::Result<Exit> {
    // Plain logs on stderr; AWS SDK chatter only when RUST_LOG asks for it.
    shared::logging::init_cli("warn");
    let (name, json) = cmd.name_and_json();
    let outcome = match cmd {
        LiveCommand::Status(a) => status::run(a).await,
        LiveCommand::Throttle(a) => throttle::run(a, throttle::Direction::Hold).await,
        LiveCommand::Unthrottle(a) => throttle::run(a, throttle::Direction::Release).await,
        LiveCommand::Verify(a) => verify::run(a).await,
        LiveCommand::Repair(a) => repair::run(a).await,
        LiveCommand::Cutover(a) => cutover::run(a).await,
        LiveCommand::Rollback(a) => rollback::run(a).await,
        LiveCommand::Handover(a) => handover::run(a).await,
        LiveCommand::Park(a) => park::run(a).await,
        LiveCommand::Redrive(a) => redrive::run(a).await,
        LiveCommand::Tokens(a) => tokens::run(a).await,
    };
    // A script asked for one JSON document: it gets one even when the command failed (the
    // message also goes to stderr, from main).
    if let (Err(e), true) = (&outcome, json) {
        let doc = serde_json::json!({
            "command": name,
            "exit_code": Exit::Failure.code(),
            "outcome": "failure",
            "error": format!("{e:#}"),
        });
        println!("{doc}");
    }
    outcome
}
