//! Resolving where a v1 write lands, against a real influxd 2.7.12.
//!
//! Issue 29: a v1 write's org is its credential's. At ea9e023 the gateway could only tell it when
//! the credential read exactly one org, so every v1 write with an operator token (which reads
//! every org) went unresolved, and the stream writers could not group it with the writes to the
//! same bucket: in the demo, where clients alternate v1 and v2 with the operator token, the
//! source writer made a write for every two records and fell up to 14 s behind.

use kinesis_writer::target::resolve;
use shared::envelope::{Api, WriteParams};
use shared::sensitive::Sensitive;
use testbed::Influxd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_write_with_an_operator_token_resolves_to_its_orgs_bucket() {
    let db = Influxd::start_named("target-v1").await;
    // A second org holding a bucket of the same name: the name alone cannot tell them apart.
    let other_org = db.create_org("elsewhere").await;
    db.create_bucket_in(&other_org, &db.bucket).await;
    let http = reqwest::Client::new();
    let auth = Sensitive::new(format!("Token {}", db.token));
    let params =
        WriteParams { db: Some(db.bucket.clone()), rp: Some("autogen".into()), ..Default::default() };
    let target = resolve(&http, &db.url, Api::V1, &params, Some(&auth)).await.expect("resolved");
    assert_eq!(target.org_id, db.org_id, "the token's own org");
    assert_eq!(target.bucket_id, db.bucket_id);
    assert_eq!(target.bucket, db.bucket);
    assert_eq!(target.rp.as_deref(), Some("autogen"));

    // A token of the other org, which reads only that org, resolves there as before.
    let (status, made) = db
        .api(
            reqwest::Method::POST,
            "/api/v2/authorizations",
            Some(serde_json::json!({"orgID": other_org, "permissions": [
                {"action": "write", "resource": {"type": "buckets", "orgID": other_org}},
                {"action": "read", "resource": {"type": "buckets", "orgID": other_org}},
                {"action": "read", "resource": {"type": "orgs", "id": other_org}}]})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let other = Sensitive::new(format!("Token {}", made["token"].as_str().unwrap()));
    let target = resolve(&http, &db.url, Api::V1, &params, Some(&other)).await.expect("resolved");
    assert_eq!(target.org_id, other_org);
    assert_ne!(target.bucket_id, db.bucket_id);
}
