//! `handover`: only the handover of scheduled work (tasks, checks, notification rules) to one
//! database, without the AWS side: for a `--full` seeding used without the live path, or a
//! handover to finish by hand. `cutover` and `rollback` make the same handover themselves; what
//! it does, step by step, is [`crate::scheduled::transfer`].

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::aws::deployment::{Aws, Deployment};
use crate::aws::endpoint;
use crate::exit::Exit;
use crate::live::databases::{Databases, InfluxArgs};
use crate::live::options::CommonArgs;
use crate::output::Output;
use crate::scheduled::transfer::{Report, Side, hand_over};
use crate::scheduled::work::WorkError;

/// Which database takes scheduled work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum To {
    Source,
    Destination,
}

/// `handover`: the handover alone, between two InfluxDB servers, without the AWS side (a
/// `--full` seeding used without the live path, or a handover to finish by hand).
#[derive(Debug, clap::Args)]
pub struct HandoverArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub influx: InfluxArgs,
    /// The database that takes scheduled work.
    #[arg(long, value_enum)]
    pub to: To,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(args: HandoverArgs) -> anyhow::Result<Exit> {
    let mut out = Output::new("handover", args.common.json);
    let secret = if args.influx.src_host.is_some() && args.influx.dest_host.is_some() {
        None
    } else {
        let aws = Aws::connect(&args.common.aws).await;
        let dep = Deployment::resolve(&args.common.aws, &aws).await?;
        Some(endpoint::read(&aws.secrets, dep.secret_id()?).await?.secret)
    };
    let dbs = Databases::connect(&args.influx, secret.as_ref())?;
    let orgs = secret.as_ref().map(|s| s.mappings.orgs.clone()).unwrap_or_default();
    let src = Side { api: &dbs.src, name: "source" };
    let dst = Side { api: &dbs.dst, name: "destination" };
    let result = match args.to {
        To::Destination => hand_over(&mut out, src, dst, &orgs, args.dry_run).await,
        To::Source => {
            let back: BTreeMap<String, String> = orgs.iter().map(|(k, v)| (v.clone(), k.clone())).collect();
            hand_over(&mut out, dst, src, &back, args.dry_run).await
        }
    };
    let data = json!({"handover": json_of(&result)});
    match result {
        Ok(r) if r.failed() > 0 => Ok(out.finish(Exit::Failure, data)),
        Ok(_) => Ok(out.finish(Exit::Success, data)),
        Err(e) => {
            out.warn(format!(
                "the handover stopped: {e}. Run the same command again: it goes on from where it stopped"
            ));
            Ok(out.finish(Exit::Failure, data))
        }
    }
}

/// The handover's part of a command's JSON.
pub fn json_of(result: &Result<Report, WorkError>) -> Value {
    match result {
        Ok(r) => r.to_json(),
        Err(e) => json!({"error": e.to_string()}),
    }
}
