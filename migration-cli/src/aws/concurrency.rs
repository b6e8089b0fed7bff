//! A function's reserved concurrency: the switch that holds the destination writer.
//!
//! Reserved concurrency 0 throttles every invocation; a Kinesis event source mapping then cannot
//! invoke the function, does not advance, and does not count the throttles as retries, so the
//! records wait in the stream until they expire
//! (https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html).
//! `PutFunctionConcurrency` with 0 holds it; `DeleteFunctionConcurrency` releases it
//! (https://docs.aws.amazon.com/lambda/latest/api/API_PutFunctionConcurrency.html).

use serde::Serialize;

/// Why the concurrency could not be read or set.
#[derive(Debug, thiserror::Error)]
pub enum ConcurrencyError {
    #[error("function {function} does not exist")]
    NoFunction { function: String },
    #[error("{call} for {function}: {reason}")]
    Call { call: &'static str, function: String, reason: String },
}

/// Whether a function can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reserved_concurrency", rename_all = "lowercase")]
pub enum Throttle {
    /// Reserved concurrency 0: nothing runs.
    Throttled,
    /// No reservation: the account's unreserved pool.
    Unthrottled,
    /// A reservation above zero: runs, at most this many at once.
    Limited(i32),
}

impl Throttle {
    pub fn from_reserved(reserved: Option<i32>) -> Throttle {
        match reserved {
            Some(0) => Throttle::Throttled,
            Some(n) => Throttle::Limited(n),
            None => Throttle::Unthrottled,
        }
    }

    pub fn is_throttled(self) -> bool {
        self == Throttle::Throttled
    }

    /// `throttled (reserved concurrency 0)` and the like.
    pub fn describe(self) -> String {
        match self {
            Throttle::Throttled => "throttled (reserved concurrency 0)".into(),
            Throttle::Unthrottled => "unthrottled (no reserved concurrency)".into(),
            Throttle::Limited(n) => format!("unthrottled, limited to {n} concurrent invocation(s)"),
        }
    }
}

fn call_error<E>(
    call: &'static str,
    function: &str,
    e: aws_sdk_lambda::error::SdkError<E>,
) -> ConcurrencyError
where
    E: std::error::Error + aws_sdk_lambda::error::ProvideErrorMetadata + Send + Sync + 'static,
{
    if e.as_service_error().and_then(|s| s.code()) == Some("ResourceNotFoundException") {
        return ConcurrencyError::NoFunction { function: function.to_string() };
    }
    ConcurrencyError::Call {
        call,
        function: function.to_string(),
        reason: crate::aws::sdk_error::describe(&e),
    }
}

/// The function's current state.
pub async fn current(lambda: &aws_sdk_lambda::Client, function: &str) -> Result<Throttle, ConcurrencyError> {
    let out = lambda
        .get_function_concurrency()
        .function_name(function)
        .send()
        .await
        .map_err(|e| call_error("GetFunctionConcurrency", function, e))?;
    Ok(Throttle::from_reserved(out.reserved_concurrent_executions()))
}

/// Reserved concurrency 0.
pub async fn hold(lambda: &aws_sdk_lambda::Client, function: &str) -> Result<(), ConcurrencyError> {
    lambda
        .put_function_concurrency()
        .function_name(function)
        .reserved_concurrent_executions(0)
        .send()
        .await
        .map_err(|e| call_error("PutFunctionConcurrency", function, e))?;
    Ok(())
}

/// No reservation.
pub async fn release(lambda: &aws_sdk_lambda::Client, function: &str) -> Result<(), ConcurrencyError> {
    lambda
        .delete_function_concurrency()
        .function_name(function)
        .send()
        .await
        .map_err(|e| call_error("DeleteFunctionConcurrency", function, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_concurrency_maps_to_the_three_states() {
        assert_eq!(Throttle::from_reserved(Some(0)), Throttle::Throttled);
        assert_eq!(Throttle::from_reserved(None), Throttle::Unthrottled);
        assert_eq!(Throttle::from_reserved(Some(5)), Throttle::Limited(5));
        assert!(Throttle::Throttled.is_throttled());
        assert!(!Throttle::Limited(5).is_throttled());
        assert_eq!(
            serde_json::to_value(Throttle::Limited(5)).unwrap(),
            serde_json::json!({"state": "limited", "reserved_concurrency": 5})
        );
        assert_eq!(
            serde_json::to_value(Throttle::Throttled).unwrap(),
            serde_json::json!({"state": "throttled"})
        );
    }
}
