//! From validated lines to stream records: stamping and chunking (pure: no I/O).
//!
//! Every line without a timestamp gets the gateway's receive time in the request's precision, so
//! the source and the destination — which replay the record at different times — store the same
//! instant, and a replay of the same record is idempotent. The stamped lines are cut into records
//! that each stay within the Kinesis record limit together with the partition key (see
//! `shared::envelope`). All records of one request share one partition key, so they land on one
//! shard in order.

use bytes::Bytes;
use shared::envelope::{Chunker, EnvelopeError, Header, PartitionKeyMode, Target};
use shared::influx_error::{ErrorCode, InfluxError};
use shared::line_protocol::Line;

use crate::request::WriteRequest;

/// A request ready for Kinesis.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub records: Vec<Bytes>,
    pub partition_key: String,
}

/// Stamps and chunks `lines` of `write` into records of at most `max_record` bytes (partition key
/// included); each record's header carries `target`, the write's resolved target at the source.
pub fn prepare(
    write: &WriteRequest,
    target: Option<Target>,
    lines: &[Line<'_>],
    received_at_ns: i64,
    mode: PartitionKeyMode,
    max_record: usize,
) -> Result<Prepared, InfluxError> {
    let partition_key = mode.key(write.api, &write.params);
    let header = Header {
        api: write.api,
        params: write.params.clone(),
        target,
        authorization: write.authorization.clone(),
        received_at_ns,
        content_type: write.content_type.clone(),
        request_id: write.request_id.clone(),
        chunk: 0,
        chunks: 0,
        lines: 0,
        raw_bytes: 0,
    };
    let mut chunker = Chunker::new(header, max_record, partition_key.len()).map_err(envelope_error)?;
    // One stamp for the request, appended by the chunker as it compresses (no copy of the line).
    let stamp = format!(" {}", write.precision.timestamp_for(received_at_ns));
    for line in lines {
        if line.has_timestamp {
            chunker.push_line(line.text, b"").map_err(envelope_error)?;
        } else {
            let (base, bridge) = line.stamp_split();
            if bridge.is_empty() {
                chunker.push_line(base, stamp.as_bytes()).map_err(envelope_error)?;
            } else {
                chunker.push_line(base, &[bridge, stamp.as_bytes()].concat()).map_err(envelope_error)?;
            }
        }
    }
    let records = chunker.finish().map_err(envelope_error)?;
    Ok(Prepared { records, partition_key })
}

fn envelope_error(e: EnvelopeError) -> InfluxError {
    match e {
        EnvelopeError::LineTooLarge { line, limit } => InfluxError::new(
            ErrorCode::RequestTooLarge,
            format!(
                "line {line} is too large for one stream record ({limit} bytes compressed at most); \
                 split its fields over several points"
            ),
        ),
        other => InfluxError::new(ErrorCode::Internal, format!("building the stream record failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::envelope::{Api, MAX_RECORD_BYTES, Record, WriteParams};
    use shared::line_protocol::{Precision, validate};
    use shared::sensitive::Sensitive;

    use crate::request::Stamping;

    fn write(body: &[u8], precision: Precision) -> WriteRequest {
        WriteRequest {
            api: Api::V2,
            params: WriteParams { org: Some("o".into()), bucket: Some("b".into()), ..Default::default() },
            precision: Stamping::V2(precision),
            authorization: Some(Sensitive::new("Token t")),
            content_type: None,
            request_id: "r1".into(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn lines_without_timestamp_get_the_receive_time_in_the_request_precision() {
        let body = b"m,t=a f=1i\nm,t=b f=2i 123\nm f=\"a b\"\n";
        let w = write(body, Precision::Milliseconds);
        let lines = validate(&w.body, Precision::Milliseconds).unwrap();
        let p =
            prepare(&w, None, &lines, 1_700_000_000_123_456_789, PartitionKeyMode::Random, MAX_RECORD_BYTES)
                .unwrap();
        assert_eq!(p.records.len(), 1);
        let r = Record::decode(&p.records[0]).unwrap();
        assert_eq!(
            r.body().unwrap(),
            b"m,t=a f=1i 1700000000123\nm,t=b f=2i 123\nm f=\"a b\" 1700000000123\n"
        );
        assert_eq!(r.header.received_at_ns, 1_700_000_000_123_456_789);
        assert_eq!(r.header.request_id, "r1");
        assert_eq!(r.header.authorization.unwrap().expose(), "Token t");
    }

    /// What broke: the gateway appended ` <stamp>` after a lone trailing backslash, which
    /// escaped the space, so influxd stored the stamp inside the string value and gave the point
    /// its own arrival time, different at each database.
    #[test]
    fn a_line_ending_in_a_lone_backslash_keeps_its_stamp_through_the_gateway() {
        // (A backslash before a newline escapes it: the line must end the body.)
        let body = b"m s=\"x\"y\\";
        let w = write(body, Precision::Seconds);
        let lines = validate(&w.body, Precision::Seconds).unwrap();
        let p =
            prepare(&w, None, &lines, 1_700_000_000_123_456_789, PartitionKeyMode::Random, MAX_RECORD_BYTES)
                .unwrap();
        let r = Record::decode(&p.records[0]).unwrap();
        assert_eq!(r.body().unwrap(), b"m s=\"x\"y_ 1700000000\n");
    }

    #[test]
    fn every_record_of_a_request_shares_one_partition_key_and_fits() {
        let mut body = Vec::new();
        for i in 0..20_000 {
            let noise: u64 = rand::random();
            body.extend_from_slice(format!("m,i={i} s=\"{noise:x}{noise:o}\" {i}\n").as_bytes());
        }
        let w = write(&body, Precision::Nanoseconds);
        let lines = validate(&w.body, Precision::Nanoseconds).unwrap();
        let p = prepare(&w, None, &lines, 0, PartitionKeyMode::Random, 64 * 1024).unwrap();
        assert!(p.records.len() > 1);
        let mut replayed = Vec::new();
        for r in &p.records {
            assert!(r.len() + p.partition_key.len() <= 64 * 1024);
            replayed.extend(Record::decode(r).unwrap().body().unwrap());
        }
        assert_eq!(replayed, body);
    }
}
