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

/// A variable that is missing or unusable; the message names it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} must be set")]
    Missing(&'static str),
    #[error("environment variable {var} is not valid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub stream_name: String,
    pub secret_id: Option<String>,
    pub secret_ttl: Duration,
    pub partition_key_mode: PartitionKeyMode,
    pub max_body_bytes: usize,
    pub max_record_bytes: usize,
    pub admission_ttl: Duration,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get` (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let stream_name =
            get("STREAM_NAME").filter(|s| !s.is_empty()).ok_or(ConfigError::Missing("STREAM_NAME"))?;
        let mode_text = get("PARTITION_KEY_MODE").unwrap_or_default();
        let partition_key_mode = PartitionKeyMode::parse(&mode_text).ok_or_else(|| ConfigError::Invalid {
            var: "PARTITION_KEY_MODE",
            reason: format!("{mode_text:?} is neither \"random\" nor \"bucket\""),
        })?;
        let number = |var: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => {
                    v.trim().parse::<u64>().map_err(|e| ConfigError::Invalid { var, reason: e.to_string() })
                }
            }
        };
        let max_record_bytes = number("MAX_RECORD_BYTES", MAX_RECORD_BYTES as u64)? as usize;
        if !(4096..=MAX_RECORD_BYTES).contains(&max_record_bytes) {
            return Err(ConfigError::Invalid {
                var: "MAX_RECORD_BYTES",
                reason: format!("must be between 4096 and {MAX_RECORD_BYTES} (Kinesis' limit)"),
            });
        }
        Ok(Config {
            stream_name,
            secret_id: get("SECRET_ID").filter(|s| !s.is_empty()),
            secret_ttl: Duration::from_secs(number("SECRET_TTL_SECONDS", 15)?),
            partition_key_mode,
            max_body_bytes: number("MAX_BODY_BYTES", 64 * 1024 * 1024)? as usize,
            max_record_bytes,
            admission_ttl: Duration::from_secs(number("ADMISSION_CACHE_SECONDS", 60)?),
        })
    }
}

/// `PUT_BUDGET_SECONDS` (default 20 s).
pub fn put_budget_from_env() -> Duration {
    std::env::var("PUT_BUDGET_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(20))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
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
