//! The servers compared, the load scenarios, and the plan of a quick or full run.

use std::time::Duration;

/// One server (or server arrangement) under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    /// Short id used in files and tables: `a` … `f4`.
    pub id: &'static str,
    /// What it is.
    pub label: &'static str,
    /// Whether it speaks mTLS (the handshake scenario needs it).
    pub tls: bool,
}

/// Every server, in the order they run.
pub const SERVERS: &[Server] = &[
    Server {
        id: "a",
        label: "upstream alone, plain HTTP (the floor)",
        tls: false,
    },
    Server {
        id: "b",
        label: "nginx mTLS reverse proxy",
        tls: true,
    },
    Server {
        id: "c",
        label: "nginx + bearer check + JSON access log",
        tls: true,
    },
    Server {
        id: "d",
        label: "rustls+hyper answering directly (the ceiling)",
        tls: true,
    },
    Server {
        id: "e",
        label: "rustls+hyper reverse proxy",
        tls: true,
    },
    Server {
        id: "f",
        label: "gateway full path: GET /v1/customers/{ref}/tags",
        tls: true,
    },
    Server {
        id: "f2",
        label: "gateway GET /v1/products?limit=20",
        tls: true,
    },
    Server {
        id: "f3",
        label: "gateway POST /v1/referral-codes",
        tls: true,
    },
    Server {
        id: "f4",
        label: "2 gateways sharing redis-server, full path",
        tls: true,
    },
];

/// The server with id `id`.
pub fn server(id: &str) -> Option<&'static Server> {
    SERVERS.iter().find(|s| s.id == id)
}

/// How load is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// Closed loop over `connections` keep-alive connections, one request in flight each.
    KeepAlive {
        /// Connections (= concurrency).
        connections: u32,
    },
    /// A new connection (full TLS 1.3 handshake, no resumption) per request, `connections`
    /// such loops at once.
    Handshake {
        /// Concurrent connection loops.
        connections: u32,
    },
    /// Open loop at a fixed rate over `connections` keep-alive connections; latency from
    /// each request's scheduled send time.
    Rate {
        /// Requests per second.
        rps: u32,
        /// Connections available to carry them.
        connections: u32,
    },
}

/// A load scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Short id: `c32`, `c256`, `handshake`, `rate20k`.
    pub id: &'static str,
    /// What it is.
    pub label: &'static str,
    /// The load.
    pub load: Load,
}

/// Every scenario, in the order they run against each server.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "c32",
        label: "keep-alive, 32 connections",
        load: Load::KeepAlive { connections: 32 },
    },
    Scenario {
        id: "c256",
        label: "keep-alive, 256 connections",
        load: Load::KeepAlive { connections: 256 },
    },
    Scenario {
        id: "handshake",
        label: "new connection per request (full TLS 1.3 handshake), 32 at once",
        load: Load::Handshake { connections: 32 },
    },
    Scenario {
        id: "rate20k",
        label: "fixed 20k req/s over 64 connections",
        load: Load::Rate {
            rps: 20_000,
            connections: 64,
        },
    },
];

/// The scenario with id `id`.
pub fn scenario(id: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.id == id)
}

/// What a run does and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Servers, in order.
    pub servers: Vec<&'static Server>,
    /// Scenarios, in order.
    pub scenarios: Vec<&'static Scenario>,
    /// Repetitions; servers are interleaved (a…f4, a…f4, …) and the median taken.
    pub reps: u32,
    /// Warm-up before each timed window (connections open, caches fill).
    pub warmup: Duration,
    /// The timed window.
    pub window: Duration,
}

impl Plan {
    /// `--quick`: one repetition of c32 and handshakes with short windows (< 3 minutes).
    pub fn quick() -> Plan {
        Plan {
            servers: SERVERS.iter().collect(),
            scenarios: ["c32", "handshake"]
                .iter()
                .filter_map(|id| scenario(id))
                .collect(),
            reps: 1,
            warmup: Duration::from_secs(1),
            window: Duration::from_secs(3),
        }
    }

    /// The full comparison: every scenario, three repetitions (< 20 minutes).
    pub fn full() -> Plan {
        Plan {
            servers: SERVERS.iter().collect(),
            scenarios: SCENARIOS.iter().collect(),
            reps: 3,
            warmup: Duration::from_millis(1_500),
            window: Duration::from_secs(6),
        }
    }

    /// Keeps only the servers and scenarios named (ids); unknown ids are errors.
    pub fn restrict(
        mut self,
        servers: Option<&[String]>,
        scenarios: Option<&[String]>,
    ) -> Result<Plan, String> {
        if let Some(ids) = servers {
            self.servers = ids
                .iter()
                .map(|id| server(id).ok_or_else(|| format!("unknown server {id:?}")))
                .collect::<Result<_, _>>()?;
        }
        if let Some(ids) = scenarios {
            self.scenarios = ids
                .iter()
                .map(|id| scenario(id).ok_or_else(|| format!("unknown scenario {id:?}")))
                .collect::<Result<_, _>>()?;
        }
        Ok(self)
    }

    /// Load runs this plan makes (a plain-HTTP server has no handshake run).
    pub fn load_runs(&self) -> u32 {
        let per_rep: usize = self
            .servers
            .iter()
            .map(|s| {
                self.scenarios
                    .iter()
                    .filter(|sc| applies(s, sc).is_ok())
                    .count()
            })
            .sum();
        per_rep as u32 * self.reps
    }

    /// The time the load runs take on a quiet machine (windows, warm-ups and an allowance
    /// per run for the idle check, connecting and draining), for the banner.
    pub fn estimate(&self) -> Duration {
        (self.warmup + self.window + Duration::from_millis(1_000)) * self.load_runs()
    }
}

/// Whether `scenario` can run against `server`; the reason when it cannot.
pub fn applies(server: &Server, scenario: &Scenario) -> Result<(), &'static str> {
    match scenario.load {
        Load::Handshake { .. } if !server.tls => Err("n/a: plain HTTP has no TLS handshake"),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_plan_fits_in_three_minutes_and_full_in_twenty() {
        let quick = Plan::quick();
        assert_eq!(quick.load_runs(), 17);
        assert!(
            quick.estimate() < Duration::from_secs(120),
            "{:?}",
            quick.estimate()
        );
        let full = Plan::full();
        assert_eq!(full.load_runs(), 3 * (9 * 4 - 1));
        assert!(
            full.estimate() < Duration::from_secs(16 * 60),
            "{:?}",
            full.estimate()
        );
    }

    #[test]
    fn restricting_keeps_the_given_order_and_rejects_unknown_ids() {
        let plan = Plan::full()
            .restrict(Some(&["f".into(), "c".into()]), Some(&["c256".into()]))
            .unwrap();
        let ids: Vec<_> = plan.servers.iter().map(|s| s.id).collect();
        assert_eq!(ids, ["f", "c"]);
        assert_eq!(plan.scenarios.len(), 1);
        assert_eq!(
            Plan::full().restrict(Some(&["z".into()]), None),
            Err("unknown server \"z\"".into())
        );
    }

    #[test]
    fn plain_http_skips_the_handshake_scenario() {
        let a = server("a").unwrap();
        let handshake = scenario("handshake").unwrap();
        assert!(applies(a, handshake).is_err());
        assert!(applies(server("f").unwrap(), handshake).is_ok());
        assert!(applies(a, scenario("c32").unwrap()).is_ok());
    }
}
