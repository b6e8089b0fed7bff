//! Stream records and Kinesis events as the gateway and Lambda make them, for the replay tests.

use aws_lambda_events::event::kinesis::KinesisEvent;
use base64::Engine;
use serde_json::json;
use shared::envelope::{Api, Chunker, Header, MAX_RECORD_BYTES, WriteParams};
use shared::secret::Role;
use shared::sensitive::Sensitive;
use stream_writer::DeadLetters;
use testbed::Influxd;

/// One stream record of `lines` for `db`'s bucket, written with `token`.
pub fn record(db: &Influxd, lines: &[String], token: &str) -> Vec<u8> {
    let header = Header {
        api: Api::V2,
        params: WriteParams {
            org: Some(db.org.clone()),
            bucket: Some(db.bucket.clone()),
            ..Default::default()
        },
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
pub fn event(records: &[Vec<u8>]) -> KinesisEvent {
    let records: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(i, data)| {
            let seq = sequence_number(i);
            json!({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "k", "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(data), "approximateArrivalTimestamp": 1.7e9},
                "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": format!("shardId-000000000000:{seq}"),
                "eventName": "aws:kinesis:record", "invokeIdentityArn": "arn:aws:iam::123456789012:role/r",
                "awsRegion": "us-east-1", "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("a Kinesis event")
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
