//! Starting each server arrangement (a … f4) and its setup steps (token, consent, probe).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Method, StatusCode};
use rustls::pki_types::ServerName;

use load_tests::client::{self, Answer, ClientPki, Endpoint, KeyExchange};
use load_tests::nginx::{self, NginxConf};
use load_tests::procfs;
use load_tests::results::date_string;
use load_tests::rewrite;

use crate::procs::{Proc, free_port};

/// Core the servers run on, and the core of the load generator, upstreams and Redis.
pub(crate) const SERVER_CORE: u32 = 0;
/// See [`SERVER_CORE`].
pub(crate) const CLIENT_CORE: u32 = 1;

/// How long a server may take to become ready.
const READY: Duration = Duration::from_secs(20);
/// The partner the load runs as.
const PARTNER: &str = "demo-bank";
/// A sandbox customer (PRODUCT.md §9).
const CUSTOMER: &str = "C000001";
/// The sample campaign.
const CAMPAIGN: &str = "spring-referral-2027";

/// Everything the run prepared once: binaries, PKI, secrets, the tools found.
pub(crate) struct Env {
    /// `partner-gateway`.
    pub(crate) gateway: PathBuf,
    /// Directory of this crate's binaries.
    pub(crate) bin_dir: PathBuf,
    /// The run's temp directory.
    pub(crate) tmp: PathBuf,
    /// The PKI directory (devpki layout).
    pub(crate) pki: PathBuf,
    /// Bootstrapped dev secrets (`admin.token`, `keys/`).
    pub(crate) secrets: PathBuf,
    /// The sample configuration to copy.
    pub(crate) partner_config: PathBuf,
    /// nginx, or why it is missing.
    pub(crate) nginx: Result<PathBuf, String>,
    /// redis-server, or why it is missing.
    pub(crate) redis: Result<PathBuf, String>,
    /// Whether to pin with taskset.
    pub(crate) pin: bool,
    /// Length of the stand-in bearer token sent to (a)–(e).
    pub(crate) bearer_len: usize,
    /// Whether this process runs as root (nginx then needs `user root;`).
    pub(crate) root: bool,
}

impl Env {
    pub(crate) fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    fn core(&self, core: u32) -> Option<u32> {
        self.pin.then_some(core)
    }

    pub(crate) fn client_pki(&self) -> ClientPki {
        ClientPki {
            ca: self.pki.join("ca.pem"),
            cert: gateway_tls::devpki::partner_cert_path(&self.pki, PARTNER),
            key: gateway_tls::devpki::partner_key_path(&self.pki, PARTNER),
        }
    }

    fn server_cert(&self) -> PathBuf {
        self.pki.join(gateway_tls::devpki::SERVER_CERT_FILE)
    }

    fn server_key(&self) -> PathBuf {
        self.pki.join(gateway_tls::devpki::SERVER_KEY_FILE)
    }

    fn ca(&self) -> PathBuf {
        self.pki.join(gateway_tls::devpki::CA_CERT_FILE)
    }

    fn tls_args(&self) -> Vec<OsString> {
        vec![
            "--cert".into(),
            self.server_cert().into(),
            "--key".into(),
            self.server_key().into(),
            "--ca".into(),
            self.ca().into(),
        ]
    }

    /// An mTLS endpoint as `demo-bank` (resumption on; setup requests only).
    pub(crate) fn endpoint(&self, addr: SocketAddr) -> anyhow::Result<Endpoint> {
        let config = client::client_config(&self.client_pki(), false, true, KeyExchange::X25519)?;
        Ok(Endpoint {
            addr,
            tls: Some((config, ServerName::try_from("localhost")?)),
            h2: false,
        })
    }
}

/// The request a scenario sends, as `loadgen` arguments.
#[derive(Debug, Clone)]
pub(crate) struct RequestSpec {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) headers: Vec<String>,
    pub(crate) body: Option<String>,
}

impl RequestSpec {
    fn get(path: &str, bearer: &str) -> RequestSpec {
        RequestSpec {
            method: Method::GET,
            path: path.to_owned(),
            headers: vec![format!("Authorization: Bearer {bearer}")],
            body: None,
        }
    }

    pub(crate) fn loadgen_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--method".into(),
            self.method.as_str().into(),
            "--path".into(),
            self.path.clone().into(),
        ];
        for header in &self.headers {
            args.push("--header".into());
            args.push(header.into());
        }
        if let Some(body) = &self.body {
            args.push("--body".into());
            args.push(body.into());
        }
        args
    }
}

/// A server arrangement, started and set up.
pub(crate) struct Running {
    /// Guards of every process started for it (stopped on drop, last started first).
    procs: Vec<Proc>,
    /// Where the load goes (several: round robin).
    pub(crate) targets: Vec<SocketAddr>,
    /// Whether it speaks mTLS.
    pub(crate) tls: bool,
    /// Processes whose CPU is the server's.
    pub(crate) server_pids: Vec<u32>,
    /// Processes whose CPU is the upstream's (not counted as server CPU).
    pub(crate) upstream_pids: Vec<u32>,
    /// The request.
    pub(crate) request: RequestSpec,
    /// What the reader should know.
    pub(crate) note: String,
    /// Directories to delete when stopped.
    dirs: Vec<PathBuf>,
}

impl Running {
    /// Stops every process (last started first) and deletes its directories unless `keep`.
    pub(crate) fn stop(mut self, keep: bool) {
        while let Some(mut proc) = self.procs.pop() {
            proc.stop();
        }
        if !keep {
            for dir in &self.dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        while let Some(mut proc) = self.procs.pop() {
            proc.stop();
        }
    }
}

/// The outcome of starting a server arrangement.
pub(crate) enum Started {
    Running(Box<Running>),
    /// Not there yet (an endpoint answers 404/405, a backend is not wired, a tool is
    /// missing): reported as skipped, never as a number.
    Skipped(String),
    /// Something that should work did not.
    Failed(String),
}

/// Starts server `id` for repetition `rep`.
pub(crate) fn start(env: &Env, id: &str, rep: u32) -> Started {
    let dir = env.tmp.join(format!("rep{rep}-{id}"));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Started::Failed(format!("create {}: {e}", dir.display()));
    }
    let result = match id {
        "a" => start_upstream_alone(env, &dir),
        "b" | "c" => start_nginx(env, &dir, id == "c"),
        "d" => start_bare_server(env, &dir),
        "e" => start_bare_proxy(env, &dir),
        "f" | "f2" | "f3" | "f4" => start_gateway(env, &dir, id, &[]),
        other => Err(Outcome::Failed(format!("unknown server {other}"))),
    };
    match result {
        Ok(mut running) => {
            running.dirs.push(dir);
            Started::Running(Box::new(running))
        }
        Err(Outcome::Skipped(why)) => Started::Skipped(why),
        Err(Outcome::Failed(why)) => Started::Failed(why),
    }
}

/// Why a start did not produce a running arrangement.
enum Outcome {
    Skipped(String),
    Failed(String),
}

impl From<anyhow::Error> for Outcome {
    fn from(e: anyhow::Error) -> Self {
        Outcome::Failed(format!("{e:#}"))
    }
}

fn running(procs: Vec<Proc>, targets: Vec<SocketAddr>, tls: bool, request: RequestSpec) -> Running {
    Running {
        procs,
        targets,
        tls,
        server_pids: Vec::new(),
        upstream_pids: Vec::new(),
        request,
        note: String::new(),
        dirs: Vec::new(),
    }
}

fn bearer(env: &Env) -> String {
    load_tests::fixture::dummy_bearer(env.bearer_len)
}

/// (a): the upstream itself, on the server core.
fn start_upstream_alone(env: &Env, dir: &Path) -> Result<Running, Outcome> {
    let mut up = Proc::spawn(
        "upstream",
        &env.bin("upstream"),
        &[],
        env.core(SERVER_CORE),
        &dir.join("upstream.log"),
        &[],
    )?;
    let addr = up.wait_for_addr("listening on ", READY)?;
    let pid = up.pid();
    let mut r = running(
        vec![up],
        vec![addr],
        false,
        RequestSpec::get("/", &bearer(env)),
    );
    r.server_pids = vec![pid];
    r.note = "plain HTTP; no TLS".into();
    Ok(r)
}

/// The upstream for a proxy, on the client core.
fn upstream_for_proxy(env: &Env, dir: &Path) -> Result<(Proc, SocketAddr), Outcome> {
    let mut up = Proc::spawn(
        "upstream",
        &env.bin("upstream"),
        &[],
        env.core(CLIENT_CORE),
        &dir.join("upstream.log"),
        &[],
    )?;
    let addr = up.wait_for_addr("listening on ", READY)?;
    Ok((up, addr))
}

/// (b) and (c): nginx, one worker, in its own directory.
fn start_nginx(env: &Env, dir: &Path, checked: bool) -> Result<Running, Outcome> {
    let program = env.nginx.clone().map_err(Outcome::Skipped)?;
    let (up, upstream) = upstream_for_proxy(env, dir)?;
    let up_pid = up.pid();
    // nginx cannot report a port it picked: take a free one, retry if it is taken meanwhile.
    let mut last_error = String::new();
    for _ in 0..3 {
        let port = free_port()?;
        let conf = NginxConf {
            dir: dir.display().to_string(),
            port,
            upstream: upstream.to_string(),
            cert: env.server_cert().display().to_string(),
            key: env.server_key().display().to_string(),
            client_ca: env.ca().display().to_string(),
            bearer_check: checked,
            access_log: checked.then(|| dir.join("access.log").display().to_string()),
            user: env.root.then(|| "root".to_owned()),
        };
        let file = dir.join("nginx.conf");
        std::fs::write(&file, nginx::render(&conf)).context("write nginx.conf")?;
        let args: Vec<OsString> = vec![
            "-p".into(),
            dir.into(),
            "-c".into(),
            file.into(),
            "-e".into(),
            dir.join("error.log").into(),
            "-g".into(),
            "daemon off;".into(),
        ];
        let mut proc = Proc::spawn(
            "nginx",
            &program,
            &args,
            env.core(SERVER_CORE),
            &dir.join("nginx.out"),
            &[],
        )?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        match proc.wait_for_port(addr, READY) {
            Ok(()) => {
                // The master and its worker (found once the worker is up).
                let mut pids = procfs::process_tree(proc.pid());
                let deadline = std::time::Instant::now() + READY;
                while pids.len() < 2 && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                    pids = procfs::process_tree(proc.pid());
                }
                let mut r = running(
                    vec![up, proc],
                    vec![addr],
                    true,
                    RequestSpec::get("/", &bearer(env)),
                );
                r.server_pids = pids;
                r.upstream_pids = vec![up_pid];
                r.note = if checked {
                    "one worker; bearer prefix check; JSON access log (unbuffered)".into()
                } else {
                    "one worker; access log off".into()
                };
                return Ok(r);
            }
            Err(e) => last_error = format!("{e:#}"),
        }
    }
    Err(Outcome::Failed(format!(
        "nginx did not start: {last_error}"
    )))
}

/// (d): rustls + hyper answering directly.
fn start_bare_server(env: &Env, dir: &Path) -> Result<Running, Outcome> {
    let mut proc = Proc::spawn(
        "bare-server",
        &env.bin("bare-server"),
        &env.tls_args(),
        env.core(SERVER_CORE),
        &dir.join("bare-server.log"),
        &[],
    )?;
    let addr = proc.wait_for_addr("listening on ", READY)?;
    let pid = proc.pid();
    let mut r = running(
        vec![proc],
        vec![addr],
        true,
        RequestSpec::get("/", &bearer(env)),
    );
    r.server_pids = vec![pid];
    r.note = "current-thread runtime; gateway_tls::server_config".into();
    Ok(r)
}

/// (e): rustls + hyper reverse proxy.
fn start_bare_proxy(env: &Env, dir: &Path) -> Result<Running, Outcome> {
    let (up, upstream) = upstream_for_proxy(env, dir)?;
    let up_pid = up.pid();
    let mut args = env.tls_args();
    args.push("--upstream".into());
    args.push(upstream.to_string().into());
    let mut proc = Proc::spawn(
        "bare-proxy",
        &env.bin("bare-proxy"),
        &args,
        env.core(SERVER_CORE),
        &dir.join("bare-proxy.log"),
        &[],
    )?;
    let addr = proc.wait_for_addr("listening on ", READY)?;
    let pid = proc.pid();
    let mut r = running(
        vec![up, proc],
        vec![addr],
        true,
        RequestSpec::get("/", &bearer(env)),
    );
    r.server_pids = vec![pid];
    r.upstream_pids = vec![up_pid];
    r.note = "current-thread runtime; hyper-util pooled client".into();
    Ok(r)
}

// === the gateway ===

/// One gateway instance's directory: its configuration copy and data.
struct Instance {
    config: PathBuf,
    data: PathBuf,
}

/// Copies `partner-config/` into `<dir>/partner-config` with absolute paths, the upstream
/// pointed at the sandbox, rate limits and referral caps raised (the limiter still decides on
/// every request; the load must not be throttled by it), and the secrets into `<dir>/data`.
fn prepare_instance(
    env: &Env,
    dir: &Path,
    sandbox: SocketAddr,
    edit: impl Fn(String) -> Result<String, rewrite::RewriteError>,
) -> anyhow::Result<Instance> {
    let config = dir.join("partner-config");
    let data = dir.join("data");
    copy_dir(&env.partner_config, &config)?;
    copy_dir(&env.secrets.join("keys"), &data.join("keys"))?;
    std::fs::copy(env.secrets.join("admin.token"), data.join("admin.token"))
        .context("copy admin.token")?;
    let gateway_yaml = config.join("gateway.yaml");
    let text = std::fs::read_to_string(&gateway_yaml)?;
    let text = rewrite::absolute_paths(
        &text,
        &env.pki.display().to_string(),
        &data.display().to_string(),
    );
    let text = rewrite::upstream_authority(&text, &sandbox.to_string())?;
    let text = edit(text)?;
    std::fs::write(&gateway_yaml, text)?;
    for entry in std::fs::read_dir(config.join("partners"))? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)?;
        std::fs::write(&path, rewrite::raise_rate_limits(&text, 1_000_000_000))?;
    }
    if let Ok(entries) = std::fs::read_dir(config.join("campaigns")) {
        for entry in entries {
            let path = entry?.path();
            let text = std::fs::read_to_string(&path)?;
            let raised =
                rewrite::set_in_section(&text, "caps", "codes_per_partner_per_day", "4000000000")
                    .unwrap_or(text);
            std::fs::write(&path, raised)?;
        }
    }
    Ok(Instance { config, data })
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("create {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Starts `partner-gateway run` on `instance`, pinned to the server core; under `wrapper`
/// (a profiler command line) when it is not empty.
fn spawn_gateway(
    env: &Env,
    name: &str,
    instance: &Instance,
    log: &Path,
    wrapper: &[OsString],
) -> anyhow::Result<(Proc, SocketAddr, SocketAddr)> {
    let mut args: Vec<OsString> = wrapper.iter().skip(1).cloned().collect();
    if !wrapper.is_empty() {
        args.push(env.gateway.clone().into());
    }
    args.extend::<[OsString; 7]>([
        "run".into(),
        "--config".into(),
        instance.config.clone().into(),
        "--partner-addr".into(),
        "127.0.0.1:0".into(),
        "--admin-addr".into(),
        "127.0.0.1:0".into(),
    ]);
    let program = wrapper.first().map_or(env.gateway.clone(), PathBuf::from);
    // Under a profiler, start-up is tens of times slower.
    let ready = if wrapper.is_empty() { READY } else { READY * 6 };
    let mut proc = Proc::spawn(
        name,
        &program,
        &args,
        env.core(SERVER_CORE),
        log,
        &[("RUST_LOG", "info")],
    )?;
    let partner = proc.wait_for_addr("partner listener on ", ready)?;
    let admin = proc.wait_for_addr("admin listener on ", ready)?;
    Ok((proc, partner, admin))
}

/// Starts the sandbox upstream (`partner-gateway sandbox`) on the client core.
fn spawn_sandbox(env: &Env, dir: &Path) -> anyhow::Result<(Proc, SocketAddr)> {
    let mut proc = Proc::spawn(
        "sandbox",
        &env.gateway,
        &["sandbox".into(), "--addr".into(), "127.0.0.1:0".into()],
        env.core(CLIENT_CORE),
        &dir.join("sandbox.log"),
        &[("RUST_LOG", "info")],
    )?;
    let addr = proc.wait_for_addr("sandbox listening on ", READY)?;
    Ok((proc, addr))
}

/// Starts redis-server on a free port on the client core.
fn spawn_redis(env: &Env, dir: &Path) -> Result<(Proc, u16), Outcome> {
    let program = env.redis.clone().map_err(Outcome::Skipped)?;
    let mut last_error = String::new();
    for _ in 0..3 {
        let port = free_port()?;
        let args: Vec<OsString> = vec![
            "--port".into(),
            port.to_string().into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            "".into(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.into(),
        ];
        let mut proc = Proc::spawn(
            "redis-server",
            &program,
            &args,
            env.core(CLIENT_CORE),
            &dir.join("redis.log"),
            &[],
        )?;
        match proc.wait_for_port(([127, 0, 0, 1], port).into(), READY) {
            Ok(()) => return Ok((proc, port)),
            Err(e) => last_error = format!("{e:#}"),
        }
    }
    Err(Outcome::Failed(format!(
        "redis-server did not start: {last_error}"
    )))
}

/// (f) under a profiler: `wrapper` is its command line, the gateway's follows.
pub(crate) fn start_profiled(env: &Env, wrapper: &[OsString]) -> Result<Running, String> {
    let dir = env.tmp.join("profile");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    match start_gateway(env, &dir, "f", wrapper) {
        Ok(running) => Ok(running),
        Err(Outcome::Skipped(why) | Outcome::Failed(why)) => Err(why),
    }
}

/// (f), (f2), (f3), (f4): the gateway over the sandbox, with the setup of each scenario.
fn start_gateway(
    env: &Env,
    dir: &Path,
    id: &str,
    wrapper: &[OsString],
) -> Result<Running, Outcome> {
    let (sandbox, sandbox_addr) = spawn_sandbox(env, dir)?;
    let mut procs = vec![sandbox];
    let mut upstream_pids = vec![procs[0].pid()];
    let mut instances = Vec::new();
    if id == "f4" {
        let (redis, port) = spawn_redis(env, dir)?;
        upstream_pids.push(redis.pid());
        procs.push(redis);
        for (name, instance_id) in [("gw-a", "gw-lt-a"), ("gw-b", "gw-lt-b")] {
            let store = format!(
                "store:\n  backend: redis\n  urls: [redis://127.0.0.1:{port}/]\n  key_prefix: lt\n"
            );
            let instance = prepare_instance(env, &dir.join(name), sandbox_addr, |text| {
                let text = rewrite::replace_section(&text, "store", &store)?;
                let text = rewrite::set_in_section(&text, "rate_limits", "instances", "2")?;
                rewrite::set_top_level(&text, "instance_id", instance_id)
            })?;
            instances.push((name, instance));
        }
    } else {
        let instance = prepare_instance(env, &dir.join("gw"), sandbox_addr, Ok)?;
        instances.push(("gateway", instance));
    }

    let mut partners = Vec::new();
    let mut admins = Vec::new();
    let mut server_pids = Vec::new();
    for (name, instance) in &instances {
        match spawn_gateway(
            env,
            name,
            instance,
            &dir.join(format!("{name}.log")),
            wrapper,
        ) {
            Ok((proc, partner, admin)) => {
                server_pids.push(proc.pid());
                procs.push(proc);
                partners.push(partner);
                admins.push(admin);
            }
            // A gateway that refuses the Redis store: the backend is not wired yet.
            Err(e) if id == "f4" => {
                return Err(Outcome::Skipped(format!(
                    "gateway with store.backend redis did not start: {}",
                    last_line(&format!("{e:#}"))
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }

    let admin_token = std::fs::read_to_string(instances[0].1.data.join("admin.token"))
        .context("read admin.token")?
        .trim()
        .to_owned();
    let setup = setup_gateway(
        env,
        id,
        &partners,
        admins[0],
        &admin_token,
        &instances[0].1.data,
    )?;
    let mut r = running(procs, partners, true, setup.request);
    r.server_pids = server_pids;
    r.upstream_pids = upstream_pids;
    r.note = setup.note;
    Ok(r)
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .chars()
        .take(300)
        .collect()
}

struct Setup {
    request: RequestSpec,
    note: String,
}

/// Token (when the endpoint exists), consent (when the API exists), then one probe request
/// through every instance; 404/405 at the probe means the route is not there yet.
fn setup_gateway(
    env: &Env,
    id: &str,
    partners: &[SocketAddr],
    admin: SocketAddr,
    admin_token: &str,
    data: &Path,
) -> Result<Setup, Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("setup runtime")?;
    runtime.block_on(async {
        let endpoint = env.endpoint(partners[0])?;
        let mut stages = Vec::new();

        // 1. Token.
        let token = fetch_token(&endpoint).await?;
        match &token {
            Some(_) => stages.push("token ✓".to_owned()),
            None => stages.push("token ✗ (no /oauth2/token)".to_owned()),
        }

        // 2. Consent (tags scenarios only).
        let mut customer_ref = CUSTOMER.to_owned();
        if id == "f" || id == "f4" {
            match grant_consent(admin, admin_token).await? {
                Some(reference) => {
                    customer_ref = reference;
                    stages.push("consent ✓".into());
                }
                None => stages.push(format!(
                    "consent ✗ (no POST /admin/v1/consents: internal id {CUSTOMER})"
                )),
            }
        }

        // 3. The request.
        let auth = token.as_ref().map(|t| format!("Authorization: Bearer {t}"));
        let mut request = match id {
            "f2" => RequestSpec {
                method: Method::GET,
                path: "/v1/products?limit=20".into(),
                headers: Vec::new(),
                body: None,
            },
            "f3" => RequestSpec {
                method: Method::POST,
                path: "/v1/referral-codes".into(),
                headers: vec![
                    "Content-Type: application/json".into(),
                    "Idempotency-Key: lt-{run}-{n}".into(),
                ],
                body: Some(format!(r#"{{"campaign_id":"{CAMPAIGN}"}}"#)),
            },
            _ => RequestSpec {
                method: Method::GET,
                path: format!("/v1/customers/{customer_ref}/tags"),
                headers: Vec::new(),
                body: None,
            },
        };
        request.headers.extend(auth);

        // 4. Probe through every instance.
        let mut probe_answer = None;
        for (i, addr) in partners.iter().enumerate() {
            let endpoint = env.endpoint(*addr)?;
            let answer = probe(&endpoint, &request, i).await?;
            if matches!(
                answer.status,
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ) {
                return Err(Outcome::Skipped(format!(
                    "{} {} answered {} ({})",
                    request.method,
                    request.path,
                    answer.status.as_u16(),
                    excerpt(&answer)
                )));
            }
            if !answer.status.is_success() {
                return Err(Outcome::Failed(format!(
                    "probe {} {} answered {}: {}",
                    request.method,
                    request.path,
                    answer.status.as_u16(),
                    excerpt(&answer)
                )));
            }
            probe_answer.get_or_insert(answer);
        }
        if let Some(answer) = &probe_answer {
            let limited = answer.headers.keys().any(|name| {
                name.as_str().starts_with("ratelimit") || name.as_str().starts_with("x-ratelimit")
            });
            stages.push(
                if limited {
                    "rate limit ✓"
                } else {
                    "rate limit ✗ (no RateLimit headers)"
                }
                .into(),
            );
            if id == "f" || id == "f4" {
                let body = String::from_utf8_lossy(answer.body.as_deref().unwrap_or_default());
                let projected =
                    body.contains("\"withheld\"") || !body.contains("trade_password_hash");
                stages.push(
                    if projected {
                        "projection ✓"
                    } else {
                        "projection ✗ (full upstream document)"
                    }
                    .into(),
                );
            }
        }
        let audited = dir_has_data(&data.join("audit"));
        stages.push(
            if audited {
                "audit ✓"
            } else {
                "audit ✗ (nothing under data/audit)"
            }
            .into(),
        );
        let mut note = stages.join(" · ");
        if id == "f4" {
            note.push_str(" · 2 instances, shared redis-server; CPU summed over both");
        }
        let _ = write!(note, " · sandbox upstream in its own process");
        Ok(Setup { request, note })
    })
}

/// `POST /oauth2/token` (client credentials over the certificate): the token, `None` when
/// the endpoint is not there.
async fn fetch_token(endpoint: &Endpoint) -> Result<Option<String>, Outcome> {
    let body = format!(
        "grant_type=client_credentials&client_id={PARTNER}&scope=tags%3Aread+products%3Aread+referrals%3Awrite"
    );
    let answer = client::one_shot(
        endpoint,
        Method::POST,
        "/oauth2/token",
        &[("content-type", "application/x-www-form-urlencoded".into())],
        Bytes::from(body),
        Duration::from_secs(10),
    )
    .await
    .map_err(|e| Outcome::Failed(format!("token request: {e}")))?;
    match answer.status {
        StatusCode::OK => {
            let doc: serde_json::Value =
                serde_json::from_slice(answer.body.as_deref().unwrap_or_default())
                    .map_err(|e| Outcome::Failed(format!("token response: {e}")))?;
            let token = doc["access_token"]
                .as_str()
                .ok_or_else(|| Outcome::Failed("token response has no access_token".into()))?;
            Ok(Some(token.to_owned()))
        }
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Ok(None),
        other => Err(Outcome::Failed(format!(
            "token request answered {}: {}",
            other.as_u16(),
            excerpt(&answer)
        ))),
    }
}

/// `POST /admin/v1/consents` for the sample customer: the `customer_ref`, `None` when the
/// API is not there.
async fn grant_consent(admin: SocketAddr, admin_token: &str) -> Result<Option<String>, Outcome> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let expires = date_string(now + 365 * 86_400);
    let body = format!(
        r#"{{"customer_id":"{CUSTOMER}","partner_id":"{PARTNER}","purpose":"wealth_advice","fields":{{"name":"plain","risk_level":"plain","investment_preference":"plain","lifecycle_stage":"plain","mobile":"masked","asset_tier":"masked","net_assets":"masked","annual_income":"masked","holdings":"masked","home_address":"plain"}},"expires_at":"{expires}T00:00:00Z","second_authorisation":false}}"#
    );
    let endpoint = Endpoint {
        addr: admin,
        tls: None,
        h2: false,
    };
    let answer = client::one_shot(
        &endpoint,
        Method::POST,
        "/admin/v1/consents",
        &[
            ("authorization", format!("Bearer {admin_token}")),
            ("content-type", "application/json".into()),
        ],
        Bytes::from(body),
        Duration::from_secs(10),
    )
    .await
    .map_err(|e| Outcome::Failed(format!("consent request: {e}")))?;
    match answer.status {
        s if s.is_success() => {
            let doc: serde_json::Value =
                serde_json::from_slice(answer.body.as_deref().unwrap_or_default())
                    .map_err(|e| Outcome::Failed(format!("consent response: {e}")))?;
            let reference = doc["customer_ref"]
                .as_str()
                .ok_or_else(|| Outcome::Failed("consent response has no customer_ref".into()))?;
            Ok(Some(reference.to_owned()))
        }
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => Ok(None),
        other => Err(Outcome::Failed(format!(
            "consent request answered {}: {}",
            other.as_u16(),
            excerpt(&answer)
        ))),
    }
}

/// One request as the load will send it (`{n}`/`{run}` expanded with probe values).
async fn probe(endpoint: &Endpoint, request: &RequestSpec, i: usize) -> Result<Answer, Outcome> {
    let pid = std::process::id();
    let expand =
        |s: &str| load_tests::template::Template::parse(s).expand(&format!("probe{pid}"), i as u64);
    let mut headers = Vec::new();
    for line in &request.headers {
        let (name, value) =
            client::parse_header(&expand(line)).map_err(|e| Outcome::Failed(e.to_string()))?;
        headers.push((name.as_str().to_owned(), value));
    }
    let headers: Vec<(&str, String)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.clone()))
        .collect();
    let body = request.body.as_deref().map(expand).unwrap_or_default();
    client::one_shot(
        endpoint,
        request.method.clone(),
        &request.path,
        &headers,
        Bytes::from(body),
        Duration::from_secs(10),
    )
    .await
    .map_err(|e| Outcome::Failed(format!("probe {} {}: {e}", request.method, request.path)))
}

fn excerpt(answer: &Answer) -> String {
    let body = String::from_utf8_lossy(answer.body.as_deref().unwrap_or_default());
    let doc: Option<serde_json::Value> = serde_json::from_str(&body).ok();
    match doc
        .as_ref()
        .and_then(|d| d["detail"].as_str().or(d["title"].as_str()))
    {
        Some(detail) => detail.to_owned(),
        None => body.chars().take(160).collect(),
    }
}

fn dir_has_data(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let path = e.path();
        if path.is_dir() {
            dir_has_data(&path)
        } else {
            e.metadata().is_ok_and(|m| m.len() > 0)
        }
    })
}

/// Runs `partner-gateway dev` once on a copy of the configuration so the gateway itself
/// generates the dev secrets (admin token, signing keys) in `env.secrets`, and measures the
/// length of a real access token; stops it.
pub(crate) fn bootstrap_secrets(env: &Env) -> anyhow::Result<Option<usize>> {
    let dir = env.tmp.join("bootstrap");
    let config = dir.join("partner-config");
    copy_dir(&env.partner_config, &config)?;
    let gateway_yaml = config.join("gateway.yaml");
    let text = std::fs::read_to_string(&gateway_yaml)?;
    std::fs::write(
        &gateway_yaml,
        rewrite::absolute_paths(
            &text,
            &env.pki.display().to_string(),
            &env.secrets.display().to_string(),
        ),
    )?;
    let args: Vec<OsString> = vec![
        "dev".into(),
        "--config".into(),
        config.into(),
        "--certs".into(),
        env.pki.clone().into(),
        "--data".into(),
        env.secrets.clone().into(),
        "--partner-addr".into(),
        "127.0.0.1:0".into(),
        "--admin-addr".into(),
        "127.0.0.1:0".into(),
        "--sandbox-addr".into(),
        "127.0.0.1:0".into(),
    ];
    let mut proc = Proc::spawn(
        "gateway (dev bootstrap)",
        &env.gateway,
        &args,
        None,
        &dir.join("dev.log"),
        &[("RUST_LOG", "info")],
    )?;
    let partner = proc.wait_for_addr("partner listener on ", READY)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let endpoint = env.endpoint(partner)?;
    let token = runtime.block_on(fetch_token(&endpoint));
    proc.stop();
    if !env.secrets.join("admin.token").exists() {
        bail!(
            "partner-gateway dev did not create admin.token in {}",
            env.secrets.display()
        );
    }
    Ok(match token {
        Ok(Some(token)) => Some(token.len()),
        _ => None,
    })
}
