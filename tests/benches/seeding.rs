//! Seeding benchmark: `influx-migration` against the tools AWS's script drives, on the same data,
//! in the same run, into a real influxd 2.7.12, from a 2.7.12 source and from a 2.9.1 source.
//!
//! 1. Native, a bucket of `SEEDING_POINTS` points (default 5,000,000), like for like: the same
//!    compression on the wire on both sides. `influx backup` (gzip, its default) + `influx
//!    restore` against `influx-migration --wire-compression gzip` (the like-for-like pair: influx
//!    CLI 2.3.0 always asks the source for gzip); `influx backup --compression none` (raw local
//!    files, gzip on the wire still) + `influx restore` against `--wire-compression none` (what
//!    `auto` does on loopback); and `--parallel 1`. Contenders alternate over `SEEDING_ROUNDS` rounds (default 3); ratio =
//!    ours / theirs of the medians (lower is better).
//! 2. CSV, a bucket of `SEEDING_CSV_POINTS` points (default 1,000,000): the script's pipeline
//!    (`influx query --raw` to a file, then `influx write --format csv`) versus
//!    `influx-migration --csv`; speed-up = theirs / ours.
//! 3. Peak RSS (`VmHWM`, sampled) of every run, ours at both sizes.
//!
//! Every copy is checked (its value count equals the source's) before its time is reported.
//! Verification (`--no-verify`) is left out of the timed runs because the script has none; its
//! cost is measured on its own.
//!
//! Run (release binaries; see benchmarks/seeding.md):
//! `cargo build --workspace --release --bins && TESTBED_PROFILE=release cargo bench --workspace --bench seeding`

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testbed::{Influxd, InfluxdVersion, TestBed};

const SERIES: usize = 1000;
/// Eight weeks: eight 7-day shard groups.
const SPAN_NS: i64 = 8 * 7 * 24 * 3600 * 1_000_000_000;
const T0: i64 = 1_704_067_200_000_000_000;

struct Measured {
    seconds: f64,
    max_rss_mib: f64,
}

/// Runs a program to completion and measures wall time and peak RSS.
///
/// Peak RSS is the largest `VmHWM` read from `/proc/<pid>/status` every 5 ms while the child
/// runs. (`wait4`'s `ru_maxrss` is no use here: the child is spawned sharing the parent's memory
/// until `exec`, and that pre-exec size counts as the child's peak.)
fn measure(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    cwd: &Path,
    stdout_to: Option<&Path>,
) -> Measured {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(cwd).stdin(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    match stdout_to {
        Some(p) => cmd.stdout(std::fs::File::create(p).expect("output file")),
        None => cmd.stdout(Stdio::null()),
    };
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let stderr = child.stderr.take().expect("stderr");
    let drain = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut s);
        s
    });
    let status_path = format!("/proc/{}/status", child.id());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak_kb = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(text) = std::fs::read_to_string(&status_path)
                    && let Some(kb) = text
                        .lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                {
                    peak_kb = peak_kb.max(kb);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            peak_kb
        })
    };
    let status = child.wait().expect("wait");
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak_kb = sampler.join().unwrap_or(0);
    let log = drain.join().unwrap_or_default();
    assert!(status.success(), "{} {:?} failed:\n{log}", program.display(), args);
    Measured { seconds, max_rss_mib: peak_kb as f64 / 1024.0 }
}

async fn load(server: &Influxd, bucket: &str, points: usize) {
    server.create_bucket(bucket).await;
    let steps = points / SERIES;
    let step_ns = SPAN_NS / steps as i64;
    let client = reqwest::Client::new();
    let mut body = String::with_capacity(8 * 1024 * 1024);
    let mut pending = Vec::new();
    // Values from a 64-bit LCG (Knuth's MMIX constants): as incompressible as real metrics
    // (a repeating pattern would make the TSM files, and every transfer, tiny).
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for k in 0..steps {
        let t = T0 + k as i64 * step_ns;
        for s in 0..SERIES {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            body.push_str(&format!(
                "cpu,host=h{},region=r{} usage={}.{:04} {t}\n",
                s % 100,
                s / 100,
                (x >> 40) % 1000,
                (x >> 20) % 10_000
            ));
        }
        if body.len() > 4 * 1024 * 1024 || k + 1 == steps {
            let req = client
                .post(format!("{}/api/v2/write", server.url))
                .query(&[("org", server.org.as_str()), ("bucket", bucket), ("precision", "ns")])
                .header("Authorization", server.auth())
                .body(std::mem::take(&mut body));
            pending.push(tokio::spawn(async move { req.send().await.map(|r| r.status().as_u16()) }));
            if pending.len() >= 2 {
                let status = pending.remove(0).await.unwrap().expect("write");
                assert_eq!(status, 204);
            }
        }
    }
    for p in pending {
        assert_eq!(p.await.unwrap().expect("write"), 204);
    }
}

async fn drop_bucket(server: &Influxd, name: &str) {
    let (_, body) = server.api(reqwest::Method::GET, &format!("/api/v2/buckets?name={name}"), None).await;
    if let Some(id) = body["buckets"][0]["id"].as_str() {
        let (s, _) = server.api(reqwest::Method::DELETE, &format!("/api/v2/buckets/{id}"), None).await;
        assert_eq!(s, 204);
    }
}

/// The native contenders, alternated over `rounds` rounds against one source.
struct Native<'a> {
    ours: &'a Path,
    influx: &'a Path,
    work: &'a Path,
    cli_env: &'a [(&'a str, &'a str)],
    rounds: usize,
}

impl Native<'_> {
    fn dir(&self, name: &str) -> String {
        self.work.join(name).display().to_string()
    }

    /// `influx backup` (with `--compression gzip` or `none`) then `influx restore`.
    fn influx_cli(&self, src: &Influxd, dst: &Influxd, name: &str, compression: &str) -> Measured {
        let d = self.dir(name);
        let b = measure(
            self.influx,
            &[
                "backup",
                &d,
                "--host",
                &src.url,
                "-t",
                &src.token,
                "--bucket",
                "native",
                "--compression",
                compression,
            ],
            self.cli_env,
            self.work,
            None,
        );
        let r = measure(
            self.influx,
            &[
                "restore",
                &d,
                "--host",
                &dst.url,
                "-t",
                &dst.token,
                "--bucket",
                "native",
                "--new-bucket",
                name,
            ],
            self.cli_env,
            self.work,
            None,
        );
        Measured { seconds: b.seconds + r.seconds, max_rss_mib: b.max_rss_mib.max(r.max_rss_mib) }
    }

    fn ours(&self, src: &Influxd, dst: &Influxd, name: &str, parallel: &str, wire: &str) -> Measured {
        let tokens = [("INFLUX_SRC_TOKEN", src.token.as_str()), ("INFLUX_DEST_TOKEN", dst.token.as_str())];
        measure(
            self.ours,
            &[
                "--src-host",
                &src.url,
                "--dest-host",
                &dst.url,
                "--src-bucket",
                "native",
                "--dest-bucket",
                name,
                "--parallel",
                parallel,
                "--wire-compression",
                wire,
                "--no-verify",
                "--dir-name",
                &self.dir(name),
            ],
            &tokens,
            self.work,
            None,
        )
    }

    /// Every contender `rounds` times in turn against `src`; each copy counted before its time
    /// counts. Rows of medians, and the like-for-like ratios pushed to `ratios`.
    async fn compare(
        &self,
        src: &Influxd,
        dst: &Influxd,
        version: &str,
        points: usize,
        ratios: &mut Vec<String>,
    ) -> Vec<(String, Measured)> {
        let expected = src.count("native").await;
        // A first backup flushes the source's cache to TSM files; not timed, so every timed run
        // reads the same files.
        let warm = format!("warm-up-{version}");
        measure(
            self.influx,
            &["backup", &self.dir(&warm), "--host", &src.url, "-t", &src.token, "--bucket", "native"],
            self.cli_env,
            self.work,
            None,
        );
        let contenders: [(&str, &str, &str); 5] = [
            ("influx backup + influx restore (gzip)", "cli", "gzip"),
            ("influx-migration --parallel 4 --wire-compression gzip", "4", "gzip"),
            ("influx backup --compression none (gzip on the wire still) + influx restore", "cli", "none"),
            ("influx-migration --parallel 4 --wire-compression none", "4", "none"),
            ("influx-migration --parallel 1 --wire-compression none", "1", "none"),
        ];
        let mut runs: Vec<Vec<Measured>> = contenders.iter().map(|_| Vec::new()).collect();
        for round in 0..self.rounds {
            for (i, (_, how, wire)) in contenders.iter().enumerate() {
                let name = format!("v{}-{i}-{round}", version.replace('.', "-"));
                let m = if *how == "cli" {
                    self.influx_cli(src, dst, &name, wire)
                } else {
                    self.ours(src, dst, &name, how, wire)
                };
                assert_eq!(dst.count(&name).await, expected, "{name}: every point copied");
                drop_bucket(dst, &name).await;
                runs[i].push(m);
            }
        }
        let mut rows = Vec::new();
        let mut medians = Vec::new();
        for ((label, _, _), mut r) in contenders.iter().zip(runs) {
            r.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
            println!(
                "  {label}, {version} source, runs: {:?}",
                r.iter().map(|m| format!("{:.2}", m.seconds)).collect::<Vec<_>>()
            );
            let peak = r.iter().map(|m| m.max_rss_mib).fold(0.0, f64::max);
            let median = r[r.len() / 2].seconds;
            medians.push(median);
            rows.push((
                format!("{label}, {points} points, {version} source (median of {})", self.rounds),
                Measured { seconds: median, max_rss_mib: peak },
            ));
        }
        ratios.push(format!(
            "native, {points} points, {version} source: ours / influx backup+restore, both gzip on the wire (like for like) = {:.2}; ours uncompressed / influx with raw local files = {:.2} (--parallel 1: {:.2}; influx CLI 2.3.0 always asks for gzip on the wire)",
            medians[1] / medians[0],
            medians[3] / medians[2],
            medians[4] / medians[2]
        ));
        rows
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let native_points = env_usize("SEEDING_POINTS", 5_000_000);
    let csv_points = env_usize("SEEDING_CSV_POINTS", 1_000_000);
    let bed = TestBed::get();
    let ours: PathBuf = testbed::stack::lambda::workspace_binary("influx-migration");
    let work = tempfile::tempdir().expect("work dir");
    let cfg = work.path().join("influx-configs");
    let (src, dst) =
        tokio::join!(Influxd::start_named("bench-source"), Influxd::start_named("bench-destination"));
    let tokens = [("INFLUX_SRC_TOKEN", src.token.as_str()), ("INFLUX_DEST_TOKEN", dst.token.as_str())];
    let cli_env = [("INFLUX_CONFIGS_PATH", cfg.to_str().unwrap()), ("HOME", work.path().to_str().unwrap())];

    println!("# seeding benchmark ({})", ours.display());
    let t = Instant::now();
    load(&src, "native", native_points).await;
    load(&src, "csv", csv_points).await;
    let (n_native, n_csv) = (src.count("native").await, src.count("csv").await);
    assert_eq!(n_native as usize, native_points);
    assert_eq!(n_csv as usize, csv_points);
    println!("loaded {native_points} + {csv_points} points in {:.1} s", t.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut rows: Vec<(String, Measured)> = Vec::new();
    let dir = |name: &str| work.path().join(name).display().to_string();

    // ---- native, like for like: the same compression on the wire on both sides ----
    let rounds = env_usize("SEEDING_ROUNDS", 3);
    let native_setup =
        Native { ours: &ours, influx: bed.influx(), work: work.path(), cli_env: &cli_env, rounds };
    let mut ratios = Vec::new();
    rows.extend(native_setup.compare(&src, &dst, "2.7.12", native_points, &mut ratios).await);
    // The same against a 2.9.1 source (hashed tokens; its backup API gzips unless asked not to).
    let src29 = Influxd::start_version(InfluxdVersion::V2_9, "bench-source-2.9.1").await;
    load(&src29, "native", native_points).await;
    assert_eq!(src29.count("native").await as usize, native_points);
    tokio::time::sleep(Duration::from_secs(2)).await;
    rows.extend(native_setup.compare(&src29, &dst, "2.9.1", native_points, &mut ratios).await);
    drop(src29);

    // Ours, native, at the smaller size too (memory at 1M).
    let m = measure(
        &ours,
        &[
            "--src-host",
            &src.url,
            "--dest-host",
            &dst.url,
            "--src-bucket",
            "csv",
            "--dest-bucket",
            "ours-native-small",
            "--no-verify",
            "--dir-name",
            &dir("ours-native-small"),
        ],
        &tokens,
        work.path(),
        None,
    );
    assert_eq!(dst.count("ours-native-small").await, n_csv);
    drop_bucket(&dst, "ours-native-small").await;
    rows.push((format!("influx-migration native, {csv_points} points"), m));

    // ---- CSV: the script's pipeline versus ours ----
    let csv_file = work.path().join("script.csv");
    let q = measure(
        bed.influx(),
        &[
            "query",
            "--host",
            &src.url,
            "-t",
            &src.token,
            "--org",
            &src.org,
            "--raw",
            "from(bucket: \"csv\") |> range(start: 1678-01-01T00:00:00Z, stop: 2800-01-01T00:00:00Z)",
        ],
        &cli_env,
        work.path(),
        Some(&csv_file),
    );
    dst.create_bucket("script-csv").await;
    let w = measure(
        bed.influx(),
        &[
            "write",
            "--host",
            &dst.url,
            "-t",
            &dst.token,
            "--org",
            &dst.org,
            "--bucket",
            "script-csv",
            "--format",
            "csv",
            "--file",
            csv_file.to_str().unwrap(),
        ],
        &cli_env,
        work.path(),
        None,
    );
    assert_eq!(dst.count("script-csv").await, n_csv);
    drop_bucket(&dst, "script-csv").await;
    let script_csv =
        Measured { seconds: q.seconds + w.seconds, max_rss_mib: q.max_rss_mib.max(w.max_rss_mib) };
    println!("script pipeline: query --raw {:.2} s, write --format csv {:.2} s", q.seconds, w.seconds);
    let ours_csv = measure(
        &ours,
        &[
            "--src-host",
            &src.url,
            "--dest-host",
            &dst.url,
            "--src-bucket",
            "csv",
            "--dest-bucket",
            "ours-csv",
            "--csv",
            "--no-verify",
            "--dir-name",
            &dir("ours-csv"),
        ],
        &tokens,
        work.path(),
        None,
    );
    assert_eq!(dst.count("ours-csv").await, n_csv);
    drop_bucket(&dst, "ours-csv").await;
    rows.push((format!("influx query --raw + influx write --format csv, {csv_points} points"), script_csv));
    rows.push((format!("influx-migration --csv, {csv_points} points"), ours_csv));
    // The floor: the same number of points written straight to the destination as line
    // protocol (generated in this process, 4 MiB requests, 2 in flight), no export, no CSV.
    let t = Instant::now();
    load(&dst, "ingest-floor", csv_points).await;
    rows.push((
        format!("reference: {csv_points} points written to the destination as line protocol directly"),
        Measured { seconds: t.elapsed().as_secs_f64(), max_rss_mib: 0.0 },
    ));
    drop_bucket(&dst, "ingest-floor").await;

    // Ours, CSV, at the large size (memory at 5M; the script's pipeline is not run again).
    {
        let m = measure(
            &ours,
            &[
                "--src-host",
                &src.url,
                "--dest-host",
                &dst.url,
                "--src-bucket",
                "native",
                "--dest-bucket",
                "ours-csv-large",
                "--csv",
                "--no-verify",
                "--dir-name",
                &dir("ours-csv-large"),
            ],
            &tokens,
            work.path(),
            None,
        );
        assert_eq!(dst.count("ours-csv-large").await, n_native);
        rows.push((format!("influx-migration --csv, {native_points} points"), m));
    }

    println!("\n| run | seconds | peak RSS (MiB) |\n|---|---:|---:|");
    for (name, m) in &rows {
        println!("| {name} | {:.2} | {:.1} |", m.seconds, m.max_rss_mib);
    }
    let get = |prefix: &str| {
        rows.iter().find(|(n, _)| n.starts_with(prefix)).map(|(_, m)| m.seconds).unwrap_or(f64::NAN)
    };
    for line in &ratios {
        println!("{line}");
    }
    println!(
        "csv, {csv_points} points: script pipeline / ours = {:.1}x faster",
        get("influx query --raw") / get("influx-migration --csv")
    );
}
