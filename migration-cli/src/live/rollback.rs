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
use time::OffsetDateTime;

use crate::exit::Exit;
use crate::live::CommonArgs;
use crate::live::deployment::{Aws, Deployment};
use crate::live::endpoint::{self, Switched};
use crate::live::lag::{human_duration, rfc3339};
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
    out.check(
        "read endpoint",
        Verdict::Info,
        format!(
            "reads go to the {} ({}), secret version {}",
            before.as_str(),
            current.secret.read_endpoint().host(),
            current.version_id
        ),
    );
    let switched = endpoint::switch_reads(&aws.secrets, &current, Role::Source).await?;
    let mut data = json!({"before": before.as_str(), "switched": switched});
    match &switched {
        Switched::Already { .. } => {
            out.note("nothing to do: reads already go to the source");
        }
        Switched::Written { previous_version_id, version_id } => {
            out.did(format!(
                "wrote version {version_id} of secret {secret_id} (was {previous_version_id}): reads go to the source ({})",
                current.secret.source.host()
            ));
            let cache = endpoint::router_cache_time(&aws.lambda, dep.router_function.as_deref()).await;
            let all_by = OffsetDateTime::now_utc() + cache.duration();
            out.note(format!(
                "every query router reads from the source by {} (cache time {}: {})",
                rfc3339(all_by),
                human_duration(cache.duration()),
                cache.from
            ));
            data["cache_time"] = json!(cache);
            data["all_routers_switched_by"] = json!(rfc3339(all_by));
        }
    }
    Ok(out.finish(Exit::Success, data))
}
