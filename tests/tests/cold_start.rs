//! Cold start creates clients only: no function makes a network call before its first
//! invocation. Every AWS endpoint is pointed at a listener that counts connections; the
//! functions run behind `cargo lambda watch`; nothing may connect until an invocation arrives,
//! and then the function does reach that listener (so it was the endpoint it would have used).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use testbed::LambdaRuntime;
use testbed::stack::events::HttpRequest;
use tokio::net::TcpListener;

async fn sentinel() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (url, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_function_calls_the_network_before_its_first_invocation() {
    let kinesis_event = testbed::stack::events::kinesis_event(
        "arn:aws:kinesis:us-east-1:123456789012:stream/s",
        &[testbed::stack::events::StreamRecord {
            shard_id: "shardId-000000000000".into(),
            sequence_number: "1".into(),
            partition_key: "k".into(),
            data: b"not a record".to_vec(),
            arrival: 1.7e9,
        }],
    );
    let write = HttpRequest::post("/api/v2/write")
        .query("org", "o")
        .query("bucket", "b")
        .token("t")
        .body(b"m v=1 1".to_vec());
    let cases = [
        ("kinesis-writer", write.rest_event()),
        ("stream-writer", kinesis_event),
        ("query-router", HttpRequest::get("/health").rest_event()),
    ];
    for (name, event) in cases {
        let (url, connections) = sentinel().await;
        let env: Vec<(String, String)> = [
            ("AWS_ENDPOINT_URL", url.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("SECRET_ID", "live/endpoints"),
            ("STREAM_NAME", "live-writes"),
            ("TARGET", "source"),
            ("DEAD_LETTER_BUCKET", "dead-letters"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let runtime = LambdaRuntime::start(name, &env).await;
        // What is checked is an absence (no connection before the first invocation), so there is
        // no condition to wait for: this is the window in which a connection would show, long
        // enough for the process to start, build its clients and poll for work.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!runtime.function_log().contains("panicked"), "{name} started: {}", runtime.logs());
        assert_eq!(connections.load(Ordering::SeqCst), 0, "{name} connected somewhere before any invocation");

        let answer = runtime.invoke(&event).await;
        // A streamed answer (the query router's) carries its own status: answering at all counts.
        assert!(
            answer.status == 200 || answer.streamed(),
            "{name} answered the invocation: {}",
            runtime.logs()
        );
        assert!(
            connections.load(Ordering::SeqCst) > 0,
            "{name} used the endpoint once it had work: {}",
            answer.payload
        );
    }
}
