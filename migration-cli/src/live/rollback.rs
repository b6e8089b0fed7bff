//! `rollback`: send reads back to the source.
//!
//! The emergency switch, so it checks nothing but the secret itself: a new secret version with
//! `"read": "source"` (idempotency token as for `cutover`), confirmed by reading it back, and the
//! time by which every router reads from the source again. Reads already on the source make it a
//! no-op. Writes are untouched: both stream writers keep replaying, so a later `cutover` finds
//! the destination current.

use clap::Args;
use serde_json::json;
use shared::secret::Role;

use crate::exit::Exit;
use crate::live::CommonArgs;
use crate::live::deployment::{Aws, Deployment};
use crate::live::endpoint;
use crate::live::output::{Output, Verdict};

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run(args: RollbackArgs) -> anyhow::Result<Exit> {
    let mut out = Output::new("rollback", args.common.json);
    let aws = Aws::connect(&args.common.aws).await;
    let dep = Deployment::resolve(&args.common.aws, &aws).await?;
    let secret_id = dep.secret_id()?.to_string();

    let current = endpoint::read(&aws.secrets, &secret_id).await?;
    let before = current.secret.read;
    out.check("read endpoint", Verdict::Info, current.describe());
    let switched = endpoint::switch_reads(&aws.secrets, &current, Role::Source).await?;
    let router = dep.router_function.as_deref();
    let when =
        endpoint::report_switch(&mut out, &aws.lambda, router, &current, Role::Source, &switched).await;
    let mut data = json!({"before": before.as_str(), "switched": switched});
    if let Some(d) = data.as_object_mut() {
        d.extend(when);
    }
    Ok(out.finish(Exit::Success, data))
}
