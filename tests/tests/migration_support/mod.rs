//! Helpers shared by the `migration_*` integration tests: run the `influx-migration` binary as a
//! user would (environment tokens, a working directory, no terminal on stdin), seed a server
//! with varied data, and read whole buckets back for value-by-value comparison.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use testbed::Influxd;
use testbed::flux::{self, FluxRecord};

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    /// stderr without terminal colour codes.
    pub stderr: String,
}

impl Run {
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panics (showing the output) unless the run ended with `code`.
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code {}; stdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

/// Removes ANSI escape sequences (the log formatter colours its levels).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The binary under test.
pub fn binary() -> PathBuf {
    testbed::stack::lambda::workspace_binary("influx-migration")
}

/// Runs `influx-migration args` in `cwd` with exactly `env` (plus PATH and HOME), stdin closed.
pub async fn run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    run_with(binary(), cwd, args, env).await
}

pub async fn run_with(program: PathBuf, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = tokio::process::Command::new(program);
    cmd.current_dir(cwd)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn influx-migration");
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("influx-migration did not finish within 300 s")
        .expect("influx-migration output");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: strip_ansi(&String::from_utf8_lossy(&out.stderr)),
    }
}

/// The tokens of both servers as the CLI reads them.
pub fn tokens<'a>(src: &'a Influxd, dst: &'a Influxd) -> Vec<(&'static str, &'a str)> {
    vec![("INFLUX_SRC_TOKEN", src.token.as_str()), ("INFLUX_DEST_TOKEN", dst.token.as_str())]
}

/// 2024-01-01T00:00:00Z in ns.
pub const T0: i64 = 1_704_067_200_000_000_000;
const HALF_HOUR: i64 = 30 * 60 * 1_000_000_000;

/// Varied data over six weeks (so infinite-retention buckets get several 7-day shard groups):
/// four series of `cpu` with a float, an integer, an unsigned, a boolean and a string holding
/// quotes, a comma, a backslash and an equals sign; `mem` with a tag value that needs escaping;
/// and a series in 1990. `n` points per series; returns the number of values written.
pub async fn seed(server: &Influxd, bucket: &str, n: usize) -> usize {
    let mut lines = String::new();
    let mut values = 0;
    for i in 0..n {
        let t = T0 + i as i64 * (6 * 7 * 24 * 2 * HALF_HOUR / n as i64);
        for h in 0..4 {
            lines.push_str(&format!(
                "cpu,host=h{h},region=r{} usage={}.25,count={}i,u={}u,ok={},note=\"say \\\"hi\\\", a\\\\b=c {i}\" {t}\n",
                h % 2,
                i * 3 + h,
                i as i64 - 50,
                i * 7,
                if (i + h) % 3 == 0 { "true" } else { "false" }
            ));
            values += 5;
        }
        lines.push_str(&format!("mem,zone=eu\\ west\\,1 free={} {}\n", i * 1000, t + 1));
        values += 1;
    }
    for i in 0..50 {
        lines
            .push_str(&format!("legacy value={i} {}\n", 631_152_000_000_000_000 + i as i64 * 60_000_000_000));
        values += 1;
    }
    server.write_ok(bucket, "ns", lines).await;
    values
}

/// A server reached with a given token (after a full restore the destination answers to the
/// source's operator token).
#[derive(Debug, Clone, Copy)]
pub struct Endpoint<'a> {
    pub server: &'a Influxd,
    pub token: &'a str,
}

impl<'a> From<&'a Influxd> for Endpoint<'a> {
    fn from(s: &'a Influxd) -> Self {
        Endpoint { server: s, token: &s.token }
    }
}

impl<'a> Endpoint<'a> {
    pub fn new(server: &'a Influxd, token: &'a str) -> Endpoint<'a> {
        Endpoint { server, token }
    }

    /// Any API call with this token: status and JSON (or text) body.
    pub async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.server.api_as(self.token, method, path, body).await
    }
}

/// Runs a Flux query in org `org` and returns the annotated CSV.
pub async fn query_in<'a>(server: impl Into<Endpoint<'a>>, org: &str, flux: &str) -> String {
    let server = server.into();
    server.server.query_csv_in(org, flux, server.token).await
}

/// Every value of `bucket` in `org` over all time influxd can store, sorted for comparison.
pub async fn dump<'a>(server: impl Into<Endpoint<'a>>, org: &str, bucket: &str) -> Vec<FluxRecord> {
    let csv = query_in(
        server,
        org,
        &format!(
            "from(bucket: \"{bucket}\") |> range(start: 1677-09-21T00:12:43.145224194Z, stop: 2262-04-11T23:47:16.854775806Z)"
        ),
    )
    .await;
    let mut rows = flux::parse_annotated_csv(&csv);
    flux::sort_points(&mut rows);
    rows
}

/// Names of every bucket on the server.
pub async fn bucket_names(server: &Influxd) -> Vec<String> {
    let (status, body) = server.api(reqwest::Method::GET, "/api/v2/buckets?limit=100", None).await;
    assert_eq!(status, 200, "{body}");
    let mut names: Vec<String> =
        body["buckets"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

/// The bucket called `name` (any org), as JSON.
pub async fn bucket(server: &Influxd, name: &str) -> Option<Value> {
    let (status, body) = server.api(reqwest::Method::GET, "/api/v2/buckets?limit=100", None).await;
    assert_eq!(status, 200, "{body}");
    body["buckets"].as_array().unwrap().iter().find(|b| b["name"] == name).cloned()
}

/// A downsampling task's Flux: on `schedule` (`every: 2s`, `every: 2s, offset: 3s`), the 1 s
/// means of the `m` points of bucket `raw` over its period, as `measurement` into bucket `out`.
pub fn downsample_flux(name: &str, org: &str, schedule: &str, measurement: &str, out: &str) -> String {
    format!(
        "option task = {{name: \"{name}\", {schedule}}}\n\
         from(bucket: \"raw\")\n  |> range(start: -task.every)\n  |> filter(fn: (r) => r._measurement == \"m\")\n  \
         |> aggregateWindow(every: 1s, fn: mean)\n  |> set(key: \"_measurement\", value: \"{measurement}\")\n  \
         |> to(bucket: \"{out}\", org: \"{org}\")\n"
    )
}

/// Panics when any of the tokens appears in `text`.
pub fn assert_no_token(text: &str, tokens: &[&str]) {
    for t in tokens {
        assert!(!text.contains(t), "a token appears in the output:\n{text}");
    }
}

/// The `--retry-restore-dir` command the CLI printed, as words (the binary name first).
pub fn printed_retry_command(stderr: &str) -> Vec<String> {
    let line = stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("influx-migration --retry-restore-dir"))
        .unwrap_or_else(|| panic!("no retry command in:\n{stderr}"));
    shell_words(line)
}

/// Splits a POSIX shell command line (plain words and single quotes, as the CLI prints them).
pub fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            '\\' => {
                in_word = true;
                if let Some(d) = chars.next() {
                    cur.push(d);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The test bed's `influx` CLI with a private config directory, so it never touches
/// ~/.influxdbv2.
pub async fn influx_cli(config_dir: &Path, args: &[&str]) -> (i32, String) {
    let out = tokio::process::Command::new(testbed::TestBed::get().influx())
        .args(args)
        .env("INFLUX_CONFIGS_PATH", config_dir.join("configs"))
        .env("HOME", config_dir)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run the influx CLI");
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}
