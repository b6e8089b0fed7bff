//! The seeding migration through the backup/restore API, against two real influxd 2.7.12 and the
//! real `influx` CLI: single bucket (renamed, across orgs), `--full`, interoperability with
//! `influx backup` / `influx restore` both ways, and a restore that fails halfway and resumes.
//!
//! The `influx` CLI in the test bed is v2.3.0 (the newest the Go module proxy here serves; the
//! issue names 2.7.5): both write manifest version 2 and use the same endpoints.

mod migration_support;

use std::time::{Duration, Instant};

use migration_support::*;
use serde_json::{Value, json};
use testbed::flux::assert_same_points;
use testbed::{FaultProxy, Influxd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_bucket_renamed_across_orgs_is_copied_value_by_value() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    let values = seed(&src, &src.bucket, 300).await;
    dst.create_org("dest-org").await;
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("bk");
    let run = run(
        work.path(),
        &[
            "--src-host",
            &src.url,
            "--dest-host",
            &dst.url,
            "--src-bucket",
            &src.bucket,
            "--dest-bucket",
            "copied",
            "--src-org",
            &src.org,
            "--dest-org",
            "dest-org",
            "--dir-name",
            dir.to_str().unwrap(),
            // gzip on the wire even on loopback: the files are then exactly influx backup's
            // default layout (.bolt.gz, .sqlite.gz, .tar.gz).
            "--wire-compression",
            "gzip",
        ],
        &[
            ("INFLUX_SRC_TOKEN", &src.token),
            ("INFLUX_DEST_TOKEN", &dst.token),
            ("LIVE_STREAM_RETENTION_HOURS", "0.00001"),
        ],
    )
    .await;
    run.expect(0);
    assert_no_token(&run.all(), &[&src.token, &dst.token]);

    // Value by value, types included.
    let (a, b) = tokio::join!(dump(&src, &src.org, &src.bucket), dump(&dst, "dest-org", "copied"));
    assert_eq!(a.len(), values, "the source dump should hold every value written");
    assert_same_points("source", &a, "destination", &b);

    // The verification table says so.
    assert!(run.stdout.contains("verification passed: 1 bucket(s)"), "{}", run.stdout);
    let cpu_row = run.stdout.lines().find(|l| l.contains(" cpu ")).unwrap();
    assert!(
        cpu_row.contains("test-org/test-bucket")
            && cpu_row.contains("dest-org/copied")
            && cpu_row.ends_with("ok"),
        "{cpu_row}"
    );

    // No staging bucket left; the final one has the source's retention settings.
    let names = bucket_names(&dst).await;
    assert!(names.iter().all(|n| !n.contains(".restoring-")), "{names:?}");
    let copied = bucket(&dst, "copied").await.unwrap();
    let original = bucket(&src, &src.bucket).await.unwrap();
    assert_eq!(copied["retentionRules"], original["retentionRules"]);

    // The v1 virtual DBRP mapping follows the bucket's final name.
    let (status, dbrps) = dst
        .api(
            reqwest::Method::GET,
            &format!("/api/v2/dbrps?orgID={}&db=copied", copied["orgID"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 200, "{dbrps}");
    assert_eq!(dbrps["content"][0]["bucketID"], copied["id"], "{dbrps}");

    // The backup directory has what `influx backup` writes.
    let files: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let manifest_name = files.iter().find(|f| f.ends_with(".manifest")).expect("a manifest");
    let base = manifest_name.trim_end_matches(".manifest");
    assert_eq!(base.len(), "20240131T101502Z".len(), "{base}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(dir.join(manifest_name)).unwrap()).unwrap();
    assert_eq!(manifest["manifestVersion"], 2);
    assert_eq!(manifest["kv"]["fileName"], format!("{base}.bolt.gz"));
    assert_eq!(manifest["sql"]["fileName"], format!("{base}.sqlite.gz"));
    let shards: Vec<&Value> = manifest["buckets"][0]["retentionPolicies"][0]["shardGroups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["shards"].as_array().unwrap())
        .collect();
    assert!(shards.len() >= 4, "six weeks and 1990 make several shard groups: {}", shards.len());
    for s in &shards {
        let name = s["fileName"].as_str().unwrap();
        assert_eq!(name, format!("{base}.{}.tar.gz", s["id"]));
        assert_eq!(s["compression"], 1);
        assert_eq!(std::fs::metadata(dir.join(name)).unwrap().len(), s["size"].as_u64().unwrap());
    }
    assert_eq!(manifest["buckets"].as_array().unwrap().len(), 1);

    // performance.txt in the working directory, one line per step.
    let perf = std::fs::read_to_string(work.path().join("performance.txt")).unwrap();
    for step in ["backup", "restore", "verify", "influx-migration"] {
        let line = perf
            .lines()
            .find(|l| l.starts_with(&format!("{step} started at ")))
            .unwrap_or_else(|| panic!("{perf}"));
        assert!(line.ends_with(" seconds to run."), "{line}");
    }

    // The stream-retention hook warned at 50% and 80% (0.00001 h = 36 ms; the backup and restore
    // take longer, and whatever the timer had not announced the end of the seeding does).
    assert!(run.stderr.contains("50% of the stream retention"), "{}", run.stderr);
    assert!(run.stderr.contains("80% of the stream retention"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_backup_restores_with_influx_restore_and_influx_backup_restores_with_ours() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    seed(&src, &src.bucket, 200).await;
    let work = tempfile::tempdir().unwrap();
    let source = dump(&src, &src.org, &src.bucket).await;

    // 1. Ours, with neither org given: the bucket keeps its org's name (the destination's
    //    onboarding bucket has the same name, hence the new bucket name).
    let ours = work.path().join("ours");
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
            "ours",
            "--dir-name",
            ours.to_str().unwrap(),
        ],
        &tokens(&src, &dst),
    )
    .await
    .expect(0);
    assert_same_points("source", &source, "destination", &dump(&dst, &dst.org, "ours").await);

    // The default on loopback: no gzip on the wire, files as `influx backup --compression none`.
    let names: Vec<String> =
        std::fs::read_dir(&ours).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(
        names.iter().any(|n| n.ends_with(".tar")) && names.iter().any(|n| n.ends_with(".bolt")),
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.ends_with(".gz")), "{names:?}");

    // 2. `influx restore` reads the directory we wrote.
    let (code, out) = influx_cli(
        work.path(),
        &[
            "restore",
            ours.to_str().unwrap(),
            "--host",
            &dst.url,
            "-t",
            &dst.token,
            "--bucket",
            &src.bucket,
            "--new-bucket",
            "from-cli",
        ],
    )
    .await;
    assert_eq!(code, 0, "influx restore of our backup failed:\n{out}");
    assert_same_points(
        "source",
        &source,
        "influx restore of our backup",
        &dump(&dst, &dst.org, "from-cli").await,
    );

    // 3. We read a directory `influx backup` wrote (only the restore runs: --retry-restore-dir).
    let theirs = work.path().join("theirs");
    let (code, out) = influx_cli(
        work.path(),
        &["backup", theirs.to_str().unwrap(), "--host", &src.url, "-t", &src.token, "--bucket", &src.bucket],
    )
    .await;
    assert_eq!(code, 0, "influx backup failed:\n{out}");
    let run = run(
        work.path(),
        &[
            "--src-host",
            &src.url,
            "--dest-host",
            &dst.url,
            "--src-bucket",
            &src.bucket,
            "--dest-bucket",
            "from-influx-backup",
            "--retry-restore-dir",
            theirs.to_str().unwrap(),
        ],
        &tokens(&src, &dst),
    )
    .await;
    run.expect(0);
    assert!(run.stdout.contains("verification passed"), "{}", run.stdout);
    assert_same_points(
        "source",
        &source,
        "our restore of influx backup",
        &dump(&dst, &dst.org, "from-influx-backup").await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_migration_carries_tokens_users_dashboards_tasks_and_every_bucket() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    seed(&src, &src.bucket, 150).await;
    let other_org = src.create_org("second-org").await;
    let other_bucket = src.create_bucket_in(&other_org, "other").await;
    let (s, user) = src.api(reqwest::Method::POST, "/api/v2/users", Some(json!({"name": "alice"}))).await;
    assert_eq!(s, 201, "{user}");
    let (s, auth) = src
        .api(
            reqwest::Method::POST,
            "/api/v2/authorizations",
            Some(json!({"orgID": other_org, "userID": user["id"], "description": "alice reads other",
                "permissions": [{"action": "read", "resource": {"type": "buckets", "id": other_bucket, "orgID": other_org}}]})),
        )
        .await;
    assert_eq!(s, 201, "{auth}");
    let (s, dash) = src
        .api(
            reqwest::Method::POST,
            "/api/v2/dashboards",
            Some(json!({"orgID": src.org_id, "name": "ops board"})),
        )
        .await;
    assert_eq!(s, 201, "{dash}");
    let (s, task) = src
        .api(
            reqwest::Method::POST,
            "/api/v2/tasks",
            Some(json!({"orgID": src.org_id, "status": "inactive",
                "flux": "option task = {name: \"downsample\", every: 1h}\nfrom(bucket: \"test-bucket\") |> range(start: -1h) |> yield()"})),
        )
        .await;
    assert_eq!(s, 201, "{task}");
    // Data in the second org's bucket too.
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v2/write?orgID={other_org}&bucket=other&precision=s", src.url))
        .header("Authorization", src.auth())
        .body("temp,room=a c=21.5 1704067200\ntemp,room=b c=19 1705067200\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);

    let work = tempfile::tempdir().unwrap();
    let run = run(
        work.path(),
        &[
            "--src-host",
            &src.url,
            "--dest-host",
            &dst.url,
            "--full",
            "--confirm-full",
            "--dir-name",
            "full-bk",
        ],
        &tokens(&src, &dst),
    )
    .await;
    run.expect(0);
    assert!(run.stdout.contains("verification passed: 2 bucket(s)"), "{}", run.stdout);
    assert_no_token(&run.all(), &[&src.token, &dst.token]);

    // The destination now answers to the source's operator token, and no longer to its own.
    let dst_as_src = Endpoint::new(&dst, &src.token);
    let (s, _) = dst_as_src.api(reqwest::Method::GET, "/api/v2/orgs", None).await;
    assert_eq!(s, 200);
    let (s, _) = dst.api(reqwest::Method::GET, "/api/v2/orgs", None).await;
    assert_eq!(s, 401, "the destination's own operator token was replaced");

    let (_, users) = dst_as_src.api(reqwest::Method::GET, "/api/v2/users", None).await;
    assert!(users["users"].as_array().unwrap().iter().any(|u| u["name"] == "alice"), "{users}");
    let (_, auths) = dst_as_src.api(reqwest::Method::GET, "/api/v2/authorizations", None).await;
    let copied = auths["authorizations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == auth["id"])
        .expect("alice's token");
    assert_eq!(copied["token"], auth["token"]);
    assert_eq!(copied["description"], "alice reads other");
    let (_, dashboards) =
        dst_as_src.api(reqwest::Method::GET, &format!("/api/v2/dashboards?orgID={}", src.org_id), None).await;
    assert!(
        dashboards["dashboards"].as_array().unwrap().iter().any(|d| d["name"] == "ops board"),
        "{dashboards}"
    );
    let (_, tasks) = dst_as_src.api(reqwest::Method::GET, "/api/v2/tasks", None).await;
    assert!(tasks["tasks"].as_array().unwrap().iter().any(|t| t["name"] == "downsample"), "{tasks}");

    // Every bucket, data compared value by value.
    assert_same_points(
        "source",
        &dump(&src, &src.org, &src.bucket).await,
        "destination",
        &dump(dst_as_src, &src.org, &src.bucket).await,
    );
    let a = dump(&src, "second-org", "other").await;
    assert_eq!(a.len(), 2);
    assert_same_points("source", &a, "destination", &dump(dst_as_src, "second-org", "other").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_that_fails_halfway_resumes_with_the_printed_command() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    seed(&src, &src.bucket, 200).await;
    let proxy = FaultProxy::start(&dst.url).await;
    // Slow enough that the test can act between two shard uploads.
    proxy.set_latency(Duration::from_millis(400));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("bk");
    let args: Vec<String> = [
        "--src-host",
        &src.url,
        "--dest-host",
        &proxy.url,
        "--src-bucket",
        &src.bucket,
        "--dest-bucket",
        "resumed",
        "--parallel",
        "1",
        "--dir-name",
        dir.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let first = {
        let work = work.path().to_path_buf();
        let (st, dt) = (src.token.clone(), dst.token.clone());
        let args = args.clone();
        tokio::spawn(async move {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&work, &a, &[("INFLUX_SRC_TOKEN", &st), ("INFLUX_DEST_TOKEN", &dt)]).await
        })
    };
    // Once the state file shows a shard restored, the destination starts failing.
    let state_file = dir.join("influx-migration-state.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = std::fs::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["buckets"][0]["shards_done"].as_array().map(|a| a.len()))
            .unwrap_or(0);
        if done >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no shard was restored within 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.fail_for(Duration::from_secs(600), 0);
    let failed = first.await.unwrap();
    failed.expect(1);
    assert!(failed.stderr.contains("Restore has failed"), "{}", failed.stderr);
    assert!(failed.stderr.contains(&dir.display().to_string()), "{}", failed.stderr);
    assert_no_token(&failed.all(), &[&src.token, &dst.token]);

    // Nothing under the user's name; the staging bucket holds what was done.
    let names = bucket_names(&dst).await;
    assert!(!names.contains(&"resumed".to_string()), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("resumed.restoring-")), "{names:?}");
    let state: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    let done_before = state["buckets"][0]["shards_done"].as_array().unwrap().len();
    let total = state["buckets"][0]["shard_map"].as_object().unwrap().len();
    assert!(
        done_before >= 1 && done_before < total,
        "{done_before} of {total} shards done before the failure"
    );

    // The printed command, run as printed, completes the restore.
    proxy.heal();
    proxy.set_latency(Duration::ZERO);
    let words = printed_retry_command(&failed.stderr);
    assert_eq!(words[0], "influx-migration");
    assert!(
        words.windows(2).any(|w| w[0] == "--retry-restore-dir" && w[1] == dir.display().to_string()),
        "{words:?}"
    );
    let rest: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    let second = run(work.path(), &rest, &tokens(&src, &dst)).await;
    second.expect(0);
    assert!(
        second.stderr.contains(&format!("({done_before} of {total} shard(s) already restored)")),
        "the retry should skip finished shards:\n{}",
        second.stderr
    );
    assert!(second.stdout.contains("verification passed"), "{}", second.stdout);
    let names = bucket_names(&dst).await;
    assert!(
        names.contains(&"resumed".to_string()) && names.iter().all(|n| !n.contains(".restoring-")),
        "{names:?}"
    );
    assert_same_points(
        "source",
        &dump(&src, &src.org, &src.bucket).await,
        "destination",
        &dump(&dst, &dst.org, "resumed").await,
    );
}

/// On main a shard download gave up after five attempts (about 4–8 s): influxd answered 500 to
/// `GET /api/v2/backup/shards/1` for a few seconds while live writes snapshotted its cache, and a
/// `--full` seeding failed. A busy source must not fail a seeding that waits a little longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_answering_500_to_shard_backups_for_20_s_does_not_fail_the_seeding() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    seed(&src, &src.bucket, 200).await;
    let proxy = FaultProxy::start(&src.url).await;
    proxy.fail_path_for("/api/v2/backup/shards/", Duration::from_secs(20));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("bk");
    let run = run(
        work.path(),
        &[
            "--src-host",
            &proxy.url,
            "--dest-host",
            &dst.url,
            "--src-bucket",
            &src.bucket,
            "--dest-bucket",
            "copied",
            "--dir-name",
            dir.to_str().unwrap(),
        ],
        &tokens(&src, &dst),
    )
    .await;
    run.expect(0);
    assert!(proxy.stats().failed >= 6, "the proxy should have failed several downloads: {:?}", proxy.stats());
    assert!(run.stderr.contains("retrying"), "each retry is said:\n{}", run.stderr);
    assert_same_points(
        "source",
        &dump(&src, &src.org, &src.bucket).await,
        "destination",
        &dump(&dst, &dst.org, "copied").await,
    );
}
