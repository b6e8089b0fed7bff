//! moto server: the AWS APIs (Kinesis, Secrets Manager, Lambda control plane, S3, STS,
//! CloudFormation) on a free loopback port.

use std::process::Command;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;

use crate::bed::TestBed;
use crate::servers::ports::free_port;
use crate::servers::process::ChildGuard;

/// Static credentials moto accepts.
pub const ACCESS_KEY: &str = "testing";
pub const SECRET_KEY: &str = "testing";
pub const REGION: &str = "us-east-1";

/// A running moto server; killed when dropped.
#[derive(Debug)]
pub struct Moto {
    process: ChildGuard,
    _dir: tempfile::TempDir,
    pub url: String,
}

impl Moto {
    /// Starts moto server and waits until it answers.
    pub async fn start() -> Moto {
        let bed = TestBed::get();
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(bed).await {
                Ok(m) => return m,
                Err(e) => last = e,
            }
        }
        panic!("could not start moto_server ({}): {last}", bed.moto_server.display());
    }

    async fn try_start(bed: &TestBed) -> Result<Moto, String> {
        let dir = tempfile::Builder::new().prefix("moto-").tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        // moto_server through tests/testbed/moto_server.py: the same server, with Kinesis shards
        // that keep every acknowledged record under concurrent puts (see that file for why).
        let mut cmd = Command::new(bed.venv_bin.join("python"));
        cmd.current_dir(dir.path()).arg(TestBed::repo_root().join("tests/testbed/moto_server.py")).args([
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ]);
        let mut process =
            ChildGuard::spawn("moto", cmd, &dir.path().join("moto.log")).map_err(|e| e.to_string())?;
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = process.exited() {
                return Err(format!("exited early ({status}): {}", process.log_tail(3000)));
            }
            if let Ok(r) = http.get(format!("{url}/moto-api/")).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("no answer within 30 s: {}", process.log_tail(3000)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Moto { process, _dir: dir, url })
    }

    /// An AWS SDK config pointed at this server with static test credentials.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&self.url)
            .region(Region::new(REGION))
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "testbed"))
            .load()
            .await
    }

    /// An S3 client for this server (path-style addressing: loopback has no bucket subdomains).
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk_config().await).force_path_style(true).build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// The environment a child process needs to reach this server through the standard AWS
    /// credential, region and endpoint chain.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), self.url.clone()),
            ("AWS_ACCESS_KEY_ID".into(), ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY".into(), SECRET_KEY.into()),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_DEFAULT_REGION".into(), REGION.into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }

    /// Runs the AWS CLI (v1, from the test bed) against this server and returns its JSON answer
    /// (`Null` for an empty one); panics, with the CLI's stderr, when the command fails.
    pub fn aws_cli(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new(&TestBed::get().aws_cli)
            .args(args)
            .args(["--output", "json"])
            .envs(self.env())
            .output()
            .expect("run the aws CLI");
        assert!(out.status.success(), "aws {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).expect("aws CLI JSON")
        }
    }

    /// The tail of moto's log.
    pub fn log_tail(&self) -> String {
        self.process.log_tail(4000)
    }

    /// moto's log file (it lives as long as `self`).
    pub fn log_path(&self) -> &std::path::Path {
        self.process.log_path()
    }
}
