//! A stream writer's Kinesis event source mappings, and whether they are set up so that no
//! record can be dropped.
//!
//! The settings infra/wiring.yaml gives both mappings, and what each protects against
//! (https://docs.aws.amazon.com/lambda/latest/dg/services-kinesis-parameters.html):
//! `MaximumRetryAttempts` -1 and `MaximumRecordAgeInSeconds` -1 (a failing batch is retried until
//! it succeeds, never discarded early), `BisectBatchOnFunctionError`, `ReportBatchItemFailures`
//! (resume at the first record the writer could not write) and an on-failure destination.
//! [`Mapping::drop_risks`] names any of them that is missing.

use serde::Serialize;
use time::OffsetDateTime;

use crate::aws::lag::rfc3339;

/// Why the mappings could not be listed.
#[derive(Debug, thiserror::Error)]
#[error("ListEventSourceMappings for {function}: {reason}")]
pub struct MappingError {
    pub function: String,
    pub reason: String,
}

/// One event source mapping as the operator needs to see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
    pub uuid: String,
    pub function: String,
    /// `Enabled`, `Disabled`, `Creating`, `Enabling`, ...
    pub state: String,
    pub stream_arn: Option<String>,
    pub starting_position: Option<String>,
    pub starting_position_timestamp: Option<String>,
    /// Lambda's word on the last poll (`OK`, `No records processed`, `PROBLEM: ...`).
    pub last_processing_result: Option<String>,
    pub batch_size: Option<i32>,
    pub maximum_retry_attempts: Option<i32>,
    pub maximum_record_age_seconds: Option<i32>,
    pub bisect_on_error: Option<bool>,
    pub report_batch_item_failures: bool,
    pub on_failure_destination: Option<String>,
}

impl Mapping {
    pub fn is_enabled(&self) -> bool {
        self.state == "Enabled"
    }

    /// Settings that would let a record be dropped or skipped, in words.
    pub fn drop_risks(&self) -> Vec<String> {
        let mut risks = Vec::new();
        if let Some(n) = self.maximum_retry_attempts.filter(|n| *n != -1) {
            risks.push(format!("MaximumRetryAttempts is {n} (a failing batch is discarded after that)"));
        }
        if let Some(n) = self.maximum_record_age_seconds.filter(|n| *n != -1) {
            risks.push(format!("MaximumRecordAgeInSeconds is {n} (older records are discarded)"));
        }
        if self.starting_position.as_deref() == Some("LATEST") {
            risks.push("StartingPosition is LATEST (records before the mapping started are skipped)".into());
        }
        if !self.report_batch_item_failures {
            risks.push(
                "ReportBatchItemFailures is off (a partial failure retries or skips the whole batch)".into(),
            );
        }
        if self.on_failure_destination.is_none() {
            risks.push("no on-failure destination".into());
        }
        risks
    }

    /// `Enabled, from AT_TIMESTAMP 2026-...; last poll: OK`.
    pub fn describe(&self) -> String {
        let from = match (&self.starting_position, &self.starting_position_timestamp) {
            (Some(p), Some(t)) => format!(", from {p} {t}"),
            (Some(p), None) => format!(", from {p}"),
            _ => String::new(),
        };
        let last =
            self.last_processing_result.as_deref().map(|r| format!("; last poll: {r}")).unwrap_or_default();
        format!("{} {}{from}{last}", self.uuid, self.state)
    }
}

/// When the live path started feeding the writer: the earliest `AT_TIMESTAMP` start of its
/// mappings. Points that arrived after it came through the stream; what a seeding copied arrived
/// before. `None` when no mapping starts at a timestamp.
pub fn live_since(mappings: &[Mapping]) -> Option<OffsetDateTime> {
    mappings
        .iter()
        .filter(|m| m.starting_position.as_deref() == Some("AT_TIMESTAMP"))
        .filter_map(|m| m.starting_position_timestamp.as_deref())
        .filter_map(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .min()
}

/// Every mapping that invokes `function` (a name).
///
/// Lambda matches the `FunctionName` filter whether the mapping was created with the name or
/// the ARN; an emulator may match only the form used at creation (moto does), so an empty
/// answer is asked again with the function's ARN.
pub async fn of_function(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
) -> Result<Vec<Mapping>, MappingError> {
    let found = list(lambda, function, function).await?;
    if !found.is_empty() {
        return Ok(found);
    }
    let arn = lambda
        .get_function_configuration()
        .function_name(function)
        .send()
        .await
        .ok()
        .and_then(|c| c.function_arn().map(str::to_string));
    match arn {
        Some(arn) if arn != function => list(lambda, function, &arn).await,
        _ => Ok(found),
    }
}

/// The mappings the `FunctionName` filter `filter` returns, labelled with `function`.
async fn list(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
    filter: &str,
) -> Result<Vec<Mapping>, MappingError> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = lambda
            .list_event_source_mappings()
            .function_name(filter)
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| MappingError {
                function: function.to_string(),
                reason: crate::aws::sdk_error::describe(&e),
            })?;
        for m in page.event_source_mappings() {
            // The filter is by function; an ARN ending in the name (any qualifier) is this function.
            let arn = m.function_arn().unwrap_or_default();
            let name =
                arn.split(":function:").nth(1).map(|s| s.split(':').next().unwrap_or(s)).unwrap_or(arn);
            if !name.is_empty() && name != function && arn != function {
                continue;
            }
            out.push(Mapping {
                uuid: m.uuid().unwrap_or_default().to_string(),
                function: function.to_string(),
                state: m.state().unwrap_or("unknown").to_string(),
                stream_arn: m.event_source_arn().map(str::to_string),
                starting_position: m.starting_position().map(|p| p.as_str().to_string()),
                starting_position_timestamp: m
                    .starting_position_timestamp()
                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t.secs()).ok())
                    .map(rfc3339),
                last_processing_result: m.last_processing_result().map(str::to_string),
                batch_size: m.batch_size(),
                maximum_retry_attempts: m.maximum_retry_attempts(),
                maximum_record_age_seconds: m.maximum_record_age_in_seconds(),
                bisect_on_error: m.bisect_batch_on_function_error(),
                report_batch_item_failures: m
                    .function_response_types()
                    .iter()
                    .any(|t| t.as_str() == "ReportBatchItemFailures"),
                on_failure_destination: m
                    .destination_config()
                    .and_then(|d| d.on_failure())
                    .and_then(|f| f.destination())
                    .map(str::to_string),
            });
        }
        marker = page.next_marker().map(str::to_string);
        if marker.is_none() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safe() -> Mapping {
        Mapping {
            uuid: "u".into(),
            function: "f".into(),
            state: "Enabled".into(),
            stream_arn: Some("arn:aws:kinesis:us-east-1:1:stream/s".into()),
            starting_position: Some("AT_TIMESTAMP".into()),
            starting_position_timestamp: Some("2026-11-25T10:00:00Z".into()),
            last_processing_result: Some("OK".into()),
            batch_size: Some(100),
            maximum_retry_attempts: Some(-1),
            maximum_record_age_seconds: Some(-1),
            bisect_on_error: Some(true),
            report_batch_item_failures: true,
            on_failure_destination: Some("arn:aws:s3:::dead-letters".into()),
        }
    }

    #[test]
    fn the_templates_settings_carry_no_drop_risk() {
        assert!(safe().drop_risks().is_empty());
        assert!(safe().is_enabled());
        assert_eq!(safe().describe(), "u Enabled, from AT_TIMESTAMP 2026-11-25T10:00:00Z; last poll: OK");
    }

    #[test]
    fn each_setting_that_can_drop_a_record_is_named() {
        let m = Mapping {
            maximum_retry_attempts: Some(3),
            maximum_record_age_seconds: Some(3600),
            starting_position: Some("LATEST".into()),
            report_batch_item_failures: false,
            on_failure_destination: None,
            ..safe()
        };
        let risks = m.drop_risks();
        assert_eq!(risks.len(), 5, "{risks:?}");
        assert!(risks[0].contains("MaximumRetryAttempts is 3"));
        assert!(risks[1].contains("MaximumRecordAgeInSeconds is 3600"));
        assert!(risks[2].contains("LATEST"));
        assert!(risks[3].contains("ReportBatchItemFailures"));
        assert!(risks[4].contains("on-failure"));
    }
}
