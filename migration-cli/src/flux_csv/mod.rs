//! The `--csv` path: buckets exported as Flux annotated CSV and written back as line protocol.
//!
//! Files (the names AWS's `influx_migration.py` uses, so either tool reads the other's
//! directory): `metadata_<bucket>.json` (the bucket's definition plus `org_name`) and
//! `bucket_<bucket>.csv` (annotated CSV with `#group`, `#datatype` and `#default`, the format of
//! `influx query --raw`).
//!
//! - [`annotated`]: reading annotated CSV incrementally.
//! - [`metadata`]: the metadata file.
//! - [`point`]: a CSV row as a line-protocol point.
//! - [`export`]: bucket to files, in time chunks.
//! - [`import`]: files to a new bucket, resumable.

pub mod annotated;
pub mod export;
pub mod import;
pub mod metadata;
pub mod point;
