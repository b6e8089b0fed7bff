//! `verify` cannot pass on different data (issue 13), on two real influxd.
//!
//! What broke on main, each kept as a case: counts were equal, so verify passed (exit 0), when
//! - one value had changed at the destination;
//! - one point was missing at the destination and another, extra, was there instead;
//! - a field had another type at the destination (`3i` for `3`).
//!
//! Each is now found, with the window that holds it, and verify passes once the destination is
//! made right again. And a measurement whose name holds `${` is compared too (issue 31).

use std::process::Command;

use testbed::Influxd;
use testbed::stack::lambda::workspace_binary;

/// Seconds of the first point.
const T0: u64 = 1_764_547_200;

/// `n` points of `m`, one per second from T0, as line protocol (seconds).
fn points(n: u64) -> Vec<String> {
    (0..n).map(|i| format!("m,host=h{} v={}.5,n={i}i {}", i % 3, i * 7, T0 + i)).collect()
}

/// `influx-migration verify --content` between `src` and `dst` over the whole data: (exit code,
/// stdout and stderr).
fn verify(src: &Influxd, dst: &Influxd) -> (i32, String) {
    let out = Command::new(workspace_binary("influx-migration"))
        .args(["verify", "--content", "--src-host", &src.url, "--dest-host", &dst.url])
        .args(["--stop", "2030-01-01T00:00:00Z"])
        .env_remove("LIVE_STACK")
        .env("INFLUX_SRC_TOKEN", &src.token)
        .env("INFLUX_DEST_TOKEN", &dst.token)
        .output()
        .expect("run influx-migration verify");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// The same without `--content`: counts only.
fn counts_only(src: &Influxd, dst: &Influxd) -> (i32, String) {
    let out = Command::new(workspace_binary("influx-migration"))
        .args(["verify", "--src-host", &src.url, "--dest-host", &dst.url, "--stop", "2030-01-01T00:00:00Z"])
        .env_remove("LIVE_STACK")
        .env("INFLUX_SRC_TOKEN", &src.token)
        .env("INFLUX_DEST_TOKEN", &dst.token)
        .output()
        .expect("run influx-migration verify");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn rfc3339(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Half a second after `secs` (a delete's stop that takes only the point at `secs`).
fn half_past(secs: u64) -> String {
    rfc3339(secs).replace('Z', ".5Z")
}

/// The differing window the report names holds `at` (seconds) and is at most 1 s wide.
fn assert_window_names(text: &str, at: u64, what: &str) {
    let line = text
        .lines()
        .find(|l| l.contains(" .. ") && l.contains("at the source"))
        .unwrap_or_else(|| panic!("{what}: no differing window named:\n{text}"));
    let (range, _) = line.trim().split_once(": ").expect("window: counts");
    let (a, b) = range.split_once(" .. ").expect("start .. stop");
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("{what}: {s:?}: {e}"))
            .unix_timestamp_nanos()
    };
    let (a, b) = (parse(a), parse(b));
    let t = i128::from(at) * 1_000_000_000;
    assert!(a <= t && t < b, "{what}: window {range} does not hold {}", rfc3339(at));
    assert!(b - a <= 1_000_000_000, "{what}: window {range} is wider than 1 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_what_counts_cannot_and_names_the_window() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    let all = points(600);
    src.write_ok(&src.bucket, "s", all.join("\n")).await;
    dst.write_ok(&dst.bucket, "s", all.join("\n")).await;
    let (code, text) = verify(&src, &dst);
    assert_eq!(code, 0, "identical data verifies clean:\n{text}");

    // 1. One value changed at the destination (same point, same count).
    dst.write_ok(&dst.bucket, "s", format!("m,host=h1 v=999.5 {}", T0 + 100)).await;
    let (code, text) = verify(&src, &dst);
    assert_eq!(code, 3, "a changed value is a difference:\n{text}");
    let (code, counted) = counts_only(&src, &dst);
    assert_eq!(code, 0, "counting alone cannot see it (why --content exists):\n{counted}");
    assert!(text.contains("DIFFERS"), "{text}");
    assert_window_names(&text, T0 + 100, "changed value");
    dst.write_ok(&dst.bucket, "s", all[100].clone()).await;
    let (code, text) = verify(&src, &dst);
    assert_eq!(code, 0, "made right, clean again:\n{text}");

    // 2. One point missing, another extra, in the same measurement (the same count).
    let gone = &all[250];
    let (s, body) = dst
        .api(
            reqwest::Method::POST,
            &format!("/api/v2/delete?org={}&bucket={}", dst.org, dst.bucket),
            Some(serde_json::json!({
                "start": rfc3339(T0 + 250), "stop": half_past(T0 + 250),
                "predicate": "_measurement=\"m\" and host=\"h1\""
            })),
        )
        .await;
    assert_eq!(s, 204, "delete: {body}");
    dst.write_ok(&dst.bucket, "s", format!("m,host=h1 v=1750.5,n=250i {}", T0 + 700)).await;
    let (code, text) = verify(&src, &dst);
    assert_eq!(code, 3, "a missing point matched by an extra one is a difference:\n{text}");
    assert!(text.contains("at the source, 0 at the destination"), "the missing one: {text}");
    assert!(text.contains("0 at the source, 2 at the destination"), "the extra one: {text}");
    dst.write_ok(&dst.bucket, "s", gone.clone()).await;
    let (s, body) = dst
        .api(
            reqwest::Method::POST,
            &format!("/api/v2/delete?org={}&bucket={}", dst.org, dst.bucket),
            Some(serde_json::json!({"start": rfc3339(T0 + 700), "stop": half_past(T0 + 700), "predicate": "_measurement=\"m\""})),
        )
        .await;
    assert_eq!(s, 204, "delete: {body}");
    let (code, text) = verify(&src, &dst);
    assert_eq!(code, 0, "made right, clean again:\n{text}");

    // 3. A field of another type at the destination: `w` a float where the source has an
    //    integer (a new field at both ends, so each influxd takes the type it is given).
    src.write_ok(&src.bucket, "s", format!("m,host=typed w=3i {}", T0 + 400)).await;
    dst.write_ok(&dst.bucket, "s", format!("m,host=typed w=3 {}", T0 + 400)).await;
    let (code, text) = verify(&src, &dst);
    assert_eq!(code, 3, "a value of another type is a difference:\n{text}");
    assert_window_names(&text, T0 + 400, "field type");
}

/// Regression (issue 31): Flux string literals interpolate `${…}`, and the measurement's name
/// went into the content queries with only `\` and `"` escaped, so a measurement named with
/// `${` made `verify --content` (and `repair`) fail with a Flux error instead of comparing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_measurement_named_with_a_flux_interpolation_is_compared_like_any_other() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    let lines: Vec<String> = (0..20).map(|i| format!("cost${{x}},host=h v={i}.5 {}", T0 + i)).collect();
    src.write_ok(&src.bucket, "s", lines.join("\n")).await;
    dst.write_ok(&dst.bucket, "s", lines.join("\n")).await;
    let (code, text) = verify(&src, &dst);
    assert_eq!(code, 0, "identical data verifies clean:\n{text}");
    assert!(text.contains("cost${x}"), "the measurement is in the table:\n{text}");

    dst.write_ok(&dst.bucket, "s", format!("cost${{x}},host=h v=999.5 {}", T0 + 7)).await;
    let (code, text) = verify(&src, &dst);
    assert_eq!(code, 3, "a changed value is a difference:\n{text}");
    assert_window_names(&text, T0 + 7, "changed value in cost${x}");
}
