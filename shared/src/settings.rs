//! A function's settings, read from its environment once at cold start.
//!
//! A missing or unreadable variable stops the cold start with an error naming the variable (and
//! never echoing a secret: values are shown only for settings that are not secret). A typo must
//! not silently become a default: `SECRET_TTL_SECONDS=fiftteen` is an error, not 15 s.

use std::collections::HashMap;
use std::time::Duration;

/// A setting that is missing or cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("environment variable {0} must be set")]
    Missing(&'static str),
    #[error("environment variable {name} must be {expected}, not {value:?}")]
    Invalid { name: &'static str, expected: &'static str, value: String },
}

/// Looks a variable up by name.
type Lookup = Box<dyn Fn(&str) -> Option<String>>;

/// Where settings come from: the process environment, or a table in tests.
pub struct Settings {
    lookup: Lookup,
}

impl Settings {
    /// The process environment.
    pub fn from_env() -> Settings {
        Settings { lookup: Box::new(|name| std::env::var(name).ok()) }
    }

    /// A fixed table (tests).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Settings {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings { lookup: Box::new(move |name| map.get(name).cloned()) }
    }

    /// The value, trimmed; `None` when absent or blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    /// The value; an error naming the variable when it is absent or blank.
    pub fn required(&self, name: &'static str) -> Result<String, SettingError> {
        self.optional(name).ok_or(SettingError::Missing(name))
    }

    /// A duration in (possibly fractional) seconds, `default` when absent. Zero is accepted only
    /// when `zero_allowed`.
    pub fn seconds(
        &self,
        name: &'static str,
        default: Duration,
        zero_allowed: bool,
    ) -> Result<Duration, SettingError> {
        let Some(v) = self.optional(name) else { return Ok(default) };
        let expected =
            if zero_allowed { "a number of seconds, 0 or more" } else { "a number of seconds above 0" };
        v.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && (*s > 0.0 || (zero_allowed && *s == 0.0)) && *s < 1e9)
            .map(Duration::from_secs_f64)
            .ok_or(SettingError::Invalid { name, expected, value: v })
    }

    /// A whole number within `min..=max`, `default` when absent.
    pub fn number(
        &self,
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
        expected: &'static str,
    ) -> Result<u64, SettingError> {
        let Some(v) = self.optional(name) else { return Ok(default) };
        v.parse::<u64>().ok().filter(|n| (min..=max).contains(n)).ok_or(SettingError::Invalid {
            name,
            expected,
            value: v,
        })
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`), `false` when absent.
    pub fn flag(&self, name: &'static str) -> Result<bool, SettingError> {
        match self.optional(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) => match v.as_str() {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(SettingError::Invalid { name, expected: "true or false", value: v }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_blank_and_present() {
        let s = Settings::from_pairs(&[("A", " x "), ("B", "  ")]);
        assert_eq!(s.required("A"), Ok("x".into()));
        assert_eq!(s.required("B"), Err(SettingError::Missing("B")));
        assert_eq!(s.required("C").unwrap_err().to_string(), "environment variable C must be set");
    }

    #[test]
    fn seconds_numbers_and_flags_are_strict() {
        let s = Settings::from_pairs(&[
            ("T", "1.5"),
            ("Z", "0"),
            ("BAD", "fifteen"),
            ("N", "7"),
            ("F", "yes"),
            ("G", "maybe"),
        ]);
        assert_eq!(s.seconds("T", Duration::ZERO, false), Ok(Duration::from_millis(1500)));
        assert_eq!(s.seconds("Z", Duration::from_secs(9), true), Ok(Duration::ZERO));
        assert!(s.seconds("Z", Duration::from_secs(9), false).is_err());
        assert_eq!(s.seconds("ABSENT", Duration::from_secs(9), false), Ok(Duration::from_secs(9)));
        let e = s.seconds("BAD", Duration::ZERO, true).unwrap_err();
        assert!(e.to_string().contains("BAD") && e.to_string().contains("fifteen"), "{e}");
        assert_eq!(s.number("N", 1, 1, 10, "1 to 10"), Ok(7));
        assert!(s.number("N", 1, 8, 10, "8 to 10").is_err());
        assert_eq!(s.flag("F"), Ok(true));
        assert_eq!(s.flag("ABSENT"), Ok(false));
        assert!(s.flag("G").is_err());
    }
}
