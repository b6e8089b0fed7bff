//! Tracing set-up: JSON lines in Lambda (CloudWatch Logs parses them), plain text for people.

use tracing_subscriber::EnvFilter;

/// JSON logs for a Lambda function; level from `RUST_LOG` (default `info`).
pub fn init_lambda() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

/// Human-readable logs on stderr at `level` (`debug`, `info`, `warn`, `error`), unless
/// `RUST_LOG` says otherwise.
pub fn init_cli(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
