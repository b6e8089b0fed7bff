//! The matrix's live cell for a hashed-token source into an older destination (issue 14): a
//! client of influxd 2.9.1 keeps its own token through the gateway while the metadata is rebuilt
//! at a 2.7.12 destination with new tokens, before and after cutover.
//!
//! The sequence is the runbook's, on the local stack (moto, real functions behind `cargo lambda
//! watch`, real influxd): the destination writer held; a client with its own read/write token
//! (made at the source, which keeps only its hash) writes through the gateway; `influx-migration
//! --full` rebuilds the destination's metadata (the destination cannot read 2.9's metadata
//! store), recreating the client's authorization with a new token; `tokens --apply` gives the
//! gateway the map from the hash of the client's token to the new one; the writer is released;
//! every point the client wrote is at both ends, value by value; cutover; the client reads
//! through the router with its old token and writes again.
//!
//! What broke on main: `--full` from 2.9.1 into 2.7.12 was refused (it could not be seeded), and
//! with no token map the destination writer could only forward the client's token, which the
//! destination never issued.

use std::collections::BTreeMap;

use serde_json::json;
use testbed::InfluxdVersion;
use testbed::reads::{fetch, flux};
use testbed::stack::{LocalStack, StackOptions};

/// Writes `n` points of `phase` through the gateway with `token`; panics unless acknowledged.
async fn write_as(stack: &LocalStack, token: &str, phase: &str, n: u64) -> BTreeMap<String, String> {
    let base = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let mut body = String::new();
    let mut written = BTreeMap::new();
    for i in 0..n {
        let value = format!("{}.5", i * 3 + 1);
        body.push_str(&format!("client,phase={phase} seq={i}i,v={value} {}\n", base + i as i64));
        written.insert(i.to_string(), value);
    }
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v2/write", stack.gateway.url))
        .query(&[("org", stack.source.org.as_str()), ("bucket", stack.source.bucket.as_str())])
        .header("Authorization", format!("Token {token}"))
        .body(body)
        .send()
        .await
        .expect("write through the gateway");
    let status = resp.status().as_u16();
    assert_eq!(status, 204, "{phase}: {}", resp.text().await.unwrap_or_default());
    written
}

/// seq -> v of `phase` in `db`'s bucket, read with `token`.
async fn read_as(db: &testbed::Influxd, token: &str, phase: &str) -> BTreeMap<String, String> {
    let q = format!(
        "from(bucket: \"{}\") |> range(start: 0) |> filter(fn: (r) => r._measurement == \"client\" and r.phase == \"{phase}\") |> pivot(rowKey: [\"_time\"], columnKey: [\"_field\"], valueColumn: \"_value\")",
        db.bucket
    );
    db.query_as(&q, token)
        .await
        .iter()
        .map(|r| (r.get("seq").unwrap_or("").to_string(), r.get("v").unwrap_or("").to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_9_1_client_keeps_its_token_through_a_rebuild_into_2_7_12_before_and_after_cutover() {
    let stack = LocalStack::start(
        StackOptions {
            prefix: "hash-live".into(),
            versions: (InfluxdVersion::V2_9, InfluxdVersion::V2_7),
            ..StackOptions::default()
        },
        |m| eprintln!("stack: {m}"),
    )
    .await
    .unwrap_or_else(|e| panic!("the local stack did not start: {e}"));
    let (src, dst) = (&stack.source, &stack.destination);

    // The client's own token, read and write on the bucket; 2.9.1 shows it only in this answer.
    let bucket = json!({"type": "buckets", "orgID": src.org_id, "id": src.bucket_id});
    let (status, made) = src
        .api(
            reqwest::Method::POST,
            "/api/v2/authorizations",
            Some(json!({
                "orgID": src.org_id,
                "description": "client on web-1",
                "permissions": [{"action": "read", "resource": bucket}, {"action": "write", "resource": bucket}]
            })),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let client = made["token"].as_str().expect("the new token, once").to_string();

    let (code, out, err) = stack.live(&["throttle"]).await;
    assert_eq!(code, 0, "throttle: {out}{err}");
    let before = write_as(&stack, &client, "before-seed", 30).await;

    let work = tempfile::tempdir().unwrap();
    let backup = work.path().join("bk");
    let out = stack
        .cli()
        .current_dir(work.path())
        // As the runbook seeds under live traffic: writes still in flight to the source are
        // replayed at the destination later, so the comparison is `verify` before cutover.
        .args(["--src-host", &src.url, "--dest-host", &dst.url, "--full", "--confirm-full", "--no-verify"])
        .arg("--dir-name")
        .arg(&backup)
        .output()
        .await
        .expect("run the seeding");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "--full into an older destination:\n{stdout}\n{stderr}");
    for secret in [&src.token, &dst.token, &client] {
        assert!(
            !stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()),
            "a token was printed"
        );
    }

    let (code, out, err) = stack.live(&["tokens", "--dir-name", backup.to_str().unwrap(), "--apply"]).await;
    assert_eq!(code, 0, "tokens --apply: {out}{err}");
    assert!(out.contains("client on web-1"), "{out}");
    assert!(!out.contains(&client), "no token printed without --show-tokens");
    // No wait for the writers to read the new secret: a destination writer still holding the old
    // one is refused (401), retries, and takes the mapping at its next read of the secret.

    let (code, out, err) = stack.live(&["unthrottle"]).await;
    assert_eq!(code, 0, "unthrottle: {out}{err}");
    let after = write_as(&stack, &client, "after-seed", 30).await;
    stack.drain_destination().await;
    for (phase, written) in [("before-seed", &before), ("after-seed", &after)] {
        assert_eq!(&read_as(src, &src.token, phase).await, written, "source, {phase}: value by value");
        assert_eq!(&read_as(dst, &dst.token, phase).await, written, "destination, {phase}: value by value");
    }

    // Cutover's barrier waits for both writers itself; then the routers follow the secret.
    let (code, out, err) = stack.live(&["cutover"]).await;
    assert_eq!(code, 0, "cutover: {out}{err}");
    LocalStack::wait_for_routers(&out).await;

    // A read through the router with the client's old token answers from the destination.
    let q = format!(
        "from(bucket: \"{}\") |> range(start: 0, stop: 2262-01-01T00:00:00Z) |> filter(fn: (r) => r._measurement == \"client\" and r._field == \"v\") |> group() |> count()",
        src.bucket
    );
    let read = flux(src, &q);
    let answer = fetch(&stack.gateway.url, &read, &client).await.expect("read through the gateway");
    let text = String::from_utf8_lossy(&answer.body).to_string();
    assert_eq!(answer.status, 200, "the client's own token reads after cutover: {text}");
    assert!(text.contains(",60"), "all 60 points: {text}");
    let direct = fetch(&dst.url, &read, &dst.token).await.expect("read the destination directly");
    assert_eq!(text, String::from_utf8_lossy(&direct.body), "the router answers what the destination holds");
    // The client's old token means nothing at the destination itself: the gateway maps it.
    let refused = fetch(&dst.url, &read, &client).await.expect("read the destination directly");
    assert_eq!(refused.status, 401, "{}", String::from_utf8_lossy(&refused.body));

    let last = write_as(&stack, &client, "after-cutover", 10).await;
    stack.drain_destination().await;
    assert_eq!(read_as(dst, &dst.token, "after-cutover").await, last, "after cutover, value by value");
    assert_eq!(read_as(src, &src.token, "after-cutover").await, last);
}
