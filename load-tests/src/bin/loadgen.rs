//! The load generator: mTLS (or plain) HTTP/1.1 keep-alive at concurrency N over N
//! connections (HTTP/2 optionally), a new connection per request (full TLS handshake, no
//! resumption), or a fixed rate (open loop; latency from each request's scheduled send
//! time, so a stalled server cannot hide its queue — no coordinated omission).
//!
//! One thread drives the connections (current-thread runtime); in rate mode a second thread
//! only paces. After `--warmup` seconds the timed window starts: the CPU time of the
//! `--server-pid`/`--upstream-pid` processes is read from `/proc/<pid>/stat` at both ends of
//! the window and their peak RSS reset at its start, so server CPU per request covers
//! exactly the requests counted. The JSON report (`load_tests::report::LoadReport`) goes to
//! stdout or `--out`; a one-line summary to stderr.
//!
//! ```text
//! loadgen --target 127.0.0.1:8443 --ca ca.pem --cert demo-bank.pem --key demo-bank-key.pem \
//!   --path /v1/products --header 'Authorization: Bearer …' --mode keepalive --connections 32
//! ```

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rustls::pki_types::ServerName;
use tokio::sync::{Mutex, mpsc};
use tokio::task::LocalSet;

use load_tests::client::{self, Answer, ClientError, ClientPki, Connection, Endpoint, KeyExchange};
use load_tests::hist::Histogram;
use load_tests::procfs;
use load_tests::report::{Latency, LoadReport, ProcUsage};
use load_tests::template::Template;

/// How load is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Closed loop: each connection sends its next request when the last one answered.
    Keepalive,
    /// A new connection (full TLS handshake, no resumption) per request.
    Handshake,
    /// Open loop at `--rate` requests per second.
    Rate,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Keepalive => "keepalive",
            Mode::Handshake => "handshake",
            Mode::Rate => "rate",
        }
    }
}

/// HTTP load generator for the partner gateway's load tests.
#[derive(Debug, Parser)]
struct Args {
    /// Server address; repeat to spread connections over several servers (round robin).
    #[arg(long = "target", required = true)]
    targets: Vec<SocketAddr>,
    /// Plain HTTP instead of mTLS.
    #[arg(long)]
    plain: bool,
    /// CA bundle that signs the server certificate (PEM).
    #[arg(long, required_unless_present = "plain")]
    ca: Option<PathBuf>,
    /// Client certificate (PEM).
    #[arg(long, required_unless_present = "plain")]
    cert: Option<PathBuf>,
    /// Client key (PEM).
    #[arg(long, required_unless_present = "plain")]
    key: Option<PathBuf>,
    /// Name to verify the server certificate against (and the Host header's host).
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Key exchange groups offered.
    #[arg(long, value_enum, default_value = "x25519")]
    kx: KeyExchange,
    /// Speak HTTP/2 (ALPN h2).
    #[arg(long)]
    h2: bool,
    /// HTTP/2: concurrent streams per connection.
    #[arg(long, default_value_t = 1)]
    streams: u32,
    /// Request method.
    #[arg(long, default_value = "GET")]
    method: Method,
    /// Request path and query.
    #[arg(long, default_value = "/")]
    path: String,
    /// `Name: value` header; `{n}` and `{run}` expand per request. Repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Request body; `{n}` and `{run}` expand per request.
    #[arg(long)]
    body: Option<String>,
    /// How load is applied.
    #[arg(long, value_enum, default_value = "keepalive")]
    mode: Mode,
    /// Connections (keep-alive, rate) or concurrent connection loops (handshake).
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Rate mode: requests per second.
    #[arg(long, default_value_t = 20_000)]
    rate: u32,
    /// Seconds of warm-up before the timed window (not counted).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds of the timed window.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Stop after this many requests in all (warm-up included): a bound.
    #[arg(long, default_value_t = 10_000_000)]
    max_requests: u64,
    /// Count a response as a success only with this status (default: any 2xx).
    #[arg(long)]
    expect_status: Option<u16>,
    /// Per-request timeout, seconds (connect and handshake included).
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Largest response body accepted, bytes.
    #[arg(long, default_value_t = 4 << 20)]
    max_body: usize,
    /// A server process whose CPU time and peak RSS are measured. Repeatable.
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// An upstream process whose CPU time is measured. Repeatable.
    #[arg(long = "upstream-pid")]
    upstream_pids: Vec<u32>,
    /// Write the JSON report here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .ok();
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(args.duration > 0.0, "--duration must be positive");
    anyhow::ensure!(
        args.mode != Mode::Rate || args.rate > 0,
        "--rate must be positive"
    );
    let endpoints = endpoints(&args)?;
    let plan = RequestPlan::new(&args)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = LocalSet::new().block_on(&runtime, drive(args_view(&args), endpoints, plan))?;
    let json = serde_json::to_string_pretty(&report)?;
    match &args.out {
        Some(path) => {
            std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?
        }
        None => println!("{json}"),
    }
    eprintln!(
        "{} c{}: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, {} errors, {} non-2xx, server {:.1} µs CPU/req",
        report.mode,
        report.connections,
        report.rps,
        report.latency_us.p50,
        report.latency_us.p99,
        report.errors,
        report.non_2xx,
        report.server_cpu_us_per_req()
    );
    Ok(())
}

/// The settings the driver needs (copied out of `Args`).
#[derive(Debug, Clone)]
struct Settings {
    mode: Mode,
    connections: u32,
    streams: u32,
    rate: u32,
    warmup: Duration,
    duration: Duration,
    max_requests: u64,
    expect_status: Option<u16>,
    timeout: Duration,
    max_body: usize,
    server_pids: Vec<u32>,
    upstream_pids: Vec<u32>,
}

fn args_view(args: &Args) -> Settings {
    Settings {
        mode: args.mode,
        connections: args.connections,
        streams: args.streams.max(1),
        rate: args.rate,
        warmup: Duration::from_secs_f64(args.warmup.max(0.0)),
        duration: Duration::from_secs_f64(args.duration),
        max_requests: args.max_requests,
        expect_status: args.expect_status,
        timeout: Duration::from_secs_f64(args.timeout.max(0.001)),
        max_body: args.max_body,
        server_pids: args.server_pids.clone(),
        upstream_pids: args.upstream_pids.clone(),
    }
}

fn endpoints(args: &Args) -> anyhow::Result<Vec<Endpoint>> {
    let tls = if args.plain {
        None
    } else {
        let pki = ClientPki {
            ca: args.ca.clone().context("--ca")?,
            cert: args.cert.clone().context("--cert")?,
            key: args.key.clone().context("--key")?,
        };
        // Handshake mode measures full handshakes: no session resumption.
        let resumption = args.mode != Mode::Handshake;
        let config = client::client_config(&pki, args.h2, resumption, args.kx)?;
        let name = ServerName::try_from(args.server_name.clone())
            .with_context(|| format!("server name {:?}", args.server_name))?;
        Some((config, name))
    };
    Ok(args
        .targets
        .iter()
        .map(|addr| Endpoint {
            addr: *addr,
            tls: tls.clone(),
            h2: args.h2,
        })
        .collect())
}

// === requests ===

/// Method, path, headers and body; the parts with `{n}`/`{run}` are expanded per request.
struct RequestPlan {
    method: Method,
    path: String,
    fixed: HeaderMap,
    templated: Vec<(HeaderName, Template)>,
    body: Option<Template>,
    fixed_body: Bytes,
    run: String,
}

impl RequestPlan {
    fn new(args: &Args) -> anyhow::Result<RequestPlan> {
        let mut fixed = HeaderMap::new();
        let mut templated = Vec::new();
        for line in &args.headers {
            let (name, value) = client::parse_header(line)?;
            let template = Template::parse(&value);
            if template.is_static() {
                fixed.append(name, HeaderValue::from_str(&value)?);
            } else {
                templated.push((name, template));
            }
        }
        if args.mode == Mode::Handshake && !args.h2 {
            fixed.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        let body = args.body.as_deref().map(Template::parse);
        let fixed_body = match &body {
            Some(t) if t.is_static() => Bytes::from(t.expand("", 0)),
            _ => Bytes::new(),
        };
        let run = format!(
            "{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64)
        );
        Ok(RequestPlan {
            method: args.method.clone(),
            path: args.path.clone(),
            fixed,
            templated,
            body: body.filter(|t| !t.is_static()),
            fixed_body,
            run,
        })
    }

    fn build(
        &self,
        endpoint: &Endpoint,
        n: u64,
    ) -> Result<http::Request<http_body_util::Full<Bytes>>, ClientError> {
        let body = match &self.body {
            Some(t) => Bytes::from(t.expand(&self.run, n)),
            None => self.fixed_body.clone(),
        };
        let mut req = client::request(endpoint, &self.method, &self.path, &self.fixed, body)?;
        for (name, template) in &self.templated {
            let value = HeaderValue::from_str(&template.expand(&self.run, n))
                .map_err(|e| ClientError::Build(e.to_string()))?;
            req.headers_mut().insert(name.clone(), value);
        }
        Ok(req)
    }
}

// === shared state of the driver ===

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Warmup,
    Timed,
    Done,
}

/// Counters shared by the connection tasks (one thread: `Cell`/`RefCell`).
struct Shared {
    settings: Settings,
    plan: RequestPlan,
    phase: Cell<Phase>,
    seq: Cell<u64>,
    hist: RefCell<Histogram>,
    requests: Cell<u64>,
    ok: Cell<u64>,
    non_2xx: Cell<u64>,
    errors: Cell<u64>,
    body_bytes: Cell<u64>,
    statuses: RefCell<BTreeMap<u16, u64>>,
    error_samples: RefCell<Vec<String>>,
}

impl Shared {
    /// The next request number, or `None` once stopped or at `--max-requests`.
    fn next(&self) -> Option<u64> {
        let n = self.seq.get();
        if self.phase.get() == Phase::Done || n >= self.settings.max_requests {
            return None;
        }
        self.seq.set(n + 1);
        Some(n)
    }

    fn done(&self) -> bool {
        self.phase.get() == Phase::Done
    }

    fn exhausted(&self) -> bool {
        self.seq.get() >= self.settings.max_requests
    }

    fn answered(&self, counted: bool, latency: Duration, answer: &Answer) {
        if !counted {
            return;
        }
        let status = answer.status.as_u16();
        self.requests.set(self.requests.get() + 1);
        self.body_bytes
            .set(self.body_bytes.get() + answer.body_len as u64);
        *self.statuses.borrow_mut().entry(status).or_default() += 1;
        let good = match self.settings.expect_status {
            Some(expected) => status == expected,
            None => answer.status.is_success(),
        };
        if good {
            self.ok.set(self.ok.get() + 1);
        } else {
            self.non_2xx.set(self.non_2xx.get() + 1);
        }
        self.hist
            .borrow_mut()
            .record(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    fn failed(&self, counted: bool, error: &str) {
        if !counted {
            return;
        }
        self.errors.set(self.errors.get() + 1);
        let mut samples = self.error_samples.borrow_mut();
        if samples.len() < 5 && !samples.iter().any(|s| s == error) {
            samples.push(error.to_owned());
        }
    }
}

// === the driver ===

async fn drive(
    settings: Settings,
    endpoints: Vec<Endpoint>,
    plan: RequestPlan,
) -> anyhow::Result<LoadReport> {
    let shared = Rc::new(Shared {
        settings: settings.clone(),
        plan,
        phase: Cell::new(Phase::Warmup),
        seq: Cell::new(0),
        hist: RefCell::new(Histogram::new()),
        requests: Cell::new(0),
        ok: Cell::new(0),
        non_2xx: Cell::new(0),
        errors: Cell::new(0),
        body_bytes: Cell::new(0),
        statuses: RefCell::new(BTreeMap::new()),
        error_samples: RefCell::new(Vec::new()),
    });
    let start = Instant::now() + Duration::from_millis(20);
    let window_start = start + settings.warmup;
    let window_end = window_start + settings.duration;

    // Rate mode: a pacing thread hands out scheduled send times.
    let pacer_stop = Arc::new(AtomicBool::new(false));
    let mut pacer = None;
    let tickets = if settings.mode == Mode::Rate {
        let (tx, rx) = mpsc::unbounded_channel::<Instant>();
        let stop = pacer_stop.clone();
        let interval = Duration::from_secs_f64(1.0 / f64::from(settings.rate));
        let max = settings.max_requests;
        pacer = Some(
            std::thread::Builder::new()
                .name("pacer".into())
                .spawn(move || pace(tx, start, window_start, window_end, interval, max, &stop))?,
        );
        Some(Rc::new(Mutex::new(rx)))
    } else {
        None
    };

    let mut workers = Vec::new();
    for i in 0..settings.connections {
        let endpoint = endpoints[i as usize % endpoints.len()].clone();
        let shared = shared.clone();
        let worker = match settings.mode {
            Mode::Keepalive => tokio::task::spawn_local(keepalive(shared, endpoint)),
            Mode::Handshake => tokio::task::spawn_local(handshakes(shared, endpoint)),
            Mode::Rate => {
                let tickets = tickets.clone().context("rate mode has tickets")?;
                tokio::task::spawn_local(paced(shared, endpoint, tickets, window_start, window_end))
            }
        };
        workers.push(worker);
    }

    // The window: read CPU at both ends, reset the peak RSS at its start.
    tokio::time::sleep_until(window_start.into()).await;
    let mut all_pids = settings.server_pids.clone();
    all_pids.extend(&settings.upstream_pids);
    let server_reset = settings
        .server_pids
        .iter()
        .all(|&pid| procfs::reset_peak_rss(pid));
    let before = Sample::take(&settings);
    shared.phase.set(Phase::Timed);
    let timed_from = Instant::now();
    // The window ends at its time, or earlier once `--max-requests` were all answered.
    while Instant::now() < window_end && !workers.iter().all(|w| w.is_finished()) {
        let next = (Instant::now() + Duration::from_millis(10)).min(window_end);
        tokio::time::sleep_until(next.into()).await;
    }
    let after = Sample::take(&settings);
    let timed = timed_from.elapsed();
    let late = match pacer {
        Some(pacer) => {
            // Let the requests scheduled inside the window finish (bounded), then count the
            // rest as late. The pacer stops by itself at the window's end.
            let drain = Instant::now() + Duration::from_secs(2);
            while !pacer.is_finished() && Instant::now() < drain {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            pacer_stop.store(true, Ordering::Release);
            let scheduled = pacer.join().unwrap_or(0);
            loop {
                let finished = shared.requests.get() + shared.errors.get();
                if finished >= scheduled || Instant::now() >= drain {
                    break scheduled.saturating_sub(finished);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        None => 0,
    };
    shared.phase.set(Phase::Done);
    pacer_stop.store(true, Ordering::Release);
    for worker in &workers {
        worker.abort();
    }

    let hz = procfs::clock_ticks_per_sec() as f64;
    let duration_s = match settings.mode {
        // Rate mode counts by schedule: the window is the scheduled one.
        Mode::Rate => settings.duration.as_secs_f64(),
        _ => timed.as_secs_f64(),
    }
    .max(1e-9);
    let requests = shared.requests.get();
    let peak = |pids: &[u32]| {
        pids.iter()
            .filter_map(|&p| procfs::peak_rss_kib(p).ok())
            .sum()
    };
    Ok(LoadReport {
        mode: settings.mode.name().into(),
        connections: settings.connections,
        target_rate: if settings.mode == Mode::Rate {
            settings.rate
        } else {
            0
        },
        duration_s,
        requests,
        ok: shared.ok.get(),
        non_2xx: shared.non_2xx.get(),
        errors: shared.errors.get(),
        late,
        statuses: shared.statuses.borrow().clone(),
        error_samples: shared.error_samples.borrow().clone(),
        rps: requests as f64 / duration_s,
        latency_us: Latency::from_histogram(&shared.hist.borrow()),
        resp_bytes_mean: if requests == 0 {
            0.0
        } else {
            shared.body_bytes.get() as f64 / requests as f64
        },
        server: ProcUsage {
            pids: settings.server_pids.clone(),
            cpu_s: after.server.saturating_sub(before.server) as f64 / hz,
            sys_s: after.server_sys.saturating_sub(before.server_sys) as f64 / hz,
            peak_rss_kib: peak(&settings.server_pids),
            peak_reset: server_reset && !settings.server_pids.is_empty(),
        },
        upstream: ProcUsage {
            pids: settings.upstream_pids.clone(),
            cpu_s: after.upstream.saturating_sub(before.upstream) as f64 / hz,
            sys_s: 0.0,
            peak_rss_kib: peak(&settings.upstream_pids),
            peak_reset: false,
        },
        loadgen_cpu_s: after.own.saturating_sub(before.own) as f64 / hz,
        machine_busy_s: after.machine.saturating_sub(before.machine) as f64 / hz,
    })
}

/// CPU ticks of the watched processes, of this one and of the whole machine.
struct Sample {
    server: u64,
    server_sys: u64,
    upstream: u64,
    own: u64,
    machine: u64,
}

impl Sample {
    fn take(settings: &Settings) -> Sample {
        let (server, server_sys) = procfs::cpu_split(&settings.server_pids);
        Sample {
            server,
            server_sys,
            upstream: procfs::cpu_ticks(&settings.upstream_pids),
            own: procfs::cpu_ticks(&[std::process::id()]),
            machine: procfs::machine_busy_ticks(),
        }
    }
}

/// Sends the scheduled send time of every request from `start` until `end`, sleeping until
/// each is due (several at once when late). Returns how many were scheduled inside
/// `[window_start, end)`.
fn pace(
    tx: mpsc::UnboundedSender<Instant>,
    start: Instant,
    window_start: Instant,
    end: Instant,
    interval: Duration,
    max: u64,
    stop: &AtomicBool,
) -> u64 {
    let mut n: u64 = 0;
    let mut in_window = 0;
    while n < max && !stop.load(Ordering::Acquire) {
        let due = start + interval.mul_f64(n as f64);
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if tx.send(due).is_err() {
            break;
        }
        if due >= window_start {
            in_window += 1;
        }
        n += 1;
    }
    in_window
}

/// Connects (with the per-request timeout), counting a failure as an error.
async fn open(shared: &Shared, endpoint: &Endpoint) -> Option<Connection> {
    match tokio::time::timeout(shared.settings.timeout, client::connect(endpoint)).await {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(e)) => {
            shared.failed(shared.phase.get() == Phase::Timed, &e.to_string());
            None
        }
        Err(_) => {
            shared.failed(shared.phase.get() == Phase::Timed, "connect timed out");
            None
        }
    }
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A response arrived (whatever its status).
    Answered,
    /// The request failed; it was counted as an error. Replace the connection.
    Failed,
    /// The connection had closed before the request left; nothing was sent. Reconnect.
    Closed,
}

/// Sends request `n` on `conn` and records it (counted when `counted(at completion)`).
async fn exchange(
    shared: &Shared,
    endpoint: &Endpoint,
    conn: &mut Connection,
    n: u64,
    started: Instant,
    counted: impl Fn(&Shared) -> bool,
) -> Outcome {
    let req = match shared.plan.build(endpoint, n) {
        Ok(req) => req,
        Err(e) => {
            shared.failed(counted(shared), &e.to_string());
            return Outcome::Failed;
        }
    };
    let sent = tokio::time::timeout(
        shared.settings.timeout,
        conn.send(req, false, shared.settings.max_body),
    )
    .await;
    match sent {
        Ok(Ok(answer)) => {
            shared.answered(counted(shared), started.elapsed(), &answer);
            Outcome::Answered
        }
        // Closed before the request left: the server ended the connection; reconnect.
        Ok(Err(ClientError::Closed(_))) => Outcome::Closed,
        Ok(Err(e)) => {
            shared.failed(counted(shared), &e.to_string());
            Outcome::Failed
        }
        Err(_) => {
            shared.failed(counted(shared), "request timed out");
            Outcome::Failed
        }
    }
}

/// Keep-alive: one connection (or `streams` HTTP/2 streams on it), requests back to back.
async fn keepalive(shared: Rc<Shared>, endpoint: Endpoint) {
    while !shared.done() && !shared.exhausted() {
        let Some(conn) = open(&shared, &endpoint).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let mut streams = Vec::new();
        for _ in 1..shared.settings.streams {
            if let Some(stream) = conn.clone_h2() {
                streams.push(tokio::task::spawn_local(stream_loop(
                    shared.clone(),
                    endpoint.clone(),
                    stream,
                )));
            }
        }
        stream_loop(shared.clone(), endpoint.clone(), conn).await;
        for stream in streams {
            stream.abort();
        }
    }
}

async fn stream_loop(shared: Rc<Shared>, endpoint: Endpoint, mut conn: Connection) {
    while let Some(n) = shared.next() {
        let started = Instant::now();
        let in_window = |s: &Shared| s.phase.get() == Phase::Timed;
        if exchange(&shared, &endpoint, &mut conn, n, started, in_window).await != Outcome::Answered
        {
            return;
        }
    }
}

/// New connection per request: TCP + full TLS handshake + one request with
/// `Connection: close`, timed together.
async fn handshakes(shared: Rc<Shared>, endpoint: Endpoint) {
    while let Some(n) = shared.next() {
        let started = Instant::now();
        let Some(mut conn) = open(&shared, &endpoint).await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let in_window = |s: &Shared| s.phase.get() == Phase::Timed;
        let _ = exchange(&shared, &endpoint, &mut conn, n, started, in_window).await;
    }
}

/// Fixed rate: take the next scheduled time, send, measure from the schedule.
async fn paced(
    shared: Rc<Shared>,
    endpoint: Endpoint,
    tickets: Rc<Mutex<mpsc::UnboundedReceiver<Instant>>>,
    window_start: Instant,
    window_end: Instant,
) {
    let mut conn: Option<Connection> = None;
    loop {
        let due = {
            let mut rx = tickets.lock().await;
            rx.recv().await
        };
        let Some(due) = due else { return };
        let counted = due >= window_start && due < window_end;
        let n = shared.seq.get();
        shared.seq.set(n + 1);
        // A connection closed by the server before the request left is replaced, a few
        // times at most; a failed connect or request is counted once and the ticket spent.
        for _ in 0..3 {
            if conn.is_none() {
                conn = open_counted(&shared, &endpoint, counted).await;
            }
            let Some(c) = conn.as_mut() else { break };
            match exchange(&shared, &endpoint, c, n, due, |_| counted).await {
                Outcome::Answered => break,
                Outcome::Failed => {
                    conn = None;
                    break;
                }
                Outcome::Closed => conn = None,
            }
        }
    }
}

/// Connects for a paced request, counting a failure when the request is in the window.
async fn open_counted(shared: &Shared, endpoint: &Endpoint, counted: bool) -> Option<Connection> {
    match tokio::time::timeout(shared.settings.timeout, client::connect(endpoint)).await {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(e)) => {
            shared.failed(counted, &e.to_string());
            None
        }
        Err(_) => {
            shared.failed(counted, "connect timed out");
            None
        }
    }
}
