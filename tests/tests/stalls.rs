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

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testbed::stack::{LocalStack, StackOptions};

/// Writes `n` points `probe,phase=<phase> seq=<i>i,v=<value>` through the gateway in
/// `requests` requests; returns seq -> value as acknowledged.
async fn write(stack: &LocalStack, phase: &str, n: u64, requests: u64) -> BTreeMap<String, String> {
    let base = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let mut written = BTreeMap::new();
    let per = n.div_ceil(requests);
    for r in 0..requests {
        let mut body = String::new();
        for i in r * per..((r + 1) * per).min(n) {
            let value = format!("{}.5", i * 3 + 1);
            body.push_str(&format!("probe,phase={phase} seq={i}i,v={value} {}\n", base + i as i64));
            written.insert(i.to_string(), value);
        }
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v2/write", stack.gateway.url))
            .query(&[("org", stack.source.org.as_str()), ("bucket", stack.source.bucket.as_str())])
            .header("Authorization", format!("Token {}", stack.source.token))
            .body(body)
            .send()
            .await
            .expect("write through the gateway");
        let status = resp.status().as_u16();
        assert_eq!(status, 204, "acknowledged: {}", resp.text().await.unwrap_or_default());
    }
    written
}

/// seq -> v of the phase's points in `db`.
async fn points(stack: &LocalStack, db: &testbed::Influxd, phase: &str) -> BTreeMap<String, String> {
    let flux = format!(
        "from(bucket: \"{}\") |> range(start: 0) |> filter(fn: (r) => r._measurement == \"probe\" and r.phase == \"{phase}\") |> pivot(rowKey: [\"_time\"], columnKey: [\"_field\"], valueColumn: \"_value\")",
        stack.source.bucket
    );
    db.query_as(&flux, &stack.source.token)
        .await
        .iter()
        .map(|r| (r.get("seq").unwrap_or("").to_string(), r.get("v").unwrap_or("").to_string()))
        .collect()
}

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

/// Maps the clients' (source) token to `to` on the way to the destination.
async fn map_token(stack: &LocalStack, to: &str) {
    let sm = aws_sdk_secretsmanager::Client::new(&stack.moto.sdk_config().await);
    let current = sm.get_secret_value().secret_id(&stack.outputs.secret_id).send().await.expect("get secret");
    let mut secret: Value = serde_json::from_str(current.secret_string().unwrap()).unwrap();
    secret["mappings"] = json!({"tokens": {stack.source.token.clone(): to}});
    sm.put_secret_value()
        .secret_id(&stack.outputs.secret_id)
        .secret_string(secret.to_string())
        .send()
        .await
        .expect("put secret");
    // The functions' secret cache time (2 s), and some.
    tokio::time::sleep(Duration::from_secs(3)).await;
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

fn missing(acked: &BTreeMap<String, String>, got: &BTreeMap<String, String>) -> usize {
    acked.iter().filter(|(k, v)| got.get(*k) != Some(*v)).count()
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
    map_token(&stack, &token).await;
    let (code, out, err) = stack.live(&["unthrottle"]).await;
    assert_eq!(code, 0, "unthrottle: {out}{err}");

    // The mapped token works: a first phase reaches both ends.
    let before = write(&stack, "before", 40, 2).await;
    eventually("the first phase at the destination", Duration::from_secs(90), logs, || async {
        missing(&before, &points(&stack, &stack.destination, "before").await) == 0
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
    let during = write(&stack, "during", 60, 3).await;

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
    assert_eq!(points(&stack, &stack.destination, "during").await.len(), 0, "nothing got through");

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
    map_token(&stack, &fixed).await;
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
    let after = write(&stack, "after", 30, 1).await;
    eventually("the last phase at the destination", Duration::from_secs(90), logs, || async {
        missing(&after, &points(&stack, &stack.destination, "after").await) == 0
    })
    .await;

    let mut rows = Vec::new();
    for (phase, acked) in [("before", &before), ("during", &during), ("after", &after)] {
        let at_source = acked.len() - missing(acked, &points(&stack, &stack.source, phase).await);
        let at_destination = acked.len() - missing(acked, &points(&stack, &stack.destination, phase).await);
        assert_eq!(at_source, acked.len(), "{phase}: every acknowledged point at the source");
        assert_eq!(at_destination, acked.len(), "{phase}: every acknowledged point at the destination");
        rows.push((phase, acked.len(), at_source, at_destination));
    }
    println!(
        "case                                   phase   acknowledged  at source  at destination  dead-lettered  parked  redriven"
    );
    for (phase, acked, src, dst) in rows {
        let (dl, pk, rd) =
            if phase == "during" { (parked.len(), parked.len(), redriven.len()) } else { (0, 0, 0) };
        println!(
            "revoked destination token: park+redrive  {phase:<7} {acked:>12}  {src:>9}  {dst:>14}  {dl:>13}  {pk:>6}  {rd:>8}"
        );
    }
}
