//! `influx-migration`: the seeding migration and the live-migration operations.
//!
//! Run with the options of AWS's `influx_migration.py` (no subcommand) it copies buckets or a
//! whole instance from an InfluxDB OSS 2.x source to a destination, speaking the v2 HTTP API
//! (backup and restore included) and S3 itself. Its subcommands are the steps of a live
//! migration: `status`, `throttle`, `unthrottle`, `verify`, `repair`, `cutover`, `rollback`,
//! `handover`, `park`, `redrive`, `tokens`.
//!
//! This file only parses the command line and maps the outcome to an exit code (see
//! [`exit::Exit`]). The folders are the architecture; dependencies point one way, from the
//! commands to the engines to the clients (`tests/tests/layout.rs` holds the code to it):
//!
//! | folder | layer | what it owns |
//! |---|---|---|
//! | [`seeding`] | command and its engine | the drop-in for `influx_migration.py`: backup, restore, the rebuild into an older InfluxDB, `--csv`, the backup directory (local or S3) |
//! | [`live`] | commands | one file per live-migration command (`status`, `verify`, `cutover`, …) |
//! | [`compare`] | engine | time windows, value counts, content digests, repair, bypass detection: source against destination, no AWS |
//! | [`scheduled`] | engine | tasks, checks and notification rules: inventory, who owns them, the handover between databases |
//! | [`aws`] | client | the live path's deployment in AWS: names, endpoint secret, stream, event source mappings, lag, stalls, alarms, throttle |
//! | [`influx`] | client | the typed InfluxDB v2 API client and the formats it speaks (annotated CSV, backup manifest, multipart, gzip, the KV snapshot) |
//!
//! Beside them, [`exit`] (exit codes) and [`output`] (what a command tells the operator) serve
//! every layer.

mod aws;
mod compare;
mod exit;
mod influx;
mod live;
mod output;
mod scheduled;
mod seeding;

use clap::{Parser, Subcommand};

use crate::exit::Exit;

#[derive(Debug, Parser)]
#[command(
    name = "influx-migration",
    version,
    about = "Migrate InfluxDB OSS 2.x to Amazon Timestream for InfluxDB, offline (seeding) or live",
    long_about = "Without a subcommand: the seeding migration, with the options of AWS's influx_migration.py \
                  (same names, same meaning). With a subcommand: one step of a live migration.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    migrate: seeding::MigrateArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Live(live::LiveCommand),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        None => seeding::run(cli.migrate).await,
        Some(Command::Live(cmd)) => live::run(cmd).await,
    };
    match outcome {
        Ok(exit) => exit.into(),
        Err(e) => {
            // `{:#}` prints the whole context chain on one line: what failed, why, what to do.
            eprintln!("error: {e:#}");
            Exit::Failure.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand's flags are consistent (`requires`, `conflicts_with` name real
    /// arguments). Regression: `verify --help` panicked when `--barrier-timeout` required an
    /// argument ID that did not exist.
    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
