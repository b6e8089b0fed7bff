//! Stream records and Kinesis events as the gateway and Lambda make them, for the replay tests.

use aws_lambda_events::event::kinesis::KinesisEvent;
use shared::envelope::{Api, Chunker, Header, MAX_RECORD_BYTES, WriteParams};
use shared::secret::Role;
use shared::sensitive::Sensitive;
use stream_writer::DeadLetters;
use testbed::Influxd;
use testbed::stack::events::{StreamRecord, kinesis_event};

/// One stream record of `lines` for `db`'s bucket, written with `token`.
pub fn record(db: &Influxd, lines: &[String], token: &str) -> Vec<u8> {
    let header = Header {
        api: Api::V2,
        params: WriteParams {
            org: Some(db.org.clone()),
            bucket: Some(db.bucket.clone()),
            ..Default::default()
        },
        target: None,
        authorization: Some(Sensitive::new(format!("Token {token}"))),
        received_at_ns: 0,
        content_type: None,
        request_id: "replay-test".into(),
        chunk: 0,
        chunks: 0,
        lines: 0,
        raw_bytes: 0,
    };
    let mut c = Chunker::new(header, MAX_RECORD_BYTES, 8).expect("chunker");
    for l in lines {
        c.push_line(l.as_bytes(), b"").expect("line");
    }
    let mut records = c.finish().expect("finish");
    assert_eq!(records.len(), 1, "one record");
    records.remove(0).to_vec()
}

/// The sequence number of the `i`th record of [`event`].
pub fn sequence_number(i: usize) -> String {
    format!("{:056}", i + 1)
}

/// A Kinesis event of `records`, in order, on one shard, as the Lambda runtime hands it over.
#[allow(dead_code)]
pub fn event(records: &[Vec<u8>]) -> KinesisEvent {
    event_from(0, records)
}

/// [`event`] of records that are the `first`th and following of their shard (a retried batch
/// starts at the record it stopped at, with that record's sequence number).
pub fn event_from(first: usize, records: &[Vec<u8>]) -> KinesisEvent {
    let records: Vec<StreamRecord> = records
        .iter()
        .enumerate()
        .map(|(i, data)| StreamRecord {
            shard_id: "shardId-000000000000".into(),
            sequence_number: sequence_number(first + i),
            partition_key: "k".into(),
            data: data.clone(),
            arrival: 1.7e9,
        })
        .collect();
    serde_json::from_value(kinesis_event("arn:aws:kinesis:us-east-1:123456789012:stream/s", &records))
        .expect("a Kinesis event")
}

/// Dead-letter storage for tests where no record is bad data (never reached: no network).
#[allow(dead_code)]
pub fn unused_dead_letters() -> DeadLetters {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .build();
    DeadLetters::new(
        aws_sdk_s3::Client::from_conf(conf),
        "unused".into(),
        "dead-letters/".into(),
        Role::Source,
    )
}
