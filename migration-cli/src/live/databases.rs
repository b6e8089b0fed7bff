//! The two InfluxDB servers a live command compares, and which of their buckets correspond.
//!
//! Addresses come from the endpoint secret (`source.url`, `destination.url`, with their
//! `skip_verify`) unless `--src-host` / `--dest-host` say otherwise; tokens come only from the
//! environment, `INFLUX_SRC_TOKEN` and `INFLUX_DEST_TOKEN`, as for the seeding (and AWS's
//! script), so they never appear in a command line or a process list.
//!
//! Bucket pairs: every non-system bucket of the source (or those named with `--bucket`), paired
//! by the rules the destination writer applies to the secret's `mappings`
//! ([`crate::compare::pairing`]: by name, ID, and v1 `db/rp` through the DBRP mappings at both
//! ends; orgs renamed). A mapping key that names nothing at the source is an error.

use clap::Args;
use shared::secret::{EndpointSecret, Mappings};
use shared::sensitive::Sensitive;

use crate::compare::pairing::{Listing, PairingError, Pairs, pair_up};
use crate::influx::api::{ApiError, ApiOptions, InfluxApi};
use crate::output::Output;

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
    #[error(transparent)]
    Pairing(#[from] PairingError),
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

/// Tells the operator which source buckets are not compared, and why.
pub fn note_left_out(out: &mut Output, pairs: &Pairs) {
    for s in &pairs.skipped {
        out.note(format!("skipped {s}"));
    }
    for b in &pairs.source_only {
        out.note(format!(
            "source-only {b}: its writes stay at the source (\"unmapped\": \"source-only\"); not compared"
        ));
    }
}

/// The bucket pairs for every non-system source bucket (or the `only` ones), by the rules the
/// destination writer applies ([`crate::compare::pairing`]).
pub async fn bucket_pairs(
    dbs: &Databases,
    mappings: &Mappings,
    only: &[String],
) -> Result<Pairs, DatabaseError> {
    let source = Listing::read(&dbs.src).await?;
    // The destination's DBRP mappings matter only for v1 keys of a bucket list.
    let destination =
        if mappings.buckets.is_empty() { Listing::default() } else { Listing::read(&dbs.dst).await? };
    Ok(pair_up(&source, &destination, mappings, only)?)
}
