//! The smallest real Lambda function: answers every invocation with the event it got, its own
//! request ID and function name. The test bed's smoke test runs it behind `cargo lambda watch` to
//! prove the Lambda runtime API works on this machine before any product function relies on it.
//! An event with `"hold_ms"` is answered after that long (an invocation that keeps its instance
//! busy), and every answer names the process that gave it.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

async fn echo(event: LambdaEvent<Value>) -> Result<Value, Error> {
    if let Some(ms) = event.payload.get("hold_ms").and_then(Value::as_u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    Ok(json!({
        "pid": std::process::id(),
        "echo": event.payload,
        "request_id": event.context.request_id,
        "deadline_ms": event.context.deadline,
        "function_name": std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_default(),
    }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(echo)).await
}
