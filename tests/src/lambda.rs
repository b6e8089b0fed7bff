//! A function binary behind the real Lambda runtime API of `cargo lambda watch`.
//!
//! `cargo lambda watch --only-lambda-apis` serves the Lambda runtime API and the Invoke API
//! without building anything; the function binary that `cargo build` made is started next to it
//! with `AWS_LAMBDA_RUNTIME_API` pointing there, exactly as the Lambda service starts `bootstrap`.
//! Tests then invoke it with event JSON through `POST /2015-03-31/functions/{name}/invocations`.
//! Several binary processes on one runtime API poll the same queue, which is how a test gets
//! concurrent instances of one function.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bed::TestBed;
use crate::ports::free_port;
use crate::process::ChildGuard;

/// A `cargo lambda watch` runtime API with one or more instances of a function binary.
#[derive(Debug)]
pub struct LambdaRuntime {
    watch: ChildGuard,
    instances: std::sync::Mutex<Vec<ChildGuard>>,
    dir: tempfile::TempDir,
    /// The function's name (what it sees in `AWS_LAMBDA_FUNCTION_NAME`).
    pub name: String,
    /// The binary's name: cargo lambda watch only takes invocations named after a workspace
    /// binary, so the runtime queue and the invoke URL use it.
    route: String,
    binary: PathBuf,
    env: Vec<(String, String)>,
    pub port: u16,
    http: reqwest::Client,
}

/// Invokes a function from any task; cheap to clone.
#[derive(Debug, Clone)]
pub struct Invoker {
    url: String,
    http: reqwest::Client,
}

impl Invoker {
    /// Invokes with `event`; an error when the runtime API does not answer.
    pub async fn invoke(&self, event: &Value) -> Result<Invocation, String> {
        let resp = self.http.post(&self.url).json(event).send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let payload = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Invocation { status, payload })
    }
}

/// What an invocation returned.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub status: u16,
    pub payload: Value,
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
                .args(["--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
                .args(["--timeout", &timeout.as_secs().max(1).to_string()]);
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
        let http = reqwest::Client::builder()
            .timeout(timeout + Duration::from_secs(5))
            .build()
            .expect("http client");
        let route =
            binary.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| name.to_string());
        let runtime = LambdaRuntime {
            watch,
            instances: std::sync::Mutex::new(Vec::new()),
            dir,
            name: name.to_string(),
            route,
            binary,
            env: env.to_vec(),
            port,
            http,
        };
        runtime.add_instance();
        runtime
    }

    /// Starts one more instance of the function on the same runtime API.
    pub fn add_instance(&self) {
        let index = self.lock().len();
        let mut cmd = Command::new(&self.binary);
        // cargo lambda watch serves one runtime queue per function name at /.rt/<name>.
        cmd.env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{}/.rt/{}", self.port, self.route))
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.name)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let log = self.dir.path().join(format!("{}-{index}.log", self.name));
        let guard = ChildGuard::spawn(&self.name, cmd, &log).expect("spawn function binary");
        self.lock().push(guard);
    }

    /// Kills instance `index` (SIGKILL), as a crashed or timed-out Lambda would be.
    pub fn kill_instance(&self, index: usize) {
        if let Some(i) = self.lock().get_mut(index) {
            i.kill();
        }
    }

    /// Kills every instance and starts one fresh one (a cold start).
    pub fn restart(&self) {
        {
            let mut instances = self.lock();
            for i in instances.iter_mut() {
                i.kill();
            }
            instances.clear();
        }
        self.add_instance();
    }

    /// Invokes the function with `event` and returns the response payload. Panics with the logs
    /// when every instance of the function has exited (a crashed function never answers).
    pub async fn invoke(&self, event: &Value) -> Invocation {
        let url = format!("http://127.0.0.1:{}/2015-03-31/functions/{}/invocations", self.port, self.route);
        let request = self.http.post(url).json(event).send();
        tokio::pin!(request);
        let resp = loop {
            tokio::select! {
                r = &mut request => break r,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    let all_dead = {
                        let mut instances = self.lock();
                        !instances.is_empty() && instances.iter_mut().all(|i| i.exited().is_some())
                    };
                    if all_dead {
                        panic!("every instance of {} has exited; logs:\n{}", self.name, self.logs());
                    }
                }
            }
        };
        let resp = resp.unwrap_or_else(|e| panic!("invoke {}: {e}; logs:\n{}", self.name, self.logs()));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let payload = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Invocation { status, payload }
    }

    /// A handle for invoking from several tasks at once (no liveness check).
    pub fn invoker(&self) -> Invoker {
        Invoker {
            url: format!("http://127.0.0.1:{}/2015-03-31/functions/{}/invocations", self.port, self.route),
            http: self.http.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ChildGuard>> {
        self.instances.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The function instances' logs and the runtime API's log, for assertion messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for i in self.lock().iter() {
            out.push_str(&format!("--- {} (pid {}):\n{}\n", i.name(), i.pid(), i.log_tail(6000)));
        }
        out.push_str(&format!("--- cargo lambda watch:\n{}\n", self.watch.log_tail(2000)));
        out
    }

    /// Everything the function instances have logged so far.
    pub fn function_log(&self) -> String {
        self.lock()
            .iter()
            .map(|i| String::from_utf8_lossy(&std::fs::read(i.log_path()).unwrap_or_default()).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
}
