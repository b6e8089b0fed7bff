//! The live path's deployment in AWS, as the operator commands see it.
//!
//! - [`deployment`]: which stream, secret, functions and alarm a command acts on, and the clients.
//! - [`endpoint`]: the endpoint secret's read endpoint, and switching it.
//! - [`stream`]: the Kinesis stream's retention and how close waiting records are to expiring.
//! - [`event_source`]: the stream writers' event source mappings and what could drop a record.
//! - [`lag`]: a writer's IteratorAge, from CloudWatch or the local stack's lag file.
//! - [`replay_bound`]: where both writers have replayed, from their lag.
//! - [`barrier`]: a barrier put into every open shard, and which writers have passed it.
//! - [`stalls`]: the writers' stall records and the operator's park rules.
//! - [`concurrency`]: reserved concurrency, the switch that holds the destination writer.
//! - [`alarm`]: the destination lag alarm, which follows the throttle.
//! - [`sdk_error`]: an AWS call's failure in plain words.
//!
//! May use: [`crate::output`] and `shared` (no InfluxDB: that is [`crate::influx`]).

pub mod alarm;
pub mod barrier;
pub mod concurrency;
pub mod deployment;
pub mod endpoint;
pub mod event_source;
pub mod lag;
pub mod replay_bound;
pub mod sdk_error;
pub mod stalls;
pub mod stream;
