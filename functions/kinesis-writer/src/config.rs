//! The function's configuration, read once from the environment at cold start.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `STREAM_NAME` | required | the Kinesis stream |
//! | `SECRET_ID` | unset | the endpoint secret; when set, writes are checked against the source first (see `admission`) |
//! | `SECRET_TTL_SECONDS` | 15 | how long the secret is cached |
//! | `PARTITION_KEY_MODE` | `random` | `random` (spread load) or `bucket` (keep order per bucket) |
//! | `MAX_BODY_BYTES` | 67108864 | largest decompressed body; larger ones get 413 |
//! | `MAX_RECORD_BYTES` | 1048576 | Kinesis record limit (data + partition key) |
//! | `PUT_BUDGET_SECONDS` | 20 | how long Kinesis throttling is retried before 503 (API Gateway waits 29 s) |
//! | `ADMISSION_CACHE_SECONDS` | 60 | how long a successful check of (credential, org, bucket) is reused |

use std::time::Duration;

use shared::envelope::{MAX_RECORD_BYTES, PartitionKeyMode};
pub use shared::settings::SettingError as ConfigError;
use shared::settings::Settings;

/// How long Kinesis throttling is retried by default (API Gateway gives up after 29 s).
pub const DEFAULT_PUT_BUDGET: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct Config {
    pub stream_name: String,
    pub secret_id: Option<String>,
    pub secret_ttl: Duration,
    pub partition_key_mode: PartitionKeyMode,
    pub max_body_bytes: usize,
    pub max_record_bytes: usize,
    pub put_budget: Duration,
    pub admission_ttl: Duration,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_settings(&Settings::from_env())
    }

    /// Reads the configuration from `settings` (the environment, or a table in tests).
    pub fn from_settings(settings: &Settings) -> Result<Config, ConfigError> {
        let mode_text = settings.optional("PARTITION_KEY_MODE").unwrap_or_default();
        let partition_key_mode = PartitionKeyMode::parse(&mode_text).ok_or(ConfigError::Invalid {
            name: "PARTITION_KEY_MODE",
            expected: "\"random\" or \"bucket\"",
            value: mode_text.clone(),
        })?;
        Ok(Config {
            stream_name: settings.required("STREAM_NAME")?,
            secret_id: settings.optional("SECRET_ID"),
            secret_ttl: settings.seconds("SECRET_TTL_SECONDS", shared::secret::DEFAULT_TTL, true)?,
            partition_key_mode,
            max_body_bytes: settings.number(
                "MAX_BODY_BYTES",
                64 * 1024 * 1024,
                1,
                u64::MAX,
                "a whole number of bytes",
            )? as usize,
            max_record_bytes: settings.number(
                "MAX_RECORD_BYTES",
                MAX_RECORD_BYTES as u64,
                4096,
                MAX_RECORD_BYTES as u64,
                "a whole number of bytes between 4096 and 1048576 (Kinesis' limit)",
            )? as usize,
            put_budget: settings.seconds("PUT_BUDGET_SECONDS", DEFAULT_PUT_BUDGET, false)?,
            admission_ttl: settings.seconds("ADMISSION_CACHE_SECONDS", Duration::from_secs(60), true)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_settings(&Settings::from_pairs(vars))
    }

    #[test]
    fn stream_name_is_required_and_named() {
        let e = config(&[]).unwrap_err().to_string();
        assert_eq!(e, "environment variable STREAM_NAME must be set");
    }

    #[test]
    fn defaults() {
        let c = config(&[("STREAM_NAME", "s")]).unwrap();
        assert_eq!(c.partition_key_mode, PartitionKeyMode::Random);
        assert_eq!(c.max_record_bytes, MAX_RECORD_BYTES);
        assert_eq!(c.secret_ttl, Duration::from_secs(15));
        assert!(c.secret_id.is_none());
    }

    #[test]
    fn bad_values_are_named() {
        let e =
            config(&[("STREAM_NAME", "s"), ("PARTITION_KEY_MODE", "round-robin")]).unwrap_err().to_string();
        assert!(e.contains("PARTITION_KEY_MODE"), "{e}");
        let e = config(&[("STREAM_NAME", "s"), ("MAX_RECORD_BYTES", "5000000")]).unwrap_err().to_string();
        assert!(e.contains("MAX_RECORD_BYTES"), "{e}");
        let e = config(&[("STREAM_NAME", "s"), ("MAX_BODY_BYTES", "lots")]).unwrap_err().to_string();
        assert!(e.contains("MAX_BODY_BYTES"), "{e}");
    }
}
