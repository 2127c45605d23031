//! `run`: the one command of the load tests. Builds release binaries, prepares a temp
//! directory (dev PKI, secrets, configuration copies), then for each repetition starts each
//! server in turn pinned to core 0 (`taskset -c 0`), drives every scenario from core 1 with
//! `loadgen`, stops the server, and finally writes `load-tests/results/<date>.{csv,md,svg}`,
//! updates the results block of `load-tests/README.md` and prints the headline ratios.
//!
//! ```text
//! cargo run --release -p load-tests --bin run -- --quick     # < 3 minutes
//! cargo run --release -p load-tests --bin run                # full, < 20 minutes
//! cargo run --release -p load-tests --bin run -- --profile   # callgrind (or perf) profile of (f)
//! ```
//!
//! Every process it starts is stopped by pid when done, on error and on Ctrl-C.

mod procs;
mod profile;
mod servers;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Parser;

use load_tests::procfs;
use load_tests::report::LoadReport;
use load_tests::results::{self, Row, Status};
use load_tests::scenario::{self, Load, Plan, Scenario};

use crate::procs::{Proc, check_interrupted, find_program, output};
use crate::servers::{CLIENT_CORE, Env, Running, Started};

/// Compare the gateway with nginx and bare rustls+hyper, in one run, as ratios.
#[derive(Debug, Parser)]
struct Args {
    /// Quick mode: one repetition of c32 and handshakes with short windows (< 3 minutes).
    #[arg(long)]
    quick: bool,
    /// Only these servers (comma-separated ids: a,b,c,d,e,f,f2,f3,f4).
    #[arg(long, value_delimiter = ',')]
    servers: Option<Vec<String>>,
    /// Only these scenarios (comma-separated ids: c32,c256,handshake,rate20k).
    #[arg(long, value_delimiter = ',')]
    scenarios: Option<Vec<String>>,
    /// Repetitions (default: 1 quick, 3 full).
    #[arg(long)]
    reps: Option<u32>,
    /// Seconds of the timed window (default: 3 quick, 6 full).
    #[arg(long)]
    window: Option<f64>,
    /// Seconds of warm-up before each window (default: 1 quick, 1.5 full).
    #[arg(long)]
    warmup: Option<f64>,
    /// Do not run `cargo build --release` first.
    #[arg(long)]
    no_build: bool,
    /// Do not install nginx with apt-get when it is missing ((b) and (c) are then skipped).
    #[arg(long)]
    no_install: bool,
    /// Keep the temp directory (configs, logs) for inspection.
    #[arg(long)]
    keep_tmp: bool,
    /// Where results go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out: PathBuf,
    /// The workspace root (for `partner-config/` and building).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/.."))]
    workspace: PathBuf,
    /// Do not rewrite the results block of load-tests/README.md.
    #[arg(long)]
    no_readme: bool,
    /// Before starting, wait up to this many seconds for the machine to be idle (each window
    /// also waits up to 5 s, within a budget of 20 s quick / 120 s full).
    #[arg(long, default_value_t = 60)]
    settle: u64,
    /// Profile the gateway's full path instead of comparing (perf if it counts
    /// instructions here, else valgrind --tool=callgrind).
    #[arg(long)]
    profile: bool,
    /// Requests measured by the profile.
    #[arg(long, default_value_t = 2_000)]
    profile_requests: u64,
    /// Profile new connections (a full handshake per request) instead of keep-alive.
    #[arg(long)]
    profile_handshakes: bool,
}

fn main() -> std::process::ExitCode {
    procs::watch_signals();
    match run(Args::parse()) {
        Ok(valid) => {
            if valid {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("run: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<bool> {
    let started = Instant::now();
    let workspace = args
        .workspace
        .canonicalize()
        .context("workspace directory")?;
    let mut plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    let restricted = args.servers.is_some() || args.scenarios.is_some();
    plan = plan
        .restrict(args.servers.as_deref(), args.scenarios.as_deref())
        .map_err(anyhow::Error::msg)?;
    if let Some(reps) = args.reps {
        plan.reps = reps.max(1);
    }
    if let Some(window) = args.window {
        plan.window = Duration::from_secs_f64(window);
    }
    if let Some(warmup) = args.warmup {
        plan.warmup = Duration::from_secs_f64(warmup);
    }

    if !args.no_build {
        build(&workspace)?;
    }
    check_interrupted()?;
    let exe = std::env::current_exe().context("locate this binary")?;
    let bin_dir = exe.parent().context("binary directory")?.to_owned();
    let gateway = bin_dir.join("partner-gateway");
    for name in [
        "partner-gateway",
        "upstream",
        "bare-server",
        "bare-proxy",
        "loadgen",
    ] {
        if !bin_dir.join(name).is_file() {
            bail!(
                "{} is missing: build with `cargo build --release -p gateway -p load-tests`",
                bin_dir.join(name).display()
            );
        }
    }

    let machine = Machine::read();
    let pin = machine.cpus >= 2 && find_program("taskset").is_some();
    if !pin {
        eprintln!("run: taskset or a second core is missing: processes are NOT pinned");
    }
    let nginx = if plan.servers.iter().any(|s| s.id == "b" || s.id == "c") && !args.profile {
        ensure_nginx(args.no_install)
    } else {
        Err("not needed".into())
    };
    let redis = find_program("redis-server").ok_or_else(|| "redis-server not installed".to_owned());

    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let tmp = std::env::temp_dir().join(format!("pgw-load-{}-{stamp}", std::process::id()));
    let tmp_guard = TempDir {
        path: tmp.clone(),
        keep: args.keep_tmp,
    };
    let pki = tmp.join("certs");
    let secrets = tmp.join("secrets");
    std::fs::create_dir_all(&secrets)?;
    gateway_tls::install_crypto_provider();
    gateway_tls::devpki::generate(&pki, gateway_tls::devpki::SAMPLE_PARTNERS)
        .context("generate the PKI")?;
    let mut env = Env {
        gateway,
        bin_dir,
        tmp: tmp.clone(),
        pki,
        secrets,
        partner_config: workspace.join("partner-config"),
        nginx,
        redis,
        pin,
        bearer_len: 690,
        root: procfs::current_uid() == Some(0),
    };
    if let Some(len) = servers::bootstrap_secrets(&env).context("bootstrap dev secrets")? {
        env.bearer_len = len;
    }

    if args.profile {
        let result = profile::run(
            &env,
            &args.out,
            args.profile_requests,
            args.profile_handshakes,
        );
        drop(tmp_guard);
        return result.map(|()| true);
    }

    wait_quiet(Duration::from_secs(args.settle), true);
    QUIET_BUDGET_MS.store(if args.quick { 20_000 } else { 120_000 }, Ordering::Relaxed);
    let load_before = machine_load();
    println!(
        "run: {} servers × {} scenarios × {} repetitions = {} load runs, ~{:.0} s of load; temp {}",
        plan.servers.len(),
        plan.scenarios.len(),
        plan.reps,
        plan.load_runs(),
        plan.estimate().as_secs_f64(),
        tmp.display()
    );

    let mut rows = Vec::new();
    for rep in 1..=plan.reps {
        for server in &plan.servers {
            check_interrupted()?;
            let started = servers::start(&env, server.id, rep);
            match started {
                Started::Running(running) => {
                    for scenario in &plan.scenarios {
                        check_interrupted()?;
                        let row = run_scenario(&env, &plan, &running, server, scenario, rep)?;
                        print_row(&row, plan.reps);
                        rows.push(row);
                    }
                    running.stop(args.keep_tmp);
                }
                Started::Skipped(why) => {
                    for scenario in &plan.scenarios {
                        let row = Row::unmeasured(
                            scenario.id,
                            server.id,
                            Some(rep),
                            Status::Skipped(why.clone()),
                        );
                        print_row(&row, plan.reps);
                        rows.push(row);
                    }
                }
                Started::Failed(why) => {
                    for scenario in &plan.scenarios {
                        let row = Row::unmeasured(
                            scenario.id,
                            server.id,
                            Some(rep),
                            Status::Failed(why.clone()),
                        );
                        print_row(&row, plan.reps);
                        rows.push(row);
                    }
                }
            }
        }
    }
    let load_after = machine_load();
    drop(tmp_guard);

    let medians = results::medians(&rows);
    let ratios = results::ratios(&medians);
    let valid = !medians.iter().any(|r| r.status.invalidates_run());
    let mut all = rows.clone();
    all.extend(medians.iter().cloned());

    let date = results::date_string(stamp);
    let name = if args.quick {
        format!("{date}-quick")
    } else {
        date.clone()
    };
    let name = if restricted {
        format!("{name}-partial")
    } else {
        name
    };
    std::fs::create_dir_all(&args.out)?;
    let csv = args.out.join(format!("{name}.csv"));
    let md = args.out.join(format!("{name}.md"));
    let svg = args.out.join(format!("{name}.svg"));
    std::fs::write(&csv, results::to_csv(&all))?;
    let command = command_line(&args);
    let context = RunContext {
        date: &date,
        command: &command,
        machine: &machine,
        plan: &plan,
        pin,
        load_before,
        load_after,
        elapsed: started.elapsed(),
        valid,
        svg_name: format!("{name}.svg"),
    };
    let report = markdown_report(&context, &medians, &ratios);
    std::fs::write(&md, &report)?;
    std::fs::write(
        &svg,
        load_tests::chart::bar_chart(
            &format!(
                "Partner Gateway load test {date} ({}) — medians",
                if args.quick { "quick" } else { "full" }
            ),
            &medians,
        ),
    )?;
    if !args.no_readme && !restricted {
        update_readme(
            &workspace.join("load-tests/README.md"),
            &context,
            &medians,
            &ratios,
            &name,
        )?;
    }

    println!("\nHeadline ratios (medians):");
    for ratio in &ratios {
        println!("  {ratio}");
    }
    println!(
        "\n{} — results in {}, {}, {} ({:.0} s)",
        if valid {
            "VALID run"
        } else {
            "INVALID run: see the status column"
        },
        csv.display(),
        md.display(),
        svg.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(valid)
}

/// Builds the two packages separately (each with its own feature set, as developers build
/// them, so nothing is rebuilt for a third combination).
fn build(workspace: &Path) -> anyhow::Result<()> {
    for args in [
        &[
            "build",
            "--release",
            "-p",
            "gateway",
            "--bin",
            "partner-gateway",
        ][..],
        &["build", "--release", "-p", "load-tests", "--bins"][..],
    ] {
        eprintln!("run: cargo {}", args.join(" "));
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(args)
            .current_dir(workspace)
            .status()
            .context("run cargo")?;
        if !status.success() {
            bail!("cargo {} failed ({status})", args.join(" "));
        }
    }
    Ok(())
}

/// Finds nginx, installing Debian's `nginx-light` (then `nginx`) when missing. The
/// package's service is not started here (policy-rc.d); the run uses its own configuration.
fn ensure_nginx(no_install: bool) -> Result<PathBuf, String> {
    if let Some(path) = find_program("nginx") {
        return Ok(path);
    }
    if no_install {
        return Err("nginx not installed (--no-install)".into());
    }
    let root = procfs::current_uid() == Some(0);
    for package in ["nginx-light", "nginx"] {
        eprintln!("run: installing {package} with apt-get");
        let mut command = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("-n").arg("apt-get");
            c
        };
        let ok = command
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        if ok && let Some(path) = find_program("nginx") {
            return Ok(path);
        }
    }
    Err("nginx not installed and apt-get install nginx-light failed".into())
}

/// Runs one scenario against a running server with `loadgen` on the client core.
fn run_scenario(
    env: &Env,
    plan: &Plan,
    running: &Running,
    server: &scenario::Server,
    scenario: &Scenario,
    rep: u32,
) -> anyhow::Result<Row> {
    if let Err(why) = scenario::applies(server, scenario) {
        return Ok(Row::unmeasured(
            scenario.id,
            server.id,
            Some(rep),
            Status::Skipped(why.into()),
        ));
    }
    let out = env.tmp.join(format!(
        "loadgen-rep{rep}-{}-{}.json",
        server.id, scenario.id
    ));
    let mut args: Vec<OsString> = Vec::new();
    for target in &running.targets {
        args.push("--target".into());
        args.push(target.to_string().into());
    }
    if running.tls {
        let pki = env.client_pki();
        args.extend([
            "--ca".into(),
            pki.ca.into(),
            "--cert".into(),
            pki.cert.into(),
            "--key".into(),
            pki.key.into(),
        ]);
    } else {
        args.push("--plain".into());
    }
    let (mode, connections) = match scenario.load {
        Load::KeepAlive { connections } => ("keepalive", connections),
        Load::Handshake { connections } => ("handshake", connections),
        Load::Rate { rps, connections } => {
            args.extend(["--rate".into(), rps.to_string().into()]);
            ("rate", connections)
        }
    };
    let total = plan.warmup + plan.window;
    args.extend([
        "--mode".into(),
        mode.into(),
        "--connections".into(),
        connections.to_string().into(),
        "--warmup".into(),
        plan.warmup.as_secs_f64().to_string().into(),
        "--duration".into(),
        plan.window.as_secs_f64().to_string().into(),
        // A bound on requests, far above what one core serves.
        "--max-requests".into(),
        ((total.as_secs_f64() * 400_000.0) as u64)
            .to_string()
            .into(),
        "--out".into(),
        out.clone().into(),
    ]);
    for pid in &running.server_pids {
        args.extend(["--server-pid".into(), pid.to_string().into()]);
    }
    for pid in &running.upstream_pids {
        args.extend(["--upstream-pid".into(), pid.to_string().into()]);
    }
    args.extend(running.request.loadgen_args());
    let log = env.tmp.join(format!(
        "loadgen-rep{rep}-{}-{}.log",
        server.id, scenario.id
    ));
    let mut proc = Proc::spawn(
        "loadgen",
        &env.bin("loadgen"),
        &args,
        env.pin.then_some(CLIENT_CORE),
        &log,
        &[],
    )?;
    let limit = total + Duration::from_secs(15);
    let status = proc.wait_exit(limit);
    check_interrupted()?;
    let Some(status) = status else {
        let tail = proc.log_tail(5);
        drop(proc);
        return Ok(Row::unmeasured(
            scenario.id,
            server.id,
            Some(rep),
            Status::Failed(format!("{} timed out after {limit:?}: {tail}", "loadgen")),
        ));
    };
    if !status.success() {
        return Ok(Row::unmeasured(
            scenario.id,
            server.id,
            Some(rep),
            Status::Failed(format!(
                "{} failed ({status}): {}",
                proc.name(),
                proc.log_tail(5)
            )),
        ));
    }
    let text = std::fs::read_to_string(&out).with_context(|| format!("read {}", out.display()))?;
    let report: LoadReport = serde_json::from_str(&text).context("parse the loadgen report")?;
    let mut note = running.note.clone();
    if !report.server.peak_reset && !report.server.pids.is_empty() {
        note.push_str(" · peak RSS over the process life");
    }
    if server.id == "b" || server.id == "c" {
        note.push_str(" · CPU and RSS of master + worker");
    }
    Ok(Row::measured(scenario.id, server.id, rep, &report, &note))
}

fn print_row(row: &Row, reps: u32) {
    let rep = row
        .rep
        .map_or_else(String::new, |r| format!("[{r}/{reps}] "));
    if row.status.is_measured() {
        println!(
            "{rep}({}) {:<9} {:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  {:>7.1} µs CPU/req  server {:>3.0} %  loadgen {:>3.0} %  other {:>3.0} %  {}",
            row.server,
            row.scenario,
            row.rps,
            row.p50_us / 1000.0,
            row.p99_us / 1000.0,
            row.cpu_us_per_req,
            row.server_busy_pct,
            row.loadgen_busy_pct,
            row.other_busy_pct,
            row.status
        );
    } else {
        println!("{rep}({}) {:<9} {}", row.server, row.scenario, row.status);
    }
}

/// Deletes the temp directory when dropped (unless kept).
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("run: kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// What the machine is.
struct Machine {
    cpus: usize,
    model: String,
    sha_ni: bool,
    kernel: String,
    rustc: String,
    nginx: String,
    redis: String,
}

impl Machine {
    fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            cpus: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count()
                .max(1),
            model: procfs::parse_cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into()),
            sha_ni: procfs::cpu_has_flag(&cpuinfo, "sha_ni"),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            rustc: output("rustc", &["--version"]).unwrap_or_default(),
            nginx: find_program("nginx")
                .and_then(|p| output(&p.display().to_string(), &["-v"]))
                .unwrap_or_else(|| "not installed".into()),
            redis: output("redis-server", &["--version"])
                .map(|v| v.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|| "not installed".into()),
        }
    }
}

/// The 1-minute load average.
fn machine_load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Share of the whole machine busy over `window`, percent of one core.
fn busy_pct(window: Duration) -> f64 {
    let hz = procfs::clock_ticks_per_sec() as f64;
    let before = procfs::machine_busy_ticks();
    std::thread::sleep(window);
    let after = procfs::machine_busy_ticks();
    after.saturating_sub(before) as f64 / hz / window.as_secs_f64() * 100.0
}

/// What is left of the time all windows together may wait for a quiet machine (so the
/// modes stay within their time bounds).
static QUIET_BUDGET_MS: AtomicU64 = AtomicU64::new(0);

/// Waits (bounded) until the machine uses less than 15 % of a core (our idle servers
/// included), so a window starts on a quiet machine; says so when it never got quiet.
/// Returns how long it waited beyond the first check.
fn wait_quiet(max: Duration, verbose: bool) -> Duration {
    let start = Instant::now();
    let sample = Duration::from_millis(300);
    if max.is_zero() {
        return Duration::ZERO;
    }
    let deadline = start + max;
    let mut announced = false;
    loop {
        let busy = busy_pct(sample);
        if busy < 15.0 || procs::interrupted() {
            return start.elapsed().saturating_sub(sample);
        }
        if Instant::now() >= deadline {
            if verbose {
                eprintln!(
                    "run: the machine is still busy ({busy:.0} % of a core used by others); measuring anyway"
                );
            }
            return start.elapsed();
        }
        if verbose && !announced {
            eprintln!(
                "run: waiting up to {max:?} for the machine to quiet down ({busy:.0} % of a core busy)"
            );
            announced = true;
        }
    }
}

fn command_line(args: &Args) -> String {
    let mut command = String::from("cargo run --release -p load-tests --bin run --");
    if args.quick {
        command.push_str(" --quick");
    }
    if let Some(servers) = &args.servers {
        let _ = write!(command, " --servers {}", servers.join(","));
    }
    if let Some(scenarios) = &args.scenarios {
        let _ = write!(command, " --scenarios {}", scenarios.join(","));
    }
    if let Some(reps) = args.reps {
        let _ = write!(command, " --reps {reps}");
    }
    command
}

struct RunContext<'a> {
    date: &'a str,
    command: &'a str,
    machine: &'a Machine,
    plan: &'a Plan,
    pin: bool,
    load_before: f64,
    load_after: f64,
    elapsed: Duration,
    valid: bool,
    svg_name: String,
}

fn markdown_report(ctx: &RunContext<'_>, medians: &[Row], ratios: &[results::Ratio]) -> String {
    let mut out = format!("# Load test {}\n\n", ctx.date);
    out.push_str(&results_body(ctx, medians, ratios, &ctx.svg_name));
    out
}

/// The part shared by the results file and the README block.
fn results_body(
    ctx: &RunContext<'_>,
    medians: &[Row],
    ratios: &[results::Ratio],
    svg: &str,
) -> String {
    let m = ctx.machine;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} — `{}`, {} repetition(s), {:.1} s warm-up + {:.1} s window per scenario, {:.0} s in all.\n",
        if ctx.valid {
            "**Valid run** (no errors, no non-2xx)"
        } else {
            "**INVALID run** (see the status column)"
        },
        ctx.command,
        ctx.plan.reps,
        ctx.plan.warmup.as_secs_f64(),
        ctx.plan.window.as_secs_f64(),
        ctx.elapsed.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "Machine: {} CPUs, {}{}, Linux {}; {}; {}; {}. Load average {:.2} before, {:.2} after.\n",
        m.cpus,
        m.model,
        if m.sha_ni {
            " (SHA-NI)"
        } else {
            " (no SHA-NI)"
        },
        m.kernel,
        m.rustc,
        m.nginx,
        m.redis,
        ctx.load_before,
        ctx.load_after
    );
    let _ = writeln!(
        out,
        "{}\n",
        if ctx.pin {
            "Servers pinned to core 0 (`taskset -c 0`); the load generator, the upstream, the sandbox and redis-server to core 1."
        } else {
            "Processes were **not** pinned (taskset or a second core missing)."
        }
    );
    out.push_str("Headline ratios (medians; targets from issue 8, not asserted anywhere):\n\n");
    for ratio in ratios {
        let _ = writeln!(out, "- {ratio}");
    }
    out.push('\n');
    out.push_str(&results::to_markdown(medians));
    let _ = writeln!(out, "\n![req/s and CPU µs per request]({svg})\n");
    let notes: Vec<String> = medians
        .iter()
        .filter(|r| !r.note.is_empty())
        .map(|r| format!("({}) {}", r.server, r.note))
        .fold(Vec::new(), |mut acc, n| {
            if !acc.contains(&n) {
                acc.push(n);
            }
            acc
        });
    if !notes.is_empty() {
        out.push_str("Per server:\n\n");
        for note in notes {
            let _ = writeln!(out, "- {}", note);
        }
        out.push('\n');
    }
    out
}

fn update_readme(
    readme: &Path,
    ctx: &RunContext<'_>,
    medians: &[Row],
    ratios: &[results::Ratio],
    name: &str,
) -> anyhow::Result<()> {
    let Ok(text) = std::fs::read_to_string(readme) else {
        return Ok(());
    };
    let mut body = format!(
        "Latest: [`results/{name}.md`](results/{name}.md), [`results/{name}.csv`](results/{name}.csv).\n\n"
    );
    body.push_str(&results_body(
        ctx,
        medians,
        ratios,
        &format!("results/{name}.svg"),
    ));
    match results::replace_between(
        &text,
        "<!-- results:begin -->",
        "<!-- results:end -->",
        &body,
    ) {
        Some(updated) => std::fs::write(readme, updated)?,
        None => eprintln!(
            "run: {} has no results markers; not updated",
            readme.display()
        ),
    }
    Ok(())
}
