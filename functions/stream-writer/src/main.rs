//! The stream-writer Lambda function: one binary, deployed twice (`TARGET=source` and
//! `TARGET=destination`), replaying the Kinesis stream into one database.
//!
//! Set-up happens once per cold start and makes no network call.

use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use stream_writer::{Config, Deps};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init_lambda();
    let config = Config::from_env()?;
    let aws = shared::sdk::load().await;
    let deps = Deps::new(config, &aws)?;
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<KinesisEvent>| async move {
        let mut deadline = stream_writer::deadline_of(&event.context);
        if let Some(budget) = deps.config.retry_budget {
            deadline = deadline.min(std::time::Instant::now() + budget);
        }
        Ok::<_, Error>(stream_writer::handle(deps, &event.payload, deadline).await)
    }))
    .await
}
