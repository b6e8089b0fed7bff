//! `rollback`: send reads back to the source.
//!
//! The emergency switch, so it checks nothing but the secret itself: a new secret version with
//! `"read": "source"` (idempotency token as for `cutover`), confirmed by reading it back, and the
//! time by which every router reads from the source again. Reads already on the source make it a
//! no-op. Writes are untouched: both stream writers keep replaying, so a later `cutover` finds
//! the destination current.
//!
//! Then scheduled work goes back to the source ([`crate::live::handover`], the destination
//! giving, the source taking): the source replays the runs it missed since the cutover, so its
//! derived buckets are whole again, and its checks and rules run again. This comes after the
//! switch, so an emergency is never slowed by it; if it fails (tokens missing, a server down),
//! reads are still back and the command exits 1 saying so: run it again to finish.
//! `--dry-run` prints both steps and changes nothing.

use std::collections::BTreeMap;

use clap::Args;
use serde_json::json;
use shared::secret::Role;

use crate::aws::deployment::{Aws, Deployment};
use crate::aws::endpoint;
use crate::exit::Exit;
use crate::live::databases::{Databases, InfluxArgs};
use crate::live::options::CommonArgs;
use crate::output::{Output, Verdict};
use crate::scheduled::transfer::{Side, hand_over};

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub influx: InfluxArgs,
    /// Print what would be switched and handed back, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(args: RollbackArgs) -> anyhow::Result<Exit> {
    let mut out = Output::new("rollback", args.common.json);
    let aws = Aws::connect(&args.common.aws).await;
    let dep = Deployment::resolve(&args.common.aws, &aws).await?;
    let secret_id = dep.secret_id()?.to_string();

    let current = endpoint::read(&aws.secrets, &secret_id).await?;
    let before = current.secret.read;
    out.check("read endpoint", Verdict::Info, current.describe());
    let mut data = json!({"before": before.as_str()});
    if args.dry_run {
        if before != Role::Source {
            out.note("would switch reads to the source");
        }
    } else {
        let switched = endpoint::switch_reads(&aws.secrets, &current, Role::Source).await?;
        let router = dep.router_function.as_deref();
        let when =
            endpoint::report_switch(&mut out, &aws.lambda, router, &current, Role::Source, &switched).await;
        if let Some(d) = data.as_object_mut() {
            d.insert("switched".into(), json!(switched));
            d.extend(when);
        }
    }

    // Scheduled work back to the source, after the switch.
    let handed = match Databases::connect(&args.influx, Some(&current.secret)) {
        Ok(dbs) => {
            let back: BTreeMap<String, String> =
                current.secret.mappings.orgs.iter().map(|(k, v)| (v.clone(), k.clone())).collect();
            hand_over(
                &mut out,
                Side { api: &dbs.dst, name: "destination" },
                Side { api: &dbs.src, name: "source" },
                &back,
                args.dry_run,
            )
            .await
            .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    let exit = match &handed {
        Ok(_) => Exit::Success,
        Err(e) => {
            out.warn(format!("handing scheduled work back to the source failed: {e}"));
            out.note(
                "reads are back on the source, but tasks, checks and rules may still run at the destination: \
                 fix the above and run rollback again (it goes on from where it stopped)",
            );
            Exit::Failure
        }
    };
    if let Some(d) = data.as_object_mut() {
        let h = match &handed {
            Ok(r) => r.to_json(),
            Err(e) => json!({"error": e}),
        };
        d.insert("handover".into(), h);
    }
    if args.dry_run {
        out.note("dry run: nothing was changed");
    }
    Ok(out.finish(exit, data))
}
