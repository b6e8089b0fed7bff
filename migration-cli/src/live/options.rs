//! The flags every live command takes.

use clap::Args;

use crate::aws::deployment::AwsArgs;

/// Flags every live command takes.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Print one JSON document on stdout instead of lines (warnings still go to stderr).
    #[arg(long)]
    pub json: bool,
}
