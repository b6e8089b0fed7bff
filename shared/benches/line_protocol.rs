//! Throughput of `line_protocol::validate` on 1 MiB bodies, against a baseline measured in the
//! same run: cutting the same body on `'\n'` with memchr and nothing else (the least any scanner
//! must do). The ratio scanner/baseline is printed at the end.
//!
//! Bodies:
//! - `telegraf`: cpu/mem/disk/net/system lines as Telegraf writes them: 5-10 tags (some with
//!   escaped spaces), 5-10 fields of every type, a few string fields, ns timestamps;
//! - `strings`: log-like lines whose fields are mostly long quoted strings with escaped quotes,
//!   commas, `=` and the odd raw newline (the cutter's and parser's slow paths).
//!
//! Run: `cargo bench --workspace --bench line_protocol`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use shared::line_protocol::{self, Precision};

const BODY_SIZE: usize = 1 << 20;

/// A small deterministic generator so that every run measures the same bytes.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The body and the number of lines written into it.
fn telegraf_body() -> (Vec<u8>, usize) {
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let mut body = Vec::with_capacity(BODY_SIZE + 1024);
    let mut ts: i64 = 1_700_000_000_000_000_000;
    let mut count = 0;
    let hosts = ["web-01", "web-02", "db-primary", "cache\\ node\\ 3", "batch-07"];
    while body.len() < BODY_SIZE {
        let host = hosts[rng.below(hosts.len() as u64) as usize];
        let common = format!(
            "host={host},region=eu-west-1,az=eu-west-1{},env=prod,team=platform,rack=r{}",
            ["a", "b", "c"][rng.below(3) as usize],
            rng.below(40)
        );
        let line = match rng.below(5) {
            0 => format!(
                "cpu,cpu=cpu{},{common} usage_user={:.3},usage_system={:.3},usage_idle={:.3},usage_iowait={:.3},usage_irq=0,usage_steal=0.01,usage_guest=0 {ts}\n",
                rng.below(16),
                rng.below(10_000) as f64 / 100.0,
                rng.below(3_000) as f64 / 100.0,
                rng.below(10_000) as f64 / 100.0,
                rng.below(500) as f64 / 100.0,
            ),
            1 => format!(
                "mem,{common} total={}i,available={}i,used={}i,used_percent={:.4},free={}i,cached={}i,buffered={}i,swap_total=0i {ts}\n",
                34_359_738_368u64,
                rng.below(34_359_738_368),
                rng.below(34_359_738_368),
                rng.below(1_000_000) as f64 / 10_000.0,
                rng.below(1 << 30),
                rng.below(1 << 32),
                rng.below(1 << 28),
            ),
            2 => format!(
                "disk,device=nvme0n1p{},fstype=ext4,mode=rw,path=/var/lib/data{},{common} total={}u,free={}u,used={}u,used_percent={:.3},inodes_total={}u,inodes_free={}u,inodes_used={}u {ts}\n",
                rng.below(4),
                rng.below(3),
                1_000_000_000_000u64,
                rng.below(1_000_000_000_000),
                rng.below(1_000_000_000_000),
                rng.below(100_000) as f64 / 1000.0,
                61_054_976u64,
                rng.below(61_054_976),
                rng.below(61_054_976),
            ),
            3 => format!(
                "net,interface=eth{},{common} bytes_sent={}i,bytes_recv={}i,packets_sent={}i,packets_recv={}i,err_in=0i,err_out=0i,drop_in={}i,drop_out=0i {ts}\n",
                rng.below(2),
                rng.below(1 << 40),
                rng.below(1 << 40),
                rng.below(1 << 30),
                rng.below(1 << 30),
                rng.below(100),
            ),
            _ => format!(
                "system,{common} load1={:.2},load5={:.2},load15={:.2},n_users={}i,n_cpus=16i,uptime={}u,uptime_format=\"{} days, {:2}:{:02}\",kernel=\"6.1.0-{}-amd64\",healthy={} {ts}\n",
                rng.below(1600) as f64 / 100.0,
                rng.below(1600) as f64 / 100.0,
                rng.below(1600) as f64 / 100.0,
                rng.below(8),
                rng.below(10_000_000),
                rng.below(400),
                rng.below(24),
                rng.below(60),
                rng.below(30),
                ["true", "false", "t"][rng.below(3) as usize],
            ),
        };
        body.extend_from_slice(line.as_bytes());
        ts += 10_000_000_000;
        count += 1;
    }
    (body, count)
}

fn strings_body() -> (Vec<u8>, usize) {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let words = [
        "request",
        "GET",
        "/api/v2/query?org=acme",
        "took",
        "12ms",
        "user=alice",
        "a,b",
        "k=v",
        "\\\"quoted\\\"",
        "C:\\\\temp",
        "ok",
    ];
    let mut body = Vec::with_capacity(BODY_SIZE + 4096);
    let mut ts: i64 = 1_700_000_000_000_000_000;
    let mut count = 0;
    while body.len() < BODY_SIZE {
        let mut message = String::new();
        for i in 0..8 + rng.below(24) {
            if i > 0 {
                message.push(if rng.below(40) == 0 { '\n' } else { ' ' });
            }
            message.push_str(words[rng.below(words.len() as u64) as usize]);
        }
        let line = format!(
            "logs,app=gateway,level={},host=web-0{} message=\"{message}\",trace_id=\"{:016x}{:016x}\",caller=\"handler.go:{}\",status={}i {ts}\n",
            ["info", "warn", "error"][rng.below(3) as usize],
            rng.below(9),
            rng.next(),
            rng.next(),
            rng.below(900),
            [200, 204, 400, 500][rng.below(4) as usize],
        );
        body.extend_from_slice(line.as_bytes());
        ts += 1_000_000;
        count += 1;
    }
    (body, count)
}

/// The baseline: every `'\n'`-terminated slice of the body, found with memchr.
fn memchr_split(body: &[u8]) -> usize {
    let mut count = 0;
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', body) {
        black_box(&body[start..end]);
        start = end + 1;
        count += 1;
    }
    count
}

fn scanner(body: &[u8]) -> usize {
    match line_protocol::validate(body, Precision::Nanoseconds) {
        Ok(lines) => lines.len(),
        Err(e) => panic!("benchmark body refused: {}", e.message()),
    }
}

/// Median time per run of `f` over `runs` runs, for the ratio printed at the end (criterion's own
/// estimates are printed above it).
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let bodies = [("telegraf", telegraf_body()), ("strings", strings_body())];
    let mut summary = Vec::new();
    for (name, (body, written)) in &bodies {
        let lines = scanner(body);
        assert_eq!(lines, *written, "every generated line is one valid point");
        let mut group = criterion.benchmark_group(format!("line_protocol/{name}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("validate", |b| b.iter(|| scanner(black_box(body))));
        group.bench_function("baseline_memchr_split", |b| b.iter(|| memchr_split(black_box(body))));
        group.finish();

        let scan = median(31, || {
            black_box(scanner(black_box(body)));
        });
        let base = median(31, || {
            black_box(memchr_split(black_box(body)));
        });
        let mbps = |d: Duration| body.len() as f64 / d.as_secs_f64() / 1e6;
        summary.push(format!(
            "{name:>9}: {} bytes, {lines} lines | validate {:8.1} MB/s | memchr split {:8.1} MB/s | validate/baseline = {:.3} (baseline {:.1}x faster)",
            body.len(),
            mbps(scan),
            mbps(base),
            base.as_secs_f64() / scan.as_secs_f64(),
            scan.as_secs_f64() / base.as_secs_f64(),
        ));
    }
    criterion.final_summary();
    println!("\nline_protocol summary (median of 31 runs each, same process):");
    for line in summary {
        println!("{line}");
    }
}
