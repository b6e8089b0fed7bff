//! `performance.txt`: how long each step took, in the format of AWS's script
//! (`log_performance_metrics`): one line per step,
//! `<step> started at <YYYY-MM-DD HH:MM:SS local time> and took <seconds, 2 decimals> seconds to run.`
//! appended to `performance.txt` in the working directory.
//!
//! The script writes it only at `--log-level debug`; this tool always writes it, since the
//! script's README presents the file as the place to look for step timings.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Step timings appended to a file.
#[derive(Debug, Clone)]
pub struct Performance {
    path: PathBuf,
}

/// A step being timed.
pub struct Step {
    name: String,
    wall: SystemTime,
    started: Instant,
}

impl Performance {
    pub fn new(path: impl Into<PathBuf>) -> Performance {
        Performance { path: path.into() }
    }

    pub fn start(&self, name: &str) -> Step {
        Step { name: name.to_string(), wall: SystemTime::now(), started: Instant::now() }
    }

    /// Records a finished step (a failure to write the file is logged, not fatal).
    pub fn finish(&self, step: Step) -> Duration {
        let took = step.started.elapsed();
        let line = format_line(&step.name, step.wall, took);
        tracing::debug!("{line}");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            tracing::warn!("could not write {}: {e}", self.path.display());
        }
        took
    }
}

/// One line of `performance.txt`.
pub fn format_line(name: &str, start: SystemTime, took: Duration) -> String {
    format!("{name} started at {} and took {:.2} seconds to run.", local_time(start), took.as_secs_f64())
}

/// `YYYY-MM-DD HH:MM:SS` in the machine's time zone (Python's `time.localtime`).
fn local_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as libc::time_t).unwrap_or(0);
    // SAFETY: localtime_r writes into the `tm` we own and reads `secs`; both outlive the call.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&secs, &mut tm).is_null() {
            return "1970-01-01 00:00:00".into();
        }
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_scripts_shape() {
        let line = format_line("backup", SystemTime::now(), Duration::from_millis(1234));
        let rest = line.strip_prefix("backup started at ").unwrap();
        let (stamp, tail) = rest.split_at(19);
        assert_eq!(tail, " and took 1.23 seconds to run.");
        assert_eq!(stamp.as_bytes()[4], b'-');
        assert_eq!(stamp.as_bytes()[10], b' ');
        assert_eq!(stamp.as_bytes()[13], b':');
    }
}
