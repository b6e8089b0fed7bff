//! The comparison engine: does the destination hold what the source holds?
//!
//! Source against destination (or any reference against a target), over a time window, with no
//! AWS and no command line: the seeding's verification and the live commands (`verify`,
//! `repair`, `cutover`, `status`, the handover) drive it.
//!
//! - [`window`]: the time window and the bucket pair every comparison is about.
//! - [`query`]: a Flux query's rows as they stream in, and the engine's error.
//! - [`pairing`]: which source bucket the writers replay into which destination bucket.
//! - [`counts`]: values per bucket and measurement, counted by influxd, and the report.
//! - [`digest`]: the smallest windows whose content differs (exact: every value hashed).
//! - [`reconcile`]: making a window, a measurement or a bucket of the target match the reference.
//! - [`bypass`]: writes that reached the source without passing through the gateway.
//!
//! May use: [`crate::influx`], [`crate::output`] and `shared`.

pub mod bypass;
pub mod counts;
pub mod digest;
pub mod pairing;
pub mod query;
pub mod reconcile;
pub mod window;
