//! Scheduled work — tasks, checks and notification rules — and which database runs it.
//!
//! influxd runs every active task, check and rule on its own schedule. Copied active to the
//! destination, each would run twice during a live migration: every alert pages twice, and a
//! downsampling task on the lagging destination writes partial results nothing corrects. So
//! scheduled work belongs to one database at a time; the other holds its copy *inactive* and
//! *labelled* [`HELD_LABEL`]. The label is the memory of ownership: it says "active where its
//! owner is, and made active here when ownership comes here", which tells it apart from work an
//! operator turned off on purpose (inactive, unlabelled: it stays off on both sides). It lives
//! in the databases themselves, so any machine can run the next step, and a crash leaves a state
//! the next run reads back.
//!
//! To hold an item the label is attached first and the item made inactive second: a crash in
//! between leaves it labelled and active, which the next hold finishes. To release it, the item
//! is made active first and the label removed last.
//!
//! This module holds the pieces: the inventory of a database's scheduled work, hold, release,
//! the runs of a task, a run started by hand for a scheduled time, and the schedule times of an
//! `every` task. The handover that uses them is [`crate::live::handover`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::influx::api::{ApiError, InfluxApi};

/// The label of an item held inactive for the database that owns scheduled work.
pub const HELD_LABEL: &str = "influx-migration:held";

/// The kinds of scheduled work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Task,
    Check,
    Rule,
}

impl Kind {
    /// In the order a handover takes them: tasks first (a check may read what a task derives),
    /// then checks, then rules (which read the statuses checks write).
    pub const ALL: [Kind; 3] = [Kind::Task, Kind::Check, Kind::Rule];

    /// The API path segment, also the key of a list answer.
    pub fn path(self) -> &'static str {
        match self {
            Kind::Task => "tasks",
            Kind::Check => "checks",
            Kind::Rule => "notificationRules",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Kind::Task => "task",
            Kind::Check => "check",
            Kind::Rule => "notification rule",
        }
    }
}

/// How often an item runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `every`, in whole seconds.
    Every(i64),
    /// A cron expression, or an `every` this module cannot turn into seconds (`1mo`).
    Other(String),
}

/// One task, check or rule of one database.
#[derive(Debug, Clone)]
pub struct Item {
    pub kind: Kind,
    pub id: String,
    /// The task it runs as (for a task, its own ID).
    pub task_id: String,
    pub org_id: String,
    pub org: String,
    pub name: String,
    pub active: bool,
    /// Carries [`HELD_LABEL`].
    pub held: bool,
    pub schedule: Schedule,
    /// How long after a scheduled time the run starts (`offset`, whole seconds; 0 when none),
    /// which is how late a point may arrive and still be read.
    pub offset: i64,
}

impl Item {
    /// `task "downsample" (org acme)`.
    pub fn describe(&self) -> String {
        format!("{} {:?} (org {})", self.kind.noun(), self.name, self.org)
    }

    /// What pairs an item with its namesake in the other database.
    pub fn key(&self) -> (String, Kind, String) {
        (self.org.clone(), self.kind, self.name.clone())
    }
}

/// Why scheduled work could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{host}: {what}")]
    Answer { host: String, what: String },
}

fn s<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Parses an influxd duration made of fixed units (`10s`, `1h30m`, `2d`) into whole seconds;
/// `None` for calendar units (`mo`, `y`), sub-second totals or anything unreadable.
pub fn duration_seconds(text: &str) -> Option<i64> {
    let mut total_ns: i128 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: i128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let ns: i128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            "w" => 7 * 86_400 * 1_000_000_000,
            _ => return None,
        };
        total_ns += n * ns;
    }
    if total_ns <= 0 || total_ns % 1_000_000_000 != 0 {
        return None;
    }
    i64::try_from(total_ns / 1_000_000_000).ok()
}

/// Seconds from Go's zero time (0001-01-01 UTC) to the Unix epoch: influxd aligns an `every`
/// schedule with `time.Truncate`, which counts from the zero time.
const GO_ZERO_TO_UNIX: i64 = 62_135_596_800;

/// The schedule times of an `every` task (Unix seconds) in `(after, until]`, as influxd's
/// scheduler makes them (`task/backend/scheduler.NewSchedule`: the last scheduled time is
/// truncated to a multiple of `every` counted from Go's zero time, then `every` is added):
/// the multiples of `every` since the zero time.
pub fn every_times(every: i64, after: i64, until: i64) -> Vec<i64> {
    if every <= 0 || until <= after {
        return Vec::new();
    }
    let since_zero = after + GO_ZERO_TO_UNIX;
    let first = since_zero.div_euclid(every) * every + every - GO_ZERO_TO_UNIX;
    (0..).map(|k| first + k * every).take_while(|&t| t <= until).collect()
}

pub fn rfc3339(unix_seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix_seconds.to_string())
}

/// An RFC 3339 time as Unix seconds (influxd's task times have whole seconds).
pub fn parse_time(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339).ok().map(|t| t.unix_timestamp())
}

fn schedule_of(v: &Value) -> Schedule {
    let every = s(v, "every");
    if !every.is_empty() {
        return match duration_seconds(every) {
            Some(n) => Schedule::Every(n),
            None => Schedule::Other(format!("every {every}")),
        };
    }
    let cron = s(v, "cron");
    Schedule::Other(if cron.is_empty() { "no schedule".to_string() } else { format!("cron {cron}") })
}

fn has_held_label(v: &Value) -> bool {
    v.get("labels").and_then(Value::as_array).into_iter().flatten().any(|l| s(l, "name") == HELD_LABEL)
}

/// The tasks of an org that people made (`type` system; checks' and rules' tasks are listed
/// with their check or rule), paged by `after` (the tasks API has no offset).
pub async fn list_tasks(api: &InfluxApi, org_id: &str) -> Result<Vec<Value>, ApiError> {
    let mut out: Vec<Value> = Vec::new();
    loop {
        let after = out.last().map(|t| s(t, "id").to_string()).unwrap_or_default();
        let mut q = vec![("orgID", org_id), ("limit", "500")];
        if !after.is_empty() {
            q.push(("after", &after));
        }
        let page = api.get_value("/api/v2/tasks", &q).await?;
        let items = page.get("tasks").and_then(Value::as_array).cloned().unwrap_or_default();
        let n = items.len();
        out.extend(items);
        if n < 500 {
            return Ok(out);
        }
    }
}

/// Every task, check and rule of every org the token sees.
pub async fn inventory(api: &InfluxApi) -> Result<Vec<Item>, WorkError> {
    let mut items = Vec::new();
    for org in api.orgs().await? {
        for kind in Kind::ALL {
            let values = match kind {
                Kind::Task => list_tasks(api, &org.id).await?,
                _ => {
                    api.list_all(&format!("/api/v2/{}", kind.path()), &[("orgID", &org.id)], kind.path())
                        .await?
                }
            };
            for v in values {
                let id = s(&v, "id").to_string();
                let task_id = if kind == Kind::Task { id.clone() } else { s(&v, "taskID").to_string() };
                items.push(Item {
                    kind,
                    task_id,
                    org_id: org.id.clone(),
                    org: org.name.clone(),
                    name: s(&v, "name").to_string(),
                    active: s(&v, "status") == "active",
                    held: has_held_label(&v),
                    schedule: schedule_of(&v),
                    offset: duration_seconds(s(&v, "offset")).unwrap_or(0),
                    id,
                });
            }
        }
    }
    items.sort_by_key(|a| a.key());
    Ok(items)
}

/// The held label of an org: its ID and properties (where a handover keeps, per item, the time
/// its replay starts from). Made when `create` and missing.
pub async fn held_label(
    api: &InfluxApi,
    org_id: &str,
    create: bool,
) -> Result<Option<(String, BTreeMap<String, String>)>, WorkError> {
    let page = api.get_value("/api/v2/labels", &[("orgID", org_id)]).await?;
    let found = page
        .get("labels")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|l| s(l, "name") == HELD_LABEL);
    let label = match (found, create) {
        (Some(l), _) => l.clone(),
        (None, false) => return Ok(None),
        (None, true) => {
            let body = json!({
                "orgID": org_id,
                "name": HELD_LABEL,
                "properties": {
                    "description": "held inactive by influx-migration: the other database owns scheduled work; \
                                    made active here at cutover (or rollback)",
                    "color": "#7A65F2",
                },
            });
            let made = api.send_value(Method::POST, "/api/v2/labels", &[], Some(&body)).await?;
            made.get("label").cloned().unwrap_or(made)
        }
    };
    let id = s(&label, "id").to_string();
    if id.is_empty() {
        return Err(WorkError::Answer { host: api.host().to_string(), what: "a label without an ID".into() });
    }
    let props = label
        .get("properties")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();
    Ok(Some((id, props)))
}

/// The held label's property that links an item made by the seeding under a new ID to the item
/// it was made from: `origin-<new id>` = `<original id>`.
pub const ORIGIN_PREFIX: &str = "origin-";

/// Records, in the held label of `org_id`, that item `id` was made from `origin_id` in the
/// other database (a rebuild gives every object a new ID; a full restore keeps them): what
/// pairs them at a handover, whatever their names.
pub async fn record_origin(
    api: &InfluxApi,
    org_id: &str,
    id: &str,
    origin_id: &str,
) -> Result<(), WorkError> {
    let (label_id, props) = held_label(api, org_id, true).await?.ok_or_else(|| WorkError::Answer {
        host: api.host().to_string(),
        what: "the held label could not be made".into(),
    })?;
    let key = format!("{ORIGIN_PREFIX}{id}");
    if props.get(&key).map(String::as_str) != Some(origin_id) {
        set_label_property(api, &label_id, &key, Some(origin_id)).await?;
    }
    Ok(())
}

/// Which items of the two databases are one item: the same ID (a full restore keeps IDs), or
/// an origin link recorded when the seeding made one from the other.
#[derive(Debug, Default, Clone)]
pub struct Links(BTreeSet<(String, String)>);

impl Links {
    /// The links recorded in the held labels of the orgs of `items`, in `api`.
    pub async fn read(api: &InfluxApi, items: &[Item]) -> Result<Links, WorkError> {
        let orgs: BTreeSet<&str> = items.iter().map(|i| i.org_id.as_str()).collect();
        let mut links = BTreeSet::new();
        for org in orgs {
            if let Some((_, props)) = held_label(api, org, false).await? {
                for (k, v) in props {
                    if let Some(id) = k.strip_prefix(ORIGIN_PREFIX)
                        && !v.is_empty()
                    {
                        links.insert((id.to_string(), v));
                    }
                }
            }
        }
        Ok(Links(links))
    }

    /// Both sides' links together.
    pub fn and(mut self, other: Links) -> Links {
        self.0.extend(other.0);
        self
    }

    /// Whether `a` and `b` are one item.
    pub fn same(&self, a: &str, b: &str) -> bool {
        a == b || self.0.iter().any(|(x, y)| (x == a && y == b) || (x == b && y == a))
    }
}

impl<const N: usize> From<[(&str, &str); N]> for Links {
    fn from(pairs: [(&str, &str); N]) -> Links {
        Links(pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect())
    }
}

/// Sets (or with `None` removes) one property of a label.
pub async fn set_label_property(
    api: &InfluxApi,
    label_id: &str,
    key: &str,
    value: Option<&str>,
) -> Result<(), WorkError> {
    let body = json!({"properties": {key: value.unwrap_or("")}});
    api.send_value(Method::PATCH, &format!("/api/v2/labels/{label_id}"), &[], Some(&body)).await?;
    Ok(())
}

async fn set_status(api: &InfluxApi, item: &Item, status: &str) -> Result<(), WorkError> {
    let path = format!("/api/v2/{}/{}", item.kind.path(), item.id);
    api.send_value(Method::PATCH, &path, &[], Some(&json!({"status": status}))).await?;
    Ok(())
}

/// Stops influxd from running an item it was asked to make inactive. influxd (2.7.12, 2.9.1)
/// schedules every task it creates whatever its status (the coordinator's `TaskCreated`), and an
/// update from inactive to inactive changes nothing (`TaskUpdated`), so an item made with
/// `"status": "inactive"` runs while it shows inactive. Activating and deactivating it releases
/// it from the scheduler.
pub async fn unschedule(api: &InfluxApi, kind: Kind, id: &str) -> Result<(), WorkError> {
    let path = format!("/api/v2/{}/{id}", kind.path());
    for status in ["active", "inactive"] {
        api.send_value(Method::PATCH, &path, &[], Some(&json!({"status": status}))).await?;
    }
    Ok(())
}

/// Holds an item: labelled first, inactive second. Returns whether anything changed.
pub async fn hold(api: &InfluxApi, item: &Item, label_id: &str) -> Result<bool, WorkError> {
    let mut changed = false;
    if !item.held {
        let path = format!("/api/v2/{}/{}/labels", item.kind.path(), item.id);
        api.send_value(Method::POST, &path, &[], Some(&json!({"labelID": label_id}))).await?;
        changed = true;
    }
    if item.active {
        set_status(api, item, "inactive").await?;
        changed = true;
    }
    Ok(changed)
}

/// Makes a held item active (the label stays until [`unlabel`]).
pub async fn activate(api: &InfluxApi, item: &Item) -> Result<(), WorkError> {
    if !item.active {
        set_status(api, item, "active").await?;
    }
    Ok(())
}

/// Removes the held label from an item.
pub async fn unlabel(api: &InfluxApi, item: &Item, label_id: &str) -> Result<(), WorkError> {
    let path = format!("/api/v2/{}/{}/labels/{label_id}", item.kind.path(), item.id);
    match api.send_value(Method::DELETE, &path, &[], None).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Holds one item known by ID (the rebuild makes each task, check and rule inactive and marks
/// those active at the source this way): labelled unless it is, then inactive.
pub async fn mark_held(api: &InfluxApi, kind: Kind, org_id: &str, id: &str) -> Result<(), WorkError> {
    let (label_id, _) = held_label(api, org_id, true).await?.ok_or_else(|| WorkError::Answer {
        host: api.host().to_string(),
        what: "the held label could not be made".into(),
    })?;
    let have = api.get_value(&format!("/api/v2/{}/{id}/labels", kind.path()), &[]).await?;
    let item = Item {
        kind,
        id: id.to_string(),
        task_id: String::new(),
        org_id: org_id.to_string(),
        org: String::new(),
        name: String::new(),
        active: true,
        held: has_held_label(&have),
        schedule: Schedule::Other(String::new()),
        offset: 0,
    };
    hold(api, &item, &label_id).await?;
    Ok(())
}

/// Holds every active task, check and rule of a database (the seeding does this at the
/// destination). Returns the items it held.
pub async fn hold_all(api: &InfluxApi) -> Result<Vec<Item>, WorkError> {
    let mut held = Vec::new();
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for item in inventory(api).await? {
        if !item.active && !item.held {
            continue;
        }
        let label = match labels.get(&item.org_id) {
            Some(l) => l.clone(),
            None => {
                let (id, _) =
                    held_label(api, &item.org_id, true).await?.ok_or_else(|| WorkError::Answer {
                        host: api.host().to_string(),
                        what: "the held label could not be made".into(),
                    })?;
                labels.insert(item.org_id.clone(), id.clone());
                id
            }
        };
        hold(api, &item, &label).await?;
        held.push(item);
    }
    Ok(held)
}

/// A task's `latestCompleted` (Unix seconds).
pub async fn latest_completed(api: &InfluxApi, task_id: &str) -> Result<Option<i64>, WorkError> {
    let task = api.get_value(&format!("/api/v2/tasks/{task_id}"), &[]).await?;
    Ok(parse_time(s(&task, "latestCompleted")))
}

/// When a task was made (Unix seconds): no run of it is scheduled before.
pub async fn created_at(api: &InfluxApi, task_id: &str) -> Result<Option<i64>, WorkError> {
    let task = api.get_value(&format!("/api/v2/tasks/{task_id}"), &[]).await?;
    Ok(parse_time(s(&task, "createdAt")))
}

/// One run of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: String,
    /// Unix seconds.
    pub scheduled_for: i64,
    /// `scheduled`, `started`, `success`, `failed` or `canceled`.
    pub status: String,
}

impl Run {
    pub fn finished(&self) -> bool {
        matches!(self.status.as_str(), "success" | "failed" | "canceled")
    }
}

fn run_of(v: &Value) -> Option<Run> {
    Some(Run {
        id: s(v, "id").to_string(),
        scheduled_for: parse_time(s(v, "scheduledFor"))?,
        status: s(v, "status").to_string(),
    })
}

/// The runs of a task scheduled in `(after, before)` (Unix seconds), running ones included,
/// read 500 at a time from the newest back.
pub async fn runs(api: &InfluxApi, task_id: &str, after: i64, before: i64) -> Result<Vec<Run>, WorkError> {
    let path = format!("/api/v2/tasks/{task_id}/runs");
    let mut out: Vec<Run> = Vec::new();
    let mut upper = before;
    while upper > after + 1 {
        let (a, b) = (rfc3339(after), rfc3339(upper));
        let page = api.get_value(&path, &[("afterTime", &a), ("beforeTime", &b), ("limit", "500")]).await?;
        let batch: Vec<Run> = page
            .get("runs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(run_of)
            .filter(|r| r.scheduled_for > after && r.scheduled_for < upper)
            .collect();
        let oldest = batch.iter().map(|r| r.scheduled_for).min();
        let full = page.get("runs").and_then(Value::as_array).is_some_and(|r| r.len() >= 500);
        out.extend(batch);
        match oldest {
            Some(o) if full && o < upper => upper = o + 1,
            _ => break,
        }
    }
    let mut seen = BTreeSet::new();
    out.retain(|r| seen.insert(r.id.clone()));
    out.sort_by_key(|r| r.scheduled_for);
    Ok(out)
}

/// Starts a run of a task for the schedule time `at` (`POST /api/v2/tasks/{id}/runs`): its Flux
/// `now()` is `at`, exactly as for the scheduled run at `at`.
pub async fn force_run(api: &InfluxApi, task_id: &str, at: i64) -> Result<String, WorkError> {
    let path = format!("/api/v2/tasks/{task_id}/runs");
    let made = api.send_value(Method::POST, &path, &[], Some(&json!({"scheduledFor": rfc3339(at)}))).await?;
    let id = s(&made, "id").to_string();
    if id.is_empty() {
        return Err(WorkError::Answer {
            host: api.host().to_string(),
            what: format!("{path} answered no run ID"),
        });
    }
    Ok(id)
}

/// The last message of a run's log, where influxd says why it failed.
async fn run_failure(api: &InfluxApi, task_id: &str, run_id: &str) -> Option<String> {
    let logs = api.get_value(&format!("/api/v2/tasks/{task_id}/runs/{run_id}/logs"), &[]).await.ok()?;
    let events = logs.get("events")?.as_array()?;
    events.iter().rev().map(|e| s(e, "message")).find(|m| !m.is_empty()).map(str::to_string)
}

/// How a finished run ended: `success`, or `failed`/`canceled` with the reason from its log;
/// `None` while it has not finished.
async fn outcome(api: &InfluxApi, task_id: &str, run_id: &str, status: &str) -> Option<String> {
    match status {
        "success" => Some(status.to_string()),
        "failed" | "canceled" => Some(match run_failure(api, task_id, run_id).await {
            Some(why) => format!("{status} ({why})"),
            None => status.to_string(),
        }),
        _ => None,
    }
}

/// Waits until the run `run_id`, scheduled for `at` (Unix seconds), has finished: `success`, or
/// `failed`/`canceled` with the reason from its log; an error after `limit`.
///
/// The run is read by ID. A finished run moves from the running set to the run log and in
/// between can be briefly unknown (404). influxd 2.7 to 2.9 can also answer 500 there ("a panic
/// has occurred ... nil pointer dereference"): the by-ID reader of the run log logs a field it
/// cannot parse, as in a record not yet whole, through a logger it was never given
/// (`task/backend/analytical_storage.go`). The task's run list reads the same log with a logger,
/// so on a server error the run is looked up there; it is polled on either way until `limit`.
pub async fn wait_run(
    api: &InfluxApi,
    task_id: &str,
    run_id: &str,
    at: i64,
    limit: Duration,
) -> Result<String, WorkError> {
    let path = format!("/api/v2/tasks/{task_id}/runs/{run_id}");
    let started = tokio::time::Instant::now();
    let mut pause = Duration::from_millis(50);
    let mut last_error: Option<ApiError> = None;
    loop {
        match api.get_value(&path, &[]).await {
            Ok(v) => {
                if let Some(done) = outcome(api, task_id, run_id, s(&v, "status")).await {
                    return Ok(done);
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) if e.status().is_some_and(|code| code >= 500) => {
                let listed = runs(api, task_id, at - 1, at + 1).await?;
                if let Some(run) = listed.iter().find(|r| r.id == run_id)
                    && let Some(done) = outcome(api, task_id, run_id, &run.status).await
                {
                    return Ok(done);
                }
                last_error = Some(e);
            }
            Err(e) => return Err(e.into()),
        }
        if started.elapsed() > limit {
            let why = last_error.map(|e| format!("; the last answer: {e}")).unwrap_or_default();
            return Err(WorkError::Answer {
                host: api.host().to_string(),
                what: format!(
                    "run {run_id} of task {task_id} did not finish within {} s{why}",
                    limit.as_secs()
                ),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// The buckets a task's Flux writes to: every `bucket: "<name>"` argument of a `to(` call
/// (`to` and `experimental.to`). A bucket given by ID or computed is not found.
pub fn output_buckets(flux: &str) -> Vec<String> {
    bucket_arguments(flux, "to(")
}

/// The buckets a task's or a check's Flux reads: every `bucket: "<name>"` argument of a
/// `from(` call. A bucket given by ID or computed is not found.
pub fn input_buckets(flux: &str) -> Vec<String> {
    bucket_arguments(flux, "from(")
}

/// Every literal `bucket: "<name>"` argument of the calls `call` (`"to("`, `"from("`) in `flux`.
fn bucket_arguments(flux: &str, call: &str) -> Vec<String> {
    let bytes = flux.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = flux[at..].find(call) {
        let start = at + i;
        at = start + call.len();
        let before = start.checked_sub(1).map(|b| bytes[b]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        // The call's arguments: up to the matching parenthesis, strings skipped.
        let (mut depth, mut j, mut in_string) = (1usize, at, false);
        while j < bytes.len() && depth > 0 {
            match bytes[j] {
                b'\\' if in_string => j += 1,
                b'"' => in_string = !in_string,
                b'(' if !in_string => depth += 1,
                b')' if !in_string => depth -= 1,
                _ => {}
            }
            j += 1;
        }
        let args = &flux[at..j.min(flux.len())];
        let mut from = 0;
        while let Some(k) = args[from..].find("bucket") {
            let key = from + k;
            from = key + 6;
            let prev = key.checked_sub(1).map(|b| args.as_bytes()[b]);
            if prev.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
                continue;
            }
            let rest = args[from..].trim_start();
            let Some(rest) = rest.strip_prefix(':') else { continue };
            let Some(rest) = rest.trim_start().strip_prefix('"') else { continue };
            let mut name = String::new();
            let mut chars = rest.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => name.extend(chars.next()),
                    '"' => {
                        found.push(std::mem::take(&mut name));
                        break;
                    }
                    c => name.push(c),
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// A bucket the tasks of one org write into, and the measurements they write there (`None`
/// when a task's Flux does not name them: see [`output_measurements`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutput {
    pub org: String,
    pub bucket: String,
    pub measurements: Option<BTreeSet<String>>,
}

/// Every bucket a task of any org writes to ([`output_buckets`]), per org, with the
/// measurements written there: a task that runs, or is held for the other database (an
/// inactive one, paused on purpose, is left out).
pub async fn task_outputs(api: &InfluxApi) -> Result<Vec<TaskOutput>, WorkError> {
    let mut out: BTreeMap<(String, String), Option<BTreeSet<String>>> = BTreeMap::new();
    for org in api.orgs().await? {
        for task in list_tasks(api, &org.id).await? {
            if s(&task, "status") != "active" && !has_held_label(&task) {
                continue;
            }
            let flux = s(&task, "flux");
            let written = output_measurements(flux);
            for bucket in output_buckets(flux) {
                let e = out.entry((org.name.clone(), bucket)).or_insert_with(|| Some(BTreeSet::new()));
                add_written(e, written.as_ref());
            }
        }
    }
    Ok(out
        .into_iter()
        .map(|((org, bucket), measurements)| TaskOutput { org, bucket, measurements })
        .collect())
}

/// Adds what one more task writes into a bucket to what the others write there: the union, or
/// `None` (unknown) once any of them does not name its measurements.
pub fn add_written(all: &mut Option<BTreeSet<String>>, one: Option<&BTreeSet<String>>) {
    match (all.as_mut(), one) {
        (Some(had), Some(w)) => had.extend(w.iter().cloned()),
        _ => *all = None,
    }
}

/// The measurements a task's Flux writes, when it names them: every literal
/// `set(key: "_measurement", value: "<m>")` and every record field `_measurement: "<m>"` (as in
/// `map(fn: (r) => ({r with _measurement: "<m>"}))`). `None` when it names none: the task keeps
/// the measurements it read, or computes them, and only its runs could tell.
pub fn output_measurements(flux: &str) -> Option<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    let mut at = 0;
    while let Some(i) = flux[at..].find("\"_measurement\"") {
        let key = at + i;
        at = key + 14;
        // `set(key: "_measurement", value: "<m>")`: the value argument of the same call.
        let before = flux[..key].trim_end();
        if before.ends_with(':') && before[..before.len() - 1].trim_end().ends_with("key") {
            let rest = &flux[at..];
            let end = rest.find(')').unwrap_or(rest.len());
            if let Some(v) = rest[..end].find("value")
                && let Some(m) = string_after_colon(&rest[v + 5..end])
            {
                found.insert(m);
            }
        }
    }
    at = 0;
    while let Some(i) = flux[at..].find("_measurement") {
        let key = at + i;
        at = key + 12;
        let prev = key.checked_sub(1).map(|b| flux.as_bytes()[b]);
        if prev.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'"' || b == b'.') {
            continue;
        }
        if let Some(m) = string_after_colon(&flux[at..]) {
            found.insert(m);
        }
    }
    (!found.is_empty()).then_some(found)
}

/// The string literal after a `:` at the start of `text` (blanks allowed), unescaped.
fn string_after_colon(text: &str) -> Option<String> {
    let rest = text.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_fixed_units_are_seconds_and_calendar_units_are_not() {
        assert_eq!(duration_seconds("10s"), Some(10));
        assert_eq!(duration_seconds("1h30m"), Some(5400));
        assert_eq!(duration_seconds("2d"), Some(172_800));
        assert_eq!(duration_seconds("1500ms"), None, "not whole seconds");
        assert_eq!(duration_seconds("2000ms"), Some(2));
        assert_eq!(duration_seconds("1mo"), None);
        assert_eq!(duration_seconds(""), None);
        assert_eq!(duration_seconds("s"), None);
    }

    #[test]
    fn every_times_are_the_multiples_of_every_since_gos_zero_time() {
        // 2 s and 1 h divide the seconds between Go's zero time and the Unix epoch, so their
        // multiples are the Unix ones.
        assert_eq!(every_times(2, 100, 106), vec![102, 104, 106]);
        assert_eq!(every_times(2, 101, 106), vec![102, 104, 106]);
        assert_eq!(every_times(3600, 0, 7200), vec![3600, 7200]);
        // 7 s does not: the zero time's multiples fall 3 s after the Unix epoch's.
        assert_eq!(GO_ZERO_TO_UNIX % 7, 4);
        assert_eq!(every_times(7, 0, 20), vec![3, 10, 17]);
        assert!(every_times(2, 10, 10).is_empty());
    }

    #[test]
    fn a_held_label_is_found_by_name() {
        let v = json!({"labels": [{"id": "1", "name": "team"}, {"id": "2", "name": HELD_LABEL}]});
        assert!(has_held_label(&v));
        assert!(!has_held_label(&json!({"labels": []})));
        assert!(!has_held_label(&json!({})));
    }

    #[test]
    fn schedules_are_read_from_every_or_cron() {
        assert_eq!(schedule_of(&json!({"every": "5s"})), Schedule::Every(5));
        assert_eq!(schedule_of(&json!({"cron": "0 * * * *"})), Schedule::Other("cron 0 * * * *".into()));
        assert_eq!(schedule_of(&json!({"every": "1mo"})), Schedule::Other("every 1mo".into()));
    }

    #[test]
    fn output_buckets_are_the_bucket_arguments_of_to_calls() {
        let flux = "option task = {name: \"down\", every: 1m}\n\
                    from(bucket: \"raw\") |> range(start: -task.every)\n  |> to(bucket: \"down_1m\", org: \"o\")\n\
                    x |> experimental.to(org: \"o\", bucket : \"wide\")\n\
                    y |> to(bucketID: \"0123\") |> into(bucket: \"not a to\")\n\
                    z |> to(bucket: \"a \\\"quoted\\\" (name)\", fn: (r) => ({r with b: \"bucket: \"}))";
        assert_eq!(output_buckets(flux), vec!["a \"quoted\" (name)", "down_1m", "wide"]);
    }

    #[test]
    fn output_measurements_are_the_literal_measurements_a_task_sets() {
        let set = "from(bucket: \"raw\") |> range(start: -1m)\n  |> set(key: \"_measurement\", value: \"pump_5s\")\n  |> to(bucket: \"b\")";
        assert_eq!(output_measurements(set), Some(BTreeSet::from(["pump_5s".to_string()])));
        let map = "x |> map(fn: (r) => ({r with _measurement: \"cpu_1m\", _value: r._value * 2.0})) |> to(bucket: \"b\")";
        assert_eq!(output_measurements(map), Some(BTreeSet::from(["cpu_1m".to_string()])));
        let filter_only =
            "from(bucket: \"a\") |> filter(fn: (r) => r._measurement == \"m\") |> to(bucket: \"b\")";
        assert_eq!(output_measurements(filter_only), None, "a filter names what is read, not written");
        let keep = "from(bucket: \"a\") |> range(start: -1m) |> to(bucket: \"b\")";
        assert_eq!(output_measurements(keep), None);
    }

    #[test]
    fn input_buckets_are_the_bucket_arguments_of_from_calls() {
        let flux = "import \"influxdata/influxdb/v1\"\n\
                    a = from(bucket: \"raw\") |> range(start: -1h)\n\
                    b = from(bucketID: \"0123\") |> range(start: -1h)\n\
                    c = v1.from(bucket: \"other\", start: -1h)\n\
                    d = xfrom(bucket: \"not a from\") |> to(bucket: \"down\")";
        assert_eq!(input_buckets(flux), vec!["other", "raw"]);
    }
}
