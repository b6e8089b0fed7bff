//! Clients: InfluxDB OSS 2.x as this program speaks to it, and the formats it answers in.
//!
//! Nothing here knows about a migration: no source or destination, no AWS. Everything above
//! (the engines in `compare`, `scheduled` and `seeding`, and the commands) talks to InfluxDB
//! through these modules only.
//!
//! - [`api`]: the typed async client (one server, one token; every method one request).
//! - [`annotated_csv`]: Flux annotated CSV read incrementally, the answer of every query.
//! - [`raw_point`]: a raw Flux row as a line-protocol point, types kept exact.
//! - [`manifest`]: the backup manifest (`influx backup`'s file and the server's bucket metadata).
//! - [`multipart`]: the streaming `multipart/mixed` reader for `/api/v2/backup/metadata`.
//! - [`compression`]: gzip over streams of byte chunks.
//! - [`kv_snapshot`]: a read-only reader of the backup's KV snapshot (BoltDB), for authorizations.
//!
//! May use: `shared` only.

pub mod annotated_csv;
pub mod api;
pub mod compression;
pub mod kv_snapshot;
pub mod manifest;
pub mod multipart;
pub mod raw_point;
