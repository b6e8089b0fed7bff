//! Issue 12: scheduled work belongs to exactly one database at a time, and the handover is exact.
//!
//! What broke on main: a `--full` seeding copied the source's tasks active, so from that moment
//! both databases ran them. The destination's downsampling task aggregated whatever the lagging
//! destination held, and the runs that fell between the snapshot and the cutover were never
//! computed there from complete data. Now the seeding leaves them inactive and labelled
//! `influx-migration:held` at the destination (an intentionally inactive task stays unlabelled
//! and inactive), and `handover` holds them at the giver, replays at the taker every schedule
//! time it missed, in order, and activates them there.
//!
//! Real influxd on both sides. The live path is stood in for by writing the same raw points into
//! both databases (what the gateway's two stream-writers do); the data are written before any
//! run, so the source's scheduled runs and the destination's replayed runs read the same points
//! and must write the same derived values.

mod migration_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use migration_support::*;
use reqwest::Method;
use serde_json::{Value, json};
use testbed::servers::receiver::Receiver;
use testbed::{FaultProxy, Influxd, InfluxdVersion};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::task::JoinHandle;

const EVERY_S: i64 = 2;
const HELD: &str = "influx-migration:held";

fn task_flux(name: &str, org: &str, measurement: &str) -> String {
    downsample_flux(name, org, &format!("every: {EVERY_S}s"), measurement, "down")
}

async fn ok(server: &Influxd, method: Method, path: &str, body: Option<Value>, want: u16) -> Value {
    let (status, answer) = server.api(method, path, body).await;
    assert_eq!(status, want, "{path}: {answer}");
    answer
}

/// The task named `name`: `(status, labelled held, latestCompleted)`.
async fn task(server: &Influxd, name: &str) -> (String, bool, String) {
    let page = ok(server, Method::GET, &format!("/api/v2/tasks?name={name}"), None, 200).await;
    let t =
        page["tasks"].as_array().and_then(|a| a.first()).unwrap_or_else(|| panic!("no task {name}: {page}"));
    let held = t["labels"].as_array().into_iter().flatten().any(|l| l["name"] == HELD);
    (
        t["status"].as_str().unwrap_or_default().to_string(),
        held,
        t["latestCompleted"].as_str().unwrap_or_default().to_string(),
    )
}

/// `(_time, _value)` of the derived points of `measurement` in `down` within `[start, stop)`.
async fn derived(server: &Influxd, measurement: &str, start: &str, stop: &str) -> Vec<(String, String)> {
    let rows = server
        .query(&format!(
            "from(bucket: \"down\") |> range(start: {start}, stop: {stop}) \
             |> filter(fn: (r) => r._measurement == \"{measurement}\")"
        ))
        .await;
    testbed::flux::time_values(&rows)
}

fn seconds(rfc: &str) -> i64 {
    OffsetDateTime::parse(rfc, &Rfc3339).unwrap_or_else(|e| panic!("{rfc}: {e}")).unix_timestamp()
}

fn rfc(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix).unwrap().format(&Rfc3339).unwrap()
}

/// Raw points every 100 ms over `[from, from + span)` seconds, values that differ point to point.
fn raw_points(from: i64, span: i64, seed: u64) -> String {
    let mut body = String::new();
    let mut x = seed;
    for i in 0..span * 10 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let t = from * 1_000_000_000 + i * 100_000_000;
        body.push_str(&format!("m,host=a v={}.{:03} {t}\n", (x >> 40) % 1000, (x >> 20) % 1000));
    }
    body
}

/// Waits until the task named `name` at `server` has completed a run scheduled after `after`.
async fn ran_after(server: &Influxd, name: &str, after: i64) -> i64 {
    for _ in 0..120 {
        let (_, _, latest) = task(server, name).await;
        if !latest.is_empty() && seconds(&latest) > after {
            return seconds(&latest);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{name} did not run after {} at {}", rfc(after), server.url);
}

/// The check or rule named `name` at `path` (`checks` or `notificationRules`): `(status, held)`.
async fn monitor_item(server: &Influxd, path: &str, name: &str) -> (String, bool, Value) {
    let page = ok(server, Method::GET, &format!("/api/v2/{path}?orgID={}", server.org_id), None, 200).await;
    let item = page[path]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no {path} {name}: {page}"))
        .clone();
    let held = item["labels"].as_array().into_iter().flatten().any(|l| l["name"] == HELD);
    (item["status"].as_str().unwrap_or_default().to_string(), held, item)
}

/// The latest completed run of a check's or rule's task, in Unix seconds.
async fn monitor_latest(server: &Influxd, path: &str, name: &str) -> i64 {
    let (_, _, item) = monitor_item(server, path, name).await;
    let task_id = item["taskID"].as_str().unwrap_or_else(|| panic!("{item}"));
    let t = ok(server, Method::GET, &format!("/api/v2/tasks/{task_id}"), None, 200).await;
    t["latestCompleted"].as_str().map(seconds).unwrap_or(0)
}

/// A threshold check on the raw data, a rule paging on every CRIT status, and the HTTP endpoint
/// it posts to.
async fn make_monitoring(server: &Influxd, receiver: &str) {
    let endpoint = ok(
        server,
        Method::POST,
        "/api/v2/notificationEndpoints",
        Some(json!({"name": "pager", "orgID": server.org_id, "type": "http", "status": "active",
                    "url": receiver, "method": "POST", "authMethod": "none"})),
        201,
    )
    .await;
    let query = "from(bucket: \"raw\")\n  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)\n  \
                 |> filter(fn: (r) => r._measurement == \"m\" and r._field == \"v\")\n  \
                 |> aggregateWindow(every: 2s, fn: max, createEmpty: false)\n  |> yield(name: \"max\")";
    ok(
        server,
        Method::POST,
        "/api/v2/checks",
        Some(json!({"name": "hot", "orgID": server.org_id, "type": "threshold", "status": "active",
                    "every": format!("{EVERY_S}s"), "offset": "0s", "tags": [],
                    "query": {"text": query, "editMode": "advanced",
                              "builderConfig": {"buckets": [], "tags": [], "functions": []}},
                    "statusMessageTemplate": "${r._check_name} is ${r._level}",
                    "thresholds": [{"type": "greater", "value": 990.0, "level": "CRIT", "allValues": false}]})),
        201,
    )
    .await;
    ok(
        server,
        Method::POST,
        "/api/v2/notificationRules",
        Some(json!({"name": "page", "orgID": server.org_id, "type": "http", "status": "active",
                    "endpointID": endpoint["id"], "every": format!("{EVERY_S}s"), "offset": "0s",
                    "runbookLink": "", "tagRules": [],
                    "statusRules": [{"currentLevel": "CRIT", "previousLevel": null}]})),
        201,
    )
    .await;
}

/// Points the destination's copy of the endpoint at its own receiver, so each notification says
/// which database sent it (a rule's task embeds its endpoint, so the rule is written again).
async fn repoint(server: &Influxd, receiver: &str) {
    let page =
        ok(server, Method::GET, &format!("/api/v2/notificationEndpoints?orgID={}", server.org_id), None, 200)
            .await;
    let mut ep = page["notificationEndpoints"][0].clone();
    ep["url"] = json!(receiver);
    let id = ep["id"].as_str().unwrap().to_string();
    ok(server, Method::PUT, &format!("/api/v2/notificationEndpoints/{id}"), Some(ep), 200).await;
    let (_, _, rule) = monitor_item(server, "notificationRules", "page").await;
    let id = rule["id"].as_str().unwrap().to_string();
    ok(server, Method::PUT, &format!("/api/v2/notificationRules/{id}"), Some(rule), 200).await;
}

/// `(incident, status time)` of each notification: the check's name and the data's time, and
/// the time of the status it reports (ns).
fn incidents(receiver: &Receiver) -> Vec<((String, i64), i64)> {
    receiver
        .received()
        .iter()
        .map(|n| {
            let b = &n.body;
            let key = (
                b["_check_name"].as_str().unwrap_or_default().to_string(),
                b["_source_timestamp"].as_i64().unwrap_or(-1),
            );
            (key, b["_status_timestamp"].as_i64().unwrap_or(-1))
        })
        .collect()
}

/// `(check name, _source_timestamp)` of the CRIT statuses in `_monitoring` with `_time` in `[start, stop)`.
async fn crit_statuses(server: &Influxd, start: i64, stop: i64) -> Vec<(String, i64)> {
    let rows = server
        .query(&format!(
            "from(bucket: \"_monitoring\") |> range(start: {}, stop: {}) \
             |> filter(fn: (r) => r._measurement == \"statuses\" and r._level == \"crit\" and r._field == \"_source_timestamp\")",
            rfc(start),
            rfc(stop)
        ))
        .await;
    let mut v: Vec<(String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.get("_check_name").unwrap_or("").to_string(),
                r.get("_value").unwrap_or("-1").parse().unwrap_or(-1),
            )
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// `influx-migration --full` from `src` into `dst`, which must succeed without printing a token.
async fn seed_full(work: &std::path::Path, src: &Influxd, dst: &Influxd) -> Run {
    let args =
        ["--src-host", &src.url, "--dest-host", &dst.url, "--full", "--confirm-full", "--dir-name", "bk"];
    let seed = run(work, &args, &tokens(src, dst)).await;
    seed.expect(0);
    assert_no_token(&seed.all(), &[&src.token, &dst.token]);
    seed
}

/// `verify` of the two servers on their own, up to now, counts and content.
fn verify(src: &Influxd, dst: &Influxd, extra: &[&str]) -> Vec<String> {
    let mut args =
        vec!["verify", "--src-host", &src.url, "--dest-host", &dst.url, "--content", "--settle-seconds", "0"];
    args.extend_from_slice(extra);
    args.into_iter().map(String::from).collect()
}

fn handover(src: &Influxd, dst: &Influxd, to: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["handover", "--src-host", &src.url, "--dest-host", &dst.url, "--to", to];
    args.extend_from_slice(extra);
    args.into_iter().map(String::from).collect()
}

async fn cli(work: &std::path::Path, src: &Influxd, dst: &Influxd, args: &[String]) -> Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run(work, &args, &tokens(src, dst)).await;
    assert_no_token(&run.all(), &[&src.token, &dst.token]);
    run
}

async fn the_destination_takes_scheduled_work_only_at_the_handover_and_replays_what_it_missed(
    version: InfluxdVersion,
) {
    let src = Influxd::start_version(version, "sched-src").await;
    let mut dst = Influxd::start_version(version, "sched-dst").await;
    for b in ["raw", "down"] {
        src.create_bucket(b).await;
    }
    // Raw data from 20 s ago to 3 minutes ahead, so every run of the test reads complete data.
    let start = OffsetDateTime::now_utc().unix_timestamp() - 20;
    src.write_ok("raw", "ns", raw_points(start, 200, 0x2545_f491_4f6c_dd1d)).await;

    let body = |name: &str, measurement: &str, status: &str| json!({"orgID": src.org_id, "flux": task_flux(name, &src.org, measurement), "status": status});
    ok(&src, Method::POST, "/api/v2/tasks", Some(body("downsample", "m_1s", "active")), 201).await;
    // Paused as the UI pauses a task: made, then switched off (influxd runs a task made inactive).
    let paused =
        ok(&src, Method::POST, "/api/v2/tasks", Some(body("paused", "m_paused", "active")), 201).await;
    let paused_id = paused["id"].as_str().unwrap();
    ok(&src, Method::PATCH, &format!("/api/v2/tasks/{paused_id}"), Some(json!({"status": "inactive"})), 200)
        .await;
    let (src_pager, dst_pager) = (Receiver::start().await, Receiver::start().await);
    make_monitoring(&src, &src_pager.url).await;
    let first = ran_after(&src, "downsample", 0).await;
    let mut rule_first = 0;
    while rule_first == 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rule_first = monitor_latest(&src, "notificationRules", "page").await;
    }

    // Seed the destination with everything.
    let work = tempfile::tempdir().unwrap();
    let seed = seed_full(work.path(), &src, &dst).await;
    // A full restore brings the source's users and tokens: the destination answers to them now.
    dst.token = src.token.clone();
    dst.org_id = src.org_id.clone();
    dst.org = src.org.clone();
    assert!(seed.all().contains("handover"), "the seeding says how scheduled work moves: {}", seed.all());

    // The destination holds the copy: inactive, labelled; the paused task is inactive, unlabelled.
    let (status, held, _) = task(&dst, "downsample").await;
    assert_eq!((status.as_str(), held), ("inactive", true), "the destination does not run the task");
    let (status, held, _) = task(&dst, "paused").await;
    assert_eq!((status.as_str(), held), ("inactive", false), "an intentionally inactive task is not held");
    let (status, held, _) = task(&src, "downsample").await;
    assert_eq!((status.as_str(), held), ("active", false), "the source keeps running it");
    for path in ["checks", "notificationRules"] {
        let name = if path == "checks" { "hot" } else { "page" };
        let (status, held, _) = monitor_item(&dst, path, name).await;
        assert_eq!((status.as_str(), held), ("inactive", true), "the destination does not run {path} {name}");
        assert_eq!(monitor_item(&src, path, name).await.0, "active");
    }
    repoint(&dst, &dst_pager.url).await;

    // The source runs on while the destination holds; the destination computes nothing meanwhile.
    let (_, _, dst_latest) = task(&dst, "downsample").await;
    let snapshot = seconds(&dst_latest);
    let later = ran_after(&src, "downsample", snapshot + 3 * EVERY_S).await;
    tokio::time::sleep(Duration::from_secs(EVERY_S as u64 + 1)).await;
    assert!(
        derived(&dst, "m_1s", &rfc(snapshot + 1), &rfc(later + 1)).await.is_empty(),
        "the destination ran a held task"
    );
    // The live path delivers later raw points to both databases.
    let more = raw_points(start + 200, 60, 0x9e37_79b9_7f4a_7c15);
    src.write_ok("raw", "ns", more.clone()).await;
    dst.write_ok("raw", "ns", more).await;

    // What the source's tasks derived since the snapshot is not a difference (nor a write that
    // bypassed the gateway): the destination derives it at the handover. Up to the snapshot the
    // derived points are the same.
    let before = cli(work.path(), &src, &dst, &verify(&src, &dst, &[])).await;
    assert_eq!(before.code, 0, "{}", before.all());
    assert!(
        before
            .all()
            .contains("measurement(s) m_1s are written by the source's tasks, which the destination holds"),
        "{}",
        before.all()
    );

    // The plan changes nothing.
    let plan = cli(work.path(), &src, &dst, &handover(&src, &dst, "destination", &["--dry-run"])).await;
    plan.expect(0);
    assert!(plan.all().contains("downsample"), "{}", plan.all());
    assert_eq!(task(&dst, "downsample").await.0, "inactive");
    assert_eq!(task(&src, "downsample").await.0, "active");

    let moved = cli(work.path(), &src, &dst, &handover(&src, &dst, "destination", &[])).await;
    moved.expect(0);
    let (status, held, hold_point) = task(&src, "downsample").await;
    assert_eq!((status.as_str(), held), ("inactive", true), "the source stopped: {}", moved.all());
    let (status, held, _) = task(&dst, "downsample").await;
    assert_eq!((status.as_str(), held), ("active", false), "the destination runs it: {}", moved.all());
    for server in [&src, &dst] {
        assert_eq!(
            task(server, "paused").await.0,
            "inactive",
            "a paused task stays paused at {}",
            server.url
        );
    }
    for path in ["checks", "notificationRules"] {
        let name = if path == "checks" { "hot" } else { "page" };
        assert_eq!(monitor_item(&src, path, name).await.0, "inactive", "{path} {name} stopped at the source");
        assert_eq!(monitor_item(&dst, path, name).await.0, "active", "{path} {name} runs at the destination");
    }
    let rule_handed = monitor_latest(&src, "notificationRules", "page").await;

    // Value by value, from the source's first run to its last: the destination replayed every
    // run it missed (those that fell while it held the task), from complete data.
    let hold_point = seconds(&hold_point);
    let window = (rfc(first - EVERY_S), rfc(hold_point + 1));
    let at_source = derived(&src, "m_1s", &window.0, &window.1).await;
    let at_destination = derived(&dst, "m_1s", &window.0, &window.1).await;
    assert!(at_source.len() as i64 >= (hold_point - first), "the source derived points: {at_source:?}");
    if at_destination != at_source {
        let q = format!(
            "from(bucket: \"raw\") |> range(start: {}, stop: {}) |> aggregateWindow(every: 1s, fn: count)",
            window.0, window.1
        );
        let counts = |rows: Vec<testbed::flux::FluxRecord>| {
            rows.iter()
                .map(|r| format!("{}={}", r.get("_time").unwrap_or(""), r.get("_value").unwrap_or("")))
                .collect::<Vec<_>>()
        };
        eprintln!("raw per second at the source: {:?}", counts(src.query(&q).await));
        eprintln!("raw per second at the destination: {:?}", counts(dst.query(&q).await));
        let page = ok(&dst, Method::GET, "/api/v2/tasks?name=downsample", None, 200).await;
        let id = page["tasks"][0]["id"].as_str().unwrap().to_string();
        let runs = ok(&dst, Method::GET, &format!("/api/v2/tasks/{id}/runs?limit=100"), None, 200).await;
        let list: Vec<String> = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("{} {} {}", r["scheduledFor"], r["status"], r["requestedAt"]))
            .collect();
        eprintln!("dst runs: {list:?}");
        let page = ok(&src, Method::GET, "/api/v2/tasks?name=downsample", None, 200).await;
        let id = page["tasks"][0]["id"].as_str().unwrap().to_string();
        let runs = ok(&src, Method::GET, &format!("/api/v2/tasks/{id}/runs?limit=100"), None, 200).await;
        let list: Vec<String> = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| format!("{} {}", r["scheduledFor"], r["status"]))
            .collect();
        eprintln!("src runs: {list:?}");
        eprintln!("dst wider: {:?}", derived(&dst, "m_1s", &rfc(first - 30), &window.1).await);
        eprintln!("window {window:?} src {at_source:?}\n dst {at_destination:?}");
    }
    assert_eq!(
        at_destination,
        at_source,
        "derived points over {window:?}; the handover said:\n{}",
        moved.all()
    );
    let after = ran_after(&dst, "downsample", hold_point + EVERY_S).await;
    assert!(
        !derived(&dst, "m_1s", &rfc(hold_point + 1), &rfc(after + 1)).await.is_empty(),
        "the destination goes on deriving after the handover"
    );
    let paused = derived(&dst, "m_paused", &rfc(start - 60), &rfc(after + 60)).await;
    if !paused.is_empty() {
        let (_, _, latest) = task(&dst, "paused").await;
        panic!(
            "the paused task ran at the destination: {paused:?} (its latestCompleted there {latest}); at the source: {:?}",
            derived(&src, "m_paused", &rfc(start - 60), &rfc(after + 60)).await
        );
    }

    let derived_ok = cli(work.path(), &src, &dst, &verify(&src, &dst, &["--derived"])).await;
    assert_eq!(derived_ok.code, 0, "{}", derived_ok.all());
    assert!(
        derived_ok
            .all()
            .contains(&format!("derived buckets (written by the source's tasks): {}/down", src.org)),
        "{}",
        derived_ok.all()
    );
    assert!(derived_ok.all().contains("where the tasks held at the source last ran"), "{}", derived_ok.all());

    // Again: nothing to do, nothing changes.
    let again = cli(work.path(), &src, &dst, &handover(&src, &dst, "destination", &[])).await;
    again.expect(0);
    assert!(again.all().contains("nothing to hand over"), "{}", again.all());
    assert_eq!(task(&src, "downsample").await.0, "inactive");
    assert_eq!(task(&dst, "downsample").await.0, "active");

    // Back to the source: it replays what it missed since it stopped.
    let back = cli(work.path(), &src, &dst, &handover(&src, &dst, "source", &[])).await;
    back.expect(0);
    let (status, held, _) = task(&dst, "downsample").await;
    assert_eq!((status.as_str(), held), ("inactive", true), "{}", back.all());
    let (status, held, _) = task(&src, "downsample").await;
    assert_eq!((status.as_str(), held), ("active", false), "{}", back.all());
    let (_, _, back_point) = task(&dst, "downsample").await;
    let back_point = seconds(&back_point);
    assert!(back_point > hold_point);
    let window = (rfc(first - EVERY_S), rfc(back_point + 1));
    let at_source = derived(&src, "m_1s", &window.0, &window.1).await;
    let at_destination = derived(&dst, "m_1s", &window.0, &window.1).await;
    assert_eq!(at_source, at_destination, "derived points over {window:?} after the hand-back");

    // Every incident paged exactly once, by the database that owned scheduled work then.
    let rule_back = monitor_latest(&dst, "notificationRules", "page").await;
    let rule_last = ran_after_monitor(&src, rule_back + EVERY_S).await;
    let from_source = incidents(&src_pager);
    let from_destination = incidents(&dst_pager);
    let ns = 1_000_000_000;
    for (key, status_at) in &from_destination {
        assert!(
            *status_at >= rule_handed * ns && *status_at < rule_back * ns,
            "the destination paged {key:?} (status at {status_at}) outside its ownership [{rule_handed}, {rule_back})"
        );
    }
    for (key, status_at) in &from_source {
        assert!(
            *status_at < rule_handed * ns || *status_at >= rule_back * ns,
            "the source paged {key:?} (status at {status_at}) while the destination owned scheduled work"
        );
    }
    let mut all: Vec<(String, i64)> =
        from_source.iter().chain(&from_destination).map(|(k, _)| k.clone()).collect();
    all.sort();
    let paged = all.len();
    all.dedup();
    assert_eq!(paged, all.len(), "an incident was paged twice: {from_source:?} {from_destination:?}");
    let expected = crit_statuses(&src, rule_first, rule_last).await;
    assert!(!expected.is_empty(), "the check found no incident to page");
    let mut paged_in_window: Vec<(String, i64)> = from_source
        .iter()
        .chain(&from_destination)
        .filter(|(_, at)| *at >= rule_first * ns && *at < rule_last * ns)
        .map(|(k, _)| k.clone())
        .collect();
    paged_in_window.sort();
    assert_eq!(paged_in_window, expected, "every CRIT status paged once");

    // Once more to the destination; then a derived point missing there cannot pass
    // `verify --derived`.
    cli(work.path(), &src, &dst, &handover(&src, &dst, "destination", &[])).await.expect(0);
    let (code, answer) = dst
        .api(
            Method::POST,
            &format!("/api/v2/delete?org={}&bucket=down", dst.org),
            Some(json!({"start": rfc(first), "stop": rfc(first + 1), "predicate": "_measurement=\"m_1s\""})),
        )
        .await;
    assert_eq!(code, 204, "{answer}");
    let missing = cli(work.path(), &src, &dst, &verify(&src, &dst, &["--derived"])).await;
    assert_eq!(missing.code, 3, "{}", missing.all());
    assert!(missing.all().contains("m_1s"), "{}", missing.all());
}

/// Waits until the source's rule has run at or after `at`; its latest completed run.
async fn ran_after_monitor(server: &Influxd, at: i64) -> i64 {
    for _ in 0..120 {
        let latest = monitor_latest(server, "notificationRules", "page").await;
        if latest >= at {
            return latest;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the rule did not run at {} at {}", rfc(at), server.url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_work_moves_exactly_once_on_2_7_12() {
    the_destination_takes_scheduled_work_only_at_the_handover_and_replays_what_it_missed(
        InfluxdVersion::V2_7,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_work_moves_exactly_once_on_2_9_1() {
    the_destination_takes_scheduled_work_only_at_the_handover_and_replays_what_it_missed(
        InfluxdVersion::V2_9,
    )
    .await;
}

/// influxd schedules a task made with `"status": "inactive"` anyway (its coordinator's
/// `TaskCreated` schedules every new task, and an update from inactive to inactive changes
/// nothing), so a rebuild that made the destination's copies inactive left them running there,
/// shown as inactive. What broke: with a 2.9.1 source and a 2.7.12 destination (the rebuild
/// path), the destination ran the held task and the paused one on their schedules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_destination_runs_none_of_the_tasks_it_holds() {
    let src = Influxd::start_version(InfluxdVersion::V2_9, "rebuild-src").await;
    let dst = Influxd::start_version(InfluxdVersion::V2_7, "rebuild-dst").await;
    for b in ["raw", "down"] {
        src.create_bucket(b).await;
    }
    let start = OffsetDateTime::now_utc().unix_timestamp() - 20;
    src.write_ok("raw", "ns", raw_points(start, 120, 7)).await;
    for (name, measurement, status) in [("downsample", "m_1s", "active"), ("paused", "m_paused", "active")] {
        let body =
            json!({"orgID": src.org_id, "flux": task_flux(name, &src.org, measurement), "status": status});
        let made = ok(&src, Method::POST, "/api/v2/tasks", Some(body), 201).await;
        if name == "paused" {
            let id = made["id"].as_str().unwrap();
            ok(&src, Method::PATCH, &format!("/api/v2/tasks/{id}"), Some(json!({"status": "inactive"})), 200)
                .await;
        }
    }
    let work = tempfile::tempdir().unwrap();
    seed_full(work.path(), &src, &dst).await;
    // What the source's own runs had derived by then (a slow machine lets a run happen before
    // the backup, and the seeding then copies its points): the destination may hold these.
    let derived_at_seeding: std::collections::BTreeSet<String> = down_points(&src).await;
    assert_eq!(task(&dst, "downsample").await.0, "inactive");
    assert_eq!(task(&dst, "paused").await.0, "inactive");
    // Three schedule ticks.
    tokio::time::sleep(Duration::from_secs(3 * EVERY_S as u64 + 1)).await;
    for name in ["downsample", "paused"] {
        let page = ok(&dst, Method::GET, &format!("/api/v2/tasks?name={name}"), None, 200).await;
        let id = page["tasks"][0]["id"].as_str().unwrap().to_string();
        let runs = ok(&dst, Method::GET, &format!("/api/v2/tasks/{id}/runs"), None, 200).await;
        assert_eq!(runs["runs"], json!([]), "the destination ran {name}, which it holds inactive");
    }
    // Every derived point at the destination was copied by the seeding; none was computed there.
    let computed: Vec<String> = down_points(&dst).await.difference(&derived_at_seeding).cloned().collect();
    assert!(computed.is_empty(), "the destination derived points the seeding did not copy: {computed:?}");
}

/// The derived points of bucket `down` at `db`, as `measurement time value`.
async fn down_points(db: &Influxd) -> std::collections::BTreeSet<String> {
    db.query("from(bucket: \"down\") |> range(start: -1h, stop: 1h)")
        .await
        .iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r.get("_measurement").unwrap_or(""),
                r.get("_time").unwrap_or(""),
                r.get("_value").unwrap_or("")
            )
        })
        .collect()
}

/// The names of the tasks of `server`'s org, sorted.
async fn task_names(server: &Influxd) -> Vec<String> {
    let page = ok(server, Method::GET, &format!("/api/v2/tasks?orgID={}", server.org_id), None, 200).await;
    let mut names: Vec<String> = page["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

/// Issue 12, bucket-level migrations: what broke on main is that a migration of some buckets
/// moved no scheduled work at all, so after the cutover the downsampling of a migrated bucket
/// and its alerts ran nowhere but at the source. Now the work that uses only migrated buckets
/// moves (held until the handover), the rest is listed and left alone at the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_migration_moves_only_the_work_of_its_buckets_and_lists_the_rest() {
    let src = Influxd::start_version(InfluxdVersion::V2_7, "bw-src").await;
    let dst = Influxd::start_version(InfluxdVersion::V2_7, "bw-dst").await;
    for b in ["raw", "down", "other"] {
        src.create_bucket(b).await;
    }
    let start = OffsetDateTime::now_utc().unix_timestamp() - 20;
    src.write_ok("raw", "ns", raw_points(start, 60, 11)).await;
    let elsewhere = format!(
        "option task = {{name: \"elsewhere\", every: {EVERY_S}s}}\n\
         from(bucket: \"other\") |> range(start: -task.every) |> to(bucket: \"other\", org: \"{}\")\n",
        src.org
    );
    for flux in [task_flux("downsample", &src.org, "m_1s"), elsewhere] {
        let body = json!({"orgID": src.org_id, "flux": flux, "status": "active"});
        ok(&src, Method::POST, "/api/v2/tasks", Some(body), 201).await;
    }
    let pager = Receiver::start().await;
    make_monitoring(&src, &pager.url).await;

    let migrate = |bucket: &'static str, dir: &'static str| {
        vec!["--src-host", &src.url, "--dest-host", &dst.url, "--src-bucket", bucket, "--dir-name", dir]
            .into_iter()
            .map(String::from)
            .collect::<Vec<String>>()
    };
    let work = tempfile::tempdir().unwrap();
    // raw first: the check on raw moves with its rule and endpoint; the downsampling task also
    // writes to down, which the destination does not have yet; elsewhere uses no migrated bucket.
    let first = cli(work.path(), &src, &dst, &migrate("raw", "bk-raw")).await;
    first.expect(0);
    let said = first.all();
    for line in [
        "left at the source, not migrated: task \"downsample\" (org test-org): it also uses bucket(s) down",
        "left at the source, not migrated: task \"elsewhere\" (org test-org): it uses other, none of the buckets",
        "check \"hot\" (org test-org) is at the destination, held inactive",
        "notification rule \"page\" (org test-org) is at the destination, held inactive",
    ] {
        assert!(said.contains(line), "{line:?} not in:\n{said}");
    }
    for path in ["checks", "notificationRules"] {
        let name = if path == "checks" { "hot" } else { "page" };
        let (status, held, _) = monitor_item(&dst, path, name).await;
        assert_eq!((status.as_str(), held), ("inactive", true), "{path} {name} held at the destination");
    }
    assert!(task_names(&dst).await.is_empty(), "no task moved with raw alone");

    // down second: now the downsampling task has both its buckets at the destination.
    let second = cli(work.path(), &src, &dst, &migrate("down", "bk-down")).await;
    second.expect(0);
    assert!(
        second.all().contains("task \"downsample\" (org test-org) is at the destination, held inactive"),
        "{}",
        second.all()
    );
    assert!(second.all().contains("task \"elsewhere\" (org test-org): it uses other"), "{}", second.all());
    assert_eq!(task_names(&dst).await, vec!["downsample"], "elsewhere is left alone");
    let (status, held, _) = task(&dst, "downsample").await;
    assert_eq!((status.as_str(), held), ("inactive", true));
    assert_eq!(monitor_item(&dst, "checks", "hot").await.0, "inactive", "the second run made nothing twice");
    let page = ok(&dst, Method::GET, &format!("/api/v2/checks?orgID={}", dst.org_id), None, 200).await;
    assert_eq!(page["checks"].as_array().map(Vec::len), Some(1), "{page}");

    // The handover moves what moved and leaves elsewhere running at the source.
    let moved = cli(work.path(), &src, &dst, &handover(&src, &dst, "destination", &[])).await;
    moved.expect(0);
    assert_eq!(task(&src, "downsample").await.0, "inactive", "{}", moved.all());
    assert_eq!(task(&dst, "downsample").await.0, "active", "{}", moved.all());
    assert_eq!(task(&src, "elsewhere").await.0, "active", "left alone: {}", moved.all());
    for path in ["checks", "notificationRules"] {
        let name = if path == "checks" { "hot" } else { "page" };
        assert_eq!(monitor_item(&src, path, name).await.0, "inactive");
        assert_eq!(monitor_item(&dst, path, name).await.0, "active");
    }
    assert!(moved.all().contains("elsewhere"), "the handover lists what it leaves: {}", moved.all());
}

/// What broke in CI (stop 35): influxd 2.9.1 answered the handover's poll of a replayed run,
/// `GET /api/v2/tasks/{id}/runs/{run}`, with 500 "a panic has occurred ... nil pointer
/// dereference" (its by-ID reader of the run log panics on a record it cannot parse), and the
/// handover stopped halfway with the task active at neither database's schedule replayed. A
/// proxy in front of the real destination answers the first replayed runs' reads that way; the
/// handover must find how those runs ended and finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_run_influxd_panics_reading_back_does_not_stop_the_handover() {
    let src = Influxd::start_version(InfluxdVersion::V2_7, "panic-src").await;
    let mut dst = Influxd::start_version(InfluxdVersion::V2_7, "panic-dst").await;
    for b in ["raw", "down"] {
        src.create_bucket(b).await;
    }
    let start = OffsetDateTime::now_utc().unix_timestamp() - 20;
    src.write_ok("raw", "ns", raw_points(start, 200, 0x2545_f491_4f6c_dd1d)).await;
    let flux = task_flux("downsample", &src.org, "m_1s");
    ok(
        &src,
        Method::POST,
        "/api/v2/tasks",
        Some(json!({"orgID": src.org_id, "flux": flux, "status": "active"})),
        201,
    )
    .await;
    ran_after(&src, "downsample", 0).await;
    let work = tempfile::tempdir().unwrap();
    seed_full(work.path(), &src, &dst).await;
    dst.token = src.token.clone();
    dst.org_id = src.org_id.clone();
    dst.org = src.org.clone();
    // The source runs on after the snapshot: the destination has runs to replay.
    let (_, _, dst_latest) = task(&dst, "downsample").await;
    ran_after(&src, "downsample", seconds(&dst_latest) + 2 * EVERY_S).await;

    let page = ok(&dst, Method::GET, "/api/v2/tasks?name=downsample", None, 200).await;
    let task_id = page["tasks"][0]["id"].as_str().expect("the destination holds the task").to_string();
    let proxy = FaultProxy::start(&dst.url).await;
    proxy.panic_next_gets(&format!("/api/v2/tasks/{task_id}/runs/"), 3);
    let args: Vec<String> =
        ["handover", "--src-host", &src.url, "--dest-host", &proxy.url, "--to", "destination"]
            .into_iter()
            .map(String::from)
            .collect();
    let moved = cli(work.path(), &src, &dst, &args).await;
    moved.expect(0);
    assert_eq!(proxy.stats().failed, 3, "the replayed runs' reads met the panics: {}", moved.all());
    assert!(moved.all().contains("replayed, 0 failed"), "every replayed run succeeded: {}", moved.all());
    let (status, held, _) = task(&dst, "downsample").await;
    assert_eq!((status.as_str(), held), ("active", false), "the destination runs it: {}", moved.all());
    assert_eq!(task(&src, "downsample").await.0, "inactive", "{}", moved.all());
    // What the replays derived is what the source derived for the same times.
    let (_, _, src_latest) = task(&src, "downsample").await;
    let window = (rfc(start), rfc(seconds(&src_latest) + 1));
    assert_eq!(
        derived(&dst, "m_1s", &window.0, &window.1).await,
        derived(&src, "m_1s", &window.0, &window.1).await,
        "derived points over {window:?}; the handover said:\n{}",
        moved.all()
    );
}

/// Raw points written every 100 ms: to the source at once, to the destination `delay` later (a
/// stream writer that lags), each with the time it was made. Stops, having delivered every
/// point to both, when `stop` is set.
fn feed(
    src: &Influxd,
    dst_token: &str,
    dst_url: &str,
    delay: Duration,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let (src_url, src_token, org) = (src.url.clone(), src.token.clone(), src.org.clone());
    let (dst_url, dst_token) = (dst_url.to_string(), dst_token.to_string());
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let write = |url: String, token: String, body: String| {
            let (http, org) = (http.clone(), org.clone());
            async move {
                let status = http
                    .post(format!("{url}/api/v2/write"))
                    .query(&[("org", org.as_str()), ("bucket", "raw"), ("precision", "ns")])
                    .header("Authorization", format!("Token {token}"))
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16());
                assert!(matches!(status, Ok(204)), "write to {url}: {status:?}");
            }
        };
        let mut late: std::collections::VecDeque<(std::time::Instant, String)> = Default::default();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            if !stopping {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let t = OffsetDateTime::now_utc().unix_timestamp_nanos();
                let line = format!("m,host=a v={}.{:03} {t}\n", (x >> 40) % 1000, (x >> 20) % 1000);
                write(src_url.clone(), src_token.clone(), line.clone()).await;
                late.push_back((std::time::Instant::now() + delay, line));
            }
            while late.front().is_some_and(|(due, _)| stopping || *due <= std::time::Instant::now()) {
                let (_, line) = late.pop_front().unwrap();
                write(dst_url.clone(), dst_token.clone(), line).await;
            }
            if stopping {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Issue 12: a run replayed at the taker computes what the scheduled run would have only if it
/// reads no earlier than that run would have: schedule time + the task's `offset`, which is how
/// an operator gives late points time to arrive (through the stream, the destination gets them
/// late). The handover starts its replays at once, and replays the times up to the taker's
/// `latestCompleted` after activation; influxd sets that to the activation time less the offset
/// (measured here: with a 3 s offset, activated at about :46, the replays ended at :42), and its
/// scheduler runs the later times at time + offset. This keeps that true: points 1.5 s late
/// are all in every 1 s mean the destination derives around the handover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_run_waits_for_the_tasks_offset_so_points_still_on_the_way_are_in() {
    let src = Influxd::start_version(InfluxdVersion::V2_7, "offset-src").await;
    let mut dst = Influxd::start_version(InfluxdVersion::V2_7, "offset-dst").await;
    for b in ["raw", "down"] {
        src.create_bucket(b).await;
    }
    let flux = downsample_flux("late", &src.org, "every: 2s, offset: 3s", "late_1s", "down");
    ok(
        &src,
        Method::POST,
        "/api/v2/tasks",
        Some(json!({"orgID": src.org_id, "flux": flux, "status": "active"})),
        201,
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    seed_full(work.path(), &src, &dst).await;
    dst.token = src.token.clone();
    dst.org_id = src.org_id.clone();
    dst.org = src.org.clone();
    let start = OffsetDateTime::now_utc().unix_timestamp();

    // The destination receives every point 1.5 s late, well within the task's 3 s offset.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = feed(&src, &dst.token, &dst.url, Duration::from_millis(1500), stop.clone());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let moved = cli(work.path(), &src, &dst, &handover(&src, &dst, "destination", &[])).await;
    moved.expect(0);
    // The destination goes on running it on schedule; then every point is delivered.
    let end = ran_after(&dst, "late", OffsetDateTime::now_utc().unix_timestamp() + 2).await;
    stop.store(true, Ordering::SeqCst);
    feeder.await.unwrap();

    // Every 1 s mean the destination holds, from before the handover to its last run, is the mean
    // of the points both databases now hold.
    let from = start - start.rem_euclid(2) + 2;
    let means = src
        .query(&format!(
            "from(bucket: \"raw\") |> range(start: {}, stop: {}) |> filter(fn: (r) => r._measurement == \"m\") \
             |> aggregateWindow(every: 1s, fn: mean, createEmpty: false)",
            rfc(from),
            rfc(end)
        ))
        .await;
    let expected = testbed::flux::time_values(&means);
    let got = derived(&dst, "late_1s", &rfc(from + 1), &rfc(end + 1)).await;
    assert!(expected.len() as i64 >= end - from - 1, "points every 100 ms: {expected:?}");
    assert_eq!(
        got,
        expected,
        "derived at the destination over ({}, {}]; the handover said:\n{}",
        rfc(from),
        rfc(end),
        moved.all()
    );
}
