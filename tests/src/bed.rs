//! Where the installed test bed lives.
//!
//! `tests/testbed/install.sh` writes `tests/testbed/env` with the paths of the binaries it built or
//! installed into the per-user cache. Each path can also be given directly in the environment
//! (`INFLUXD_BIN`, `INFLUXD_2_9_BIN`, `INFLUX_BIN`, `MOTO_SERVER_BIN`, `CFN_LINT_BIN`,
//! `CARGO_LAMBDA_BIN`, `AWS_CLI_BIN`), which wins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The installed test bed: paths of the real programs tests start.
#[derive(Debug, Clone)]
pub struct TestBed {
    /// influxd 2.7.12, the version every test uses unless it names another.
    pub influxd: PathBuf,
    /// influxd 2.9.1 (API tokens hashed by default), for the version matrix: [`Self::influxd_2_9`].
    influxd_2_9: Option<PathBuf>,
    /// The influx CLI: [`Self::influx`].
    influx: Option<PathBuf>,
    pub moto_server: PathBuf,
    pub cfn_lint: PathBuf,
    pub cargo_lambda: PathBuf,
    /// The AWS CLI (v1, from the virtualenv), used by the deploy scripts.
    pub aws_cli: PathBuf,
    /// The virtualenv's `bin` directory (cargo-lambda finds its zig there).
    pub venv_bin: PathBuf,
}

const INSTALL_HINT: &str =
    "run `tests/testbed/install.sh` (or the README's test command, which runs it) first";

impl TestBed {
    /// The test bed, or a panic that says what is missing and how to install it.
    pub fn get() -> &'static TestBed {
        static BED: OnceLock<Result<TestBed, String>> = OnceLock::new();
        match BED.get_or_init(TestBed::locate) {
            Ok(bed) => bed,
            Err(why) => panic!("the test bed is not installed: {why}; {INSTALL_HINT}"),
        }
    }

    /// influxd 2.9.1, or a panic saying how to install it (`install.sh --demo` leaves it out).
    pub fn influxd_2_9(&self) -> &Path {
        self.influxd_2_9.as_deref().unwrap_or_else(|| {
            panic!("influxd 2.9.1 is not installed (INFLUXD_2_9_BIN): {INSTALL_HINT}, without --demo")
        })
    }

    /// The influx CLI, or a panic saying how to install it (`install.sh --demo` leaves it out).
    pub fn influx(&self) -> &Path {
        self.influx.as_deref().unwrap_or_else(|| {
            panic!("the influx CLI is not installed (INFLUX_BIN): {INSTALL_HINT}, without --demo")
        })
    }

    /// The repository's root directory.
    pub fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
    }

    fn locate() -> Result<TestBed, String> {
        let env_file = Self::repo_root().join("tests/testbed/env");
        let mut vars = HashMap::new();
        if let Ok(text) = std::fs::read_to_string(&env_file) {
            for line in text.lines() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if let Some((k, v)) = line.split_once('=') {
                    vars.insert(k.trim().to_string(), v.trim().to_string());
                }
            }
        }
        let path_of = |name: &str| -> Result<PathBuf, String> {
            let value = std::env::var(name)
                .ok()
                .or_else(|| vars.get(name).cloned())
                .ok_or_else(|| format!("{name} is not set and {} does not name it", env_file.display()))?;
            let path = PathBuf::from(value);
            if path.exists() { Ok(path) } else { Err(format!("{name}={} does not exist", path.display())) }
        };
        // `install.sh --demo` leaves these out; a test that needs one says how to install it.
        let optional = |name: &str| -> Result<Option<PathBuf>, String> {
            if std::env::var(name).is_err() && !vars.contains_key(name) {
                return Ok(None);
            }
            path_of(name).map(Some)
        };
        Ok(TestBed {
            influxd: path_of("INFLUXD_BIN")?,
            influxd_2_9: optional("INFLUXD_2_9_BIN")?,
            influx: optional("INFLUX_BIN")?,
            moto_server: path_of("MOTO_SERVER_BIN")?,
            cfn_lint: path_of("CFN_LINT_BIN")?,
            cargo_lambda: path_of("CARGO_LAMBDA_BIN")?,
            aws_cli: path_of("AWS_CLI_BIN")?,
            venv_bin: path_of("VENV_BIN")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_is_named_with_the_install_command() {
        // SAFETY (edition 2024 marks set_var unsafe): this unit test binary sets this variable
        // only here and reads it in the same thread.
        unsafe { std::env::set_var("INFLUXD_BIN", "/nonexistent/influxd") };
        let err = TestBed::locate().unwrap_err();
        assert!(err.contains("INFLUXD_BIN=/nonexistent/influxd does not exist"), "{err}");
        // The second influxd is named the same way (same thread, as above).
        unsafe {
            std::env::set_var("INFLUXD_BIN", "/");
            std::env::set_var("INFLUXD_2_9_BIN", "/nonexistent/influxd-2.9");
        }
        let err = TestBed::locate().unwrap_err();
        assert!(err.contains("INFLUXD_2_9_BIN=/nonexistent/influxd-2.9 does not exist"), "{err}");
        assert!(INSTALL_HINT.contains("tests/testbed/install.sh"));
    }
}
