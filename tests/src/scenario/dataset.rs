//! A realistic source instance for the local stack: several orgs and buckets holding points over
//! several weeks (so several shard groups), extra users and tokens, a dashboard and a task.

use reqwest::Method;
use serde_json::{Value, json};

use crate::Influxd;

/// What was loaded, for the report and for checks after the migration.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Points (lines) written.
    pub points: u64,
    /// (org name, bucket name, field values written)
    pub buckets: Vec<(String, String, u64)>,
    pub users: Vec<String>,
    pub token_descriptions: Vec<String>,
    pub dashboard: String,
    pub task: String,
}

/// One week in seconds.
const WEEK: i64 = 7 * 24 * 3600;

/// Loads `points` points (lines of four fields each) into `source`, spread over the buckets
/// (besides what its onboarding created).
/// `progress` hears about each step.
pub async fn load(source: &Influxd, points: u64, progress: impl Fn(&str)) -> Result<Loaded, String> {
    let mut loaded = Loaded::default();
    let second_org = "analytics";
    let second_org_id = source.create_org(second_org).await;
    let buckets = [
        (source.org.clone(), source.org_id.clone(), "telegraf".to_string()),
        (source.org.clone(), source.org_id.clone(), "app-metrics".to_string()),
        (second_org.to_string(), second_org_id.clone(), "sensors".to_string()),
    ];
    let mut bucket_ids = Vec::new();
    for (_, org_id, name) in &buckets {
        bucket_ids.push(source.create_bucket_in(org_id, name).await);
    }

    // Points of four fields each, spread over four weeks ending a week ago.
    let lines_total = points;
    let per_bucket = lines_total.div_ceil(buckets.len() as u64);
    let end = time::OffsetDateTime::now_utc().unix_timestamp() - WEEK;
    let start = end - 4 * WEEK;
    for (org, org_id, bucket) in &buckets {
        progress(&format!("writing {per_bucket} points ({} values) into {org}/{bucket}", per_bucket * 4));
        let step = ((end - start) as u64 * 1_000_000_000 / per_bucket.max(1)) as i64;
        let mut written = 0u64;
        while written < per_bucket {
            let n = (per_bucket - written).min(20_000);
            let mut body = String::with_capacity(n as usize * 120);
            for i in written..written + n {
                let host = i % 97;
                let t = start * 1_000_000_000 + i as i64 * step;
                body.push_str(&format!(
                    "{m},host=host-{host:02},region={r} usage={u}.{d},count={c}i,ok={ok},label=\"{bucket} {i}\" {t}\n",
                    m = if i % 2 == 0 { "cpu" } else { "disk" },
                    r = ["eu-west-1", "us-east-1", "ap-south-1"][(i % 3) as usize],
                    u = i % 100,
                    d = i % 10,
                    c = i,
                    ok = i % 5 != 0,
                ));
            }
            write(source, org_id, bucket, body).await?;
            written += n;
        }
        loaded.points += per_bucket;
        loaded.buckets.push((org.clone(), bucket.clone(), per_bucket * 4));
    }

    progress("creating users, tokens, a dashboard and a task");
    for user in ["alice", "bob"] {
        let (status, body) = source.api(Method::POST, "/api/v2/users", Some(json!({"name": user}))).await;
        expect(status, 201, "create user", &body)?;
        loaded.users.push(user.to_string());
    }
    let telegraf_id = &bucket_ids[0];
    for (description, permissions) in [
        (
            "telegraf writer",
            json!([{"action": "write", "resource": {"type": "buckets", "id": telegraf_id, "orgID": source.org_id}}]),
        ),
        (
            "grafana reader",
            json!([{"action": "read", "resource": {"type": "buckets", "orgID": source.org_id}}]),
        ),
    ] {
        let (status, body) = source
            .api(
                Method::POST,
                "/api/v2/authorizations",
                Some(json!({"orgID": source.org_id, "description": description, "permissions": permissions})),
            )
            .await;
        expect(status, 201, "create token", &body)?;
        loaded.token_descriptions.push(description.to_string());
    }
    let (status, body) = source
        .api(
            Method::POST,
            "/api/v2/dashboards",
            Some(json!({"orgID": source.org_id, "name": "Fleet overview", "description": "CPU and disk"})),
        )
        .await;
    expect(status, 201, "create dashboard", &body)?;
    loaded.dashboard = "Fleet overview".into();
    let flux = "option task = {name: \"hourly cpu rollup\", every: 1h}\n\
                from(bucket: \"telegraf\") |> range(start: -1h) |> filter(fn: (r) => r._measurement == \"cpu\") \
                |> aggregateWindow(every: 1h, fn: mean) |> to(bucket: \"app-metrics\")";
    let (status, body) = source
        .api(
            Method::POST,
            "/api/v2/tasks",
            Some(json!({"orgID": source.org_id, "flux": flux, "status": "inactive"})),
        )
        .await;
    expect(status, 201, "create task", &body)?;
    loaded.task = "hourly cpu rollup".into();
    Ok(loaded)
}

async fn write(source: &Influxd, org_id: &str, bucket: &str, body: String) -> Result<(), String> {
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/api/v2/write", source.url))
        .query(&[("orgID", org_id), ("bucket", bucket), ("precision", "ns")])
        .header("Authorization", source.auth())
        .body(body)
        .send()
        .await
        .map_err(|e| format!("write to {bucket}: {e}"))?;
    if resp.status().as_u16() != 204 {
        return Err(format!(
            "write to {bucket}: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        ));
    }
    Ok(())
}

fn expect(status: u16, want: u16, what: &str, body: &Value) -> Result<(), String> {
    if status == want { Ok(()) } else { Err(format!("{what}: {status} {body}")) }
}
