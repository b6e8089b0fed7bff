//! `--operator-token` (or `INFLUX_OPERATOR_TOKEN`) for a full restore of a backup whose tokens are
//! hashed (influxd 2.9), as `influx restore --full --operator-token` does in influx CLI 2.8+.
//! Real influxd 2.9.1 at both ends, and a backup made by the real `influx` CLI 2.3.0.
//!
//! After the KV snapshot of such a backup is restored, the destination accepts only the source's
//! tokens, and the restore cannot say which one is the operator's. What broke on main, kept here:
//! - `--operator-token` was an unknown option (exit 2).
//! - `--retry-restore-dir` of a 2.9 backup with only `INFLUX_DEST_TOKEN` restored the KV snapshot,
//!   then failed: the destination's own token had just been replaced, so the operator was locked
//!   out of the destination with a half-restored database. It is now refused before the
//!   destination changes.
//! - A wrong operator token was only found out after the KV restore, the same way.

mod migration_support;

use std::path::Path;

use migration_support::*;
use testbed::flux::assert_same_points;
use testbed::{Influxd, InfluxdVersion};

const BUCKET: &str = "hashed";

/// The destination still takes its own token and has no bucket of the source's.
async fn assert_unchanged(dst: &Influxd) {
    let (status, body) = dst.api(reqwest::Method::GET, "/api/v2/buckets?limit=100", None).await;
    assert_eq!(status, 200, "the destination's own token must still work: {body}");
    let names: Vec<&str> =
        body["buckets"].as_array().unwrap().iter().filter_map(|b| b["name"].as_str()).collect();
    assert!(!names.contains(&BUCKET), "nothing may be restored: {names:?}");
}

async fn backup_with_influx_cli(src: &Influxd, work: &Path) -> String {
    let dir = work.join("full");
    let (code, out) =
        influx_cli(work, &["backup", dir.to_str().unwrap(), "--host", &src.url, "-t", &src.token]).await;
    assert_eq!(code, 0, "influx backup of 2.9.1 failed:\n{out}");
    dir.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hashed_backup_restores_in_full_with_the_operator_token_and_is_refused_without_it() {
    let (src, dst) = tokio::join!(
        Influxd::start_version(InfluxdVersion::V2_9, "source-2.9.1"),
        Influxd::start_version(InfluxdVersion::V2_9, "destination-2.9.1"),
    );
    src.create_bucket(BUCKET).await;
    let values = seed(&src, BUCKET, 50).await;
    let work = tempfile::tempdir().unwrap();
    let dir = backup_with_influx_cli(&src, work.path()).await;
    let retry = ["--dest-host", &dst.url, "--full", "--confirm-full", "--retry-restore-dir", &dir];
    let dest_only = [("INFLUX_DEST_TOKEN", dst.token.as_str())];
    let secrets = [src.token.as_str(), dst.token.as_str(), "not-the-operator-token"];

    // No operator token at all: refused before the destination changes, saying what to give.
    let run1 = run(work.path(), &retry, &dest_only).await;
    run1.expect(1);
    let all = run1.all();
    assert_no_token(&all, &secrets);
    assert!(all.contains("hashed"), "{all}");
    assert!(all.contains("--operator-token") && all.contains("INFLUX_OPERATOR_TOKEN"), "{all}");
    assert_unchanged(&dst).await;

    // A token that is not the source's operator token: refused the same way.
    let wrong =
        [("INFLUX_DEST_TOKEN", dst.token.as_str()), ("INFLUX_OPERATOR_TOKEN", "not-the-operator-token")];
    let run2 = run(work.path(), &retry, &wrong).await;
    run2.expect(1);
    let all = run2.all();
    assert_no_token(&all, &secrets);
    assert!(all.contains("operator token") && all.contains("not a token of"), "{all}");
    assert_unchanged(&dst).await;

    // The source's operator token on the command line: restored, every value.
    let mut args = retry.to_vec();
    args.extend(["--operator-token", src.token.as_str()]);
    let run3 = run(work.path(), &args, &dest_only).await;
    run3.expect(0);
    assert_no_token(&run3.all(), &[&dst.token]);
    let source = dump(&src, &src.org, BUCKET).await;
    assert_eq!(source.len(), values);
    let at_destination = Endpoint { server: &dst, token: &src.token };
    assert_same_points("source", &source, "destination", &dump(at_destination, &src.org, BUCKET).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_migration_with_a_wrong_operator_token_leaves_the_destination_as_it_was() {
    let (src, dst) = tokio::join!(
        Influxd::start_version(InfluxdVersion::V2_9, "source-2.9.1"),
        Influxd::start_version(InfluxdVersion::V2_9, "destination-2.9.1"),
    );
    src.create_bucket(BUCKET).await;
    seed(&src, BUCKET, 10).await;
    let work = tempfile::tempdir().unwrap();
    let args =
        ["--src-host", &src.url, "--dest-host", &dst.url, "--full", "--confirm-full", "--dir-name", "bk"];
    let mut env = tokens(&src, &dst);
    env.push(("INFLUX_OPERATOR_TOKEN", "not-the-operator-token"));
    let run = run(work.path(), &args, &env).await;
    run.expect(1);
    let all = run.all();
    assert_no_token(&all, &[&src.token, &dst.token, "not-the-operator-token"]);
    assert!(all.contains("not a token of"), "{all}");
    assert_unchanged(&dst).await;
}
