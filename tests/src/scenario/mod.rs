//! A whole live migration on the local stack, the way the runbook (docs/runbook.md) runs it, with
//! clients writing and reading through the gateway from start to end:
//!
//! 1. load the source (several orgs and buckets, users, tokens, a dashboard, a task), and make
//!    its scheduled work: a 5 s downsampling task, a paused one, a threshold check and the rule
//!    that pages on it;
//! 2. start client traffic through the gateway (dual writing: records reach the source at once
//!    and wait in the stream for the throttled destination writer);
//! 3. seed: `influx-migration --full --confirm-full` from source to destination;
//! 4. catch up: `influx-migration unthrottle`, then wait until the destination lag is zero —
//!    optionally with faults: the destination answering 503 and resetting connections, and a
//!    destination stream-writer process killed in the middle of a batch;
//!    then a writer left pointing at the source (started with the clients) must be named by
//!    `status` and refused by `cutover`; it is moved behind the gateway and `repair` copies
//!    what only the source got;
//! 5. `influx-migration verify`, then `influx-migration cutover` while readers keep querying
//!    (with faults, `verify --content` must name exactly the deliberate type conflict, and the
//!    cutover is forced past it);
//!    5b. `influx-migration rollback`, then `cutover` again: reads and scheduled work go back to
//!    the source and over once more;
//! 6. stop the clients, let both writers drain, and check every acknowledged point in both
//!    databases, value by value, and every read; and the scheduled work made in step 1
//!    ([`crate::scenario::scheduled`]): the downsampled points equal at both over the whole window, every
//!    incident paged exactly once and only by the database that owned scheduled work then, the
//!    paused task silent everywhere.
//!
//! Deliberately bad records are added along the way (a record no database can parse, put
//! straight into the stream, and a point whose field type conflicts with data only the
//! destination holds) so that the dead-letter storage can be checked to hold exactly those.
//!
//! Its parts: [`dataset`] (the source instance it starts from), [`traffic`] (the clients
//! writing and reading throughout), [`scheduled`] (the tasks, checks and rules that run during
//! it), [`probe`] (points written through the gateway and read back from either database) and
//! [`report`] (what clients were told against what the destination holds).
pub mod dataset;
pub mod probe;
pub mod report;
pub mod scheduled;
pub mod traffic;

use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use shared::envelope::{Api, Chunker, Header, MAX_RECORD_BYTES, WriteParams};
use shared::sensitive::Sensitive;

use crate::scenario::report::{Report, ScheduledReport};
use crate::scenario::scheduled::{IncidentWriter, Ownership};
use crate::scenario::traffic::{ForgottenWriter, Traffic, TrafficConfig, missing_points};
use crate::servers::receiver::Receiver;
use crate::stack::LocalStack;

/// How long the final check may take to read back everything the clients wrote.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(1800);

/// How big and how hostile the run is.
#[derive(Debug, Clone)]
pub struct ScenarioOptions {
    /// Points (lines of four fields) loaded into the source before the migration.
    pub points: u64,
    pub writers: usize,
    pub readers: usize,
    pub lines_per_write: usize,
    /// Faults during the catch-up (destination 503s and resets, a writer killed mid-batch) and
    /// deliberately bad records.
    pub faults: bool,
    /// How long clients keep going after the cutover (at least the secret cache time).
    pub after_cutover: Duration,
    /// Pause between two requests of one writer, and of one reader.
    pub write_pause: Duration,
    pub read_pause: Duration,
}

impl Default for ScenarioOptions {
    fn default() -> Self {
        ScenarioOptions {
            points: 1_000_000,
            writers: 4,
            readers: 2,
            lines_per_write: 50,
            faults: false,
            after_cutover: Duration::from_secs(10),
            write_pause: Duration::from_millis(100),
            read_pause: Duration::from_millis(200),
        }
    }
}

/// Runs the CLI and fails unless it exits with `want`.
async fn cli(
    stack: &LocalStack,
    args: &[&str],
    want: i32,
    progress: &dyn Fn(&str),
) -> Result<String, String> {
    let (code, out, err) = stack.live(args).await;
    let shown = args.first().copied().unwrap_or("");
    progress(&format!("influx-migration {shown}: exit {code}"));
    for line in out.lines().filter(|l| !l.trim().is_empty()).take(40) {
        progress(&format!("    {line}"));
    }
    if code == want {
        Ok(out)
    } else {
        Err(format!("influx-migration {} exited {code} (wanted {want}):\n{out}\n{err}", args.join(" ")))
    }
}

/// Runs the scenario on a started stack and returns its report.
pub async fn run(
    stack: &LocalStack,
    options: &ScenarioOptions,
    progress: &dyn Fn(&str),
) -> Result<Report, String> {
    let mut report = Report::default();
    let phase = |name: &str, started: Instant, report: &mut Report| {
        report.phases.push((name.to_string(), started.elapsed()));
    };

    // 1. The source.
    let t = Instant::now();
    progress(&format!(
        "loading the source with about {} points, users, tokens, a dashboard and a task",
        options.points
    ));
    let loaded = crate::scenario::dataset::load(&stack.source, options.points, |m| progress(m)).await?;
    report.loaded_points = loaded.points;
    // Scheduled work: a downsampling task, a paused one, a check and the rule that pages.
    let (src_pager, dst_pager) = (Receiver::start().await, Receiver::start().await);
    scheduled::set_up(&stack.source, &stack.source.bucket, &src_pager.url).await?;
    let scheduled_from = unix_now() as i64;
    phase("load the source", t, &mut report);

    // 2. Clients, through the gateway.
    let t = Instant::now();
    progress(&format!("starting client traffic through the gateway at {}", stack.gateway.url));
    let mut traffic = Traffic::start(TrafficConfig {
        gateway_url: stack.gateway.url.clone(),
        org: stack.source.org.clone(),
        bucket: stack.source.bucket.clone(),
        token: stack.source.token.clone(),
        writers: options.writers,
        readers: options.readers,
        lines_per_write: options.lines_per_write,
        write_pause: options.write_pause,
        read_pause: options.read_pause,
    });
    // And one writer nobody moved: it writes straight to the source.
    let mut forgotten = ForgottenWriter::start(
        &stack.source.url,
        &stack.source.org,
        &stack.source.bucket,
        &stack.source.token,
        Duration::from_millis(500),
    );
    let mut incidents = IncidentWriter::start(
        &stack.gateway.url,
        &stack.source.org,
        &stack.source.bucket,
        &stack.source.token,
    );
    // The clients are up once a write went through the gateway.
    let deadline = Instant::now() + Duration::from_secs(60);
    while traffic.stats().write_requests_ok == 0 {
        if Instant::now() > deadline {
            let s = traffic.stats();
            return Err(format!(
                "no write went through the gateway within 60 s: {:?}; {:?}",
                s,
                traffic.write_failures()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 3. Seeding.
    progress("seeding: influx-migration --full --confirm-full (the destination writer stays throttled)");
    let backup_dir =
        stack.work_dir.join(format!("backup-{}", time::OffsetDateTime::now_utc().unix_timestamp()));
    let mut seed = stack.cli();
    seed.args([
        "--src-host",
        &stack.source.url,
        "--dest-host",
        &stack.destination.url,
        "--full",
        "--confirm-full",
    ])
    .args(["--no-verify", "--log-level", "error", "--dir-name"])
    .arg(&backup_dir)
    .args(["--stream-retention-hours", "168"])
    // performance.txt goes to the working directory, as with AWS's script.
    .current_dir(&stack.work_dir);
    let out = seed.output().await.map_err(|e| format!("run the seeding: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "the seeding failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The full restore gave the destination the source's tokens.
    stack.set_destination_token(&stack.source.token);
    // The destination's copy of the pager posts to its own receiver, so every page says who sent it.
    scheduled::repoint(&stack.destination, &stack.source.token, &stack.source.org_id, &dst_pager.url).await?;
    phase("dual writing + seeding (--full)", t, &mut report);
    progress(&format!(
        "seeding done; {} points acknowledged to clients so far",
        traffic.stats().points_acknowledged
    ));

    let mut expected_dead_letters = Vec::new();
    if options.faults {
        deliberate_bad_records(stack, &mut expected_dead_letters).await?;
    }

    // 4. Catch-up.
    let t = Instant::now();
    let status = cli(stack, &["status"], 0, progress).await;
    if let Err(e) = status {
        report.notes.push(format!("status before unthrottle: {e}"));
    }
    cli(stack, &["unthrottle"], 0, progress).await?;
    mark(stack, &mut report, "unthrottle");
    if options.faults {
        inject_catch_up_faults(stack, &mut report, progress).await?;
    }
    progress(
        "waiting for the destination writer to catch up (lag under 5 s for 10 s while clients keep writing)",
    );
    stack
        .wait_for_catch_up(Duration::from_secs(5), Duration::from_secs(10), Duration::from_secs(600))
        .await?;
    phase("catch-up (unthrottle -> lag 0)", t, &mut report);

    // 4b. The writer nobody moved: status names it, cutover refuses, the operator moves it
    //     behind the gateway and repairs what only the source got.
    let t = Instant::now();
    find_and_repair_the_forgotten_writer(stack, &forgotten, &mut report, progress).await?;
    phase("bypass: found, moved, repaired", t, &mut report);

    // 5. Verify and cut over while clients keep reading. With the deliberate type conflict the
    //    databases really differ (the source holds the point the destination refused; the
    //    destination holds the one written only there), same count: verify --content must name
    //    exactly that, and the cutover goes ahead only because the operator forces it past the
    //    known, dead-lettered difference.
    let t = Instant::now();
    let cutover: &[&str] = if options.faults {
        let out = cli(stack, &["verify", "--content"], 3, progress).await?;
        let differing: Vec<&str> = out
            .lines()
            .filter(|l| l.trim_end().ends_with("DIFFERS") || l.contains("window(s) differ:"))
            .collect();
        let only_conflict = !differing.is_empty() && differing.iter().all(|l| l.contains("type_conflict"));
        if !only_conflict {
            return Err(format!("verify found other differences than the deliberate type conflict:\n{out}"));
        }
        report.notes.push(
            "verify named the deliberate type conflict (dead-lettered at the destination) and nothing else; \
             cutover forced past it"
                .into(),
        );
        &["cutover", "--force", "--counts-only"]
    } else {
        // verify compares every value since the live path started (the default); the cutovers
        // then count only: their content comparison would read all of that again from the
        // source while it serves the clients and runs its tasks, and on 2 cores that delays the
        // source writer enough for the source's downsampling task to read windows before their
        // points arrive (docs/runbook.md, step 8).
        cli(stack, &["verify"], 0, progress).await?;
        &["cutover", "--counts-only"]
    };
    phase("verify", t, &mut report);
    let t = Instant::now();
    let reads_failed_before = traffic.failed_reads().len();
    let mut ownership = Ownership::default();
    let mut work = ScheduledReport::default();
    let started = unix_now();
    let cut = cli(stack, cutover, 0, progress).await?;
    ownership.handovers.push((started, unix_now(), "destination"));
    handed_over(&mut work, "cutover", &cut);
    mark(stack, &mut report, "cutover");
    progress(&format!("reads go to the destination; clients keep going for {:?}", options.after_cutover));
    tokio::time::sleep(options.after_cutover).await;
    phase("cutover (+ clients after it)", t, &mut report);

    // 5b. Roll back, then cut over again: reads and scheduled work go back to the source (which
    //     replays the runs it missed) and over once more, while clients keep going.
    let t = Instant::now();
    progress("rollback: reads and scheduled work back to the source");
    let started = unix_now();
    let back = cli(stack, &["rollback"], 0, progress).await?;
    ownership.handovers.push((started, unix_now(), "source"));
    handed_over(&mut work, "rollback", &back);
    mark(stack, &mut report, "rollback");
    tokio::time::sleep(options.after_cutover).await;
    progress("cutover again");
    let started = unix_now();
    let again = cli(stack, cutover, 0, progress).await?;
    ownership.handovers.push((started, unix_now(), "destination"));
    handed_over(&mut work, "cutover again", &again);
    mark(stack, &mut report, "cutover again");
    tokio::time::sleep(options.after_cutover).await;
    let failed_during_cutover = traffic.failed_reads().len() - reads_failed_before;
    report.reads_failed_during_cutover = failed_during_cutover as u64;
    phase("rollback, cutover again (+ clients)", t, &mut report);

    // 6. The end: stop clients, drain both writers, check everything.
    let t = Instant::now();
    // Paging is judged over at least two incidents (one is no evidence of "exactly once"),
    // whatever the machine's speed: the incident writer runs until two are written.
    incidents.wait_for(scheduled::MIN_INCIDENTS).await?;
    traffic.stop().await;
    forgotten.stop().await;
    incidents.stop().await;
    let stats = traffic.stats();
    progress(&format!(
        "clients stopped: {} points acknowledged; draining both writers",
        stats.points_acknowledged
    ));
    drain(stack).await?;
    let acked = traffic.acknowledged();
    let flux = format!(
        "from(bucket: \"{}\") |> range(start: 0, stop: 2262-01-01T00:00:00Z) |> filter(fn: (r) => r._measurement == \"traffic\" and r._field == \"seq\")",
        stack.source.bucket
    );
    // Every acknowledged point, read back whole: minutes on a slow machine after a long run.
    let dest_rows = stack.destination.query_as_within(&flux, &stack.source.token, READ_BACK_TIMEOUT).await;
    let src_rows = stack.source.query_as_within(&flux, &stack.source.token, READ_BACK_TIMEOUT).await;
    let (missing_dst, wrong_dst) = missing_points(&acked, &dest_rows);
    let (missing_src, wrong_src) = missing_points(&acked, &src_rows);
    report.acknowledged_points = acked.len() as u64;
    report.present_at_destination = (acked.len() - missing_dst.len() - wrong_dst.len()) as u64;
    report.present_at_source = (acked.len() - missing_src.len() - wrong_src.len()) as u64;
    report.missing_at_destination = missing_dst;
    report.missing_at_source = missing_src;
    report.wrong_values = wrong_dst.into_iter().chain(wrong_src).collect();
    report.write_requests_ok = stats.write_requests_ok;
    report.write_requests_failed = stats.write_requests_failed;
    report.reads_ok = stats.reads_ok;
    report.reads_failed = stats.reads_failed;
    report.lag = stack.destination_mapping.state().history;
    report.source_lag_max_ms = stack.source_mapping.state().history.iter().map(|(_, ms)| *ms).max();
    report.dead_letters = dead_letters(stack).await?;
    let flux = format!(
        "from(bucket: \"{}\") |> range(start: 0, stop: 2262-01-01T00:00:00Z) \
         |> filter(fn: (r) => r._measurement == \"forgotten\") \
         |> pivot(rowKey: [\"_time\"], columnKey: [\"_field\"], valueColumn: \"_value\")",
        stack.source.bucket
    );
    let at_destination: std::collections::BTreeMap<String, String> = stack
        .destination
        .query_as_within(&flux, &stack.source.token, READ_BACK_TIMEOUT)
        .await
        .iter()
        .map(|r| (r.get("seq").unwrap_or("").to_string(), r.get("v").unwrap_or("").to_string()))
        .collect();
    let forgotten_acked = forgotten.acknowledged();
    report.forgotten_acknowledged = forgotten_acked.len() as u64;
    report.forgotten_direct = forgotten.direct();
    report.forgotten_at_destination = forgotten_acked
        .iter()
        .filter(|(seq, v)| at_destination.get(&seq.to_string()).is_some_and(|got| got == v))
        .count() as u64;
    if options.faults {
        expected_dead_letters.sort();
        let mut got: Vec<String> = report.dead_letters.iter().map(|k| dead_letter_kind(k)).collect();
        got.sort();
        if got != expected_dead_letters {
            report.notes.push(format!("dead letters {got:?}, expected {expected_dead_letters:?}"));
        }
    }
    for f in traffic.failed_reads().iter().take(5) {
        report
            .notes
            .push(format!("failed read at {:.1} s ({}): {:?} {}", f.at_secs, f.query, f.status, f.detail));
    }
    check_scheduled_work(stack, &mut work, scheduled_from, &incidents, &ownership, (&src_pager, &dst_pager))
        .await?;
    report.scheduled = Some(work);
    phase("drain and check", t, &mut report);
    Ok(report)
}

fn unix_now() -> f64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9
}

/// Keeps what a cutover or rollback said of scheduled work, and the runs it replayed.
fn handed_over(work: &mut ScheduledReport, step: &str, out: &str) {
    let verdict = out.lines().find(|l| l.contains("scheduled work") && l.contains("run(s) replayed"));
    let Some(line) = verdict.or_else(|| out.lines().find(|l| l.contains("scheduled work:"))) else {
        work.handovers.push(format!("{step}: said nothing of scheduled work"));
        return;
    };
    let said = line.trim();
    work.handovers.push(format!("{step}: {said}"));
    let replayed = said
        .split(" run(s) replayed")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    work.runs_replayed += replayed.unwrap_or(0);
}

/// What a user checks of the scheduled work at the end: the downsampled points value by value
/// over the whole window the source computed, every incident paged once and by the owner, and
/// the paused task silent everywhere.
async fn check_scheduled_work(
    stack: &LocalStack,
    work: &mut ScheduledReport,
    from: i64,
    incidents: &IncidentWriter,
    ownership: &Ownership,
    (src_pager, dst_pager): (&Receiver, &Receiver),
) -> Result<(), String> {
    let token = &stack.source.token;
    let (src, dst) = (&stack.source, &stack.destination);
    // The source computed from its first run to the second cutover's hold.
    let start = from - from.rem_euclid(scheduled::EVERY_S) + scheduled::EVERY_S;
    let until = scheduled::latest_completed(src, token, scheduled::TASK).await? + 1;
    let at_source: std::collections::BTreeMap<String, String> =
        scheduled::derived(src, token, "pump_5s", start, until).await.into_iter().collect();
    let at_destination: std::collections::BTreeMap<String, String> =
        scheduled::derived(dst, token, "pump_5s", start, until).await.into_iter().collect();
    // Judged against what the task computes from the raw points, which the demo has shown are
    // the same at both ends: the destination must hold exactly that (the handovers recompute
    // there every window since the source last ran the task). A source run that read its window
    // before the source writer had delivered it left a partial sum at the source only; that is
    // reported, and it is no loss: the destination holds the window recomputed.
    let truth: std::collections::BTreeMap<String, String> =
        scheduled::expected_rollups(dst, token, &stack.destination.bucket, start, until - 1)
            .await
            .into_iter()
            .collect();
    work.derived_compared = truth.len();
    for (time, v) in &truth {
        match at_destination.get(time) {
            Some(d) if d == v => {}
            Some(d) => {
                work.derived_differing.push(format!("{time}: the raw points sum to {v}, destination {d}"))
            }
            None => work
                .derived_differing
                .push(format!("{time}: the raw points sum to {v}, missing at the destination")),
        }
        match at_source.get(time) {
            Some(s) if s == v => {}
            Some(s) => work.source_read_early.push(format!("{time}: the raw points sum to {v}, source {s}")),
            None => work
                .source_read_early
                .push(format!("{time}: the raw points sum to {v}, missing at the source")),
        }
    }
    for (time, d) in &at_destination {
        if !truth.contains_key(time) {
            work.derived_differing.push(format!("{time}: destination {d}, but no raw point in that window"));
        }
    }
    // An incident is due once its check and rule have surely run, or once it was paged. Wait for
    // the [`scheduled::MIN_INCIDENTS`]th to be paged (or for the time by which it must have been).
    let mut written = incidents.incidents();
    written.dedup();
    if let Some(&last_needed) = written.get(scheduled::MIN_INCIDENTS - 1) {
        let deadline = last_needed + scheduled::PAGED_WITHIN_S + 1;
        while (unix_now() as i64) <= deadline
            && !scheduled::notified(&scheduled::received(src_pager, dst_pager), last_needed)
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let end = unix_now() as i64;
    work.paused_task_points = scheduled::derived(src, token, "paused_5s", 0, end + 60).await.len()
        + scheduled::derived(dst, token, "paused_5s", 0, end + 60).await.len();
    // An incident is due once its check and rule have surely run.
    let received = scheduled::received(src_pager, dst_pager);
    let due: Vec<i64> = incidents
        .incidents()
        .into_iter()
        .filter(|t| *t + scheduled::PAGED_WITHIN_S < end || scheduled::notified(&received, *t))
        .collect();
    work.paging = scheduled::paging(&due, &received, ownership);
    Ok(())
}

/// Step 4b: `status` must name the forgotten writer's measurement, `cutover` must refuse because
/// of it; then it is moved behind the gateway and `repair` copies what only the source got.
async fn find_and_repair_the_forgotten_writer(
    stack: &LocalStack,
    forgotten: &ForgottenWriter,
    report: &mut Report,
    progress: &dyn Fn(&str),
) -> Result<(), String> {
    let out = cli(stack, &["status"], 0, progress).await?;
    let named = out.lines().find(|l| l.contains("bypass") && l.contains("forgotten") && l.contains("WARN"));
    let Some(named) = named else {
        return Err(format!("status did not name the writer straight to the source:\n{out}"));
    };
    report.bypass.push(format!("status: {}", named.trim()));
    let (code, out, err) = stack.live(&["cutover"]).await;
    let refused =
        out.lines().find(|l| l.contains("REFUSED") && l.contains("bypass") && l.contains("forgotten"));
    match (code, refused) {
        (4, Some(line)) => report.bypass.push(format!("cutover refused (exit 4): {}", line.trim())),
        _ => {
            return Err(format!("cutover did not refuse because of the bypass (exit {code}):\n{out}\n{err}"));
        }
    }
    progress("the operator moves the forgotten writer behind the gateway, then repairs");
    forgotten.move_to(&stack.gateway.url);
    // Every point the writer sent straight to the source is stamped before this moment.
    let moved_at = time::OffsetDateTime::now_utc();
    // With --barrier, repair's window ends where a barrier put after the move proves both
    // writers have replayed the stream: one run covers every point the writer sent straight.
    let out = cli(stack, &["repair", "--measurement", "forgotten", "--barrier"], 0, progress).await?;
    let until = repair_window_end(&out);
    if until.is_none_or(|u| u <= moved_at) {
        return Err(format!(
            "repair's window does not reach the moment the forgotten writer moved ({moved_at}); it ended at {until:?}:\n{out}"
        ));
    }
    let repaired = out.lines().find(|l| l.contains("forgotten") && l.contains("now matches"));
    report.bypass.push(format!("repair (exit 0): {}", repaired.unwrap_or("(no line)").trim()));
    report.bypass_detected = true;
    Ok(())
}

/// The end of the window `repair` printed (`repairing … (until <RFC3339>)` or `(<a> to <b>)`).
fn repair_window_end(out: &str) -> Option<time::OffsetDateTime> {
    let line = out.lines().find(|l| l.trim_start().starts_with("repairing "))?;
    let inside = line.rsplit_once('(')?.1.split_once(')')?.0;
    let end = inside.rsplit(' ').next()?;
    time::OffsetDateTime::parse(end, &time::format_description::well_known::Rfc3339).ok()
}

/// Notes an event on the lag chart's time axis (the destination mapping's clock).
fn mark(stack: &LocalStack, report: &mut Report, label: &str) {
    if let Some(started) = stack.destination_mapping.state().started {
        report.marks.push((started.elapsed().as_secs_f64(), label.to_string()));
    }
}

/// The catch-up's faults: the destination answers 503 (with `Retry-After`) and resets
/// connections for a while; then one write is held at the destination and the destination
/// stream-writer process is killed while it waits on it — provably in the middle of a batch —
/// and a fresh instance takes over.
async fn inject_catch_up_faults(
    stack: &LocalStack,
    report: &mut Report,
    progress: &dyn Fn(&str),
) -> Result<(), String> {
    let proxy = &stack.destination_proxy;
    progress("fault: the destination answers 503 and resets connections for 8 s");
    proxy.fail_for(Duration::from_secs(8), 1);
    proxy.reset_next(3);
    tokio::time::sleep(Duration::from_secs(8)).await;
    progress(
        "fault: holding the destination's next write and killing the destination stream-writer meanwhile",
    );
    let stalled_before = proxy.stats().stalled;
    proxy.stall_next(1, Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.stats().stalled == stalled_before {
        if Instant::now() > deadline {
            return Err("the destination writer sent no write within 60 s of the stall".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Killed, as a crash would: the local stack replaces the instance (as Lambda replaces an
    // execution environment) and the mapping retries the batch whose invocation failed.
    stack.destination_writer.kill_instance(0);
    let stats = proxy.stats();
    report.notes.push(format!(
        "faults: {} answers 503, {} connections reset, 1 write held while its writer was killed mid-batch",
        stats.failed, stats.reset
    ));
    Ok(())
}

/// `<target>:<line protocol>` of a dead-letter key's object, for comparison.
fn dead_letter_kind(key: &str) -> String {
    key.split('/').nth(1).unwrap_or("").to_string()
}

async fn dead_letters(stack: &LocalStack) -> Result<Vec<String>, String> {
    Ok(stack.dead_letter_keys().await?.into_iter().filter(|k| k.starts_with("dead-letters/")).collect())
}

/// Waits until both writers have nothing left.
async fn drain(stack: &LocalStack) -> Result<(), String> {
    LocalStack::wait_idle(&stack.source_mapping, Duration::from_secs(300)).await?;
    LocalStack::wait_idle(&stack.destination_mapping, Duration::from_secs(300)).await
}

/// Adds the records that must end in dead-letter storage, and names where they must end:
/// - a record no database can parse, put straight into the stream (both writers refuse it);
/// - a point whose field is a float in the stream but a string at the destination only.
async fn deliberate_bad_records(stack: &LocalStack, expected: &mut Vec<String>) -> Result<(), String> {
    let config = stack.moto.sdk_config().await;
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    let header = Header {
        api: Api::V2,
        params: WriteParams {
            org: Some(stack.source.org.clone()),
            bucket: Some(stack.source.bucket.clone()),
            ..Default::default()
        },
        target: None,
        authorization: Some(Sensitive::new(format!("Token {}", stack.source.token))),
        received_at_ns: 0,
        content_type: None,
        request_id: "deliberately-bad".into(),
        chunk: 0,
        chunks: 0,
        lines: 0,
        raw_bytes: 0,
    };
    let mut c = Chunker::new(header, MAX_RECORD_BYTES, 8).map_err(|e| e.to_string())?;
    c.push_line(b"deliberately_bad value=", b"").map_err(|e| e.to_string())?;
    for r in c.finish().map_err(|e| e.to_string())? {
        kinesis
            .put_record()
            .stream_name(&stack.outputs.stream_name)
            .partition_key("deliberately-bad")
            .data(Blob::new(r.to_vec()))
            .send()
            .await
            .map_err(|e| {
                format!("put the bad record: {}", aws_sdk_kinesis::error::DisplayErrorContext(&e))
            })?;
    }
    expected.push("source".into());
    expected.push("destination".into());

    // Same shard group at both ends: the destination holds the field as a string.
    let t = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v2/write", stack.destination.url))
        .query(&[("org", stack.source.org.as_str()), ("bucket", stack.source.bucket.as_str())])
        .header("Authorization", format!("Token {}", stack.source.token))
        .body(format!("type_conflict v=\"text\" {}\n", t - 1))
        .send()
        .await
        .map_err(|e| format!("write to the destination: {e}"))?;
    if resp.status().as_u16() != 204 {
        return Err(format!("write to the destination: {}", resp.status()));
    }
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v2/write", stack.gateway.url))
        .query(&[("org", stack.source.org.as_str()), ("bucket", stack.source.bucket.as_str())])
        .header("Authorization", format!("Token {}", stack.source.token))
        .body(format!("type_conflict v=1.5 {t}\n"))
        .send()
        .await
        .map_err(|e| format!("write through the gateway: {e}"))?;
    if resp.status().as_u16() != 204 {
        return Err(format!("write through the gateway: {}", resp.status()));
    }
    expected.push("destination".into());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_repair_window_end_is_read_from_its_note() {
        let out = "  -  something\nrepairing http://d from http://s (until 2026-12-07T06:32:33Z)\nmore";
        assert_eq!(
            super::repair_window_end(out).map(|t| t.unix_timestamp()),
            Some(time::macros::datetime!(2026-12-07 06:32:33 UTC).unix_timestamp())
        );
        let both =
            "repairing http://d from http://s (2026-12-07T06:00:00Z to 2026-12-07T06:32:33Z); values only …";
        assert_eq!(
            super::repair_window_end(both).map(|t| t.unix_timestamp()),
            Some(time::macros::datetime!(2026-12-07 06:32:33 UTC).unix_timestamp())
        );
        assert_eq!(super::repair_window_end("nothing here"), None);
    }
}
