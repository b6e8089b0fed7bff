//! Progress bars on stderr: bytes, shards and rows.
//!
//! indicatif hides bars when stderr is not a terminal (pipes, CI, tests), so nothing but log
//! lines reach a captured stderr.

use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars of one run.
#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

impl Progress {
    pub fn new() -> Progress {
        Progress { multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()) }
    }

    fn add(&self, total: Option<u64>, template: &str, message: &str) -> ProgressBar {
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::no_length(),
        };
        let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        let bar =
            self.multi.add(bar.with_style(style.progress_chars("=> ")).with_message(message.to_string()));
        bar.enable_steady_tick(Duration::from_millis(250));
        bar
    }

    /// A byte counter (`total` when known).
    pub fn bytes(&self, message: &str, total: Option<u64>) -> ProgressBar {
        let t = if total.is_some() {
            "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
        } else {
            "{msg:>10} {spinner} {bytes} {binary_bytes_per_sec}"
        };
        self.add(total, t, message)
    }

    /// A shard counter.
    pub fn shards(&self, message: &str, total: u64) -> ProgressBar {
        self.add(Some(total), "{msg:>10} [{bar:30}] {pos}/{len} shards", message)
    }

    /// A row counter (`total` when known).
    pub fn rows(&self, message: &str, total: Option<u64>) -> ProgressBar {
        let t = if total.is_some() {
            "{msg:>10} [{bar:30}] {human_pos}/{human_len} rows {per_sec} eta {eta}"
        } else {
            "{msg:>10} {spinner} {human_pos} rows {per_sec}"
        };
        self.add(total, t, message)
    }
}
