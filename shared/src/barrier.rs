//! The barrier: a control record `cutover` puts into every open shard of the stream, and the
//! proof, written by each stream writer, that everything before it in that shard is durably in
//! its database.
//!
//! Why it is exact: Kinesis keeps the order of records within a shard, and the gateway
//! acknowledges a write only after `PutRecord` succeeded. So every write acknowledged before the
//! barrier was put lies before it in its shard, and a writer that has passed the barrier in every
//! shard holds every such write. No lag metric, margin or clock on the writers' side is involved.
//!
//! # Format
//!
//! The envelope's frame (`ILM`, a version byte, a header length, the header) with version
//! [`CONTROL_VERSION`] and a JSON header ([`Control`]); no body. Data records keep
//! [`crate::envelope::FORMAT_VERSION`]: a stream writer too old to know barriers reads version 2
//! as "a newer format than I read" and stops the shard there, visibly (a stall record, the
//! `StalledSeconds` metric), rather than misreading it or writing it anywhere.
//!
//! # Where passing is recorded
//!
//! `barriers/<target>/<shard>/<id>.json` in the dead-letter bucket ([`Passed`]), next to the
//! stall records. A barrier is never written to a database and never dead-lettered.

use serde::{Deserialize, Serialize};

use crate::envelope::{EnvelopeError, Frame, MAGIC};
use crate::secret::Role;

/// The frame version of control records.
pub const CONTROL_VERSION: u8 = 2;
/// Where the writers record the barriers they passed.
pub const BARRIER_PREFIX: &str = "barriers/";

/// A control record's header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Control {
    Barrier(Barrier),
}

/// One barrier, as put into one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Barrier {
    /// Shared by the barrier records of one round (one per shard).
    pub id: String,
    /// When the round started, before its first record was put (ns since the epoch): every write
    /// acknowledged before this instant lies before the barrier.
    pub put_at_ns: i64,
    /// The shard it was put into, as the putter meant it (a record put while the stream is
    /// resharded may land in another shard: the writer records the shard it read it from).
    pub shard_id: String,
}

/// What a writer records when it has passed a barrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Passed {
    pub target: Role,
    pub id: String,
    /// The shard the writer read the barrier from.
    pub shard_id: String,
    /// The barrier record's sequence number.
    pub sequence_number: String,
    pub put_at_ns: i64,
    /// When the writer had applied everything before it (ms since the epoch).
    pub passed_at_ms: i64,
}

/// What a stream record is, when it is not data.
#[derive(Debug)]
pub enum ControlRead {
    /// A data record (or not a record of this product at all): read it as data.
    NotControl,
    /// A control record this build knows.
    Control(Control),
    /// A control record this build cannot read (a newer kind, or an unreadable header): the
    /// writer stops there, like at a newer data format.
    Unknown(String),
}

impl Control {
    /// The record's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let header = serde_json::to_vec(self).map_err(EnvelopeError::BadHeader)?;
        let mut out = Vec::with_capacity(8 + header.len());
        out.extend_from_slice(MAGIC);
        out.push(CONTROL_VERSION);
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(&header);
        Ok(out)
    }

    /// Reads a record as a control record; never panics, whatever the bytes.
    pub fn read(data: &[u8]) -> ControlRead {
        let Ok(frame) = Frame::split(data) else { return ControlRead::NotControl };
        if frame.version != CONTROL_VERSION {
            return ControlRead::NotControl;
        }
        match serde_json::from_slice::<Control>(frame.header) {
            Ok(c) => ControlRead::Control(c),
            Err(e) => ControlRead::Unknown(format!("control record not readable by this build: {e}")),
        }
    }
}

/// The key of `target`'s proof of passing barrier `id` in `shard_id`.
pub fn passed_key(target: Role, shard_id: &str, id: &str) -> String {
    format!("{BARRIER_PREFIX}{}/{shard_id}/{id}.json", target.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Record;

    fn barrier() -> Control {
        Control::Barrier(Barrier {
            id: "b-1".into(),
            put_at_ns: 1_700_000_000_000_000_000,
            shard_id: "shardId-000000000001".into(),
        })
    }

    #[test]
    fn a_barrier_round_trips() {
        let bytes = barrier().encode().unwrap();
        match Control::read(&bytes) {
            ControlRead::Control(c) => assert_eq!(c, barrier()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_data_reader_of_this_format_version_refuses_a_barrier_rather_than_misreading_it() {
        // What a stream writer built before barriers does with one: it stops there.
        let bytes = barrier().encode().unwrap();
        match Record::decode(&bytes) {
            Err(EnvelopeError::UnsupportedVersion(v)) => assert_eq!(v, CONTROL_VERSION),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_control_kind_is_not_taken_for_data_nor_for_a_barrier() {
        let header = br#"{"kind":"snapshot","id":"x"}"#;
        let mut bytes = b"ILM\x02".to_vec();
        bytes.extend_from_slice(&(header.len() as u32).to_be_bytes());
        bytes.extend_from_slice(header);
        assert!(matches!(Control::read(&bytes), ControlRead::Unknown(_)));
        assert!(matches!(Control::read(b"ILM\x01\0\0\0\0"), ControlRead::NotControl));
        assert!(matches!(Control::read(b"garbage"), ControlRead::NotControl));
    }

    #[test]
    fn the_proof_key_names_target_shard_and_barrier() {
        assert_eq!(
            passed_key(Role::Destination, "shardId-000000000002", "b-1"),
            "barriers/destination/shardId-000000000002/b-1.json"
        );
    }
}
