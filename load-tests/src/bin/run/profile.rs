//! `run --profile`: where the gateway's full path (f) spends its CPU.
//!
//! With `perf` able to count instructions here (`perf stat -e instructions true`), the
//! gateway runs normally and `perf record -g` samples it during a keep-alive load. Otherwise
//! (the VMs of this project: PMU not exposed) it runs under `valgrind --tool=callgrind`
//! with collection off; collection is switched on with `callgrind_control -i on` after a
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

pub(crate) fn run(env: &Env, out: &Path, requests: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    let date = date_string(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs());
    if perf_counts_instructions() {
        perf(env, out, &date, requests)
    } else {
        callgrind(env, out, &date, requests)
    }
}

/// Whether `perf stat -e instructions true` reports a count (not `<not supported>`).
fn perf_counts_instructions() -> bool {
    find_program("perf").is_some()
        && output("perf", &["stat", "-e", "instructions", "true"])
            .is_some_and(|text| text.contains("instructions") && !text.contains("not supported"))
}

fn callgrind(env: &Env, out: &Path, date: &str, requests: u64) -> anyhow::Result<()> {
    let raw = out.join(format!("callgrind-{date}.out"));
    let valgrind = find_program("valgrind").context("valgrind is not installed")?;
    let wrapper: Vec<OsString> = vec![
        valgrind.into(),
        "--tool=callgrind".into(),
        "--collect-atstart=no".into(),
        format!("--callgrind-out-file={}", raw.display()).into(),
    ];
    println!("profile: starting the gateway under callgrind (slow start)…");
    let running = start_profiled(env, &wrapper).map_err(anyhow::Error::msg)?;
    let pid = *running.server_pids.first().context("gateway pid")?;
    println!("profile: warm-up (200 requests)…");
    drive(env, &running, 200, "warmup")?;
    let on = Command::new("callgrind_control")
        .args(["-i", "on", &pid.to_string()])
        .output()?;
    if !on.status.success() {
        bail!(
            "callgrind_control -i on failed: {}",
            String::from_utf8_lossy(&on.stderr)
        );
    }
    println!("profile: {requests} measured requests…");
    drive(env, &running, requests, "measured")?;
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
    let report = format!(
        "# callgrind profile of the gateway's full path (f), {date}\n\
         # {requests} requests over 4 keep-alive connections after 200 warm-up requests;\n\
         # instructions (Ir) counted only while the measured requests ran.\n\
         # Reproduce: cargo run --release -p load-tests --bin run -- --profile --profile-requests {requests}\n\n\
         ## Self cost (exclusive)\n\n{}\n\n## Inclusive cost\n\n{}\n",
        top_lines(&annotate, 60),
        top_lines(&inclusive, 60)
    );
    let file = out.join(format!("profile-{date}.txt"));
    std::fs::write(&file, &report)?;
    println!("{}", top_lines(&annotate, 40));
    println!(
        "profile: written to {} (raw: {})",
        file.display(),
        raw.display()
    );
    Ok(())
}

fn perf(env: &Env, out: &Path, date: &str, requests: u64) -> anyhow::Result<()> {
    let raw = out.join(format!("perf-{date}.data"));
    let running = start_profiled(env, &[]).map_err(anyhow::Error::msg)?;
    let pid = *running.server_pids.first().context("gateway pid")?;
    drive(env, &running, 200, "warmup")?;
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
    drive(env, &running, requests, "measured")?;
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
             # Reproduce: cargo run --release -p load-tests --bin run -- --profile --profile-requests {requests}\n\n{}\n",
            top_lines(&report, 80)
        ),
    )?;
    println!("{}", top_lines(&report, 40));
    println!("profile: written to {}", file.display());
    Ok(())
}

/// Sends `requests` requests of the scenario over 4 keep-alive connections (bounded: 10
/// minutes).
fn drive(env: &Env, running: &Running, requests: u64, label: &str) -> anyhow::Result<()> {
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
        "keepalive".into(),
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

/// The first `n` non-empty lines.
fn top_lines(text: &str, n: usize) -> String {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .collect::<Vec<_>>()
        .join("\n")
}
