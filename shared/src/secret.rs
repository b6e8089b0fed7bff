//! The endpoint secret: where the source, the destination and the readers are.
//!
//! # JSON shape (the `SecretString` of one Secrets Manager secret)
//!
//! ```json
//! {
//!   "source":      { "url": "http://influxdb.internal:8086" },
//!   "destination": { "url": "https://abc123.us-east-1.timestream-influxdb.amazonaws.com:8086" },
//!   "read": "source",
//!   "mappings": {
//!     "buckets": { "telegraf": "telegraf", "app/autogen": "app" },
//!     "unmapped": "source-only",
//!     "orgs":    { "old-org": "new-org" },
//!     "tokens":  { "<source token>": "<destination token>" },
//!     "token_hashes": { "$influxdb2-sha256$<hash of a source token>": "<destination token>" }
//!   }
//! }
//! ```
//!
//! - `source`, `destination`: the two databases (`url`, and `skip_verify: true` only for a
//!   server with a certificate that cannot be verified — TLS verification is on by default).
//! - `read`: which of the two answers reads, `"source"` or `"destination"`. `cutover` sets it to
//!   `"destination"`, `rollback` back to `"source"`.
//! - `mappings` (optional), for a live migration of only some buckets, or when names or tokens
//!   differ between the two databases; applied only on the way to the destination:
//!   - `buckets`: when present and not empty, only writes to these buckets (v2 `bucket`, or v1
//!     `db` / `db/rp`) are replayed to the destination, renamed to the value;
//!   - `unmapped` (required with `buckets`; there is no silent default): what happens to a write
//!     to any other bucket. `"source-only"`: it reaches only the source, and the destination
//!     writer counts it per bucket (`status` and `verify` show the count); `"fail"`: a configuration error —
//!     the destination writer stops at the record (a stall `status` shows) until the mapping is
//!     added or the operator parks the shard;
//!   - `orgs`: `org` / `orgID` values renamed;
//!   - `tokens`: a client's source token replaced by the destination token;
//!   - `token_hashes`: the same, keyed by the hash influxd 2.9 stores instead of the token (a
//!     hashed-token source's plaintext is gone; the gateway hashes what a client presents).
//!
//! # Cache
//!
//! Every function reads the secret through [`SecretCache`]: a value is reused for a configurable
//! time (`SECRET_TTL_SECONDS`, default 15 s, read by each function's settings), so a cutover
//! reaches every router within that time.
//! When a refresh fails the last good value keeps being served (and the refresh is retried at
//! most every few seconds): a Secrets Manager outage must not become a database outage. Secret
//! values never appear in logs or errors.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::envelope::{Api, Target, WriteParams};
use crate::sensitive::Sensitive;

/// The default cache time.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);
/// After a failed refresh, how long a stale value is served before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// Why the secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading secret {id} from Secrets Manager failed: {reason}")]
    Fetch { id: String, reason: String },
    #[error("secret {id} has no SecretString")]
    Empty { id: String },
    #[error("secret {id} is not the endpoint secret's JSON shape: {reason}")]
    Shape { id: String, reason: String },
}

/// One database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub url: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_verify: bool,
}

impl Endpoint {
    /// The URL without any trailing slash.
    pub fn base(&self) -> &str {
        self.url.trim_end_matches('/')
    }

    /// Scheme, host and port only (what may be logged or shown).
    pub fn host(&self) -> String {
        host_of(&self.url)
    }
}

/// Scheme, host and port of a URL, without path, query or credentials.
pub fn host_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    if scheme.is_empty() { authority.to_string() } else { format!("{scheme}://{authority}") }
}

/// Which database answers reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Source,
    Destination,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Destination => "destination",
        }
    }
}

/// What happens to a write whose bucket is not in `mappings.buckets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unmapped {
    /// The source gets it, the destination does not; the destination writer counts it.
    SourceOnly,
    /// A configuration error: the destination writer stops at the record until the mapping is
    /// added or the shard is parked.
    Fail,
}

/// Renames applied on the way to the destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mappings {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub buckets: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmapped: Option<Unmapped>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub orgs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tokens: BTreeMap<Sensitive, Sensitive>,
    /// Like `tokens`, keyed by the token's hash as influxd 2.9 stores it ([`token_hash`]): for a
    /// hashed-token source whose plaintext tokens are gone, rebuilt at a destination with new
    /// tokens (`influx-migration tokens --apply` writes these).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub token_hashes: BTreeMap<Sensitive, Sensitive>,
}

/// The two hashes influxd 2.9 can store a token as (`pkg/crypt/algorithm/influxdb2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenHash {
    Sha256,
    Sha512,
}

/// A token as influxd 2.9 stores it when token hashing is on: `$influxdb2-sha256$` (or `-sha512$`)
/// then the unsalted digest in URL-safe base64 with padding. Unsalted on purpose (influxd looks
/// authorizations up by it), which is what lets the gateway recognise a client's token by it.
pub fn token_hash(token: &str, variant: TokenHash) -> Sensitive {
    use base64::Engine as _;
    use sha2::Digest as _;
    let engine = base64::engine::general_purpose::URL_SAFE;
    match variant {
        TokenHash::Sha256 => Sensitive::new(format!(
            "$influxdb2-sha256${}",
            engine.encode(sha2::Sha256::digest(token.as_bytes()))
        )),
        TokenHash::Sha512 => Sensitive::new(format!(
            "$influxdb2-sha512${}",
            engine.encode(sha2::Sha512::digest(token.as_bytes()))
        )),
    }
}

/// What the destination should receive for a write, after the mappings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// Replay with these parameters and this credential.
    Write { params: WriteParams, authorization: Option<Sensitive> },
    /// The bucket is not part of this migration (`"unmapped": "source-only"`): the source gets
    /// it, the destination does not.
    NotMigrated,
    /// The bucket is not in the mappings and `"unmapped"` is `"fail"`: the destination must not
    /// go on past it. `bucket` is what the client named (`bucket`, or `db[/rp]`).
    Unmapped { bucket: String },
}

impl Mappings {
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
            && self.unmapped.is_none()
            && self.orgs.is_empty()
            && self.tokens.is_empty()
            && self.token_hashes.is_empty()
    }

    /// What a write to a bucket outside `buckets` becomes.
    fn outside(&self, bucket: String) -> Mapped {
        match self.unmapped {
            Some(Unmapped::Fail) => Mapped::Unmapped { bucket },
            // `EndpointSecret::parse` refuses `buckets` without `unmapped`; a value built in
            // code without it keeps the old meaning.
            Some(Unmapped::SourceOnly) | None => Mapped::NotMigrated,
        }
    }

    /// Applies the mappings to one write, by the names the client sent.
    pub fn apply(&self, api: Api, params: &WriteParams, authorization: Option<&Sensitive>) -> Mapped {
        self.apply_to(api, params, authorization, None)
    }

    /// Applies the mappings to one write whose canonical target at the source is `target`
    /// (resolved by the gateway; `None` for a record of an older gateway or a credential that
    /// cannot read): the bucket list matches the resolved bucket by name or ID (and a v1 write's
    /// `db/rp` with the retention policy it resolved to, so `db=app` without `rp` matches
    /// `"app/autogen"` when that is app's default), whatever the client called it. A resolved
    /// v2 write reaches the destination by names — org (mapped) and bucket — since the source's
    /// IDs mean nothing there.
    pub fn apply_to(
        &self,
        api: Api,
        params: &WriteParams,
        authorization: Option<&Sensitive>,
        target: Option<&Target>,
    ) -> Mapped {
        let authorization = authorization.map(|a| self.map_token(a));
        let Some(t) = target else { return self.by_client_names(api, params, authorization) };
        let mut p = params.clone();
        if !self.buckets.is_empty() {
            let keys: Vec<String> = match api {
                Api::V1 => [
                    t.rp.as_ref().map(|rp| format!("{}/{rp}", p.db.as_deref().unwrap_or_default())),
                    Some(t.bucket.clone()),
                    Some(t.bucket_id.clone()),
                    p.db.clone(),
                ]
                .into_iter()
                .flatten()
                .collect(),
                Api::V2 => [Some(t.bucket.clone()), Some(t.bucket_id.clone()), p.bucket.clone()]
                    .into_iter()
                    .flatten()
                    .collect(),
            };
            let Some(to) = keys.iter().find_map(|k| self.buckets.get(k)).cloned() else {
                return self.outside(t.bucket.clone());
            };
            match api {
                Api::V2 => p.bucket = Some(to),
                Api::V1 => set_db_rp(&mut p, to),
            }
        } else if api == Api::V2 {
            p.bucket = Some(t.bucket.clone());
        }
        if api == Api::V2 {
            let org = self.orgs.get(&t.org).or_else(|| self.orgs.get(&t.org_id)).cloned();
            p.org = Some(org.unwrap_or_else(|| t.org.clone()));
            p.org_id = None;
        }
        Mapped::Write { params: p, authorization }
    }

    fn by_client_names(&self, api: Api, params: &WriteParams, authorization: Option<Sensitive>) -> Mapped {
        let mut p = params.clone();
        if !self.buckets.is_empty() {
            match api {
                Api::V2 => match p.bucket.as_ref().and_then(|b| self.buckets.get(b)) {
                    Some(to) => p.bucket = Some(to.clone()),
                    None => return self.outside(p.bucket.clone().unwrap_or_default()),
                },
                Api::V1 => {
                    let db = p.db.clone().unwrap_or_default();
                    let with_rp = p.rp.as_ref().map(|rp| format!("{db}/{rp}"));
                    let hit = with_rp
                        .as_ref()
                        .and_then(|k| self.buckets.get(k))
                        .or_else(|| self.buckets.get(&db))
                        .cloned();
                    match hit {
                        Some(to) => set_db_rp(&mut p, to),
                        None => return self.outside(with_rp.unwrap_or(db)),
                    }
                }
            }
        }
        if let Some(org) = p.org.as_ref().and_then(|o| self.orgs.get(o)) {
            p.org = Some(org.clone());
        }
        if let Some(org) = p.org_id.as_ref().and_then(|o| self.orgs.get(o)) {
            p.org_id = Some(org.clone());
        }
        Mapped::Write { params: p, authorization }
    }

    /// The credential with its token replaced when the mappings name it, in every form influxd
    /// accepts: a bare token (the v1 `p` parameter), `Token <t>` / `Bearer <t>`, the 1.x
    /// `Token <user>:<t>`, and HTTP Basic with the token as password (what the kinesis-writer
    /// makes of a v1 write's `u`/`p`). A credential the mappings do not name is kept as it is.
    pub fn map_token(&self, authorization: &Sensitive) -> Sensitive {
        if self.tokens.is_empty() && self.token_hashes.is_empty() {
            return authorization.clone();
        }
        let value = authorization.expose().trim();
        let mapped = match value.split_once(' ') {
            None => self.destination_token(value),
            Some((scheme, rest)) => {
                let rest = rest.trim();
                if scheme.eq_ignore_ascii_case("basic") {
                    self.map_basic(scheme, rest)
                } else if let Some(to) = self.destination_token(rest) {
                    Some(Sensitive::new(format!("{scheme} {}", to.expose())))
                } else {
                    rest.split_once(':').and_then(|(user, token)| {
                        let to = self.destination_token(token)?;
                        Some(Sensitive::new(format!("{scheme} {user}:{}", to.expose())))
                    })
                }
            }
        };
        mapped.unwrap_or_else(|| authorization.clone())
    }

    /// The destination token for a source token: by the token itself, else by its hash.
    fn destination_token(&self, token: &str) -> Option<Sensitive> {
        if let Some(to) = self.tokens.get(&Sensitive::new(token)) {
            return Some(to.clone());
        }
        if self.token_hashes.is_empty() {
            return None;
        }
        [TokenHash::Sha256, TokenHash::Sha512]
            .into_iter()
            .find_map(|variant| self.token_hashes.get(&token_hash(token, variant)).cloned())
    }

    /// `Basic base64(user:token)` with the token mapped; `None` when it does not decode or the
    /// mappings do not name the token.
    fn map_basic(&self, scheme: &str, encoded: &str) -> Option<Sensitive> {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let decoded = String::from_utf8(engine.decode(encoded).ok()?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        let to = self.destination_token(password)?;
        Some(Sensitive::new(format!("{scheme} {}", engine.encode(format!("{user}:{}", to.expose())))))
    }
}

/// A v1 mapping's value: `db/rp`, or `db` alone (the destination's default retention policy).
fn set_db_rp(p: &mut WriteParams, to: String) {
    match to.split_once('/') {
        Some((d, r)) => {
            p.db = Some(d.to_string());
            p.rp = Some(r.to_string());
        }
        None => p.db = Some(to),
    }
}

/// The endpoint secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSecret {
    pub source: Endpoint,
    pub destination: Endpoint,
    pub read: Role,
    #[serde(default, skip_serializing_if = "Mappings::is_empty")]
    pub mappings: Mappings,
}

impl EndpointSecret {
    /// Parses the secret's JSON; the error says what is wrong without echoing values.
    pub fn parse(id: &str, json: &str) -> Result<EndpointSecret, SecretError> {
        let mut reader = serde_json::Deserializer::from_str(json);
        let secret: EndpointSecret = serde_path_to_error::deserialize(&mut reader)
            .map_err(|e| SecretError::Shape { id: id.to_string(), reason: describe_json_error(&e) })?;
        if !secret.mappings.buckets.is_empty() && secret.mappings.unmapped.is_none() {
            return Err(SecretError::Shape {
                id: id.to_string(),
                reason: "mappings.buckets is set, so say what happens to writes to other buckets: \
                         \"unmapped\": \"source-only\" (they reach only the source, counted) or \"fail\" \
                         (the destination writer stops at them until a mapping is added)"
                    .into(),
            });
        }
        for (role, ep) in [("source", &secret.source), ("destination", &secret.destination)] {
            if !(ep.url.starts_with("http://") || ep.url.starts_with("https://")) {
                return Err(SecretError::Shape {
                    id: id.to_string(),
                    reason: format!("{role}.url must start with http:// or https://"),
                });
            }
        }
        Ok(secret)
    }

    pub fn endpoint(&self, role: Role) -> &Endpoint {
        match role {
            Role::Source => &self.source,
            Role::Destination => &self.destination,
        }
    }

    /// The endpoint reads go to.
    pub fn read_endpoint(&self) -> &Endpoint {
        self.endpoint(self.read)
    }
}

/// What is wrong with the secret's JSON, naming the field (`source.url`, `mappings.unmapped`)
/// and never echoing a value: serde's "invalid type: string \"…\"" and "unknown variant `…`"
/// quote what they found, and a URL may hold credentials.
fn describe_json_error(e: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let inner = e.inner();
    let at = format!("at line {} column {}", inner.line(), inner.column());
    let path = e.path().to_string();
    let field = if path == "." || path.is_empty() { "the secret".to_string() } else { path };
    let msg = inner.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg);
    let expected = |rest: &str| rest.split_once(", expected ").map(|(_, exp)| exp.to_string());
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        // "<kind> <value>, expected <what>": keep the kind only ("string", "integer", "map").
        let kind = rest.split([' ', ',']).next().unwrap_or("value");
        let want = expected(rest).unwrap_or_else(|| "another type".into());
        return format!("{field} must be {want}, not a {kind} ({at})");
    }
    if let Some(rest) = msg.strip_prefix("invalid value: ") {
        let want = expected(rest).unwrap_or_else(|| "another value".into());
        return format!("{field} has a value it cannot take: expected {want} ({at})");
    }
    if let Some(rest) = msg.strip_prefix("unknown variant ") {
        let want = expected(rest).unwrap_or_else(|| "another value".into());
        return format!("{field} must be {want} ({at})");
    }
    if matches!(inner.classify(), serde_json::error::Category::Data) && !msg.starts_with("missing field") {
        // Any other data error: its wording may quote what it found.
        return format!("{field} does not have the expected shape ({at})");
    }
    // Syntax errors, an early end, "missing field `read`": positions and field names only.
    format!("{msg} ({at})")
}

/// Where secret values come from (Secrets Manager in production).
pub trait SecretSource: Send + Sync {
    /// A short name for errors and logs (the secret ID, never its value).
    fn id(&self) -> &str;
    /// The current `SecretString`.
    fn fetch(&self) -> impl Future<Output = Result<String, SecretError>> + Send;
}

/// Reads `AWSCURRENT` of one secret with aws-sdk-secretsmanager.
#[derive(Debug, Clone)]
pub struct SecretsManagerSource {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretsManagerSource {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        SecretsManagerSource { client, secret_id: secret_id.into() }
    }
}

impl SecretSource for SecretsManagerSource {
    fn id(&self) -> &str {
        &self.secret_id
    }

    async fn fetch(&self) -> Result<String, SecretError> {
        let out = self.client.get_secret_value().secret_id(&self.secret_id).send().await.map_err(|e| {
            SecretError::Fetch {
                id: self.secret_id.clone(),
                reason: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
            }
        })?;
        out.secret_string.ok_or_else(|| SecretError::Empty { id: self.secret_id.clone() })
    }
}

#[derive(Debug)]
struct Cached {
    value: Arc<EndpointSecret>,
    fresh_until: Instant,
}

/// The endpoint secret, cached; serves the last good value when a refresh fails.
#[derive(Debug)]
pub struct SecretCache<S> {
    source: S,
    ttl: Duration,
    state: Mutex<Option<Cached>>,
}

impl<S: SecretSource> SecretCache<S> {
    pub fn new(source: S, ttl: Duration) -> SecretCache<S> {
        SecretCache { source, ttl, state: Mutex::new(None) }
    }

    /// The secret: cached while fresh, refreshed when not, and the last good value when the
    /// refresh fails. An error only when no value was ever read.
    pub async fn get(&self) -> Result<Arc<EndpointSecret>, SecretError> {
        let mut state = self.state.lock().await;
        if let Some(c) = state.as_ref()
            && Instant::now() < c.fresh_until
        {
            return Ok(c.value.clone());
        }
        let fetched = match self.source.fetch().await {
            Ok(json) => EndpointSecret::parse(self.source.id(), &json),
            Err(e) => Err(e),
        };
        match fetched {
            Ok(secret) => {
                let value = Arc::new(secret);
                *state = Some(Cached { value: value.clone(), fresh_until: Instant::now() + self.ttl });
                Ok(value)
            }
            Err(e) => match state.as_mut() {
                Some(c) => {
                    tracing::warn!(secret_id = self.source.id(), error = %e, "secret refresh failed; serving the last good value");
                    c.fresh_until = Instant::now() + RETRY_AFTER_FAILURE.min(self.ttl);
                    Ok(c.value.clone())
                }
                None => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const JSON: &str =
        r#"{"source":{"url":"http://src:8086"},"destination":{"url":"https://dst:8086/"},"read":"source"}"#;

    struct Scripted {
        answers: std::sync::Mutex<Vec<Result<String, ()>>>,
        calls: AtomicUsize,
    }

    impl SecretSource for Scripted {
        fn id(&self) -> &str {
            "test-secret"
        }
        async fn fetch(&self) -> Result<String, SecretError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut a = self.answers.lock().unwrap();
            let next = if a.len() > 1 { a.remove(0) } else { a[0].clone() };
            next.map_err(|_| SecretError::Fetch { id: "test-secret".into(), reason: "unreachable".into() })
        }
    }

    fn scripted(answers: Vec<Result<String, ()>>) -> Scripted {
        Scripted { answers: std::sync::Mutex::new(answers), calls: AtomicUsize::new(0) }
    }

    #[test]
    fn parses_the_documented_shape() {
        let s = EndpointSecret::parse("id", JSON).unwrap();
        assert_eq!(s.read, Role::Source);
        assert_eq!(s.read_endpoint().base(), "http://src:8086");
        assert_eq!(s.destination.base(), "https://dst:8086");
        assert!(s.mappings.is_empty());
    }

    #[test]
    fn shape_errors_name_the_problem_without_values() {
        let e = EndpointSecret::parse(
            "id",
            r#"{"source":{"url":"http://a"},"destination":{"url":"http://b"},"read":"sideways"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("read must be `source` or `destination`"), "{e}");
        assert!(!e.contains("sideways"), "{e}");
        let e = EndpointSecret::parse(
            "id",
            r#"{"source":{"url":"ftp://secret-host"},"destination":{"url":"http://b"},"read":"source"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("source.url must start with http"), "{e}");
        assert!(!e.contains("secret-host"), "{e}");
    }

    /// Issue 31: serde's "invalid type: string \"…\"" echoed the value (a URL with credentials
    /// could reach stall records, metrics and logs), and every unknown variant was reported as
    /// `read`'s error.
    #[test]
    fn a_wrong_type_or_value_names_the_field_and_never_echoes_the_value() {
        let wrong_type = r#"{"source":{"url":"http://a","skip_verify":"https://user:hunter2@db"},"destination":{"url":"http://b"},"read":"source"}"#;
        let e = EndpointSecret::parse("id", wrong_type).unwrap_err().to_string();
        assert!(!e.contains("hunter2") && !e.contains("https://user"), "{e}");
        assert!(e.contains("source.skip_verify"), "names the field: {e}");
        assert!(e.contains("a boolean"), "says what is expected: {e}");
        let wrong_url_type = r#"{"source":{"url":["http://user:hunter2@db"]},"destination":{"url":"http://b"},"read":"source"}"#;
        let e = EndpointSecret::parse("id", wrong_url_type).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("source.url"), "{e}");
        let unmapped = r#"{"source":{"url":"http://a"},"destination":{"url":"http://b"},"read":"source",
            "mappings":{"buckets":{"a":"b"},"unmapped":"drop-hunter2"}}"#;
        let e = EndpointSecret::parse("id", unmapped).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("mappings.unmapped"), "the unknown value is unmapped's, not read's: {e}");
        assert!(!e.contains("read must be"), "{e}");
    }

    #[test]
    fn host_of_drops_path_and_credentials() {
        assert_eq!(host_of("https://user:pw@db.example.com:8086/path?q=1"), "https://db.example.com:8086");
        assert_eq!(host_of("http://127.0.0.1:9999"), "http://127.0.0.1:9999");
    }

    #[tokio::test]
    async fn cache_serves_fresh_values_without_refetching() {
        let cache = SecretCache::new(scripted(vec![Ok(JSON.into())]), Duration::from_secs(60));
        cache.get().await.unwrap();
        cache.get().await.unwrap();
        assert_eq!(cache.source.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn cache_keeps_the_last_good_value_when_refresh_fails() {
        let cache = SecretCache::new(scripted(vec![Ok(JSON.into()), Err(())]), Duration::from_millis(1));
        let first = cache.get().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = cache.get().await.unwrap();
        assert_eq!(first, second);
        assert_eq!(cache.source.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn cache_fails_when_nothing_was_ever_read() {
        let cache = SecretCache::new(scripted(vec![Err(())]), Duration::from_secs(1));
        assert!(matches!(cache.get().await, Err(SecretError::Fetch { .. })));
    }

    #[tokio::test]
    async fn cache_follows_a_flip_after_the_ttl() {
        let flipped = JSON.replace("\"read\":\"source\"", "\"read\":\"destination\"");
        let cache = SecretCache::new(scripted(vec![Ok(JSON.into()), Ok(flipped)]), Duration::from_millis(20));
        assert_eq!(cache.get().await.unwrap().read, Role::Source);
        assert_eq!(cache.get().await.unwrap().read, Role::Source);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(cache.get().await.unwrap().read, Role::Destination);
    }

    fn v2(bucket: &str) -> WriteParams {
        WriteParams { org: Some("old-org".into()), bucket: Some(bucket.into()), ..Default::default() }
    }

    #[test]
    fn mappings_rename_filter_and_swap_tokens() {
        let m: Mappings = serde_json::from_str(
            r#"{"buckets":{"a":"a2","db/rp":"x"},"orgs":{"old-org":"new-org"},"tokens":{"src-tok":"dst-tok"}}"#,
        )
        .unwrap();
        let auth = Sensitive::new("Token src-tok");
        match m.apply(Api::V2, &v2("a"), Some(&auth)) {
            Mapped::Write { params, authorization } => {
                assert_eq!(params.bucket.as_deref(), Some("a2"));
                assert_eq!(params.org.as_deref(), Some("new-org"));
                assert_eq!(authorization.unwrap().expose(), "Token dst-tok");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.apply(Api::V2, &v2("not-listed"), Some(&auth)), Mapped::NotMigrated);
        let v1 = WriteParams { db: Some("db".into()), rp: Some("rp".into()), ..Default::default() };
        match m.apply(Api::V1, &v1, None) {
            Mapped::Write { params, .. } => {
                assert_eq!(params.db.as_deref(), Some("x"));
                assert_eq!(params.rp.as_deref(), Some("rp"));
            }
            other => panic!("{other:?}"),
        }
        let other_token = Sensitive::new("Token unknown");
        assert_eq!(m.map_token(&other_token), other_token);
    }

    /// On main a write to a bucket outside `mappings.buckets` was skipped at the destination with
    /// no word said: the secret must say what it wants, and "fail" must never skip.
    #[test]
    fn a_bucket_list_without_an_unmapped_policy_is_refused_and_fail_never_skips() {
        let base = r#"{"source":{"url":"http://s:8086"},"destination":{"url":"http://d:8086"},"read":"source","mappings":{"buckets":{"a":"a"}MORE}}"#;
        let e = EndpointSecret::parse("id", &base.replace("MORE", "")).unwrap_err().to_string();
        assert!(e.contains("\"unmapped\": \"source-only\"") && e.contains("\"fail\""), "{e}");
        let bad = EndpointSecret::parse("id", &base.replace("MORE", r#","unmapped":"drop""#));
        assert!(bad.is_err(), "an unknown policy is refused");

        let fail = EndpointSecret::parse("id", &base.replace("MORE", r#","unmapped":"fail""#)).unwrap();
        assert_eq!(fail.mappings.unmapped, Some(Unmapped::Fail));
        assert_eq!(
            fail.mappings.apply(Api::V2, &v2("other"), None),
            Mapped::Unmapped { bucket: "other".into() }
        );
        let v1 = WriteParams { db: Some("app".into()), ..Default::default() };
        assert_eq!(fail.mappings.apply(Api::V1, &v1, None), Mapped::Unmapped { bucket: "app".into() });
        assert!(matches!(fail.mappings.apply(Api::V2, &v2("a"), None), Mapped::Write { .. }));

        let only =
            EndpointSecret::parse("id", &base.replace("MORE", r#","unmapped":"source-only""#)).unwrap();
        assert_eq!(only.mappings.apply(Api::V2, &v2("other"), None), Mapped::NotMigrated);
        // Without a bucket list every bucket is migrated; no policy is needed.
        let all = r#"{"source":{"url":"http://s:8086"},"destination":{"url":"http://d:8086"},"read":"source","mappings":{"orgs":{"o":"p"}}}"#;
        assert!(EndpointSecret::parse("id", all).is_ok());
    }

    /// On main the mappings matched only the client's words: a v1 write with `db=app` and no
    /// `rp` missed the documented key `"app/autogen"`, a v2 write by bucket ID missed its name.
    #[test]
    fn the_resolved_target_matches_whatever_the_client_called_the_bucket() {
        let m: Mappings = serde_json::from_str(
            r#"{"buckets":{"telegraf":"telegraf-new","app/autogen":"app"},"unmapped":"fail","orgs":{"old-org":"new-org"}}"#,
        )
        .unwrap();
        let target = |bucket: &str, rp: Option<&str>| Target {
            org_id: "0000000000000abc".into(),
            org: "old-org".into(),
            bucket_id: "00000000000000b1".into(),
            bucket: bucket.into(),
            rp: rp.map(str::to_string),
        };
        // v2 by bucket ID and org ID: the destination gets names, mapped.
        let by_id = WriteParams {
            org_id: Some("0000000000000abc".into()),
            bucket: Some("00000000000000b1".into()),
            precision: Some("s".into()),
            ..Default::default()
        };
        match m.apply_to(Api::V2, &by_id, None, Some(&target("telegraf", None))) {
            Mapped::Write { params, .. } => {
                assert_eq!(params.bucket.as_deref(), Some("telegraf-new"));
                assert_eq!((params.org.as_deref(), params.org_id.as_deref()), (Some("new-org"), None));
                assert_eq!(params.precision.as_deref(), Some("s"));
            }
            other => panic!("{other:?}"),
        }
        // Without the target (an older gateway) it is not recognised, and "fail" says so.
        assert!(matches!(m.apply(Api::V2, &by_id, None), Mapped::Unmapped { .. }));
        // v1 without rp, resolved through app's default DBRP mapping (autogen).
        let v1 = WriteParams { db: Some("app".into()), ..Default::default() };
        match m.apply_to(Api::V1, &v1, None, Some(&target("app", Some("autogen")))) {
            Mapped::Write { params, .. } => {
                assert_eq!((params.db.as_deref(), params.rp.as_deref()), (Some("app"), None));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(m.apply(Api::V1, &v1, None), Mapped::Unmapped { .. }));
        // A bucket outside the list, however named, follows "unmapped".
        assert_eq!(
            m.apply_to(Api::V2, &v2("0000000000000ccc"), None, Some(&target("other", None))),
            Mapped::Unmapped { bucket: "other".into() }
        );
        // No bucket list: a resolved v2 write still goes by names.
        let all: Mappings = serde_json::from_str(r#"{"tokens":{"a":"b"}}"#).unwrap();
        match all.apply_to(Api::V2, &by_id, None, Some(&target("telegraf", None))) {
            Mapped::Write { params, .. } => {
                assert_eq!(params.bucket.as_deref(), Some("telegraf"));
                assert_eq!((params.org.as_deref(), params.org_id.as_deref()), (Some("old-org"), None));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tokens_are_mapped_in_every_form_influxd_accepts() {
        use base64::Engine as _;
        let m = Mappings {
            tokens: BTreeMap::from([(Sensitive::new("src-tok"), Sensitive::new("dst-tok"))]),
            ..Default::default()
        };
        let map = |s: &str| m.map_token(&Sensitive::new(s)).expose().to_string();
        assert_eq!(map("src-tok"), "dst-tok");
        assert_eq!(map("Token src-tok"), "Token dst-tok");
        assert_eq!(map("Bearer src-tok"), "Bearer dst-tok");
        assert_eq!(map("token src-tok"), "token dst-tok");
        assert_eq!(map("Token me:src-tok"), "Token me:dst-tok");
        let engine = base64::engine::general_purpose::STANDARD;
        let basic = format!("Basic {}", engine.encode("me:src-tok"));
        assert_eq!(map(&basic), format!("Basic {}", engine.encode("me:dst-tok")));
        // Unknown tokens and undecodable Basic values pass unchanged.
        assert_eq!(map("Token other"), "Token other");
        assert_eq!(map("Basic !!!"), "Basic !!!");
        let unknown_basic = format!("Basic {}", engine.encode("me:other"));
        assert_eq!(map(&unknown_basic), unknown_basic);
    }

    #[test]
    fn a_hashed_token_source_maps_the_token_a_client_presents_by_its_hash() {
        use base64::Engine as _;
        // influxd 2.9 keeps only `$influxdb2-sha256$` + base64url(sha256(token)); after a rebuild
        // at an older destination the mapping is keyed by that hash (the plaintext is gone).
        let m: Mappings = serde_json::from_str(
            r#"{"token_hashes":{
                "$influxdb2-sha256$Bs8e7v4hsII1XAtTIPE4q3MbkOXmyd1yYRWs6qaOrwM=":"dst-tok",
                "$influxdb2-sha512$hgzHor_RvhzF1yNoeV8knNojrw5rfA0vtlwKa2dK89VY5sEIeP5ez0B9ef8ZyypihvsGYgYGLPOZr8HhgQiZLw==":"dst-512"}}"#,
        )
        .unwrap();
        let map = |s: &str| m.map_token(&Sensitive::new(s)).expose().to_string();
        assert_eq!(map("src-tok"), "dst-tok");
        assert_eq!(map("Token src-tok"), "Token dst-tok");
        assert_eq!(map("Bearer src-tok"), "Bearer dst-tok");
        assert_eq!(map("Token me:src-tok"), "Token me:dst-tok");
        let engine = base64::engine::general_purpose::STANDARD;
        assert_eq!(
            map(&format!("Basic {}", engine.encode("me:src-tok"))),
            format!("Basic {}", engine.encode("me:dst-tok"))
        );
        assert_eq!(map("Token other"), "Token other");
        assert_eq!(
            token_hash("src-tok", TokenHash::Sha512).expose(),
            "$influxdb2-sha512$hgzHor_RvhzF1yNoeV8knNojrw5rfA0vtlwKa2dK89VY5sEIeP5ez0B9ef8ZyypihvsGYgYGLPOZr8HhgQiZLw=="
        );
        // A plain mapping wins over a hash of the same token.
        let both: Mappings = serde_json::from_str(
            r#"{"tokens":{"src-tok":"plain"},"token_hashes":{"$influxdb2-sha256$Bs8e7v4hsII1XAtTIPE4q3MbkOXmyd1yYRWs6qaOrwM=":"hashed"}}"#,
        )
        .unwrap();
        assert_eq!(both.map_token(&Sensitive::new("Token src-tok")).expose(), "Token plain");
        // The hashes are secrets too: the debug form shows none of them.
        assert!(!format!("{m:?}").contains("Bs8e7v4"), "{m:?}");
    }

    #[test]
    fn a_v1_write_with_user_and_password_replays_with_the_mapped_token() {
        use base64::Engine as _;
        // The kinesis-writer turns `?u=me&p=src-tok` into Basic; the destination writer must
        // send the destination's token, or the destination answers 401 for ever.
        let m: Mappings = serde_json::from_str(r#"{"tokens":{"src-tok":"dst-tok"}}"#).unwrap();
        let engine = base64::engine::general_purpose::STANDARD;
        let auth = Sensitive::new(format!("Basic {}", engine.encode("me:src-tok")));
        let v1 = WriteParams { db: Some("db".into()), ..Default::default() };
        match m.apply(Api::V1, &v1, Some(&auth)) {
            Mapped::Write { authorization, .. } => {
                assert_eq!(authorization.unwrap().expose(), format!("Basic {}", engine.encode("me:dst-tok")));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_mappings_change_nothing() {
        let m = Mappings::default();
        let auth = Sensitive::new("Token t");
        assert_eq!(m.map_token(&auth), auth);
        assert_eq!(
            m.apply(Api::V2, &v2("b"), Some(&auth)),
            Mapped::Write { params: v2("b"), authorization: Some(auth.clone()) }
        );
    }
}
