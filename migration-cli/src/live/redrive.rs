//! `redrive`: write dead-lettered records again, once their cause is fixed.
//!
//! Each dead letter (`<prefix><target>/<shard>/<sequence>.json`, see the stream-writer's
//! `dead_letter` module) holds the record's line protocol, its API and parameters as they were
//! sent to that database, and never the client's credential. `redrive` sends each selected
//! record through the same write path the writer uses (`/api/v2/write` or `/write`, gzip, the
//! same parameters) to the database the dead letter belongs to, as the operator
//! (`INFLUX_DEST_TOKEN` for the destination, `INFLUX_SRC_TOKEN` for the source). A record that
//! lands is moved under `redriven/` (kept, not deleted: the operator can see what was
//! redriven); one that does not stays where it is, and the command says why and exits 1.
//! Every line carries its timestamp, so writing a record twice stores it once: running the
//! command again is safe.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use clap::Args;
use serde::Deserialize;
use serde_json::json;
use shared::envelope::Target;
use shared::envelope::{Api, WriteParams, gzip};
use shared::influx_client::{
    Backoff, ClientOptions, RetryClass, WriteAction, http_client, send_write, write_request,
};
use shared::secret::{Mapped, Mappings, Role};
use shared::sensitive::Sensitive;
use shared::stall::{REDRIVEN_PREFIX, UNMAPPED_REASON};

use crate::aws::deployment::{Aws, Deployment};
use crate::aws::endpoint;
use crate::aws::stalls;
use crate::exit::Exit;
use crate::live::options::CommonArgs;
use crate::live::park::parse_target;
use crate::output::{Output, Verdict};

#[derive(Debug, Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Whose dead letters: `destination` or `source`.
    #[arg(long, default_value = "destination", value_parser = parse_target)]
    pub target: Role,
    /// Only records of this shard (repeatable).
    #[arg(long = "shard", value_name = "SHARD_ID")]
    pub shards: Vec<String>,
    /// Only records writing to this bucket (v2) or database (v1 `db` or `db/rp`).
    #[arg(long, value_name = "NAME")]
    pub bucket: Option<String>,
    /// Only records whose reason contains this text (e.g. `parked`, `403`).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Only records the gateway received at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<i64>,
    /// Only records the gateway received before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<i64>,
    /// List what would be written; write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn parse_time(s: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp_nanos() as i64)
        .map_err(|e| format!("not an RFC 3339 time (e.g. 2026-12-01T10:00:00Z): {e}"))
}

/// What redrive reads of a dead letter.
#[derive(Debug, Deserialize)]
struct Letter {
    shard_id: String,
    reason: String,
    api: Option<Api>,
    params: Option<WriteParams>,
    /// `params` are the client's: the record stopped before the mappings (see
    /// [`Letter::params_to_write`]).
    #[serde(default)]
    params_as_sent_by_client: bool,
    /// Where the gateway resolved the write to at the source, when it could.
    #[serde(default)]
    resolved: Option<Target>,
    received_at_ns: Option<i64>,
    line_protocol: Option<String>,
    /// The line protocol, base64, of a record that is not UTF-8 (written exactly as it came).
    line_protocol_base64: Option<String>,
    body_gzip_base64: Option<String>,
}

impl Letter {
    fn bucket(&self) -> Option<String> {
        self.params.as_ref()?.bucket_name()
    }

    fn selected(&self, args: &RedriveArgs) -> bool {
        let bucket = self.bucket();
        (args.shards.is_empty() || args.shards.contains(&self.shard_id))
            && args.bucket.as_ref().is_none_or(|b| {
                bucket.as_deref() == Some(b.as_str())
                    || bucket.as_deref().and_then(|x| x.split('/').next()) == Some(b.as_str())
            })
            && args.reason.as_ref().is_none_or(|r| self.reason.contains(r.as_str()))
            && args.since.is_none_or(|t| self.received_at_ns.is_some_and(|r| r >= t))
            && args.until.is_none_or(|t| self.received_at_ns.is_some_and(|r| r < t))
    }

    /// The parameters to write with: as the letter holds them, unless they are the client's and
    /// the letter belongs to the destination; then the mappings in force now decide, as the
    /// destination writer would decide for the record today (a bucket mapped since the record
    /// was parked goes where the mapping says). Letters of writers older than the flag are
    /// known by the reason they give for an unmapped bucket.
    fn params_to_write(
        &self,
        role: Role,
        api: Api,
        params: &WriteParams,
        mappings: &Mappings,
    ) -> Result<WriteParams, String> {
        let client_names = self.params_as_sent_by_client || self.reason.contains(UNMAPPED_REASON);
        if role == Role::Source || !client_names {
            return Ok(params.clone());
        }
        match mappings.apply_to(api, params, None, self.resolved.as_ref()) {
            Mapped::Write { params, .. } => Ok(params),
            Mapped::NotMigrated => {
                Err("its bucket is not part of this migration now (\"unmapped\": \"source-only\" \
                 in the endpoint secret): the source alone holds it"
                    .into())
            }
            Mapped::Unmapped { bucket } => Err(format!(
                "bucket {bucket:?} is still not in the endpoint secret's mappings.buckets: add a mapping for \
                 it, then redrive"
            )),
        }
    }

    /// The gzip body to send, and its number of lines when known.
    fn body(&self) -> Result<(Bytes, Option<usize>), String> {
        if let Some(b64) = &self.line_protocol_base64 {
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| e.to_string())?;
            let lines = raw.split(|b| *b == b'\n').filter(|l| !l.trim_ascii().is_empty()).count();
            return gzip(&raw).map(|b| (Bytes::from(b), Some(lines))).map_err(|e| e.to_string());
        }
        if let Some(lp) = &self.line_protocol {
            let lines = lp.lines().filter(|l| !l.trim().is_empty()).count();
            return gzip(lp.as_bytes()).map(|b| (Bytes::from(b), Some(lines))).map_err(|e| e.to_string());
        }
        if let Some(b64) = &self.body_gzip_base64 {
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| e.to_string())?;
            return Ok((Bytes::from(raw), None));
        }
        Err("the dead letter holds no data that can be written (the record was not a stream record)".into())
    }
}

pub async fn run(args: RedriveArgs) -> anyhow::Result<Exit> {
    let mut out = Output::new("redrive", args.common.json);
    let aws = Aws::connect(&args.common.aws).await;
    let dep = Deployment::resolve(&args.common.aws, &aws).await?;
    let bucket = dep.dead_letter_bucket()?.to_string();
    let target = args.target;
    let prefix = format!("{}{}/", dep.dead_letter_prefix, target.as_str());

    let secret = endpoint::read(&aws.secrets, dep.secret_id()?).await?.secret;
    let ep = secret.endpoint(target).clone();
    let (var, which) = match target {
        Role::Destination => ("INFLUX_DEST_TOKEN", "destination"),
        Role::Source => ("INFLUX_SRC_TOKEN", "source"),
    };
    let token = match std::env::var(var) {
        Ok(t) if !t.trim().is_empty() => Sensitive::new(format!("Token {}", t.trim())),
        _ if args.dry_run => Sensitive::new(String::new()),
        _ => {
            anyhow::bail!("{var} is not set: redrive writes to the {which} with the operator's token from it")
        }
    };
    let http = http_client(&ClientOptions { skip_verify: ep.skip_verify, ..ClientOptions::default() })?;

    let keys = stalls::keys(&aws.s3, &bucket, &prefix).await?;
    let (mut written, mut failed, mut points) = (Vec::new(), Vec::new(), 0usize);
    let mut selected = 0usize;
    for key in &keys {
        let Some(bytes) = stalls::get(&aws.s3, &bucket, key).await? else { continue };
        let letter: Letter = match serde_json::from_slice(&bytes) {
            Ok(l) => l,
            Err(e) => {
                out.warn(format!("{key} is not a dead letter of this product: {e}"));
                continue;
            }
        };
        if !letter.selected(&args) {
            continue;
        }
        selected += 1;
        let (Some(api), Some(params)) = (letter.api, letter.params.as_ref()) else {
            out.check(
                key,
                Verdict::Refused,
                "the dead letter does not say where it was written; left as it is",
            );
            failed.push(json!({"key": key, "why": "no API or parameters"}));
            continue;
        };
        let params = match letter.params_to_write(target, api, params, &secret.mappings) {
            Ok(p) => p,
            Err(why) => {
                out.check(key, Verdict::Refused, format!("{why}; left as it is"));
                failed.push(json!({"key": key, "why": why}));
                continue;
            }
        };
        let (body, lines) = match letter.body() {
            Ok(b) => b,
            Err(why) => {
                out.check(key, Verdict::Refused, format!("{why}; left as it is"));
                failed.push(json!({"key": key, "why": why}));
                continue;
            }
        };
        let what = format!(
            "{key}: {} line(s) to {} {}",
            lines.map(|n| n.to_string()).unwrap_or_else(|| "?".into()),
            params.bucket_name().unwrap_or_default(),
            ep.host()
        );
        if args.dry_run {
            out.check("would write", Verdict::Info, what);
            continue;
        }
        match write(&http, ep.base(), api, &params, &token, body).await {
            Ok(()) => {
                let moved = format!("{REDRIVEN_PREFIX}{key}");
                match move_object(&aws.s3, &bucket, key, &moved).await {
                    Ok(()) => out.did(format!("wrote {what}; moved to {moved}")),
                    Err(e) => out.warn(format!(
                        "wrote {what}, but could not move it to {moved} ({e}); a second redrive writes it again, harmlessly"
                    )),
                }
                points += lines.unwrap_or(0);
                written.push(json!({"key": key, "lines": lines, "moved_to": moved}));
            }
            Err(why) => {
                out.check(key, Verdict::Refused, format!("not written: {why}; left as it is"));
                failed.push(json!({"key": key, "why": why}));
            }
        }
    }
    if selected == 0 {
        out.note(format!("no dead letter under s3://{bucket}/{prefix} matches"));
    } else if !args.dry_run {
        out.check(
            "redrive",
            if failed.is_empty() { Verdict::Ok } else { Verdict::Refused },
            format!(
                "{} of {selected} record(s) written ({points} line(s)); {} left",
                written.len(),
                failed.len()
            ),
        );
    }
    let exit = if failed.is_empty() { Exit::Success } else { Exit::Failure };
    Ok(out.finish(
        exit,
        json!({"target": target.as_str(), "selected": selected, "written": written, "failed": failed, "lines": points, "dry_run": args.dry_run}),
    ))
}

/// One write, with a few retries of transient failures.
async fn write(
    http: &reqwest::Client,
    base: &str,
    api: Api,
    params: &WriteParams,
    token: &Sensitive,
    body: Bytes,
) -> Result<(), String> {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
    loop {
        let req = write_request(http, base, api, params, Some(token), body.clone());
        match send_write(req).await {
            WriteAction::Done => return Ok(()),
            WriteAction::Retry { class: RetryClass::Transient, retry_after, .. }
                if backoff.attempts() < 4 =>
            {
                tokio::time::sleep(backoff.next_delay(retry_after)).await;
            }
            WriteAction::Retry { status, reason, .. } => {
                return Err(format!(
                    "{}: {reason}",
                    status.map(|s| s.to_string()).unwrap_or_else(|| "no answer".into())
                ));
            }
            WriteAction::DeadLetter { status, reason } => return Err(format!("{status}: {reason}")),
            WriteAction::Split => return Err("413: the record is larger than the database accepts".into()),
        }
    }
}

async fn move_object(s3: &aws_sdk_s3::Client, bucket: &str, from: &str, to: &str) -> Result<(), String> {
    s3.copy_object()
        .bucket(bucket)
        .copy_source(format!("{bucket}/{from}"))
        .key(to)
        .send()
        .await
        .map_err(|e| crate::aws::sdk_error::describe(&e))?;
    s3.delete_object()
        .bucket(bucket)
        .key(from)
        .send()
        .await
        .map_err(|e| crate::aws::sdk_error::describe(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RedriveArgs,
    }

    fn args(extra: &[&str]) -> RedriveArgs {
        let mut argv = vec!["t"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).args
    }

    fn letter(json: serde_json::Value) -> Letter {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn filters_select_by_shard_bucket_reason_and_receive_time() {
        let l = letter(json!({
            "shard_id": "shardId-1", "reason": "parked by the operator (x) after: 403 from h: inactive",
            "api": "v1", "params": {"db": "app", "rp": "autogen"}, "received_at_ns": 1_764_583_200_000_000_000_i64,
            "line_protocol": "m v=1 1\n"
        }));
        assert!(l.selected(&args(&[])));
        assert!(l.selected(&args(&["--shard", "shardId-1", "--bucket", "app", "--reason", "parked"])));
        assert!(l.selected(&args(&["--bucket", "app/autogen"])));
        assert!(!l.selected(&args(&["--shard", "shardId-2"])));
        assert!(!l.selected(&args(&["--bucket", "other"])));
        assert!(!l.selected(&args(&["--reason", "422"])));
        assert!(l.selected(&args(&["--since", "2025-12-01T10:00:00Z", "--until", "2025-12-01T10:00:01Z"])));
        assert!(!l.selected(&args(&["--since", "2025-12-01T10:00:01Z"])));
    }

    #[test]
    fn a_letter_without_data_is_not_written() {
        let l = letter(json!({"shard_id": "s", "reason": "r", "api": null, "params": null,
            "received_at_ns": null, "line_protocol": null, "body_gzip_base64": null}));
        assert!(l.body().unwrap_err().contains("no data"));
        let l = letter(json!({"shard_id": "s", "reason": "r", "line_protocol": "a v=1 1\nb v=2 2\n"}));
        let (body, lines) = l.body().unwrap();
        assert_eq!(lines, Some(2));
        assert_eq!(shared::envelope::gunzip(&body, 0).unwrap(), b"a v=1 1\nb v=2 2\n");
    }

    /// Redrive wrote the U+FFFD a lossy dead letter held; a letter of bytes that are not UTF-8
    /// now holds them exactly, and redrive writes exactly them.
    #[test]
    fn a_letter_of_bytes_that_are_not_utf8_is_written_byte_for_byte() {
        let raw: &[u8] = b"m,host=caf\xe9 v=1 1\nm v=2 2\n";
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        let l = letter(json!({"shard_id": "s", "reason": "r", "line_protocol_base64": b64}));
        let (body, lines) = l.body().unwrap();
        assert_eq!(lines, Some(2));
        assert_eq!(shared::envelope::gunzip(&body, 0).unwrap(), raw);
    }
}
