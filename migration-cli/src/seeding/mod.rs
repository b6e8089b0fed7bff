//! The seeding migration: the drop-in for AWS's `influx_migration.py` and its parts.
//!
//! [`command`] is the command (no subcommand): the script's options and steps. Its parts:
//!
//! | module | what it does |
//! |---|---|
//! | [`preflight`] | the checks before anything changes (hosts, tokens, orgs, buckets, versions) |
//! | [`backup`] | native backup over `/api/v2/backup/*`, the files `influx backup` writes |
//! | [`restore`] | native restore over `/api/v2/restore/*`, one bucket or full, resumable |
//! | [`restore_state`] | the state file that makes a restore resumable |
//! | [`rebuild`] | `--full` into an older InfluxDB: the metadata made again through the API |
//! | [`token_map`] | `authorizations.json`: what the rebuild did to each token |
//! | [`csv`] | `--csv`: annotated CSV export and line-protocol import |
//! | [`store`] | the backup directory, local or in S3 ([`s3`]) |
//! | [`retention_watch`] | the warning when the seeding outlasts the live stream's retention |
//! | [`performance`], [`progress`], [`prompt`] | `performance.txt`, progress bars, the YES prompts |
//!
//! May use: [`crate::influx`], [`crate::compare`] (the verification at the end),
//! [`crate::scheduled`] (a seeding leaves scheduled work held at the destination) and `shared`.

pub mod backup;
pub mod command;
pub mod csv;
pub mod performance;
pub mod preflight;
pub mod progress;
pub mod prompt;
pub mod rebuild;
pub mod restore;
pub mod restore_state;
pub mod retention_watch;
pub mod s3;
pub mod store;
pub mod token_map;

pub use command::{MigrateArgs, run};
