//! Planning a batch: decode the records and group them into writes (pure: no I/O).

use aws_lambda_events::event::kinesis::KinesisEventRecord;
use shared::barrier::{Barrier, CONTROL_VERSION, Control, ControlRead};
use shared::envelope::{Api, EnvelopeError, Record, WriteParams};
use shared::secret::{Mapped, Mappings, Role};
use shared::sensitive::Sensitive;

/// One record of the batch.
#[derive(Debug)]
pub struct Item<'a> {
    /// Position in the batch.
    pub index: usize,
    pub sequence_number: &'a str,
    /// The shard, from the event ID (`shardId-…:sequence`).
    pub shard_id: &'a str,
    pub partition_key: &'a str,
    /// Read only when the record is dead-lettered.
    pub approximate_arrival: &'a aws_lambda_events::encodings::SecondTimestamp,
    pub data: &'a [u8],
    pub decoded: Result<Record<'a>, EnvelopeError>,
}

impl<'a> Item<'a> {
    pub fn from_event(index: usize, r: &'a KinesisEventRecord) -> Item<'a> {
        let data: &'a [u8] = &r.kinesis.data.0;
        let shard_id = r.event_id.as_deref().and_then(|id| id.split(':').next()).unwrap_or("unknown-shard");
        Item {
            index,
            sequence_number: &r.kinesis.sequence_number,
            shard_id,
            partition_key: &r.kinesis.partition_key,
            approximate_arrival: &r.kinesis.approximate_arrival_timestamp,
            data,
            decoded: Record::decode(data),
        }
    }
}

/// Consecutive records sent as one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteGroup {
    pub api: Api,
    pub params: WriteParams,
    pub authorization: Option<Sensitive>,
    /// Indices of the records, in order.
    pub items: Vec<usize>,
    pub raw_bytes: u64,
}

/// What to do with the next part of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Write(WriteGroup),
    /// A record that is not a readable stream record, or whose body is not valid gzip: kept
    /// aside with its data (never its credential).
    Unreadable {
        index: usize,
        error: String,
    },
    /// A record of a format version newer than this writer reads: the writer is older than the
    /// gateway. Retried (the batch stops here), never set aside.
    Newer {
        index: usize,
        version: u8,
    },
    /// A barrier (`shared::barrier`): everything before it is durable once the replay reaches it;
    /// the writer records that it passed it. Never written, never dead-lettered.
    Barrier {
        index: usize,
        barrier: Barrier,
    },
    /// A write to a bucket outside this migration (destination only, `"unmapped":
    /// "source-only"`): nothing to do but count it.
    Skip {
        index: usize,
    },
    /// A write to a bucket outside the mappings when `"unmapped"` is `"fail"` (destination
    /// only): a configuration error; the batch stops here until a mapping is added or the
    /// operator parks the shard.
    Unmapped {
        index: usize,
        bucket: String,
    },
}

/// Groups the batch into steps, in order. For the destination the secret's mappings rename
/// buckets, orgs and tokens; when a bucket list is given, a write to another bucket is skipped
/// (`"unmapped": "source-only"`) or stops the batch (`"fail"`). The source always gets every
/// write as the client sent it.
pub fn plan(items: &[Item<'_>], target: Role, mappings: &Mappings, max_write_bytes: u64) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for item in items {
        let record = match &item.decoded {
            Ok(r) => r,
            Err(EnvelopeError::UnsupportedVersion(CONTROL_VERSION)) => {
                steps.push(match Control::read(item.data) {
                    ControlRead::Control(Control::Barrier(barrier)) => {
                        Step::Barrier { index: item.index, barrier }
                    }
                    // A control record of a newer release: stop there, as at a newer data format.
                    ControlRead::Unknown(_) | ControlRead::NotControl => {
                        Step::Newer { index: item.index, version: CONTROL_VERSION }
                    }
                });
                continue;
            }
            Err(EnvelopeError::UnsupportedVersion(version)) => {
                steps.push(Step::Newer { index: item.index, version: *version });
                continue;
            }
            Err(e) => {
                steps.push(Step::Unreadable { index: item.index, error: e.to_string() });
                continue;
            }
        };
        if let Err(e) = record.check_body() {
            steps.push(Step::Unreadable { index: item.index, error: e.to_string() });
            continue;
        }
        let h = &record.header;
        let (params, authorization) = match target {
            Role::Source => (h.params.clone(), h.authorization.clone()),
            Role::Destination => {
                match mappings.apply_to(h.api, &h.params, h.authorization.as_ref(), h.target.as_ref()) {
                    Mapped::Write { params, authorization } => (params, authorization),
                    Mapped::NotMigrated => {
                        steps.push(Step::Skip { index: item.index });
                        continue;
                    }
                    Mapped::Unmapped { bucket } => {
                        steps.push(Step::Unmapped { index: item.index, bucket });
                        continue;
                    }
                }
            }
        };
        if let Some(Step::Write(group)) = steps.last_mut()
            && group.api == h.api
            && group.params == params
            && group.authorization == authorization
            && group.raw_bytes + h.raw_bytes <= max_write_bytes
        {
            group.items.push(item.index);
            group.raw_bytes += h.raw_bytes;
            continue;
        }
        steps.push(Step::Write(WriteGroup {
            api: h.api,
            params,
            authorization,
            items: vec![item.index],
            raw_bytes: h.raw_bytes,
        }));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::kinesis::KinesisEventRecord;
    use shared::envelope::{Chunker, Header, MAX_RECORD_BYTES};

    fn record(bucket: &str, token: &str, line: &str) -> Vec<u8> {
        let header = Header {
            api: Api::V2,
            params: WriteParams { org: Some("o".into()), bucket: Some(bucket.into()), ..Default::default() },
            target: None,
            authorization: Some(Sensitive::new(format!("Token {token}"))),
            received_at_ns: 1,
            content_type: None,
            request_id: "r".into(),
            chunk: 0,
            chunks: 0,
            lines: 0,
            raw_bytes: 0,
        };
        let mut c = Chunker::new(header, MAX_RECORD_BYTES, 10).unwrap();
        c.push_line(line.as_bytes(), b"").unwrap();
        c.finish().unwrap().remove(0).to_vec()
    }

    fn event_record(seq: &str, data: Vec<u8>) -> KinesisEventRecord {
        let v = serde_json::json!({
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "k", "sequenceNumber": seq,
                "data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &data),
                "approximateArrivalTimestamp": 1700000000.5},
            "eventSource": "aws:kinesis", "eventVersion": "1.0",
            "eventID": format!("shardId-000000000003:{seq}"), "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/r", "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/s"
        });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn consecutive_records_with_the_same_target_are_grouped_in_order() {
        let recs = [
            event_record("1", record("a", "t1", "m f=1 1")),
            event_record("2", record("a", "t1", "m f=2 2")),
            event_record("3", record("b", "t1", "m f=3 3")),
            event_record("4", b"garbage".to_vec()),
            event_record("5", record("a", "t2", "m f=5 5")),
            event_record("6", record("a", "t2", "m f=6 6")),
        ];
        let items: Vec<Item> = recs.iter().enumerate().map(|(i, r)| Item::from_event(i, r)).collect();
        assert_eq!(items[0].shard_id, "shardId-000000000003");
        let steps = plan(&items, Role::Source, &Mappings::default(), 1 << 20);
        let shape: Vec<String> = steps
            .iter()
            .map(|s| match s {
                Step::Write(g) => format!("w{:?}", g.items),
                Step::Unreadable { index, .. } => format!("u{index}"),
                Step::Newer { index, .. } => format!("n{index}"),
                Step::Barrier { index, .. } => format!("b{index}"),
                Step::Skip { index } => format!("s{index}"),
                Step::Unmapped { index, .. } => format!("f{index}"),
            })
            .collect();
        assert_eq!(shape, vec!["w[0, 1]", "w[2]", "u3", "w[4, 5]"]);
    }

    #[test]
    fn groups_respect_the_size_bound() {
        let recs: Vec<_> =
            (0..5).map(|i| event_record(&i.to_string(), record("a", "t", "m f=1 1"))).collect();
        let items: Vec<Item> = recs.iter().enumerate().map(|(i, r)| Item::from_event(i, r)).collect();
        // Each record holds 8 raw bytes ("m f=1 1\n"): at most two fit in 16.
        let steps = plan(&items, Role::Source, &Mappings::default(), 16);
        assert_eq!(steps.len(), 3);
    }

    #[test]
    fn destination_mappings_rename_and_skip() {
        let mappings: Mappings =
            serde_json::from_str(r#"{"buckets":{"a":"a-new"},"tokens":{"t1":"dest-token"}}"#).unwrap();
        let recs = [
            event_record("1", record("a", "t1", "m f=1 1")),
            event_record("2", record("other", "t1", "m f=2 2")),
        ];
        let items: Vec<Item> = recs.iter().enumerate().map(|(i, r)| Item::from_event(i, r)).collect();
        let steps = plan(&items, Role::Destination, &mappings, 1 << 20);
        match &steps[0] {
            Step::Write(g) => {
                assert_eq!(g.params.bucket.as_deref(), Some("a-new"));
                assert_eq!(g.authorization.as_ref().unwrap().expose(), "Token dest-token");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(steps[1], Step::Skip { index: 1 });
        // The source ignores the mappings.
        let steps = plan(&items, Role::Source, &mappings, 1 << 20);
        assert!(
            matches!(&steps[0], Step::Write(g) if g.params.bucket.as_deref() == Some("a") && g.items == vec![0])
        );
    }

    #[test]
    fn a_barrier_is_a_step_of_its_own_that_no_write_spans() {
        let barrier = Control::Barrier(Barrier { id: "b".into(), put_at_ns: 5, shard_id: "s".into() });
        let recs = [
            event_record("1", record("a", "t1", "m f=1 1")),
            event_record("2", barrier.encode().unwrap()),
            event_record("3", record("a", "t1", "m f=3 3")),
        ];
        let items: Vec<Item> = recs.iter().enumerate().map(|(i, r)| Item::from_event(i, r)).collect();
        for target in [Role::Source, Role::Destination] {
            let steps = plan(&items, target, &Mappings::default(), 1 << 20);
            assert_eq!(steps.len(), 3, "{steps:?}");
            assert!(matches!(&steps[0], Step::Write(g) if g.items == vec![0]));
            assert!(matches!(&steps[1], Step::Barrier { index: 1, barrier } if barrier.id == "b"));
            assert!(matches!(&steps[2], Step::Write(g) if g.items == vec![2]));
        }
    }
}
