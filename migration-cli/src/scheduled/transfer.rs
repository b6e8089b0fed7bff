//! Handing scheduled work (tasks, checks, notification rules) from the database that owns it to
//! the other one: at `cutover` from the source to the destination, at `rollback` back.
//!
//! The taker's copies are held ([`crate::scheduled::work::HELD_LABEL`]); each is paired with the
//! giver's item it is: the same ID (a full restore keeps IDs), or the origin a rebuild recorded
//! when it made the copy under a new ID, or, only when the name is one item on each side, by
//! (org, kind, name); otherwise it is left held and said, never guessed. For each pair, in this
//! order:
//!
//! 1. **hold at the giver**: labelled, then inactive. From here on no database runs it.
//! 2. wait for the giver's runs still in flight, so the giver's last run is known.
//! 3. **where the replay starts**, kept in the taker's held label (a property per item) so a
//!    rerun after a crash starts from the same time: for a task, the taker's own last run (the
//!    seeding's snapshot, or the hold at the last cutover): every run since is recomputed at
//!    the taker, since a task's output is written inside influxd and never passed through the
//!    gateway; for a check or a rule, the giver's last run: the giver's statuses and
//!    notifications up to there are copied into the taker's `_monitoring` bucket (so a rule at
//!    the taker sees the state changes it compares with, and the alert history moves along), and
//!    only the schedule times nobody ran are run, so no incident is notified twice.
//! 4. **activate at the taker**, then **replay**: for each schedule time since the replay start
//!    up to the activation (influxd schedules only later times after it) that the taker has no
//!    run for, a run started by hand for that time (its Flux `now()` is that time, as for the
//!    scheduled run), in order, each waited for. Tasks first, then checks (which may read what
//!    tasks derive), then rules (which read what checks write).
//! 5. **release**: the label is removed at the taker.
//!
//! Every step reads the state first, so running it again does only what is left; a run the
//! taker already has (scheduled or replayed) is never run again. `--dry-run` prints the plan.
//!
//! A task on a cron schedule: the replay covers the times the giver ran it (its run history);
//! a cron time falling between the hold and the activation (about a second) is not computed
//! here and is reported.

//!
//! The `handover` command ([`crate::live`]) and `cutover` / `rollback` drive this.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::compare::window::{Measurements, TimeWindow};
use crate::influx::api::InfluxApi;
use crate::output::{Output, Verdict, human_duration};
use crate::scheduled::work::{self as work, Item, Kind, Links, Schedule, WorkError};

/// One database in a handover.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    pub api: &'a InfluxApi,
    /// `source` or `destination`.
    pub name: &'static str,
}

/// What happened to one item.
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    pub kind: &'static str,
    pub org: String,
    pub name: String,
    pub replay_from: Option<String>,
    pub replayed: usize,
    pub failed: usize,
    /// Schedule times not replayed (cron times between hold and activation), as a note.
    pub not_computed: Option<String>,
}

/// The result of a handover.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub moved: Vec<Moved>,
    /// Items left where they are, and why.
    pub left: Vec<String>,
    pub monitoring_copied: usize,
    /// Derived values the taker lacked (or held otherwise) up to the giver's last runs, written.
    pub derived_written: usize,
    pub dry_run: bool,
}

impl Moved {
    /// An item about to move, replayed from `from`.
    fn new(item: &Item, from: Option<i64>) -> Moved {
        Moved {
            kind: item.kind.noun(),
            org: item.org.clone(),
            name: item.name.clone(),
            replay_from: from.map(work::rfc3339),
            replayed: 0,
            failed: 0,
            not_computed: None,
        }
    }
}

impl Report {
    pub fn replayed(&self) -> usize {
        self.moved.iter().map(|m| m.replayed).sum()
    }

    pub fn failed(&self) -> usize {
        self.moved.iter().map(|m| m.failed).sum()
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Longest a single replayed run may take.
const RUN_LIMIT: Duration = Duration::from_secs(600);
/// Longest to wait for the giver's runs in flight after the hold (all items together).
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// Periods before the taker's last run that a task's replay recomputes. influxd finishes runs
/// out of order and keeps the latest `latestCompleted`, so a run still in flight when the
/// snapshot was taken (or lagging under load) writes its points at the giver after a later run
/// already counts as done; a backup can miss them. Recomputing those periods at the taker, on its
/// complete data, writes the same values again where they were not missed.
const TASK_OVERLAP_PERIODS: i64 = 2;

/// Where an item's replay starts, from the taker's and the giver's last runs: a task recomputes
/// from a little before its own last run at the taker (the snapshot, or where it last held the
/// work); a check or rule goes on after the giver's last run (the giver already paged for the
/// earlier ones).
/// The overlap never reaches before the task was made (`created`): runs that never happened
/// at the giver are not invented at the taker.
fn replay_start(
    item: &Item,
    taker_last: Option<i64>,
    giver_last: Option<i64>,
    created: Option<i64>,
) -> Option<i64> {
    match (item.kind, &item.schedule) {
        (Kind::Task, Schedule::Every(every)) => {
            taker_last.map(|t| (t - TASK_OVERLAP_PERIODS * every).max(created.unwrap_or(i64::MIN)).min(t))
        }
        (Kind::Task, Schedule::Other(_)) => taker_last,
        _ => giver_last,
    }
}

/// The times at or before which a replay reruns a task even where the taker has a run: the
/// overlap of [`replay_start`].
fn always_rerun_until(item: &Item, from: i64) -> i64 {
    match (item.kind, &item.schedule) {
        (Kind::Task, Schedule::Every(every)) => from + TASK_OVERLAP_PERIODS * every,
        _ => i64::MIN,
    }
}

/// [`replay_start`] of a pair, from what the two databases say now.
async fn start_of(giver: Side<'_>, taker: Side<'_>, g: &Item, t: &Item) -> Result<Option<i64>, WorkError> {
    Ok(replay_start(
        t,
        work::latest_completed(taker.api, &t.task_id).await?,
        work::latest_completed(giver.api, &g.task_id).await?,
        work::created_at(taker.api, &t.task_id).await?,
    ))
}

fn property_key(item: &Item) -> String {
    format!("replay-from-{}", item.id)
}

fn now_seconds() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Pairs each item the taker holds with the giver's item it is: the same ID or a recorded origin
/// link ([`Links`]) first; by (org, kind, name) only when that name is one item on each side
/// (`org_map` renames the giver's orgs to the taker's). A held item that none of these settles
/// is left held and said, rather than paired with a guess; every active giver item left
/// unpaired is said by name and ID (it keeps running at the giver).
fn pair(
    giver: &[Item],
    taker: &[Item],
    org_map: &BTreeMap<String, String>,
    names: (&str, &str),
    links: &Links,
) -> (Vec<(Item, Item)>, Vec<String>) {
    let (g_name, t_name) = names;
    let key = |i: &Item| {
        let org = org_map.get(&i.org).cloned().unwrap_or_else(|| i.org.clone());
        (org, i.kind, i.name.clone())
    };
    let mut pairs = Vec::new();
    let mut left = Vec::new();
    let mut paired: BTreeSet<String> = BTreeSet::new();
    let held: Vec<&Item> = taker.iter().filter(|t| t.held).collect();
    for t in &held {
        let same: Vec<&Item> =
            giver.iter().filter(|g| g.kind == t.kind && links.same(&g.id, &t.id)).collect();
        let chosen = match same.as_slice() {
            [g] => Some(*g),
            _ => {
                let named: Vec<&Item> = giver.iter().filter(|g| key(g) == t.key()).collect();
                let held_named = held.iter().filter(|o| o.key() == t.key()).count();
                match named.as_slice() {
                    [] => {
                        left.push(format!(
                            "{} (ID {}) is held at the {t_name} but the {g_name} has none of that name: left held (inactive)",
                            t.describe(),
                            t.id
                        ));
                        None
                    }
                    [g] if held_named == 1 => Some(*g),
                    _ => {
                        left.push(format!(
                            "{} (ID {}) is held at the {t_name}, but {} of that name at the {g_name} and {held_named} held \
                             at the {t_name} share it, and neither its ID nor a recorded origin says which one it is: \
                             left held (inactive), nothing guessed; give them distinct names, then run the handover again",
                            t.describe(),
                            t.id,
                            named.len()
                        ));
                        None
                    }
                }
            }
        };
        if let Some(g) = chosen
            && paired.insert(g.id.clone())
        {
            pairs.push((g.clone(), (*t).clone()));
        }
    }
    for g in giver.iter().filter(|g| g.active && !g.held && !paired.contains(&g.id)) {
        left.push(format!(
            "{} (ID {}) is active at the {g_name} and has no held copy at the {t_name}: it keeps running at the {g_name}; \
             make it at the {t_name} to move it",
            g.describe(),
            g.id
        ));
    }
    pairs.sort_by_key(|(_, t)| (t.kind, t.org.clone(), t.name.clone(), t.id.clone()));
    (pairs, left)
}

/// The held label of an org, made when missing.
async fn label(api: &InfluxApi, org_id: &str) -> Result<(String, BTreeMap<String, String>), WorkError> {
    work::held_label(api, org_id, true).await?.ok_or_else(|| WorkError::Answer {
        host: api.host().to_string(),
        what: "the held label could not be made".into(),
    })
}

/// Waits until the giver has no run of `item` in flight, or until `deadline` (shared by all
/// items). Only runs scheduled within the overlap before its last run count: a database restored
/// from a snapshot lists the runs that were in flight at the snapshot as started for ever, and
/// waiting for those would only spend the deadline.
async fn settle(api: &InfluxApi, item: &Item, deadline: tokio::time::Instant) -> Result<(), WorkError> {
    let period = match item.schedule {
        Schedule::Every(every) => every,
        Schedule::Other(_) => 3_600,
    };
    loop {
        let now = now_seconds();
        let last = work::latest_completed(api, &item.task_id).await?.unwrap_or(now);
        let recent = last - TASK_OVERLAP_PERIODS * period;
        let busy = work::runs(api, &item.task_id, now - 86_400, now + 3_600)
            .await?
            .into_iter()
            .any(|r| !r.finished() && r.scheduled_for >= recent);
        if !busy || tokio::time::Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The schedule times to replay at the taker for one pair, in order.
async fn times_to_replay(
    giver: Side<'_>,
    taker: Side<'_>,
    g: &Item,
    t: &Item,
    from: i64,
    until: i64,
) -> Result<(Vec<i64>, Option<String>), WorkError> {
    let (wanted, note) = match &t.schedule {
        Schedule::Every(every) => (work::every_times(*every, from, until), None),
        Schedule::Other(what) => {
            let ran: Vec<i64> = work::runs(giver.api, &g.task_id, from, until + 1)
                .await?
                .into_iter()
                .filter(|r| r.finished() && r.scheduled_for <= until)
                .map(|r| r.scheduled_for)
                .collect();
            let note = format!(
                "{} runs on {what}: the times the {} ran it are replayed; a time between the hold and the \
                 activation is not",
                t.describe(),
                giver.name
            );
            (ran, Some(note))
        }
    };
    let done: BTreeSet<i64> = work::runs(taker.api, &t.task_id, from, until + 1)
        .await?
        .into_iter()
        .map(|r| r.scheduled_for)
        .collect();
    let rerun = always_rerun_until(t, from);
    let mut times: Vec<i64> = wanted.into_iter().filter(|x| *x <= rerun || !done.contains(x)).collect();
    times.sort_unstable();
    times.dedup();
    Ok((times, note))
}

/// Copies `_monitoring`'s statuses and notifications of one org from the giver to the taker over
/// `[start, now]`; the number of values copied.
async fn copy_monitoring(
    giver: Side<'_>,
    taker: Side<'_>,
    giver_org: &str,
    taker_org: &str,
    start: i64,
) -> Result<usize, WorkError> {
    let g_bucket = giver.api.find_bucket(giver_org, "_monitoring").await?;
    let t_bucket = taker.api.find_bucket(taker_org, "_monitoring").await?;
    let (Some(gb), Some(tb)) = (g_bucket, t_bucket) else {
        return Ok(0);
    };
    let stop = (now_seconds() + 60) * 1_000_000_000;
    let mut copied = 0;
    for measurement in ["statuses", "notifications"] {
        copied += crate::compare::reconcile::copy_range(
            (giver.api, &gb),
            (taker.api, &tb),
            measurement,
            start * 1_000_000_000,
            stop,
        )
        .await
        .map_err(|e| WorkError::Answer {
            host: taker.api.host().to_string(),
            what: format!("copying _monitoring {measurement}: {e}"),
        })?;
    }
    Ok(copied)
}

/// Hands scheduled work from `giver` to `taker` (see the module doc).
pub async fn hand_over(
    out: &mut Output,
    giver: Side<'_>,
    taker: Side<'_>,
    org_map: &BTreeMap<String, String>,
    dry_run: bool,
) -> Result<Report, WorkError> {
    let g_items = work::inventory(giver.api).await?;
    let t_items = work::inventory(taker.api).await?;
    let links = Links::read(giver.api, &g_items).await?.and(Links::read(taker.api, &t_items).await?);
    let (pairs, left) = pair(&g_items, &t_items, org_map, (giver.name, taker.name), &links);
    let mut report = Report { left: left.clone(), dry_run, ..Report::default() };
    for l in &left {
        out.note(l);
    }
    if pairs.is_empty() {
        out.check(
            "scheduled work",
            Verdict::Info,
            format!(
                "nothing to hand over: the {} holds no task, check or rule for the {}",
                taker.name, giver.name
            ),
        );
        return Ok(report);
    }

    if dry_run {
        for (g, t) in &pairs {
            let from = start_of(giver, taker, g, t).await?;
            let props =
                work::held_label(taker.api, &t.org_id, false).await?.map(|(_, p)| p).unwrap_or_default();
            let from = props.get(&property_key(t)).and_then(|v| v.parse().ok()).or(from);
            let n = match (&t.schedule, from) {
                (Schedule::Every(e), Some(f)) => work::every_times(*e, f, now_seconds()).len().to_string(),
                (Schedule::Other(w), _) => format!("the {}'s runs ({w})", giver.name),
                (_, None) => "no".to_string(),
            };
            out.note(format!(
                "would hold {} at the {}, activate it at the {} and replay {n} run(s) since {}",
                t.describe(),
                giver.name,
                taker.name,
                from.map(work::rfc3339).unwrap_or_else(|| "-".into())
            ));
            report.moved.push(Moved::new(t, from));
        }
        return Ok(report);
    }

    // 1. Hold at the giver.
    let mut g_labels: BTreeMap<String, String> = BTreeMap::new();
    for (g, _) in &pairs {
        if g.held && !g.active {
            continue;
        }
        if !g_labels.contains_key(&g.org_id) {
            g_labels.insert(g.org_id.clone(), label(giver.api, &g.org_id).await?.0);
        }
        work::hold(giver.api, g, &g_labels[&g.org_id]).await?;
        out.did(format!("held {} at the {} (inactive)", g.describe(), giver.name));
    }
    // 2. The giver's last runs finish.
    let deadline = tokio::time::Instant::now() + SETTLE_LIMIT;
    for (g, _) in &pairs {
        settle(giver.api, g, deadline).await?;
    }
    // 2b. The taker's derived buckets made to match the giver's up to the giver's last runs.
    // What the giver derived is final up to there, while the taker's copy can lack some of it:
    // influxd's backup leaves out points still in a write cache being flushed (its shard
    // snapshot skips the cache then), and runs finish out of order. Nothing is deleted, and only
    // the measurements the tasks write are touched (a bucket the clients write too keeps what
    // the stream writers replayed), unless a task's Flux does not name them.
    type Derived = (String, i64, Option<BTreeSet<String>>);
    let mut derived: BTreeMap<(String, String, String), Derived> = BTreeMap::new();
    for (g, t) in pairs.iter().filter(|(_, t)| t.kind == Kind::Task) {
        let Some(until) = work::latest_completed(giver.api, &g.task_id).await? else { continue };
        let task = giver.api.get_value(&format!("/api/v2/tasks/{}", g.id), &[]).await?;
        let flux = task.get("flux").and_then(Value::as_str).unwrap_or_default();
        let written = work::output_measurements(flux);
        for bucket in work::output_buckets(flux) {
            let e = derived.entry((g.org_id.clone(), t.org_id.clone(), bucket)).or_insert((
                t.org.clone(),
                until,
                Some(BTreeSet::new()),
            ));
            e.1 = e.1.min(until);
            work::add_written(&mut e.2, written.as_ref());
        }
    }
    for ((g_org, t_org, bucket), (org_name, until, written)) in &derived {
        let (gb, tb) =
            (giver.api.find_bucket(g_org, bucket).await?, taker.api.find_bucket(t_org, bucket).await?);
        let (Some(gb), Some(tb)) = (gb, tb) else {
            out.warn(format!(
                "the derived bucket {org_name}/{bucket} is missing at the {} or the {}: its points were not compared",
                giver.name, taker.name
            ));
            continue;
        };
        let stop =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*until) * 1_000_000_000 + 1).ok();
        let window = TimeWindow::new(None, stop);
        let only = written.clone().map_or(Measurements::All, Measurements::Only);
        let n = crate::compare::reconcile::match_bucket((giver.api, &gb), (taker.api, &tb), &window, &only)
            .await
            .map_err(|e| WorkError::Answer {
                host: taker.api.host().to_string(),
                what: format!("making the derived bucket {bucket} match the {}'s: {e:#}", giver.name),
            })?;
        report.derived_written += n;
        let what = match written {
            Some(ms) => format!(
                "measurement(s) {} of the derived bucket {org_name}/{bucket}",
                Measurements::names(ms)
            ),
            None => format!("the derived bucket {org_name}/{bucket}"),
        };
        out.did(format!(
            "{what} match the {}'s up to {}: {n} value(s) written at the {}",
            giver.name,
            work::rfc3339(*until),
            taker.name
        ));
    }

    // 3. Where each replay starts, recorded once.
    let mut starts: Vec<Option<i64>> = Vec::new();
    let mut t_labels: BTreeMap<String, String> = BTreeMap::new();
    for (g, t) in &pairs {
        let (label_id, props) = label(taker.api, &t.org_id).await?;
        t_labels.insert(t.org_id.clone(), label_id.clone());
        let key = property_key(t);
        let from = match props.get(&key).and_then(|v| v.parse::<i64>().ok()) {
            Some(f) => Some(f),
            None => {
                let f = start_of(giver, taker, g, t).await?;
                if let Some(f) = f {
                    work::set_label_property(taker.api, &label_id, &key, Some(&f.to_string())).await?;
                }
                f
            }
        };
        starts.push(from);
    }
    // The giver's alert state and history since the earliest check or rule start.
    let mut monitoring: BTreeMap<(String, String), i64> = BTreeMap::new();
    for ((g, t), from) in pairs.iter().zip(&starts) {
        if t.kind == Kind::Task {
            continue;
        }
        let every = match t.schedule {
            Schedule::Every(e) => e,
            Schedule::Other(_) => 3_600,
        };
        let start = from.unwrap_or_else(now_seconds) - 2 * every - 60;
        let e = monitoring.entry((g.org_id.clone(), t.org_id.clone())).or_insert(start);
        *e = (*e).min(start);
    }
    for ((g_org, t_org), start) in &monitoring {
        let n = copy_monitoring(giver, taker, g_org, t_org, *start).await?;
        report.monitoring_copied += n;
        out.did(format!(
            "copied {n} status and notification value(s) of _monitoring since {} from the {} to the {}",
            work::rfc3339(*start),
            giver.name,
            taker.name
        ));
    }

    // 4. Activate and replay, kind by kind; 5. release.
    for kind in Kind::ALL {
        for ((g, t), from) in pairs.iter().zip(&starts).filter(|((_, t), _)| t.kind == kind) {
            work::activate(taker.api, t).await?;
            let until = work::latest_completed(taker.api, &t.task_id).await?.unwrap_or_else(now_seconds);
            let mut moved = Moved::new(t, *from);
            if let Some(from) = from {
                let (times, note) = times_to_replay(giver, taker, g, t, *from, until).await?;
                if let Some(n) = &note {
                    out.warn(n);
                }
                moved.not_computed = note;
                for at in times {
                    let run = work::force_run(taker.api, &t.task_id, at).await?;
                    let status = work::wait_run(taker.api, &t.task_id, &run, at, RUN_LIMIT).await?;
                    if status == "success" {
                        moved.replayed += 1;
                    } else {
                        moved.failed += 1;
                        out.warn(format!(
                            "{}: the replayed run for {} ended {status} at the {} (see its run log)",
                            t.describe(),
                            work::rfc3339(at),
                            taker.name
                        ));
                    }
                }
            }
            let label_id = &t_labels[&t.org_id];
            work::unlabel(taker.api, t, label_id).await?;
            work::set_label_property(taker.api, label_id, &property_key(t), None).await?;
            out.did(format!(
                "{} now runs at the {}: {} run(s) since {} replayed{}",
                t.describe(),
                taker.name,
                moved.replayed,
                moved.replay_from.as_deref().unwrap_or("-"),
                if moved.failed > 0 { format!(", {} failed", moved.failed) } else { String::new() }
            ));
            report.moved.push(moved);
        }
    }
    out.check(
        "scheduled work",
        if report.failed() == 0 { Verdict::Ok } else { Verdict::Warn },
        format!(
            "the {} owns {} task(s), check(s) and rule(s); {} run(s) replayed, {} failed",
            taker.name,
            report.moved.len(),
            report.replayed(),
            report.failed()
        ),
    );
    Ok(report)
}

/// What `verify --derived` compares: the source buckets the source's tasks write to, and where
/// the side that holds scheduled work last ran its tasks, less the periods a replay recomputes
/// (Unix seconds, and that side's name): up to there both sides have derived the same points.
pub struct DerivedScope {
    /// Per org, the buckets the tasks write and the measurements they write there.
    pub buckets: Vec<work::TaskOutput>,
    pub until: Option<(i64, &'static str)>,
}

pub async fn derived_scope(src: &InfluxApi, dst: &InfluxApi) -> Result<DerivedScope, WorkError> {
    let buckets = work::task_outputs(src).await?;
    let mut until = None;
    for (api, name) in [(src, "source"), (dst, "destination")] {
        for item in work::inventory(api).await?.iter().filter(|i| i.kind == Kind::Task && i.held) {
            let last = work::latest_completed(api, &item.task_id).await?;
            if let Some(last) = replay_start(item, last, None, work::created_at(api, &item.task_id).await?)
                && until.is_none_or(|(u, _)| last < u)
            {
                until = Some((last, name));
            }
        }
        if until.is_some() {
            break;
        }
    }
    Ok(DerivedScope { buckets, until })
}

/// Who owns scheduled work, from what each side holds: `(owner, detail)`.
pub fn ownership(src: &[Item], dst: &[Item]) -> (String, String) {
    let held = |items: &[Item]| items.iter().filter(|i| i.held).count();
    let active = |items: &[Item]| items.iter().filter(|i| i.active && !i.held).count();
    let (hs, hd) = (held(src), held(dst));
    let owner = match (hs, hd) {
        // Nothing held: each database runs what it has; both running the same work pages twice.
        (0, 0) if active(src) > 0 && active(dst) > 0 => {
            "both (nothing is held: the same work may run twice; make one side's copies inactive and label them \
             influx-migration:held)"
        }
        (0, 0) if active(dst) > 0 => "destination (nothing is held)",
        (0, 0) => "source (nothing is held)",
        (0, _) => "source",
        (_, 0) => "destination",
        _ => "split (a handover did not finish: run cutover or rollback again)",
    };
    let detail = format!(
        "source: {} active, {} held; destination: {} active, {} held",
        active(src),
        hs,
        active(dst),
        hd
    );
    (owner.to_string(), detail)
}

/// The tasks and checks running at `database` whose `offset` is shorter than its writer's
/// `lag`, each with what that costs.
///
/// A rule is left out: it reads the statuses its checks write inside influxd, which no writer
/// delays.
pub fn late_readers(items: &[Item], lag: Duration, database: &str) -> Vec<String> {
    items
        .iter()
        .filter(|i| i.active && !i.held && matches!(i.kind, Kind::Task | Kind::Check))
        .filter(|i| Duration::from_secs(u64::try_from(i.offset).unwrap_or(0)) < lag)
        .map(|i| {
            format!(
                "{} runs at the {database} with offset {} s, but the {database} writer lags {}: its runs \
                 read windows before all their points are in, and what it derives from them stays partial. \
                 Give it an offset above the writer's lag (runbook: \"Tasks, checks and notification rules after \
                 the seeding\")",
                i.describe(),
                i.offset,
                human_duration(lag)
            )
        })
        .collect()
}

/// `status`'s section: who owns scheduled work and, per task, check and rule, its last run on
/// each side and the runs a handover would replay now; a warning for each that runs where the
/// writer lags more than its offset (`lags`: the source's and the destination's writer, where
/// known).
pub async fn status_section(
    out: &mut Output,
    src: &InfluxApi,
    dst: &InfluxApi,
    lags: (Option<Duration>, Option<Duration>),
) -> Result<Value, WorkError> {
    let s_items = work::inventory(src).await?;
    let d_items = work::inventory(dst).await?;
    let (owner, detail) = ownership(&s_items, &d_items);
    out.check("scheduled work owner", Verdict::Info, format!("{owner} ({detail})"));
    let mut late = Vec::new();
    for (items, lag, database) in [(&s_items, lags.0, "source"), (&d_items, lags.1, "destination")] {
        if let Some(lag) = lag {
            late.extend(late_readers(items, lag, database));
        }
    }
    for w in &late {
        out.warn(w.clone());
    }
    let (taker_items, giver_items, taker, giver) = if d_items.iter().any(|i| i.held) {
        (&d_items, &s_items, dst, src)
    } else {
        (&s_items, &d_items, src, dst)
    };
    let links = Links::read(giver, giver_items).await?.and(Links::read(taker, taker_items).await?);
    let (pairs, _) = pair(giver_items, taker_items, &BTreeMap::new(), ("giver", "taker"), &links);
    let mut rows = Vec::new();
    for (g, t) in &pairs {
        let g_last = work::latest_completed(giver, &g.task_id).await?;
        let t_last = work::latest_completed(taker, &t.task_id).await?;
        let from = replay_start(t, t_last, g_last, work::created_at(taker, &t.task_id).await?);
        let to_replay = match (&t.schedule, from) {
            (Schedule::Every(e), Some(f)) => Some(work::every_times(*e, f, now_seconds()).len()),
            _ => None,
        };
        let (src_last, dst_last) = if std::ptr::eq(giver, src) { (g_last, t_last) } else { (t_last, g_last) };
        let show = |t: Option<i64>| t.map(work::rfc3339).unwrap_or_else(|| "never".into());
        out.check(
            &format!("{} {}", t.kind.noun(), t.name),
            Verdict::Info,
            format!(
                "last run at the source {}, at the destination {}; {} run(s) to replay at handover",
                show(src_last),
                show(dst_last),
                to_replay.map(|n| n.to_string()).unwrap_or_else(|| "some".into())
            ),
        );
        rows.push(json!({
            "kind": t.kind.noun(),
            "org": t.org,
            "name": t.name,
            "source_last_run": src_last.map(work::rfc3339),
            "destination_last_run": dst_last.map(work::rfc3339),
            "runs_to_replay": to_replay,
        }));
    }
    Ok(json!({"owner": owner, "detail": detail, "items": rows, "reading_too_early": late}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(kind: Kind, name: &str, active: bool, held: bool) -> Item {
        Item {
            kind,
            id: format!("{name}-id"),
            task_id: format!("{name}-task"),
            org_id: "o".into(),
            org: "acme".into(),
            name: name.into(),
            active,
            held,
            schedule: Schedule::Every(10),
            offset: 0,
        }
    }

    #[test]
    fn status_warns_when_work_reads_a_window_before_its_writer_has_delivered_it() {
        // The demo measured a 7 s source writer lag and a task with a 4 s offset summed windows
        // in part; status named the lag but never tied it to the work that reads too early.
        let mut late = item(Kind::Task, "down", true, false);
        late.offset = 4;
        let mut covered = item(Kind::Check, "cpu", true, false);
        covered.offset = 30;
        let paused = item(Kind::Task, "off", false, false);
        let held = item(Kind::Task, "held", false, true);
        let rule = item(Kind::Rule, "page", true, false);
        let items = [late, covered, paused, held, rule];
        let warned = late_readers(&items, Duration::from_secs(7), "source");
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].contains("\"down\""), "{}", warned[0]);
        assert!(warned[0].contains("offset 4 s") && warned[0].contains("lags 7.0 s"), "{}", warned[0]);
        assert!(late_readers(&items, Duration::from_secs(4), "source").is_empty(), "lag within every offset");
        // Without an offset, any lag at all reads windows early.
        let none = item(Kind::Check, "no-offset", true, false);
        let warned = late_readers(&[none], Duration::from_millis(800), "destination");
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(
            warned[0].contains("at the destination") && warned[0].contains("lags 800 ms"),
            "{}",
            warned[0]
        );
    }

    #[test]
    fn only_held_items_with_a_namesake_move_and_the_rest_is_said() {
        let giver = vec![
            item(Kind::Task, "down", true, false),
            item(Kind::Task, "off", false, false),
            item(Kind::Check, "cpu", true, false),
            item(Kind::Task, "new-at-source", true, false),
        ];
        let taker = vec![
            item(Kind::Task, "down", false, true),
            item(Kind::Task, "off", false, false),
            item(Kind::Check, "cpu", false, true),
            item(Kind::Rule, "gone-at-source", false, true),
        ];
        let (pairs, left) =
            pair(&giver, &taker, &BTreeMap::new(), ("source", "destination"), &Links::default());
        let names: Vec<_> = pairs.iter().map(|(_, t)| (t.kind, t.name.as_str())).collect();
        assert_eq!(names, vec![(Kind::Task, "down"), (Kind::Check, "cpu")]);
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left[0].contains("gone-at-source") && left[0].contains("left held"));
        assert!(left[1].contains("new-at-source") && left[1].contains("keeps running at the source"));
    }

    /// InfluxDB lets two checks (tasks, rules) share a name. Paired by (org, kind, name), the
    /// held copy paired with whichever came last, and the other was taken as paired: it was
    /// never held, kept running at the source after cutover (a check pages twice) and the
    /// "left" report did not name it.
    #[test]
    fn two_items_of_one_name_pair_by_identity_and_the_other_is_named() {
        let with_id = |mut i: Item, id: &str| {
            i.id = id.into();
            i.task_id = format!("{id}-task");
            i
        };
        let a = with_id(item(Kind::Check, "cpu", true, false), "0a");
        let b = with_id(item(Kind::Check, "cpu", true, false), "0b");
        // After a full restore the destination's copies carry the source's IDs; one is held.
        let held_a = with_id(item(Kind::Check, "cpu", false, true), "0a");
        let none = Links::default();
        let (pairs, left) =
            pair(&[a.clone(), b.clone()], &[held_a], &BTreeMap::new(), ("source", "destination"), &none);
        let ids: Vec<_> = pairs.iter().map(|(g, t)| (g.id.as_str(), t.id.as_str())).collect();
        assert_eq!(ids, vec![("0a", "0a")]);
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].contains("0b") && left[0].contains("keeps running at the source"), "{left:?}");

        // A rebuilt destination made its copies under new IDs: the origin recorded then pairs.
        let rebuilt_b = with_id(item(Kind::Check, "cpu", false, true), "1b");
        let links = Links::from([("1b", "0b")]);
        let (pairs, left) =
            pair(&[a.clone(), b.clone()], &[rebuilt_b], &BTreeMap::new(), ("source", "destination"), &links);
        let ids: Vec<_> = pairs.iter().map(|(g, t)| (g.id.as_str(), t.id.as_str())).collect();
        assert_eq!(ids, vec![("0b", "1b")]);
        assert!(left.len() == 1 && left[0].contains("0a"), "{left:?}");

        // Neither ID nor link, and the name is two items: nothing is guessed, everything said.
        let unknown = with_id(item(Kind::Check, "cpu", false, true), "2x");
        let (pairs, left) =
            pair(&[a.clone(), b.clone()], &[unknown], &BTreeMap::new(), ("source", "destination"), &none);
        assert!(pairs.is_empty(), "{pairs:?}");
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left[0].contains("2x") && left[0].contains("nothing guessed"), "{left:?}");
        assert!(left[1].contains("0a") && left[2].contains("0b"), "{left:?}");

        // One item of that name on each side still pairs by name (a copy made by hand).
        let by_hand = with_id(item(Kind::Check, "cpu", false, true), "3h");
        let (pairs, left) = pair(&[a], &[by_hand], &BTreeMap::new(), ("source", "destination"), &none);
        assert_eq!(pairs.len(), 1);
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn org_mappings_pair_renamed_orgs() {
        let mut g = item(Kind::Task, "down", true, false);
        g.org = "old".into();
        let t = item(Kind::Task, "down", false, true);
        let map = BTreeMap::from([("old".to_string(), "acme".to_string())]);
        let (pairs, left) = pair(&[g], &[t], &map, ("source", "destination"), &Links::default());
        assert_eq!(pairs.len(), 1);
        assert!(left.is_empty());
    }

    #[test]
    fn ownership_follows_the_held_labels() {
        let src = vec![item(Kind::Task, "down", true, false)];
        let dst = vec![item(Kind::Task, "down", false, true)];
        assert_eq!(ownership(&src, &dst).0, "source");
        assert_eq!(ownership(&dst, &src).0, "destination");
        assert!(ownership(&dst, &dst).0.starts_with("split"));
        assert_eq!(ownership(&[], &[]).0, "source (nothing is held)");
        let running = vec![item(Kind::Task, "down", true, false)];
        assert!(ownership(&running, &running).0.starts_with("both"), "both run it: pages twice");
        assert_eq!(ownership(&[], &running).0, "destination (nothing is held)");
    }

    #[test]
    fn a_task_replay_recomputes_two_periods_but_never_before_the_task_was_made() {
        let mut task = item(Kind::Task, "down", true, true);
        task.schedule = Schedule::Every(2);
        assert_eq!(replay_start(&task, Some(100), Some(200), None), Some(96));
        assert_eq!(replay_start(&task, Some(100), Some(200), Some(90)), Some(96));
        assert_eq!(replay_start(&task, Some(100), Some(200), Some(98)), Some(98));
        assert_eq!(replay_start(&task, Some(100), None, Some(150)), Some(100), "never after its last run");
        assert_eq!(replay_start(&task, None, Some(200), None), None);
        assert_eq!(always_rerun_until(&task, 96), 100);
        task.schedule = Schedule::Other("0 * * * *".into());
        assert_eq!(replay_start(&task, Some(100), Some(200), Some(50)), Some(100));
    }

    #[test]
    fn checks_and_rules_go_on_after_the_givers_last_run() {
        for kind in [Kind::Check, Kind::Rule] {
            let mut it = item(kind, "hot", true, true);
            it.schedule = Schedule::Every(60);
            assert_eq!(replay_start(&it, Some(100), Some(200), Some(10)), Some(200));
            assert_eq!(always_rerun_until(&it, 200), i64::MIN, "a rule is never rerun: it would page again");
        }
    }
}
