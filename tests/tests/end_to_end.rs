//! A whole live migration on the local stack, with faults: the same scenario as the README's
//! demo command at a size that fits CI (see `testbed::scenario` for the steps).
//!
//! Faults: the destination answering 503 and resetting connections during the catch-up, the
//! destination stream-writer process killed while a write of its batch is in flight, the
//! endpoint secret flipped (cutover) while readers query, deliberately bad records.
//! Assertions: every acknowledged point is in both databases with its value; no write request
//! and no read failed (through cutover, rollback and cutover again); the scheduled work's
//! downsampled points equal at both, every incident paged once by the owner of scheduled work; dead-letter storage holds exactly the deliberately bad records; the
//! router serves the destination after the cutover.

use std::time::Duration;

use testbed::scenario::{self, ScenarioOptions};
use testbed::stack::{LocalStack, StackOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_migration_under_faults_loses_no_acknowledged_write_and_no_read() {
    let stack = LocalStack::start(
        StackOptions { prefix: "e2e-live".into(), secret_ttl_secs: 2, ..StackOptions::default() },
        |m| eprintln!("stack: {m}"),
    )
    .await
    .unwrap_or_else(|e| panic!("the local stack did not start: {e}"));
    let options = ScenarioOptions {
        points: 20_000,
        writers: 2,
        readers: 2,
        lines_per_write: 20,
        faults: true,
        after_cutover: Duration::from_secs(10),
        write_pause: Duration::from_millis(150),
        read_pause: Duration::from_millis(150),
    };
    let report = scenario::run(&stack, &options, &|m| eprintln!("scenario: {m}")).await.unwrap_or_else(|e| {
        panic!("the scenario failed: {e}\ndestination writer:\n{}", stack.destination_writer.logs())
    });
    eprintln!("{}", report.render_text());

    assert!(
        report.acknowledged_points > 1_000,
        "clients wrote during the whole migration: {}",
        report.acknowledged_points
    );
    assert!(
        report.missing_at_destination.is_empty(),
        "missing at the destination: {:?}",
        &report.missing_at_destination[..report.missing_at_destination.len().min(10)]
    );
    assert!(
        report.missing_at_source.is_empty(),
        "missing at the source: {:?}",
        &report.missing_at_source[..report.missing_at_source.len().min(10)]
    );
    assert!(report.wrong_values.is_empty(), "wrong values: {:?}", report.wrong_values);
    assert_eq!(report.present_at_destination, report.acknowledged_points);
    assert_eq!(report.write_requests_failed, 0, "no client write failed");
    assert_eq!(report.reads_failed, 0, "no read failed, during the cutover or otherwise: {:?}", report.notes);
    assert!(report.reads_ok > 10, "readers queried throughout: {}", report.reads_ok);
    // The writer nobody moved: named by status, refused by cutover, repaired, nothing lost.
    assert!(report.bypass_detected, "the bypass was found and refused: {:?}", report.bypass);
    assert!(report.forgotten_direct > 0, "it wrote straight to the source first");
    assert_eq!(
        report.forgotten_at_destination, report.forgotten_acknowledged,
        "every point of the writer nobody moved is at the destination: {:?}",
        report.bypass
    );

    // Exactly the deliberately bad records: the unparsable one at both ends, the type conflict at
    // the destination only. Their content is what was written.
    let mut targets: Vec<&str> =
        report.dead_letters.iter().map(|k| k.split('/').nth(1).unwrap_or("")).collect();
    targets.sort();
    assert_eq!(targets, ["destination", "destination", "source"], "{:?}", report.dead_letters);
    let s3 = stack.moto.s3().await;
    let mut bodies = Vec::new();
    for key in &report.dead_letters {
        let obj = s3.get_object().bucket(&stack.outputs.dead_letter_bucket).key(key).send().await.unwrap();
        let letter: serde_json::Value =
            serde_json::from_slice(&obj.body.collect().await.unwrap().into_bytes()).unwrap();
        bodies.push((
            letter["target"].as_str().unwrap().to_string(),
            letter["line_protocol"].as_str().unwrap().to_string(),
        ));
    }
    bodies.sort();
    assert_eq!(bodies[0], ("destination".to_string(), "deliberately_bad value=\n".to_string()));
    assert!(bodies[1].0 == "destination" && bodies[1].1.starts_with("type_conflict v=1.5 "), "{bodies:?}");
    assert_eq!(bodies[2], ("source".to_string(), "deliberately_bad value=\n".to_string()));

    // Scheduled work (issue 12), through cutover, rollback and cutover again: the downsampled
    // points equal at both databases value by value over the whole window the source computed,
    // every incident paged exactly once and never by the database that did not own scheduled
    // work then, the paused task silent everywhere.
    let work = report.scheduled.as_ref().expect("the scenario checked scheduled work");
    assert_eq!(work.handovers.len(), 3, "{:?}", work.handovers);
    assert!(work.runs_replayed > 0, "the handovers replayed missed runs: {:?}", work.handovers);
    assert!(work.derived_compared >= 10, "downsampled windows compared: {}", work.derived_compared);
    assert!(work.derived_differing.is_empty(), "downsampled points differ: {:?}", work.derived_differing);
    let p = &work.paging;
    assert!(p.incidents >= 2, "incidents during the run: {p:?}");
    assert_eq!((p.notified_once, &p.duplicates, &p.missed), (p.incidents, &vec![], &vec![]), "{p:?}");
    assert!(p.from_non_owner.is_empty(), "paged by the database not owning scheduled work: {p:?}");
    assert_eq!(work.paused_task_points, 0, "the paused task ran");

    // The seeding recorded its steps where it ran (the stack's work directory), as AWS's script does.
    let perf = std::fs::read_to_string(stack.work_dir.join("performance.txt"))
        .expect("performance.txt of the seeding");
    assert!(perf.contains("backup started at") && perf.contains("restore started at"), "{perf}");

    // The faults happened.
    let faults = stack.destination_proxy.stats();
    assert!(faults.failed > 0 && faults.reset == 3 && faults.stalled == 1, "{faults:?}");

    // After the cutover the router answers from the destination: a point written only there is
    // visible through the gateway.
    let only_dest = "cutover_probe v=42i 1700000000000000000\n";
    stack.destination.write_ok_as(&stack.source.bucket, only_dest, &stack.source.token).await;
    let http = reqwest::Client::new();
    let csv = http
        .post(format!("{}/api/v2/query", stack.gateway.url))
        .query(&[("org", stack.source.org.as_str())])
        .header("Authorization", format!("Token {}", stack.source.token))
        .header("Content-Type", "application/vnd.flux")
        .body(format!("from(bucket: \"{}\") |> range(start: 0) |> filter(fn: (r) => r._measurement == \"cutover_probe\")", stack.source.bucket))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.contains(",42,"), "the router reads from the destination after the cutover: {csv}");
}
