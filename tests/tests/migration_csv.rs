//! The `--csv` migration against two real influxd: a single bucket with AWS's own scenarios (data
//! in 1990 and 2020 at nanosecond and at one-minute spacing, several fields), `--full --csv`
//! over several orgs (retention and shard-group duration kept), a `--start`/`--stop` window,
//! files exchanged with the script's own pipeline (`influx query --raw` / `influx write --format
//! csv`), and an import that fails halfway and resumes.

mod migration_support;

use std::time::{Duration, Instant};

use migration_support::*;
use serde_json::{Value, json};
use testbed::flux::assert_same_points;
use testbed::{FaultProxy, Influxd};

const NS_1990: i64 = 631_152_000_000_000_000;
const NS_2020: i64 = 1_577_836_800_000_000_000;
const MINUTE: i64 = 60_000_000_000;

/// AWS's `test_csv_with_gap_*`: one table all in 1990, one with 49 points in 1990 and 51 in 2020,
/// `spacing` apart.
fn gap_lines(spacing: i64) -> String {
    let mut s = String::new();
    for i in 0..100i64 {
        s.push_str(&format!("pressure old-table-field={i}i {}\n", NS_1990 + i * spacing));
    }
    for i in 0..49i64 {
        s.push_str(&format!("pressure mixed-table-field={i}i {}\n", NS_1990 + i * spacing));
    }
    for i in 0..51i64 {
        s.push_str(&format!("pressure mixed-table-field={i}i {}\n", NS_2020 + i * spacing));
    }
    s
}

/// AWS's `test_csv_multiple_fields`: four fields, 100 points a minute apart from 2021-11-09T14:03:20Z.
fn multiple_field_lines() -> String {
    let start = 1_636_466_600_000_000_000i64;
    (0..100i64)
        .map(|i| {
            format!(
                "pressure field1={i}i,field2={}i,field3={}i,field4={}i {}\n",
                i * 2,
                i * 3,
                i * 4,
                start + i * MINUTE
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_single_bucket_with_the_scripts_gap_scenario_and_every_type() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    src.create_bucket("gap-test").await;
    src.write_ok("gap-test", "ns", gap_lines(1)).await;
    // Every field type, tags needing escapes, a string with quotes, commas and a newline.
    src.write_ok(
        "gap-test",
        "ns",
        "types,host=a\\ b,site=x\\=y f=1.5,i=-3i,u=18446744073709551615u,b=true,s=\"line1\nline2, \\\"q\\\" \\\\ end\" 1577836800000000005\n",
    )
    .await;
    dst.create_org("dest-org").await;
    let work = tempfile::tempdir().unwrap();
    let run = run(
        work.path(),
        &[
            "--src-host",
            &src.url,
            "--dest-host",
            &dst.url,
            "--src-bucket",
            "gap-test",
            "--dest-bucket",
            "gap-copy",
            "--src-org",
            &src.org,
            "--dest-org",
            "dest-org",
            "--csv",
            "--dir-name",
            "csv-bk",
        ],
        &tokens(&src, &dst),
    )
    .await;
    run.expect(0);
    assert_no_token(&run.all(), &[&src.token, &dst.token]);
    let a = dump(&src, &src.org, "gap-test").await;
    assert_eq!(a.len(), 200 + 5);
    let b = dump(&dst, "dest-org", "gap-copy").await;
    assert_same_points("source", &a, "destination", &b);
    // Flux's CSV shows a stored "\n" as "\r\n" (and so cannot tell them apart): look at the
    // stored bytes through Flux itself.
    let visible = "import \"strings\" from(bucket: \"BUCKET\") |> range(start: 2020-01-01T00:00:00Z, stop: 2020-01-02T00:00:00Z) \
                   |> filter(fn: (r) => r._field == \"s\") \
                   |> map(fn: (r) => ({r with _value: strings.replaceAll(v: strings.replaceAll(v: r._value, t: \"\\r\", u: \"<CR>\"), t: \"\\n\", u: \"<LF>\")}))";
    for (server, org, name) in [(&src, src.org.as_str(), "gap-test"), (&dst, "dest-org", "gap-copy")] {
        let rows = testbed::flux::parse_annotated_csv(
            &query_in(server, org, &visible.replace("BUCKET", name)).await,
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].get("_value"), Some("line1<LF>line2, \"q\" \\ end"), "{name}");
        assert_eq!(rows[0].datatypes["_value"], "string");
    }
    let unsigned = b.iter().find(|r| r.get("_field") == Some("u")).unwrap();
    assert_eq!(
        (unsigned.get("_value"), unsigned.datatypes["_value"].as_str()),
        (Some("18446744073709551615"), "unsignedLong")
    );

    // The files are the script's: metadata_<bucket>.json and bucket_<bucket>.csv.
    let meta: Value =
        serde_json::from_slice(&std::fs::read(work.path().join("csv-bk/metadata_gap-test.json")).unwrap())
            .unwrap();
    assert_eq!(meta["name"], "gap-test");
    assert_eq!(meta["org_name"], src.org);
    assert_eq!(meta["retention_rules"][0]["every_seconds"], 0);
    let csv = std::fs::read_to_string(work.path().join("csv-bk/bucket_gap-test.csv")).unwrap();
    assert!(csv.starts_with("#group,"), "{}", &csv[..80.min(csv.len())]);
    assert!(run.stderr.contains("205 record(s) migrated"), "{}", run.stderr);
    assert!(run.stdout.contains("verification passed"), "{}", run.stdout);
    let perf = std::fs::read_to_string(work.path().join("performance.txt")).unwrap();
    assert!(perf.contains("backup_csv started at ") && perf.contains("restore_csv started at "), "{perf}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_csv_moves_every_user_bucket_of_every_org_with_its_retention() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    src.create_bucket("gap-minutes").await;
    src.write_ok("gap-minutes", "ns", gap_lines(MINUTE)).await;
    src.create_bucket("multiple-field-test").await;
    src.write_ok("multiple-field-test", "ns", multiple_field_lines()).await;
    let second = src.create_org("second-org").await;
    // 30 days of retention, 1-day shard groups.
    let (s, b) = src
        .api(
            reqwest::Method::POST,
            "/api/v2/buckets",
            Some(json!({"orgID": second, "name": "short", "retentionRules": [{"type": "expire", "everySeconds": 2_592_000, "shardGroupDurationSeconds": 86_400}]})),
        )
        .await;
    assert_eq!(s, 201, "{b}");
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let lines: String =
        (0..48).map(|h| format!("temp,room=r{} c={h}.5 {}\n", h % 3, now_s - 3600 * (h + 1))).collect();
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v2/write?orgID={second}&bucket=short&precision=s", src.url))
        .header("Authorization", src.auth())
        .body(lines)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);

    // The destination's onboarding bucket has the name of the source's: a fresh instance's
    // initial bucket would be removed (or the migration would rightly refuse to merge).
    let id = bucket(&dst, &dst.bucket).await.unwrap()["id"].as_str().unwrap().to_string();
    assert_eq!(dst.api(reqwest::Method::DELETE, &format!("/api/v2/buckets/{id}"), None).await.0, 204);
    let work = tempfile::tempdir().unwrap();
    let run = run(
        work.path(),
        &["--src-host", &src.url, "--dest-host", &dst.url, "--full", "--csv", "--dir-name", "all"],
        &tokens(&src, &dst),
    )
    .await;
    run.expect(0);
    assert!(run.stdout.contains("verification passed: 4 bucket(s)"), "{}", run.stdout);
    for (org, bucket, n) in [
        (src.org.as_str(), "gap-minutes", 200),
        (src.org.as_str(), "multiple-field-test", 400),
        ("second-org", "short", 48),
    ] {
        let a = dump(&src, org, bucket).await;
        assert_eq!(a.len(), n, "{org}/{bucket}");
        assert_same_points(
            &format!("source {org}/{bucket}"),
            &a,
            "destination",
            &dump(&dst, org, bucket).await,
        );
    }
    // The default bucket of the test org is a user bucket too (empty).
    assert!(bucket(&dst, &src.bucket).await.is_some());
    let short = bucket(&dst, "short").await.unwrap();
    assert_eq!(short["retentionRules"][0]["everySeconds"], 2_592_000);
    assert_eq!(short["retentionRules"][0]["shardGroupDurationSeconds"], 86_400);
    // Exactly the user buckets (plus each org's own system buckets), nothing under a staging name.
    assert_eq!(
        bucket_names(&dst).await,
        [
            "_monitoring",
            "_monitoring",
            "_tasks",
            "_tasks",
            "gap-minutes",
            "multiple-field-test",
            "short",
            "test-bucket"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_stop_copy_only_the_window_and_files_trade_with_the_scripts_pipeline() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    seed(&src, &src.bucket, 100).await;
    let work = tempfile::tempdir().unwrap();

    // 1. A catch-up window: [2024-01-08, 2024-01-15).
    run(
        work.path(),
        &[
            "--src-host",
            &src.url,
            "--dest-host",
            &dst.url,
            "--src-bucket",
            &src.bucket,
            "--dest-bucket",
            "week2",
            "--csv",
            "--start",
            "2024-01-08T00:00:00Z",
            "--stop",
            "2024-01-15T00:00:00Z",
            "--dir-name",
            "window",
        ],
        &tokens(&src, &dst),
    )
    .await
    .expect(0);
    let copied = dump(&dst, &dst.org, "week2").await;
    let all = dump(&src, &src.org, &src.bucket).await;
    let expected: Vec<_> = all
        .iter()
        .filter(|r| {
            let t = time::OffsetDateTime::parse(
                r.get("_time").unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            let (a, b) =
                (time::macros::datetime!(2024-01-08 0:00 UTC), time::macros::datetime!(2024-01-15 0:00 UTC));
            t >= a && t < b
        })
        .cloned()
        .collect();
    assert!(!expected.is_empty() && expected.len() < all.len());
    assert_same_points("source window", &expected, "destination", &copied);

    // 2. Files made by the script's own pipeline (`influx query --raw` to bucket_<b>.csv, the
    //    metadata as the script dumps it) restore with ours.
    let dir = work.path().join("script-made");
    std::fs::create_dir(&dir).unwrap();
    let (code, csv) = influx_cli(
        work.path(),
        &[
            "query",
            "--host",
            &src.url,
            "-t",
            &src.token,
            "--org",
            &src.org,
            "--raw",
            &format!(
                "from(bucket: \"{}\") |> range(start: 1678-01-01T00:00:00Z, stop: 2800-01-01T00:00:00Z)",
                src.bucket
            ),
        ],
    )
    .await;
    assert_eq!(code, 0, "{csv}");
    std::fs::write(dir.join("bucket_legacy-copy.csv"), csv).unwrap();
    std::fs::write(
        dir.join("metadata_legacy-copy.json"),
        format!(
            r#"{{"links": {{}}, "id": "0000000000000001", "type": "user", "name": "legacy-copy", "description": null, "org_id": "{}", "rp": null, "schema_type": null, "created_at": "2024-03-01 10:00:00.123456+00:00", "updated_at": "2024-03-01 10:00:00.123456+00:00", "retention_rules": [{{"type": "expire", "every_seconds": 0, "shard_group_duration_seconds": 604800}}], "labels": [], "org_name": "{}"}}"#,
            src.org_id, src.org
        ),
    )
    .unwrap();
    run(
        work.path(),
        &[
            "--dest-host",
            &dst.url,
            "--src-bucket",
            "legacy-copy",
            "--csv",
            "--retry-restore-dir",
            dir.to_str().unwrap(),
        ],
        &[("INFLUX_DEST_TOKEN", &dst.token)],
    )
    .await
    .expect(0);
    assert_same_points(
        "source",
        &all,
        "restored from the script's files",
        &dump(&dst, &dst.org, "legacy-copy").await,
    );

    // 3. Our export is what `influx write --format csv` (the script's restore) takes.
    let ours = work.path().join("window/bucket_test-bucket.csv");
    dst.create_bucket("by-influx-write").await;
    let (code, out) = influx_cli(
        work.path(),
        &[
            "write",
            "--host",
            &dst.url,
            "-t",
            &dst.token,
            "--org",
            &dst.org,
            "--bucket",
            "by-influx-write",
            "--format",
            "csv",
            "--file",
            ours.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(dump(&dst, &dst.org, "by-influx-write").await.len(), expected.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_import_that_fails_halfway_resumes_into_the_same_staging_bucket() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    // 60,000 values: three write batches (25,000 lines each at most).
    let lines: String = (0..15_000i64)
        .map(|i| {
            format!(
                "m,k=v{} a={i}i,b={i}.5,c=\"s{i}\",d={} {}\n",
                i % 7,
                i % 2 == 0,
                1_704_067_200_000_000_000 + i * 1_000_000_000
            )
        })
        .collect();
    src.write_ok(&src.bucket, "ns", lines).await;
    let proxy = FaultProxy::start(&dst.url).await;
    proxy.set_latency(Duration::from_millis(700));
    let work = tempfile::tempdir().unwrap();
    let first = {
        let (work, src_url, proxy_url, st, dt, b) = (
            work.path().to_path_buf(),
            src.url.clone(),
            proxy.url.clone(),
            src.token.clone(),
            dst.token.clone(),
            src.bucket.clone(),
        );
        tokio::spawn(async move {
            run(
                &work,
                &[
                    "--src-host",
                    &src_url,
                    "--dest-host",
                    &proxy_url,
                    "--src-bucket",
                    &b,
                    "--dest-bucket",
                    "csv-resumed",
                    "--csv",
                    "--parallel",
                    "1",
                    "--dir-name",
                    "bk",
                ],
                &[("INFLUX_SRC_TOKEN", &st), ("INFLUX_DEST_TOKEN", &dt)],
            )
            .await
        })
    };
    // Wait (reading the destination directly) until a first batch is in the staging bucket.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(name) =
            bucket_names(&dst).await.into_iter().find(|n| n.starts_with("csv-resumed.restoring-"))
            && dst.count(&name).await > 0
        {
            break;
        }
        assert!(Instant::now() < deadline, "no batch arrived within 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.fail_for(Duration::from_secs(600), 0);
    let failed = first.await.unwrap();
    failed.expect(1);
    assert!(failed.stderr.contains("Restore has failed"), "{}", failed.stderr);
    assert!(!bucket_names(&dst).await.contains(&"csv-resumed".to_string()));
    let state: Value =
        serde_json::from_slice(&std::fs::read(work.path().join("bk/influx-migration-state.json")).unwrap())
            .unwrap();
    let written = state["buckets"][0]["rows_written"].as_u64().unwrap();
    assert!((25_000..60_000).contains(&written), "{written} rows recorded before the failure");
    assert!(state["buckets"][0]["csv_resume"]["block_offset"].is_u64(), "{state}");

    proxy.heal();
    proxy.set_latency(Duration::ZERO);
    let words = printed_retry_command(&failed.stderr);
    let rest: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    let second = run(work.path(), &rest, &tokens(&src, &dst)).await;
    second.expect(0);
    assert!(second.stderr.contains("resuming the import"), "{}", second.stderr);
    assert!(second.stdout.contains("verification passed"), "{}", second.stdout);
    assert_same_points(
        "source",
        &dump(&src, &src.org, &src.bucket).await,
        "destination",
        &dump(&dst, &dst.org, "csv-resumed").await,
    );
}
