//! The read endpoint: which database the query routers send reads to, i.e. the `read` field of
//! the endpoint secret (shape: `shared::secret`), and how to move it.
//!
//! A switch writes a new secret version (`PutSecretValue`; `AWSCURRENT` moves to it and
//! `AWSPREVIOUS` to the old one) with only `read` changed; every other field, known or not, is
//! kept as it was. The version's `ClientRequestToken` is derived from the version it replaces
//! and the new value, so two operators (or a retried command) making the same switch from the
//! same state create one version, not two; and a switch back and forth (cutover, rollback,
//! cutover) still creates a new version each time, which a token derived from the value alone
//! would not: Secrets Manager ignores a repeated token with the same value and would leave
//! `AWSCURRENT` where it was
//! (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_PutSecretValue.html).
//! After writing, the secret is read back to confirm the switch took.
//!
//! Routers cache the secret (`SECRET_TTL_SECONDS`, default 15 s, `shared::secret`), so every
//! router reads the new endpoint at most one cache time after the switch.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shared::secret::{DEFAULT_TTL, EndpointSecret, Role};
use time::OffsetDateTime;

use crate::aws::lag::rfc3339;
use crate::output::Output;
use crate::output::human_duration;

/// Why the read endpoint could not be read or moved. Never carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("{call} on secret {id}: {reason}")]
    Call { call: &'static str, id: String, reason: String },
    #[error(transparent)]
    Shape(#[from] shared::secret::SecretError),
    #[error(
        "secret {id}: after writing version {written}, AWSCURRENT is version {current} reading from the {read}; the switch did not take"
    )]
    NotApplied { id: String, written: String, current: String, read: &'static str },
}

/// The secret's current version.
#[derive(Debug, Clone)]
pub struct CurrentSecret {
    pub id: String,
    pub version_id: String,
    pub secret: EndpointSecret,
    raw: Value,
}

impl CurrentSecret {
    /// The secret's text as it is (every field, known or not).
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// The secret's text with `read` set to `role` and everything else untouched.
    pub fn with_read(&self, role: Role) -> String {
        let mut v = self.raw.clone();
        if let Value::Object(o) = &mut v {
            o.insert("read".into(), Value::String(role.as_str().into()));
        }
        v.to_string()
    }

    /// "reads go to the {role} ({host}), secret version {version}".
    pub fn describe(&self) -> String {
        format!(
            "reads go to the {} ({}), secret version {}",
            self.secret.read.as_str(),
            self.secret.read_endpoint().host(),
            self.version_id
        )
    }
}

/// Tells what a switch to `role` did and, when it wrote a version, by when every query router
/// follows it; returns those two facts for the JSON answer (empty when nothing was written).
pub async fn report_switch(
    out: &mut Output,
    lambda: &aws_sdk_lambda::Client,
    router: Option<&str>,
    current: &CurrentSecret,
    role: Role,
    switched: &Switched,
) -> serde_json::Map<String, Value> {
    let mut data = serde_json::Map::new();
    let role_name = role.as_str();
    match switched {
        Switched::Already { .. } => out.note(format!("nothing to do: reads already go to the {role_name}")),
        Switched::Written { previous_version_id, version_id } => {
            out.did(format!(
                "wrote version {version_id} of secret {} (was {previous_version_id}): reads go to the {role_name} ({})",
                current.id,
                current.secret.endpoint(role).host()
            ));
            let cache = router_cache_time(lambda, router).await;
            let all_by = OffsetDateTime::now_utc() + cache.duration();
            out.note(format!(
                "every query router reads from the {role_name} by {} (cache time {}: {})",
                rfc3339(all_by),
                human_duration(cache.duration()),
                cache.from
            ));
            data.insert("cache_time".into(), serde_json::json!(cache));
            data.insert("all_routers_switched_by".into(), Value::String(rfc3339(all_by)));
        }
    }
    data
}

/// What a switch did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Switched {
    /// Reads already went there; nothing was written.
    Already { version_id: String },
    /// A new version was written and confirmed as `AWSCURRENT`.
    Written { previous_version_id: String, version_id: String },
}

/// `ClientRequestToken` of the version that replaces `previous_version` with `new_value`: hex
/// SHA-256 (64 characters; the API takes 32 to 64).
pub fn request_token(previous_version: &str, new_value: &str) -> String {
    let mut h = Sha256::new();
    h.update(previous_version.as_bytes());
    h.update(b"\n");
    h.update(new_value.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `AWSCURRENT` and checks its shape.
pub async fn read(
    secrets: &aws_sdk_secretsmanager::Client,
    id: &str,
) -> Result<CurrentSecret, EndpointError> {
    let out = secrets.get_secret_value().secret_id(id).send().await.map_err(|e| EndpointError::Call {
        call: "GetSecretValue",
        id: id.to_string(),
        reason: crate::aws::sdk_error::describe(&e),
    })?;
    let text =
        out.secret_string().ok_or_else(|| shared::secret::SecretError::Empty { id: id.to_string() })?;
    let secret = EndpointSecret::parse(id, text)?;
    // Parsed once more as plain JSON so that fields this program does not know survive a switch.
    // EndpointSecret::parse succeeded, so this cannot fail on the same text.
    let raw: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    Ok(CurrentSecret {
        id: id.to_string(),
        version_id: out.version_id().unwrap_or_default().to_string(),
        secret,
        raw,
    })
}

/// Points reads at `role`; a no-op when they already go there.
pub async fn switch_reads(
    secrets: &aws_sdk_secretsmanager::Client,
    current: &CurrentSecret,
    role: Role,
) -> Result<Switched, EndpointError> {
    if current.secret.read == role {
        return Ok(Switched::Already { version_id: current.version_id.clone() });
    }
    let (token, after) = write_version(secrets, current, current.with_read(role)).await?;
    if after.secret.read != role {
        return Err(EndpointError::NotApplied {
            id: current.id.clone(),
            written: token,
            current: after.version_id,
            read: after.secret.read.as_str(),
        });
    }
    Ok(Switched::Written { previous_version_id: current.version_id.clone(), version_id: after.version_id })
}

/// Writes `value` as the version that replaces `current` (idempotency token from both, see the
/// module's docs) and reads the secret back: the token used, and what `AWSCURRENT` is now.
pub async fn write_version(
    secrets: &aws_sdk_secretsmanager::Client,
    current: &CurrentSecret,
    value: String,
) -> Result<(String, CurrentSecret), EndpointError> {
    let id = current.id.as_str();
    let token = request_token(&current.version_id, &value);
    secrets
        .put_secret_value()
        .secret_id(id)
        .secret_string(value)
        .client_request_token(&token)
        .send()
        .await
        .map_err(|e| EndpointError::Call {
        call: "PutSecretValue",
        id: id.to_string(),
        reason: crate::aws::sdk_error::describe(&e),
    })?;
    let after = read(secrets, id).await?;
    Ok((token, after))
}

/// How long routers may keep serving the old endpoint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheTime {
    pub seconds: f64,
    /// Where the figure came from.
    pub from: String,
}

impl CacheTime {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds.max(0.0))
    }
}

/// The router's `SECRET_TTL_SECONDS` (GetFunctionConfiguration), else the functions' default.
pub async fn router_cache_time(lambda: &aws_sdk_lambda::Client, router: Option<&str>) -> CacheTime {
    let default = |why: String| CacheTime { seconds: DEFAULT_TTL.as_secs_f64(), from: why };
    let Some(router) = router else {
        return default(
            "the functions' default (no query router named: --stack or --router-function)".into(),
        );
    };
    match lambda.get_function_configuration().function_name(router).send().await {
        Ok(cfg) => {
            let ttl = cfg.environment().and_then(|e| e.variables()).and_then(|v| v.get("SECRET_TTL_SECONDS"));
            match ttl.and_then(|t| t.trim().parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0) {
                Some(seconds) => CacheTime { seconds, from: format!("SECRET_TTL_SECONDS of {router}") },
                None => default(format!("the functions' default ({router} sets no SECRET_TTL_SECONDS)")),
            }
        }
        Err(e) => default(format!(
            "the functions' default (could not read {router}'s configuration: {})",
            crate::aws::sdk_error::describe(&e)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn current(text: &str, version: &str) -> CurrentSecret {
        CurrentSecret {
            id: "s".into(),
            version_id: version.into(),
            secret: EndpointSecret::parse("s", text).unwrap(),
            raw: serde_json::from_str(text).unwrap(),
        }
    }

    const TEXT: &str = r#"{"source":{"url":"http://src:8086"},"destination":{"url":"https://dst:8086","skip_verify":true},"read":"source","mappings":{"buckets":{"a":"b"},"unmapped":"source-only"},"note":"kept"}"#;

    #[test]
    fn a_switch_changes_read_and_keeps_every_other_field() {
        let c = current(TEXT, "v1");
        let flipped: Value = serde_json::from_str(&c.with_read(Role::Destination)).unwrap();
        let mut expected: Value = serde_json::from_str(TEXT).unwrap();
        expected["read"] = Value::String("destination".into());
        assert_eq!(flipped, expected);
        assert_eq!(flipped["note"], "kept");
        assert_eq!(flipped["destination"]["skip_verify"], true);
    }

    #[test]
    fn the_token_depends_on_the_replaced_version_and_the_new_value() {
        let t = request_token("v1", "value");
        assert_eq!(t.len(), 64);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(t, request_token("v1", "value"));
        assert_ne!(t, request_token("v2", "value"));
        assert_ne!(t, request_token("v1", "other"));
        // The SHA-256 of "v1\nvalue", computed independently (printf 'v1\nvalue' | sha256sum).
        assert_eq!(t, "091d02aca0c692bfebe751133e886b4e29ff729e19205eb657d44c7608b993e1");
    }
}
