//! Helpers shared by the config test suites: the sample configuration as in-memory
//! [`Sources`], edits that must apply exactly once, and one-problem assertions.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

use gateway_config::{ConfigProblem, LineCol, Report, Sources, load_sources};

/// A configuration directory that does not exist: nothing referenced from it exists on disk
/// unless declared with `Sources::with_existing_file`.
pub const DIR: &str = "/nonexistent-partner-gateway-test/partner-config";

/// The files the sample `gateway.yaml` references, as written there.
pub const REFERENCED_FILES: [&str; 8] = [
    "../certs/dev/server.pem",
    "../certs/dev/server-key.pem",
    "../certs/dev/ca.pem",
    "../data/admin.token",
    "../data/keys/token-dev-1.pem",
    "../data/keys/customer-ref.secret",
    "../data/keys/audit-checkpoint.pem",
    "../data/keys/audit-customer.secret",
];

/// The repository's `partner-config/`.
pub fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../partner-config")
}

/// The sample texts, with every referenced file declared as existing except `missing`.
pub fn sample_without(missing: &[&str]) -> Sources {
    let mut sources = Sources::new();
    for (path, text) in Sources::read_dir(&sample_dir()).files() {
        sources.insert(path, text);
    }
    for file in REFERENCED_FILES {
        if !missing.contains(&file) {
            sources = sources.with_existing_file(file);
        }
    }
    sources
}

/// The sample texts with every referenced file declared as existing.
pub fn sample() -> Sources {
    sample_without(&[])
}

/// Replaces `from` by `to` in one file; `from` must occur exactly once.
pub fn edit(sources: &mut Sources, file: &str, from: &str, to: &str) {
    let text = sources
        .get(file)
        .unwrap_or_else(|| panic!("no {file}"))
        .to_owned();
    assert_eq!(
        text.matches(from).count(),
        1,
        "{from:?} must occur once in {file}"
    );
    sources.insert(file, text.replacen(from, to, 1));
}

/// Loads, expecting failure.
pub fn report(sources: &Sources) -> Report {
    match load_sources(Path::new(DIR), sources) {
        Ok(_) => panic!("the configuration loaded, but a problem was expected"),
        Err(report) => report,
    }
}

/// Loads, expecting exactly one problem, and returns it.
pub fn only_problem(sources: &Sources) -> ConfigProblem {
    let report = report(sources);
    assert_eq!(report.len(), 1, "expected one problem, got:\n{report}");
    report.problems()[0].clone()
}

/// Asserts a problem's file, line and column, JSON pointer and message.
#[track_caller]
pub fn assert_problem(
    problem: &ConfigProblem,
    file: &str,
    at: Option<(u32, u32)>,
    pointer: Option<&str>,
    message: &str,
) {
    assert_eq!(problem.file, Path::new(file), "file of {problem}");
    assert_eq!(
        problem.location.line_col,
        at.map(|(line, column)| LineCol { line, column }),
        "line:col of {problem}"
    );
    assert_eq!(
        problem.location.pointer.as_deref(),
        pointer,
        "pointer of {problem}"
    );
    assert_eq!(problem.message, message, "message of {problem}");
}
