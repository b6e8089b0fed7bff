//! A warning when the seeding runs for a large share of the live stream's retention.
//!
//! During a live migration every client write waits in the Kinesis stream until the destination
//! writer is unthrottled after the seeding. A record older than the stream's retention is gone,
//! so a seeding that runs longer than the retention loses writes. With
//! `--stream-retention-hours` (or `LIVE_STREAM_RETENTION_HOURS`) the seeding warns, in the log
//! and on stderr, when it has run for 50% and again for 80% of that time.

use std::time::Duration;

use tokio::task::JoinHandle;

/// The thresholds, as fractions of the retention.
pub const THRESHOLDS: [f64; 2] = [0.5, 0.8];

/// The warning text for a threshold.
pub fn message(fraction: f64, retention_hours: f64, elapsed: Duration) -> String {
    format!(
        "warning: the seeding has run for {:.1} h, {:.0}% of the stream retention ({} h); records older than the \
         retention are dropped by Kinesis. Finish the seeding and unthrottle the destination writer, or raise \
         the stream's retention (IncreaseStreamRetentionPeriod) now.",
        elapsed.as_secs_f64() / 3600.0,
        fraction * 100.0,
        retention_hours
    )
}

/// Starts the watch; dropping (aborting) the handle stops it.
pub fn spawn(retention_hours: f64) -> Option<JoinHandle<()>> {
    if !(retention_hours.is_finite() && retention_hours > 0.0) {
        return None;
    }
    let started = std::time::Instant::now();
    Some(tokio::spawn(async move {
        for fraction in THRESHOLDS {
            let at = Duration::from_secs_f64(retention_hours * 3600.0 * fraction);
            tokio::time::sleep_until(tokio::time::Instant::from_std(started + at)).await;
            let text = message(fraction, retention_hours, started.elapsed());
            tracing::warn!("{text}");
            eprintln!("{text}");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_share_and_the_retention() {
        let m = message(0.8, 168.0, Duration::from_secs(3600 * 135));
        assert!(m.contains("135.0 h") && m.contains("80%") && m.contains("(168 h)"), "{m}");
    }
}
