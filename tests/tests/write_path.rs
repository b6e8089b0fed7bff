//! The write path end to end on real parts: API Gateway events into the kinesis-writer (behind
//! `cargo lambda watch`), moto's Kinesis, the stream records read as an event source mapping reads
//! them, and two stream-writer instances (TARGET=source, TARGET=destination, also behind
//! `cargo lambda watch`) writing into two real influxd. Every point is compared value by value.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_kinesis::primitives::Blob;
use serde_json::{Value, json};
use shared::envelope::{Api, Chunker, Header, MAX_RECORD_BYTES, WriteParams};
use shared::sensitive::Sensitive;
use testbed::flux::{FluxRecord, assert_same_points};
use testbed::stack::events::HttpRequest;
use testbed::stack::lambda::Invocation;
use testbed::stack::poller::{Delivery, ShardPoller, StartPosition};
use testbed::{FaultProxy, Influxd, LambdaRuntime, Moto};

const STREAM: &str = "live-writes";
const SECRET: &str = "live-endpoints";
const DEAD_LETTERS: &str = "live-dead-letters";

/// Source and destination influxd (sharing the operator token, as after a full seeding), moto,
/// and the three functions.
struct WritePath {
    source: Influxd,
    destination: Influxd,
    /// In front of the destination: faults for the destination writer only.
    proxy: FaultProxy,
    _moto: Moto,
    kinesis: aws_sdk_kinesis::Client,
    s3: aws_sdk_s3::Client,
    gateway: LambdaRuntime,
    source_writer: LambdaRuntime,
    destination_writer: LambdaRuntime,
}

impl WritePath {
    async fn start() -> WritePath {
        let source = Influxd::start_named("source").await;
        let destination = Influxd::start_with_token("destination", &source.token).await;
        let proxy = FaultProxy::start(&destination.url).await;
        let moto = Moto::start().await;
        let config = moto.sdk_config().await;
        let kinesis = aws_sdk_kinesis::Client::new(&config);
        kinesis.create_stream().stream_name(STREAM).shard_count(1).send().await.expect("create stream");
        let secret = json!({
            "source": {"url": source.url},
            "destination": {"url": proxy.url},
            "read": "source"
        });
        aws_sdk_secretsmanager::Client::new(&config)
            .create_secret()
            .name(SECRET)
            .secret_string(secret.to_string())
            .send()
            .await
            .expect("create secret");
        let s3 = moto.s3().await;
        s3.create_bucket().bucket(DEAD_LETTERS).send().await.expect("create dead-letter bucket");

        let mut env = moto.env();
        env.push(("SECRET_ID".into(), SECRET.into()));
        env.push(("SECRET_TTL_SECONDS".into(), "1".into()));
        let mut gw_env = env.clone();
        gw_env.push(("STREAM_NAME".into(), STREAM.into()));
        let gateway = LambdaRuntime::start("kinesis-writer", &gw_env).await;
        let writer_env = |target: &str| {
            let mut e = env.clone();
            e.push(("TARGET".into(), target.into()));
            e.push(("DEAD_LETTER_BUCKET".into(), DEAD_LETTERS.into()));
            e.push(("WRITE_TIMEOUT_SECONDS".into(), "5".into()));
            // Retry inside one invocation for 2 s, then hand the batch back (partial failure).
            e.push(("RETRY_BUDGET_SECONDS".into(), "2".into()));
            e
        };
        let source_writer = LambdaRuntime::start("stream-writer", &writer_env("source")).await;
        let destination_writer = LambdaRuntime::start("stream-writer", &writer_env("destination")).await;
        WritePath {
            source,
            destination,
            proxy,
            _moto: moto,
            kinesis,
            s3,
            gateway,
            source_writer,
            destination_writer,
        }
    }

    /// Sends a write through the gateway function (REST event) and returns its answer.
    async fn write(&self, request: HttpRequest) -> Invocation {
        self.gateway.invoke(&request.rest_event()).await
    }

    fn v2_write(&self, precision: &str, body: &str) -> HttpRequest {
        HttpRequest::post("/api/v2/write")
            .query("org", &self.source.org)
            .query("bucket", &self.source.bucket)
            .query("precision", precision)
            .header("Content-Type", "text/plain; charset=utf-8")
            .token(&self.source.token)
            .body(body.as_bytes().to_vec())
    }

    async fn pollers(&self) -> Vec<ShardPoller> {
        ShardPoller::for_stream(&self.kinesis, STREAM, StartPosition::TrimHorizon, 100)
            .await
            .expect("pollers")
    }

    /// Replays the whole stream into one database; returns the deliveries.
    async fn replay(&self, writer: &LambdaRuntime) -> Vec<Delivery> {
        let mut all = Vec::new();
        for mut p in self.pollers().await {
            let log = p
                .drain(&writer.invoker(), Duration::from_secs(120))
                .await
                .unwrap_or_else(|e| panic!("{e}\n{}", writer.logs()));
            all.extend(log);
        }
        all
    }

    async fn records_in_stream(&self) -> usize {
        let mut n = 0;
        for p in self.pollers().await {
            let mut p = p;
            p.batch_size = 10_000;
            n += p.read_batch().await.expect("read").len();
        }
        n
    }

    /// The dead letters (the writers' stall records share the bucket under `stalls/`).
    async fn dead_letter_keys(&self) -> Vec<String> {
        let out = self
            .s3
            .list_objects_v2()
            .bucket(DEAD_LETTERS)
            .prefix("dead-letters/")
            .send()
            .await
            .expect("list dead letters");
        out.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect()
    }
}

fn assert_204(answer: &Invocation, runtime: &LambdaRuntime) {
    assert_eq!(answer.payload["statusCode"], 204, "gateway answered {}\n{}", answer.payload, runtime.logs());
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64
}

async fn dump(db: &Influxd) -> Vec<FluxRecord> {
    db.dump(&db.bucket).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_precision_and_the_v1_api_land_at_the_right_instant_in_both_databases() {
    let w = WritePath::start().await;
    let cases = [
        ("s", "p_s", "1700000001", "2023-11-14T22:13:21Z"),
        ("ms", "p_ms", "1700000001234", "2023-11-14T22:13:21.234Z"),
        ("us", "p_us", "1700000001234567", "2023-11-14T22:13:21.234567Z"),
        ("ns", "p_ns", "1700000001234567891", "2023-11-14T22:13:21.234567891Z"),
    ];
    for (precision, measurement, ts, _) in cases {
        let a = w.write(w.v2_write(precision, &format!("{measurement},host=a value=1.5 {ts}\n"))).await;
        assert_204(&a, &w.gateway);
    }
    // v1: db = bucket name (influxd's virtual DBRP mapping), rp = autogen, precision ms.
    let v1 = HttpRequest::post("/write")
        .query("db", &w.source.bucket)
        .query("rp", "autogen")
        .query("precision", "ms")
        .token(&w.source.token)
        .body(b"v1_write,host=b value=2i 1700000002500\n".to_vec());
    assert_204(&w.write(v1).await, &w.gateway);

    w.replay(&w.source_writer).await;
    w.replay(&w.destination_writer).await;
    for db in [&w.source, &w.destination] {
        let rows = dump(db).await;
        assert_eq!(rows.len(), 5, "{}: {rows:?}", db.url);
        for (_, measurement, _, time) in cases {
            let row = rows.iter().find(|r| r.get("_measurement") == Some(measurement)).expect(measurement);
            assert_eq!(row.get("_time"), Some(time), "{measurement} in {}", db.url);
            assert_eq!(row.get("_value"), Some("1.5"));
        }
        let v1 = rows.iter().find(|r| r.get("_measurement") == Some("v1_write")).expect("v1 point");
        assert_eq!(v1.get("_time"), Some("2023-11-14T22:13:22.5Z"));
        assert_eq!(v1.get("_value"), Some("2"));
        assert_eq!(v1.datatypes.get("_value").map(String::as_str), Some("long"));
    }
    assert_same_points("source", &dump(&w.source).await, "destination", &dump(&w.destination).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_without_timestamp_get_the_same_time_in_both_databases_although_the_destination_replays_later()
{
    let w = WritePath::start().await;
    let before = now_ns();
    let body: String = (0..50).map(|i| format!("untimed,i={i} v={i}i\n")).collect();
    assert_204(&w.write(w.v2_write("ms", &body)).await, &w.gateway);
    let mut ns_body: String = (0..50).map(|i| format!("untimed_ns,i={i} v={i}i\n")).collect();
    // influxd accepts a string value followed by junk and a lone backslash, and stores the value
    // without its first and last byte (`x"y`); the stamp must not be swallowed by that backslash.
    ns_body.push_str("untimed_ns,i=lone s=\"x\"y\\\n");
    assert_204(&w.write(w.v2_write("ns", &ns_body)).await, &w.gateway);
    let after = now_ns();

    w.replay(&w.source_writer).await;
    // The destination writer runs much later (it is throttled during the seeding in real life).
    tokio::time::sleep(Duration::from_secs(3)).await;
    w.replay(&w.destination_writer).await;

    let src = dump(&w.source).await;
    let dst = dump(&w.destination).await;
    assert_eq!(src.len(), 101);
    assert_same_points("source", &src, "destination", &dst);
    let lone =
        src.iter().find(|r| r.get("i") == Some("lone")).expect("the line ending in a backslash was stored");
    assert_eq!(lone.get("_value"), Some("x\"y"));
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp_nanos() as i64
    };
    for r in &src {
        let t = parse(r.get("_time").unwrap());
        assert!(
            t >= before - 1_000_000 && t <= after,
            "stamped time {t} outside the request window {before}..{after}"
        );
        if r.get("_measurement") == Some("untimed") {
            assert_eq!(t % 1_000_000, 0, "ms precision truncates to the millisecond");
        }
    }
}

/// A string with the characters line protocol makes hard: spaces, commas, `=`, escaped quotes,
/// backslashes and raw newlines.
fn hard_string(i: usize, noise: u64) -> String {
    // 128 hex digits derived from the noise: barely compressible, so the body needs several records.
    let mut hex = String::with_capacity(128);
    let mut x = noise | 1;
    for _ in 0..8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        hex.push_str(&format!("{x:016x}"));
    }
    format!("row {i}, a=b \"quoted\" back\\slash\nsecond line {hex}")
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_base64_bodies_over_one_mib_are_split_into_records_and_replayed_intact() {
    let w = WritePath::start().await;
    let lines = 20_000;
    let noise: Vec<u64> = (0..lines).map(|_| rand::random()).collect();
    let mut body = String::new();
    for (i, n) in noise.iter().enumerate() {
        body.push_str(&format!(
            "big,shard=s{} s=\"{}\",f={}.25,i={}i,u={}u,b={} {}\n",
            i % 4,
            escape(&hard_string(i, *n)),
            i,
            -(i as i64),
            i as u64 * 3,
            i % 2 == 0,
            1_700_000_000_000_000_000i64 + i as i64
        ));
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, body.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    assert!(body.len() > 1024 * 1024, "the body is over 1 MiB ({} bytes)", body.len());

    // gzip + base64, through the HTTP API payload format this time.
    let request = w.v2_write("ns", "").header("Content-Encoding", "gzip").body(gz).base64();
    let answer = w.gateway.invoke(&request.http_api_event()).await;
    assert_eq!(answer.payload["statusCode"], 204, "{}", answer.payload);
    let records = w.records_in_stream().await;
    assert!(records >= 2, "a body whose compressed size is over 1 MiB needs several records, got {records}");

    w.replay(&w.source_writer).await;
    w.replay(&w.destination_writer).await;
    let src = dump(&w.source).await;
    assert_eq!(src.len(), lines * 5);
    for r in src.iter().filter(|r| r.get("_field") == Some("s")) {
        let t = time::OffsetDateTime::parse(
            r.get("_time").unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let i = (t.unix_timestamp_nanos() - 1_700_000_000_000_000_000) as usize;
        assert_eq!(r.get("_value").unwrap(), hard_string(i, noise[i]), "string field of line {i}");
    }
    assert_same_points("source", &src, "destination", &dump(&w.destination).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_line_protocol_is_answered_400_naming_the_line_and_nothing_is_queued() {
    let w = WritePath::start().await;
    let body = "good,t=a v=1 1\nbad,t=a v= 2\ngood,t=b v=3 3\n";
    let answer = w.write(w.v2_write("ns", body)).await;
    assert_eq!(answer.payload["statusCode"], 400, "{}", answer.payload);
    let error: Value = serde_json::from_str(answer.payload["body"].as_str().unwrap()).unwrap();
    assert_eq!(error["code"], "invalid");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("bad,t=a v= 2"), "the message names the bad line: {message}");
    // What influxd itself answers to the same body.
    let direct = w.source.write(&w.source.bucket, "ns", body.to_string()).await;
    assert_eq!(direct.status, 400);
    let direct_message =
        serde_json::from_str::<Value>(&direct.body).unwrap()["message"].as_str().unwrap().to_string();
    assert_eq!(message, direct_message, "the gateway words it as influxd does");

    // Bad precision, missing bucket, bad gzip.
    let a = w.write(w.v2_write("minutes", "m v=1")).await;
    assert_eq!(a.payload["statusCode"], 400);
    let a = w
        .write(
            HttpRequest::post("/api/v2/write")
                .query("org", &w.source.org)
                .token(&w.source.token)
                .body(b"m v=1".to_vec()),
        )
        .await;
    assert_eq!(a.payload["statusCode"], 404);
    let a = w
        .write(
            w.v2_write("ns", "")
                .header("Content-Encoding", "gzip")
                .body(b"\x1f\x8b\x08\x00garbage".to_vec())
                .base64(),
        )
        .await;
    assert_eq!(a.payload["statusCode"], 400, "{}", a.payload);
    assert!(a.payload["body"].as_str().unwrap().contains("gzip"));

    assert_eq!(w.records_in_stream().await, 0, "nothing was queued");
    w.replay(&w.source_writer).await;
    assert_eq!(w.source.count(&w.source.bucket).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_or_bucket_is_refused_at_the_gateway_as_influxd_would() {
    let w = WritePath::start().await;
    let bad_token = HttpRequest::post("/api/v2/write")
        .query("org", &w.source.org)
        .query("bucket", &w.source.bucket)
        .token("not-a-token")
        .body(b"m v=1 1".to_vec());
    let a = w.write(bad_token).await;
    assert_eq!(a.payload["statusCode"], 401, "{}", a.payload);
    assert!(a.payload["body"].as_str().unwrap().contains("unauthorized"));

    let missing_bucket = HttpRequest::post("/api/v2/write")
        .query("org", &w.source.org)
        .query("bucket", "no-such-bucket")
        .token(&w.source.token)
        .body(b"m v=1 1".to_vec());
    let a = w.write(missing_bucket).await;
    assert_eq!(a.payload["statusCode"], 404, "{}", a.payload);
    assert!(
        a.payload["body"].as_str().unwrap().contains("bucket \\\"no-such-bucket\\\" not found"),
        "{}",
        a.payload
    );
    assert_eq!(w.records_in_stream().await, 0, "refused writes never enter the stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_answering_503_for_a_while_is_retried_with_zero_loss() {
    let w = WritePath::start().await;
    let mut expected = 0;
    for batch in 0..5 {
        let body: String = (0..200)
            .map(|i| {
                format!(
                    "retry,b={batch} v={i}i {}\n",
                    1_700_000_000_000_000_000i64 + (batch * 1000 + i) as i64
                )
            })
            .collect();
        assert_204(&w.write(w.v2_write("ns", &body)).await, &w.gateway);
        expected += 200;
    }
    w.replay(&w.source_writer).await;

    w.proxy.fail_for(Duration::from_secs(6), 1);
    w.proxy.reset_next(2);
    let deliveries = w.replay(&w.destination_writer).await;
    assert!(
        deliveries.iter().any(|d| matches!(d, Delivery::Partial { done: 0, .. })),
        "the writer reported a partial batch failure while the destination failed: {deliveries:?}"
    );
    let stats = w.proxy.stats();
    assert!(stats.failed > 0 && stats.reset == 2, "{stats:?}");
    assert_eq!(w.destination.count(&w.destination.bucket).await, expected);
    assert_same_points("source", &dump(&w.source).await, "destination", &dump(&w.destination).await);
}

/// Puts a stream record straight into Kinesis (as a writer of another version might).
async fn put_raw_record(w: &WritePath, body: &str) {
    let header = Header {
        api: Api::V2,
        params: WriteParams {
            org: Some(w.source.org.clone()),
            bucket: Some(w.source.bucket.clone()),
            ..Default::default()
        },
        target: None,
        authorization: Some(Sensitive::new(format!("Token {}", w.source.token))),
        received_at_ns: now_ns(),
        content_type: None,
        request_id: "raw".into(),
        chunk: 0,
        chunks: 0,
        lines: 0,
        raw_bytes: 0,
    };
    let mut c = Chunker::new(header, MAX_RECORD_BYTES, 3).unwrap();
    for line in body.lines() {
        c.push_line(line.as_bytes(), b"").unwrap();
    }
    for r in c.finish().unwrap() {
        w.kinesis
            .put_record()
            .stream_name(STREAM)
            .partition_key("raw")
            .data(Blob::new(r.to_vec()))
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_database_refuses_go_to_dead_letters_and_later_records_land() {
    let w = WritePath::start().await;
    // The destination already holds field `v` of `conflict` as a string: the stream's float for it
    // is a type conflict there (422, partial write) and nowhere else.
    w.destination.write_ok(&w.destination.bucket, "ns", "conflict v=\"text\" 1700000000000000000\n").await;
    assert_204(&w.write(w.v2_write("ns", "conflict v=1.5 1700000000000000001\n")).await, &w.gateway);
    // A record the database cannot parse at all (400), put by hand: the gateway never queues such.
    put_raw_record(&w, "unparsable v=\n").await;
    // Later records of the same shard.
    let later: String =
        (0..100).map(|i| format!("later v={i}i {}\n", 1_700_000_000_000_001_000i64 + i)).collect();
    assert_204(&w.write(w.v2_write("ns", &later)).await, &w.gateway);

    w.replay(&w.destination_writer).await;
    assert_eq!(
        w.destination.count(&w.destination.bucket).await,
        1 + 100,
        "the pre-existing point and every later one"
    );
    let keys = w.dead_letter_keys().await;
    assert_eq!(keys.len(), 2, "exactly the two refused records: {keys:?}");
    let mut reasons = Vec::new();
    for key in &keys {
        assert!(key.starts_with("dead-letters/destination/shardId-"), "{key}");
        let obj = w.s3.get_object().bucket(DEAD_LETTERS).key(key).send().await.unwrap();
        let bytes = obj.body.collect().await.unwrap().into_bytes();
        let letter: Value = serde_json::from_slice(&bytes).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&w.source.token), "a dead letter never holds the token");
        reasons.push((
            letter["status"].as_u64().unwrap(),
            letter["line_protocol"].as_str().unwrap().to_string(),
        ));
    }
    reasons.sort();
    assert_eq!(reasons[0].0, 400);
    assert_eq!(reasons[0].1, "unparsable v=\n");
    assert_eq!(reasons[1].0, 422);
    assert_eq!(reasons[1].1, "conflict v=1.5 1700000000000000001\n");

    // The source takes the conflicting point (no conflict there) and refuses only the raw one.
    w.replay(&w.source_writer).await;
    assert_eq!(w.source.count(&w.source.bucket).await, 1 + 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_destination_bucket_is_retried_never_dropped_until_it_exists() {
    let w = WritePath::start().await;
    let bucket = "created-later";
    w.source.create_bucket(bucket).await;
    let body: String =
        (0..10).map(|i| format!("cfg v={i}i {}\n", 1_700_000_000_000_000_000i64 + i)).collect();
    let req = HttpRequest::post("/api/v2/write")
        .query("org", &w.source.org)
        .query("bucket", bucket)
        .token(&w.source.token)
        .body(body.into_bytes());
    assert_204(&w.write(req).await, &w.gateway);

    // The destination has no such bucket yet: 404, a configuration error. Nothing moves.
    let mut pollers = w.pollers().await;
    let invoker = w.destination_writer.invoker();
    for _ in 0..2 {
        let d = pollers[0].poll(&invoker).await.unwrap();
        assert!(matches!(d, Delivery::Partial { done: 0, .. }), "{d:?}");
    }
    assert!(
        w.destination_writer.function_log().contains("fix the configuration"),
        "the writer says so loudly"
    );
    w.destination.create_bucket(bucket).await;
    pollers[0].drain(&invoker, Duration::from_secs(60)).await.unwrap();
    assert_eq!(w.destination.count(bucket).await, 10);
    assert!(w.dead_letter_keys().await.is_empty(), "a configuration error never dead-letters data");
}

/// The writes a stream writer made, from its "batch written" and "batch stopped" log lines.
fn writes_logged(writer: &LambdaRuntime) -> u64 {
    writer
        .function_log()
        .lines()
        .filter(|l| l.contains("batch written"))
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter_map(|v| v["fields"]["writes"].as_u64().or_else(|| v["writes"].as_u64()))
        .sum()
}

/// Issue 29: at bd35b53 the stream writer grouped only *consecutive* records with the same API,
/// parameters and token, so the demo's traffic (v1 and v2 alternating, four precisions, several
/// tokens) cost about one write per record. Now one write per target between points of order:
/// two buckets, written interleaved with both APIs, four precisions and two tokens, reach each
/// database in at most two writes, every point where influxd put it at the source, and the later
/// of two writes to one series and time still wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_buckets_apis_precisions_and_tokens_reach_each_database_in_one_write_per_bucket() {
    let w = WritePath::start().await;
    let second = "second";
    w.source.create_bucket(second).await;
    w.destination.create_bucket(second).await;
    // A second token at the source, allowed to write both buckets and to read them and its org,
    // so the gateway can resolve where its writes land (a write-only token's writes stay
    // unresolved and are written in order, as they came); the destination knows it by the token
    // mapping (as after a seeding with `tokens --apply`).
    let (status, made) = w
        .source
        .api(
            reqwest::Method::POST,
            "/api/v2/authorizations",
            Some(json!({"orgID": w.source.org_id, "description": "second writer", "permissions": [
                {"action": "write", "resource": {"type": "buckets", "orgID": w.source.org_id}},
                {"action": "read", "resource": {"type": "buckets", "orgID": w.source.org_id}},
                {"action": "read", "resource": {"type": "orgs", "id": w.source.org_id}}]})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let other_token = made["token"].as_str().unwrap().to_string();
    let secret = json!({
        "source": {"url": w.source.url},
        "destination": {"url": w.proxy.url},
        "read": "source",
        "mappings": {"tokens": {other_token.clone(): w.destination.token}}
    });
    aws_sdk_secretsmanager::Client::new(&w._moto.sdk_config().await)
        .put_secret_value()
        .secret_id(SECRET)
        .secret_string(secret.to_string())
        .send()
        .await
        .expect("update secret");
    // Neither the gateway nor the writers have read the secret yet: they read this one.

    let buckets = [w.source.bucket.clone(), second.to_string()];
    let base_s = 1_700_000_000i64;
    let request = |i: usize, bucket: &str, v1: bool, precision: &str, token: &str, line: String| {
        let req = if v1 {
            HttpRequest::post("/write")
                .query("db", bucket)
                .query("rp", "autogen")
                .query("precision", precision)
        } else {
            HttpRequest::post("/api/v2/write")
                .query("org", &w.source.org)
                .query("bucket", bucket)
                .query("precision", precision)
        };
        let _ = i;
        req.token(token).body(line.into_bytes())
    };
    let stamp = |s: i64, precision: &str| match precision {
        "s" => s.to_string(),
        "ms" => (s * 1_000).to_string(),
        "us" => (s * 1_000_000).to_string(),
        _ => (s * 1_000_000_000).to_string(),
    };
    let mut sent = 0;
    for i in 0..24usize {
        let bucket = &buckets[i % 2];
        let precision = ["s", "ms", "us", "ns"][(i / 2) % 4];
        let token = if (i / 4) % 2 == 0 { &w.source.token } else { &other_token };
        let line = format!("mix,i={i} v={i} {}\n", stamp(base_s + i as i64, precision));
        assert_204(&w.write(request(i, bucket, i % 3 == 0, precision, token, line)).await, &w.gateway);
        sent += 1;
    }
    // One series and time written twice, the second time through the other API, in another
    // precision, with the other token, another bucket's write between them: the second wins.
    let (t0, b0) = (base_s + 100, &buckets[0]);
    let first = format!("win v=1 {}\n", stamp(t0, "s"));
    assert_204(&w.write(request(0, b0, false, "s", &w.source.token, first)).await, &w.gateway);
    let between = format!("other v=1 {}\n", stamp(t0, "ns"));
    assert_204(&w.write(request(0, &buckets[1], false, "ns", &w.source.token, between)).await, &w.gateway);
    let later = format!("win v=2 {}\n", stamp(t0, "ms"));
    assert_204(&w.write(request(0, b0, true, "ms", &other_token, later)).await, &w.gateway);
    sent += 3;
    assert_eq!(w.records_in_stream().await, sent);

    let before = w.proxy.stats().forwarded;
    w.replay(&w.destination_writer).await;
    let to_destination = w.proxy.stats().forwarded - before;
    w.replay(&w.source_writer).await;
    let to_source = writes_logged(&w.source_writer);
    assert!(
        to_destination <= 2 && (1..=2).contains(&to_source),
        "{sent} records in two buckets took {to_destination} write(s) at the destination and {to_source} at the source\n{}\n{}",
        w.destination_writer.function_log(),
        w.gateway.function_log()
    );
    for db in [&w.source, &w.destination] {
        let mut all = Vec::new();
        for b in &buckets {
            all.extend(db.dump(b).await);
        }
        assert_eq!(all.len(), 24 + 2, "{}: {all:?}", db.url);
        let win = all.iter().find(|r| r.get("_measurement") == Some("win")).expect("win");
        assert_eq!(win.get("_value"), Some("2"), "the later write wins at {}", db.url);
        assert_eq!(win.get("_time"), Some("2023-11-14T22:15:00Z"));
        for i in 0..24usize {
            let row = all
                .iter()
                .find(|r| r.get("_measurement") == Some("mix") && r.get("i") == Some(&i.to_string()))
                .unwrap_or_else(|| panic!("mix i={i} at {}", db.url));
            let secs = (base_s + i as i64) % 60;
            assert_eq!(row.get("_time"), Some(format!("2023-11-14T22:13:{secs:02}Z").as_str()), "i={i}");
            assert_eq!(row.get("_value"), Some(i.to_string().as_str()));
        }
    }
    for b in &buckets {
        assert_same_points("source", &w.source.dump(b).await, "destination", &w.destination.dump(b).await);
    }
}

/// Issue 29: a write that fails for one target stops the batch at that target's first record,
/// and what the other targets hold of the batch is written in the same invocation, not left
/// behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_checkpoints_at_its_first_record_and_the_other_targets_are_written() {
    let w = WritePath::start().await;
    let missing = "not-yet-at-destination";
    w.source.create_bucket(missing).await;
    let write = |bucket: &str, i: i64| {
        HttpRequest::post("/api/v2/write")
            .query("org", &w.source.org)
            .query("bucket", bucket)
            .query("precision", "ns")
            .token(&w.source.token)
            .body(format!("ck v={i}i {}\n", 1_700_000_000_000_000_000i64 + i).into_bytes())
    };
    for (i, bucket) in
        [&w.source.bucket, missing, &w.source.bucket, missing, &w.source.bucket].into_iter().enumerate()
    {
        assert_204(&w.write(write(bucket, i as i64)).await, &w.gateway);
    }
    let mut pollers = w.pollers().await;
    let invoker = w.destination_writer.invoker();
    let d = pollers[0].poll(&invoker).await.unwrap();
    assert!(
        matches!(d, Delivery::Partial { done: 1, .. }),
        "checkpoint at the missing bucket's first record: {d:?}"
    );
    assert_eq!(
        w.destination.count(&w.destination.bucket).await,
        3,
        "every record of the other bucket is written\n{}",
        w.destination_writer.function_log()
    );
    w.destination.create_bucket(missing).await;
    pollers[0].drain(&invoker, Duration::from_secs(60)).await.unwrap();
    assert_eq!(w.destination.count(missing).await, 2);
    assert_eq!(w.destination.count(&w.destination.bucket).await, 3);
    assert!(w.dead_letter_keys().await.is_empty(), "a configuration error never dead-letters data");
}
