//! The seeding migration: a drop-in for AWS's `influx_migration.py`.
//!
//! Same options, same meaning (tools/python/influx-migration in awslabs/amazon-timestream-tools);
//! the steps are the script's: check the arguments, read the tokens, check both instances, back
//! up (natively, or to CSV), restore, and record each step's time in `performance.txt`. Then,
//! beyond the script, a verification compares value counts per bucket and measurement at both
//! ends (`--no-verify` skips it).
//!
//! Failures say what failed and what to run next. A restore that fails prints the exact
//! `--retry-restore-dir` command, which resumes where it stopped (see [`crate::seeding::restore`]).
//!
//! Exit status ([`crate::exit`]): 0 success, 1 failure, 2 command-line error, 3 verification
//! found differences.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use shared::sensitive::Sensitive;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::compare::counts;
use crate::compare::window::{BucketPair, Measurements, TimeWindow};
use crate::exit::Exit;
use crate::influx::api::{ApiOptions, GzipLevel, InfluxApi, Org};
use crate::influx::manifest::Manifest;
use crate::scheduled::work;
use crate::seeding::backup::{self, BackupCompression, BucketFilter};
use crate::seeding::csv::export::{ExportJob, export_bucket};
use crate::seeding::csv::import::{ImportJob, import_bucket};
use crate::seeding::csv::metadata::{BucketMetadata, data_file, metadata_file, stem_of};
use crate::seeding::performance::Performance;
use crate::seeding::preflight;
use crate::seeding::preflight::{CheckFailed, FullMethod, Side};
use crate::seeding::progress::Progress;
use crate::seeding::prompt::{self, Answer};
use crate::seeding::rebuild::Rebuild;
use crate::seeding::restore::{self, BucketTarget, Transfer};
use crate::seeding::restore_state::{REBUILD, StateFile};
use crate::seeding::s3::{self, Ownership};
use crate::seeding::store::Store;

/// Whether to gzip data on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WireCompression {
    /// gzip unless the host is on this machine (loopback), where it only costs CPU.
    Auto,
    Gzip,
    None,
}

/// The options of `influx_migration.py`, same names and meaning, and a few more.
#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    /// The name of the InfluxDB bucket in the source server. If not provided, then --full must be
    /// provided.
    #[arg(long)]
    pub src_bucket: Option<String>,

    /// The name of the InfluxDB bucket in the destination server; must not already exist.
    /// Defaults to the value of --src-bucket.
    #[arg(long)]
    pub dest_bucket: Option<String>,

    /// The host for the source server, with scheme and port, e.g. http://127.0.0.1:8086.
    #[arg(long, default_value = "http://localhost:8086")]
    pub src_host: String,

    /// The host for the destination server, with scheme and port, e.g.
    /// https://abc.timestream-influxdb.us-east-1.on.aws:8086
    #[arg(long, required = true)]
    pub dest_host: Option<String>,

    /// Full migration: replace ALL data and metadata (tokens, users, buckets, dashboards, tasks)
    /// of the destination with the source's. Into an older InfluxDB than the source, the metadata
    /// is rebuilt through the API instead (new IDs and tokens; see authorizations.json in the
    /// backup directory). With --csv: every user bucket of every organization, and nothing else.
    /// Overrides --src-bucket and --dest-bucket.
    #[arg(long)]
    pub full: bool,

    /// Confirm a --full migration without asking (otherwise --full without --csv asks for YES).
    #[arg(long)]
    pub confirm_full: bool,

    /// The organization of the source bucket. Default: the source token's.
    #[arg(long)]
    pub src_org: Option<String>,

    /// The organization to restore buckets into at the destination (needs --src-org unless
    /// --csv). Default: each bucket keeps its organization's name.
    #[arg(long)]
    pub dest_org: Option<String>,

    /// Back up and restore through annotated CSV and line protocol instead of the backup API
    /// (works with all-access tokens; --full --csv migrates every user bucket).
    #[arg(long)]
    pub csv: bool,

    /// Skip the backup and restore from this directory (a local path or s3://bucket/prefix),
    /// resuming a restore that failed.
    #[arg(long)]
    pub retry_restore_dir: Option<String>,

    /// The name of the backup directory to create; must not exist. Default:
    /// influxdb-backup-<milliseconds since the epoch>.
    #[arg(long)]
    pub dir_name: Option<String>,

    /// Log level: debug, info or error.
    #[arg(long, default_value = "info")]
    pub log_level: String,

    /// Skip TLS certificate verification (NOT the data verification step: see --no-verify).
    #[arg(long)]
    pub skip_verify: bool,

    /// Keep the backup directory in this S3 bucket (under --dir-name) instead of on local disk.
    #[arg(long)]
    pub s3_bucket: Option<String>,

    /// Use an S3 bucket owned by another AWS account without asking.
    #[arg(long)]
    pub allow_unowned_s3_bucket: bool,

    /// Skip the verification (value counts per bucket and measurement at both ends) after the
    /// migration.
    #[arg(long)]
    pub no_verify: bool,

    /// Shards (or CSV write batches) transferred at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,

    /// --csv: export only points at or after this time (RFC3339), e.g. to catch up a window.
    #[arg(long)]
    pub start: Option<String>,

    /// --csv: export only points before this time (RFC3339).
    #[arg(long)]
    pub stop: Option<String>,

    /// The live migration's Kinesis stream retention in hours: warn when the seeding has run for
    /// 50% and 80% of it.
    #[arg(long, env = "LIVE_STREAM_RETENTION_HOURS")]
    pub stream_retention_hours: Option<f64>,

    /// gzip data in transit: shard snapshots, KV/SQL snapshots, CSV exports and writes. `auto`
    /// compresses except to and from this machine (loopback), where it only costs CPU; shard
    /// files are then stored as .tar, as `influx backup --compression none` writes them.
    #[arg(long, value_enum, default_value_t = WireCompression::Auto)]
    pub wire_compression: WireCompression,

    /// Native backup from InfluxDB 2.9 or later: the gzip level the source compresses the
    /// backup with (its `Gzip-Compression-Level` header, as `influx backup
    /// --gzip-compression-level` in influx CLI 2.8+): default, full (smallest), speedy (fastest)
    /// or none (not compressed; the files are then stored as .bolt/.sqlite/.tar). Turns gzip on
    /// for the backup download unless none. Sources before 2.9 have no levels: it is not sent to
    /// them, and a warning says so.
    #[arg(long, value_enum)]
    pub gzip_compression_level: Option<GzipLevel>,

    /// --full from InfluxDB 2.9 or later, whose tokens are stored hashed: the source's operator
    /// token (the one made when it was set up), as `influx restore --full --operator-token`. Once
    /// the backup's metadata is restored the destination accepts only the source's tokens, and
    /// the backup cannot say which is the operator's. Checked against the backup before the
    /// destination changes. Default: INFLUX_SRC_TOKEN. Prefer the environment variable: a
    /// command line can be read by other users of the machine.
    #[arg(long, env = "INFLUX_OPERATOR_TOKEN", hide_env_values = true, value_parser = sensitive)]
    pub operator_token: Option<Sensitive>,
}

fn sensitive(value: &str) -> Result<Sensitive, std::convert::Infallible> {
    Ok(Sensitive::new(value))
}

/// A migration failure: the message, and the exit status.
struct Failure {
    exit: Exit,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure { exit: Exit::Usage, message: message.into() }
    }
    fn failed(message: impl Into<String>) -> Failure {
        Failure { exit: Exit::Failure, message: message.into() }
    }
}

impl From<CheckFailed> for Failure {
    fn from(e: CheckFailed) -> Self {
        Failure::failed(e.0)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::failed(format!("{e:#}"))
    }
}

/// Runs the migration and maps its outcome to an exit status (errors are printed here).
pub async fn run(args: MigrateArgs) -> anyhow::Result<Exit> {
    // This program's own messages at the chosen level; libraries (HTTP, AWS SDK) only warnings.
    let level = match args.log_level.to_ascii_lowercase().as_str() {
        "debug" => "warn,influx_migration=debug",
        "error" => "error",
        "warn" | "warning" => "warn",
        _ => "warn,influx_migration=info",
    };
    shared::logging::init_cli(level);
    if !matches!(
        args.log_level.to_ascii_lowercase().as_str(),
        "debug" | "info" | "error" | "warn" | "warning"
    ) {
        tracing::warn!("unknown --log-level {:?}; using info", args.log_level);
    }
    let watch = args.stream_retention_hours.and_then(crate::seeding::retention_watch::spawn);
    let perf = Performance::new("performance.txt");
    let total = perf.start("influx-migration");
    let outcome = migrate(&args, &perf).await;
    perf.finish(total);
    if let Some(w) = watch {
        w.finish();
    }
    match outcome {
        Ok(exit) => Ok(exit),
        Err(f) => {
            tracing::error!("Migration failed. Exiting . . .");
            eprintln!("error: {}", f.message);
            Ok(f.exit)
        }
    }
}

/// What kind of migration this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bucket,
    Full,
    CsvBucket,
    CsvFull,
}

impl Mode {
    fn state_name(self) -> &'static str {
        match self {
            Mode::Bucket => "bucket",
            Mode::Full => "full",
            Mode::CsvBucket | Mode::CsvFull => "csv",
        }
    }

    fn is_csv(self) -> bool {
        matches!(self, Mode::CsvBucket | Mode::CsvFull)
    }
}

fn is_loopback(api: &InfluxApi) -> bool {
    let host = api.host();
    let h = host.split("://").nth(1).unwrap_or(host);
    h.starts_with("127.") || h.starts_with("localhost") || h.starts_with("[::1]")
}

fn wire_gzip(choice: WireCompression, api: &InfluxApi) -> bool {
    match choice {
        WireCompression::Gzip => true,
        WireCompression::None => false,
        WireCompression::Auto => !is_loopback(api),
    }
}

/// Quotes a word for a POSIX shell when it needs it.
fn shell_word(w: &str) -> String {
    if !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c)) {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// The command that resumes this migration's restore from `dir`.
fn retry_command(args: &MigrateArgs, dir: &str) -> String {
    let mut w: Vec<String> = vec!["influx-migration".into(), "--retry-restore-dir".into(), dir.into()];
    let mut opt = |k: &str, v: Option<&String>| {
        if let Some(v) = v {
            w.push(k.into());
            w.push(v.clone());
        }
    };
    opt("--src-host", Some(&args.src_host));
    opt("--dest-host", args.dest_host.as_ref());
    if !args.full {
        opt("--src-bucket", args.src_bucket.as_ref());
        opt("--dest-bucket", args.dest_bucket.as_ref().or(args.src_bucket.as_ref()));
    }
    opt("--src-org", args.src_org.as_ref());
    opt("--dest-org", args.dest_org.as_ref());
    for (flag, on) in [
        ("--full", args.full),
        ("--confirm-full", args.full && !args.csv),
        ("--csv", args.csv),
        ("--skip-verify", args.skip_verify),
        ("--allow-unowned-s3-bucket", args.allow_unowned_s3_bucket),
        ("--no-verify", args.no_verify),
    ] {
        if on {
            w.push(flag.into());
        }
    }
    if args.parallel != 4 {
        w.push("--parallel".into());
        w.push(args.parallel.to_string());
    }
    w.iter().map(|x| shell_word(x)).collect::<Vec<_>>().join(" ")
}

fn restore_failed(args: &MigrateArgs, store: &Store, what: String, token_note: bool) -> Failure {
    let mut m = format!(
        "Restore has failed: {what}\nThe backup directory is\n\n    {}\n\nNothing was created under the destination bucket's \
         final name. To resume the restore without backing up again (finished steps are skipped), run:\n\n    {}\n",
        store.describe(),
        retry_command(args, &store.describe())
    );
    if token_note {
        m.push_str(
            "\nThe KV snapshot is already restored: the destination's tokens are now the source's. Set INFLUX_OPERATOR_TOKEN \
             (or INFLUX_DEST_TOKEN) to the source's operator token for the retry.\n",
        );
    }
    Failure::failed(m)
}

/// Said before anything changes when `--full` goes into an older destination.
fn rebuild_notice(source_version: &str, destination_version: &str) -> String {
    format!(
        "the destination runs InfluxDB {destination_version}, older than the source's {source_version}: its metadata \
         store cannot be restored there, so --full rebuilds orgs, users, buckets, dashboards, tasks, checks, \
         notifications, variables, labels and authorizations through the API, with new IDs and new tokens"
    )
}

fn env_token(var: &str) -> Option<Sensitive> {
    std::env::var(var).ok().map(Sensitive::new)
}

async fn migrate(args: &MigrateArgs, perf: &Performance) -> Result<Exit, Failure> {
    // ---- the arguments (verify_args) ----
    let dest_host = args.dest_host.clone().ok_or_else(|| Failure::usage("--dest-host is required"))?;
    if args.src_bucket.is_none() && !args.full {
        return Err(Failure::usage(
            "Both --src-bucket and --full have been left empty, at least one or the other is required.",
        ));
    }
    if args.dest_org.is_some() && args.src_org.is_none() && !args.csv {
        return Err(Failure::usage("Remote migration with --dest-org requires --src-org to work"));
    }
    if (args.start.is_some() || args.stop.is_some()) && !args.csv {
        return Err(Failure::usage("--start and --stop select a time range of a --csv export; add --csv"));
    }
    let window = TimeWindow::parse(args.start.as_deref(), args.stop.as_deref())
        .map_err(|e| Failure::usage(e.to_string()))?;
    if args.full && (args.src_bucket.is_some() || args.dest_bucket.is_some()) {
        tracing::warn!("--full overrides --src-bucket and --dest-bucket");
    }
    if args.retry_restore_dir.is_some() && args.dir_name.is_some() {
        tracing::warn!("--dir-name is ignored with --retry-restore-dir");
    }
    if let Some(level) = args.gzip_compression_level {
        if args.csv {
            return Err(Failure::usage(
                "--gzip-compression-level sets the compression of a native backup (the backup API); --csv exports do not \
                 use it. Leave one of them out",
            ));
        }
        if level != GzipLevel::None && args.wire_compression == WireCompression::None {
            return Err(Failure::usage(format!(
                "--gzip-compression-level {} asks the source to gzip the backup and --wire-compression none asks it not \
                 to. Leave one of them out (or use --gzip-compression-level none)",
                level.header_value()
            )));
        }
        if args.retry_restore_dir.is_some() {
            tracing::warn!(
                "--gzip-compression-level is ignored with --retry-restore-dir (nothing is backed up)"
            );
        }
    }
    let mode = match (args.full, args.csv) {
        (false, false) => Mode::Bucket,
        (true, false) => Mode::Full,
        (false, true) => Mode::CsvBucket,
        (true, true) => Mode::CsvFull,
    };
    let dest_bucket = args.dest_bucket.clone().or_else(|| args.src_bucket.clone());

    if mode == Mode::Full && !args.confirm_full {
        let warning = "WARNING: if you proceed with full migration, then all tokens, users, buckets, dashboards, and other \
                       key-value data in the destination database will be replaced, permanently, with the tokens, users, \
                       buckets, dashboards, and other key-value data in the source database. (Into an InfluxDB older than the \
                       source, they are instead rebuilt beside the destination's own, with new IDs and new tokens.) If you \
                       wish to fully migrate only all buckets from the source database to the destination database, using \
                       --full with --csv will do so.";
        match prompt::confirm(
            warning,
            "Type YES to proceed with full migration, NO to abort: ",
            "--full",
            "--confirm-full",
        ) {
            Ok(Answer::Yes) => {}
            Ok(Answer::No) => {
                return Err(Failure::failed("Aborting . . . (the full migration was not confirmed)"));
            }
            Err(e) => return Err(Failure::failed(e.to_string())),
        }
    }
    if args.skip_verify {
        tracing::warn!("TLS certificate verification will be skipped, proceed with caution");
    }

    // ---- tokens (verify_environment_tokens) ----
    let retrying = args.retry_restore_dir.is_some();
    let src_token = env_token("INFLUX_SRC_TOKEN");
    if src_token.is_none() && !retrying {
        return Err(Failure::failed("INFLUX_SRC_TOKEN environment variable has not been set"));
    }
    let dest_token = env_token("INFLUX_DEST_TOKEN")
        .ok_or_else(|| Failure::failed("INFLUX_DEST_TOKEN environment variable has not been set"))?;
    let options = ApiOptions { skip_verify: args.skip_verify, ..ApiOptions::default() };
    let dst = InfluxApi::new(&dest_host, dest_token, options.clone())
        .map_err(|e| Failure::failed(format!("--dest-host: {e}")))?;
    let src = match &src_token {
        Some(t) => Some(
            InfluxApi::new(&args.src_host, t.clone(), options.clone())
                .map_err(|e| Failure::failed(format!("--src-host: {e}")))?,
        ),
        None => None,
    };
    let native = !mode.is_csv();

    // ---- the instances (verify_instances) ----
    let mut src_org: Option<Org> = None;
    let mut src_bucket = None;
    if let (Some(src), false) = (&src, retrying) {
        preflight::check_host_and_token(src, Side::Source).await?;
        if let Some(name) = &args.src_org {
            src_org = Some(preflight::require_org(src, Side::Source, name).await?);
        }
        if let (Some(name), false) = (&args.src_bucket, args.full) {
            let (b, o) = preflight::find_source_bucket(src, src_org.as_ref(), name).await?;
            src_org = Some(o);
            src_bucket = Some(b);
        }
        if native {
            preflight::check_operator(src, Side::Source).await?;
        }
    }
    let full_kv_done_hint = retrying && mode == Mode::Full;
    match preflight::check_host_and_token(&dst, Side::Destination).await {
        Ok(()) => {}
        // A retried full restore may have replaced the destination's tokens with the source's.
        Err(e) if full_kv_done_hint => {
            tracing::warn!(
                "{e}; if an earlier attempt restored the KV store, the source's token is now the destination's"
            );
        }
        Err(e) => return Err(e.into()),
    }
    let dest_org = match &args.dest_org {
        Some(name) if mode != Mode::Full => {
            Some(preflight::require_org(&dst, Side::Destination, name).await?)
        }
        _ => None,
    };
    if native && !full_kv_done_hint {
        preflight::check_operator(&dst, Side::Destination).await?;
    }
    let mut full_method = FullMethod::Restore;
    if let (Some(src), Mode::Full, false) = (&src, mode, retrying) {
        full_method = preflight::check_full_versions(src, &dst).await;
        if let FullMethod::Rebuild { source_version, destination_version } = &full_method {
            tracing::info!("{}", rebuild_notice(source_version, destination_version));
        }
    }

    // ---- the backup directory (and S3) ----
    let store = open_store(args).await?;
    let progress = Progress::new();
    let parallel = usize::from(args.parallel);
    let transfer = Transfer { parallel, wire_gzip: wire_gzip(args.wire_compression, &dst) };

    // `--full --csv`: the source's user buckets, listed once for the checks and the export.
    let mut csv_full_buckets = Vec::new();
    if retrying {
        if !store.exists().await.map_err(|e| Failure::failed(e.to_string()))? {
            return Err(Failure::failed(format!("--retry-restore-dir {} does not exist", store.describe())));
        }
    } else {
        // Checks that need the source listing, before anything is created.
        let src = src
            .as_ref()
            .ok_or_else(|| Failure::failed("INFLUX_SRC_TOKEN environment variable has not been set"))?;
        match mode {
            Mode::Bucket | Mode::CsvBucket => {
                let org_name = dest_org
                    .as_ref()
                    .map(|o| o.name.clone())
                    .or_else(|| src_org.as_ref().map(|o| o.name.clone()));
                let target_org = match (&dest_org, &org_name) {
                    (Some(o), _) => Some(o.clone()),
                    (None, Some(n)) => dst.find_org(n).await.map_err(|e| Failure::failed(e.to_string()))?,
                    _ => None,
                };
                preflight::require_absent(
                    &dst,
                    target_org.as_ref(),
                    dest_bucket.as_deref().unwrap_or_default(),
                )
                .await?;
            }
            Mode::CsvFull => {
                let all = src.user_buckets().await.map_err(|e| Failure::failed(e.to_string()))?;
                if let Some(o) = &dest_org {
                    let mut seen = std::collections::BTreeSet::new();
                    let dupes: Vec<&str> = all
                        .iter()
                        .filter(|(b, _)| !seen.insert(b.name.as_str()))
                        .map(|(b, _)| b.name.as_str())
                        .collect();
                    if !dupes.is_empty() {
                        return Err(Failure::failed(format!(
                            "buckets {dupes:?} exist in several source organizations and cannot all go into --dest-org {}; \
                             migrate them one by one with --src-org, --src-bucket and --dest-bucket",
                            o.name
                        )));
                    }
                }
                for (b, org_name) in &all {
                    let target = match &dest_org {
                        Some(o) => Some(o.clone()),
                        None => dst.find_org(org_name).await.map_err(|e| Failure::failed(e.to_string()))?,
                    };
                    preflight::require_absent(&dst, target.as_ref(), &b.name).await?;
                }
                csv_full_buckets = all;
            }
            Mode::Full => {
                if let FullMethod::Rebuild { .. } = full_method {
                    // The rebuild makes each bucket under its own name in the org of the same name.
                    for (b, org_name) in
                        src.user_buckets().await.map_err(|e| Failure::failed(e.to_string()))?
                    {
                        let target =
                            dst.find_org(&org_name).await.map_err(|e| Failure::failed(e.to_string()))?;
                        preflight::require_absent_for_rebuild(&dst, target.as_ref(), &b.name).await?;
                    }
                }
            }
        }
        store.create_new().await.map_err(|e| Failure::failed(e.to_string()))?;
        tracing::info!("backup directory: {}", store.describe());
    }
    let state = StateFile::load(&store).await.map_err(|e| Failure::failed(e.to_string()))?;

    // ---- backup ----
    if !retrying {
        let src = src.as_ref().ok_or_else(|| Failure::failed("no source"))?;
        let started = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
        state
            .update(|s| {
                s.backup_started_at = Some(started.clone());
                s.mode = mode.state_name().into();
                s.source_host = src.host().to_string();
                if let FullMethod::Rebuild { source_version, destination_version } = &full_method {
                    s.full_method = REBUILD.into();
                    s.source_version = source_version.clone();
                    s.destination_version = destination_version.clone();
                }
            })
            .await
            .map_err(|e| Failure::failed(e.to_string()))?;
        let backup_failed = |e: String| {
            Failure::failed(format!(
                "Backup has failed: {e}\nThe incomplete backup directory {} was left for inspection; remove it (or choose \
                 another --dir-name) and run the same command again.",
                store.describe()
            ))
        };
        if mode.is_csv() {
            let step = perf.start("backup_csv");
            tracing::info!("Backing up bucket data and metadata using the InfluxDB v2 API");
            let jobs = export_jobs(
                mode,
                src_bucket.as_ref(),
                src_org.as_ref(),
                std::mem::take(&mut csv_full_buckets),
            )?;
            let gzip = wire_gzip(args.wire_compression, src);
            for job in &jobs {
                export_bucket(src, &store, job, &window, gzip, &progress)
                    .await
                    .map_err(|e| backup_failed(e.to_string()))?;
            }
            perf.finish(step);
        } else {
            let step = perf.start("backup");
            tracing::info!("Backing up bucket data and metadata using the backup API");
            let filter = match mode {
                Mode::Full => BucketFilter::default(),
                _ => BucketFilter {
                    org: src_org.as_ref().map(|o| o.name.clone()),
                    bucket: args.src_bucket.clone(),
                },
            };
            let compression = match args.gzip_compression_level {
                Some(level) => BackupCompression::with_level(level),
                None => BackupCompression::plain(wire_gzip(args.wire_compression, src)),
            };
            let outcome = backup::backup(src, &store, &filter, parallel, compression, &progress).await.map_err(|e| {
                if let backup::BackupError::Store(se) = &e
                    && se.is_disk_full()
                {
                    return backup_failed(format!("{e}. The disk holding the backup directory is full: free space, pick another \
                                                 directory with --dir-name, or stage the backup in S3 with --s3-bucket"));
                }
                backup_failed(e.to_string())
            })?;
            tracing::info!(
                "backup written to {}: {} shard(s), {} bytes of shard data",
                store.describe(),
                outcome.shards,
                outcome.bytes
            );
            perf.finish(step);
        }
    }

    // ---- restore ----
    // Whether the destination holds tasks of the source (their output is compared later).
    let mut tasks_held = false;
    // Progress recorded against another destination means nothing here.
    let host = dst.host().to_string();
    state
        .update(|s| {
            if !s.destination_host.is_empty() && s.destination_host != host {
                tracing::warn!(
                    "the state file records a restore to {}; restoring to {host} from the beginning",
                    s.destination_host
                );
                s.buckets.clear();
                s.kv_done = false;
                s.sql_done = false;
                s.shards_done.clear();
                s.id_map.clear();
                s.complete = false;
            }
            s.destination_host = host.clone();
        })
        .await
        .map_err(|e| Failure::failed(e.to_string()))?;
    // A backup made before the method was recorded (or whose KV restore failed before this
    // version): decide now, rather than retry a KV restore the destination cannot take.
    let recorded = state.get().await;
    if let (Some(src), Mode::Full, true) = (&src, mode, retrying)
        && recorded.full_method.is_empty()
        && !recorded.kv_done
        && let FullMethod::Rebuild { source_version, destination_version } =
            preflight::check_full_versions(src, &dst).await
    {
        tracing::info!("{}", rebuild_notice(&source_version, &destination_version));
        state
            .update(|s| {
                s.full_method = REBUILD.into();
                s.source_version = source_version;
                s.destination_version = destination_version;
            })
            .await
            .map_err(|e| Failure::failed(e.to_string()))?;
    }
    let st = state.get().await;
    let mut dst_after = dst.clone();
    let pairs: Vec<BucketPair>;
    // What the operator must do next, said last (after the verification table).
    let mut closing_note: Option<String> = None;
    let close = |note: &Option<String>| {
        if let Some(n) = note {
            tracing::info!("{n}");
        }
    };
    if mode.is_csv() {
        let step = perf.start("restore_csv");
        tracing::info!("Restoring bucket data and metadata from csv");
        let jobs = import_jobs(
            &store,
            &dst,
            mode,
            args.src_bucket.as_deref(),
            dest_bucket.as_deref(),
            dest_org.as_ref(),
            &st,
        )
        .await?;
        let gzip = transfer.wire_gzip;
        let mut failures = Vec::new();
        let mut done = Vec::new();
        for job in &jobs {
            match import_bucket(&dst, &store, &state, job, parallel, gzip, &progress).await {
                Ok(o) => {
                    if o.expired > 0 {
                        tracing::warn!("{} point(s) had expired under the bucket's retention", o.expired);
                    }
                    tracing::info!("{} records migrated into bucket {}", o.rows, job.final_name);
                    done.push(job.clone());
                }
                Err(e) => {
                    tracing::error!("Bucket migration failed for bucket {}: {e}", job.metadata.name);
                    failures.push(format!("{}: {e}", job.metadata.name));
                    if mode == Mode::CsvBucket {
                        break;
                    }
                }
            }
        }
        perf.finish(step);
        if !failures.is_empty() {
            return Err(restore_failed(args, &store, failures.join("; "), false));
        }
        pairs = done
            .iter()
            .map(|j| {
                BucketPair::new(
                    Some(&j.metadata.org_name),
                    &j.metadata.name,
                    Some(&j.org.name),
                    &j.final_name,
                )
            })
            .collect();
    } else {
        let step = perf.start("restore");
        tracing::info!("Restoring bucket data and metadata using the restore API");
        let manifest = restore::load_manifest(&store).await.map_err(|e| Failure::failed(e.to_string()))?;
        if mode == Mode::Full && st.full_method == REBUILD {
            let src = src.as_ref().ok_or_else(|| {
                Failure::failed(
                    "this --full migration rebuilds the metadata from the source's API: set INFLUX_SRC_TOKEN (and \
                     --src-host) for the retry",
                )
            })?;
            if retrying {
                tracing::info!(
                    "resuming the rebuild of the metadata through the API (the destination runs {}, older than the source's {})",
                    st.destination_version,
                    st.source_version
                );
            }
            let rebuild = Rebuild {
                src,
                dst: &dst,
                store: &store,
                state: &state,
                manifest: &manifest,
                transfer,
                progress: &progress,
                source_version: st.source_version.clone(),
                destination_version: st.destination_version.clone(),
            };
            let outcome = rebuild.run().await.map_err(|e| {
                Failure::failed(format!(
                    "Rebuilding the metadata at the destination has failed: {e}\nThe backup directory is\n\n    {}\n\n\
                     Everything made so far is recorded there (influx-migration-state.json). To resume without backing up \
                     again (nothing is made twice), run:\n\n    {}\n",
                    store.describe(),
                    retry_command(args, &store.describe())
                ))
            })?;
            tracing::info!("rebuilt at the destination: {}", outcome.summary());
            closing_note = Some(format!(
                "{} authorization(s) were recreated with new tokens: run `influx-migration tokens --dir-name {}` to see \
                 which token each client uses at the destination (the new tokens are in {}, readable by you only)",
                outcome.authorizations,
                shell_word(&store.describe()),
                outcome.token_file.display()
            ));
            pairs = full_pairs(&manifest);
        } else if mode == Mode::Full {
            let outcome = match restore::restore_full(
                &dst,
                &store,
                &state,
                &manifest,
                transfer,
                &progress,
                args.operator_token.as_ref().or(src_token.as_ref()),
            )
            .await
            {
                Ok(o) => o,
                Err(e) => {
                    let kv = state.get().await.kv_done;
                    return Err(restore_failed(args, &store, e.to_string(), kv));
                }
            };
            if outcome.token_replaced {
                tracing::warn!(
                    "the destination now has the source's tokens, users and dashboards: use the source's operator token for it"
                );
            }
            dst_after = outcome.api;
            pairs = full_pairs(&manifest);
        } else {
            let target =
                bucket_target(&dst, &manifest, args, dest_bucket.as_deref(), dest_org.as_ref(), &st).await?;
            restore::restore_bucket(&dst, &store, &state, &target, transfer, &progress)
                .await
                .map_err(|e| restore_failed(args, &store, e.to_string(), false))?;
            let shard_files = target.source.shards().count();
            tracing::info!("{shard_files} shard{} migrated", if shard_files == 1 { "" } else { "s" });
            pairs = vec![BucketPair::new(
                Some(&target.source.organization_name),
                &target.source.bucket_name,
                Some(&target.org.name),
                &target.final_name,
            )];
        }
        perf.finish(step);
        if mode == Mode::Full {
            tasks_held = hold_scheduled_work(&dst_after).await?;
        }
    }
    if mode != Mode::Full {
        tasks_held = move_bucket_work(src.as_ref(), &dst_after, &pairs).await?;
    }

    // ---- verification ----
    if args.no_verify {
        tracing::info!("Migration complete (verification skipped: --no-verify)");
        close(&closing_note);
        return Ok(Exit::Success);
    }
    let Some(src) = src.as_ref() else {
        tracing::warn!(
            "the verification was skipped: set INFLUX_SRC_TOKEN (and --src-host) to compare with the source"
        );
        tracing::info!("Migration complete");
        close(&closing_note);
        return Ok(Exit::Success);
    };
    let step = perf.start("verify");
    // Points written to the source after the backup began are not expected at the destination.
    let backup_start =
        state.get().await.backup_started_at.and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok());
    let stop = match (window.stop, backup_start) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // What the source's tasks derive lives in their output buckets, which the snapshot can hold
    // only in part (influxd finishes runs out of order, and a backup leaves out points still in
    // a write cache being flushed); the handover makes them whole. They are compared then.
    let mut pairs = pairs;
    if tasks_held {
        let derived = work::task_outputs(src).await.unwrap_or_default();
        pairs = pairs
            .into_iter()
            .filter_map(|p| {
                let Some(d) =
                    derived.iter().find(|d| d.bucket == p.src_bucket && p.src_org.as_deref().is_none_or(|o| o == d.org))
                else {
                    return Some(p);
                };
                match &d.measurements {
                    Some(ms) => {
                        tracing::info!(
                            "bucket {}: measurement(s) {} are written by the source's tasks: they are compared after the \
                             handover of scheduled work (`influx-migration verify --derived`)",
                            p.src_bucket,
                            Measurements::names(ms)
                        );
                        Some(p.with(Measurements::Except(ms.clone())))
                    }
                    None => {
                        tracing::info!(
                            "bucket {} is written by the source's tasks: it is compared after the handover of scheduled \
                             work (`influx-migration verify --derived`)",
                            p.src_bucket
                        );
                        None
                    }
                }
            })
            .collect();
    }
    let verify_window = TimeWindow::new(window.start, stop);
    let report = counts::compare(src, &dst_after, &pairs, &verify_window)
        .await
        .map_err(|e| Failure::failed(format!("the verification could not run: {e} (the data was migrated; run again with --no-verify to skip it)")))?;
    perf.finish(step);
    print!("{}", report.render_table());
    if report.is_clean() {
        tracing::info!("Migration complete");
        close(&closing_note);
        Ok(Exit::Success)
    } else {
        close(&closing_note);
        Err(Failure {
            exit: Exit::Differences,
            message: format!(
                "the verification found {} difference(s) between source and destination (table above); the backup is in {}",
                report.differences(),
                store.describe()
            ),
        })
    }
}

/// After a `--full` restore or rebuild: every task, check and rule active at the source is held
/// inactive at the destination ([`crate::scheduled::work`]), so nothing runs twice; the source
/// keeps running them until `cutover` (or `handover`) moves them.
async fn hold_scheduled_work(dst: &InfluxApi) -> Result<bool, Failure> {
    let held = work::hold_all(dst).await.map_err(|e| {
        Failure::failed(format!(
            "the data and metadata were migrated, but holding the destination's tasks, checks and rules inactive \
             failed: {e}. Until they are held they run at both databases: make those active at the destination \
             inactive there (in the UI, or `influx task update --status inactive`) and label them {}",
            work::HELD_LABEL
        ))
    })?;
    if !held.is_empty() {
        let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
        for i in &held {
            *by_kind.entry(i.kind.noun()).or_default() += 1;
        }
        let counts: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}(s)")).collect();
        tracing::info!(
            "{} are held inactive at the destination (labelled {}): the source runs them until `influx-migration \
             cutover` hands them over, replaying at the destination the runs they missed (without the live path: \
             `influx-migration handover --to destination`)",
            counts.join(", "),
            work::HELD_LABEL
        );
    }
    Ok(held.iter().any(|i| i.kind == work::Kind::Task))
}

/// After a migration of some buckets: the tasks, checks and rules that belong with them are made
/// at the destination and held for the source ([`crate::scheduled::bucket_scope`]); the rest is listed.
/// Whether a task was moved.
async fn move_bucket_work(
    src: Option<&InfluxApi>,
    dst: &InfluxApi,
    pairs: &[BucketPair],
) -> Result<bool, Failure> {
    let Some(src) = src else {
        tracing::warn!(
            "the source's tasks, checks and notification rules were not looked at (no source token): those that \
             use the migrated buckets are not at the destination"
        );
        return Ok(false);
    };
    let outcome = crate::scheduled::bucket_scope::copy(src, dst, pairs).await.map_err(|e| {
        Failure::failed(format!(
            "the data was migrated, but moving the tasks, checks and notification rules of the migrated buckets \
             failed: {e}. Run the same command with --retry-restore-dir to finish (what is already at the \
             destination is taken, not made twice)"
        ))
    })?;
    for m in &outcome.moved {
        tracing::info!(
            "{m} is at the destination, held inactive (labelled {}) until `influx-migration cutover` hands it over",
            work::HELD_LABEL
        );
    }
    for l in &outcome.left {
        tracing::info!("left at the source, not migrated: {l}");
    }
    Ok(outcome.tasks_moved)
}

/// What a full migration compares: every user bucket of the backup, under its own name and org.
fn full_pairs(manifest: &Manifest) -> Vec<BucketPair> {
    manifest
        .buckets
        .iter()
        .filter(|b| !b.is_system())
        .map(|b| BucketPair::same(Some(&b.organization_name), &b.bucket_name))
        .collect()
}

/// Local directory or S3 prefix, with the S3 ownership check.
async fn open_store(args: &MigrateArgs) -> Result<Store, Failure> {
    let (s3_bucket, name) = match &args.retry_restore_dir {
        Some(dir) if dir.starts_with("s3://") => {
            let (b, p) = s3::parse_url(dir).ok_or_else(|| {
                Failure::usage(format!("--retry-restore-dir {dir}: expected s3://<bucket>/<directory>"))
            })?;
            (Some(b), p)
        }
        Some(dir) => match &args.s3_bucket {
            Some(b) => (Some(b.clone()), dir.trim_matches('/').to_string()),
            None => (None, dir.clone()),
        },
        None => {
            let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
            (
                args.s3_bucket.clone(),
                args.dir_name.clone().unwrap_or_else(|| format!("influxdb-backup-{millis}")),
            )
        }
    };
    let Some(bucket) = s3_bucket else {
        return Ok(Store::Local(name.into()));
    };
    let client = s3::client().await;
    match s3::check_ownership(&client, &bucket).await {
        Ok(Ownership::Owned { .. }) => {}
        Ok(Ownership::NotOwned { account }) => {
            if args.allow_unowned_s3_bucket {
                tracing::warn!("Proceeding automatically with an unowned S3 bucket");
            } else {
                let warning = format!(
                    "WARNING: the S3 bucket {bucket} is not owned by the current AWS account ({account}). An attacker may be \
                     attempting to intercept your migration data. If this is unexpected or you do not understand, abort, \
                     otherwise, proceed with caution."
                );
                match prompt::confirm(
                    &warning,
                    "Type YES to proceed with migration, NO to abort: ",
                    "an S3 bucket owned by another account",
                    "--allow-unowned-s3-bucket",
                ) {
                    Ok(Answer::Yes) => {}
                    Ok(Answer::No) => {
                        return Err(Failure::failed(
                            "Aborting . . . (the S3 bucket is not owned by this account)",
                        ));
                    }
                    Err(e) => return Err(Failure::failed(e.to_string())),
                }
            }
        }
        Err(e) => return Err(Failure::failed(e.to_string())),
    }
    Ok(Store::S3 { client, bucket, prefix: name.trim_matches('/').to_string() })
}

/// The buckets a CSV backup exports, with unique file names.
fn export_jobs(
    mode: Mode,
    bucket: Option<&crate::influx::api::Bucket>,
    org: Option<&Org>,
    user_buckets: Vec<(crate::influx::api::Bucket, String)>,
) -> Result<Vec<ExportJob>, Failure> {
    let list = match mode {
        Mode::CsvFull => user_buckets,
        _ => {
            let b = bucket.ok_or_else(|| Failure::failed("no source bucket"))?.clone();
            let o = org.map(|o| o.name.clone()).unwrap_or_else(|| b.org_id.clone());
            vec![(b, o)]
        }
    };
    let mut used = std::collections::BTreeSet::new();
    let mut jobs = Vec::new();
    for (b, org_name) in list {
        // Same bucket name in two orgs: the second file gets the org in its name.
        let mut stem = stem_of(&b.name);
        if !used.insert(stem.clone()) {
            stem = stem_of(&format!("{}@{}", b.name, org_name));
            used.insert(stem.clone());
        }
        jobs.push(ExportJob { bucket: b, org_name, stem });
    }
    Ok(jobs)
}

/// The destination org called `name`, created when missing (as `influx restore` does).
async fn org_or_create(dst: &InfluxApi, name: &str) -> Result<Org, Failure> {
    match dst.find_org(name).await.map_err(|e| Failure::failed(e.to_string()))? {
        Some(o) => Ok(o),
        None => {
            tracing::info!("creating organization {name:?} at the destination");
            dst.create_org(name)
                .await
                .map_err(|e| Failure::failed(format!("creating organization {name:?}: {e}")))
        }
    }
}

/// The buckets of a CSV backup directory to import, and where.
async fn import_jobs(
    store: &Store,
    dst: &InfluxApi,
    mode: Mode,
    src_bucket: Option<&str>,
    dest_bucket: Option<&str>,
    dest_org: Option<&Org>,
    state: &crate::seeding::restore_state::RestoreState,
) -> Result<Vec<ImportJob>, Failure> {
    let files = store.list().await.map_err(|e| Failure::failed(e.to_string()))?;
    let mut jobs = Vec::new();
    for f in &files {
        let Some(stem) = f.strip_prefix("metadata_").and_then(|s| s.strip_suffix(".json")) else { continue };
        if !files.contains(&data_file(stem)) {
            tracing::warn!("{f} has no {} beside it; skipping", data_file(stem));
            continue;
        }
        let raw = store.read_small(&metadata_file(stem)).await.map_err(|e| Failure::failed(e.to_string()))?;
        let metadata: BucketMetadata = serde_json::from_slice(&raw)
            .map_err(|e| Failure::failed(format!("{f} is not bucket metadata: {e}")))?;
        if mode == Mode::CsvBucket && Some(metadata.name.as_str()) != src_bucket {
            continue;
        }
        let final_name = match mode {
            Mode::CsvBucket => dest_bucket.unwrap_or(&metadata.name).to_string(),
            _ => metadata.name.clone(),
        };
        let org = match dest_org {
            Some(o) => o.clone(),
            None => org_or_create(dst, &metadata.org_name).await?,
        };
        let job = ImportJob { stem: stem.to_string(), metadata, org, final_name };
        // A bucket the state does not know yet must not exist at the destination.
        if state.bucket(&job.key()).is_none() {
            preflight::require_absent(dst, Some(&job.org), &job.final_name).await?;
        }
        jobs.push(job);
    }
    if jobs.is_empty() {
        return Err(Failure::failed(match src_bucket {
            Some(b) if mode == Mode::CsvBucket => {
                format!("{} holds no CSV backup of bucket {b:?} (metadata_{b}.json)", store.describe())
            }
            _ => format!("{} holds no CSV backup (metadata_*.json and bucket_*.csv)", store.describe()),
        }));
    }
    Ok(jobs)
}

/// The bucket of a native backup to restore, and where.
async fn bucket_target(
    dst: &InfluxApi,
    manifest: &Manifest,
    args: &MigrateArgs,
    dest_bucket: Option<&str>,
    dest_org: Option<&Org>,
    state: &crate::seeding::restore_state::RestoreState,
) -> Result<BucketTarget, Failure> {
    let name = args.src_bucket.as_deref().ok_or_else(|| Failure::usage("--src-bucket is required"))?;
    let matching: Vec<_> = manifest
        .buckets
        .iter()
        .filter(|b| b.bucket_name == name && args.src_org.as_ref().is_none_or(|o| *o == b.organization_name))
        .collect();
    let source = match matching.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(Failure::failed(format!(
                "the backup holds no bucket {name:?}{}",
                args.src_org.as_ref().map(|o| format!(" of organization {o:?}")).unwrap_or_default()
            )));
        }
        _ => {
            return Err(Failure::usage(format!(
                "the backup holds several buckets called {name:?}; name the organization with --src-org"
            )));
        }
    };
    let org = match dest_org {
        Some(o) => o.clone(),
        None => org_or_create(dst, &source.organization_name).await?,
    };
    let target = BucketTarget { final_name: dest_bucket.unwrap_or(name).to_string(), org, source };
    if state.bucket(&target.key()).is_none() {
        preflight::require_absent(dst, Some(&target.org), &target.final_name).await?;
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        m: MigrateArgs,
    }

    fn parse(a: &[&str]) -> MigrateArgs {
        T::try_parse_from(std::iter::once("influx-migration").chain(a.iter().copied())).unwrap().m
    }

    #[test]
    fn defaults_are_the_scripts() {
        let a = parse(&["--dest-host", "http://d:8086", "--src-bucket", "b"]);
        assert_eq!(a.src_host, "http://localhost:8086");
        assert_eq!(a.log_level, "info");
        assert_eq!(a.parallel, 4);
        assert!(!a.full && !a.csv && !a.skip_verify && !a.no_verify);
    }

    #[test]
    fn the_retry_command_repeats_what_matters_and_quotes() {
        let a = parse(&[
            "--dest-host",
            "http://d:8086",
            "--src-bucket",
            "my bucket",
            "--src-org",
            "o",
            "--dest-org",
            "o2",
            "--parallel",
            "8",
        ]);
        let c = retry_command(&a, "/tmp/influxdb-backup-1");
        assert_eq!(
            c,
            "influx-migration --retry-restore-dir /tmp/influxdb-backup-1 --src-host http://localhost:8086 --dest-host http://d:8086 \
             --src-bucket 'my bucket' --dest-bucket 'my bucket' --src-org o --dest-org o2 --parallel 8"
        );
        let f =
            parse(&["--dest-host", "http://d:8086", "--full", "--confirm-full", "--src-bucket", "ignored"]);
        assert_eq!(
            retry_command(&f, "s3://b/x"),
            "influx-migration --retry-restore-dir s3://b/x --src-host http://localhost:8086 --dest-host http://d:8086 --full --confirm-full"
        );
    }

    #[test]
    fn loopback_hosts_skip_wire_gzip_in_auto_mode() {
        let local =
            InfluxApi::new("http://127.0.0.1:8086", Sensitive::new("t"), ApiOptions::default()).unwrap();
        let remote =
            InfluxApi::new("https://db.example.com:8086", Sensitive::new("t"), ApiOptions::default())
                .unwrap();
        assert!(!wire_gzip(WireCompression::Auto, &local));
        assert!(wire_gzip(WireCompression::Auto, &remote));
        assert!(wire_gzip(WireCompression::Gzip, &local));
    }
}
