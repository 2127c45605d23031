//! The JSON report `loadgen` prints, which `run` reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hist::Histogram;

/// What one `loadgen` run measured over its timed window (warm-up excluded).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// `keepalive`, `handshake` or `rate`.
    pub mode: String,
    /// Connections (keep-alive and rate) or concurrent connection loops (handshake).
    pub connections: u32,
    /// Target rate in requests per second (rate mode), else 0.
    pub target_rate: u32,
    /// Length of the timed window, seconds.
    pub duration_s: f64,
    /// Responses completed in the window (any status).
    pub requests: u64,
    /// Responses with a 2xx status (and the expected one, when one was given).
    pub ok: u64,
    /// Responses with another status.
    pub non_2xx: u64,
    /// Failed connections, TLS handshakes, requests and timeouts.
    pub errors: u64,
    /// Rate mode: requests scheduled in the window that could not be sent before the drain
    /// deadline (the server could not keep up).
    pub late: u64,
    /// Count per status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Up to a few error messages, for the report.
    pub error_samples: Vec<String>,
    /// `requests / duration_s`.
    pub rps: f64,
    /// Latency percentiles; in rate mode measured from each request's scheduled send time.
    pub latency_us: Latency,
    /// Mean response body size, bytes.
    pub resp_bytes_mean: f64,
    /// CPU and memory of the server processes over the window.
    pub server: ProcUsage,
    /// CPU and memory of the upstream processes over the window.
    pub upstream: ProcUsage,
    /// CPU seconds the load generator itself used over the window.
    pub loadgen_cpu_s: f64,
    /// CPU seconds the whole machine was busy over the window (all cores, `/proc/stat`).
    pub machine_busy_s: f64,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// Percentiles of a nanosecond histogram, in microseconds.
    pub fn from_histogram(h: &Histogram) -> Latency {
        let us = |ns: u64| ns as f64 / 1_000.0;
        Latency {
            p50: us(h.quantile(0.50)),
            p90: us(h.quantile(0.90)),
            p99: us(h.quantile(0.99)),
            p999: us(h.quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1_000.0,
        }
    }
}

/// CPU time and memory of a group of processes over the timed window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcUsage {
    /// The processes (all their threads count).
    pub pids: Vec<u32>,
    /// `utime + stime` delta over the window, seconds, summed over `pids`.
    pub cpu_s: f64,
    /// The `stime` part of `cpu_s` (kernel: system calls, TCP, fsync), seconds.
    #[serde(default)]
    pub sys_s: f64,
    /// Sum over `pids` of `VmHWM` at the end of the window, KiB.
    pub peak_rss_kib: u64,
    /// Whether the peak was reset at the window's start (else it is the lifetime peak).
    pub peak_reset: bool,
}

impl LoadReport {
    /// Server CPU microseconds per completed request (0 when nothing completed).
    pub fn server_cpu_us_per_req(&self) -> f64 {
        per_request_us(self.server.cpu_s, self.requests)
    }

    /// Upstream CPU microseconds per completed request.
    pub fn upstream_cpu_us_per_req(&self) -> f64 {
        per_request_us(self.upstream.cpu_s, self.requests)
    }

    /// Share of one core the server used over the window, percent.
    pub fn server_busy_pct(&self) -> f64 {
        share_pct(self.server.cpu_s, self.duration_s)
    }

    /// Share of one core the load generator used over the window, percent.
    pub fn loadgen_busy_pct(&self) -> f64 {
        share_pct(self.loadgen_cpu_s, self.duration_s)
    }

    /// Share of one core used by processes outside the test (machine busy time minus server,
    /// upstream and load generator), percent: noise from other work on the machine.
    pub fn other_busy_pct(&self) -> f64 {
        let ours = self.server.cpu_s + self.upstream.cpu_s + self.loadgen_cpu_s;
        share_pct((self.machine_busy_s - ours).max(0.0), self.duration_s)
    }

    /// Whether every response was a success and nothing failed.
    pub fn is_clean(&self) -> bool {
        self.errors == 0 && self.non_2xx == 0 && self.requests > 0
    }
}

fn per_request_us(cpu_s: f64, requests: u64) -> f64 {
    if requests == 0 {
        0.0
    } else {
        cpu_s * 1e6 / requests as f64
    }
}

fn share_pct(cpu_s: f64, duration_s: f64) -> f64 {
    if duration_s <= 0.0 {
        0.0
    } else {
        cpu_s / duration_s * 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trips_through_json() {
        let mut report = LoadReport {
            mode: "keepalive".into(),
            connections: 32,
            duration_s: 2.0,
            requests: 100_000,
            ok: 100_000,
            rps: 50_000.0,
            ..LoadReport::default()
        };
        report.statuses.insert(200, 100_000);
        report.server = ProcUsage {
            pids: vec![1, 2],
            cpu_s: 1.9,
            sys_s: 0.4,
            peak_rss_kib: 10_240,
            peak_reset: true,
        };
        let text = serde_json::to_string(&report).unwrap();
        let back: LoadReport = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report);
        assert!((back.server_cpu_us_per_req() - 19.0).abs() < 1e-9);
        assert!((back.server_busy_pct() - 95.0).abs() < 1e-9);
        assert!(back.is_clean());
    }

    #[test]
    fn a_report_with_any_error_or_non_2xx_is_not_clean() {
        let base = LoadReport {
            requests: 10,
            ok: 10,
            ..LoadReport::default()
        };
        assert!(base.is_clean());
        assert!(
            !LoadReport {
                errors: 1,
                ..base.clone()
            }
            .is_clean()
        );
        assert!(
            !LoadReport {
                non_2xx: 1,
                ..base.clone()
            }
            .is_clean()
        );
        assert!(!LoadReport::default().is_clean());
        assert_eq!(LoadReport::default().server_cpu_us_per_req(), 0.0);
    }
}
