//! The kinesis-writer Lambda function: API Gateway write requests into the Kinesis stream.
//!
//! Set-up happens once per cold start and makes no network call: configuration from the
//! environment (a missing variable stops the start with its name), the AWS SDK clients from the
//! standard credential/region/endpoint chain, one HTTP client for the admission probe.

use kinesis_writer::{Config, Deps};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init_lambda();
    let config = Config::from_env()?;
    let aws = shared::sdk::load().await;
    let deps = Deps::new(config, &aws)?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = kinesis_writer::deadline_of(&event.context, deps.config.put_budget);
        Ok::<Value, Error>(kinesis_writer::handle(deps, event.payload, deadline).await)
    }))
    .await
}
