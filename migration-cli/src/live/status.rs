//! `status`: where the live migration stands, read-only.
//!
//! - the stream: retention, shards, encryption, and how close the oldest record the destination
//!   writer has not replayed is to expiring (retention minus its IteratorAge; while it is held
//!   and reports none, the conservative bound of [`crate::aws::stream::Expiry::estimate`]);
//! - each mapping of the two stream writers, with any setting that could drop a record;
//! - whether the destination writer is throttled, and both writers' lag;
//! - each stalled shard (a writer stopped at one record): since when, why, the bucket, and how
//!   long until the record expires from the stream; and each park rule;
//! - the read endpoint (scheme, host and port only);
//! - per bucket, the newest point at the source and at the destination, and per measurement the
//!   writes that reached the source without passing through the gateway in the last hour
//!   ([`crate::compare::bypass`]: writers still to move) (when `INFLUX_SRC_TOKEN` and `INFLUX_DEST_TOKEN`
//!   are set);
//! - who owns scheduled work (tasks, checks, rules) and, for each, its last run at each side and
//!   the runs a handover would replay ([`crate::live::handover`]).
//!
//! Each section stands alone: one that cannot be read is reported and the others still are; the
//! exit code is then 1.

use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};
use shared::secret::SecretError;
use time::OffsetDateTime;

use crate::aws::concurrency::{self, Throttle};
use crate::aws::deployment::{Aws, Deployment};
use crate::aws::endpoint::{self, EndpointError};
use crate::aws::event_source::{self, Mapping};
use crate::aws::lag::{AnyLag, LagReading, LagSource, rfc3339};
use crate::aws::replay_bound::ReplayBound;
use crate::aws::stalls;
use crate::aws::stream::{self, ALARM_SHARE, Expiry, StreamState, WARN_SHARE};
use crate::compare::counts;
use crate::compare::window::BucketPair;
use crate::exit::Exit;
use crate::influx::api::InfluxApi;
use crate::live::bypass_check::{self, BypassArgs};
use crate::live::databases::{self, Databases, InfluxArgs};
use crate::live::options::CommonArgs;
use crate::output::human_duration;
use crate::output::{Output, Verdict};

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub influx: InfluxArgs,
    #[command(flatten)]
    pub bypass: BypassArgs,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<Exit> {
    let mut out = Output::new("status", args.common.json);
    let aws = Aws::connect(&args.common.aws).await;
    let dep = Deployment::resolve(&args.common.aws, &aws).await?;
    let lag_source = AnyLag::new(&args.common.aws.lag_source, aws.cloudwatch.clone());
    let mut errors: Vec<String> = Vec::new();
    let mut data = json!({});
    let now = OffsetDateTime::now_utc();

    // The stream.
    let mut stream_state: Option<StreamState> = None;
    match &dep.stream_name {
        Some(name) => match stream::describe(&aws.kinesis, name).await {
            Ok(s) => {
                out.check(
                    "stream",
                    Verdict::Info,
                    format!(
                        "{} {}, {} open shard(s), retention {} h, encryption {}",
                        s.name, s.status, s.open_shards, s.retention_hours, s.encryption
                    ),
                );
                if s.encryption == "NONE" {
                    out.warn(format!(
                        "stream {} is not encrypted at rest, and its records carry client tokens",
                        s.name
                    ));
                }
                data["stream"] = json!(s);
                stream_state = Some(s);
            }
            Err(e) => errors.push(e.to_string()),
        },
        None => out.check("stream", Verdict::Unknown, "no stream named (--stack or --stream-name)"),
    }

    // The writers: throttle, mappings, lag.
    let mut dest_throttle: Option<Throttle> = None;
    let mut dest_mappings: Vec<Mapping> = Vec::new();
    let mut dest_lag: Option<LagReading> = None;
    let mut source_lag: Option<LagReading> = None;
    for (role, function) in [("destination", &dep.destination_function), ("source", &dep.source_function)] {
        let Some(function) = function else {
            out.check(
                &format!("{role} writer"),
                Verdict::Unknown,
                format!("no {role} writer named (--stack or --{role}-function)"),
            );
            continue;
        };
        let mut writer = json!({"function": function});
        if role == "destination" {
            match concurrency::current(&aws.lambda, function).await {
                Ok(t) => {
                    out.check("destination writer", Verdict::Info, format!("{function} is {}", t.describe()));
                    writer["throttle"] = json!(t);
                    dest_throttle = Some(t);
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        match event_source::of_function(&aws.lambda, function).await {
            Ok(maps) => {
                if maps.is_empty() {
                    out.check(
                        &format!("{role} mapping"),
                        Verdict::Warn,
                        format!("no event source mapping invokes {function}"),
                    );
                }
                for m in &maps {
                    let verdict = if m.is_enabled() { Verdict::Info } else { Verdict::Warn };
                    out.check(&format!("{role} mapping"), verdict, m.describe());
                    for risk in m.drop_risks() {
                        out.warn(format!("mapping {} of {function}: {risk}", m.uuid));
                    }
                }
                writer["mappings"] = json!(maps);
                if role == "destination" {
                    dest_mappings = maps;
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
        match lag_source.read(function).await {
            Ok(l) => {
                out.check(
                    &format!("{role} lag"),
                    Verdict::Info,
                    format!("{}; from {}", l.describe(), l.source),
                );
                writer["lag"] = json!(l);
                if role == "destination" {
                    dest_lag = Some(l);
                } else {
                    source_lag = Some(l);
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
        data[format!("{role}_writer")] = writer;
    }

    // How close the oldest unprocessed record is to expiry.
    if let (Some(s), Some(_)) = (&stream_state, &dep.destination_function) {
        let expiry = match dest_lag.as_ref().and_then(LagReading::age) {
            Some(age) => Some(Expiry::new(s.retention_hours, age, stream::AgeBasis::IteratorAge)),
            None => {
                let start = dest_mappings
                    .iter()
                    .filter_map(|m| m.starting_position_timestamp.as_deref())
                    .filter_map(|t| {
                        OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
                    })
                    .min();
                Expiry::estimate(s.retention_hours, s.created, start, now)
            }
        };
        match &expiry {
            Some(e) => {
                if e.share_of_retention >= ALARM_SHARE {
                    out.warn(format!(
                        "the oldest record the destination writer has not replayed is {:.0}% of the retention old: unthrottle it and let it catch up before records expire",
                        e.share_of_retention * 100.0
                    ));
                }
                let verdict = if e.share_of_retention >= WARN_SHARE { Verdict::Warn } else { Verdict::Ok };
                out.check("expiry", verdict, e.describe());
            }
            None => out.check(
                "expiry",
                Verdict::Unknown,
                "no lag and no start time to tell the oldest record's age",
            ),
        }
        data["expiry"] = json!(expiry);
    }
    if let Some(s) = &stream_state {
        let throttled = dest_throttle.is_some_and(Throttle::is_throttled);
        out.note(format!(
            "seeding: pass --stream-retention-hours {h} (or LIVE_STREAM_RETENTION_HOURS={h}) so it warns at 50% and 80% of the retention{}",
            if throttled { "; the destination writer is held until you run `influx-migration unthrottle`" } else { "" },
            h = s.retention_hours
        ));
    }

    // Stalled shards and park rules.
    match &dep.dead_letter_bucket {
        Some(bucket) => {
            let retention = stream_state.as_ref().map(|s| s.retention_hours).or(dep.retention_hours);
            match stall_section(&mut out, &aws.s3, bucket, retention).await {
                Ok(v) => data["stalls"] = v,
                Err(e) => errors.push(e.to_string()),
            }
        }
        None => out.check(
            "stalls",
            Verdict::Unknown,
            "no dead-letter bucket named (--stack or --dead-letter-bucket)",
        ),
    }

    // The read endpoint, and the databases.
    let mut secret = None;
    match &dep.secret_id {
        Some(id) => match endpoint::read(&aws.secrets, id).await {
            Ok(c) => {
                out.check("read endpoint", Verdict::Info, c.describe());
                data["read_endpoint"] = json!({
                    "read": c.secret.read.as_str(),
                    "host": c.secret.read_endpoint().host(),
                    "version_id": c.version_id,
                });
                secret = Some(c.secret);
            }
            // An edit the functions reject: they go on serving the last version they read
            // (shared::secret::SecretCache) and log each refused refresh, so nothing else shows it.
            Err(EndpointError::Shape(e @ SecretError::Shape { .. })) => out.check(
                "endpoint secret",
                Verdict::Warn,
                format!(
                    "{e}. The functions reject this version and keep serving the last one they read \
                     (a cold start has none and fails); put a corrected version"
                ),
            ),
            Err(e) => errors.push(e.to_string()),
        },
        None => {
            out.check("read endpoint", Verdict::Unknown, "no endpoint secret named (--stack or --secret-id)")
        }
    }
    match Databases::connect(&args.influx, secret.as_ref()) {
        Ok(dbs) => {
            let mappings = secret.as_ref().map(|s| s.mappings.clone()).unwrap_or_default();
            match databases::bucket_pairs(&dbs, &mappings, &args.influx.buckets).await {
                Ok(pairs) => {
                    match newest_points(&mut out, &dbs, &pairs.pairs).await {
                        Ok(rows) => data["buckets"] = Value::Array(rows),
                        Err(e) => errors.push(format!("{e:#}")),
                    }
                    // Writes that reached the source without the gateway, up to where the
                    // writers have replayed (without a known lag, a minute before now).
                    let until = dest_lag
                        .as_ref()
                        .and_then(|d| ReplayBound::from_readings(d, source_lag.as_ref()))
                        .map_or(now - Duration::from_secs(60), |b| b.until.min(now));
                    let until = until.replace_nanosecond(0).unwrap_or(until);
                    match bypass_check::check(
                        &mut out,
                        &dbs,
                        &pairs.pairs,
                        until,
                        &args.bypass,
                        Verdict::Warn,
                    )
                    .await
                    {
                        Ok(found) => data["bypass"] = found.json,
                        Err(e) => errors.push(format!("looking for writes that bypassed the gateway: {e:#}")),
                    }
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
            let lags =
                (source_lag.as_ref().and_then(LagReading::age), dest_lag.as_ref().and_then(LagReading::age));
            match crate::scheduled::transfer::status_section(&mut out, &dbs.src, &dbs.dst, lags).await {
                Ok(v) => data["scheduled_work"] = v,
                Err(e) => errors.push(format!("scheduled work: {e}")),
            }
        }
        Err(e) => out.check("newest points", Verdict::Unknown, format!("skipped: {e}")),
    }

    for e in &errors {
        out.warn(format!("could not read: {e}"));
    }
    data["deployment"] = json!({
        "stack": dep.stack,
        "stream": dep.stream_name,
        "secret": dep.secret_id,
        "destination_function": dep.destination_function,
        "source_function": dep.source_function,
        "router_function": dep.router_function,
        "lag_source": lag_source.name(),
    });
    data["errors"] = json!(errors);
    let exit = if errors.is_empty() { Exit::Success } else { Exit::Failure };
    Ok(out.finish(exit, data))
}

/// Each stalled shard (since when, why, the bucket, the expiry headroom) and each park rule.
async fn stall_section(
    out: &mut Output,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    retention_hours: Option<u32>,
) -> Result<Value, stalls::StallError> {
    let now = stalls::now_ms();
    let found = stalls::stalls(s3, bucket).await?;
    let rules = stalls::rules(s3, bucket).await?;
    if found.is_empty() {
        out.check("stalls", Verdict::Ok, "no writer is stopped at a record");
    }
    let mut shards = Vec::new();
    for stall in &found {
        out.check("stall", Verdict::Warn, stalls::describe(stall, retention_hours, now));
        shards.push(json!({
            "stall": stall,
            "stalled_seconds": stall.stalled_ms(now) / 1000,
            "expiry_headroom_seconds": retention_hours.and_then(|h| stall.expiry_headroom_ms(h, now)).map(|ms| ms / 1000),
        }));
    }
    let source_only = stalls::source_only(s3, bucket).await?;
    if !source_only.is_empty() {
        out.check("source-only", Verdict::Info, stalls::describe_source_only(&source_only));
    }
    let mut parked = Vec::new();
    for rule in &rules {
        let active = now < rule.expires_at_ms;
        let status = rule.status.map(|s| s.to_string()).unwrap_or_else(|| "no status".into());
        out.check(
            "park rule",
            if active { Verdict::Warn } else { Verdict::Info },
            format!(
                "{} writer, {}: records failing with {status} go to dead-letter storage {} {} ({}); release: influx-migration park --release --target {} --shard {}",
                rule.target.as_str(),
                rule.shard_id,
                if active { "until" } else { "- expired" },
                stalls::rfc3339_ms(rule.expires_at_ms),
                rule.note,
                rule.target.as_str(),
                rule.shard_id,
            ),
        );
        parked.push(json!({"rule": rule, "active": active}));
    }
    Ok(json!({"shards": shards, "park_rules": parked, "source_only": source_only}))
}

/// Per bucket pair, the newest point at each end.
async fn newest_points(
    out: &mut Output,
    dbs: &Databases,
    pairs: &[BucketPair],
) -> anyhow::Result<Vec<Value>> {
    let mut rows = Vec::new();
    for pair in pairs {
        let src = newest(&dbs.src, pair.src_org.as_deref(), &pair.src_bucket).await?;
        let dst = newest(&dbs.dst, pair.dst_org.as_deref(), &pair.dst_bucket).await?;
        let label = format!(
            "bucket {}/{} -> {}/{}",
            pair.src_org.as_deref().unwrap_or("?"),
            pair.src_bucket,
            pair.dst_org.as_deref().unwrap_or("?"),
            pair.dst_bucket
        );
        out.check(&label, Verdict::Info, describe_newest(src, dst));
        rows.push(json!({
            "pair": pair_json(pair),
            "source_newest": src.flatten().map(rfc3339),
            "destination_exists": dst.is_some(),
            "destination_newest": dst.flatten().map(rfc3339),
        }));
    }
    Ok(rows)
}

fn pair_json(p: &BucketPair) -> Value {
    json!({"source_org": p.src_org, "source_bucket": p.src_bucket, "destination_org": p.dst_org, "destination_bucket": p.dst_bucket})
}

/// `None`: no such bucket; `Some(None)`: an empty bucket.
async fn newest(
    api: &InfluxApi,
    org: Option<&str>,
    bucket: &str,
) -> anyhow::Result<Option<Option<OffsetDateTime>>> {
    let org_id = match org {
        Some(name) => match api.find_org(name).await? {
            Some(o) => Some(o.id),
            None => return Ok(None),
        },
        None => None,
    };
    let Some(b) = api.find_buckets(org_id.as_deref(), bucket).await?.into_iter().next() else {
        return Ok(None);
    };
    Ok(Some(counts::newest_point_time(api, &b).await?))
}

/// `source 2026-.., destination 2026-.. (3.0 s behind)`.
pub fn describe_newest(src: Option<Option<OffsetDateTime>>, dst: Option<Option<OffsetDateTime>>) -> String {
    let show = |v: Option<Option<OffsetDateTime>>| match v {
        None => "no such bucket".to_string(),
        Some(None) => "empty".to_string(),
        Some(Some(t)) => rfc3339(t),
    };
    let gap = match (src.flatten(), dst.flatten()) {
        (Some(s), Some(d)) if s > d => {
            format!(" (destination {} behind)", human_duration(Duration::try_from(s - d).unwrap_or_default()))
        }
        (Some(_), Some(_)) => " (same)".to_string(),
        _ => String::new(),
    };
    format!("newest point at the source {}, at the destination {}{gap}", show(src), show(dst))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn newest_points_say_how_far_the_destination_is_behind() {
        let s = Some(Some(datetime!(2026-11-25 10:00:03 UTC)));
        let d = Some(Some(datetime!(2026-11-25 10:00:00 UTC)));
        assert_eq!(
            describe_newest(s, d),
            "newest point at the source 2026-11-25T10:00:03Z, at the destination 2026-11-25T10:00:00Z (destination 3.0 s behind)"
        );
        assert!(describe_newest(s, s).ends_with("(same)"));
        assert_eq!(
            describe_newest(Some(None), None),
            "newest point at the source empty, at the destination no such bucket"
        );
    }
}
