//! Checking a write against the source before it is queued.
//!
//! A write to a bucket that does not exist, or with a token that may not write there, would be
//! answered 204 by the gateway and then refused by the database on every replay: DESIGN.md's
//! failure classes retry such configuration errors forever (they must never drop data), so one
//! mistyped bucket would stall a whole shard. influxd answers these before reading the body, so the
//! gateway asks the source the same question first: an *empty* write with the request's
//! parameters and credential. influxd runs exactly the checks of a real write — org, bucket,
//! write permission (also for write-only tokens, which cannot list buckets) — stores nothing and
//! answers 204. Refusals are passed to the client as influxd worded them.
//!
//! Positive answers are cached per (credential, API, org, bucket/db/rp) for
//! `ADMISSION_CACHE_SECONDS`. When the source cannot answer (down, 5xx, timeout) the write is
//! queued anyway: the stream holds it until the source is back, which is the point of the stream.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use shared::envelope::{Target, WriteParams};
use shared::gateway::GatewayResponse;
use shared::influx_client::{ClientError, ClientOptions, EndpointClients, error_chain};
use shared::secret::{Role, SecretCache, SecretsManagerSource};

use crate::request::WriteRequest;

/// The outcome of a check.
#[derive(Debug)]
pub enum Verdict {
    /// The source would take this write.
    Admitted,
    /// The source refused it: this is influxd's answer, to be passed on.
    Refused(GatewayResponse),
    /// The source could not be asked; the reason is for the log (no secrets in it).
    Unchecked(String),
}

/// The admission check and its cache.
pub struct Admission {
    secret: SecretCache<SecretsManagerSource>,
    /// TLS verified unless the secret's `skip_verify` for the source says otherwise.
    http: EndpointClients,
    ttl: Duration,
    hasher: RandomState,
    admitted: Mutex<HashMap<u64, Instant>>,
    /// Resolved targets (and failures, so an unresolvable write costs one lookup per TTL).
    resolved: Mutex<HashMap<u64, (Instant, Option<Target>)>>,
}

impl Admission {
    pub fn new(secret: SecretCache<SecretsManagerSource>, ttl: Duration) -> Result<Admission, ClientError> {
        let http = EndpointClients::new(ClientOptions {
            timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        })?;
        Ok(Admission {
            secret,
            http,
            ttl,
            hasher: RandomState::new(),
            admitted: Mutex::new(HashMap::new()),
            resolved: Mutex::new(HashMap::new()),
        })
    }

    fn key(&self, write: &WriteRequest) -> u64 {
        let mut h = self.hasher.build_hasher();
        write.api.hash(&mut h);
        let WriteParams { org, org_id, bucket, db, rp, .. } = &write.params;
        (org, org_id, bucket, db, rp).hash(&mut h);
        write.authorization.as_ref().map(|a| a.expose()).hash(&mut h);
        h.finish()
    }

    /// Where `write` lands at the source (`crate::target`), cached like admissions; `None` when
    /// the source cannot tell (the credential cannot read, the source is down): the record then
    /// goes unresolved and the mappings match on what the client sent.
    pub async fn resolve(&self, write: &WriteRequest) -> Option<Target> {
        let key = self.key(write);
        if let Some((until, target)) = self.resolved.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && Instant::now() < *until
        {
            return target.clone();
        }
        let secret = self.secret.get().await.ok()?;
        let source = secret.endpoint(Role::Source);
        let http = self.http.get(source.skip_verify).ok()?;
        let target = match crate::target::resolve(
            http,
            source.base(),
            write.api,
            &write.params,
            write.authorization.as_ref(),
        )
        .await
        {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(reason = %e, api = ?write.api, "could not resolve the write's bucket at the source; it is queued as the client named it");
                None
            }
        };
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (Instant::now() + self.ttl, target.clone()));
        target
    }

    /// Asks the source whether it would take `write` (cached).
    pub async fn check(&self, write: &WriteRequest) -> Verdict {
        let key = self.key(write);
        {
            let mut admitted = self.admitted.lock().unwrap_or_else(|p| p.into_inner());
            match admitted.get(&key) {
                Some(until) if Instant::now() < *until => return Verdict::Admitted,
                Some(_) => {
                    admitted.remove(&key);
                }
                None => {}
            }
        }
        let secret = match self.secret.get().await {
            Ok(s) => s,
            Err(e) => return Verdict::Unchecked(e.to_string()),
        };
        let source = secret.endpoint(Role::Source);
        let http = match self.http.get(source.skip_verify) {
            Ok(c) => c,
            Err(e) => return Verdict::Unchecked(format!("building the HTTP client: {e}")),
        };
        let mut params = write.params.clone();
        params.precision = None;
        let mut req = http
            .post(format!("{}{}", source.base(), write.api.path()))
            .query(&params.query_pairs())
            .body(Bytes::new());
        if let Some(v) = write.authorization.as_ref().and_then(shared::sensitive::Sensitive::header_value) {
            req = req.header(http::header::AUTHORIZATION, v);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Verdict::Unchecked(format!(
                    "source {} did not answer: {}",
                    source.host(),
                    error_chain(&e)
                ));
            }
        };
        let status = resp.status().as_u16();
        match status {
            200..=299 => {
                self.admitted
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key, Instant::now() + self.ttl);
                Verdict::Admitted
            }
            400..=499 if status != 408 && status != 429 => {
                let headers = resp.headers().clone();
                let body = resp.bytes().await.unwrap_or_default();
                let mut out = GatewayResponse { status, headers: http::HeaderMap::new(), body };
                for name in
                    [http::header::CONTENT_TYPE, http::HeaderName::from_static("x-platform-error-code")]
                {
                    if let Some(v) = headers.get(&name) {
                        out.headers.insert(name, v.clone());
                    }
                }
                tracing::info!(status, api = ?write.api, "write refused by the source's check");
                Verdict::Refused(out)
            }
            _ => Verdict::Unchecked(format!("source {} answered {status}", source.host())),
        }
    }
}
