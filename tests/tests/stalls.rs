//! A stall is visible and reversible, on the local stack (real influxd at both ends, moto, the
//! functions under `cargo lambda watch`): a token revoked at the destination stops the
//! destination writer; `status` names the shard, the bucket, the status and the expiry
//! headroom; `park` moves the blocked records into dead-letter storage so the shard moves on;
//! once the token is fixed, `redrive` writes them, and every acknowledged point is at both ends.
//!
//! On main the writer retried the record forever with a log line per retry and nothing else:
//! no record of which shard or since when, and no way to set the records aside and resume.
//!
//! The test prints its row of the fault matrix (case, acknowledged, present at each end,
//! dead-lettered, parked, redriven).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testbed::scenario::probe;
use testbed::stack::{LocalStack, StackOptions};

/// A new all-access token of the destination's org: (authorization ID, token).
async fn destination_token(stack: &LocalStack) -> (String, String) {
    let db = &stack.destination;
    let (_, orgs) = db.api_as(&stack.source.token, reqwest::Method::GET, "/api/v2/orgs", None).await;
    let org_id = orgs["orgs"][0]["id"].as_str().expect("the destination's org").to_string();
    let permissions: Vec<Value> = ["read", "write"]
        .iter()
        .map(|a| json!({"action": a, "resource": {"type": "buckets", "orgID": org_id}}))
        .collect();
    let (status, auth) = db
        .api_as(
            &stack.source.token,
            reqwest::Method::POST,
            "/api/v2/authorizations",
            Some(json!({"orgID": org_id, "description": "replay", "permissions": permissions})),
        )
        .await;
    assert_eq!(status, 201, "{auth}");
    (auth["id"].as_str().unwrap().to_string(), auth["token"].as_str().unwrap().to_string())
}

async fn status_json(stack: &LocalStack) -> Value {
    let (code, out, err) = stack.live(&["status", "--json"]).await;
    assert!(code == 0 || code == 1, "status: {out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json: {e}: {out}{err}"))
}

async fn keys_under(stack: &LocalStack, prefix: &str) -> Vec<String> {
    stack
        .dead_letter_keys()
        .await
        .expect("list the bucket")
        .into_iter()
        .filter(|k| k.starts_with(prefix))
        .collect()
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, logs: impl Fn() -> String, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}; logs:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_at_the_destination_stalls_visibly_and_park_then_redrive_loses_nothing() {
    let stack = LocalStack::start(
        StackOptions {
            prefix: "stall-live".into(),
            stream_writer_timeout: Duration::from_secs(5),
            destination_shares_source_token: true,
            destination_writer_env: vec![("STALL_ALERT_SECONDS".into(), "0".into())],
            ..StackOptions::default()
        },
        |m| eprintln!("stack: {m}"),
    )
    .await
    .unwrap_or_else(|e| panic!("the local stack did not start: {e}"));
    let logs = || stack.destination_writer.logs();
    let (auth_id, token) = destination_token(&stack).await;
    stack.set_mappings(json!({"tokens": {stack.source.token.clone(): token.clone()}})).await;
    let (code, out, err) = stack.live(&["unthrottle"]).await;
    assert_eq!(code, 0, "unthrottle: {out}{err}");

    // The mapped token works: a first phase reaches both ends.
    let before = probe::write_v2(&stack, "before", 40, 2).await;
    eventually("the first phase at the destination", Duration::from_secs(90), logs, || async {
        probe::present(
            &before,
            &probe::read(&stack, &stack.destination, &stack.source.bucket, "before").await,
        ) == before.len()
    })
    .await;

    // The destination's token is revoked; clients keep writing and are acknowledged.
    let (status, _) = stack
        .destination
        .api_as(
            &stack.source.token,
            reqwest::Method::PATCH,
            &format!("/api/v2/authorizations/{auth_id}"),
            Some(json!({"status": "inactive"})),
        )
        .await;
    assert_eq!(status, 200);
    let during = probe::write_v2(&stack, "during", 60, 3).await;

    // status names the stalled shard: why, the bucket, the expiry headroom.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stall = loop {
        let doc = status_json(&stack).await;
        let found = doc["stalls"]["shards"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["stall"]["target"] == "destination").cloned());
        if let Some(s) = found {
            break s;
        }
        assert!(Instant::now() < deadline, "status showed no stall within 60 s: {doc}; logs:\n{}", logs());
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(stall["stall"]["status"], 403, "an inactive token: {stall}");
    assert_eq!(stall["stall"]["class"], "configuration", "{stall}");
    assert_eq!(stall["stall"]["bucket"], stack.source.bucket.as_str(), "{stall}");
    let headroom = stall["expiry_headroom_seconds"].as_i64().expect("the expiry headroom");
    assert!(headroom > 0 && headroom <= 168 * 3600, "{stall}");
    let (_, text, _) = stack.live(&["status"]).await;
    assert!(
        text.contains("destination writer, shardId-") && text.contains("configuration 403 from"),
        "status names the stall in words:\n{text}"
    );
    // The writer's log names it too, and publishes the metric the alarm watches.
    let log = logs();
    assert!(log.contains("shard stalled"), "{log}");
    assert!(log.contains("\"StalledSeconds\"") && log.contains("\"InfluxLiveMigration\""), "{log}");
    assert_eq!(
        probe::read(&stack, &stack.destination, &stack.source.bucket, "during").await.len(),
        0,
        "nothing got through"
    );

    // Parking needs a note; with one, the shard moves on and the records go to dead letters.
    let (code, _, err) = stack.live(&["park"]).await;
    assert_eq!(code, 2, "park without --note is a usage error: {err}");
    let (code, out, err) = stack.live(&["park", "--all-shards", "--note", "token revoked, INC-7"]).await;
    assert_eq!(code, 0, "park: {out}{err}");
    assert!(out.contains("parked shardId-") && out.contains("failing with 403"), "{out}");
    let (code, again, err) = stack.live(&["park", "--all-shards", "--note", "token revoked, INC-7"]).await;
    assert!(code == 0 || code == 4, "a second park is harmless: {again}{err}");
    stack
        .wait_for_catch_up(Duration::from_secs(2), Duration::from_secs(2), Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}; logs:\n{}", logs()));
    LocalStack::wait_idle(&stack.destination_mapping, Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}; logs:\n{}", logs()));
    let parked = keys_under(&stack, "dead-letters/destination/").await;
    assert!(!parked.is_empty(), "the blocked records are in dead-letter storage");
    let doc = status_json(&stack).await;
    assert_eq!(doc["stalls"]["shards"], json!([]), "no stall once parked: {doc}");
    for key in &parked {
        let s3 = stack.moto.s3().await;
        let obj = s3.get_object().bucket(&stack.outputs.dead_letter_bucket).key(key).send().await.unwrap();
        let text = String::from_utf8(obj.body.collect().await.unwrap().into_bytes().to_vec()).unwrap();
        assert!(text.contains("parked by the operator (token revoked, INC-7)"), "{text}");
        assert!(!text.contains(&stack.source.token) && !text.contains(&token), "no token in {key}");
    }

    // The cause is fixed (a new token), the rule released, the records redriven.
    let (_, fixed) = destination_token(&stack).await;
    stack.set_mappings(json!({"tokens": {stack.source.token.clone(): fixed.clone()}})).await;
    let (code, out, err) = stack.live(&["park", "--release"]).await;
    assert_eq!(code, 0, "release: {out}{err}");
    let (code, dry, err) = stack.live(&["redrive", "--dry-run"]).await;
    assert_eq!(code, 0, "{dry}{err}");
    assert_eq!(dry.matches("would write").count(), parked.len(), "{dry}");
    let (code, out, err) = stack.live(&["redrive", "--reason", "parked"]).await;
    assert_eq!(code, 0, "redrive: {out}{err}");
    assert!(out.contains(&format!("{n} of {n} record(s) written", n = parked.len())), "{out}");
    let redriven = keys_under(&stack, "redriven/").await;
    assert_eq!(redriven.len(), parked.len());
    assert!(keys_under(&stack, "dead-letters/").await.is_empty(), "what landed is moved");
    let (code, out, _) = stack.live(&["redrive"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("no dead letter"), "a second redrive finds nothing: {out}");

    // And the clients go on writing with the fixed mapping.
    let after = probe::write_v2(&stack, "after", 30, 1).await;
    eventually("the last phase at the destination", Duration::from_secs(90), logs, || async {
        probe::present(&after, &probe::read(&stack, &stack.destination, &stack.source.bucket, "after").await)
            == after.len()
    })
    .await;

    let mut rows = Vec::new();
    for (phase, acked) in [("before", &before), ("during", &during), ("after", &after)] {
        let bucket = &stack.source.bucket;
        let at_source = probe::present(acked, &probe::read(&stack, &stack.source, bucket, phase).await);
        let at_destination =
            probe::present(acked, &probe::read(&stack, &stack.destination, bucket, phase).await);
        let aside = if phase == "during" { parked.len() } else { 0 };
        rows.push(probe::MatrixRow {
            case: format!("revoked destination token, park+redrive: {phase}"),
            acknowledged: acked.len(),
            at_source,
            at_destination,
            dead_lettered: aside,
            parked: aside,
            redriven: if phase == "during" { redriven.len() } else { 0 },
        });
    }
    probe::print_matrix(&rows);
    for r in &rows {
        assert_eq!(
            (r.at_source, r.at_destination),
            (r.acknowledged, r.acknowledged),
            "{}: nothing lost",
            r.case
        );
    }
}
