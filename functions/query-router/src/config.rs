//! The function's settings, read once from its environment at cold start.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SECRET_ID` | required | the endpoint secret (name or ARN) |
//! | `SECRET_TTL_SECONDS` | 15 | how long the secret is cached: a cutover reaches every router within this time |
//! | `UPSTREAM_TIMEOUT_SECONDS` | 25 | the longest wait for the database's whole answer; under API Gateway's 29 s integration timeout, so the client gets our 504 rather than the gateway's |
//! | `MAX_RESPONSE_BYTES` | 6291456 | the largest response event; Lambda's 6 MB synchronous response payload (see `response`) |
//!
//! A missing or unreadable variable stops the cold start with an error naming it: a function
//! that cannot know where to send reads must not start answering. (Unlike
//! `shared::secret::ttl_from_env`, which falls back to the default, an unreadable
//! `SECRET_TTL_SECONDS` is an error here: a typo must not silently become 15 s.)

use std::time::Duration;

use crate::response::DEFAULT_MAX_RESPONSE_BYTES;

/// The default upstream timeout: under API Gateway's 29 s integration timeout.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(25);

/// The function's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub secret_id: String,
    pub secret_ttl: Duration,
    pub upstream_timeout: Duration,
    pub max_response_bytes: usize,
}

/// A setting that is missing or cannot be read; names the variable, never a secret value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("environment variable {0} must be set")]
    Missing(&'static str),
    #[error("environment variable {name} must be {expected}, not {value:?}")]
    Invalid { name: &'static str, expected: &'static str, value: String },
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup` (the environment, or a table in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let secret_id = lookup("SECRET_ID")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::Missing("SECRET_ID"))?;
        let secret_ttl = seconds(&lookup, "SECRET_TTL_SECONDS", true)?.unwrap_or(shared::secret::DEFAULT_TTL);
        let upstream_timeout =
            seconds(&lookup, "UPSTREAM_TIMEOUT_SECONDS", false)?.unwrap_or(DEFAULT_UPSTREAM_TIMEOUT);
        let max_response_bytes = match lookup("MAX_RESPONSE_BYTES").map(|s| s.trim().to_string()) {
            None => DEFAULT_MAX_RESPONSE_BYTES,
            Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1024).ok_or(ConfigError::Invalid {
                name: "MAX_RESPONSE_BYTES",
                expected: "a whole number of bytes, at least 1024",
                value: v,
            })?,
        };
        Ok(Config { secret_id, secret_ttl, upstream_timeout, max_response_bytes })
    }
}

/// A duration in (possibly fractional) seconds; zero allowed only where it means something.
fn seconds(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    zero_allowed: bool,
) -> Result<Option<Duration>, ConfigError> {
    let Some(v) = lookup(name).map(|s| s.trim().to_string()) else { return Ok(None) };
    let expected =
        if zero_allowed { "a number of seconds, 0 or more" } else { "a number of seconds above 0" };
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && (*s > 0.0 || (zero_allowed && *s == 0.0)) && *s < 1e9)
        .map(|s| Some(Duration::from_secs_f64(s)))
        .ok_or(ConfigError::Invalid { name, expected, value: v })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_only_the_secret_id_is_set() {
        let c = read(&[("SECRET_ID", "live-migration/endpoints")]).unwrap();
        assert_eq!(c.secret_id, "live-migration/endpoints");
        assert_eq!(c.secret_ttl, Duration::from_secs(15));
        assert_eq!(c.upstream_timeout, Duration::from_secs(25));
        assert_eq!(c.max_response_bytes, 6_291_456);
    }

    #[test]
    fn every_setting_can_be_given() {
        let c = read(&[
            ("SECRET_ID", "s"),
            ("SECRET_TTL_SECONDS", "1.5"),
            ("UPSTREAM_TIMEOUT_SECONDS", "2"),
            ("MAX_RESPONSE_BYTES", "50000"),
        ])
        .unwrap();
        assert_eq!(c.secret_ttl, Duration::from_millis(1500));
        assert_eq!(c.upstream_timeout, Duration::from_secs(2));
        assert_eq!(c.max_response_bytes, 50_000);
        assert_eq!(
            read(&[("SECRET_ID", "s"), ("SECRET_TTL_SECONDS", "0")]).unwrap().secret_ttl,
            Duration::ZERO
        );
    }

    #[test]
    fn a_missing_or_unreadable_variable_is_named() {
        assert_eq!(read(&[]), Err(ConfigError::Missing("SECRET_ID")));
        assert_eq!(read(&[("SECRET_ID", "  ")]), Err(ConfigError::Missing("SECRET_ID")));
        for (name, value) in [
            ("SECRET_TTL_SECONDS", "fifteen"),
            ("SECRET_TTL_SECONDS", "-1"),
            ("UPSTREAM_TIMEOUT_SECONDS", "0"),
            ("UPSTREAM_TIMEOUT_SECONDS", "NaN"),
            ("MAX_RESPONSE_BYTES", "6MB"),
            ("MAX_RESPONSE_BYTES", "10"),
        ] {
            let e = read(&[("SECRET_ID", "s"), (name, value)]).unwrap_err();
            assert!(matches!(&e, ConfigError::Invalid { name: n, .. } if *n == name), "{e}");
            assert!(e.to_string().contains(name), "{e}");
        }
        assert_eq!(
            ConfigError::Missing("SECRET_ID").to_string(),
            "environment variable SECRET_ID must be set"
        );
    }
}
