//! The live-migration operations.

use clap::Subcommand;

use crate::exit::Exit;

#[derive(Debug, Subcommand)]
pub enum LiveCommand {
    /// Show the live migration's state.
    Status,
}

pub async fn run(_cmd: LiveCommand) -> anyhow::Result<Exit> {
    anyhow::bail!("live operations are not available in this build")
}
