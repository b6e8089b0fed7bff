//! `influx-migration`: the seeding migration and the live-migration operations.
//!
//! Run with the options of AWS's `influx_migration.py` (no subcommand) it copies buckets or a
//! whole instance from an InfluxDB OSS 2.x source to a destination, speaking the v2 HTTP API
//! (backup and restore included) and S3 itself. Its subcommands are the steps of a live
//! migration: `status`, `throttle`, `unthrottle`, `verify`, `cutover`, `rollback`.
//!
//! This file only parses the command line, sets up logging and maps the outcome to an exit code
//! (see [`exit::Exit`]); the work lives in [`migrate`] and [`live`].

mod backup;
mod bucket_work;
mod bypass;
mod compression;
mod digest;
mod exit;
mod flux_csv;
mod influx_api;
mod kv_snapshot;
mod live;
mod manifest;
mod migrate;
mod multipart;
mod performance;
mod progress;
mod prompt;
mod rebuild;
mod repair;
mod restore;
mod restore_state;
mod retention_watch;
mod s3;
mod scheduled_work;
mod store;
mod token_map;
mod verify;

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
    migrate: migrate::MigrateArgs,
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
        None => migrate::run(cli.migrate).await,
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
