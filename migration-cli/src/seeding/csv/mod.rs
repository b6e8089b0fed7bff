//! The `--csv` path: buckets exported as Flux annotated CSV and written back as line protocol.
//!
//! Files (the names AWS's `influx_migration.py` uses, so either tool reads the other's
//! directory): `metadata_<bucket>.json` (the bucket's definition plus `org_name`) and
//! `bucket_<bucket>.csv` (annotated CSV with `#group`, `#datatype` and `#default`, the format of
//! `influx query --raw`).
//!
//! - [`metadata`]: the metadata file.
//! - [`export`]: bucket to files, in time chunks.
//! - [`import`]: files to a new bucket, resumable.
//!
//! Reading annotated CSV and turning a row into a point are the InfluxDB client's
//! ([`crate::influx::annotated_csv`], [`crate::influx::raw_point`]): the comparison engine reads
//! query answers the same way.

pub mod export;
pub mod import;
pub mod metadata;
