//! Gateway handler CPU: validate + stamp + chunk + compress of 1 MiB bodies on one core.
//!
//! Goal (issue 3): at least 100 MB/s. Reports bytes/s of each step, each step's share of the
//! whole, and the ratio to a baseline measured in the same run: gzip of the same body at the
//! same level with no line handling at all (the least any pipeline that compresses must pay).
//!
//! Run: `cargo bench --workspace --bench pipeline` (release profile, one thread).

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use kinesis_writer::records::prepare;
use kinesis_writer::request::Stamping;
use kinesis_writer::{WriteRequest, screen};
use shared::envelope::{Api, MAX_RECORD_BYTES, PartitionKeyMode, WriteParams};
use shared::line_protocol::Precision;
use shared::sensitive::Sensitive;

const BODY_BYTES: usize = 1024 * 1024;

/// Telegraf-like lines (cpu, mem, disk with tags and several fields); every other line carries
/// no timestamp, so stamping has work to do.
fn telegraf_body() -> Vec<u8> {
    let mut out = Vec::with_capacity(BODY_BYTES + 512);
    let mut i: u64 = 0;
    while out.len() < BODY_BYTES {
        let host = i % 50;
        let ts = if i.is_multiple_of(2) {
            format!(" {}", 1_700_000_000_000_000_000u64 + i * 10_000_000)
        } else {
            String::new()
        };
        let line = match i % 3 {
            0 => format!(
                "cpu,cpu=cpu{},host=web-{host:03}.example.com,region=eu-west-1,env=prod usage_user={}.{},usage_system={}.5,usage_idle={}.25,usage_iowait=0.{}{ts}\n",
                i % 8,
                i % 97,
                i % 13,
                i % 41,
                80 + i % 19,
                i % 7
            ),
            1 => format!(
                "mem,host=web-{host:03}.example.com,region=eu-west-1,env=prod used={}i,free={}i,cached={}i,available_percent={}.{}{ts}\n",
                i * 4096,
                i * 1024 + 7,
                i * 512,
                i % 100,
                i % 10
            ),
            _ => format!(
                "disk,device=nvme0n1p{},fstype=ext4,host=web-{host:03}.example.com,mode=rw,path=/var/lib/data used_percent={}.{},inodes_free={}u,status=\"ok {}\"{ts}\n",
                i % 4,
                i % 100,
                i % 9,
                i * 31,
                i % 5
            ),
        };
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out
}

fn write_request(body: Vec<u8>) -> WriteRequest {
    WriteRequest {
        api: Api::V2,
        params: WriteParams {
            org: Some("org".into()),
            bucket: Some("telegraf".into()),
            precision: Some("ns".into()),
            ..Default::default()
        },
        precision: Stamping::V2(Precision::Nanoseconds),
        authorization: Some(Sensitive::new("Token bench")),
        content_type: Some("text/plain; charset=utf-8".into()),
        request_id: "bench".into(),
        body,
    }
}

/// Median time of `f` over enough runs to fill about `budget`.
fn time<F: FnMut()>(budget: Duration, mut f: F) -> Duration {
    for _ in 0..3 {
        f();
    }
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || samples.len() < 15 {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn mb_per_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let body = telegraf_body();
    let n = body.len();
    let write = write_request(body.clone());
    let budget = Duration::from_secs(3);

    let baseline = time(budget, || {
        let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(n / 4), flate2::Compression::fast());
        e.write_all(black_box(&body)).unwrap();
        black_box(e.finish().unwrap());
    });
    let validate = time(budget, || {
        black_box(screen(black_box(&write)).unwrap());
    });
    let stamp = time(budget, || {
        let (lines, _) = screen(black_box(&write)).unwrap();
        let mut out = Vec::with_capacity(n + n / 8);
        for l in &lines {
            l.write_stamped(1_700_000_000_123_456_789, &mut out);
        }
        black_box(out);
    });
    let mut records = 0;
    let full = time(budget, || {
        let (lines, _) = screen(black_box(&write)).unwrap();
        let p = prepare(
            &write,
            None,
            &lines,
            1_700_000_000_123_456_789,
            PartitionKeyMode::Random,
            MAX_RECORD_BYTES,
        )
        .unwrap();
        records = p.records.len();
        black_box(p);
    });

    let lines = screen(&write).unwrap().0.len();
    println!(
        "gateway pipeline, {n} bytes, {lines} lines, {records} record(s), median of runs over {budget:?} each"
    );
    println!("{:<44} {:>10} {:>10} {:>8}", "step", "time", "MB/s", "share");
    let share = |d: Duration| 100.0 * d.as_secs_f64() / full.as_secs_f64();
    let stamp_only = stamp.saturating_sub(validate);
    let chunk_compress = full.saturating_sub(validate);
    println!(
        "{:<44} {:>8.2}ms {:>10.1} {:>7.1}%",
        "validate (screen)",
        validate.as_secs_f64() * 1e3,
        mb_per_s(n, validate),
        share(validate)
    );
    println!(
        "{:<44} {:>8.2}ms {:>10} {:>7}",
        "  + stamp into a buffer (not in the pipeline)",
        stamp_only.as_secs_f64() * 1e3,
        "",
        ""
    );
    println!(
        "{:<44} {:>8.2}ms {:>10} {:>7.1}%",
        "stamp + chunk + gzip (prepare)",
        chunk_compress.as_secs_f64() * 1e3,
        "",
        share(chunk_compress)
    );
    println!(
        "{:<44} {:>8.2}ms {:>10.1} {:>7.1}%",
        "whole pipeline",
        full.as_secs_f64() * 1e3,
        mb_per_s(n, full),
        100.0
    );
    println!(
        "{:<44} {:>8.2}ms {:>10.1}",
        "baseline: gzip (level 1) of the body only",
        baseline.as_secs_f64() * 1e3,
        mb_per_s(n, baseline)
    );
    println!(
        "ratio whole pipeline / baseline time: {:.2} (goal: pipeline >= 100 MB/s)",
        full.as_secs_f64() / baseline.as_secs_f64()
    );
}
