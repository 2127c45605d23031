//! Result rows, medians over repetitions, the CSV and Markdown writers, and the headline
//! ratios.

use std::fmt::Write as _;

use crate::report::LoadReport;
use crate::scenario;

/// The outcome of one scenario against one server.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Measured; every response a success.
    Ok,
    /// Measured, but with errors or non-2xx responses: the numbers do not count.
    Invalid(String),
    /// Rate mode: the server could not sustain the rate; latency shows the queueing.
    Overloaded(String),
    /// Not run: the endpoint or backend is not there yet, or the scenario does not apply.
    Skipped(String),
    /// Not run: the setup failed (a server did not start, a setup request was refused).
    Failed(String),
}

impl Status {
    /// Whether the row carries measurements.
    pub fn is_measured(&self) -> bool {
        matches!(
            self,
            Status::Ok | Status::Invalid(_) | Status::Overloaded(_)
        )
    }

    /// Whether this outcome makes the whole run invalid.
    pub fn invalidates_run(&self) -> bool {
        matches!(self, Status::Invalid(_) | Status::Failed(_))
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Ok => f.write_str("ok"),
            Status::Invalid(why) => write!(f, "invalid: {why}"),
            Status::Overloaded(why) => write!(f, "overloaded: {why}"),
            Status::Skipped(why) => write!(f, "skipped: {why}"),
            Status::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

/// One row: a scenario against a server, one repetition or the median of all.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Scenario id.
    pub scenario: String,
    /// Server id.
    pub server: String,
    /// Repetition from 1, or `None` for the median row.
    pub rep: Option<u32>,
    /// Outcome.
    pub status: Status,
    /// Responses in the window.
    pub requests: u64,
    /// Failures.
    pub errors: u64,
    /// Non-2xx responses.
    pub non_2xx: u64,
    /// Rate mode: requests that could not be sent in time.
    pub late: u64,
    /// Window, seconds.
    pub duration_s: f64,
    /// Requests per second.
    pub rps: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
    /// 99.9th percentile latency, µs.
    pub p999_us: f64,
    /// Server CPU per request, µs.
    pub cpu_us_per_req: f64,
    /// Share of its core the server used, %.
    pub server_busy_pct: f64,
    /// Share of the server's CPU spent in the kernel, %.
    pub server_sys_pct: f64,
    /// Upstream CPU per request, µs.
    pub upstream_cpu_us_per_req: f64,
    /// Share of its core the load generator used, %.
    pub loadgen_busy_pct: f64,
    /// CPU used by other processes on the machine, % of one core (noise).
    pub other_busy_pct: f64,
    /// Peak RSS of the server processes, KiB.
    pub peak_rss_kib: u64,
    /// Mean response body, bytes.
    pub resp_bytes: f64,
    /// Anything the reader should know (stages present, what was counted).
    pub note: String,
}

impl Row {
    /// A row without measurements.
    pub fn unmeasured(scenario: &str, server: &str, rep: Option<u32>, status: Status) -> Row {
        Row {
            scenario: scenario.to_owned(),
            server: server.to_owned(),
            rep,
            status,
            requests: 0,
            errors: 0,
            non_2xx: 0,
            late: 0,
            duration_s: 0.0,
            rps: 0.0,
            p50_us: 0.0,
            p99_us: 0.0,
            p999_us: 0.0,
            cpu_us_per_req: 0.0,
            server_busy_pct: 0.0,
            server_sys_pct: 0.0,
            upstream_cpu_us_per_req: 0.0,
            loadgen_busy_pct: 0.0,
            other_busy_pct: 0.0,
            peak_rss_kib: 0,
            resp_bytes: 0.0,
            note: String::new(),
        }
    }

    /// The row of one measured repetition; its status follows from the counts.
    pub fn measured(
        scenario: &str,
        server: &str,
        rep: u32,
        report: &LoadReport,
        note: &str,
    ) -> Row {
        let status = if report.errors > 0 || report.non_2xx > 0 {
            let mut why = format!("{} errors, {} non-2xx", report.errors, report.non_2xx);
            if let Some(sample) = report.error_samples.first() {
                let _ = write!(why, " (e.g. {sample})");
            }
            let statuses: Vec<String> = report
                .statuses
                .iter()
                .filter(|(code, _)| !(200..300).contains(*code))
                .map(|(code, n)| format!("{code}×{n}"))
                .collect();
            if !statuses.is_empty() {
                let _ = write!(why, " [{}]", statuses.join(" "));
            }
            Status::Invalid(why)
        } else if report.late > 0 {
            // Far beyond its capacity, a server may answer none of the requests scheduled in
            // the window before the drain ends (the warm-up's backlog comes first).
            Status::Overloaded(format!(
                "{} of the scheduled requests not sent in time",
                report.late
            ))
        } else if report.requests == 0 {
            Status::Invalid("no response in the window".into())
        } else {
            Status::Ok
        };
        Row {
            status,
            requests: report.requests,
            errors: report.errors,
            non_2xx: report.non_2xx,
            late: report.late,
            duration_s: report.duration_s,
            rps: report.rps,
            p50_us: report.latency_us.p50,
            p99_us: report.latency_us.p99,
            p999_us: report.latency_us.p999,
            cpu_us_per_req: report.server_cpu_us_per_req(),
            server_busy_pct: report.server_busy_pct(),
            server_sys_pct: if report.server.cpu_s > 0.0 {
                report.server.sys_s / report.server.cpu_s * 100.0
            } else {
                0.0
            },
            upstream_cpu_us_per_req: report.upstream_cpu_us_per_req(),
            loadgen_busy_pct: report.loadgen_busy_pct(),
            other_busy_pct: report.other_busy_pct(),
            peak_rss_kib: report.server.peak_rss_kib,
            resp_bytes: report.resp_bytes_mean,
            note: note.to_owned(),
            ..Row::unmeasured(scenario, server, Some(rep), Status::Ok)
        }
    }
}

/// The median of `values` (mean of the middle two for an even count; 0 when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return 0.0;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// One median row per (scenario, server), in order of first appearance. Each number is the
/// median over the measured repetitions; counts of errors, non-2xx and late requests are
/// summed. The status is the worst seen; a pair never measured keeps its first reason.
pub fn medians(rows: &[Row]) -> Vec<Row> {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for row in rows.iter().filter(|r| r.rep.is_some()) {
        let key = (row.scenario.as_str(), row.server.as_str());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(scenario, server)| {
            let group: Vec<&Row> = rows
                .iter()
                .filter(|r| r.rep.is_some() && r.scenario == scenario && r.server == server)
                .collect();
            let measured: Vec<&Row> = group
                .iter()
                .copied()
                .filter(|r| r.status.is_measured())
                .collect();
            if measured.is_empty() {
                return Row::unmeasured(scenario, server, None, group[0].status.clone());
            }
            let m = |f: fn(&Row) -> f64| median(&measured.iter().map(|r| f(r)).collect::<Vec<_>>());
            let status = measured
                .iter()
                .map(|r| &r.status)
                .find(|s| matches!(s, Status::Invalid(_)))
                .or_else(|| {
                    measured
                        .iter()
                        .map(|r| &r.status)
                        .find(|s| matches!(s, Status::Overloaded(_)))
                })
                .or_else(|| {
                    group
                        .iter()
                        .map(|r| &r.status)
                        .find(|s| s.invalidates_run())
                })
                .cloned()
                .unwrap_or(Status::Ok);
            Row {
                status,
                requests: m(|r| r.requests as f64) as u64,
                errors: measured.iter().map(|r| r.errors).sum(),
                non_2xx: measured.iter().map(|r| r.non_2xx).sum(),
                late: measured.iter().map(|r| r.late).sum(),
                duration_s: m(|r| r.duration_s),
                rps: m(|r| r.rps),
                p50_us: m(|r| r.p50_us),
                p99_us: m(|r| r.p99_us),
                p999_us: m(|r| r.p999_us),
                cpu_us_per_req: m(|r| r.cpu_us_per_req),
                server_busy_pct: m(|r| r.server_busy_pct),
                server_sys_pct: m(|r| r.server_sys_pct),
                upstream_cpu_us_per_req: m(|r| r.upstream_cpu_us_per_req),
                loadgen_busy_pct: m(|r| r.loadgen_busy_pct),
                other_busy_pct: m(|r| r.other_busy_pct),
                peak_rss_kib: m(|r| r.peak_rss_kib as f64) as u64,
                resp_bytes: m(|r| r.resp_bytes),
                note: measured[0].note.clone(),
                ..Row::unmeasured(scenario, server, None, Status::Ok)
            }
        })
        .collect()
}

/// The CSV header line's columns.
pub const CSV_COLUMNS: &[&str] = &[
    "scenario",
    "server",
    "rep",
    "status",
    "requests",
    "errors",
    "non_2xx",
    "late",
    "duration_s",
    "rps",
    "p50_us",
    "p99_us",
    "p999_us",
    "cpu_us_per_req",
    "server_busy_pct",
    "server_sys_pct",
    "upstream_cpu_us_per_req",
    "loadgen_busy_pct",
    "other_busy_pct",
    "peak_rss_kib",
    "resp_bytes",
    "note",
];

/// Quotes a CSV field when it holds a comma, quote or line break (RFC 4180).
pub fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// The CSV: a header, then `rows` (repetitions, then medians with `rep` = `median`).
pub fn to_csv(rows: &[Row]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for r in rows {
        let rep = r.rep.map_or_else(|| "median".to_owned(), |n| n.to_string());
        let fields = [
            r.scenario.clone(),
            r.server.clone(),
            rep,
            r.status.to_string(),
            r.requests.to_string(),
            r.errors.to_string(),
            r.non_2xx.to_string(),
            r.late.to_string(),
            format!("{:.3}", r.duration_s),
            format!("{:.1}", r.rps),
            format!("{:.1}", r.p50_us),
            format!("{:.1}", r.p99_us),
            format!("{:.1}", r.p999_us),
            format!("{:.2}", r.cpu_us_per_req),
            format!("{:.1}", r.server_busy_pct),
            format!("{:.1}", r.server_sys_pct),
            format!("{:.2}", r.upstream_cpu_us_per_req),
            format!("{:.1}", r.loadgen_busy_pct),
            format!("{:.1}", r.other_busy_pct),
            r.peak_rss_kib.to_string(),
            format!("{:.0}", r.resp_bytes),
            r.note.clone(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

/// Escapes text for a Markdown table cell.
pub fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown table of the median rows, grouped by scenario.
pub fn to_markdown(medians: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | server | req/s | p50 ms | p99 ms | p99.9 ms | server CPU µs/req | \
         server core busy | loadgen core busy | other load | peak RSS MiB | body B | status |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for r in medians {
        let server = scenario::server(&r.server)
            .map_or(r.server.clone(), |s| format!("({}) {}", s.id, s.label));
        let scenario_label = r.scenario.as_str();
        if r.status.is_measured() {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {:.0} % | {:.0} % | {:.0} % | {:.1} | {:.0} | {} |",
                scenario_label,
                md_cell(&server),
                r.rps,
                r.p50_us / 1000.0,
                r.p99_us / 1000.0,
                r.p999_us / 1000.0,
                r.cpu_us_per_req,
                r.server_busy_pct,
                r.loadgen_busy_pct,
                r.other_busy_pct,
                r.peak_rss_kib as f64 / 1024.0,
                r.resp_bytes,
                md_cell(&r.status.to_string()),
            );
        } else {
            let _ = writeln!(
                out,
                "| {} | {} | – | – | – | – | – | – | – | – | – | – | {} |",
                scenario_label,
                md_cell(&server),
                md_cell(&r.status.to_string()),
            );
        }
    }
    out
}

/// A headline ratio and the target for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ratio {
    /// What is compared.
    pub name: String,
    /// The value, or why there is none.
    pub value: Result<f64, String>,
    /// The unit the value is in (`×` or `ms`).
    pub unit: &'static str,
    /// The target, e.g. `≥ 1.25×`.
    pub target: &'static str,
    /// Whether the value meets the target.
    pub meets: Option<bool>,
}

impl Ratio {
    /// `target ≥ 1.25×` for a target, the plain text for an informational line.
    fn target_label(&self) -> String {
        if self.target.starts_with(['≥', '≤', '<', '>']) {
            format!("target {}", self.target)
        } else {
            self.target.to_owned()
        }
    }
}

impl std::fmt::Display for Ratio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Ok(v) => {
                let verdict = match self.meets {
                    Some(true) => "meets",
                    Some(false) => "BEHIND",
                    None => "",
                };
                let value = if self.unit == "ms" {
                    format!("{v:+.3} ms")
                } else {
                    format!("{v:.2}×")
                };
                write!(
                    f,
                    "{}: {} ({}) {}",
                    self.name,
                    value,
                    self.target_label(),
                    verdict
                )
            }
            Err(why) => write!(f, "{}: n/a ({why}) ({})", self.name, self.target_label()),
        }
    }
}

fn find<'a>(medians: &'a [Row], scenario: &str, server: &str) -> Result<&'a Row, String> {
    let row = medians
        .iter()
        .find(|r| r.rep.is_none() && r.scenario == scenario && r.server == server)
        .ok_or_else(|| format!("{server} @ {scenario} not run"))?;
    match &row.status {
        Status::Ok | Status::Overloaded(_) => Ok(row),
        other => Err(format!("{server} @ {scenario} {other}")),
    }
}

/// The headline ratios of issue 8 from the median rows.
pub fn ratios(medians: &[Row]) -> Vec<Ratio> {
    let ratio = |scenario: &str, num: &str, den: &str, f: fn(&Row) -> f64| {
        let n = find(medians, scenario, num)?;
        let d = find(medians, scenario, den)?;
        if f(d) <= 0.0 {
            return Err(format!("{den} @ {scenario} measured 0"));
        }
        Ok(f(n) / f(d))
    };
    let judge =
        |value: &Result<f64, String>, ok: fn(f64) -> bool| value.as_ref().ok().map(|v| ok(*v));
    let mut out = Vec::new();
    for scenario in ["c32", "c256"] {
        let value = ratio(scenario, "f", "c", |r| r.rps);
        out.push(Ratio {
            name: format!("req/s gateway (f) ÷ nginx+check+log (c) @ {scenario}"),
            meets: judge(&value, |v| v >= 1.25),
            value,
            unit: "×",
            target: "≥ 1.25×",
        });
        let value = ratio(scenario, "f", "c", |r| r.cpu_us_per_req);
        out.push(Ratio {
            name: format!("CPU/req gateway (f) ÷ nginx+check+log (c) @ {scenario}"),
            meets: judge(&value, |v| v <= 0.8),
            value,
            unit: "×",
            target: "≤ 0.8×",
        });
        let value = ratio(scenario, "f", "e", |r| r.rps);
        out.push(Ratio {
            name: format!("req/s gateway (f) ÷ bare proxy (e) @ {scenario}"),
            meets: judge(&value, |v| v >= 0.85),
            value,
            unit: "×",
            target: "≥ 0.85×",
        });
    }
    let value = ratio("c32", "f", "e", |r| r.cpu_us_per_req);
    out.push(Ratio {
        name: "CPU/req gateway (f) ÷ bare proxy (e) @ c32".into(),
        meets: None,
        value,
        unit: "×",
        target: "no target: what the gateway's stages cost over a bare proxy",
    });
    let value = ratio("handshake", "f", "c", |r| r.rps);
    out.push(Ratio {
        name: "handshakes/s gateway (f) ÷ nginx (c)".into(),
        meets: judge(&value, |v| v >= 2.5),
        value,
        unit: "×",
        target: "≥ 2.5×",
    });
    // Handshakes one server core can do (1 / CPU per handshake): unlike handshakes/s, this
    // does not depend on whether the load generator's core kept up.
    let value = ratio("handshake", "c", "f", |r| r.cpu_us_per_req);
    out.push(Ratio {
        name: "handshakes per server core-second gateway (f) ÷ nginx (c)".into(),
        meets: judge(&value, |v| v >= 2.5),
        value,
        unit: "×",
        target: "≥ 2.5×",
    });
    let value = find(medians, "rate20k", "f")
        .and_then(|f| Ok((f.p99_us - find(medians, "rate20k", "e")?.p99_us) / 1000.0));
    let mut name = String::from("added p99 at 20k req/s, gateway (f) − bare proxy (e)");
    for server in ["f", "e"] {
        if find(medians, "rate20k", server).is_ok_and(|r| matches!(r.status, Status::Overloaded(_)))
        {
            let _ = write!(
                name,
                " [({server}) could not sustain 20k req/s: its p99 is queueing]"
            );
        }
    }
    out.push(Ratio {
        name,
        meets: judge(&value, |v| v < 0.5),
        value,
        unit: "ms",
        target: "< 0.5 ms",
    });
    out
}

/// Replaces the text between the lines `begin` and `end` (kept) with `body`; `None` when
/// the markers are missing or out of order.
pub fn replace_between(text: &str, begin: &str, end: &str, body: &str) -> Option<String> {
    let start = text.find(begin)? + begin.len();
    let stop = start + text[start..].find(end)?;
    let mut out = String::with_capacity(text.len() + body.len());
    out.push_str(&text[..start]);
    out.push('\n');
    out.push_str(body.trim_end_matches('\n'));
    out.push('\n');
    out.push_str(&text[stop..]);
    Some(out)
}

/// The proleptic Gregorian date `(year, month, day)` of a count of days since 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD` (UTC) of a Unix time in seconds.
pub fn date_string(unix_secs: u64) -> String {
    let (y, m, d) = civil_from_days((unix_secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Latency, ProcUsage};

    fn report(rps: f64, cpu_s: f64, p99: f64) -> LoadReport {
        LoadReport {
            mode: "keepalive".into(),
            connections: 32,
            duration_s: 1.0,
            requests: rps as u64,
            ok: rps as u64,
            rps,
            latency_us: Latency {
                p50: p99 / 2.0,
                p99,
                p999: p99 * 2.0,
                ..Latency::default()
            },
            server: ProcUsage {
                cpu_s,
                peak_rss_kib: 2048,
                ..ProcUsage::default()
            },
            resp_bytes_mean: 1024.0,
            ..LoadReport::default()
        }
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[f64::NAN, 5.0]), 5.0);
    }

    #[test]
    fn measured_rows_take_their_status_from_the_counts() {
        let ok = Row::measured("c32", "f", 1, &report(1000.0, 0.5, 100.0), "");
        assert_eq!(ok.status, Status::Ok);
        assert!((ok.cpu_us_per_req - 500.0).abs() < 1e-9);
        let mut bad = report(1000.0, 0.5, 100.0);
        bad.non_2xx = 3;
        bad.statuses.insert(429, 3);
        bad.statuses.insert(200, 997);
        let row = Row::measured("c32", "f", 1, &bad, "");
        assert_eq!(
            row.status,
            Status::Invalid("0 errors, 3 non-2xx [429×3]".into())
        );
        let mut late = report(1000.0, 0.5, 100.0);
        late.late = 7;
        assert!(matches!(
            Row::measured("rate20k", "f", 1, &late, "").status,
            Status::Overloaded(_)
        ));
        // So far beyond capacity that nothing scheduled in the window was answered.
        let swamped = LoadReport {
            late: 120_000,
            ..LoadReport::default()
        };
        assert!(matches!(
            Row::measured("rate20k", "f3", 1, &swamped, "").status,
            Status::Overloaded(_)
        ));
        assert_eq!(
            Row::measured("c32", "f", 1, &LoadReport::default(), "").status,
            Status::Invalid("no response in the window".into())
        );
    }

    #[test]
    fn medians_take_each_number_over_repetitions() {
        let rows = vec![
            Row::measured("c32", "c", 1, &report(100.0, 0.01, 50.0), "n"),
            Row::measured("c32", "f", 1, &report(300.0, 0.03, 90.0), ""),
            Row::measured("c32", "c", 2, &report(300.0, 0.02, 70.0), "n"),
            Row::measured("c32", "c", 3, &report(200.0, 0.09, 60.0), "n"),
            Row::unmeasured("c32", "f3", Some(1), Status::Skipped("no route".into())),
        ];
        let m = medians(&rows);
        assert_eq!(m.len(), 3);
        assert_eq!((m[0].server.as_str(), m[0].rep), ("c", None));
        assert_eq!(m[0].rps, 200.0);
        assert_eq!(m[0].p99_us, 60.0);
        assert_eq!(m[0].note, "n");
        // CPU/req is the median of the per-repetition values: 100, 66.7, 450 → 100.
        assert!((m[0].cpu_us_per_req - 100.0).abs() < 1e-6);
        assert_eq!(m[2].status, Status::Skipped("no route".into()));
    }

    #[test]
    fn one_invalid_repetition_makes_the_median_invalid() {
        let mut bad = report(100.0, 0.01, 50.0);
        bad.errors = 1;
        let rows = vec![
            Row::measured("c32", "c", 1, &report(100.0, 0.01, 50.0), ""),
            Row::measured("c32", "c", 2, &bad, ""),
        ];
        let m = medians(&rows);
        assert!(matches!(m[0].status, Status::Invalid(_)));
        assert_eq!(m[0].errors, 1);
        assert!(m[0].status.invalidates_run());
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        let rows = vec![
            Row::measured("c32", "c", 1, &report(100.0, 0.01, 50.0), "token, consent"),
            Row::unmeasured("c32", "f3", None, Status::Skipped("404, not there".into())),
        ];
        let csv = to_csv(&rows);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].split(',').count(), CSV_COLUMNS.len());
        assert!(
            lines[1]
                .starts_with("c32,c,1,ok,100,0,0,0,1.000,100.0,25.0,50.0,100.0,100.00,1.0,0.0,")
        );
        assert!(lines[1].ends_with(",0.0,2048,1024,\"token, consent\""));
        assert!(lines[2].starts_with("c32,f3,median,\"skipped: 404, not there\",0,"));
    }

    #[test]
    fn markdown_has_one_line_per_median_and_escapes_pipes() {
        let rows = vec![
            Row {
                rep: None,
                ..Row::measured("c32", "c", 1, &report(51_000.0, 0.98, 900.0), "")
            },
            Row::unmeasured("c32", "f3", None, Status::Skipped("a|b".into())),
        ];
        let md = to_markdown(&rows);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[2].starts_with(
            "| c32 | (c) nginx + bearer check + JSON access log | 51000 | 0.45 | 0.90 | 1.80 | 19.2 | 98 % | 0 % | 0 % | 2.0 | 1024 | ok |"
        ));
        assert!(lines[3].contains("skipped: a\\|b"));
    }

    #[test]
    fn ratios_compare_the_gateway_with_nginx_and_the_bare_proxy() {
        let mut rows = Vec::new();
        for (scenario, server, rps, cpu, p99) in [
            ("c32", "c", 50_000.0, 1.0, 500.0),
            ("c32", "e", 66_000.0, 0.95, 400.0),
            ("c32", "f", 40_000.0, 1.0, 700.0),
            ("handshake", "c", 1_600.0, 1.0, 0.0),
            ("handshake", "f", 4_800.0, 1.0, 0.0),
            ("rate20k", "e", 20_000.0, 0.3, 300.0),
            ("rate20k", "f", 20_000.0, 0.4, 600.0),
        ] {
            rows.push(Row {
                rep: None,
                ..Row::measured(scenario, server, 1, &report(rps, cpu, p99), "")
            });
        }
        let r = ratios(&rows);
        assert_eq!(r[0].value, Ok(0.8));
        assert_eq!(r[0].meets, Some(false));
        // CPU/req: 25 µs ÷ 20 µs.
        assert!((r[1].value.clone().unwrap() - 1.25).abs() < 1e-9);
        assert!(r[3].value.as_ref().unwrap_err().contains("not run"));
        let handshake = r
            .iter()
            .find(|x| x.name.starts_with("handshakes/s"))
            .unwrap();
        assert_eq!(handshake.value, Ok(3.0));
        assert_eq!(handshake.meets, Some(true));
        // CPU per handshake: nginx 1.0/1600 s, gateway 1.0/4800 s → the gateway does 3× more
        // per core-second.
        let capacity = r
            .iter()
            .find(|x| x.name.starts_with("handshakes per"))
            .unwrap();
        assert!((capacity.value.clone().unwrap() - 3.0).abs() < 1e-9);
        let added = r.last().unwrap();
        assert!((added.value.clone().unwrap() - 0.3).abs() < 1e-9);
        assert_eq!(added.meets, Some(true));
        assert!(added.to_string().contains("+0.300 ms"));
        assert!(!added.name.contains("queueing"));
        // A gateway that could not keep the rate is named as such.
        for row in rows
            .iter_mut()
            .filter(|r| r.scenario == "rate20k" && r.server == "f")
        {
            row.status = Status::Overloaded("12 late".into());
        }
        let added = ratios(&rows).pop().unwrap();
        assert!(
            added
                .name
                .ends_with("[(f) could not sustain 20k req/s: its p99 is queueing]")
        );
    }

    #[test]
    fn block_between_markers_is_replaced() {
        let text = "intro\n<!-- b -->\nold\n<!-- e -->\nrest\n";
        assert_eq!(
            replace_between(text, "<!-- b -->", "<!-- e -->", "new\n").unwrap(),
            "intro\n<!-- b -->\nnew\n<!-- e -->\nrest\n"
        );
        assert_eq!(
            replace_between("no markers", "<!-- b -->", "<!-- e -->", "x"),
            None
        );
        assert_eq!(
            replace_between("<!-- e --> <!-- b -->", "<!-- b -->", "<!-- e -->", "x"),
            None
        );
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(date_string(0), "1970-01-01");
        assert_eq!(date_string(951_782_400), "2000-02-29");
        assert_eq!(date_string(1_795_808_121), "2026-11-27");
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
