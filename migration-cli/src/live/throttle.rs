//! `throttle` and `unthrottle`: hold or release the destination writer.
//!
//! `throttle` sets reserved concurrency 0 (records wait in the stream, up to its retention);
//! `unthrottle` removes the reservation (the mappings replay what waited, in order per shard).
//! Each reads the state first and does nothing when it already holds, then reads it again to
//! confirm. The destination lag alarm's actions follow ([`crate::aws::alarm`]).

use clap::Args;
use serde_json::json;

use crate::aws::concurrency::{self, Throttle};
use crate::aws::deployment::{Aws, Deployment};
use crate::aws::event_source;
use crate::aws::lag::LagSourceSpec;
use crate::aws::{alarm, stream};
use crate::exit::Exit;
use crate::live::options::CommonArgs;
use crate::output::{Output, Verdict};

#[derive(Debug, Args)]
pub struct ThrottleArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Which way the switch goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Hold,
    Release,
}

impl Direction {
    fn command(self) -> &'static str {
        match self {
            Direction::Hold => "throttle",
            Direction::Release => "unthrottle",
        }
    }

    /// Whether the writer is where this direction takes it.
    fn reached(self, state: Throttle) -> bool {
        match self {
            Direction::Hold => state == Throttle::Throttled,
            Direction::Release => state == Throttle::Unthrottled,
        }
    }
}

pub async fn run(args: ThrottleArgs, direction: Direction) -> anyhow::Result<Exit> {
    let command = direction.command();
    let mut out = Output::new(command, args.common.json);
    let aws = Aws::connect(&args.common.aws).await;
    let dep = Deployment::resolve(&args.common.aws, &aws).await?;
    let function = dep.destination_function()?;

    let before = concurrency::current(&aws.lambda, function).await?;
    out.check("destination writer", Verdict::Info, format!("{function} is {}", before.describe()));
    let already = direction.reached(before);
    if already {
        out.note(format!("{function} is already {command}d; nothing to change"));
    } else {
        match direction {
            Direction::Hold => {
                concurrency::hold(&aws.lambda, function).await?;
                out.did(format!(
                    "set the reserved concurrency of {function} to 0: records now wait in the stream"
                ));
            }
            Direction::Release => {
                concurrency::release(&aws.lambda, function).await?;
                out.did(format!(
                    "removed the reserved concurrency of {function}: its mappings replay the records that waited"
                ));
            }
        }
    }
    let after = concurrency::current(&aws.lambda, function).await?;
    if !direction.reached(after) {
        anyhow::bail!(
            "after {command}, {function} is {}; run `influx-migration status` and retry",
            after.describe()
        );
    }
    out.check("destination writer now", Verdict::Ok, after.describe());

    // What the change means for the records.
    let mut retention_hours = dep.retention_hours;
    if let Some(name) = &dep.stream_name {
        match stream::describe(&aws.kinesis, name).await {
            Ok(s) => retention_hours = Some(s.retention_hours),
            Err(e) => out.warn(e.to_string()),
        }
    }
    let mappings = match event_source::of_function(&aws.lambda, function).await {
        Ok(m) => m,
        Err(e) => {
            out.warn(e.to_string());
            Vec::new()
        }
    };
    match direction {
        Direction::Hold => {
            if let Some(h) = retention_hours {
                out.note(format!(
                    "records are kept for the stream's retention ({h} h): unthrottle before the oldest waiting one expires (influx-migration status shows how close it is)"
                ));
            }
        }
        Direction::Release => {
            if mappings.is_empty() {
                out.warn(format!(
                    "no event source mapping invokes {function}: nothing is replayed to the destination until infra/wiring.yaml is deployed"
                ));
            }
            for m in mappings.iter().filter(|m| !m.is_enabled()) {
                out.warn(format!(
                    "mapping {} of {function} is {}: it replays nothing until enabled",
                    m.uuid, m.state
                ));
            }
        }
    }

    // The lag alarm follows (CloudWatch only: the local stack has no alarms).
    let mut alarm_json = json!(null);
    if let (Some(name), LagSourceSpec::CloudWatch) = (&dep.lag_alarm, &args.common.aws.lag_source) {
        let enable = direction == Direction::Release;
        match alarm::set_actions(&aws.cloudwatch, name, enable).await {
            Ok(()) => {
                out.did(format!(
                    "{} the actions of alarm {name}",
                    if enable { "enabled" } else { "disabled" }
                ));
                alarm_json = json!({"name": name, "actions_enabled": enable});
            }
            Err(e) => {
                out.warn(format!(
                    "{e}; set its actions by hand (aws cloudwatch {}-alarm-actions --alarm-names {name})",
                    if enable { "enable" } else { "disable" }
                ));
                alarm_json = json!({"name": name, "error": e.to_string()});
            }
        }
    }

    let data = json!({
        "function": function,
        "before": before,
        "after": after,
        "changed": !already,
        "retention_hours": retention_hours,
        "mappings": mappings,
        "alarm": alarm_json,
    });
    Ok(out.finish(Exit::Success, data))
}
