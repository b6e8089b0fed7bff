//! `verify` on two real influxd holding the same points: the counting verify and the content
//! verify (`--content`, a digest of every value per time window) against the strongest fair
//! baseline, a plain Flux count per bucket and measurement sent straight to both servers at once
//! (`group(columns: ["_measurement"]) |> count()`, answered by the storage engine), in the same
//! run, alternating, so machine load hits all three alike. Also the content verify's peak
//! memory (the process's maximum resident set, from `wait4`).
//!
//! Run: `cargo build --release --bins && TESTBED_PROFILE=release cargo bench -p testbed --bench
//! verify_speed` (debug binaries without `TESTBED_PROFILE`). Options after `--`: `--points N`
//! (default 1000000 points of two fields; the figure is `--points 5000000`), `--runs N`
//! (default 3).

use std::process::Command;
use std::time::{Duration, Instant};

use testbed::Influxd;
use testbed::bench_run::{median, option};
use testbed::reads::load_bulk;
use testbed::stack::lambda::workspace_binary;

/// Runs `influx-migration verify <extra>` between the two servers; (time, peak RSS bytes).
// The child is reaped by `wait4` (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn verify(src: &Influxd, dst: &Influxd, extra: &[&str]) -> (Duration, u64) {
    let started = Instant::now();
    let child = Command::new(workspace_binary("influx-migration"))
        .args(["verify", "--src-host", &src.url, "--dest-host", &dst.url, "--stop", "2030-01-01T00:00:00Z"])
        .args(extra)
        .env_remove("LIVE_STACK")
        .env("INFLUX_SRC_TOKEN", &src.token)
        .env("INFLUX_DEST_TOKEN", &dst.token)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run influx-migration verify");
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value, and wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    assert_eq!(waited, pid, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "verify {extra:?} did not pass: {status}"
    );
    // ru_maxrss is in kilobytes on Linux.
    (elapsed, usage.ru_maxrss as u64 * 1024)
}

/// The baseline: the count per measurement, asked of both servers at once.
async fn flux_counts(src: &Influxd, dst: &Influxd) -> Duration {
    let q = |db: &Influxd| {
        format!(
            "from(bucket: \"{}\") |> range(start: 1970-01-01T00:00:00Z, stop: 2030-01-01T00:00:00Z) \
             |> group(columns: [\"_measurement\"]) |> count()",
            db.bucket
        )
    };
    let (qs, qd) = (q(src), q(dst));
    let started = Instant::now();
    let (a, b) = tokio::join!(src.query(&qs), dst.query(&qd));
    assert!(!a.is_empty() && a.len() == b.len(), "both servers counted");
    started.elapsed()
}

/// The floor of any exact content comparison: every value read from both servers at once, as raw
/// annotated CSV (what `verify --content` reads), counted and thrown away.
async fn raw_reads(src: &Influxd, dst: &Influxd) -> (Duration, u64) {
    async fn one(db: &Influxd) -> u64 {
        let flux = format!(
            "from(bucket: \"{}\") |> range(start: 1970-01-01T00:00:00Z, stop: 2030-01-01T00:00:00Z) \
             |> filter(fn: (r) => r._measurement == \"bulk\") |> drop(columns: [\"_start\", \"_stop\"])",
            db.bucket
        );
        // Uncompressed, as verify reads it.
        let client = reqwest::Client::builder().no_gzip().build().expect("client");
        let mut resp = client
            .post(format!("{}/api/v2/query", db.url))
            .query(&[("org", db.org.as_str())])
            .header("Authorization", format!("Token {}", db.token))
            .header("Content-Type", "application/vnd.flux")
            .header("Accept", "application/csv")
            .body(flux)
            .send()
            .await
            .expect("query");
        assert_eq!(resp.status().as_u16(), 200);
        let mut bytes = 0;
        while let Some(chunk) = resp.chunk().await.expect("read the answer") {
            bytes += chunk.len() as u64;
        }
        bytes
    }
    let started = Instant::now();
    let (a, b) = tokio::join!(one(src), one(dst));
    (started.elapsed(), a + b)
}

fn main() {
    let points = option("--points", 1_000_000);
    let runs = option("--runs", 3).max(1);
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
        tokio::join!(load_bulk(&src, points), load_bulk(&dst, points));
        println!(
            "verify, {points} points ({} values) at each end, {runs} runs each, alternating",
            points * 2
        );
        // One of each first, unmeasured (caches).
        flux_counts(&src, &dst).await;
        verify(&src, &dst, &[]);
        let (mut base, mut count, mut content, mut rss) = (Vec::new(), Vec::new(), Vec::new(), 0);
        let (mut raw, mut raw_bytes) = (Vec::new(), 0);
        for _ in 0..runs {
            base.push(flux_counts(&src, &dst).await);
            let (t, n) = raw_reads(&src, &dst).await;
            raw.push(t);
            raw_bytes = n;
            count.push(verify(&src, &dst, &[]).0);
            let (t, r) = verify(&src, &dst, &["--content"]);
            content.push(t);
            rss = rss.max(r);
        }
        let (b, c, r, d) = (median(base), median(count), median(raw), median(content));
        println!("{:<52} {:>10}  {:>14}  {:>14}", "", "median", "/ Flux count", "/ raw read");
        for (what, t) in [
            ("plain Flux count per measurement (count baseline)", b),
            ("verify (counts)", c),
            ("raw read of every value, both ends (content floor)", r),
            ("verify --content (digests)", d),
        ] {
            println!(
                "{what:<52} {:>8.2} s  {:>14.2}  {:>14.2}",
                t.as_secs_f64(),
                t.as_secs_f64() / b.as_secs_f64(),
                t.as_secs_f64() / r.as_secs_f64()
            );
        }
        println!("raw CSV read: {:.1} MB", raw_bytes as f64 / 1e6);
        println!("verify --content / verify (counts): {:.2}", d.as_secs_f64() / c.as_secs_f64());
        println!("verify --content peak RSS: {:.1} MB", rss as f64 / 1e6);
    });
}
