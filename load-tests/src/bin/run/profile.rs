//! `run --profile`: where the gateway's full path (f) spends its CPU.
//!
//! With `perf` able to count instructions here (`perf stat -e instructions true`), the
//! gateway runs normally and `perf record -g` samples it during a keep-alive load. Otherwise
//! (the VMs of this project: PMU not exposed) it runs under `valgrind --tool=callgrind`
//! with instrumentation off; it is switched on with `callgrind_control -i on` after a
//! warm-up, a bounded number of requests is sent (4 keep-alive connections), and the
//! gateway is stopped so callgrind writes its profile. Callgrind counts instructions, so
//! the result does not depend on what else the machine is doing.
//!
//! Output: `load-tests/results/profile-<date>.txt` (the annotated top functions) and the
//! raw profile next to it.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};

use load_tests::results::date_string;

use crate::procs::{Proc, find_program, output};
use crate::servers::{CLIENT_CORE, Env, Running, start_profiled};

pub(crate) fn run(env: &Env, out: &Path, requests: u64, handshakes: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let date = date_string(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs());
    let profile = Profile {
        date: if handshakes {
            format!("{date}-handshake")
        } else {
            date
        },
        requests,
        mode: if handshakes { "handshake" } else { "keepalive" },
    };
    if perf_counts_instructions() {
        perf(env, out, &profile)
    } else {
        callgrind(env, out, &profile)
    }
}

/// What one profile run does.
struct Profile {
    /// File name stem (date, and `-handshake` for new connections).
    date: String,
    requests: u64,
    /// `keepalive` or `handshake` (loadgen's mode).
    mode: &'static str,
}

impl Profile {
    fn reproduce(&self) -> String {
        format!(
            "cargo run --release -p load-tests --bin run -- --profile --profile-requests {}{}",
            self.requests,
            if self.mode == "handshake" {
                " --profile-handshakes"
            } else {
                ""
            }
        )
    }
}

/// Whether `perf stat -e instructions true` reports a count (not `<not supported>`).
fn perf_counts_instructions() -> bool {
    find_program("perf").is_some()
        && output("perf", &["stat", "-e", "instructions", "true"])
            .is_some_and(|text| text.contains("instructions") && !text.contains("not supported"))
}

fn callgrind(env: &Env, out: &Path, profile: &Profile) -> anyhow::Result<()> {
    let (date, requests) = (profile.date.as_str(), profile.requests);
    let raw = out.join(format!("callgrind-{date}.out"));
    let valgrind = find_program("valgrind").context("valgrind is not installed")?;
    let wrapper: Vec<OsString> = vec![
        valgrind.into(),
        "--tool=callgrind".into(),
        "--instr-atstart=no".into(),
        format!("--callgrind-out-file={}", raw.display()).into(),
    ];
    println!("profile: starting the gateway under callgrind (slow start)…");
    let running = start_profiled(env, &wrapper).map_err(anyhow::Error::msg)?;
    let pid = *running.server_pids.first().context("gateway pid")?;
    println!("profile: warm-up (200 requests)…");
    drive(env, &running, 200, "warmup", "keepalive")?;
    let on = Command::new("callgrind_control")
        .args(["-i", "on", &pid.to_string()])
        .output()?;
    if !on.status.success() {
        bail!(
            "callgrind_control -i on failed: {}",
            String::from_utf8_lossy(&on.stderr)
        );
    }
    println!("profile: {requests} measured requests ({})…", profile.mode);
    drive(env, &running, requests, "measured", profile.mode)?;
    let _ = Command::new("callgrind_control")
        .args(["-i", "off", &pid.to_string()])
        .output();
    // Stopping the gateway makes callgrind write the profile.
    running.stop(false);
    let annotate = output(
        "callgrind_annotate",
        &[
            "--inclusive=no",
            "--threshold=99",
            &raw.display().to_string(),
        ],
    )
    .context("callgrind_annotate")?;
    let inclusive = output(
        "callgrind_annotate",
        &[
            "--inclusive=yes",
            "--threshold=99",
            &raw.display().to_string(),
        ],
    )
    .unwrap_or_default();
    let total = program_total(&annotate).unwrap_or(0);
    let report = format!(
        "# callgrind profile of the gateway's full path (f), {date}\n\
         # {requests} requests ({}, 4 at a time) after 200 warm-up requests;\n\
         # instructions (Ir) counted only while the measured requests ran:\n\
         # {total} Ir in all, {} Ir per request (user space only: syscalls, fsync and the\n\
         # kernel's TCP work are not counted). Valgrind hides SHA-NI from the program, so\n\
         # SHA-256 runs its AVX code here; natively it is several times cheaper.\n\
         # Reproduce: {}\n\n\
         ## Self cost (exclusive)\n\n{}\n\n## Inclusive cost\n\n{}\n",
        profile.mode,
        total / requests.max(1),
        profile.reproduce(),
        condense(&annotate, 45),
        condense(&inclusive, 90)
    );
    let file = out.join(format!("profile-{date}.txt"));
    std::fs::write(&file, &report)?;
    println!("{}", condense(&annotate, 30));
    println!("profile: {} Ir per request", total / requests.max(1));
    println!(
        "profile: written to {} (raw: {})",
        file.display(),
        raw.display()
    );
    Ok(())
}

fn perf(env: &Env, out: &Path, profile: &Profile) -> anyhow::Result<()> {
    let (date, requests) = (profile.date.as_str(), profile.requests);
    let raw = out.join(format!("perf-{date}.data"));
    let running = start_profiled(env, &[]).map_err(anyhow::Error::msg)?;
    let pid = *running.server_pids.first().context("gateway pid")?;
    drive(env, &running, 200, "warmup", "keepalive")?;
    let mut recorder = Proc::spawn(
        "perf record",
        &find_program("perf").context("perf")?,
        &[
            "record".into(),
            "-g".into(),
            "-p".into(),
            pid.to_string().into(),
            "-o".into(),
            raw.clone().into(),
        ],
        None,
        &env.tmp.join("perf.log"),
        &[],
    )?;
    drive(env, &running, requests, "measured", profile.mode)?;
    // perf record writes its file on SIGINT/SIGTERM.
    recorder.stop();
    running.stop(false);
    let report = output(
        "perf",
        &[
            "report",
            "--stdio",
            "--no-children",
            "-i",
            &raw.display().to_string(),
        ],
    )
    .unwrap_or_default();
    let file = out.join(format!("profile-{date}.txt"));
    std::fs::write(
        &file,
        format!(
            "# perf profile of the gateway's full path (f), {date}\n\
             # {requests} requests ({}, 4 at a time).\n\
             # Reproduce: {}\n\n{}\n",
            profile.mode,
            profile.reproduce(),
            top_lines(&report, 80)
        ),
    )?;
    println!("{}", top_lines(&report, 40));
    println!("profile: written to {}", file.display());
    Ok(())
}

/// Sends `requests` requests of the scenario, 4 at a time, in `mode` (`keepalive` or
/// `handshake`); bounded: 10 minutes.
fn drive(
    env: &Env,
    running: &Running,
    requests: u64,
    label: &str,
    mode: &str,
) -> anyhow::Result<()> {
    let pki = env.client_pki();
    let mut args: Vec<OsString> = Vec::new();
    for target in &running.targets {
        args.extend(["--target".into(), target.to_string().into()]);
    }
    args.extend([
        "--ca".into(),
        pki.ca.into(),
        "--cert".into(),
        pki.cert.into(),
        "--key".into(),
        pki.key.into(),
        "--mode".into(),
        mode.into(),
        "--connections".into(),
        "4".into(),
        "--warmup".into(),
        "0".into(),
        "--duration".into(),
        "600".into(),
        "--timeout".into(),
        "30".into(),
        "--max-requests".into(),
        requests.to_string().into(),
        "--out".into(),
        env.tmp.join(format!("profile-{label}.json")).into(),
    ]);
    args.extend(running.request.loadgen_args());
    let mut proc = Proc::spawn(
        "loadgen",
        &env.bin("loadgen"),
        &args,
        env.pin.then_some(CLIENT_CORE),
        &env.tmp.join(format!("profile-{label}.log")),
        &[],
    )?;
    match proc.wait_exit(Duration::from_secs(660)) {
        Some(status) if status.success() => {
            println!("profile: {label}: {}", proc.log_tail(1));
            Ok(())
        }
        Some(status) => bail!("loadgen ({label}) failed ({status}): {}", proc.log_tail(5)),
        None => bail!("loadgen ({label}) did not finish in time"),
    }
}

/// The `PROGRAM TOTALS` instruction count of a `callgrind_annotate` output.
fn program_total(annotate: &str) -> Option<u64> {
    let line = annotate.lines().find(|l| l.contains("PROGRAM TOTALS"))?;
    line.split_whitespace()
        .next()?
        .replace(',', "")
        .parse()
        .ok()
}

/// The first `n` function lines of a `callgrind_annotate` output, with registry and
/// toolchain path prefixes shortened.
fn condense(annotate: &str, n: usize) -> String {
    let body = annotate
        .split_once("file:function")
        .map_or(annotate, |(_, rest)| rest);
    body.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("---"))
        .take(n)
        .map(shorten)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Drops the registry directory (`…/registry/src/<index>/`), the toolchain's
/// `/rustc/<hash>/` and the binary suffix (` [/…/partner-gateway]`) from a line.
fn shorten(line: &str) -> String {
    let mut l = line.to_owned();
    if let Some(at) = l.find("/registry/src/") {
        let start = l[..at].rfind(' ').map_or(0, |p| p + 1);
        let index = at + "/registry/src/".len();
        if let Some(end) = l[index..].find('/') {
            l.replace_range(start..index + end + 1, "");
        }
    }
    if let Some(at) = l.find("/rustc/") {
        let hash = at + "/rustc/".len();
        if let Some(end) = l[hash..].find('/') {
            l.replace_range(at..hash + end + 1, "");
        }
    }
    if l.ends_with(']')
        && let Some(at) = l.rfind(" [")
    {
        l.truncate(at);
    }
    l
}

/// The first `n` non-empty lines.
fn top_lines(text: &str, n: usize) -> String {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .collect::<Vec<_>>()
        .join("\n")
}
