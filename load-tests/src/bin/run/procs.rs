//! Child processes: spawned (pinned to a core with `taskset` when possible) in their own
//! process group with their output in a log file, found ready by a log line or an open port,
//! and stopped by pid — SIGTERM, then SIGKILL — when their guard is dropped, including on
//! Ctrl-C and on any error.

use std::ffi::OsString;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use load_tests::procfs;

/// Set by SIGINT/SIGTERM; every wait loop checks it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether the run was asked to stop.
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Acquire)
}

/// Fails when the run was asked to stop, so guards unwind and stop their processes.
pub(crate) fn check_interrupted() -> anyhow::Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Catches SIGINT and SIGTERM on a background thread and sets the interrupted flag (children
/// run in their own process groups, so a terminal's Ctrl-C reaches only this process, which
/// then stops them in order).
pub(crate) fn watch_signals() {
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(|| {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                load_tests::server::stop_signal().await;
                eprintln!("\nrun: interrupted; stopping everything it started…");
                INTERRUPTED.store(true, Ordering::Release);
            });
        });
}

/// A started child process; dropping it stops it.
pub(crate) struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    stopped: bool,
}

impl Proc {
    /// Starts `program args…`, pinned to `core` when given, with stdout and stderr in `log`.
    pub(crate) fn spawn(
        name: &str,
        program: &Path,
        args: &[OsString],
        core: Option<u32>,
        log: &Path,
        envs: &[(&str, &str)],
    ) -> anyhow::Result<Proc> {
        let out = File::create(log).with_context(|| format!("create {}", log.display()))?;
        let err = out.try_clone()?;
        let mut command = match core {
            Some(core) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(core.to_string()).arg(program);
                c
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        for (key, value) in envs {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("start {name} ({})", program.display()))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            stopped: false,
        })
    }

    /// The process id (with `taskset`, which execs, the program's own).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The last `n` lines of the log.
    pub(crate) fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The log's contents so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log shows `needle` followed by an address, and returns it; fails
    /// when the process exits first or `timeout` passes.
    pub(crate) fn wait_for_addr(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + timeout;
        loop {
            check_interrupted()?;
            if let Some(addr) = procfs::addr_after(&self.log_text(), needle) {
                return Ok(addr);
            }
            self.fail_if_exited()?;
            if Instant::now() >= deadline {
                bail!(
                    "{} did not log {needle:?} within {timeout:?}:\n{}",
                    self.name,
                    self.log_tail(15)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until `addr` accepts TCP connections.
    pub(crate) fn wait_for_port(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            check_interrupted()?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            self.fail_if_exited()?;
            if Instant::now() >= deadline {
                bail!(
                    "{} did not open {addr} within {timeout:?}:\n{}",
                    self.name,
                    self.log_tail(15)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn fail_if_exited(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            self.stopped = true;
            bail!("{} exited ({status}):\n{}", self.name, self.log_tail(15));
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub(crate) fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.stopped = true;
                return Some(status);
            }
            if Instant::now() >= deadline || interrupted() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM by pid.
    pub(crate) fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// SIGTERM, up to 5 s to exit, then SIGKILL. Idempotent.
    pub(crate) fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        self.terminate();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port on 127.0.0.1 that was free a moment ago (for servers that cannot bind port 0 and
/// report it: nginx and redis-server). Callers retry on a bind failure.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The path of `name` on `PATH`, or in `/usr/sbin` and `/sbin`.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs a command to completion and returns its stdout and stderr, trimmed.
pub(crate) fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Some(text.trim().to_owned())
}
