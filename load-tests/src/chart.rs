//! A hand-written SVG bar chart of the median rows: one row of panels per scenario, with
//! requests per second on the left and server CPU microseconds per request on the right,
//! each panel on its own scale (keep-alive and handshake figures differ by 100×), one bar
//! per server.

use std::fmt::Write as _;

use crate::results::Row;

const WIDTH: f64 = 980.0;
const PANEL_W: f64 = 470.0;
const PANEL_H: f64 = 210.0;
const GAP: f64 = 40.0;
const TOP: f64 = 40.0;
const AXIS: f64 = 22.0;

/// Bar colour of a server: the references in greys and blues, the gateway in orange.
fn colour(server: &str) -> &'static str {
    match server {
        "a" => "#9e9e9e",
        "b" | "c" => "#59a14f",
        "d" | "e" => "#4e79a7",
        _ => "#f28e2b",
    }
}

/// One metric of a row.
struct Metric {
    title: &'static str,
    value: fn(&Row) -> f64,
    format: fn(f64) -> String,
}

const METRICS: [Metric; 2] = [
    Metric {
        title: "req/s (higher is better)",
        value: |r| r.rps,
        format: |v| {
            if v >= 10_000.0 {
                format!("{:.0}k", v / 1000.0)
            } else {
                format!("{v:.0}")
            }
        },
    },
    Metric {
        title: "server CPU µs/req (lower is better)",
        value: |r| r.cpu_us_per_req,
        format: |v| {
            if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        },
    },
];

/// The chart of `medians` as an SVG document; scenarios and servers in order of first
/// appearance (scenarios with no measurement at all left out), unmeasured pairs left out.
pub fn bar_chart(title: &str, medians: &[Row]) -> String {
    let measured: Vec<&Row> = medians.iter().filter(|r| r.status.is_measured()).collect();
    // Scenarios in the order they ran (a server without one must not reorder them).
    let mut scenarios: Vec<&str> = Vec::new();
    for r in medians {
        if !scenarios.contains(&r.scenario.as_str())
            && measured.iter().any(|m| m.scenario == r.scenario)
        {
            scenarios.push(&r.scenario);
        }
    }
    let height = TOP + scenarios.len().max(1) as f64 * (PANEL_H + GAP) + 10.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    for (i, scenario) in scenarios.iter().enumerate() {
        let rows: Vec<&Row> = measured
            .iter()
            .copied()
            .filter(|r| r.scenario == *scenario)
            .collect();
        let y = TOP + i as f64 * (PANEL_H + GAP);
        for (j, metric) in METRICS.iter().enumerate() {
            let x = 10.0 + j as f64 * (PANEL_W + 20.0);
            panel(&mut svg, x, y, scenario, metric, &rows);
        }
    }
    svg.push_str("</svg>\n");
    svg
}

fn panel(svg: &mut String, x0: f64, y0: f64, scenario: &str, metric: &Metric, rows: &[&Row]) {
    let base = y0 + PANEL_H - AXIS;
    let plot_h = PANEL_H - AXIS - 34.0;
    let _ = writeln!(
        svg,
        r#"<text x="{x0}" y="{}" font-size="12" font-weight="bold">{} — {}</text><line x1="{x0}" y1="{base}" x2="{}" y2="{base}" stroke="black"/>"#,
        y0 + 12.0,
        escape(scenario),
        escape(metric.title),
        x0 + PANEL_W
    );
    let max = rows
        .iter()
        .map(|r| (metric.value)(r))
        .fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { plot_h / max } else { 0.0 };
    let slot = PANEL_W / rows.len().max(1) as f64;
    let bar_w = (slot * 0.7).min(44.0);
    for (k, row) in rows.iter().enumerate() {
        let value = (metric.value)(row);
        let h = value * scale;
        let x = x0 + k as f64 * slot + (slot - bar_w) / 2.0;
        let label = (metric.format)(value);
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="{:.1}" width="{bar_w:.1}" height="{h:.1}" fill="{}"><title>({}) {}: {}</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">({})</text>"#,
            base - h,
            colour(&row.server),
            escape(&row.server),
            escape(scenario),
            label,
            x + bar_w / 2.0,
            base - h - 3.0,
            label,
            x + bar_w / 2.0,
            base + 15.0,
            escape(&row.server)
        );
    }
}

/// Escapes text for SVG content.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Status;

    fn row(scenario: &str, server: &str, rps: f64, cpu: f64) -> Row {
        Row {
            rps,
            cpu_us_per_req: cpu,
            ..Row::unmeasured(scenario, server, None, Status::Ok)
        }
    }

    #[test]
    fn one_bar_per_measured_pair_in_each_metric_panel() {
        let rows = vec![
            row("c32", "c", 50_000.0, 19.0),
            row("c32", "f", 40_000.0, 24.0),
            row("handshake", "c", 1_600.0, 600.0),
            Row::unmeasured("c32", "f3", None, Status::Skipped("404".into())),
        ];
        let svg = bar_chart("gateway <vs> nginx", &rows);
        assert!(svg.starts_with("<svg "));
        assert!(svg.trim_end().ends_with("</svg>"));
        // Background + 3 measured pairs × 2 metrics.
        assert_eq!(svg.matches("<rect").count(), 1 + 3 * 2);
        assert!(svg.contains("gateway &lt;vs&gt; nginx"));
        assert!(svg.contains(">50k<"));
        assert!(svg.contains(">600<"));
        assert!(!svg.contains("(f3)"));
        // The gateway stands out.
        assert!(svg.contains(r##"fill="#f28e2b"><title>(f) c32"##));
    }

    #[test]
    fn scenarios_keep_their_run_order_when_the_first_server_lacks_one() {
        let rows = vec![
            row("c32", "a", 1.0, 1.0),
            Row::unmeasured("handshake", "a", None, Status::Skipped("n/a".into())),
            row("rate20k", "a", 1.0, 1.0),
            row("c32", "b", 1.0, 1.0),
            row("handshake", "b", 1.0, 1.0),
            row("rate20k", "b", 1.0, 1.0),
        ];
        let svg = bar_chart("order", &rows);
        let c32 = svg.find(">c32 — req/s").unwrap();
        let handshake = svg.find(">handshake — req/s").unwrap();
        let rate = svg.find(">rate20k — req/s").unwrap();
        assert!(c32 < handshake && handshake < rate);
    }

    #[test]
    fn an_empty_chart_is_still_a_document() {
        let svg = bar_chart("empty", &[]);
        assert!(svg.contains("</svg>"));
        assert!(!svg.contains("NaN"));
    }
}
