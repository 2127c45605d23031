//! The `partner-gateway` binary as a child process, for tests that kill it and restart it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A running `partner-gateway run` child process; killed (SIGKILL, by pid) on drop.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    /// The partner listener it bound.
    pub partner_addr: SocketAddr,
    /// The admin listener it bound.
    pub admin_addr: SocketAddr,
    log: PathBuf,
}

impl GatewayProcess {
    /// The binary built next to the test executable (`scripts/test` builds it first).
    pub fn binary() -> PathBuf {
        let exe = std::env::current_exe().expect("current test executable");
        // target/<profile>/deps/<test> → target/<profile>/partner-gateway
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target profile directory");
        let binary = dir.join("partner-gateway");
        assert!(
            binary.exists(),
            "{} is missing: build it first (`cargo build -p gateway`, as scripts/test does)",
            binary.display()
        );
        binary
    }

    /// Starts `partner-gateway run --config <dir>` on free loopback ports and waits until it
    /// logs both listener addresses. Its log goes to `log`.
    pub fn start(config_dir: &Path, log: &Path) -> anyhow::Result<GatewayProcess> {
        Self::start_with(config_dir, log, &[])
    }

    /// As [`GatewayProcess::start`], with extra environment variables.
    pub fn start_with(
        config_dir: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<GatewayProcess> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let start_offset = file.metadata()?.len();
        let mut command = Command::new(Self::binary());
        command
            .arg("--log-format")
            .arg("json")
            .arg("run")
            .arg("--config")
            .arg(config_dir)
            .arg("--partner-addr")
            .arg("127.0.0.1:0")
            .arg("--admin-addr")
            .arg("127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().context("spawn partner-gateway")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let text = text.get(start_offset as usize..).unwrap_or("");
            if let (Some(partner_addr), Some(admin_addr)) = (
                address_after(text, "partner listener on "),
                address_after(text, "admin listener on "),
            ) {
                return Ok(GatewayProcess {
                    child,
                    partner_addr,
                    admin_addr,
                    log: log.to_owned(),
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!("partner-gateway exited with {status} before listening:\n{text}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("partner-gateway did not listen within 30 s:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Finds `marker` in a log and parses the socket address that follows it.
pub fn address_after(text: &str, marker: &str) -> Option<SocketAddr> {
    let start = text.find(marker)? + marker.len();
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A root directory for gateway processes: the sample configuration pointing at a sandbox
/// this fixture runs, a dev PKI and dev secrets. Processes started from it share its data
/// (embedded store, audit trail), so a restarted gateway finds what the killed one wrote.
#[derive(Debug)]
pub struct ProcessRoot {
    root: tempfile::TempDir,
    sandbox: gateway_sandbox::SandboxHandle,
}

impl ProcessRoot {
    /// Prepares the directory and starts the sandbox.
    pub async fn new() -> ProcessRoot {
        crate::init();
        let root = tempfile::tempdir().expect("temp dir");
        crate::prepare_root(root.path()).expect("prepare the root");
        let sandbox = gateway_sandbox::start("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("start the sandbox");
        let yaml_path = root.path().join("partner-config/gateway.yaml");
        let yaml = std::fs::read_to_string(&yaml_path).expect("gateway.yaml");
        std::fs::write(
            &yaml_path,
            yaml.replace("127.0.0.1:8600", &sandbox.addr().to_string()),
        )
        .expect("write gateway.yaml");
        ProcessRoot { root, sandbox }
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        self.root.path()
    }

    /// The configuration directory.
    pub fn config(&self) -> PathBuf {
        self.root.path().join("partner-config")
    }

    /// The admin token.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.root.path().join("data/admin.token"))
            .expect("admin token")
            .trim()
            .to_owned()
    }

    /// The sandbox upstream.
    pub fn sandbox(&self) -> &gateway_sandbox::SandboxHandle {
        &self.sandbox
    }

    /// Starts `partner-gateway run` on this root (log in `gateway.log`).
    pub fn start(&self) -> GatewayProcess {
        GatewayProcess::start(&self.config(), &self.root.path().join("gateway.log"))
            .expect("start partner-gateway")
    }
}
