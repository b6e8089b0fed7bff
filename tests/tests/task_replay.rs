//! What issue 12's handover of scheduled work rests on, proved on real influxd 2.7.12 and 2.9.1:
//! a task run started by hand with a scheduled time (`POST /api/v2/tasks/{id}/runs` with
//! `scheduledFor`) computes exactly what the scheduled run at that time computed; and influxd
//! refuses to run an inactive task by hand (400 "inactive task"), so a handover activates a task
//! before replaying the runs it missed.
//!
//! Why it holds (influxd `task/backend/executor/executor.go`): a run's Flux `now()` is its
//! `scheduledFor`, for scheduled and manual runs alike, so `range(start: -task.every)` reads the
//! same window. The test does not take that on trust: a downsampling task runs on schedule into
//! one bucket, then a copy writing to another bucket, made afterwards (so its own schedule
//! starts after those runs), is run by hand for each of the scheduled runs' times, and the two
//! outputs are compared value by value. The raw data is all
//! written before any run (timestamps up to a minute ahead), so both read the same points.

mod migration_support;

use migration_support::downsample_flux;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use testbed::{Influxd, InfluxdVersion};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const EVERY_S: i64 = 2;

fn task_flux(name: &str, org: &str, out: &str) -> String {
    downsample_flux(name, org, &format!("every: {EVERY_S}s"), "m_1s", out)
}

async fn ok(server: &Influxd, method: Method, path: &str, body: Option<Value>, want: u16) -> Value {
    let (status, answer) = server.api(method, path, body).await;
    assert_eq!(status, want, "{path}: {answer}");
    answer
}

/// Makes the downsampling task `name` writing to bucket `out`, with `status`; its ID.
async fn create_task(server: &Influxd, name: &str, out: &str, status: &str) -> String {
    let body = json!({"orgID": server.org_id, "flux": task_flux(name, &server.org, out), "status": status});
    let made = ok(server, Method::POST, "/api/v2/tasks", Some(body), 201).await;
    made["id"].as_str().unwrap_or_else(|| panic!("{made}")).to_string()
}

/// (scheduledFor, status) of the task's runs.
async fn runs(server: &Influxd, task: &str) -> Vec<(String, String)> {
    let page = ok(server, Method::GET, &format!("/api/v2/tasks/{task}/runs"), None, 200).await;
    page["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|r| (r["scheduledFor"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string()))
        .collect()
}

/// `(_time, _value)` of the downsampled points in `bucket` with `_time` in `[start, stop)`.
async fn output(server: &Influxd, bucket: &str, start: &str, stop: &str) -> Vec<(String, String)> {
    let rows = server
        .query(&format!(
            "from(bucket: \"{bucket}\") |> range(start: {start}, stop: {stop}) |> filter(fn: (r) => r._measurement == \"m_1s\")"
        ))
        .await;
    testbed::flux::time_values(&rows)
}

async fn a_manual_run_at_a_scheduled_time_computes_what_the_scheduled_run_did(version: InfluxdVersion) {
    let server = Influxd::start_version(version, "tasks").await;
    for b in ["raw", "scheduled", "replayed"] {
        server.create_bucket(b).await;
    }
    // Raw points every 100 ms from 10 s ago to 60 s ahead, values that differ point to point.
    let now_s = OffsetDateTime::now_utc().unix_timestamp();
    let mut body = String::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..700i64 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let t = (now_s - 10) * 1_000_000_000 + i * 100_000_000;
        body.push_str(&format!("m,host=a v={}.{:03} {t}\n", (x >> 40) % 1000, (x >> 20) % 1000));
    }
    server.write_ok("raw", "ns", body).await;

    let scheduled = create_task(&server, "downsample", "scheduled", "active").await;
    // Four scheduled runs that succeeded.
    let mut done = Vec::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        done = runs(&server, &scheduled).await.into_iter().filter(|(_, s)| s == "success").collect();
        if done.len() >= 4 {
            break;
        }
    }
    assert!(done.len() >= 4, "the scheduled task ran: {:?}", runs(&server, &scheduled).await);
    ok(
        &server,
        Method::PATCH,
        &format!("/api/v2/tasks/{scheduled}"),
        Some(json!({"status": "inactive"})),
        200,
    )
    .await;
    let mut times: Vec<String> = done.iter().map(|(t, _)| t.clone()).collect();
    times.sort();
    times.truncate(4);

    // An inactive task cannot be run by hand: influxd answers 400 "failed to force run: inactive
    // task". The handover must therefore activate a task before replaying its missed runs.
    let inactive = create_task(&server, "downsample-held", "replayed", "inactive").await;
    let (status, refused) = server
        .api(Method::POST, &format!("/api/v2/tasks/{inactive}/runs"), Some(json!({"scheduledFor": times[0]})))
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(refused["message"].as_str().unwrap_or_default().contains("inactive task"), "{refused}");
    ok(&server, Method::DELETE, &format!("/api/v2/tasks/{inactive}"), None, 204).await;
    assert!(output(&server, "replayed", "1970-01-01T00:00:00Z", "2262-01-01T00:00:00Z").await.is_empty());

    // An active copy made now (its own schedule starts now, after the window), run by hand at
    // each of those times, one after the other, each waited for.
    let copy = create_task(&server, "downsample-copy", "replayed", "active").await;
    for t in &times {
        let run = ok(
            &server,
            Method::POST,
            &format!("/api/v2/tasks/{copy}/runs"),
            Some(json!({"scheduledFor": t})),
            201,
        )
        .await;
        let run_id = run["id"].as_str().unwrap().to_string();
        let mut status = String::new();
        for _ in 0..60 {
            let r = ok(&server, Method::GET, &format!("/api/v2/tasks/{copy}/runs/{run_id}"), None, 200).await;
            status = r["status"].as_str().unwrap_or_default().to_string();
            if status == "success" || status == "failed" || status == "canceled" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert_eq!(status, "success", "the manual run at {t}");
    }

    // The outputs of those runs: _time in (first - every, last], i.e. [first - 1s, last + 1s).
    let parse = |t: &str| OffsetDateTime::parse(t, &Rfc3339).unwrap();
    let start = (parse(&times[0]) - time::Duration::seconds(EVERY_S - 1)).format(&Rfc3339).unwrap();
    let stop = (parse(&times[3]) + time::Duration::seconds(1)).format(&Rfc3339).unwrap();
    let by_schedule = output(&server, "scheduled", &start, &stop).await;
    let by_hand = output(&server, "replayed", &start, &stop).await;
    assert_eq!(
        by_schedule.len(),
        4 * EVERY_S as usize,
        "one point per second of the four runs: {by_schedule:?}"
    );
    assert_eq!(by_hand, by_schedule, "value by value, at {times:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxd_2_7_12_a_manual_run_at_a_scheduled_time_computes_what_the_scheduled_run_did() {
    a_manual_run_at_a_scheduled_time_computes_what_the_scheduled_run_did(InfluxdVersion::V2_7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxd_2_9_1_a_manual_run_at_a_scheduled_time_computes_what_the_scheduled_run_did() {
    a_manual_run_at_a_scheduled_time_computes_what_the_scheduled_run_did(InfluxdVersion::V2_9).await;
}
