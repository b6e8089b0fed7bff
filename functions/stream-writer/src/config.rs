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
//! | `SKIP_VERIFY` | false | accept any TLS certificate from this writer's database, as the endpoint secret's `skip_verify` for that endpoint does (the secret's setting applies either way) |
//! | `STALL_ALERT_SECONDS` | 300 | how long a shard may stay stopped at one record before the writer logs it as stalled (the `StalledSeconds` metric is published at every stop; the alarm has its own threshold) |
//! | `STALL_HEARTBEAT_SECONDS` | 30 | while one invocation retries a failing write, how often the writer records the stall and publishes `StalledSeconds` again (at most half the stall alarm's 60 s period, so a lasting stall keeps its alarm) |
//! | `WRITE_CONCURRENCY` | 4 | targets (buckets) of one batch written at the same time, 1 to 64 |
//! | `RETRY_BUDGET_SECONDS` | the invocation's time | how long one invocation retries a failing write before it reports the batch failure and lets Lambda retry |

use std::time::Duration;

use shared::secret::Role;
pub use shared::settings::SettingError as ConfigError;
use shared::settings::Settings;

/// `STALL_HEARTBEAT_SECONDS` unless set: half the stall alarms' one-minute period.
pub const DEFAULT_STALL_HEARTBEAT: Duration = Duration::from_secs(30);

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
    pub stall_alert: Duration,
    /// How often a stall still being retried is recorded and published (`STALL_HEARTBEAT_SECONDS`).
    pub stall_heartbeat: Duration,
    /// Targets (buckets) written at the same time within a batch (`WRITE_CONCURRENCY`, 4).
    pub write_concurrency: usize,
}

impl Config {
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_settings(&Settings::from_env())
    }

    /// Reads the configuration from `settings` (the environment, or a table in tests).
    pub fn from_settings(settings: &Settings) -> Result<Config, ConfigError> {
        let target_text = settings.required("TARGET")?;
        let target = match target_text.to_ascii_lowercase().as_str() {
            "source" => Role::Source,
            "destination" => Role::Destination,
            _ => {
                return Err(ConfigError::Invalid {
                    name: "TARGET",
                    expected: "\"source\" or \"destination\"",
                    value: target_text,
                });
            }
        };
        Ok(Config {
            target,
            secret_id: settings.required("SECRET_ID")?,
            secret_ttl: settings.seconds("SECRET_TTL_SECONDS", shared::secret::DEFAULT_TTL, true)?,
            dead_letter_bucket: settings.required("DEAD_LETTER_BUCKET")?,
            dead_letter_prefix: settings
                .optional("DEAD_LETTER_PREFIX")
                .unwrap_or_else(|| "dead-letters/".into()),
            max_write_bytes: settings.number(
                "MAX_WRITE_BYTES",
                10 * 1024 * 1024,
                1,
                u64::MAX,
                "a whole number of bytes",
            )?,
            write_timeout: settings.seconds("WRITE_TIMEOUT_SECONDS", Duration::from_secs(30), false)?,
            skip_verify: settings.flag("SKIP_VERIFY")?,
            stall_alert: settings.seconds("STALL_ALERT_SECONDS", Duration::from_secs(300), true)?,
            stall_heartbeat: settings.seconds("STALL_HEARTBEAT_SECONDS", DEFAULT_STALL_HEARTBEAT, false)?,
            write_concurrency: settings.number(
                "WRITE_CONCURRENCY",
                4,
                1,
                64,
                "a whole number from 1 to 64",
            )? as usize,
            retry_budget: match settings.optional("RETRY_BUDGET_SECONDS") {
                None => None,
                Some(_) => Some(settings.seconds("RETRY_BUDGET_SECONDS", Duration::ZERO, true)?),
            },
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
    fn missing_and_wrong_variables_are_named() {
        assert_eq!(config(&[]).unwrap_err().to_string(), "environment variable TARGET must be set");
        let e = config(&[("TARGET", "both")]).unwrap_err().to_string();
        assert!(e.contains("TARGET") && e.contains("both"), "{e}");
        let e = config(&[("TARGET", "source")]).unwrap_err().to_string();
        assert_eq!(e, "environment variable SECRET_ID must be set");
        let e = config(&[("TARGET", "source"), ("SECRET_ID", "s")]).unwrap_err().to_string();
        assert_eq!(e, "environment variable DEAD_LETTER_BUCKET must be set");
    }

    /// The stall alarms of `infra/core.yaml` look at one-minute periods with missing data not
    /// breaching: a lasting stall holds its alarm only if every period gets a datapoint, so the
    /// heartbeat must come at least twice a period (an invocation's start and end add a gap).
    #[test]
    fn the_stall_heartbeat_fills_every_period_of_the_stall_alarms() {
        let template = include_str!("../../../infra/core.yaml");
        for alarm in ["DestinationStallAlarm:", "SourceStallAlarm:"] {
            let start = template.find(alarm).unwrap_or_else(|| panic!("{alarm} in core.yaml"));
            let block = &template[start..];
            let block = &block[..block.find("\n\n").unwrap_or(block.len())];
            let period: u64 = block
                .lines()
                .find_map(|l| l.trim().strip_prefix("Period: "))
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("{alarm} has a Period"));
            assert!(
                DEFAULT_STALL_HEARTBEAT.as_secs() * 2 <= period,
                "{alarm} period {period} s, heartbeat {DEFAULT_STALL_HEARTBEAT:?}"
            );
            assert!(block.contains("MetricName: StalledSeconds"), "{block}");
        }
        let c = config(&[("TARGET", "source"), ("SECRET_ID", "s"), ("DEAD_LETTER_BUCKET", "b")]).unwrap();
        assert_eq!(c.stall_heartbeat, DEFAULT_STALL_HEARTBEAT);
        let e = config(&[
            ("TARGET", "source"),
            ("SECRET_ID", "s"),
            ("DEAD_LETTER_BUCKET", "b"),
            ("STALL_HEARTBEAT_SECONDS", "0"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("STALL_HEARTBEAT_SECONDS"), "{e}");
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
