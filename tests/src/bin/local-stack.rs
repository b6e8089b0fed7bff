//! `local-stack`: a complete live migration on loopback, as the README's demo command runs it.
//!
//! Starts a source and a destination influxd 2.7.12, moto with the live path deployed by
//! `infra/deploy.sh`, the four functions behind the Lambda runtime API, a local API gateway and
//! the event source mappings; loads the source; runs clients through the gateway for the whole
//! migration; seeds with `influx-migration --full`, unthrottles, waits for the lag to reach zero,
//! verifies and cuts over; then reports what clients were told against what the destination
//! holds. Every process's log is kept under `<output>/logs`; a failing run prints the first error
//! in each. Ctrl-C stops every process it started.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use testbed::scenario::report::{sparkline, svg_chart};
use testbed::scenario::{self, ScenarioOptions};
use testbed::stack::logs::{self, KeptLog};
use testbed::stack::{LocalStack, StackOptions};

#[derive(Debug, Parser)]
#[command(
    name = "local-stack",
    about = "Run a live InfluxDB -> Timestream for InfluxDB migration on a local stack"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole migration with clients writing and reading throughout, then a report.
    Demo {
        /// Points loaded into the source before the migration.
        #[arg(long, default_value_t = 1_000_000)]
        points: u64,
        /// Concurrent writing clients.
        #[arg(long, default_value_t = 4)]
        writers: usize,
        /// Concurrent reading clients (Flux and InfluxQL).
        #[arg(long, default_value_t = 2)]
        readers: usize,
        /// Also inject faults during the catch-up (503s, resets, a writer killed mid-batch) and
        /// deliberately bad records.
        #[arg(long)]
        faults: bool,
        /// Where the report, the lag chart and the logs go.
        #[arg(long, default_value = "demo-output")]
        output: PathBuf,
    },
}

fn say(started: Instant, message: &str) {
    eprintln!("[{:>6.1} s] {message}", started.elapsed().as_secs_f64());
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let Command::Demo { points, writers, readers, faults, output } = Cli::parse().command;
    let started = Instant::now();
    let work = output.join("work");
    if let Err(e) = std::fs::create_dir_all(&work) {
        eprintln!("error: cannot create {}: {e}", work.display());
        return std::process::ExitCode::FAILURE;
    }
    let logs_dir = output.join("logs");
    let run = async {
        let stack = LocalStack::start(
            StackOptions {
                prefix: "demo-live".into(),
                secret_ttl_secs: 5,
                work_dir: Some(work.clone()),
                ..StackOptions::default()
            },
            |m| say(started, m),
        )
        .await?;
        say(
            started,
            &format!(
                "local stack up: gateway {}, source {}, destination {}",
                stack.gateway.url, stack.source.url, stack.destination.url
            ),
        );
        let options = ScenarioOptions {
            points,
            writers,
            readers,
            faults,
            after_cutover: Duration::from_secs(12),
            ..ScenarioOptions::default()
        };
        let outcome = scenario::run(&stack, &options, &|m| say(started, m)).await;
        // The processes' logs outlive the stack, whatever the outcome.
        let kept = match logs::keep(&stack.log_files(), &logs_dir) {
            Ok(k) => k,
            Err(e) => {
                say(started, &format!("could not keep the logs under {}: {e}", logs_dir.display()));
                Vec::new()
            }
        };
        Ok::<_, String>((outcome, kept))
    };
    let (outcome, kept) = tokio::select! {
        r = run => match r {
            Ok(done) => done,
            Err(e) => {
                eprintln!("error: the local stack did not start: {e}");
                eprintln!("logs of every process are under {}", work.display());
                return std::process::ExitCode::FAILURE;
            }
        },
        _ = tokio::signal::ctrl_c() => {
            say(started, "interrupted: stopping every process this demo started");
            return std::process::ExitCode::from(130);
        }
    };
    match outcome {
        Ok(report) => {
            let text = report.render_text();
            println!("\n{text}");
            let chart = output.join("destination-lag.svg");
            let _ = std::fs::write(output.join("report.txt"), &text);
            let _ = std::fs::write(
                &chart,
                svg_chart(
                    &report.lag,
                    &report.marks,
                    "destination writer lag (IteratorAge) during the live migration",
                ),
            );
            say(
                started,
                &format!("report: {}; lag chart: {}", output.join("report.txt").display(), chart.display()),
            );
            say(started, &format!("lag: {}", sparkline(&report.lag, 60)));
            if report.is_clean() {
                say(started, &format!("the processes' logs: {}", logs_dir.display()));
                std::process::ExitCode::SUCCESS
            } else {
                print_errors(&logs_dir, &kept);
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: the demo failed: {e}");
            print_errors(&logs_dir, &kept);
            std::process::ExitCode::FAILURE
        }
    }
}

/// Where the logs are, and the first error in each that has one.
fn print_errors(dir: &Path, kept: &[KeptLog]) {
    eprintln!("the processes' logs are under {}; the first error in each:", dir.display());
    let mut any = false;
    for log in kept {
        if let Some(e) = &log.first_error {
            any = true;
            eprintln!("  {}: {e}", log.path.display());
        }
    }
    if !any {
        eprintln!("  (no log has an error line)");
    }
}
