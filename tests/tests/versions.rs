//! The version matrix (issue 14): influxd 2.9.1, which stores API tokens hashed by default, as a
//! source and a destination beside 2.7.12. Real influxd only.
//!
//! The matrix, cell by cell (points compared value by value in each):
//!
//! | source → destination | one bucket, native | one bucket, `--csv` | `--full` | live path |
//! |---|---|---|---|---|
//! | 2.7.12 → 2.7.12 | migration_native.rs | migration_csv.rs | migration_native.rs | end_to_end.rs (the demo) |
//! | 2.9.1 → 2.7.12 | here | here | here; full_rebuild.rs (every kind of metadata) | here; hashed_tokens_live.rs (a client's own token through a rebuild) |
//! | 2.9.1 → 2.9.1 | here | here | here; operator_token.rs | here |
//!
//! Backups of 2.9.1 with and without compression, with our CLI and the real influx CLI 2.3.0:
//! backup_2_9.rs.
//!
//! What broke on main, each kept as a case below:
//! - `--full --confirm-full` from 2.9.1 into 2.7.12 backed up, then failed at the KV restore
//!   (`POST /api/v2/restore/kv` answered 500 `DB contains record of unknown migration "create
//!   authorizationhashedindexv1 bucket"`) and suggested a `--retry-restore-dir` that could not
//!   succeed. It was then refused up front; now the metadata is rebuilt through the API instead
//!   (tests/full_rebuild.rs has the whole of it).
//! - `--full --confirm-full` from 2.9.1 into 2.9.1: the KV restore answers `{"token": ""}` (the
//!   restored operator token exists only as a hash), so the CLI kept the destination's own token,
//!   which the restore had just replaced, and `POST /api/v2/restore/sql` answered 401. It now
//!   goes on with the source's operator token and finishes.

mod migration_support;

use migration_support::*;
use serde_json::{Value, json};
use testbed::flux::assert_same_points;
use testbed::{Influxd, InfluxdVersion};

/// One point of every field type, with tags that need escaping and a string holding quotes, a
/// comma and a backslash.
const TYPED_LINE: &str = "types,host=a\\ b,site=x\\=y f=1.5,i=-3i,u=18446744073709551615u,b=true,s=\"q \\\"x\\\", a\\\\b\" 1704067200000000001\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxd_2_9_1_reports_its_version_and_round_trips_every_field_type() {
    let server = Influxd::start_version(InfluxdVersion::V2_9, "influxd-2.9").await;
    let (status, health) = server.api(reqwest::Method::GET, "/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "pass", "{health}");
    assert_eq!(health["version"], "v2.9.1", "{health}");

    server.write_ok(&server.bucket, "ns", TYPED_LINE).await;
    let rows = dump(&server, &server.org, &server.bucket).await;
    let value = |field: &str| -> (String, String) {
        let row = rows.iter().find(|r| r.get("_field") == Some(field)).unwrap_or_else(|| panic!("{rows:?}"));
        assert_eq!(row.get("_time"), Some("2024-01-01T00:00:00.000000001Z"));
        assert_eq!(row.get("host"), Some("a b"));
        assert_eq!(row.get("site"), Some("x=y"));
        (row.datatypes["_value"].clone(), row.get("_value").unwrap().to_string())
    };
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(value("f"), ("double".into(), "1.5".into()));
    assert_eq!(value("i"), ("long".into(), "-3".into()));
    assert_eq!(value("u"), ("unsignedLong".into(), "18446744073709551615".into()));
    assert_eq!(value("b"), ("boolean".into(), "true".into()));
    assert_eq!(value("s"), ("string".into(), "q \"x\", a\\b".into()));
}

/// `GET /api/v2/authorizations` as `(description, token)` pairs, sorted by description.
async fn listed_tokens(server: &Influxd) -> Vec<(String, Value)> {
    let (status, body) = server.api(reqwest::Method::GET, "/api/v2/authorizations", None).await;
    assert_eq!(status, 200, "{body}");
    let mut pairs = body["authorizations"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|a| (a["description"].as_str().unwrap_or_default().to_string(), a["token"].clone()))
        .collect::<Vec<_>>();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    pairs
}

/// 2.9.1 shows a token's value once, when it is made (onboarding answers it beside its
/// `hashedToken`, `POST /api/v2/authorizations` answers it), and never again: listing and reading
/// an authorization answer `"token": ""`, and `hashedToken` is not shown either. 2.7.12 lists
/// every value. The hidden token still authenticates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxd_2_9_1_hides_token_values_that_2_7_12_lists() {
    let (old, new) = tokio::join!(
        Influxd::start_version(InfluxdVersion::V2_7, "influxd-2.7"),
        Influxd::start_version(InfluxdVersion::V2_9, "influxd-2.9")
    );
    let mut made = Vec::new();
    for server in [&old, &new] {
        let (status, auth) = server
            .api(
                reqwest::Method::POST,
                "/api/v2/authorizations",
                Some(json!({"orgID": server.org_id, "description": "reader",
                    "permissions": [{"action": "read", "resource": {"type": "buckets", "orgID": server.org_id}}]})),
            )
            .await;
        assert_eq!(status, 201, "{auth}");
        let token = auth["token"].as_str().unwrap_or_default().to_string();
        assert!(token.len() > 20, "{:?} answers the new token's value: {auth}", server.version);
        made.push((auth["id"].as_str().unwrap().to_string(), token));
    }

    assert_eq!(
        listed_tokens(&old).await,
        vec![("operator's Token".to_string(), json!(old.token)), ("reader".to_string(), json!(made[0].1)),]
    );

    assert_eq!(
        listed_tokens(&new).await,
        vec![("operator's Token".to_string(), json!("")), ("reader".to_string(), json!(""))]
    );
    let (status, one) =
        new.api(reqwest::Method::GET, &format!("/api/v2/authorizations/{}", made[1].0), None).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["token"], "", "{one}");
    assert!(one.get("hashedToken").is_none(), "{one}");
    let (status, buckets) = new.api_as(&made[1].1, reqwest::Method::GET, "/api/v2/buckets", None).await;
    assert_eq!(status, 200, "the hidden token still reads: {buckets}");
}

/// How a cell of the matrix migrates.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// `--src-bucket` through the backup/restore API.
    Native,
    /// `--src-bucket --csv`.
    Csv,
}

const MATRIX_BUCKET: &str = "matrix";

/// Starts a seeded source running `from` and an empty destination running `to`, migrates one
/// bucket with `mode`, and asserts exit 0, the verification table and every value at the
/// destination, types included.
async fn migrate_one_bucket(from: InfluxdVersion, to: InfluxdVersion, mode: Mode) {
    let (src, dst) =
        tokio::join!(Influxd::start_version(from, "source"), Influxd::start_version(to, "destination"));
    src.create_bucket(MATRIX_BUCKET).await;
    let values = seed(&src, MATRIX_BUCKET, 100).await;
    src.write_ok(MATRIX_BUCKET, "ns", TYPED_LINE).await;
    let work = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--src-host",
        &src.url,
        "--dest-host",
        &dst.url,
        "--src-bucket",
        MATRIX_BUCKET,
        "--dir-name",
        "bk",
    ];
    if let Mode::Csv = mode {
        args.push("--csv");
    }
    let run = run(work.path(), &args, &tokens(&src, &dst)).await;
    run.expect(0);
    assert_no_token(&run.all(), &[&src.token, &dst.token]);
    assert!(run.stdout.contains("verification passed: 1 bucket(s)"), "{}", run.stdout);

    let a = dump(&src, &src.org, MATRIX_BUCKET).await;
    assert_eq!(a.len(), values + 5, "the source dump should hold every value written");
    assert_same_points("source", &a, "destination", &dump(&dst, &dst.org, MATRIX_BUCKET).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_seeding_from_2_9_1_into_2_7_12_copies_every_value() {
    migrate_one_bucket(InfluxdVersion::V2_9, InfluxdVersion::V2_7, Mode::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_seeding_from_2_9_1_into_2_9_1_copies_every_value() {
    migrate_one_bucket(InfluxdVersion::V2_9, InfluxdVersion::V2_9, Mode::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_seeding_from_2_9_1_into_2_7_12_copies_every_value() {
    migrate_one_bucket(InfluxdVersion::V2_9, InfluxdVersion::V2_7, Mode::Csv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_seeding_from_2_9_1_into_2_9_1_copies_every_value() {
    migrate_one_bucket(InfluxdVersion::V2_9, InfluxdVersion::V2_9, Mode::Csv).await;
}

/// Starts a seeded source running `from` and an empty destination running `to` and runs
/// `--full --confirm-full`: (source, destination, the run).
async fn migrate_full(from: InfluxdVersion, to: InfluxdVersion) -> (Influxd, Influxd, Run) {
    let (src, dst) =
        tokio::join!(Influxd::start_version(from, "source"), Influxd::start_version(to, "destination"));
    src.create_bucket(MATRIX_BUCKET).await;
    seed(&src, MATRIX_BUCKET, 100).await;
    src.write_ok(MATRIX_BUCKET, "ns", TYPED_LINE).await;
    let work = tempfile::tempdir().unwrap();
    let args =
        ["--src-host", &src.url, "--dest-host", &dst.url, "--full", "--confirm-full", "--dir-name", "bk"];
    let run = run(work.path(), &args, &tokens(&src, &dst)).await;
    (src, dst, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_seeding_from_2_9_1_into_2_9_1_finishes_with_the_sources_operator_token() {
    let (src, dst, run) = migrate_full(InfluxdVersion::V2_9, InfluxdVersion::V2_9).await;
    run.expect(0);
    assert_no_token(&run.all(), &[&src.token, &dst.token]);
    assert!(run.stdout.contains("verification passed"), "{}", run.stdout);
    // The destination now has the source's tokens: the source's operator token reads there.
    let at_destination = Endpoint { server: &dst, token: &src.token };
    assert_same_points(
        "source",
        &dump(&src, &src.org, MATRIX_BUCKET).await,
        "destination",
        &dump(at_destination, &src.org, MATRIX_BUCKET).await,
    );
    let (status, body) = dst.api_as(&src.token, reqwest::Method::GET, "/api/v2/authorizations", None).await;
    assert_eq!(status, 200, "{body}");
    let (_, source_auths) = src.api(reqwest::Method::GET, "/api/v2/authorizations", None).await;
    assert_eq!(
        body["authorizations"].as_array().map(Vec::len),
        source_auths["authorizations"].as_array().map(Vec::len),
        "the source's authorizations, all of them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_seeding_from_2_9_1_into_2_7_12_rebuilds_the_metadata() {
    let (src, dst, run) = migrate_full(InfluxdVersion::V2_9, InfluxdVersion::V2_7).await;
    run.expect(0);
    assert_no_token(&run.all(), &[&src.token, &dst.token]);
    let all = run.all();
    assert!(all.contains("the destination runs InfluxDB v2.7.12, older than the source's v2.9.1"), "{all}");
    assert!(!all.contains("--retry-restore-dir"), "no resume hint: nothing failed: {all}");
    assert!(run.stdout.contains("verification passed"), "{}", run.stdout);
    // Rebuilt, not restored: the destination's own operator token still works there.
    assert_same_points(
        "source",
        &dump(&src, &src.org, MATRIX_BUCKET).await,
        "destination",
        &dump(&dst, &dst.org, MATRIX_BUCKET).await,
    );
}

/// The live path with a 2.9.1 source: a write through the gateway lands at both ends with equal
/// values, and after the cutover a read through the router answers with the client's own token.
async fn live_cell(destination: InfluxdVersion, prefix: &str) {
    use testbed::reads::{fetch, flux};
    use testbed::scenario::probe;
    use testbed::stack::{LocalStack, StackOptions};
    let stack = LocalStack::start(
        StackOptions {
            prefix: prefix.into(),
            destination_shares_source_token: true,
            versions: (InfluxdVersion::V2_9, destination),
            ..StackOptions::default()
        },
        |m| eprintln!("stack: {m}"),
    )
    .await
    .unwrap_or_else(|e| panic!("the local stack did not start: {e}"));
    let (code, out, err) = stack.live(&["unthrottle"]).await;
    assert_eq!(code, 0, "unthrottle: {out}{err}");
    let written = probe::write_v2(&stack, "live", 60, 3).await;
    stack.drain_destination().await;
    for (what, db) in [("source", &stack.source), ("destination", &stack.destination)] {
        let got = probe::read(&stack, db, &stack.source.bucket, "live").await;
        assert_eq!(got, written, "{what}: every acknowledged point, value by value");
    }
    // Cutover's barrier waits for both writers itself; then the routers follow the secret.
    let (code, out, err) = stack.live(&["cutover"]).await;
    assert_eq!(code, 0, "cutover: {out}{err}");
    testbed::stack::LocalStack::wait_for_routers(&out).await;
    let query = format!(
        "from(bucket: \"{}\") |> range(start: 0, stop: 2262-01-01T00:00:00Z) |> filter(fn: (r) => r.phase == \"live\" and r._field == \"v\") |> count()",
        stack.source.bucket
    );
    let read = flux(&stack.source, &query);
    let answer =
        fetch(&stack.gateway.url, &read, &stack.source.token).await.expect("read through the gateway");
    let text = String::from_utf8_lossy(&answer.body);
    assert_eq!(answer.status, 200, "{text}");
    let direct =
        fetch(&stack.destination.url, &read, &stack.source.token).await.expect("read the destination");
    assert_eq!(
        answer.body,
        direct.body,
        "the router answers what the destination holds: {text} / {}",
        String::from_utf8_lossy(&direct.body)
    );
    assert!(text.contains(",60"), "all 60 points counted: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_writes_and_reads_from_a_2_9_1_source_into_2_7_12() {
    live_cell(InfluxdVersion::V2_7, "ver-29-27").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_writes_and_reads_from_a_2_9_1_source_into_2_9_1() {
    live_cell(InfluxdVersion::V2_9, "ver-29-29").await;
}
