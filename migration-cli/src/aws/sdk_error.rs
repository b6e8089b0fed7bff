//! An AWS call's failure in plain words: what went wrong and what to do, in a line or two.
//!
//! The SDK's own rendering (`DisplayErrorContext`) prints the whole error chain with its `Debug`
//! form: without credentials that is 2 kB of `ProviderAttempt { … }` an operator cannot act on.
//! [`describe`] says instead which kind of failure it was — no credentials, no region, AWS
//! unreachable or slow, or the service's own refusal (its code and message, which name what it
//! refused) — and, for the first three, what to set.

use std::error::Error as StdError;
use std::fmt::Debug;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// What to do when no credentials were found.
const SET_CREDENTIALS: &str =
    "set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or run `aws configure`";

/// A failed AWS call as an operator should read it.
pub fn describe<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + StdError + 'static,
    R: Debug + 'static,
{
    if let Some(c) = credentials_problem(e) {
        return c;
    }
    let why = innermost(e);
    if why.to_ascii_lowercase().contains("missing region") || why.contains("region must be set") {
        return "no AWS region is set; set AWS_REGION (or a region in the AWS profile)".to_string();
    }
    match e {
        SdkError::ServiceError(_) => match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_string(),
            (None, Some(message)) => message.to_string(),
            (None, None) => format!("AWS refused the request ({why})"),
        },
        SdkError::TimeoutError(_) => "AWS did not answer in time; try again".to_string(),
        SdkError::DispatchFailure(d) if d.is_timeout() => "AWS did not answer in time; try again".to_string(),
        SdkError::DispatchFailure(_) => {
            format!("could not reach AWS: {why}; check the network, AWS_REGION and AWS_ENDPOINT_URL")
        }
        SdkError::ResponseError(_) => format!("AWS's answer could not be read: {why}"),
        SdkError::ConstructionFailure(_) => format!("the request could not be made: {why}"),
        _ => why,
    }
}

/// "No credentials" in plain words when that is what failed, wherever in the chain it sits.
fn credentials_problem(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(c) = err.downcast_ref::<CredentialsError>() {
            return Some(match c {
                CredentialsError::CredentialsNotLoaded(_) => format!(
                    "no AWS credentials were found (looked in the environment, the profile, web identity, \
                     the container and the instance metadata); {SET_CREDENTIALS}"
                ),
                CredentialsError::ProviderTimedOut(_) => {
                    format!("looking for AWS credentials timed out; {SET_CREDENTIALS}")
                }
                _ => format!("the AWS credentials could not be used: {}; {SET_CREDENTIALS}", innermost(err)),
            });
        }
        next = err.source();
    }
    None
}

/// The last error of the chain: the most specific, and a plain sentence ("Connection refused").
fn innermost(e: &(dyn StdError + 'static)) -> String {
    let mut last = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error;
    use aws_smithy_types::error::ErrorMetadata;

    type Response = aws_sdk_s3::config::http::HttpResponse;

    fn service_error(code: &str, message: &str) -> SdkError<ListObjectsV2Error, Response> {
        let meta = ErrorMetadata::builder().code(code).message(message).build();
        let response = Response::new(400u16.try_into().unwrap(), aws_smithy_types::body::SdkBody::empty());
        SdkError::service_error(ListObjectsV2Error::generic(meta), response)
    }

    #[test]
    fn a_refusal_is_its_code_and_message() {
        let e = service_error("ValidationError", "Stack with id foo does not exist");
        assert_eq!(describe(&e), "ValidationError: Stack with id foo does not exist");
    }

    #[test]
    fn missing_credentials_say_what_to_set_and_no_debug_dump() {
        let not_loaded = CredentialsError::not_loaded("no credentials found in chain");
        let e: SdkError<ListObjectsV2Error, Response> = SdkError::construction_failure(not_loaded);
        let text = describe(&e);
        assert!(text.starts_with("no AWS credentials were found"), "{text}");
        assert!(text.contains("AWS_PROFILE") && text.contains("aws configure"), "{text}");
        assert!(!text.contains('{') && text.len() < 300, "{text}");
    }

    #[test]
    fn a_missing_region_says_to_set_one() {
        let e: SdkError<ListObjectsV2Error, Response> = SdkError::dispatch_failure(
            aws_sdk_s3::error::ConnectorError::other("Invalid Configuration: Missing Region".into(), None),
        );
        assert_eq!(describe(&e), "no AWS region is set; set AWS_REGION (or a region in the AWS profile)");
    }

    #[test]
    fn an_unreachable_endpoint_names_the_cause_and_the_settings() {
        let io =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused (os error 111)");
        let e: SdkError<ListObjectsV2Error, Response> =
            SdkError::dispatch_failure(aws_sdk_s3::error::ConnectorError::io(Box::new(io)));
        let text = describe(&e);
        assert_eq!(
            text,
            "could not reach AWS: Connection refused (os error 111); check the network, AWS_REGION and AWS_ENDPOINT_URL"
        );
    }
}
