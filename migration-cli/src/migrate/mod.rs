//! The seeding migration (drop-in for `influx_migration.py`).

use clap::Args;

use crate::exit::Exit;

/// The options of `influx_migration.py`, same names and meaning.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Destination InfluxDB host, e.g. https://abc.timestream-influxdb.us-east-1.on.aws:8086
    #[arg(long, required = true)]
    pub dest_host: Option<String>,
}

pub async fn run(_args: MigrateArgs) -> anyhow::Result<Exit> {
    anyhow::bail!("the seeding migration is not available in this build")
}
