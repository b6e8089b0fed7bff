//! What the three Lambda functions and the migration CLI share.
//!
//! The live path has one contract above all: no write is acknowledged and then lost, and both
//! databases end up with identical points. Every piece that contract depends on lives here, once:
//!
//! - [`line_protocol`]: splits a write body into lines the way influxd does (quoted string fields
//!   may hold newlines), validates each line as influxd 2.7 would, and stamps lines that carry no
//!   timestamp so that source and destination store the same instant.
//! - [`envelope`]: the versioned Kinesis record format and the chunker that keeps every record
//!   (partition key included) within Kinesis' 1 MiB limit.
//! - [`gateway`]: API Gateway REST (payload 1.0) and HTTP API (payload 2.0) events, normalised
//!   into one request type and answered in the caller's format.
//! - [`headers`]: `X-Original-Authorization` back to `Authorization`; hop-by-hop and gateway-only
//!   headers removed.
//! - [`secret`]: the endpoint secret's JSON shape and a cache that serves the last good value when
//!   Secrets Manager cannot be reached.
//! - [`influx_client`]: one HTTP client for InfluxDB and the one function that turns a write
//!   response into what the writer must do (the failure-class table of DESIGN.md).
//! - [`influx_error`]: InfluxDB's error body (`{"code","message"}`) and its status codes.
//! - [`sensitive`]: a wrapper that keeps tokens out of `Debug`, `Display` and logs.
//! - [`logging`]: tracing set-up (JSON in Lambda).
//! - [`deadline`]: the time an invocation has left, read from the runtime's deadline.
//! - [`sdk`]: the AWS SDK configuration with bounded retries and timeouts.
//! - [`settings`]: a function's environment variables, read strictly at cold start.
//! - [`barrier`]: the control record `cutover` puts into every shard, and each writer's proof that
//!   it applied everything before it.
//! - [`stall`]: what a writer records when a shard cannot move on, and the operator's park rules.

pub mod barrier;
pub mod deadline;
pub mod envelope;
pub mod gateway;
pub mod headers;
pub mod influx_client;
pub mod influx_error;
pub mod line_protocol;
pub mod logging;
pub mod sdk;
pub mod secret;
pub mod sensitive;
pub mod settings;
pub mod stall;
