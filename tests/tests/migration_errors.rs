//! Every failure the issue lists gives a non-zero exit, a message that says what failed (and what
//! to run next), never a token, and creates nothing at the destination; plus S3 staging through
//! moto (files go to and come back from S3, ownership checked) and a full disk.

mod migration_support;

use migration_support::*;
use serde_json::json;
use testbed::flux::assert_same_points;
use testbed::{Influxd, Moto};

/// A failing run: name, arguments, environment, expected exit code, texts stderr must hold.
type Case<'a> = (&'a str, Vec<String>, Vec<(&'a str, &'a str)>, i32, Vec<&'a str>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_says_what_failed_and_creates_nothing() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    seed(&src, &src.bucket, 20).await;
    dst.create_bucket("taken").await;
    // A port where something listens but speaks no HTTP: the "wrong port" case.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((sock, _)) = silent.accept().await {
            drop(sock);
        }
    });
    // An all-access token of one org (not an operator token).
    let (s, all_access) = src
        .api(
            reqwest::Method::POST,
            "/api/v2/authorizations",
            Some(json!({"orgID": src.org_id, "description": "all access", "permissions": [
                {"action": "read", "resource": {"type": "buckets", "orgID": src.org_id}},
                {"action": "write", "resource": {"type": "buckets", "orgID": src.org_id}},
                {"action": "read", "resource": {"type": "orgs", "id": src.org_id}}]})),
        )
        .await;
    assert_eq!(s, 201, "{all_access}");
    let limited = all_access["token"].as_str().unwrap().to_string();

    let before = bucket_names(&dst).await;
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir(work.path().join("existing")).unwrap();
    std::fs::write(work.path().join("existing/keep.txt"), "mine").unwrap();
    let secrets = [src.token.as_str(), dst.token.as_str(), limited.as_str(), "wrong-token-123"];
    let base = |src_host: &str, dest_host: &str| -> Vec<String> {
        [
            "--src-host",
            src_host,
            "--dest-host",
            dest_host,
            "--src-bucket",
            "test-bucket",
            "--dest-bucket",
            "copy",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let cases: Vec<Case> = vec![
        (
            "unreachable source",
            base("http://127.0.0.1:1", &dst.url),
            tokens(&src, &dst),
            1,
            vec!["Health check for source host failed", "http://127.0.0.1:1", "could not connect"],
        ),
        (
            "unreachable destination",
            base(&src.url, "http://127.0.0.1:1"),
            tokens(&src, &dst),
            1,
            vec!["Health check for destination host failed", "could not connect"],
        ),
        (
            "wrong port",
            base(&silent_url, &dst.url),
            tokens(&src, &dst),
            1,
            vec!["Health check for source host failed", &silent_url],
        ),
        (
            "host without scheme",
            base("invalid_host", &dst.url),
            tokens(&src, &dst),
            1,
            vec!["--src-host", "<scheme>://<host>:<port>"],
        ),
        (
            "bad source token",
            base(&src.url, &dst.url),
            vec![("INFLUX_SRC_TOKEN", "wrong-token-123"), ("INFLUX_DEST_TOKEN", &dst.token)],
            1,
            vec!["Could not verify source token", "INFLUX_SRC_TOKEN", "401"],
        ),
        (
            "bad destination token",
            base(&src.url, &dst.url),
            vec![("INFLUX_SRC_TOKEN", &src.token), ("INFLUX_DEST_TOKEN", "wrong-token-123")],
            1,
            vec!["Could not verify destination token", "INFLUX_DEST_TOKEN"],
        ),
        (
            "missing source token",
            base(&src.url, &dst.url),
            vec![("INFLUX_DEST_TOKEN", &dst.token)],
            1,
            vec!["INFLUX_SRC_TOKEN environment variable has not been set"],
        ),
        (
            "missing destination token",
            base(&src.url, &dst.url),
            vec![("INFLUX_SRC_TOKEN", &src.token)],
            1,
            vec!["INFLUX_DEST_TOKEN environment variable has not been set"],
        ),
        (
            "not an operator token",
            base(&src.url, &dst.url),
            vec![("INFLUX_SRC_TOKEN", &limited), ("INFLUX_DEST_TOKEN", &dst.token)],
            1,
            vec!["not an operator token", "--csv"],
        ),
        (
            "missing source org",
            [base(&src.url, &dst.url), vec!["--src-org".into(), "nope".into()]].concat(),
            tokens(&src, &dst),
            1,
            vec!["The source org could not be verified", "\"nope\""],
        ),
        (
            "missing destination org",
            [
                base(&src.url, &dst.url),
                vec!["--src-org".into(), src.org.clone(), "--dest-org".into(), "nope".into()],
            ]
            .concat(),
            tokens(&src, &dst),
            1,
            vec!["The destination org could not be verified", "\"nope\""],
        ),
        (
            "missing source bucket",
            vec![
                "--src-host".into(),
                src.url.clone(),
                "--dest-host".into(),
                dst.url.clone(),
                "--src-bucket".into(),
                "ghost".into(),
            ],
            tokens(&src, &dst),
            1,
            vec!["The source bucket could not be found", "\"ghost\""],
        ),
        (
            "existing destination bucket",
            vec![
                "--src-host".into(),
                src.url.clone(),
                "--dest-host".into(),
                dst.url.clone(),
                "--src-bucket".into(),
                "test-bucket".into(),
                "--dest-bucket".into(),
                "taken".into(),
            ],
            tokens(&src, &dst),
            1,
            vec!["The destination bucket taken already exists", "Destination buckets must be unique"],
        ),
        (
            "existing --dir-name",
            [base(&src.url, &dst.url), vec!["--dir-name".into(), "existing".into()]].concat(),
            tokens(&src, &dst),
            1,
            vec!["existing already exists", "--dir-name"],
        ),
        (
            "--dest-org without --src-org",
            [base(&src.url, &dst.url), vec!["--dest-org".into(), "x".into()]].concat(),
            tokens(&src, &dst),
            2,
            vec!["--dest-org requires --src-org"],
        ),
        (
            "neither --src-bucket nor --full",
            vec!["--src-host".into(), src.url.clone(), "--dest-host".into(), dst.url.clone()],
            tokens(&src, &dst),
            2,
            vec!["Both --src-bucket and --full have been left empty"],
        ),
        (
            "--full with nobody to confirm",
            vec![
                "--src-host".into(),
                src.url.clone(),
                "--dest-host".into(),
                dst.url.clone(),
                "--full".into(),
            ],
            tokens(&src, &dst),
            1,
            vec!["standard input is not a terminal", "--confirm-full"],
        ),
        (
            "--retry-restore-dir that does not exist",
            [base(&src.url, &dst.url), vec!["--retry-restore-dir".into(), "no-such-dir".into()]].concat(),
            tokens(&src, &dst),
            1,
            vec!["--retry-restore-dir no-such-dir does not exist"],
        ),
    ];
    for (name, args, env, code, needles) in &cases {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run(work.path(), &a, env).await;
        assert_eq!(r.code, *code, "{name}: exit {}\n{}", r.code, r.stderr);
        for n in needles {
            assert!(r.stderr.contains(n), "{name}: stderr lacks {n:?}:\n{}", r.stderr);
        }
        assert_no_token(&r.all(), &secrets);
    }
    // Nothing was created: no bucket at the destination, no backup directory, the existing
    // directory untouched.
    assert_eq!(bucket_names(&dst).await, before);
    let mut entries: Vec<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries, vec!["existing".to_string(), "performance.txt".to_string()]);
    assert_eq!(std::fs::read_dir(work.path().join("existing")).unwrap().count(), 1);
}

/// A file system of 8 KiB for the backup directory: the backup cannot fit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_backup_with_what_to_do() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    seed(&src, &src.bucket, 300).await;
    let work = tempfile::tempdir().unwrap();
    let mnt = work.path().join("small-disk");
    std::fs::create_dir(&mnt).unwrap();
    // A private mount namespace: the tmpfs exists only for the CLI's process.
    let script = format!("mount -t tmpfs -o size=8k tmpfs '{}' && exec \"$0\" \"$@\"", mnt.display());
    let mut args: Vec<String> =
        vec!["-m".into(), "sh".into(), "-c".into(), script, binary().display().to_string()];
    for a in [
        "--src-host",
        &src.url,
        "--dest-host",
        &dst.url,
        "--src-bucket",
        &src.bucket,
        "--dest-bucket",
        "never",
        "--dir-name",
    ] {
        args.push(a.to_string());
    }
    args.push(mnt.join("bk").display().to_string());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = run_with("unshare".into(), work.path(), &a, &tokens(&src, &dst)).await;
    r.expect(1);
    assert!(r.stderr.contains("Backup has failed"), "{}", r.stderr);
    assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);
    assert!(r.stderr.contains("--s3-bucket") && r.stderr.contains("--dir-name"), "{}", r.stderr);
    assert!(!bucket_names(&dst).await.iter().any(|n| n.starts_with("never")));
}

async fn s3_objects(moto: &Moto, bucket: &str, prefix: &str) -> Vec<String> {
    let s3 = moto.s3().await;
    let out = s3.list_objects_v2().bucket(bucket).prefix(prefix).send().await.unwrap();
    let mut keys: Vec<String> = out.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_staging_goes_to_and_comes_back_from_the_bucket() {
    let (src, dst) = tokio::join!(Influxd::start_named("source"), Influxd::start_named("destination"));
    let moto = Moto::start().await;
    seed(&src, &src.bucket, 300).await;
    moto.s3().await.create_bucket().bucket("migration-staging").send().await.unwrap();
    let env_owned: Vec<(String, String)> = moto.env();
    let mut env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.extend(tokens(&src, &dst));
    let work = tempfile::tempdir().unwrap();

    let r = run(
        work.path(),
        &[
            "--src-host",
            &src.url,
            "--dest-host",
            &dst.url,
            "--src-bucket",
            &src.bucket,
            "--dest-bucket",
            "via-s3",
            "--s3-bucket",
            "migration-staging",
            "--dir-name",
            "bk-s3",
        ],
        &env,
    )
    .await;
    r.expect(0);
    assert!(!work.path().join("bk-s3").exists(), "nothing is staged on local disk");
    let keys = s3_objects(&moto, "migration-staging", "bk-s3/").await;
    assert!(keys.iter().any(|k| k.ends_with(".manifest")), "{keys:?}");
    // Loopback: no gzip on the wire, so the files are influx backup's `--compression none` layout.
    assert!(keys.iter().any(|k| k.ends_with(".bolt")), "{keys:?}");
    assert!(keys.iter().filter(|k| k.ends_with(".tar")).count() >= 4, "{keys:?}");
    assert!(keys.contains(&"bk-s3/influx-migration-state.json".to_string()), "{keys:?}");
    let source = dump(&src, &src.org, &src.bucket).await;
    assert_same_points("source", &source, "destination", &dump(&dst, &dst.org, "via-s3").await);

    // The same S3 directory restores again, named by its s3:// URL.
    let r = run(
        work.path(),
        &[
            "--src-host",
            &src.url,
            "--dest-host",
            &dst.url,
            "--src-bucket",
            &src.bucket,
            "--dest-bucket",
            "again",
            "--retry-restore-dir",
            "s3://migration-staging/bk-s3",
        ],
        &env,
    )
    .await;
    r.expect(0);
    assert_same_points("source", &source, "restored from S3", &dump(&dst, &dst.org, "again").await);

    // A CSV migration through S3 too.
    let r = run(
        work.path(),
        &[
            "--src-host",
            &src.url,
            "--dest-host",
            &dst.url,
            "--src-bucket",
            &src.bucket,
            "--dest-bucket",
            "csv-via-s3",
            "--csv",
            "--s3-bucket",
            "migration-staging",
            "--dir-name",
            "csv-s3",
        ],
        &env,
    )
    .await;
    r.expect(0);
    let keys = s3_objects(&moto, "migration-staging", "csv-s3/").await;
    assert!(
        keys.contains(&"csv-s3/bucket_test-bucket.csv".to_string())
            && keys.contains(&"csv-s3/metadata_test-bucket.json".to_string()),
        "{keys:?}"
    );
    assert_same_points("source", &source, "csv through S3", &dump(&dst, &dst.org, "csv-via-s3").await);

    // A bucket that does not exist is refused before anything happens.
    let r = run(
        work.path(),
        &[
            "--src-host",
            &src.url,
            "--dest-host",
            &dst.url,
            "--src-bucket",
            &src.bucket,
            "--dest-bucket",
            "never",
            "--s3-bucket",
            "no-such-bucket",
        ],
        &env,
    )
    .await;
    r.expect(1);
    assert!(r.stderr.contains("no-such-bucket") && r.stderr.contains("does not exist"), "{}", r.stderr);
    assert!(bucket(&dst, "never").await.is_none());
    assert_no_token(&r.all(), &[&src.token, &dst.token]);
}
