//! A child process that dies with its handle.
//!
//! Children are started in their own process group so that killing the group also kills anything
//! they started themselves (moto_server and cargo-lambda start helpers); the group is killed with
//! SIGKILL by PID when the guard drops, even when a test panics.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Owns a running child process (and its process group).
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    /// How the child ended, once it was killed and reaped.
    ended: Option<std::process::ExitStatus>,
    name: String,
    log: PathBuf,
}

impl ChildGuard {
    /// Starts `command` in a new process group with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> std::io::Result<ChildGuard> {
        let out = File::options().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        command.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; it makes the kernel kill the child
        // when the thread that spawned it exits, so a test process killed from outside (CI
        // timeout, Ctrl-C) leaves no server behind. Tests spawn from runtime worker threads that
        // live until the test ends, when the guards kill the children anyway.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
                Ok(())
            });
        }
        let child = command.spawn()?;
        Ok(ChildGuard { child: Some(child), ended: None, name: name.to_string(), log: log.to_path_buf() })
    }

    /// The child's PID (also its process group ID).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Whether the child has exited (by itself or by [`ChildGuard::kill`]), with its status if so.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten(),
            None => self.ended,
        }
    }

    /// The last `max` bytes of the child's log, for error messages.
    pub fn log_tail(&self, max: usize) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(max);
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    /// Path of the child's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Kills the whole process group now (SIGKILL) and reaps the child.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id() as libc::pid_t;
            // SAFETY: kill(2) with a negative PID signals the process group we created in spawn.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            let _ = child.kill();
            self.ended = child.wait().ok();
        }
    }

    /// The name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
