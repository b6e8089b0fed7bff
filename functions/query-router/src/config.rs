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
//! a lenient reader, an unreadable `SECRET_TTL_SECONDS` is an error: a typo must not silently
//! become 15 s; see `shared::settings`.)

use std::time::Duration;

pub use shared::settings::SettingError as ConfigError;
use shared::settings::Settings;

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

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_settings(&Settings::from_env())
    }

    /// Reads the settings from `settings` (the environment, or a table in tests).
    pub fn from_settings(settings: &Settings) -> Result<Config, ConfigError> {
        Ok(Config {
            secret_id: settings.required("SECRET_ID")?,
            secret_ttl: settings.seconds("SECRET_TTL_SECONDS", shared::secret::DEFAULT_TTL, true)?,
            upstream_timeout: settings.seconds(
                "UPSTREAM_TIMEOUT_SECONDS",
                DEFAULT_UPSTREAM_TIMEOUT,
                false,
            )?,
            max_response_bytes: settings.number(
                "MAX_RESPONSE_BYTES",
                DEFAULT_MAX_RESPONSE_BYTES as u64,
                1024,
                u64::MAX,
                "a whole number of bytes, at least 1024",
            )? as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_settings(&Settings::from_pairs(vars))
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
