//! Which deployment a live operation acts on: the names of the stream, the endpoint secret, the
//! functions and the lag alarm, and the AWS clients that reach them.
//!
//! Names come from the core stack's outputs (`--stack`, one `DescribeStacks`; see
//! infra/core.yaml) and each can be given or overridden on its own (`--stream-name`,
//! `--secret-id`, `--destination-function`, ...), so the commands also work on a deployment made
//! without our templates, or on the local stack. Clients use the standard AWS chain (environment,
//! profile, instance role) for credentials and region, plus `--region` / `--endpoint-url` (or
//! `AWS_ENDPOINT_URL`).

use std::collections::BTreeMap;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use clap::Args;

use crate::aws::lag::LagSourceSpec;

/// The AWS side of every live command.
#[derive(Debug, Clone, Args)]
pub struct AwsArgs {
    /// The core CloudFormation stack (infra/core.yaml); names are read from its outputs.
    #[arg(long, env = "LIVE_STACK", value_name = "STACK")]
    pub stack: Option<String>,
    /// The Kinesis stream (default: the stack's StreamName output).
    #[arg(long, value_name = "NAME")]
    pub stream_name: Option<String>,
    /// The endpoint secret, name or ARN (default: the stack's SecretArn output).
    #[arg(long, value_name = "ID")]
    pub secret_id: Option<String>,
    /// The destination stream writer (default: the stack's DestinationWriterFunctionName output).
    #[arg(long, value_name = "NAME")]
    pub destination_function: Option<String>,
    /// The source stream writer (default: the stack's SourceWriterFunctionName output).
    #[arg(long, value_name = "NAME")]
    pub source_function: Option<String>,
    /// The query router (default: the stack's QueryRouterFunctionName output).
    #[arg(long, value_name = "NAME")]
    pub router_function: Option<String>,
    /// The destination writer's IteratorAge alarm (default: the stack's DestinationLagAlarmName output).
    #[arg(long, value_name = "NAME")]
    pub lag_alarm: Option<String>,
    /// The dead-letter bucket, which also holds the writers' stall records and the park rules
    /// (default: the stack's DeadLetterBucketName output).
    #[arg(long, value_name = "NAME")]
    pub dead_letter_bucket: Option<String>,
    /// The stream writers' DEAD_LETTER_PREFIX.
    #[arg(long, value_name = "PREFIX", default_value = "dead-letters/")]
    pub dead_letter_prefix: String,
    /// Where the destination writer's lag (IteratorAge) is read: `cloudwatch`, or `file:<path>`
    /// (the JSON the local stack's poller writes).
    #[arg(long, env = "LIVE_LAG_SOURCE", default_value = "cloudwatch", value_parser = LagSourceSpec::parse)]
    pub lag_source: LagSourceSpec,
    /// AWS region (default: the standard chain: AWS_REGION, the profile, ...).
    #[arg(long)]
    pub region: Option<String>,
    /// Send every AWS call to this endpoint (default: AWS_ENDPOINT_URL, else AWS's).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

/// Why the deployment could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    #[error("reading the outputs of stack {stack}: {reason}")]
    Stack { stack: String, reason: String },
    #[error("stack {stack} does not exist")]
    NoStack { stack: String },
    #[error("no {what} known: pass --stack <core stack> or {flag}")]
    Missing { what: &'static str, flag: &'static str },
}

/// The AWS clients of a live command.
#[derive(Debug, Clone)]
pub struct Aws {
    pub lambda: aws_sdk_lambda::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub cloudformation: aws_sdk_cloudformation::Client,
    /// Path-style when an endpoint override is set (S3-compatible servers and emulators have no
    /// per-bucket host names).
    pub s3: aws_sdk_s3::Client,
}

impl Aws {
    /// Clients from the standard chain, with the region and endpoint overrides.
    pub async fn connect(args: &AwsArgs) -> Aws {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = &args.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(url) = &args.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config: SdkConfig = loader.load().await;
        let overridden = args.endpoint_url.is_some()
            || ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
                .iter()
                .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
        let s3 = aws_sdk_s3::config::Builder::from(&config).force_path_style(overridden).build();
        Aws {
            s3: aws_sdk_s3::Client::from_conf(s3),
            lambda: aws_sdk_lambda::Client::new(&config),
            kinesis: aws_sdk_kinesis::Client::new(&config),
            secrets: aws_sdk_secretsmanager::Client::new(&config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&config),
            cloudformation: aws_sdk_cloudformation::Client::new(&config),
        }
    }
}

/// The resolved names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deployment {
    pub stack: Option<String>,
    pub stream_name: Option<String>,
    pub secret_id: Option<String>,
    pub destination_function: Option<String>,
    pub source_function: Option<String>,
    pub router_function: Option<String>,
    pub lag_alarm: Option<String>,
    pub dead_letter_bucket: Option<String>,
    pub dead_letter_prefix: String,
    /// The stack's RetentionHours output (the stream itself is the authority; see `stream`).
    pub retention_hours: Option<u32>,
}

impl Deployment {
    /// Names from the stack's outputs (when `--stack` is given), overridden by explicit flags.
    pub async fn resolve(args: &AwsArgs, aws: &Aws) -> Result<Deployment, DeploymentError> {
        let outputs = match &args.stack {
            Some(stack) => stack_outputs(&aws.cloudformation, stack).await?,
            None => BTreeMap::new(),
        };
        Ok(Deployment::from_outputs(args, &outputs))
    }

    /// Explicit flags first, then the stack's outputs.
    pub fn from_outputs(args: &AwsArgs, outputs: &BTreeMap<String, String>) -> Deployment {
        let out = |key: &str| outputs.get(key).filter(|v| !v.is_empty()).cloned();
        Deployment {
            stack: args.stack.clone(),
            stream_name: args.stream_name.clone().or_else(|| out("StreamName")),
            // moto's CloudFormation skips secrets and leaves SecretArn out; the name works too.
            secret_id: args.secret_id.clone().or_else(|| out("SecretArn")).or_else(|| out("SecretName")),
            destination_function: args
                .destination_function
                .clone()
                .or_else(|| out("DestinationWriterFunctionName")),
            source_function: args.source_function.clone().or_else(|| out("SourceWriterFunctionName")),
            router_function: args.router_function.clone().or_else(|| out("QueryRouterFunctionName")),
            lag_alarm: args.lag_alarm.clone().or_else(|| out("DestinationLagAlarmName")),
            dead_letter_bucket: args.dead_letter_bucket.clone().or_else(|| out("DeadLetterBucketName")),
            dead_letter_prefix: args.dead_letter_prefix.clone(),
            retention_hours: out("RetentionHours").and_then(|v| v.parse().ok()),
        }
    }

    pub fn destination_function(&self) -> Result<&str, DeploymentError> {
        self.destination_function
            .as_deref()
            .ok_or(DeploymentError::Missing { what: "destination writer", flag: "--destination-function" })
    }

    pub fn dead_letter_bucket(&self) -> Result<&str, DeploymentError> {
        self.dead_letter_bucket
            .as_deref()
            .ok_or(DeploymentError::Missing { what: "dead-letter bucket", flag: "--dead-letter-bucket" })
    }

    pub fn secret_id(&self) -> Result<&str, DeploymentError> {
        self.secret_id
            .as_deref()
            .ok_or(DeploymentError::Missing { what: "endpoint secret", flag: "--secret-id" })
    }
}

/// Every output of a stack, by key.
async fn stack_outputs(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> Result<BTreeMap<String, String>, DeploymentError> {
    let answer = cfn.describe_stacks().stack_name(stack).send().await.map_err(|e| {
        let reason = crate::aws::sdk_error::describe(&e);
        if reason.contains("does not exist") {
            DeploymentError::NoStack { stack: stack.to_string() }
        } else {
            DeploymentError::Stack { stack: stack.to_string(), reason }
        }
    })?;
    let found =
        answer.stacks().first().ok_or_else(|| DeploymentError::NoStack { stack: stack.to_string() })?;
    Ok(found
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        aws: AwsArgs,
    }

    fn args(extra: &[&str]) -> AwsArgs {
        let mut argv = vec!["t"];
        argv.extend_from_slice(extra);
        Cli::parse_from(argv).aws
    }

    #[test]
    fn flags_override_stack_outputs_and_outputs_fill_the_rest() {
        let outputs: BTreeMap<String, String> = [
            ("StreamName", "p-writes"),
            ("SecretArn", "arn:aws:secretsmanager:us-east-1:1:secret:p/endpoints-AbC"),
            ("SecretName", "p/endpoints"),
            ("DestinationWriterFunctionName", "p-stream-writer-destination"),
            ("SourceWriterFunctionName", "p-stream-writer-source"),
            ("QueryRouterFunctionName", "p-query-router"),
            ("DestinationLagAlarmName", "p-destination-writer-lag"),
            ("RetentionHours", "168"),
            ("DeadLetterBucketName", "p-dead-letters-abc"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let d = Deployment::from_outputs(
            &args(&["--stack", "p-core", "--destination-function", "mine"]),
            &outputs,
        );
        assert_eq!(d.destination_function.as_deref(), Some("mine"));
        assert_eq!(d.stream_name.as_deref(), Some("p-writes"));
        assert_eq!(d.secret_id.as_deref(), Some("arn:aws:secretsmanager:us-east-1:1:secret:p/endpoints-AbC"));
        assert_eq!(d.router_function.as_deref(), Some("p-query-router"));
        assert_eq!(d.lag_alarm.as_deref(), Some("p-destination-writer-lag"));
        assert_eq!(d.retention_hours, Some(168));
        assert_eq!(d.dead_letter_bucket().unwrap(), "p-dead-letters-abc");
        assert_eq!(d.dead_letter_prefix, "dead-letters/");
    }

    #[test]
    fn the_secret_name_stands_in_when_the_stack_has_no_arn_output() {
        let outputs: BTreeMap<String, String> =
            [("SecretName".to_string(), "p/endpoints".to_string())].into_iter().collect();
        let d = Deployment::from_outputs(&args(&[]), &outputs);
        assert_eq!(d.secret_id().unwrap(), "p/endpoints");
    }

    #[test]
    fn a_missing_name_says_which_flag_gives_it() {
        let d = Deployment::from_outputs(&args(&[]), &BTreeMap::new());
        let e = d.destination_function().unwrap_err().to_string();
        assert!(e.contains("--stack") && e.contains("--destination-function"), "{e}");
    }
}
