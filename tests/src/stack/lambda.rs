//! A function binary behind the real Lambda runtime API of `cargo lambda watch`.
//!
//! `cargo lambda watch --only-lambda-apis` serves the Lambda runtime API and the Invoke API
//! without building anything; the function binary that `cargo build` made is started next to it
//! with `AWS_LAMBDA_RUNTIME_API` pointing there, exactly as the Lambda service starts `bootstrap`.
//! Tests then invoke it with event JSON through `POST /2015-03-31/functions/{name}/invocations`.
//! Several binary processes on one runtime API poll the same queue, which is how a test gets
//! concurrent instances of one function.
//!
//! Two things Lambda does that `cargo lambda watch` alone does not, so the local stack behaves as
//! AWS does when a function idles or dies (measured with cargo-lambda 1.9.2; docs/design.md, "Test bed"):
//! - **An idle function never dies of idleness.** `cargo lambda watch --timeout N` answers a
//!   runtime's `/next` long poll after N seconds with no request id when nothing was invoked, and
//!   `lambda_runtime` panics on that; so the runtime API is started without `--timeout` (its
//!   `/next` then waits as long as Lambda's does) and the function timeout is enforced where
//!   Lambda enforces it for the caller: an invocation with no answer within the timeout fails.
//! - **A crashed or exited instance is replaced**, as Lambda replaces an execution environment:
//!   a supervisor restarts it (its log continues in the same file, after a line saying why), and
//!   the invocation that was in flight fails at the timeout, so an event source mapping retries it.
//! - **Concurrent invocations get their own instance** (up to [`LambdaRuntime::scale_up_to`]), as
//!   Lambda gives each concurrent invocation its own execution environment: an invocation through
//!   an [`Invoker`] that finds every instance busy starts another. With one instance the API
//!   gateway's functions served one client request at a time, and in a `--faults` demo a read
//!   waited behind another until its client gave up.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bed::TestBed;
use crate::servers::ports::free_port;
use crate::servers::process::ChildGuard;

/// A `cargo lambda watch` runtime API with one or more instances of a function binary.
#[derive(Debug)]
pub struct LambdaRuntime {
    watch: ChildGuard,
    instances: Arc<Instances>,
    supervisor: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
    /// The function's name (what it sees in `AWS_LAMBDA_FUNCTION_NAME`).
    pub name: String,
    /// The binary's name: cargo lambda watch only takes invocations named after a workspace
    /// binary, so the runtime queue and the invoke URL use it.
    route: String,
    pub port: u16,
    http: reqwest::Client,
}

/// The running instances of one function and how to start another.
#[derive(Debug)]
struct Instances {
    slots: Mutex<Vec<Instance>>,
    launch: Launch,
    /// One line per replaced instance: which, and how the one before it ended.
    replaced: Mutex<Vec<String>>,
    /// Invocations through an [`Invoker`] waiting for their answer now.
    in_flight: AtomicUsize,
    /// The most instances invocations may bring up (1 unless [`LambdaRuntime::scale_up_to`]).
    max_instances: AtomicUsize,
}

/// One invocation in flight; counted down when dropped.
struct Busy<'a>(&'a Instances);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One execution environment: a process of the function binary.
#[derive(Debug)]
struct Instance {
    process: ChildGuard,
    started: Instant,
}

/// What starts an instance.
#[derive(Debug, Clone)]
struct Launch {
    name: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    runtime_api: String,
    log_dir: PathBuf,
}

/// How often the supervisor looks for exited instances.
const SUPERVISE_EVERY: Duration = Duration::from_millis(100);
/// A replacement is started at most this often per instance (a function that exits at start
/// would otherwise spin); Lambda too waits before a new environment after an init failure.
const REPLACE_AT_MOST_EVERY: Duration = Duration::from_millis(500);

impl Launch {
    fn log_path(&self, index: usize) -> PathBuf {
        self.log_dir.join(format!("{}-{index}.log", self.name))
    }

    fn start(&self, index: usize) -> std::io::Result<Instance> {
        let mut cmd = Command::new(&self.binary);
        cmd.env("AWS_LAMBDA_RUNTIME_API", &self.runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let process = ChildGuard::spawn(&self.name, cmd, &self.log_path(index))?;
        Ok(Instance { process, started: Instant::now() })
    }
}

impl Instances {
    fn lock(&self) -> MutexGuard<'_, Vec<Instance>> {
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts one more instance; `false` when it could not be spawned.
    fn add(&self) -> bool {
        let mut slots = self.lock();
        let index = slots.len();
        match self.launch.start(index) {
            Ok(instance) => {
                slots.push(instance);
                true
            }
            Err(e) => {
                eprintln!("local stack: could not start instance {index} of {}: {e}", self.launch.name);
                false
            }
        }
    }

    /// Counts an invocation in; when more are in flight than instances run (and the limit
    /// allows), starts another instance for it, as Lambda starts an execution environment.
    fn begin(&self) -> Busy<'_> {
        let in_flight = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let running = self.lock().len();
        if in_flight > running && running < self.max_instances.load(Ordering::SeqCst) {
            self.add();
        }
        Busy(self)
    }

    /// Replaces every instance that has exited (at most once per [`REPLACE_AT_MOST_EVERY`]).
    fn replace_exited(&self) {
        let mut slots = self.lock();
        for (index, slot) in slots.iter_mut().enumerate() {
            let Some(status) = slot.process.exited() else { continue };
            if slot.started.elapsed() < REPLACE_AT_MOST_EVERY {
                continue;
            }
            let why = format!("instance {index} of {} exited ({status}); replaced", self.launch.name);
            // The log goes on in the same file, after a line that says what happened.
            if let Ok(mut f) =
                std::fs::File::options().create(true).append(true).open(self.launch.log_path(index))
            {
                let _ = writeln!(f, "=== local stack: {why} ===");
            }
            match self.launch.start(index) {
                Ok(fresh) => {
                    *slot = fresh;
                    self.replaced.lock().unwrap_or_else(|p| p.into_inner()).push(why);
                }
                Err(e) => {
                    // Tried again at the next look; the slot keeps its exited process meanwhile.
                    slot.started = Instant::now();
                    eprintln!("local stack: could not replace instance {index} of {}: {e}", self.launch.name);
                }
            }
        }
    }
}

/// Invokes a function from any task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Invoker {
    url: String,
    http: reqwest::Client,
    instances: Arc<Instances>,
}

impl Invoker {
    /// Invokes with `event`; an error when the runtime API does not answer.
    pub async fn invoke(&self, event: &Value) -> Result<Invocation, String> {
        let resp = self.invoke_open(event).await?;
        Invocation::read(resp).await
    }

    /// Invokes with `event` and returns as soon as the answer's status and headers are in: a
    /// function that streams its response (Lambda response streaming) is answered by `cargo
    /// lambda watch` with the status and headers of its prelude, marked
    /// `lambda-runtime-function-response-mode: streaming`, and its body as it comes.
    /// Counted as in flight until the answer's status and headers are in (a streamed body then
    /// goes on without holding the count; the router streams only once the database answers).
    pub async fn invoke_open(&self, event: &Value) -> Result<reqwest::Response, String> {
        let _busy = self.instances.begin();
        self.http.post(&self.url).json(event).send().await.map_err(|e| e.to_string())
    }
}

/// What an invocation returned.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub status: u16,
    /// The response payload as JSON (a JSON string when it is not JSON).
    pub payload: Value,
    /// The runtime API's answer headers, names in lower case.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The payload's bytes: a streamed response's body.
    pub body: Vec<u8>,
}

impl Invocation {
    /// Reads a whole invocation answer (see [`Invoker::invoke_open`]).
    pub async fn read_from(resp: reqwest::Response) -> Result<Invocation, String> {
        Self::read(resp).await
    }

    async fn read(resp: reqwest::Response) -> Result<Invocation, String> {
        let status = resp.status().as_u16();
        let headers = crate::reads::header_pairs(resp.headers());
        let body = resp.bytes().await.map_err(|e| e.to_string())?.to_vec();
        let text = String::from_utf8_lossy(&body);
        let payload = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()));
        Ok(Invocation { status, payload, headers, body })
    }

    /// Whether the function streamed its response (status and headers are then its prelude's).
    pub fn streamed(&self) -> bool {
        self.headers.get("lambda-runtime-function-response-mode").map(String::as_str) == Some("streaming")
    }
}

/// Path of a workspace binary built by `cargo build` (debug profile unless `CARGO_PROFILE` or
/// `TESTBED_PROFILE` says otherwise).
pub fn workspace_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| TestBed::repo_root().join("target"));
    let profile = std::env::var("TESTBED_PROFILE").unwrap_or_else(|_| "debug".into());
    let path = target.join(profile).join(name);
    assert!(
        path.exists(),
        "{} is not built; run `cargo build --workspace --bins` first (the README's test command does)",
        path.display()
    );
    path
}

/// Stages the three function binaries as `<dir>/<binary>/bootstrap`, the layout
/// `cargo lambda deploy` (and `infra/deploy.sh --lambda-dir`) reads.
pub fn stage_bootstraps(dir: &Path) -> std::io::Result<()> {
    for b in ["kinesis-writer", "stream-writer", "query-router"] {
        std::fs::create_dir_all(dir.join(b))?;
        std::fs::copy(workspace_binary(b), dir.join(b).join("bootstrap"))?;
    }
    Ok(())
}

impl LambdaRuntime {
    /// Starts `cargo lambda watch --only-lambda-apis` and one instance of the workspace binary
    /// `name` with `env` (plus the Lambda runtime variables).
    pub async fn start(name: &str, env: &[(String, String)]) -> LambdaRuntime {
        Self::start_binary(name, workspace_binary(name), env).await
    }

    /// Runs the workspace binary `binary` as the function `name` (one binary deployed under
    /// several names, like the stream writer). An invocation that gets no answer within
    /// `timeout` fails, as a Lambda function's timeout does (a killed instance never answers).
    pub async fn start_named_binary(
        name: &str,
        binary: &str,
        env: &[(String, String)],
        timeout: Duration,
    ) -> LambdaRuntime {
        Self::start_with_timeout(name, workspace_binary(binary), env, timeout).await
    }

    /// As [`LambdaRuntime::start`] with an explicit binary path.
    pub async fn start_binary(name: &str, binary: PathBuf, env: &[(String, String)]) -> LambdaRuntime {
        Self::start_with_timeout(name, binary, env, Duration::from_secs(900)).await
    }

    /// As [`LambdaRuntime::start_binary`] with the invocation timeout.
    pub async fn start_with_timeout(
        name: &str,
        binary: PathBuf,
        env: &[(String, String)],
        timeout: Duration,
    ) -> LambdaRuntime {
        let bed = TestBed::get();
        let dir = tempfile::Builder::new().prefix(&format!("lambda-{name}-")).tempdir().expect("temp dir");
        // As the other servers do (see `ports`): a port taken between `free_port` and the bind
        // makes the runtime exit; try again with a fresh one.
        let mut attempts = 3;
        let (watch, port) = loop {
            attempts -= 1;
            let port = free_port();
            let mut cmd = Command::new(&bed.cargo_lambda);
            let path = format!("{}:{}", bed.venv_bin.display(), std::env::var("PATH").unwrap_or_default());
            cmd.current_dir(TestBed::repo_root())
                .env("PATH", path)
                .args(["lambda", "watch", "--only-lambda-apis", "--ignore-changes", "--quiet"])
                .args(["--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()]);
            // No `--timeout`: with one, an idle runtime's `/next` is answered empty and the
            // function process panics (see the module docs). The timeout is the client's below.
            let mut watch = ChildGuard::spawn("cargo-lambda-watch", cmd, &dir.path().join("watch.log"))
                .expect("spawn cargo lambda watch");
            // The runtime API answers once it is listening.
            let deadline = Instant::now() + Duration::from_secs(60);
            let listening = loop {
                if let Some(status) = watch.exited() {
                    assert!(attempts > 0, "cargo lambda watch exited ({status}): {}", watch.log_tail(3000));
                    break false;
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                    break true;
                }
                assert!(
                    Instant::now() < deadline,
                    "cargo lambda watch did not listen: {}",
                    watch.log_tail(3000)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            if listening {
                break (watch, port);
            }
        };
        // The function timeout, as the caller of a Lambda function sees it: no answer in time
        // is a failed invocation.
        // No decompression: a streamed answer's `Content-Encoding` is the function's (influxd's
        // gzip relayed), and must reach the caller as it was sent.
        let http = reqwest::Client::builder().timeout(timeout).no_gzip().build().expect("http client");
        let route =
            binary.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| name.to_string());
        let instances = Arc::new(Instances {
            slots: Mutex::new(Vec::new()),
            launch: Launch {
                name: name.to_string(),
                binary,
                env: env.to_vec(),
                // cargo lambda watch serves one runtime queue per function name at /.rt/<name>.
                runtime_api: format!("http://127.0.0.1:{port}/.rt/{route}"),
                log_dir: dir.path().to_path_buf(),
            },
            replaced: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_instances: AtomicUsize::new(1),
        });
        let supervisor = {
            let instances = Arc::downgrade(&instances);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(SUPERVISE_EVERY).await;
                    match instances.upgrade() {
                        Some(i) => i.replace_exited(),
                        None => return,
                    }
                }
            })
        };
        let runtime = LambdaRuntime {
            watch,
            instances,
            supervisor,
            _dir: dir,
            name: name.to_string(),
            route,
            port,
            http,
        };
        runtime.add_instance();
        runtime
    }

    /// Starts one more instance of the function on the same runtime API.
    pub fn add_instance(&self) {
        assert!(self.instances.add(), "spawn function binary {}", self.name);
    }

    /// Lets invocations through [`Self::invoker`] bring up to `n` instances, one per concurrent
    /// invocation (Lambda's scaling; a function's reserved concurrency is its limit there).
    pub fn scale_up_to(&self, n: usize) {
        self.instances.max_instances.store(n.max(1), Ordering::SeqCst);
    }

    /// How many instances run now.
    pub fn instance_count(&self) -> usize {
        self.lock().len()
    }

    /// Kills instance `index` (SIGKILL), as a crash would; the supervisor replaces it, as Lambda
    /// replaces an execution environment, and the invocation it had in flight fails.
    pub fn kill_instance(&self, index: usize) {
        if let Some(i) = self.lock().get_mut(index) {
            i.process.kill();
        }
    }

    /// Kills every instance and starts one fresh one (a cold start).
    pub fn restart(&self) {
        let mut slots = self.lock();
        for i in slots.iter_mut() {
            i.process.kill();
        }
        slots.clear();
        let instance = self.instances.launch.start(0).expect("spawn function binary");
        slots.push(instance);
    }

    /// One line per instance the supervisor replaced, saying how the one before it ended.
    pub fn replacements(&self) -> Vec<String> {
        self.instances.replaced.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The largest peak resident set (`VmHWM`) of the running instances, in bytes: what the
    /// function's memory setting must hold. `None` where `/proc` does not tell.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        self.lock().iter().filter_map(|i| peak_rss_of(i.process.pid())).max()
    }

    /// The log files of the instances and of the runtime API (they live as long as `self`).
    pub fn log_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> =
            self.lock().iter().map(|i| i.process.log_path().to_path_buf()).collect();
        paths.push(self.watch.log_path().to_path_buf());
        paths
    }

    /// Invokes the function with `event` and returns the response payload. Panics with the logs
    /// when the function keeps crashing meanwhile (a crashed instance never answers; three
    /// replaced instances during one invocation is a function that cannot run), or when no
    /// answer comes within the timeout.
    pub async fn invoke(&self, event: &Value) -> Invocation {
        let url = format!("http://127.0.0.1:{}/2015-03-31/functions/{}/invocations", self.port, self.route);
        let request = self.http.post(url).json(event).send();
        tokio::pin!(request);
        let replaced_before = self.replacements().len();
        let resp = loop {
            tokio::select! {
                r = &mut request => break r,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    let replaced = self.replacements();
                    if replaced.len() >= replaced_before + 3 {
                        panic!(
                            "{} keeps crashing ({}); logs:\n{}",
                            self.name,
                            replaced[replaced_before..].join("; "),
                            self.logs()
                        );
                    }
                }
            }
        };
        let resp = resp.unwrap_or_else(|e| panic!("invoke {}: {e}; logs:\n{}", self.name, self.logs()));
        Invocation::read(resp)
            .await
            .unwrap_or_else(|e| panic!("reading {}'s answer: {e}; logs:\n{}", self.name, self.logs()))
    }

    /// A handle for invoking from several tasks at once (no liveness check).
    pub fn invoker(&self) -> Invoker {
        Invoker {
            url: format!("http://127.0.0.1:{}/2015-03-31/functions/{}/invocations", self.port, self.route),
            http: self.http.clone(),
            instances: self.instances.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Instance>> {
        self.instances.lock()
    }

    /// The function instances' logs and the runtime API's log, for assertion messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in self.lock().iter() {
            let p = &i.process;
            out.push_str(&format!("--- {} (pid {}):\n{}\n", p.name(), p.pid(), p.log_tail(6000)));
        }
        out.push_str(&format!("--- cargo lambda watch:\n{}\n", self.watch.log_tail(2000)));
        out
    }

    /// Everything the function instances have logged so far.
    pub fn function_log(&self) -> String {
        self.lock()
            .iter()
            .map(|i| {
                String::from_utf8_lossy(&std::fs::read(i.process.log_path()).unwrap_or_default()).into_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `VmHWM` of process `pid` in bytes (Linux `/proc/<pid>/status`).
fn peak_rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

impl Drop for LambdaRuntime {
    fn drop(&mut self) {
        // The supervisor must not replace instances while they are being killed.
        self.supervisor.abort();
    }
}
