//! Cold start of the functions: init time and binary size.
//!
//! Init time is what Lambda reports as Init Duration: from starting the process to its first
//! request to the runtime API (`GET /2018-06-01/runtime/invocation/next`). Each binary is
//! started with `AWS_LAMBDA_RUNTIME_API` pointing at a listener here, as the Lambda service does,
//! and timed until that listener sees the connection; 30 starts each, median. Baseline in the
//! same run: the smallest possible function (`echo-lambda`, no AWS or HTTP clients).
//!
//! Binaries: the deployable artefacts of `cargo lambda build --release`
//! (`target/lambda/<name>/bootstrap`) when they exist, else `target/release/<name>`.
//!
//! Run: `cargo build --workspace --release --bins && cargo bench --workspace --bench cold_start`
//! (and `cargo lambda build --release` first for the deployed artefacts' sizes).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn binary(name: &str) -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent()?.to_path_buf();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    [target.join("lambda").join(name).join("bootstrap"), target.join("release").join(name)]
        .into_iter()
        .find(|p| p.exists())
}

/// Median time from spawn to the first connection to the runtime API, over `runs` starts.
fn init_time(path: &PathBuf, runs: usize) -> Duration {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let start = Instant::now();
        let mut child = Command::new(path)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("SECRET_ID", "live/endpoints")
            .env("STREAM_NAME", "live-writes")
            .env("TARGET", "source")
            .env("DEAD_LETTER_BUCKET", "dead-letters")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the function");
        let accepted = listener.accept();
        samples.push(start.elapsed());
        drop(accepted);
        let _ = child.kill();
        let _ = child.wait();
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        println!("cold start bench: run with `cargo bench --workspace --bench cold_start`");
        return;
    }
    let baseline = PathBuf::from(env!("CARGO_BIN_EXE_echo-lambda"));
    let base = init_time(&baseline, 30);
    println!("{:<16} {:>12} {:>12} {:>10}  binary", "function", "init (p50)", "vs echo", "size");
    println!(
        "{:<16} {:>9.2} ms {:>12} {:>7.1} MB  {}",
        "echo-lambda",
        base.as_secs_f64() * 1e3,
        "1.00x",
        size(&baseline),
        baseline.display()
    );
    for name in ["kinesis-writer", "stream-writer", "query-router"] {
        let Some(path) = binary(name) else {
            println!("{name}: not built (cargo build --workspace --release --bins)");
            continue;
        };
        let t = init_time(&path, 30);
        println!(
            "{:<16} {:>9.2} ms {:>11.2}x {:>7.1} MB  {}",
            name,
            t.as_secs_f64() * 1e3,
            t.as_secs_f64() / base.as_secs_f64(),
            size(&path),
            path.display()
        );
    }
}

fn size(path: &PathBuf) -> f64 {
    std::fs::metadata(path).map(|m| m.len() as f64 / 1e6).unwrap_or(0.0)
}
