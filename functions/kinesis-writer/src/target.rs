//! Resolving a write's canonical target at the source, as influxd does.
//!
//! A client may name the same bucket several ways: by name or by ID, in an org given by name or
//! ID; a v1 client gives `db` and perhaps `rp`, which influxd maps through the org's DBRP
//! mappings (the default one when `rp` is absent). The destination writer's mappings must match
//! the bucket whatever the client called it, so the gateway asks the source — with the client's
//! own credential, which influxd has just accepted for this write — and the record carries the
//! answer (`shared::envelope::Target`). The lookups follow influxd 2.7's write handlers:
//!
//! - org: `orgID`; else `org`, as an ID when it reads as one, else as a name;
//! - v2 bucket: as an ID when it reads as one and the org has it, else as a name;
//! - v1: the org the credential belongs to (the only org the credential can read; for one that
//!   reads several, as an operator token does, the org of its own authorization), then the DBRP
//!   mapping of `db` and `rp` (or the default for `db`), then its bucket.
//!
//! A credential that may write but not read (a write-only token) cannot ask these questions: the
//! write is then queued unresolved and the mappings match on what the client sent, as before.

use serde::Deserialize;
use shared::envelope::{Api, Target, WriteParams};
use shared::sensitive::Sensitive;

/// Why a target could not be resolved (for the log; never holds a credential).
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{call} answered {status}")]
    Status { call: String, status: u16 },
    #[error("{call}: {reason}")]
    Transport { call: String, reason: String },
    #[error("{0}")]
    NotFound(String),
}

/// Whether `s` reads as an influxd ID (16 hex digits, not all zero).
pub fn is_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.bytes().any(|b| b != b'0')
}

#[derive(Deserialize)]
struct Org {
    id: String,
    name: String,
}
#[derive(Deserialize)]
struct Orgs {
    #[serde(default)]
    orgs: Vec<Org>,
}
#[derive(Deserialize)]
struct Bucket {
    id: String,
    name: String,
}
#[derive(Deserialize)]
struct Buckets {
    #[serde(default)]
    buckets: Vec<Bucket>,
}
#[derive(Deserialize)]
struct Dbrp {
    #[serde(rename = "bucketID")]
    bucket_id: String,
    retention_policy: String,
}
#[derive(Deserialize)]
struct Dbrps {
    #[serde(default)]
    content: Vec<Dbrp>,
}

/// Asks the source at `base` where a write of `api` with `params` lands for `authorization`.
pub async fn resolve(
    http: &reqwest::Client,
    base: &str,
    api: Api,
    params: &WriteParams,
    authorization: Option<&Sensitive>,
) -> Result<Target, ResolveError> {
    let get = |path: &str, query: Vec<(&str, String)>| {
        let mut req = http.get(format!("{}{path}", base.trim_end_matches('/'))).query(&query);
        if let Some(v) = authorization.and_then(Sensitive::header_value) {
            req = req.header(http::header::AUTHORIZATION, v);
        }
        req
    };
    match api {
        Api::V2 => {
            let org = match (&params.org_id, &params.org) {
                (Some(id), _) => one_org(fetch(get("/api/v2/orgs", vec![("orgID", id.clone())])).await?)?,
                (None, Some(o)) if is_id(o) => {
                    one_org(fetch(get("/api/v2/orgs", vec![("orgID", o.clone())])).await?)?
                }
                (None, Some(o)) => one_org(fetch(get("/api/v2/orgs", vec![("org", o.clone())])).await?)?,
                (None, None) => return Err(ResolveError::NotFound("the write names no org".into())),
            };
            let name = params.bucket.clone().unwrap_or_default();
            let mut bucket = None;
            if is_id(&name) {
                // influxd answers 404 for an ID the org does not have; the name is tried next.
                let by_id = get("/api/v2/buckets", vec![("orgID", org.id.clone()), ("id", name.clone())]);
                match fetch::<Buckets>(by_id).await {
                    Ok(found) => bucket = found.buckets.into_iter().next(),
                    Err(ResolveError::Status { status: 404, .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let bucket = match bucket {
                Some(b) => b,
                None => {
                    let found: Buckets = fetch(get(
                        "/api/v2/buckets",
                        vec![("orgID", org.id.clone()), ("name", name.clone())],
                    ))
                    .await?;
                    found.buckets.into_iter().next().ok_or_else(|| {
                        ResolveError::NotFound(format!("no bucket {name:?} in org {}", org.name))
                    })?
                }
            };
            Ok(Target { org_id: org.id, org: org.name, bucket_id: bucket.id, bucket: bucket.name, rp: None })
        }
        Api::V1 => {
            let orgs: Orgs = fetch(get("/api/v2/orgs", vec![])).await?;
            let org = match <[Org; 1]>::try_from(orgs.orgs) {
                Ok([org]) => org,
                Err(all) => match own_org(&get, authorization, &all).await? {
                    Some(org) => org,
                    None => {
                        return Err(ResolveError::NotFound(format!(
                            "the credential reads {} orgs and its own authorization is not among those it can \
                             read (or the source hashes its tokens); a v1 write's org is the credential's, \
                             which cannot be told",
                            all.len()
                        )));
                    }
                },
            };
            let db = params.db.clone().unwrap_or_default();
            let mut query = vec![("orgID", org.id.clone()), ("db", db.clone())];
            match &params.rp {
                Some(rp) => query.push(("rp", rp.clone())),
                None => query.push(("default", "true".into())),
            }
            let dbrps: Dbrps = fetch(get("/api/v2/dbrps", query)).await?;
            let m = dbrps
                .content
                .into_iter()
                .next()
                .ok_or_else(|| ResolveError::NotFound(format!("no DBRP mapping for db {db:?}")))?;
            let bucket: Bucket = fetch(get(&format!("/api/v2/buckets/{}", m.bucket_id), vec![])).await?;
            Ok(Target {
                org_id: org.id,
                org: org.name,
                bucket_id: bucket.id,
                bucket: bucket.name,
                rp: Some(m.retention_policy),
            })
        }
    }
}

#[derive(Deserialize)]
struct Authorization {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "orgID")]
    org_id: String,
}
#[derive(Deserialize)]
struct Authorizations {
    #[serde(default)]
    authorizations: Vec<Authorization>,
}

/// The org of the credential itself, for a credential that reads several (an operator token):
/// its own authorization, found among those it can read by its token. influxd 2.9 with hashed
/// tokens lists no token values: `None` then, as for a credential that cannot read
/// authorizations. The list holds other credentials; they are compared here and dropped, never
/// kept or logged.
async fn own_org(
    get: &impl Fn(&str, Vec<(&str, String)>) -> reqwest::RequestBuilder,
    authorization: Option<&Sensitive>,
    orgs: &[Org],
) -> Result<Option<Org>, ResolveError> {
    let Some(token) = authorization
        .map(Sensitive::expose)
        .and_then(|v| v.strip_prefix("Token ").or_else(|| v.strip_prefix("Bearer ")).map(str::trim))
    else {
        return Ok(None);
    };
    let listed = match fetch::<Authorizations>(get("/api/v2/authorizations", vec![])).await {
        Ok(listed) => listed,
        Err(ResolveError::Status { status: 401 | 403 | 404, .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(own) = listed.authorizations.into_iter().find(|a| a.token.as_deref() == Some(token)) else {
        return Ok(None);
    };
    Ok(orgs.iter().find(|o| o.id == own.org_id).map(|o| Org { id: o.id.clone(), name: o.name.clone() }))
}

fn one_org(orgs: Orgs) -> Result<Org, ResolveError> {
    orgs.orgs.into_iter().next().ok_or_else(|| ResolveError::NotFound("no such org".into()))
}

async fn fetch<T: serde::de::DeserializeOwned>(req: reqwest::RequestBuilder) -> Result<T, ResolveError> {
    // The call without its query (which holds names, never credentials, but is noise).
    let call = req
        .try_clone()
        .and_then(|r| r.build().ok())
        .map(|r| format!("GET {}", r.url().path()))
        .unwrap_or_else(|| "GET".into());
    let resp = req.send().await.map_err(|e| ResolveError::Transport {
        call: call.clone(),
        reason: shared::influx_client::error_chain(&e),
    })?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        return Err(ResolveError::Status { call, status });
    }
    resp.json::<T>().await.map_err(|e| ResolveError::Transport { call, reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sixteen_hex_digits_not_all_zero() {
        assert!(is_id("0a1b2c3d4e5f6789"));
        assert!(!is_id("0000000000000000"));
        assert!(!is_id("telegraf"));
        assert!(!is_id("0a1b2c3d4e5f678"));
        assert!(!is_id("0a1b2c3d4e5f678g"));
    }
}
