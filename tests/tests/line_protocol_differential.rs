//! Differential test of `shared::line_protocol` against a real influxd 2.7.12.
//!
//! Hundreds of distinct lines (valid and invalid: escapes, every field type and its bounds,
//! timestamps at and past the range in every precision, blank/comment/CRLF quirks, storage-level
//! refusals) are each written ON THEIR OWN to a running influxd, through `/api/v2/write` with
//! each precision and through the v1 `/write` with its precisions. influxd's answer (204 / 400 /
//! 422 / 500) is compared with our decision (accepted / Parse / Unprocessable / Internal), and
//! the error message with ours; every mismatch is printed (line, both answers) before failing.
//! Then a few multi-line bodies compare the whole-body answer and what influxd stored, the time
//! influxd gives lines without a timestamp is compared with `timestamp_for`, and finally the
//! line that makes influxd 2.7.12 crash is sent last, to show why we refuse it.
//!
//! Field-type conflicts would make influxd answer 422 for reasons that depend on stored data:
//! each case writes its own measurement (`{m}` in a case is replaced by a unique name), and a
//! case that names its measurement literally goes to a bucket where that name is still unused.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shared::line_protocol::{self, Precision, RejectKind, V1Precision};
use testbed::Influxd;

/// Where a line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Path {
    /// `/api/v2/write?precision=<p>` (`None`: no parameter).
    V2(Option<&'static str>),
    /// `/write?db=<bucket>&precision=<p>`.
    V1(Option<&'static str>),
}

impl Path {
    fn precision(self) -> Precision {
        match self {
            Path::V2(p) => Precision::from_v2(p).expect("test cases use valid v2 precisions"),
            Path::V1(p) => Precision::from_v1(p),
        }
    }
}

/// What influxd did, or what we say it would do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    Accepted,
    Refused {
        status: u16,
        message: String,
    },
    /// No HTTP answer at all (influxd died).
    NoAnswer,
}

struct Case {
    line: Vec<u8>,
    path: Path,
}

/// Replaces every `{m}` by `name`.
fn fill(template: &[u8], name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(template.len() + 8);
    let mut i = 0;
    while i < template.len() {
        if template[i..].starts_with(b"{m}") {
            out.extend_from_slice(name.as_bytes());
            i += 3;
        } else {
            out.push(template[i]);
            i += 1;
        }
    }
    out
}

/// Single lines written with ns on the v2 path (plus the precision sweeps built below).
#[rustfmt::skip]
const LINES: &[&[u8]] = &[
    // Measurements and their escapes.
    b"{m} v=1", b"{m}", b"{m} ", b",{m} v=1", b"{m}\\ load v=1", b"{m}\\,x v=1", b"{m}\\\\,x=1 v=1",
    b"{m}\"q=u v=1", b"{m}\xc3\xa9t\xc3\xa9 v=1", b"{m}\\", b"{m}\\x v=1", b"{m}\\\\ v=1", b"{m}=x v=1",
    b"{m}#x v=1", b"{m}\x00x v=1", b"{m}\xff v=1", b"{m}\\ v=1", b"{m}, v=1", b"{m}\t v=1", b"{m}\\\\\\ x v=1",
    // Tags.
    b"{m},host=a v=1", b"{m},host=a,region=b v=1", b"{m},region=b,host=a v=1", b"{m}, v=1", b"{m},=a v=1",
    b"{m},host v=1", b"{m},host= v=1", b"{m},host=a", b"{m},host=a=b v=1", b"{m},a== v=1", b"{m},a==b v=1",
    b"{m},host=a\\ b v=1", b"{m},host=a\\,b v=1", b"{m},host=a\\=b v=1", b"{m},ho\\ st=a v=1", b"{m},ho\\=st=a v=1",
    b"{m},ho\\,st=a v=1", b"{m},host=a,host=b v=1", b"{m},b=1,a=2,b=3 v=1", b"{m},b=1,a=2,c=3 v=1",
    b"{m},time=1 v=1", b"{m},_field=1 v=1", b"{m},_measurement=1 v=1", b"{m},\xff=1 v=1", b"{m},\x00=1 v=1",
    b"{m},_time=1 v=1", b"{m},Time=1 v=1", b"{m},host=\"a b\" v=1", b"{m},host=\"a\" v=1", b"{m},host=a\\ v=1",
    b"{m},host=a\\\\ v=1", b"{m},host=a\\\\,b=c v=1", b"{m},t=\xc3\xa9 v=1", b"{m},t=1,, v=1", b"{m},t=1, v=1",
    // Field keys.
    b"{m} v=", b"{m} =1", b"{m} v=1,=2", b"{m} v=1,", b"{m} v=1,w", b"{m} v", b"{m} v=1,,w=2", b"{m} v=,w=2",
    b"{m} \t=1", b"{m} v\\ x=1", b"{m} v\\,x=1", b"{m} v\\=x=1", b"{m} a\\\\=1", b"{m} a\\\\=1,b=2",
    b"{m} \"v\"=1", b"{m} v=1,v=2", b"{m} v=1,v=\"x\"", b"{m} _v=1", b"{m} v\xc3\xa9=1", b"{m} v\\\"=1",
    b"{m} a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8,i=9,j=10", b"{m}  v=1", b"{m} \x00v=1",
    // String values.
    b"{m} s=\"a b\"", b"{m} s=\"a,b=c\"", b"{m} s=\"a\\\"b\"", b"{m} s=\"a\\\\\"", b"{m} s=\"a\nb\"",
    b"{m} s=\"\"", b"{m} s=\"abc", b"{m} s=\"a\"b", b"{m} s=\"a\\nb\"", b"{m} s=\"a\" 1", b"{m} s='a'",
    b"{m} s=\"a\\\\\\\"b\"", b"{m} s=\"\\\"\"", b"{m} s=\"\\\\\"", b"{m} s=\"a\\\"", b"{m} s=\"a\\\\\" 5",
    b"{m} s=\"line1\nline2\nline3\"", b"{m} s=\"a\r\nb\"", b"{m} s=\"tab\there\"", b"{m} s=\"\xc3\xa9\xe2\x82\xac\"",
    b"{m} s=\"\xff\"", b"{m} s=\"a\",t=\"b\"", b"{m} s=\"a\"\"b\"", b"{m} s=\"#x\"", b"{m} s=\"x\" ",
    b"{m} s=\"a,b\",v=1 5", b"{m} s=\"a=\\\"b\\\"\"", b"{m} s=\"a\\ b\"", b"{m} s=\"a\\,b\"",
    // Carriage returns, tabs and trailing blanks.
    b"{m} v=1\r", b"{m} v=1 123\r", b"{m} s=\"x\"\r", b"{m} v=true\r", b"{m} v=1i\r", b"{m} v=1 ", b"{m} v=1   ",
    b"{m} v=1 123 ", b"{m} v=1\t", b"{m} v=1 123\t", b"{m} v=1 1 2", b"{m} v=1 123 x", b"{m} v=1\x00",
    b"{m} s=\"x\"\t", b"{m} s=\"x\"\x00", b"{m} v=1 \r",
    // Integers.
    b"{m} v=1i", b"{m} v=-1i", b"{m} v=0i", b"{m} v=-0i", b"{m} v=9223372036854775807i", b"{m} v=9223372036854775808i",
    b"{m} v=-9223372036854775808i", b"{m} v=-9223372036854775809i", b"{m} v=0009223372036854775807i",
    b"{m} v=99999999999999999999i", b"{m} v=922337203685477580i", b"{m} v=1.5i", b"{m} v=1e3i", b"{m} v=i",
    b"{m} v=-i", b"{m} v=1i1", b"{m} v=1ii", b"{m} v=1I", b"{m} v=+1i", b"{m} v=1i,w=2i",
    // Unsigned integers.
    b"{m} v=1u", b"{m} v=0u", b"{m} v=18446744073709551615u", b"{m} v=18446744073709551616u", b"{m} v=-1u",
    b"{m} v=1.0u", b"{m} v=1iu", b"{m} v=u", b"{m} v=1U", b"{m} v=00018446744073709551615u", b"{m} v=1844674407370955161u",
    // Floats.
    b"{m} v=1.5", b"{m} v=-1.5", b"{m} v=.5", b"{m} v=5.", b"{m} v=-.5", b"{m} v=1e10", b"{m} v=1E-10",
    b"{m} v=1e+10", b"{m} v=1.7976931348623157e308", b"{m} v=1.7976931348623159e308", b"{m} v=1e309",
    b"{m} v=-1e309", b"{m} v=1e-400", b"{m} v=4.9e-324", b"{m} v=1.2.3", b"{m} v=1e", b"{m} v=.", b"{m} v=-",
    b"{m} v=--1", b"{m} v=1-1", b"{m} v=NaN", b"{m} v=nan", b"{m} v=Inf", b"{m} v=-Inf", b"{m} v=+Inf",
    b"{m} v=0x10", b"{m} v=1_000", b"{m} v=-e5", b"{m} v=1ee5", b"{m} v=1e5.5", b"{m} v=-0", b"{m} v=-0.0",
    b"{m} v=000001", b"{m} v=1.", b"{m} v=.e5", b"{m} v=1e-", b"{m} v=1e+", b"{m} v=1.5E+3",
    b"{m} v=0.000000000000000000000000001", b"{m} v=123456789012345678901234567890",
    // Booleans.
    b"{m} v=t", b"{m} v=T", b"{m} v=true", b"{m} v=True", b"{m} v=TRUE", b"{m} v=f", b"{m} v=F", b"{m} v=false",
    b"{m} v=False", b"{m} v=FALSE", b"{m} v=tRUE", b"{m} v=truE", b"{m} v=yes", b"{m} v=fals", b"{m} v=t1",
    b"{m} v=tru", b"{m} v=falsee", b"{m} v=1b", b"{m} v=y", b"{m} v=on", b"{m} v=\"true\"",
    // Timestamps (ns).
    b"{m} v=1 0", b"{m} v=1 -1", b"{m} v=1 1700000000000000000", b"{m} v=1 9223372036854775806",
    b"{m} v=1 9223372036854775807", b"{m} v=1 -9223372036854775806", b"{m} v=1 -9223372036854775807",
    b"{m} v=1 -9223372036854775808", b"{m} v=1 9223372036854775808", b"{m} v=1 12a", b"{m} v=1 -", b"{m} v=1 +1",
    b"{m} v=1 1.5", b"{m} v=1 --1", b"{m} v=1  \t 5", b"{m} v=1 0x10", b"{m} v=1 1e9", b"{m} v=1 -0",
    b"{m} v=1 00000000000000000000001", b"{m} v=1 \t", b"{m} v=1 \x00 7",
    // Refused by the storage (422 / 500), whatever is stored already.
    b"{m} time=1", b"{m} time=1,time=2", b"{m} time=1,v=2", b"{m} v=1,time=2", b"{m} time=\"x\"",
    b"{m} ti\\me=1", b"{m} a\\\\=\",b=1\"", b"{m} a\\\\=\",b=t1\"", b"{m} a\\\\=\",b=1i\"",
    b"{m} a\\\\=\",b=99999999999999999999i\"", b"{m} a\\\\=\",b=\"\",c=1",
    // Leading blanks and comments inside one request.
    b" {m} v=1", b"\t{m} v=1", b"\x00{m} v=1", b"  {m} v=1 5", b"#{m} v=1", b"  # {m} v=1", b"# {m}",
    b"", b" ", b"\n", b"\n\n{m} v=1\n\n",
];

/// Field values crossed with key forms: `{m} <key>=<value>`.
#[rustfmt::skip]
const VALUES: &[&[u8]] = &[
    b"0", b"1", b"-1", b"3.14", b"-3.14", b"1e3", b"1e-3", b"2.5E+2", b"0.0", b"1i", b"-42i", b"0u", b"42u",
    b"t", b"F", b"true", b"FALSE", b"\"s\"", b"\"with space\"", b"\"with,comma\"", b"\"with=equals\"",
    b"\"esc\\\"quote\"", b"\"nl\nnl\"",
];
const KEYS: &[&[u8]] = &[b"v", b"v\\ x", b"v\\,x", b"v\\=x", b"\xc3\xa9", b"V", b"v_1", b"v-1", b"v.1"];

/// Names crossed with positions: measurement, tag key, tag value, field key.
#[rustfmt::skip]
const NAMES: &[&[u8]] = &[
    b"a\\ b", b"a\\,b", b"a\\=b", b"a\\\\b", b"a\\\\", b"a\"b", b"a'b", b"a=b", b"a#b", b"a\\tb", b"\xe2\x82\xac",
    b"a\\\\\\ b", b"a\\\\\\,b", b"_a", b"a\\\"b", b"a/b", b"a:b",
];

/// Timestamps tried in every precision and on both paths.
#[rustfmt::skip]
const TIMESTAMPS: &[&str] = &[
    "0", "1", "-1", "1700000000", "1700000000000", "1700000000000000", "1700000000000000000",
    "9223372036", "9223372037", "-9223372036", "-9223372037", "9223372036854", "9223372036855",
    "-9223372036854", "-9223372036855", "9223372036854775", "9223372036854776", "-9223372036854775",
    "-9223372036854776", "9223372036854775806", "9223372036854775807", "-9223372036854775806",
    "-9223372036854775807",
];

const V2_PRECISIONS: &[Option<&str>] = &[None, Some("ns"), Some("us"), Some("ms"), Some("s")];
const V1_PRECISIONS: &[Option<&str>] = &[
    None,
    Some("ns"),
    Some("n"),
    Some("u"),
    Some("us"),
    Some("ms"),
    Some("m"),
    Some("s"),
    Some("h"),
    Some("rfc3339"),
];

/// A small deterministic generator for mutated lines.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let v2 = |line: Vec<u8>| Case { line, path: Path::V2(Some("ns")) };
    for line in LINES {
        cases.push(v2(line.to_vec()));
    }
    for key in KEYS {
        for value in VALUES {
            cases.push(v2([b"{m} ", *key, b"=", *value].concat()));
        }
    }
    for name in NAMES {
        cases.push(v2([b"{m}", *name, b" v=1"].concat()));
        cases.push(v2([b"{m},", *name, b"=x v=1"].concat()));
        cases.push(v2([b"{m},k=", *name, b" v=1"].concat()));
        cases.push(v2([b"{m} ", *name, b"=1"].concat()));
    }
    for ts in TIMESTAMPS {
        for &p in V2_PRECISIONS {
            cases.push(Case { line: format!("{{m}} v=1 {ts}").into_bytes(), path: Path::V2(p) });
        }
        for &p in V1_PRECISIONS {
            cases.push(Case { line: format!("{{m}} v=1 {ts}").into_bytes(), path: Path::V1(p) });
        }
    }
    for line in [&b"{m} v=1"[..], b"{m},t=a s=\"x\" 1700000000", b"{m} v=1 x", b"{m} v="] {
        for &p in V1_PRECISIONS {
            cases.push(Case { line: line.to_vec(), path: Path::V1(p) });
        }
    }
    // Mutations of valid lines: one to three bytes inserted, deleted or replaced.
    let seeds: &[&[u8]] = &[
        b"{m},host=a,region=eu\\ west usage=12.5,count=3i,ok=true,msg=\"a b\" 1700000000000000000",
        b"{m} s=\"x,y=z\",v=1u",
        b"{m},t=1 a=1,b=\"q\\\"q\",c=t",
    ];
    let atoms: &[&[u8]] = &[
        b" ", b",", b"=", b"\"", b"\\", b"\n", b"\r", b"\t", b"#", b"1", b"-", b".", b"e", b"i", b"u", b"t",
        b"x", b"\xff",
    ];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 150 {
        let mut line = rng.pick(seeds).to_vec();
        for _ in 0..1 + rng.next() % 3 {
            // Keep `{m}` intact so that every mutated line still has its own measurement.
            let pos = 3 + (rng.next() % (line.len() as u64 - 2)) as usize;
            let pos = pos.min(line.len());
            match rng.next() % 3 {
                0 => line.splice(pos..pos, rng.pick(atoms).iter().copied()).for_each(drop),
                1 if pos < line.len() => {
                    line.remove(pos);
                }
                _ if pos < line.len() => {
                    line.splice(pos..pos + 1, rng.pick(atoms).iter().copied()).for_each(drop)
                }
                _ => {}
            }
        }
        if seen.insert(line.clone()) {
            cases.push(v2(line));
        }
    }
    cases
}

/// The measurement as written (up to the first comma or space not after a backslash), for
/// spreading cases over buckets.
fn measurement_of(line: &[u8]) -> Vec<u8> {
    let start = line.iter().position(|&c| !matches!(c, b' ' | b'\t' | 0)).unwrap_or(line.len());
    let mut end = start;
    while end < line.len() && !(matches!(line[end], b',' | b' ') && end > start && line[end - 1] != b'\\') {
        end += 1;
    }
    line[start..end].to_vec()
}

/// Our decision for one request body, in influxd's terms.
fn ours(body: &[u8], path: Path) -> Decision {
    match line_protocol::validate(body, path.precision()) {
        Ok(_) => Decision::Accepted,
        Err(e) => {
            if e.errors
                .iter()
                .any(|l| l.kind == RejectKind::Internal && l.reason.contains("panics and exits"))
            {
                return Decision::NoAnswer;
            }
            Decision::Refused { status: e.status(), message: e.message() }
        }
    }
}

struct Server {
    db: Influxd,
    http: reqwest::Client,
}

impl Server {
    async fn write(&self, bucket: &str, path: Path, body: Vec<u8>) -> Decision {
        let request = match path {
            Path::V2(p) => {
                let mut query = vec![("org", self.db.org.as_str()), ("bucket", bucket)];
                if let Some(p) = p {
                    query.push(("precision", p));
                }
                self.http.post(format!("{}/api/v2/write", self.db.url)).query(&query)
            }
            Path::V1(p) => {
                let mut query = vec![("db", bucket)];
                if let Some(p) = p {
                    query.push(("precision", p));
                }
                self.http.post(format!("{}/write", self.db.url)).query(&query)
            }
        };
        let answer = request.header("Authorization", self.db.auth()).body(body).send().await;
        let Ok(answer) = answer else {
            return Decision::NoAnswer;
        };
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        if status == 204 {
            return Decision::Accepted;
        }
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        Decision::Refused { status, message }
    }

    async fn count_measurement(&self, bucket: &str, measurement: &str) -> usize {
        let measurement = measurement.replace('\\', "\\\\").replace('"', "\\\"");
        self.db
            .query(&format!(
                "from(bucket: \"{bucket}\") |> range(start: 1970-01-01T00:00:00Z, stop: 2262-01-01T00:00:00Z) \
                 |> filter(fn: (r) => r._measurement == \"{measurement}\")"
            ))
            .await
            .len()
    }
}

fn show(line: &[u8]) -> String {
    line.escape_ascii().to_string()
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanner_decides_every_line_as_influxd_2_7_12_does() {
    let server = Server {
        db: Influxd::start().await,
        http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("http client"),
    };

    // Fill in unique measurements and spread literal ones over buckets.
    let cases = cases();
    let mut filled: Vec<(Vec<u8>, Path, String)> = Vec::new();
    let mut used: Vec<std::collections::HashSet<Vec<u8>>> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let line = fill(&case.line, &format!("lp{i}"));
        let m = measurement_of(&line);
        let slot = used.iter().position(|set| !set.contains(&m)).unwrap_or(used.len());
        if slot == used.len() {
            used.push(Default::default());
        }
        used[slot].insert(m);
        filled.push((line, case.path, format!("lp-{slot}")));
    }
    for slot in 0..used.len() {
        server.db.create_bucket(&format!("lp-{slot}")).await;
    }
    let distinct: std::collections::HashSet<&[u8]> = cases.iter().map(|c| c.line.as_slice()).collect();
    let paths: std::collections::BTreeSet<Path> = cases.iter().map(|c| c.path).collect();
    println!(
        "{} requests, {} distinct lines, {} paths/precisions, {} buckets",
        filled.len(),
        distinct.len(),
        paths.len(),
        used.len()
    );
    assert!(distinct.len() >= 500, "at least 500 distinct lines, got {}", distinct.len());

    let mut mismatches = Vec::new();
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for (line, path, bucket) in &filled {
        let expected = ours(line, *path);
        assert_ne!(expected, Decision::NoAnswer, "the crashing line is sent last, not here: {}", show(line));
        let got = server.write(bucket, *path, line.clone()).await;
        if got == Decision::NoAnswer {
            panic!("influxd stopped answering at {} ({path:?}); log:\n{}", show(line), server.db.log_tail());
        }
        let status = match &got {
            Decision::Accepted => 204,
            Decision::Refused { status, .. } => *status,
            Decision::NoAnswer => 0,
        };
        *tally.entry(format!("{path:?} {status}")).or_default() += 1;
        if got != expected {
            mismatches.push(format!(
                "line {}  ({path:?})\n    influxd: {got:?}\n    ours:    {expected:?}",
                show(line)
            ));
        }
    }
    println!("answers by path and status: {tally:#?}");
    for statuses in [204u16, 400, 422, 500] {
        assert!(tally.keys().any(|k| k.ends_with(&format!(" {statuses}"))), "no case got {statuses}");
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} requests differ:\n{}",
        mismatches.len(),
        filled.len(),
        mismatches.join("\n")
    );

    multi_line_bodies_are_answered_and_stored_as_influxd_does(&server).await;
    invalid_v2_precisions_are_refused_with_influxd_message(&server).await;
    lines_without_timestamp_get_the_truncated_receive_time(&server).await;
    the_lone_quote_line_crashes_influxd(server).await;
}

/// Several lines in one request: the whole-body status and message, and what was stored.
async fn multi_line_bodies_are_answered_and_stored_as_influxd_does(server: &Server) {
    server.db.create_bucket("bodies").await;
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("all good", b"mb1 v=1 1\nmb1 v=2 2\n\nmb1,t=a v=3 3\n".to_vec()),
        ("good and bad", b"mb2 v=1 1\nmb2 v= 2\nmb2 v=3 3\nmb2 x\n".to_vec()),
        ("crlf", b"mb3 v=1 1\r\nmb3 v=2 2\r\n".to_vec()),
        ("string before crlf", b"mb4 s=\"a\" 1\r\n".to_vec()),
        ("comment swallows", b"# x=\"\nmb5 v=1 1\nmb5 v=2 2\n".to_vec()),
        ("leading blank joins", b" mb6=\" v=1 \nmb6b v=2 2\n".to_vec()),
        ("422 keeps the others", b"mb7 v=1 1\nmb7 time=1 2\nmb7 v=3 3\nmb7b time=2 4\n".to_vec()),
        ("500 stores nothing", b"mb8 v=1 1\nmb8 a\\\\=\",b=1\" 2\n".to_vec()),
        ("newline in string", b"mb9 s=\"a\nb\" 1\nmb9 s=\"c\" 2\n".to_vec()),
        ("backslash newline", b"mb10 v=1 1\\\nmb10 v=2 2\n".to_vec()),
    ];
    let mut mismatches = Vec::new();
    for (name, body) in &bodies {
        let expected = ours(body, Path::V2(Some("ns")));
        let got = server.write("bodies", Path::V2(Some("ns")), body.clone()).await;
        if got != expected {
            mismatches
                .push(format!("{name}: {}\n    influxd: {got:?}\n    ours:    {expected:?}", show(body)));
        }
        // What influxd stored under the body's measurements equals what we would let through.
        let accepted: Vec<Vec<u8>> = line_protocol::lines(body, Precision::Nanoseconds)
            .filter_map(Result::ok)
            .map(|l| measurement_of(l.text))
            .collect();
        let stores = match &got {
            Decision::Accepted => true,
            Decision::Refused { status, .. } => *status == 422,
            Decision::NoAnswer => false,
        };
        let mut expected_counts: HashMap<String, usize> = HashMap::new();
        if stores {
            for m in &accepted {
                *expected_counts.entry(String::from_utf8_lossy(m).into_owned()).or_default() += 1;
            }
        }
        let mut names: Vec<String> = body
            .split(|&c| c == b'\n')
            .map(|l| String::from_utf8_lossy(&measurement_of(l)).into_owned())
            .filter(|m| m.starts_with("mb"))
            .collect();
        names.sort();
        names.dedup();
        for m in names {
            let stored = server.count_measurement("bodies", &m).await;
            let want = expected_counts.get(&m).copied().unwrap_or(0);
            if stored != want {
                mismatches
                    .push(format!("{name}: influxd stored {stored} values of {m}, our lines say {want}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "multi-line bodies differ:\n{}", mismatches.join("\n"));
}

async fn invalid_v2_precisions_are_refused_with_influxd_message(server: &Server) {
    for bad in ["n", "u", "m", "h", "NS", "rfc3339", "1"] {
        let got = server.write("bodies", Path::V2(Some(bad)), b"prec v=1".to_vec()).await;
        let ours = Precision::from_v2(Some(bad)).expect_err("invalid");
        assert_eq!(got, Decision::Refused { status: 400, message: ours.to_string() }, "precision={bad}");
    }
    // An empty value means ns.
    assert_eq!(server.write("bodies", Path::V2(Some("")), b"prec v=1 5".to_vec()).await, Decision::Accepted);
    assert_eq!(Precision::from_v2(Some("")), Ok(Precision::Nanoseconds));
}

/// influxd's time for a line without one is its receive time truncated to the precision (and on
/// v1 also to the minute for `m`, the hour for `h`): it must fall between our stamp for the time
/// just before and just after the request.
async fn lines_without_timestamp_get_the_truncated_receive_time(server: &Server) {
    server.db.create_bucket("stamps").await;
    let paths = [
        Path::V2(None),
        Path::V2(Some("us")),
        Path::V2(Some("ms")),
        Path::V2(Some("s")),
        Path::V1(Some("u")),
        Path::V1(Some("m")),
        Path::V1(Some("h")),
        Path::V1(Some("ms")),
        Path::V1(Some("bogus")),
    ];
    for (i, path) in paths.iter().enumerate() {
        let measurement = format!("stamp{i}");
        let before = now_ns();
        let got = server.write("stamps", *path, format!("{measurement} v=1").into_bytes()).await;
        let after = now_ns();
        assert_eq!(got, Decision::Accepted, "{path:?}");
        let rows = server
            .db
            .query(&format!(
                "from(bucket: \"stamps\") |> range(start: 2000-01-01T00:00:00Z, stop: 2100-01-01T00:00:00Z) \
                 |> filter(fn: (r) => r._measurement == \"{measurement}\") \
                 |> map(fn: (r) => ({{r with ns: int(v: r._time)}}))"
            ))
            .await;
        assert_eq!(rows.len(), 1, "{path:?}");
        let stored: i64 = rows[0].get("ns").and_then(|v| v.parse().ok()).expect("ns column");
        let (unit_ns, low, high) = match *path {
            Path::V2(p) => {
                let precision = Precision::from_v2(p).expect("valid");
                let n = precision.nanos_per_unit();
                (n, precision.timestamp_for(before) * n, precision.timestamp_for(after) * n)
            }
            Path::V1(p) => {
                let v1 = V1Precision::parse(p);
                let n = v1.unit().nanos_per_unit();
                (n, v1.timestamp_for(before) * n, v1.timestamp_for(after) * n)
            }
        };
        assert!(
            (low..=high).contains(&stored),
            "{path:?}: influxd stored {stored}, our stamps for the request window are {low}..={high} (unit {unit_ns} ns)"
        );
    }
}

/// `m \=\\="=" 1` parses, but influxd's field iterator reads the value `"` and `StringValue()`
/// panics in a goroutine nothing recovers: the server exits without answering. We refuse it.
async fn the_lone_quote_line_crashes_influxd(server: Server) {
    let line = b"crash \\=\\\\=\"=\" 1".to_vec();
    assert_eq!(ours(&line, Path::V2(Some("ns"))), Decision::NoAnswer, "we flag the line");
    let got = server.write("bodies", Path::V2(Some("ns")), line).await;
    assert_eq!(got, Decision::NoAnswer, "influxd answered instead of crashing");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health = server.http.get(format!("{}/health", server.db.url)).send().await;
    assert!(health.is_err(), "influxd still answers /health after the lone-quote line");
    assert!(server.db.log_tail().contains("slice bounds out of range"), "log: {}", server.db.log_tail());
}
