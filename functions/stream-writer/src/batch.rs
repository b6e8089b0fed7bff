//! Planning a batch: decode the records and group them into writes (pure: no I/O).

use aws_lambda_events::event::kinesis::KinesisEventRecord;
use shared::barrier::{Barrier, CONTROL_VERSION, Control, ControlRead};
use shared::envelope::{Api, EnvelopeError, Record, WriteParams};
use shared::line_protocol::Precision;
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

/// How records are written: API, parameters (the precision included) and credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub api: Api,
    pub params: WriteParams,
    pub authorization: Option<Sensitive>,
    /// The unit of the body's timestamps under these parameters.
    pub unit: Precision,
}

/// Records sent as one write, in sequence order.
///
/// `form` is how the write goes; `own[i]` is how record `items[i]` went when the client sent it
/// (mapped for the destination). When they differ the group is *merged*: records of one target
/// sent as one write whatever API, precision and token they came with (see [`plan`]). A merged
/// write the database refuses for its credential, org or bucket, or whose bodies cannot be
/// rewritten to its unit, is sent again as its records came, in order ([`WriteGroup::as_sent`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteGroup {
    pub form: Form,
    /// Indices of the records, in order.
    pub items: Vec<usize>,
    pub own: Vec<Form>,
    pub raw_bytes: u64,
}

impl WriteGroup {
    fn new(form: Form, index: usize, own: Form, raw_bytes: u64) -> WriteGroup {
        WriteGroup { form, items: vec![index], own: vec![own], raw_bytes }
    }

    fn push(&mut self, index: usize, own: Form, raw_bytes: u64) {
        self.items.push(index);
        self.own.push(own);
        self.raw_bytes += raw_bytes;
    }

    /// Whether some record goes in another form than it came in.
    pub fn is_merged(&self) -> bool {
        self.own.iter().any(|f| *f != self.form)
    }

    /// The members `from..to` (positions in `items`) as a group of their own with this form.
    pub fn part(&self, from: usize, to: usize) -> WriteGroup {
        WriteGroup {
            form: self.form.clone(),
            items: self.items[from..to].to_vec(),
            own: self.own[from..to].to_vec(),
            raw_bytes: 0,
        }
    }

    /// The records as they came: runs of consecutive records of one form, in order.
    pub fn as_sent(&self) -> Vec<WriteGroup> {
        let mut runs: Vec<WriteGroup> = Vec::new();
        for (index, own) in self.items.iter().zip(&self.own) {
            match runs.last_mut() {
                Some(run) if run.form == *own => run.push(*index, own.clone(), 0),
                _ => runs.push(WriteGroup::new(own.clone(), *index, own.clone(), 0)),
            }
        }
        runs
    }
}

/// What to do with the next part of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Write(WriteGroup),
    /// Steps that may run at the same time: each a [`Step::Lane`] (the writes of one target, in
    /// order) or a record that is set aside or skipped. Records of different targets cannot
    /// overwrite one another, so their order across lanes does not matter.
    Concurrent(Vec<Step>),
    /// The writes of one target, one after another.
    Lane(Vec<WriteGroup>),
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

/// The records between two points of order (a barrier, a record that stops the batch, a write
/// whose target is not known exactly): one lane per target, plus the records set aside.
#[derive(Default)]
struct Segment {
    lanes: Vec<(String, Vec<WriteGroup>)>,
    aside: Vec<Step>,
}

impl Segment {
    fn add(
        &mut self,
        key: String,
        form: Form,
        index: usize,
        own: Form,
        raw_bytes: u64,
        max_write_bytes: u64,
    ) {
        let lane = match self.lanes.iter_mut().find(|(k, _)| *k == key) {
            Some((_, lane)) => lane,
            None => {
                self.lanes.push((key, Vec::new()));
                &mut self.lanes.last_mut().expect("just pushed").1
            }
        };
        match lane.last_mut() {
            Some(group) if group.raw_bytes + raw_bytes <= max_write_bytes => {
                // The finest unit of its records: every coarser timestamp is exact in it.
                if form.unit.nanos_per_unit() < group.form.unit.nanos_per_unit() {
                    group.form.unit = form.unit;
                    group.form.params.precision = Some(form.unit.as_str().to_string());
                }
                group.push(index, own, raw_bytes);
            }
            _ => lane.push(WriteGroup::new(form, index, own, raw_bytes)),
        }
    }

    fn close(&mut self, steps: &mut Vec<Step>) {
        let mut parts: Vec<Step> = std::mem::take(&mut self.aside);
        parts.extend(std::mem::take(&mut self.lanes).into_iter().map(|(_, lane)| Step::Lane(lane)));
        if !parts.is_empty() {
            steps.push(Step::Concurrent(parts));
        }
    }
}

/// The unit of a record's timestamps; `None` for a v2 precision influxd refuses.
fn unit_of(api: Api, params: &WriteParams) -> Option<Precision> {
    match api {
        Api::V2 => Precision::from_v2(params.precision.as_deref()).ok(),
        Api::V1 => Some(Precision::from_v1(params.precision.as_deref())),
    }
}

/// Where an admitted record lands, exactly, as a key and the v2 write that reaches it; `None`
/// when that is not known exactly (no resolved target, a refused precision, or a v1 write whose
/// bucket the destination's own DBRP mappings choose under bucket mappings).
///
/// The source: the bucket ID and org ID the gateway resolved. The destination: the org and bucket
/// names the mappings give (a v1 write goes by the bucket it resolved to at the source when
/// there are no bucket mappings, as the seeding copied that bucket by name).
fn lane(target: Role, record: &Record<'_>, own: &Form, mappings: &Mappings) -> Option<(String, Form)> {
    let t = record.header.target.as_ref()?;
    let v2 = |params: WriteParams| Form {
        api: Api::V2,
        params: WriteParams { precision: Some(own.unit.as_str().to_string()), ..params },
        authorization: own.authorization.clone(),
        unit: own.unit,
    };
    match target {
        Role::Source => Some((
            format!("{}/{}", t.org_id, t.bucket_id),
            v2(WriteParams {
                org_id: Some(t.org_id.clone()),
                bucket: Some(t.bucket_id.clone()),
                ..Default::default()
            }),
        )),
        Role::Destination => {
            let params = match own.api {
                Api::V2 => WriteParams { precision: None, ..own.params.clone() },
                Api::V1 if mappings.buckets.is_empty() => {
                    let as_v2 = WriteParams { bucket: Some(t.bucket.clone()), ..Default::default() };
                    match mappings.apply_to(Api::V2, &as_v2, None, Some(t)) {
                        Mapped::Write { params, .. } => params,
                        Mapped::NotMigrated | Mapped::Unmapped { .. } => return None,
                    }
                }
                Api::V1 => return None,
            };
            let key = format!(
                "{}/{}",
                params.org.as_deref().or(params.org_id.as_deref())?,
                params.bucket.as_deref()?
            );
            Some((key, v2(params)))
        }
    }
}

/// Groups the batch into steps, in order. For the destination the secret's mappings rename
/// buckets, orgs and tokens; when a bucket list is given, a write to another bucket is skipped
/// (`"unmapped": "source-only"`) or stops the batch (`"fail"`). The source always gets every
/// write where the client sent it.
///
/// One write per target between two points of order, whatever the order of the records: the
/// records the gateway admitted (their target resolved at the source) are grouped by where they
/// land, v1 writes as v2 writes to the bucket they resolved to, timestamps in the finest unit of
/// the group, with the credential of the group's first record. Every record of a group was
/// admitted with a credential allowed to write that bucket, so any of them may carry the write;
/// if the database refuses it, the records go again with their own credentials. Within a target
/// the records keep their order, so of two writes to one series and time the later still wins.
/// Records whose target is not known exactly are written in order, as they came, consecutive
/// ones of one form together, and are points of order.
pub fn plan(items: &[Item<'_>], target: Role, mappings: &Mappings, max_write_bytes: u64) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut segment = Segment::default();
    for item in items {
        let record = match &item.decoded {
            Ok(r) => r,
            Err(EnvelopeError::UnsupportedVersion(CONTROL_VERSION)) => {
                segment.close(&mut steps);
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
                segment.close(&mut steps);
                steps.push(Step::Newer { index: item.index, version: *version });
                continue;
            }
            Err(e) => {
                segment.aside.push(Step::Unreadable { index: item.index, error: e.to_string() });
                continue;
            }
        };
        if let Err(e) = record.check_body() {
            segment.aside.push(Step::Unreadable { index: item.index, error: e.to_string() });
            continue;
        }
        let h = &record.header;
        let (params, authorization) = match target {
            Role::Source => (h.params.clone(), h.authorization.clone()),
            Role::Destination => {
                match mappings.apply_to(h.api, &h.params, h.authorization.as_ref(), h.target.as_ref()) {
                    Mapped::Write { params, authorization } => (params, authorization),
                    Mapped::NotMigrated => {
                        segment.aside.push(Step::Skip { index: item.index });
                        continue;
                    }
                    Mapped::Unmapped { bucket } => {
                        segment.close(&mut steps);
                        steps.push(Step::Unmapped { index: item.index, bucket });
                        continue;
                    }
                }
            }
        };
        let unit = unit_of(h.api, &params);
        let own = Form { api: h.api, params, authorization, unit: unit.unwrap_or(Precision::Nanoseconds) };
        if unit.is_some()
            && let Some((key, form)) = lane(target, record, &own, mappings)
        {
            segment.add(key, form, item.index, own, h.raw_bytes, max_write_bytes);
            continue;
        }
        segment.close(&mut steps);
        if let Some(Step::Write(group)) = steps.last_mut()
            && group.form == own
            && group.raw_bytes + h.raw_bytes <= max_write_bytes
        {
            group.push(item.index, own, h.raw_bytes);
            continue;
        }
        steps.push(Step::Write(WriteGroup::new(own.clone(), item.index, own, h.raw_bytes)));
    }
    segment.close(&mut steps);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::kinesis::KinesisEventRecord;
    use shared::envelope::{Chunker, Header, MAX_RECORD_BYTES, Target};

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

    /// The steps in short: `w[..]` a write, `l(..)` a lane, `c(..)` concurrent parts.
    fn shape(steps: &[Step]) -> String {
        steps
            .iter()
            .map(|s| match s {
                Step::Write(g) => format!("w{:?}", g.items),
                Step::Concurrent(parts) => format!("c({})", shape(parts)),
                Step::Lane(groups) => {
                    format!(
                        "l({})",
                        groups.iter().map(|g| format!("{:?}", g.items)).collect::<Vec<_>>().join(" ")
                    )
                }
                Step::Unreadable { index, .. } => format!("u{index}"),
                Step::Newer { index, .. } => format!("n{index}"),
                Step::Barrier { index, .. } => format!("b{index}"),
                Step::Skip { index } => format!("s{index}"),
                Step::Unmapped { index, .. } => format!("f{index}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A record the gateway admitted: its target resolved at the source.
    fn admitted(api: Api, bucket: &str, precision: &str, token: &str, line: &str) -> Vec<u8> {
        let params = match api {
            Api::V2 => WriteParams {
                org: Some("o".into()),
                bucket: Some(bucket.into()),
                precision: Some(precision.into()),
                ..Default::default()
            },
            Api::V1 => WriteParams {
                db: Some(bucket.into()),
                rp: Some("autogen".into()),
                precision: Some(precision.into()),
                ..Default::default()
            },
        };
        let header = Header {
            api,
            params,
            target: Some(Target {
                org_id: "0000000000000001".into(),
                org: "o".into(),
                bucket_id: format!("{:0>16}", bucket.len()),
                bucket: bucket.into(),
                rp: (api == Api::V1).then(|| "autogen".into()),
            }),
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

    #[test]
    fn admitted_records_make_one_write_per_target_whatever_their_api_precision_and_token() {
        // Two buckets ("aa" and "bbb"), interleaved, with both APIs, four precisions, two tokens.
        let recs: Vec<_> = (0..12)
            .map(|i| {
                let bucket = if i % 2 == 0 { "aa" } else { "bbb" };
                let api = if i % 3 == 0 { Api::V1 } else { Api::V2 };
                let precision = ["s", "ms", "us", "ns"][(i / 2) % 4];
                let token = if (i / 2) % 2 == 0 { "t1" } else { "t2" };
                event_record(&i.to_string(), admitted(api, bucket, precision, token, &format!("m v={i} {i}")))
            })
            .collect();
        let items: Vec<Item> = recs.iter().enumerate().map(|(i, r)| Item::from_event(i, r)).collect();
        for target in [Role::Source, Role::Destination] {
            let steps = plan(&items, target, &Mappings::default(), 1 << 20);
            assert_eq!(shape(&steps), "c(l([0, 2, 4, 6, 8, 10]) l([1, 3, 5, 7, 9, 11]))", "{target:?}");
            let Step::Concurrent(parts) = &steps[0] else { unreachable!() };
            for part in parts {
                let Step::Lane(groups) = part else { panic!("{part:?}") };
                let g = &groups[0];
                assert!(g.is_merged());
                assert_eq!(g.form.api, Api::V2, "v1 writes go to the bucket they resolved to");
                assert_eq!(g.form.unit, Precision::Nanoseconds, "the finest unit of the group");
                assert_eq!(g.form.params.precision.as_deref(), Some("ns"));
                assert_eq!(g.form.authorization, g.own[0].authorization, "the first record's credential");
                // Sent as they came: runs of one form, in order.
                let runs = g.as_sent();
                assert_eq!(runs.len(), 6, "every record differs from the one before it");
                assert_eq!(runs.iter().flat_map(|r| r.items.clone()).collect::<Vec<_>>(), g.items);
                assert!(runs.iter().all(|r| !r.is_merged()));
            }
        }
        let steps = plan(&items, Role::Source, &Mappings::default(), 1 << 20);
        let Step::Concurrent(parts) = &steps[0] else { unreachable!() };
        let Step::Lane(groups) = &parts[0] else { unreachable!() };
        assert_eq!(groups[0].form.params.bucket.as_deref(), Some("0000000000000002"), "by ID at the source");
        assert_eq!(groups[0].form.params.org_id.as_deref(), Some("0000000000000001"));
        let steps = plan(&items, Role::Destination, &Mappings::default(), 1 << 20);
        let Step::Concurrent(parts) = &steps[0] else { unreachable!() };
        let Step::Lane(groups) = &parts[0] else { unreachable!() };
        assert_eq!(groups[0].form.params.bucket.as_deref(), Some("aa"), "by name at the destination");
        assert_eq!(groups[0].form.params.org.as_deref(), Some("o"));
    }

    #[test]
    fn records_whose_target_is_not_known_exactly_are_points_of_order() {
        let recs = [
            event_record("0", admitted(Api::V2, "aa", "s", "t", "m v=0 0")),
            event_record("1", record("aa", "t", "m v=1 1")),
            event_record("2", admitted(Api::V2, "aa", "s", "t", "m v=2 2")),
            event_record("3", admitted(Api::V2, "bbb", "s", "t", "m v=3 3")),
        ];
        let items: Vec<Item> = recs.iter().enumerate().map(|(i, r)| Item::from_event(i, r)).collect();
        let steps = plan(&items, Role::Source, &Mappings::default(), 1 << 20);
        assert_eq!(shape(&steps), "c(l([0])) w[1] c(l([2]) l([3]))");
        // At the destination, a v1 write under bucket mappings goes where its DBRP mapping says:
        // not known here.
        let mappings: Mappings = serde_json::from_str(
            r#"{"buckets":{"aa":"aa","bbb":"bbb","aa/autogen":"aa"},"unmapped":"fail"}"#,
        )
        .unwrap();
        let recs = [
            event_record("0", admitted(Api::V2, "aa", "s", "t", "m v=0 0")),
            event_record("1", admitted(Api::V1, "aa", "s", "t", "m v=1 1")),
            event_record("2", admitted(Api::V2, "aa", "s", "t", "m v=2 2")),
        ];
        let items: Vec<Item> = recs.iter().enumerate().map(|(i, r)| Item::from_event(i, r)).collect();
        let steps = plan(&items, Role::Destination, &mappings, 1 << 20);
        assert_eq!(shape(&steps), "c(l([0])) w[1] c(l([2]))");
    }

    #[test]
    fn a_lane_keeps_the_size_bound_and_its_order() {
        let recs: Vec<_> = (0..5)
            .map(|i| event_record(&i.to_string(), admitted(Api::V2, "aa", "s", "t", "m f=1 1")))
            .collect();
        let items: Vec<Item> = recs.iter().enumerate().map(|(i, r)| Item::from_event(i, r)).collect();
        let steps = plan(&items, Role::Source, &Mappings::default(), 16);
        assert_eq!(shape(&steps), "c(l([0, 1] [2, 3] [4]))");
        let Step::Concurrent(parts) = &steps[0] else { unreachable!() };
        let Step::Lane(groups) = &parts[0] else { unreachable!() };
        assert!(groups.iter().all(|g| g.is_merged()), "v2 by name became v2 by ID");
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
        let shape = shape(&steps);
        assert_eq!(shape, "w[0, 1] w[2] c(u3) w[4, 5]");
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
                assert_eq!(g.form.params.bucket.as_deref(), Some("a-new"));
                assert_eq!(g.form.authorization.as_ref().unwrap().expose(), "Token dest-token");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(steps[1], Step::Concurrent(vec![Step::Skip { index: 1 }]));
        // The source ignores the mappings.
        let steps = plan(&items, Role::Source, &mappings, 1 << 20);
        assert!(
            matches!(&steps[0], Step::Write(g) if g.form.params.bucket.as_deref() == Some("a") && g.items == vec![0])
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
