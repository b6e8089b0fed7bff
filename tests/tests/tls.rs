//! TLS per endpoint: the endpoint secret's `skip_verify` holds for every component that talks to
//! that endpoint — the kinesis-writer's admission check, both stream writers, the query router —
//! against real influxd serving HTTPS with a self-signed certificate. With verification on (the
//! default), nothing trusts that certificate and nothing is lost; with `skip_verify`, everything
//! goes through.
//!
//! Regression (issue 11, item 3): only the query router read `skip_verify`; the stream writers
//! used the `SKIP_VERIFY` variable (never set by the deploy) and the admission check a default
//! client, so an operator's `skip_verify` left the stream stalled.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use testbed::stack::events::HttpRequest;
use testbed::stack::lambda::Invocation;
use testbed::stack::poller::{Delivery, ShardPoller, StartPosition};
use testbed::{Influxd, LambdaRuntime, Moto};

const STREAM: &str = "tls-writes";
const SECRET: &str = "tls-endpoints";
const DEAD_LETTERS: &str = "tls-dead-letters";

struct Bed {
    source: Influxd,
    destination: Influxd,
    moto: Moto,
    gateway: LambdaRuntime,
    router: LambdaRuntime,
    source_writer: LambdaRuntime,
    destination_writer: LambdaRuntime,
}

impl Bed {
    async fn start() -> Bed {
        let source = Influxd::start_tls("source", &format!("tls-token-{}", rand::random::<u64>())).await;
        let destination = Influxd::start_tls("destination", &source.token).await;
        let moto = Moto::start().await;
        let config = moto.sdk_config().await;
        aws_sdk_kinesis::Client::new(&config)
            .create_stream()
            .stream_name(STREAM)
            .shard_count(1)
            .send()
            .await
            .expect("create stream");
        moto.s3().await.create_bucket().bucket(DEAD_LETTERS).send().await.expect("create bucket");
        let bed_secret = json!({
            "source": {"url": source.url},
            "destination": {"url": destination.url},
            "read": "source"
        });
        aws_sdk_secretsmanager::Client::new(&config)
            .create_secret()
            .name(SECRET)
            .secret_string(bed_secret.to_string())
            .send()
            .await
            .expect("create secret");
        let mut env = moto.env();
        env.push(("SECRET_ID".into(), SECRET.into()));
        env.push(("SECRET_TTL_SECONDS".into(), "1".into()));
        let with = |extra: &[(&str, &str)]| {
            let mut e = env.clone();
            e.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            e
        };
        let gateway = LambdaRuntime::start("kinesis-writer", &with(&[("STREAM_NAME", STREAM)])).await;
        let router = LambdaRuntime::start("query-router", &with(&[])).await;
        let writer = |target: &'static str| {
            with(&[
                ("TARGET", target),
                ("DEAD_LETTER_BUCKET", DEAD_LETTERS),
                ("WRITE_TIMEOUT_SECONDS", "5"),
                ("RETRY_BUDGET_SECONDS", "2"),
            ])
        };
        let source_writer = LambdaRuntime::start("stream-writer", &writer("source")).await;
        let destination_writer = LambdaRuntime::start("stream-writer", &writer("destination")).await;
        Bed { source, destination, moto, gateway, router, source_writer, destination_writer }
    }

    async fn set_skip_verify(&self, skip: bool) {
        let secret = json!({
            "source": {"url": self.source.url, "skip_verify": skip},
            "destination": {"url": self.destination.url, "skip_verify": skip},
            "read": "source"
        });
        aws_sdk_secretsmanager::Client::new(&self.moto.sdk_config().await)
            .put_secret_value()
            .secret_id(SECRET)
            .secret_string(secret.to_string())
            .send()
            .await
            .expect("put secret");
        // The functions' secret cache time (1 s), and some.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
    }

    async fn write(&self, body: &str, token: &str) -> Invocation {
        let request = HttpRequest::post("/api/v2/write")
            .query("org", &self.source.org)
            .query("bucket", &self.source.bucket)
            .header("Content-Type", "text/plain; charset=utf-8")
            .token(token)
            .body(body.as_bytes().to_vec());
        self.gateway.invoke(&request.rest_event()).await
    }

    async fn query(&self) -> (u64, String) {
        let flux = format!(
            "from(bucket: \"{}\") |> range(start: 0) |> filter(fn: (r) => r._measurement == \"tls\")",
            self.source.bucket
        );
        let request = HttpRequest::post("/api/v2/query")
            .query("org", &self.source.org)
            .header("Content-Type", "application/vnd.flux")
            .token(&self.source.token)
            .body(flux.into_bytes());
        let answer = self.router.invoke(&request.rest_event()).await;
        if answer.streamed() {
            // The router streams (its default): the status is the prelude's.
            return (u64::from(answer.status), String::from_utf8_lossy(&answer.body).into_owned());
        }
        let status = answer.payload["statusCode"].as_u64().unwrap_or(0);
        let body = answer.payload["body"].as_str().unwrap_or("").to_string();
        let body = if answer.payload["isBase64Encoded"].as_bool() == Some(true) {
            String::from_utf8_lossy(
                &base64::engine::general_purpose::STANDARD.decode(&body).unwrap_or_default(),
            )
            .into_owned()
        } else {
            body
        };
        (status, body)
    }

    /// Delivers the whole stream to `writer` once, as the event source mapping would.
    async fn deliver(&self, writer: &LambdaRuntime) -> Vec<Delivery> {
        let kinesis = aws_sdk_kinesis::Client::new(&self.moto.sdk_config().await);
        let mut out = Vec::new();
        for mut p in ShardPoller::for_stream(&kinesis, STREAM, StartPosition::TrimHorizon, 100).await.unwrap()
        {
            out.push(p.poll(&writer.invoker()).await.unwrap_or_else(|e| panic!("{e}")));
        }
        out
    }

    /// Dead letters (the writers' stall records share the bucket under `stalls/`).
    async fn dead_letters(&self) -> usize {
        let s3 = self.moto.s3().await;
        let list = s3.list_objects_v2().bucket(DEAD_LETTERS).prefix("dead-letters/").send().await;
        list.expect("list").contents().len()
    }
}

fn status(i: &Invocation) -> u64 {
    i.payload["statusCode"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secrets_skip_verify_is_honoured_by_every_component_that_talks_to_an_endpoint() {
    let bed = Bed::start().await;
    let point = "tls v=42 1700000000000000000\n";

    // Verification on: the self-signed certificate is trusted by nobody, and nothing is lost.
    let answer = bed.write(point, &bed.source.token).await;
    assert_eq!(
        status(&answer),
        204,
        "queued even though the source could not be checked: {:?}",
        answer.payload
    );
    for writer in [&bed.source_writer, &bed.destination_writer] {
        let d = bed.deliver(writer).await;
        assert!(
            matches!(d.as_slice(), [Delivery::Partial { done: 0, .. }]),
            "the batch is handed back, not written: {d:?}\n{}",
            writer.logs()
        );
    }
    let (code, body) = bed.query().await;
    // Regression: a streamed answer was read as a response event, so this saw status 0 and
    // passed whatever the router did.
    assert_eq!(code, 502, "the router does not read from an unverified endpoint: {body}");
    assert_eq!(bed.dead_letters().await, 0, "a TLS failure is not bad data");
    assert_eq!(bed.source.count(&bed.source.bucket).await, 0);

    // skip_verify in the secret: every component goes through.
    bed.set_skip_verify(true).await;
    for writer in [&bed.source_writer, &bed.destination_writer] {
        let d = bed.deliver(writer).await;
        assert!(matches!(d.as_slice(), [Delivery::Done { .. }]), "written: {d:?}\n{}", writer.logs());
    }
    let mut present = Vec::new();
    for db in [&bed.source, &bed.destination] {
        let rows = db.query(&format!("from(bucket: \"{}\") |> range(start: 0)", db.bucket)).await;
        let values: Vec<(Option<&str>, Option<&str>)> =
            rows.iter().map(|r| (r.get("_measurement"), r.get("_value"))).collect();
        assert_eq!(values, vec![(Some("tls"), Some("42"))], "{}", db.url);
        present.push(values.len());
    }
    testbed::scenario::probe::print_matrix(&[testbed::scenario::probe::MatrixRow {
        case: "self-signed TLS: refused verified, then skip_verify".into(),
        acknowledged: 1,
        at_source: present[0],
        at_destination: present[1],
        dead_lettered: bed.dead_letters().await,
        parked: 0,
        redriven: 0,
    }]);
    let (code, body) = bed.query().await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(",42,"), "the router read the point: {body}");
    // The admission check reaches the source now: a token it does not know is refused at the
    // gateway with the source's own answer, and nothing is queued.
    let answer = bed.write(point, "not-a-token").await;
    assert_eq!(status(&answer), 401, "{:?}", answer.payload);
    let body: Value =
        serde_json::from_str(answer.payload["body"].as_str().unwrap_or("")).unwrap_or(Value::Null);
    assert_eq!(body["code"], "unauthorized", "{:?}", answer.payload);
    assert_eq!(bed.dead_letters().await, 0);
}
