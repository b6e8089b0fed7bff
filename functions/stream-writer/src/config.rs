//! The function's configuration, read once from the environment at cold start.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `TARGET` | required | `source` or `destination`: which database of the endpoint secret this instance writes to |
//! | `SECRET_ID` | required | the endpoint secret (name or ARN) |
//! | `SECRET_TTL_SECONDS` | 15 | how long the secret is cached |
//! | `DEAD_LETTER_BUCKET` | required | S3 bucket for records the database refuses as bad data |
//! | `DEAD_LETTER_PREFIX` | `dead-letters/` | key prefix in that bucket |
//! | `MAX_WRITE_BYTES` | 10485760 | most uncompressed line protocol coalesced into one write |
//! | `WRITE_TIMEOUT_SECONDS` | 30 | one write's timeout |
//! | `SKIP_VERIFY` | false | accept any TLS certificate from the database (only for a self-signed source) |
//! | `RETRY_BUDGET_SECONDS` | the invocation's time | how long one invocation retries a failing write before it reports the batch failure and lets Lambda retry |

use std::time::Duration;

use shared::secret::Role;

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
    pub target: Role,
    pub secret_id: String,
    pub secret_ttl: Duration,
    pub dead_letter_bucket: String,
    pub dead_letter_prefix: String,
    pub max_write_bytes: u64,
    pub write_timeout: Duration,
    pub skip_verify: bool,
    pub retry_budget: Option<Duration>,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let required =
            |var: &'static str| get(var).filter(|v| !v.trim().is_empty()).ok_or(ConfigError::Missing(var));
        let target = match required("TARGET")?.trim().to_ascii_lowercase().as_str() {
            "source" => Role::Source,
            "destination" => Role::Destination,
            other => {
                return Err(ConfigError::Invalid {
                    var: "TARGET",
                    reason: format!("{other:?} is neither \"source\" nor \"destination\""),
                });
            }
        };
        let number = |var: &'static str, default: u64| -> Result<u64, ConfigError> {
            match get(var) {
                None => Ok(default),
                Some(v) => {
                    v.trim().parse::<u64>().map_err(|e| ConfigError::Invalid { var, reason: e.to_string() })
                }
            }
        };
        Ok(Config {
            target,
            secret_id: required("SECRET_ID")?,
            secret_ttl: Duration::from_secs(number("SECRET_TTL_SECONDS", 15)?),
            dead_letter_bucket: required("DEAD_LETTER_BUCKET")?,
            dead_letter_prefix: get("DEAD_LETTER_PREFIX").unwrap_or_else(|| "dead-letters/".into()),
            max_write_bytes: number("MAX_WRITE_BYTES", 10 * 1024 * 1024)?.max(1),
            write_timeout: Duration::from_secs(number("WRITE_TIMEOUT_SECONDS", 30)?.max(1)),
            skip_verify: matches!(get("SKIP_VERIFY").as_deref().map(str::trim), Some("true" | "1" | "yes")),
            retry_budget: match get("RETRY_BUDGET_SECONDS") {
                None => None,
                Some(_) => Some(Duration::from_secs(number("RETRY_BUDGET_SECONDS", 0)?)),
            },
        })
    }
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
    fn missing_and_wrong_variables_are_named() {
        assert_eq!(config(&[]).unwrap_err().to_string(), "environment variable TARGET must be set");
        let e = config(&[("TARGET", "both")]).unwrap_err().to_string();
        assert!(e.contains("TARGET") && e.contains("both"), "{e}");
        let e = config(&[("TARGET", "source")]).unwrap_err().to_string();
        assert_eq!(e, "environment variable SECRET_ID must be set");
        let e = config(&[("TARGET", "source"), ("SECRET_ID", "s")]).unwrap_err().to_string();
        assert_eq!(e, "environment variable DEAD_LETTER_BUCKET must be set");
    }

    #[test]
    fn defaults() {
        let c =
            config(&[("TARGET", "Destination"), ("SECRET_ID", "s"), ("DEAD_LETTER_BUCKET", "b")]).unwrap();
        assert_eq!(c.target, Role::Destination);
        assert_eq!(c.max_write_bytes, 10 * 1024 * 1024);
        assert!(!c.skip_verify);
        assert_eq!(c.dead_letter_prefix, "dead-letters/");
    }
}
