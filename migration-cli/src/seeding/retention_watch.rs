//! A warning when the seeding runs for a large share of the live stream's retention.
//!
//! During a live migration every client write waits in the Kinesis stream until the destination
//! writer is unthrottled after the seeding. A record older than the stream's retention is gone,
//! so a seeding that runs longer than the retention loses writes. With
//! `--stream-retention-hours` (or `LIVE_STREAM_RETENTION_HOURS`) the seeding warns, in the log
//! and on stderr, when it has run for 50% and again for 80% of that time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::aws::stream::{ALARM_SHARE, WARN_SHARE};

/// The thresholds, as fractions of the retention.
pub const THRESHOLDS: [f64; 2] = [WARN_SHARE, ALARM_SHARE];

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

/// A running watch. The timer announces each threshold as it is crossed; [`Watch::finish`] at the
/// end of the seeding announces any crossed threshold the timer had not reached yet, so a seeding
/// that ends just past 80% still says so.
pub struct Watch {
    retention_hours: f64,
    started: Instant,
    announced: Arc<AtomicUsize>,
    timer: JoinHandle<()>,
}

/// Starts the watch (`None` for a retention that is not a positive number of hours).
pub fn spawn(retention_hours: f64) -> Option<Watch> {
    if !(retention_hours.is_finite() && retention_hours > 0.0) {
        return None;
    }
    let started = Instant::now();
    let announced = Arc::new(AtomicUsize::new(0));
    let timer = {
        let announced = Arc::clone(&announced);
        tokio::spawn(async move {
            for (i, fraction) in THRESHOLDS.into_iter().enumerate() {
                let at = threshold_after(retention_hours, fraction);
                tokio::time::sleep_until(tokio::time::Instant::from_std(started + at)).await;
                announce(&announced, i, retention_hours, started.elapsed());
            }
        })
    };
    Some(Watch { retention_hours, started, announced, timer })
}

impl Watch {
    /// Stops the timer and announces the thresholds the seeding crossed that it had not reported.
    pub fn finish(self) {
        self.timer.abort();
        let elapsed = self.started.elapsed();
        for (i, fraction) in THRESHOLDS.into_iter().enumerate() {
            if elapsed >= threshold_after(self.retention_hours, fraction) {
                announce(&self.announced, i, self.retention_hours, elapsed);
            }
        }
    }
}

fn threshold_after(retention_hours: f64, fraction: f64) -> Duration {
    Duration::from_secs_f64(retention_hours * 3600.0 * fraction)
}

/// Announces threshold `i` once: whichever of the timer and `finish` gets there first.
fn announce(announced: &AtomicUsize, i: usize, retention_hours: f64, elapsed: Duration) {
    if announced.compare_exchange(i, i + 1, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
        let text = message(THRESHOLDS[i], retention_hours, elapsed);
        tracing::warn!("{text}");
        eprintln!("{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finish_announces_each_crossed_threshold_once_in_order() {
        // 1e-7 h = 0.36 ms: both thresholds are behind us by the time we finish.
        let watch = spawn(1e-7).expect("a positive retention starts a watch");
        let announced = Arc::clone(&watch.announced);
        std::thread::sleep(Duration::from_millis(5));
        watch.finish();
        assert_eq!(announced.load(Ordering::SeqCst), THRESHOLDS.len());
    }

    #[tokio::test]
    async fn finish_before_any_threshold_announces_nothing() {
        let watch = spawn(168.0).expect("a positive retention starts a watch");
        let announced = Arc::clone(&watch.announced);
        watch.finish();
        assert_eq!(announced.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn no_watch_for_a_retention_that_is_not_positive() {
        for hours in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(spawn(hours).is_none(), "{hours}");
        }
    }

    #[test]
    fn the_message_names_the_share_and_the_retention() {
        let m = message(0.8, 168.0, Duration::from_secs(3600 * 135));
        assert!(m.contains("135.0 h") && m.contains("80%") && m.contains("(168 h)"), "{m}");
    }
}
