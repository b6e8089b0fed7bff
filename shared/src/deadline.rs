//! The time an invocation has left, from the deadline the Lambda runtime API gives.
//!
//! Lambda sends `Lambda-Runtime-Deadline-Ms`, milliseconds since the epoch, always in the future
//! when an invocation starts. Emulators differ: `cargo lambda watch` 1.9 sends the function
//! timeout (`600000`) instead of a point in time. A deadline that is absent (0) or not in the
//! future is therefore "unknown", and each function falls back on its own budget.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time until `deadline_ms`; `None` when that is not a usable deadline.
pub fn time_left(deadline_ms: u64) -> Option<Duration> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    Duration::from_millis(deadline_ms).checked_sub(now).filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_deadline_in_the_future_counts() {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let left = time_left(now_ms + 10_000).expect("a deadline 10 s ahead");
        assert!(left <= Duration::from_millis(10_000) && left > Duration::from_millis(8_000), "{left:?}");
        assert_eq!(time_left(0), None);
        assert_eq!(time_left(600_000), None, "cargo lambda watch's relative value");
        assert_eq!(time_left(now_ms - 1_000), None);
    }
}
