//! The checks AWS's script makes before touching anything (`verify_instances`), with messages
//! that say what is wrong and where: host healthy, token valid, orgs exist, source bucket exists,
//! destination bucket does not. A failure here has created nothing.
//!
//! Beyond the script: for a native (non-CSV) migration the tokens must be operator tokens (the
//! backup and restore endpoints refuse anything else, but only after a long download); reading
//! every authorization is the cheap call only an operator token may make, so it is checked up
//! front.

use crate::influx::api::{Bucket, InfluxApi, Org};

/// A failed check, as a sentence.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CheckFailed(pub String);

/// `source` or `destination`.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    Source,
    Destination,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Destination => "destination",
        }
    }

    pub fn token_var(self) -> &'static str {
        match self {
            Side::Source => "INFLUX_SRC_TOKEN",
            Side::Destination => "INFLUX_DEST_TOKEN",
        }
    }
}

/// Health, then the token (listing orgs fails with 401 for a bad token).
pub async fn check_host_and_token(api: &InfluxApi, side: Side) -> Result<(), CheckFailed> {
    let s = side.name();
    match api.health().await {
        Ok(h) => tracing::debug!("{s} {} is healthy (version {})", api.host(), h.version.unwrap_or_default()),
        Err(e) => {
            return Err(CheckFailed(format!(
                "Health check for {s} host failed: {e}. Check --{}-host (it must look like http://127.0.0.1:8086) and that InfluxDB is running there",
                if matches!(side, Side::Source) { "src" } else { "dest" }
            )));
        }
    }
    match api.orgs().await {
        Ok(_) => Ok(()),
        Err(e) if e.is_unauthorized() => Err(CheckFailed(format!(
            "Could not verify {s} token: {} rejected the token in {} ({e})",
            api.host(),
            side.token_var()
        ))),
        Err(e) => Err(CheckFailed(format!("Could not verify {s} token: {e}"))),
    }
}

/// How `--full` carries the metadata (orgs, users, tokens, dashboards, tasks, ...) over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FullMethod {
    /// Restore the source's metadata store (KV snapshot) as it is: same IDs, same tokens.
    Restore,
    /// Recreate every object through the API ([`crate::seeding::rebuild`]): same names, new IDs, new
    /// tokens. The versions are what `/health` reported, kept for `authorizations.json`.
    Rebuild { source_version: String, destination_version: String },
}

/// Which [`FullMethod`] a full migration takes. Restoring the source's metadata store works only
/// into an InfluxDB at least as new as the source: an older one answers 500 "DB contains record
/// of unknown migration" to the KV restore, after the whole backup was made. So into an older
/// destination the metadata is rebuilt through the API instead, and the caller says so before
/// anything changes. Versions that report no number (`dev` builds), or a health call that fails,
/// keep the restore.
pub async fn check_full_versions(src: &InfluxApi, dst: &InfluxApi) -> FullMethod {
    let (s, d) = tokio::join!(src.health(), dst.health());
    let (Ok(s), Ok(d)) = (s, d) else { return FullMethod::Restore };
    match (s.version_numbers(), d.version_numbers()) {
        (Some(a), Some(b)) if a > b => FullMethod::Rebuild {
            source_version: s.version.unwrap_or_default(),
            destination_version: d.version.unwrap_or_default(),
        },
        _ => FullMethod::Restore,
    }
}

/// The token is an operator token: its own authorization grants read and write on every
/// resource type with no org restriction (influxdb `OperPermissions`). The backup and restore
/// endpoints accept nothing less (`authorizer/backup.go`, `authorizer/restore.go`). When the
/// token's own authorization cannot be seen (2.9+ stores tokens hashed), the check passes and
/// the server decides.
pub async fn check_operator(api: &InfluxApi, side: Side) -> Result<(), CheckFailed> {
    let refuse = |why: String| {
        CheckFailed(format!(
            "the {} token in {} is not an operator token ({why}). Backup and restore need the operator token \
             (the one made when InfluxDB was set up); use --csv to migrate with an all-access token",
            side.name(),
            side.token_var()
        ))
    };
    let auths = match api.authorizations().await {
        Ok(a) => a,
        Err(e) if e.is_unauthorized() => return Err(refuse(e.to_string())),
        Err(e) => return Err(CheckFailed(format!("checking the {} token's permissions: {e}", side.name()))),
    };
    let Some(own) = auths.iter().find(|a| a.token == *api.token()) else {
        // An operator token sees every authorization, its own included. Only when the server
        // hides token values (hashed tokens) can its own be invisible.
        let hashed = !auths.is_empty() && auths.iter().all(|a| a.token.is_empty());
        return if hashed { Ok(()) } else { Err(refuse("it cannot read every authorization".into())) };
    };
    let unrestricted = |kind: &str, action: &str| {
        own.permissions.iter().any(|p| {
            p.action == action
                && p.resource.get("type").and_then(|t| t.as_str()) == Some(kind)
                && p.resource.get("orgID").is_none_or(|o| o.is_null())
                && p.resource.get("id").is_none_or(|o| o.is_null())
        })
    };
    let operator = ["authorizations", "buckets", "orgs", "users"]
        .iter()
        .all(|k| unrestricted(k, "read") && unrestricted(k, "write"));
    if operator { Ok(()) } else { Err(refuse("it is limited to some organizations or resources".into())) }
}

/// The org called `name`, or a failure naming the host.
pub async fn require_org(api: &InfluxApi, side: Side, name: &str) -> Result<Org, CheckFailed> {
    match api.find_org(name).await {
        Ok(Some(o)) => Ok(o),
        Ok(None) => Err(CheckFailed(format!(
            "The {} org could not be verified: organization {name:?} does not exist on {}",
            side.name(),
            api.host()
        ))),
        Err(e) => Err(CheckFailed(format!("The {} org could not be verified: {e}", side.name()))),
    }
}

/// The source bucket and its org, by name (and org when given). Several buckets of that name in
/// different orgs without `--src-org` is an error: the script would back them all up and then
/// fail restoring the second.
pub async fn find_source_bucket(
    api: &InfluxApi,
    org: Option<&Org>,
    name: &str,
) -> Result<(Bucket, Org), CheckFailed> {
    let found = api
        .find_buckets(org.map(|o| o.id.as_str()), name)
        .await
        .map_err(|e| CheckFailed(format!("The source bucket could not be found: {e}")))?;
    match found.len() {
        0 => Err(CheckFailed(format!(
            "The source bucket could not be found: {name:?} does not exist on {}{}",
            api.host(),
            org.map(|o| format!(" in organization {:?}", o.name)).unwrap_or_default()
        ))),
        1 => {
            let b = found
                .into_iter()
                .next()
                .ok_or_else(|| CheckFailed("The source bucket could not be found".into()))?;
            let o = match org {
                Some(o) => o.clone(),
                None => api
                    .org_by_id(&b.org_id)
                    .await
                    .map_err(|e| CheckFailed(format!("reading the source bucket's organization: {e}")))?
                    .ok_or_else(|| {
                        CheckFailed(format!(
                            "the organization of bucket {name:?} is not readable with this token"
                        ))
                    })?,
            };
            Ok((b, o))
        }
        n => Err(CheckFailed(format!(
            "{n} buckets called {name:?} exist on {} in different organizations; name one with --src-org",
            api.host()
        ))),
    }
}

/// The destination bucket must not exist in `org` (or, when the org does not exist yet, it
/// cannot).
pub async fn require_absent(api: &InfluxApi, org: Option<&Org>, name: &str) -> Result<(), CheckFailed> {
    let Some(org) = org else { return Ok(()) };
    match api.find_bucket(&org.id, name).await {
        Ok(None) => Ok(()),
        Ok(Some(_)) => Err(CheckFailed(format!(
            "The destination bucket {name} already exists in the destination instance in the {} organization. \
             Destination buckets must be unique: pick another --dest-bucket, or remove the existing bucket",
            org.name
        ))),
        Err(e) => Err(CheckFailed(format!("checking the destination bucket {name:?}: {e}"))),
    }
}

/// `--full` rebuilding into an older destination: the bucket `name` of the source org `org` (by
/// name) is made there under that same name. A bucket of that name that holds no point (the
/// one a new instance is set up with, typically) is replaced by the rebuild, as `--full`
/// replaces the destination's metadata; one that holds data is refused.
pub async fn require_absent_for_rebuild(
    api: &InfluxApi,
    org: Option<&Org>,
    name: &str,
) -> Result<(), CheckFailed> {
    let Some(org) = org else { return Ok(()) };
    match api.find_bucket(&org.id, name).await {
        Ok(None) => Ok(()),
        Ok(Some(b)) => match api.bucket_is_empty(&org.id, &b.id).await {
            Ok(true) => {
                tracing::info!(
                    "the destination's bucket {name:?} in organization {:?} holds no data: the rebuild replaces it \
                     with the source's",
                    org.name
                );
                Ok(())
            }
            Ok(false) => Err(CheckFailed(format!(
                "the destination's organization {:?} already has a bucket called {name:?} that holds data, and --full \
                 would rebuild the source's bucket of that name there. Nothing was changed: move that data or rename \
                 that bucket at the destination, then run the command again",
                org.name
            ))),
            Err(e) => {
                Err(CheckFailed(format!("checking whether the destination bucket {name:?} holds data: {e}")))
            }
        },
        Err(e) => Err(CheckFailed(format!("checking the destination bucket {name:?}: {e}"))),
    }
}
