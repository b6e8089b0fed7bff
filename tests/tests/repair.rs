//! `repair` makes the windows `verify --content` names right (issue 13), on two real influxd.
//!
//! Each difference the verify tests find is made here at the destination — a changed value; a
//! missing point with an extra one in the same measurement; a field of another type; a field
//! only the destination has — then `repair` runs: a dry run changes nothing and exits 3, a repair
//! without `--delete-extra` copies what it can and lists what only the destination holds (exit
//! 3), one with it leaves both sides equal value by value (exit 0), and a second run finds
//! nothing. `--from destination` repairs the source the same way.

use std::process::Command;

use testbed::Influxd;
use testbed::stack::lambda::workspace_binary;

/// Seconds of the first point.
const T0: u64 = 1_764_547_200;

fn points(n: u64) -> Vec<String> {
    (0..n).map(|i| format!("m,host=h{} v={}.5,n={i}i {}", i % 3, i * 7, T0 + i)).collect()
}

/// Runs `influx-migration <args>` against the two servers, up to 2030: (exit code, stdout and
/// stderr).
fn cli(src: &Influxd, dst: &Influxd, args: &[&str]) -> (i32, String) {
    run(src, dst, args, &["--stop", "2030-01-01T00:00:00Z"])
}

/// Runs `influx-migration <args> <window>` against the two servers.
fn run(src: &Influxd, dst: &Influxd, args: &[&str], window: &[&str]) -> (i32, String) {
    let out = Command::new(workspace_binary("influx-migration"))
        .args(args)
        .args(["--src-host", &src.url, "--dest-host", &dst.url])
        .args(window)
        .env_remove("LIVE_STACK")
        .env("INFLUX_SRC_TOKEN", &src.token)
        .env("INFLUX_DEST_TOKEN", &dst.token)
        .output()
        .expect("run influx-migration");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn rfc3339(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Deletes the points of `predicate` at exactly `secs` in `db`'s bucket.
async fn delete_at(db: &Influxd, secs: u64, predicate: &str) {
    let (s, body) = db
        .api(
            reqwest::Method::POST,
            &format!("/api/v2/delete?org={}&bucket={}", db.org, db.bucket),
            Some(serde_json::json!({"start": rfc3339(secs), "stop": rfc3339(secs), "predicate": predicate})),
        )
        .await;
    assert_eq!(s, 204, "delete: {body}");
}

/// Both buckets hold the same points, value by value and type by type.
async fn assert_same(src: &Influxd, dst: &Influxd, what: &str) {
    let (a, b) = tokio::join!(src.dump(&src.bucket), dst.dump(&dst.bucket));
    let a: Vec<_> = a.iter().map(|r| r.point()).collect();
    let b: Vec<_> = b.iter().map(|r| r.point()).collect();
    assert_eq!(a.len(), b.len(), "{what}: {} values at the source, {} at the destination", a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_makes_every_differing_window_right_and_a_second_run_finds_nothing() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    let all = points(600);
    src.write_ok(&src.bucket, "s", all.join("\n")).await;
    dst.write_ok(&dst.bucket, "s", all.join("\n")).await;
    // A field that exists in both with one type, so each influxd accepts the other type below.
    src.write_ok(&src.bucket, "s", format!("m,host=typed w=3i {}", T0 + 400)).await;

    // The differences: a changed value; a missing point and an extra one (same count); a value
    // of another type; a field only the destination's point has.
    dst.write_ok(&dst.bucket, "s", format!("m,host=h1 v=999.5 {}", T0 + 100)).await;
    delete_at(&dst, T0 + 250, "_measurement=\"m\" AND host=\"h1\"").await;
    dst.write_ok(&dst.bucket, "s", format!("m,host=h1 v=1750.5,n=250i {}", T0 + 700)).await;
    dst.write_ok(&dst.bucket, "s", format!("m,host=typed w=3 {}", T0 + 400)).await;
    dst.write_ok(&dst.bucket, "s", format!("m,host=h2 extra=1i {}", T0 + 500)).await;

    let (code, text) = cli(&src, &dst, &["verify", "--content"]);
    assert_eq!(code, 3, "verify sees the differences:\n{text}");

    // A dry run prints the plan and changes nothing.
    let before = dst.dump(&dst.bucket).await;
    let (code, text) = cli(&src, &dst, &["repair", "--dry-run", "--delete-extra"]);
    assert_eq!(code, 3, "a dry run with something to do exits 3:\n{text}");
    assert!(text.contains("would write") && text.contains("would delete"), "{text}");
    assert!(
        text.contains(&format!("m,host=h1 n=250i,v=1750.5 {}", (T0 + 700) * 1_000_000_000))
            || text.contains(&format!("m,host=h1 v=1750.5 {}", (T0 + 700) * 1_000_000_000)),
        "the extra point is printed: {text}"
    );
    assert_eq!(dst.dump(&dst.bucket).await, before, "a dry run changed the destination");

    // Without --delete-extra: what can be copied is, what only the destination holds is listed.
    let (code, text) = cli(&src, &dst, &["repair"]);
    assert_eq!(code, 3, "values only the destination holds are left:\n{text}");
    assert!(text.contains("pass --delete-extra"), "{text}");
    assert!(
        text.contains(&format!("m,host=typed w=3 {}", (T0 + 400) * 1_000_000_000)),
        "the other type is listed: {text}"
    );
    assert!(
        text.contains(&format!("m,host=h2 extra=1i {}", (T0 + 500) * 1_000_000_000)),
        "the extra field is listed: {text}"
    );
    let fixed = dst.query(&format!(
        "from(bucket: \"{}\") |> range(start: {}, stop: {}) |> filter(fn: (r) => r.host == \"h1\" and r._field == \"v\")",
        dst.bucket, rfc3339(T0 + 100), rfc3339(T0 + 101)
    )).await;
    assert_eq!(fixed.len(), 1);
    assert_eq!(fixed[0].get("_value"), Some("700.5"), "the changed value is the source's again");
    let back = dst.query(&format!(
        "from(bucket: \"{}\") |> range(start: {}, stop: {}) |> filter(fn: (r) => r._measurement == \"m\")",
        dst.bucket, rfc3339(T0 + 250), rfc3339(T0 + 251)
    )).await;
    assert_eq!(back.len(), 2, "the missing point's two fields are back: {back:?}");

    // With --delete-extra: the extra point, the extra field and the other type go; equal.
    let (code, text) = cli(&src, &dst, &["repair", "--delete-extra"]);
    assert_eq!(code, 0, "repaired:\n{text}");
    assert!(text.contains("now matches"), "{text}");
    assert_same(&src, &dst, "after repair --delete-extra").await;
    let (code, text) = cli(&src, &dst, &["verify", "--content"]);
    assert_eq!(code, 0, "verify passes after the repair:\n{text}");
    let (code, text) = cli(&src, &dst, &["repair", "--delete-extra"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("nothing to repair"), "a second run finds nothing: {text}");

    // The other way: after a rollback the destination is right and the source is repaired.
    dst.write_ok(&dst.bucket, "s", format!("m,host=h0 v=1.25 {}", T0 + 900)).await;
    let (code, text) = cli(&src, &dst, &["repair", "--from", "destination"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("value(s) to the source"), "{text}");
    assert_same(&src, &dst, "after repair --from destination").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_of_one_series_that_also_takes_another_writes_that_one_back() {
    // InfluxDB deletes by predicate: `host="a"` also matches `host=a,rack=r1` at that instant.
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    let shared = format!("m,host=a,rack=r1 v=4 {T0}\nm,host=b v=5 {T0}");
    src.write_ok(&src.bucket, "s", shared.clone()).await;
    dst.write_ok(&dst.bucket, "s", format!("{shared}\nm,host=a v=1 {T0}")).await;
    let (code, text) = cli(&src, &dst, &["repair", "--delete-extra"]);
    assert_eq!(code, 0, "{text}");
    assert_same(&src, &dst, "the neighbour the delete took is back").await;
}

/// Runs `influx-migration <args>` against the two servers over `[start, stop)`.
fn cli_over(src: &Influxd, dst: &Influxd, args: &[&str], start: u64, stop: u64) -> (i32, String) {
    run(src, dst, args, &["--start", &rfc3339(start), "--stop", &rfc3339(stop)])
}

/// A field of another type makes `repair --delete-extra` delete the measurement over its whole
/// shard (InfluxDB keeps a field's type per shard, a point delete cannot change it) and copy it
/// again from the reference. On main the copy covered the whole shard (up to 7 days) too, past
/// the compared window: what only the repaired side held outside it — points replayed to it and
/// not yet to the reference, past the replay bound — was deleted for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_rewritten_for_a_type_conflict_keeps_what_the_target_holds_outside_the_window() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    let all = points(300);
    src.write_ok(&src.bucket, "s", all.join("\n")).await;
    dst.write_ok(&dst.bucket, "s", all.join("\n")).await;
    src.write_ok(&src.bucket, "s", format!("m,host=typed w=3i {}", T0 + 100)).await;
    dst.write_ok(&dst.bucket, "s", format!("m,host=typed w=3 {}", T0 + 100)).await;
    // Outside the compared window [T0+60, T0+1000), in the same shard, only at the destination:
    // one before the window, three after it (the destination's writer is ahead of the source's).
    let outside = [format!("m,host=early v=0.25 {}", T0 + 30)]
        .into_iter()
        .chain((0..3).map(|i| format!("m,host=late v={i}.75,n={i}i {}", T0 + 2000 + i)));
    let outside: Vec<String> = outside.collect();
    dst.write_ok(&dst.bucket, "s", outside.join("\n")).await;
    let only_outside = |rows: &[testbed::flux::FluxRecord]| -> Vec<String> {
        rows.iter()
            .filter(|r| matches!(r.get("host"), Some("early") | Some("late")))
            .map(|r| format!("{:?}", r.point()))
            .collect()
    };
    let before = only_outside(&dst.dump(&dst.bucket).await);
    assert_eq!(before.len(), 1 + 3 * 2, "the destination's own values outside the window");

    let (code, text) = cli_over(&src, &dst, &["repair", "--delete-extra"], T0 + 60, T0 + 1000);
    assert_eq!(code, 0, "repaired:\n{text}");
    assert!(text.contains("another type"), "the shard rewrite is named:\n{text}");
    let after = only_outside(&dst.dump(&dst.bucket).await);
    assert_eq!(
        after, before,
        "what the destination held outside the compared window is still there:\n{text}"
    );
    let (code, text) = cli_over(&src, &dst, &["verify", "--content"], T0 + 60, T0 + 1000);
    assert_eq!(code, 0, "the window matches:\n{text}");
    let typed = dst
        .query(&format!(
            "from(bucket: \"{}\") |> range(start: {}, stop: {}) |> filter(fn: (r) => r.host == \"typed\")",
            dst.bucket,
            rfc3339(T0 + 100),
            rfc3339(T0 + 101)
        ))
        .await;
    assert_eq!(typed.len(), 1);
    assert_eq!(typed[0].get("_value"), Some("3"), "the source's integer: {typed:?}");
}
