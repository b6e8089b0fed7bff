//! The function's settings, read once from its environment at cold start.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SECRET_ID` | required | the endpoint secret (name or ARN) |
//! | `SECRET_TTL_SECONDS` | 15 | how long the secret is cached: a cutover reaches every router within this time |
//! | `RESPONSE_TRANSFER_MODE` | `STREAM` | `STREAM`: the answer is streamed as influxd sends it (API Gateway's `ResponseTransferMode: STREAM`, invoked with `InvokeWithResponseStream`); `BUFFERED`: one response event per answer (an integration in `BUFFERED` mode, or an HTTP API, which cannot stream). It must match the integration: `infra/deploy.sh` sets both from one flag |
//! | `UPSTREAM_TIMEOUT_SECONDS` | 900 streamed, 25 buffered | the longest the database may take for the whole answer. Streamed, the invocation's own deadline (the function timeout, at most API Gateway's 15 minutes) is what ends it; buffered, 25 s is under API Gateway's 29 s integration timeout, so the client gets our 504 rather than the gateway's |
//! | `MAX_RESPONSE_BYTES` | 200000000 streamed, 6291456 buffered | the largest answer: Lambda's 200 MB streamed response, or its 6 MB synchronous response payload (see `response`) |
//!
//! A missing or unreadable variable stops the cold start with an error naming it: a function
//! that cannot know where to send reads must not start answering. (Unlike
//! a lenient reader, an unreadable `SECRET_TTL_SECONDS` is an error: a typo must not silently
//! become 15 s; see `shared::settings`.)

use std::time::Duration;

pub use shared::settings::SettingError as ConfigError;
use shared::settings::Settings;

use crate::response::{DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MAX_STREAMED_BYTES};

/// The default upstream timeout of a buffered answer: under API Gateway's 29 s integration
/// timeout.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(25);

/// The default upstream timeout of a streamed answer: API Gateway's and Lambda's 15 minutes (the
/// invocation's deadline, which is never later, ends it first).
pub const DEFAULT_STREAMED_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(900);

/// How the answer leaves the function; must match the API Gateway integration's
/// `ResponseTransferMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferMode {
    /// Streamed as influxd sends it (Lambda response streaming).
    Stream,
    /// One response event with the whole answer.
    Buffered,
}

impl TransferMode {
    /// The name used in the setting, in API Gateway and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferMode::Stream => "STREAM",
            TransferMode::Buffered => "BUFFERED",
        }
    }
}

/// The function's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub secret_id: String,
    pub secret_ttl: Duration,
    pub transfer_mode: TransferMode,
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
        let transfer_mode = match settings.optional("RESPONSE_TRANSFER_MODE") {
            None => TransferMode::Stream,
            Some(v) => match v.to_ascii_uppercase().as_str() {
                "STREAM" => TransferMode::Stream,
                "BUFFERED" => TransferMode::Buffered,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "RESPONSE_TRANSFER_MODE",
                        expected: "STREAM or BUFFERED (the API Gateway integration's ResponseTransferMode)",
                        value: v,
                    });
                }
            },
        };
        let (timeout, max_bytes) = match transfer_mode {
            TransferMode::Stream => (DEFAULT_STREAMED_UPSTREAM_TIMEOUT, DEFAULT_MAX_STREAMED_BYTES),
            TransferMode::Buffered => (DEFAULT_UPSTREAM_TIMEOUT, DEFAULT_MAX_RESPONSE_BYTES),
        };
        Ok(Config {
            secret_id: settings.required("SECRET_ID")?,
            secret_ttl: settings.seconds("SECRET_TTL_SECONDS", shared::secret::DEFAULT_TTL, true)?,
            transfer_mode,
            upstream_timeout: settings.seconds("UPSTREAM_TIMEOUT_SECONDS", timeout, false)?,
            max_response_bytes: settings.number(
                "MAX_RESPONSE_BYTES",
                max_bytes as u64,
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
        assert_eq!(c.transfer_mode, TransferMode::Stream);
        assert_eq!(c.upstream_timeout, Duration::from_secs(900));
        assert_eq!(c.max_response_bytes, 200_000_000);
        let b = read(&[("SECRET_ID", "s"), ("RESPONSE_TRANSFER_MODE", "buffered")]).unwrap();
        assert_eq!(b.transfer_mode, TransferMode::Buffered);
        assert_eq!(b.upstream_timeout, Duration::from_secs(25));
        assert_eq!(b.max_response_bytes, 6_291_456);
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
            ("RESPONSE_TRANSFER_MODE", "STREAMING"),
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
