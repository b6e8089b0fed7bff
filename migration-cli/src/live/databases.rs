//! The two InfluxDB servers a live command compares, and which of their buckets correspond.
//!
//! Addresses come from the endpoint secret (`source.url`, `destination.url`, with their
//! `skip_verify`) unless `--src-host` / `--dest-host` say otherwise; tokens come only from the
//! environment, `INFLUX_SRC_TOKEN` and `INFLUX_DEST_TOKEN`, as for the seeding (and AWS's
//! script), so they never appear in a command line or a process list.
//!
//! Bucket pairs: every non-system bucket of the source (or those named with `--bucket`), at the
//! destination under the same org and bucket names, or under the names the secret's `mappings`
//! give (`buckets`: only the listed buckets are migrated, renamed; `orgs`: orgs renamed). A
//! mapping key that names no source bucket (a v1 `db/rp` key, say) is reported and skipped.

use clap::Args;
use shared::secret::{EndpointSecret, Mappings};
use shared::sensitive::Sensitive;

use crate::compare::window::BucketPair;
use crate::influx::api::{ApiError, ApiOptions, InfluxApi};

/// The InfluxDB side of `status`, `verify` and `cutover`.
#[derive(Debug, Clone, Args)]
pub struct InfluxArgs {
    /// Source InfluxDB (default: the endpoint secret's source URL). Token: INFLUX_SRC_TOKEN.
    #[arg(long, value_name = "URL")]
    pub src_host: Option<String>,
    /// Destination InfluxDB (default: the endpoint secret's destination URL). Token: INFLUX_DEST_TOKEN.
    #[arg(long, value_name = "URL")]
    pub dest_host: Option<String>,
    /// Only this source bucket (repeatable; default: every non-system bucket).
    #[arg(long = "bucket", value_name = "NAME")]
    pub buckets: Vec<String>,
    /// Accept any TLS certificate from both servers.
    #[arg(long)]
    pub skip_verify: bool,
}

/// Why the servers could not be reached or paired.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("{0} is not set: the token of the {1} InfluxDB is read from it")]
    NoToken(&'static str, &'static str),
    #[error("no {0} address: pass {1} or give the endpoint secret (--stack or --secret-id)")]
    NoHost(&'static str, &'static str),
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("bucket {0:?} does not exist on the source {1}")]
    NoSuchBucket(String, String),
}

/// Source and destination.
#[derive(Debug, Clone)]
pub struct Databases {
    pub src: InfluxApi,
    pub dst: InfluxApi,
}

fn token(var: &'static str, which: &'static str) -> Result<Sensitive, DatabaseError> {
    match std::env::var(var) {
        Ok(t) if !t.trim().is_empty() => Ok(Sensitive::new(t.trim())),
        _ => Err(DatabaseError::NoToken(var, which)),
    }
}

impl Databases {
    /// Clients for both servers; addresses from the flags, else from the secret.
    pub fn connect(args: &InfluxArgs, secret: Option<&EndpointSecret>) -> Result<Databases, DatabaseError> {
        let pick = |flag: &Option<String>, ep: Option<&shared::secret::Endpoint>, what, flag_name| match (
            flag, ep,
        ) {
            (Some(h), _) => Ok((h.clone(), args.skip_verify)),
            (None, Some(e)) => Ok((e.base().to_string(), args.skip_verify || e.skip_verify)),
            (None, None) => Err(DatabaseError::NoHost(what, flag_name)),
        };
        let (src_url, src_skip) = pick(&args.src_host, secret.map(|s| &s.source), "source", "--src-host")?;
        let (dst_url, dst_skip) =
            pick(&args.dest_host, secret.map(|s| &s.destination), "destination", "--dest-host")?;
        let src_token = token("INFLUX_SRC_TOKEN", "source")?;
        let dst_token = token("INFLUX_DEST_TOKEN", "destination")?;
        let opts = |skip_verify| ApiOptions { skip_verify, ..ApiOptions::default() };
        Ok(Databases {
            src: InfluxApi::new(&src_url, src_token, opts(src_skip))?,
            dst: InfluxApi::new(&dst_url, dst_token, opts(dst_skip))?,
        })
    }
}

/// The buckets to compare, and what was left out and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs {
    pub pairs: Vec<BucketPair>,
    pub skipped: Vec<String>,
}

/// Pairs for every non-system source bucket (or the `only` ones), after the mappings.
pub async fn bucket_pairs(
    src: &InfluxApi,
    mappings: &Mappings,
    only: &[String],
) -> Result<Pairs, DatabaseError> {
    let listed: Vec<(String, String)> =
        src.user_buckets().await?.into_iter().map(|(b, org)| (org, b.name)).collect();
    for name in only {
        if !listed.iter().any(|(_, b)| b == name) {
            return Err(DatabaseError::NoSuchBucket(name.clone(), src.host().to_string()));
        }
    }
    Ok(pair_up(&listed, mappings, only))
}

/// The pairing rule on `(org, bucket)` names (see the module doc).
pub fn pair_up(listed: &[(String, String)], mappings: &Mappings, only: &[String]) -> Pairs {
    let mut out = Pairs::default();
    for (org, bucket) in listed {
        if !only.is_empty() && !only.contains(bucket) {
            continue;
        }
        let dst_bucket = if mappings.buckets.is_empty() {
            bucket.clone()
        } else if let Some(to) = mappings.buckets.get(bucket) {
            to.clone()
        } else {
            out.skipped
                .push(format!("{org}/{bucket}: not in the secret's bucket mappings (not migrated live)"));
            continue;
        };
        let dst_org = mappings.orgs.get(org).cloned().unwrap_or_else(|| org.clone());
        out.pairs.push(BucketPair::new(Some(org), bucket, Some(&dst_org), &dst_bucket));
    }
    for key in mappings.buckets.keys() {
        if !listed.iter().any(|(_, b)| b == key) {
            out.skipped.push(format!("mapping key {key:?} names no source bucket; not compared"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed() -> Vec<(String, String)> {
        vec![("o1".into(), "telegraf".into()), ("o1".into(), "app".into()), ("o2".into(), "other".into())]
    }

    #[test]
    fn without_mappings_every_bucket_pairs_with_its_namesake() {
        let p = pair_up(&listed(), &Mappings::default(), &[]);
        assert_eq!(p.pairs.len(), 3);
        assert_eq!(p.pairs[0], BucketPair::same(Some("o1"), "telegraf"));
        assert_eq!(p.pairs[2], BucketPair::same(Some("o2"), "other"));
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn mappings_rename_and_restrict_and_unknown_keys_are_reported() {
        let m: Mappings =
            serde_json::from_str(r#"{"buckets":{"app":"app2","db/rp":"x"},"orgs":{"o1":"new-org"}}"#)
                .unwrap();
        let p = pair_up(&listed(), &m, &[]);
        assert_eq!(p.pairs, vec![BucketPair::new(Some("o1"), "app", Some("new-org"), "app2")]);
        assert_eq!(p.skipped.len(), 3, "{:?}", p.skipped);
        assert!(p.skipped.iter().any(|s| s.contains("o1/telegraf")));
        assert!(p.skipped.iter().any(|s| s.contains("\"db/rp\"")));
    }

    #[test]
    fn only_restricts_to_the_named_buckets() {
        let p = pair_up(&listed(), &Mappings::default(), &["app".to_string()]);
        assert_eq!(p.pairs, vec![BucketPair::same(Some("o1"), "app")]);
    }
}
