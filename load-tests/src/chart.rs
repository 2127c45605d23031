//! A hand-written SVG bar chart of the median rows: requests per second and server CPU
//! microseconds per request, one group of bars per server, one bar per scenario.

use std::fmt::Write as _;

use crate::results::Row;

const WIDTH: f64 = 960.0;
const PANEL_HEIGHT: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: &[&str] = &[
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1",
];

/// One panel: a metric of the rows.
struct Panel {
    title: &'static str,
    value: fn(&Row) -> f64,
    format: fn(f64) -> String,
}

/// The chart of `medians` as an SVG document; scenarios and servers in order of first
/// appearance, unmeasured pairs left as gaps.
pub fn bar_chart(title: &str, medians: &[Row]) -> String {
    let mut scenarios: Vec<&str> = Vec::new();
    let mut servers: Vec<&str> = Vec::new();
    for r in medians.iter().filter(|r| r.status.is_measured()) {
        if !scenarios.contains(&r.scenario.as_str()) {
            scenarios.push(&r.scenario);
        }
        if !servers.contains(&r.server.as_str()) {
            servers.push(&r.server);
        }
    }
    let panels = [
        Panel {
            title: "requests per second (higher is better)",
            value: |r| r.rps,
            format: |v| {
                if v >= 10_000.0 {
                    format!("{:.0}k", v / 1000.0)
                } else {
                    format!("{v:.0}")
                }
            },
        },
        Panel {
            title: "server CPU µs per request (lower is better)",
            value: |r| r.cpu_us_per_req,
            format: |v| format!("{v:.1}"),
        },
    ];
    let height = TOP + panels.len() as f64 * (PANEL_HEIGHT + BOTTOM) + 30.0;
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
    for (p, panel) in panels.iter().enumerate() {
        let y0 = TOP + p as f64 * (PANEL_HEIGHT + BOTTOM);
        draw_panel(&mut svg, panel, y0, medians, &scenarios, &servers);
    }
    // Legend.
    let legend_y = height - 18.0;
    for (i, scenario) in scenarios.iter().enumerate() {
        let x = LEFT + i as f64 * 130.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{legend_y}">{}</text>"#,
            legend_y - 10.0,
            COLOURS[i % COLOURS.len()],
            x + 16.0,
            escape(scenario)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn draw_panel(
    svg: &mut String,
    panel: &Panel,
    y0: f64,
    medians: &[Row],
    scenarios: &[&str],
    servers: &[&str],
) {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = PANEL_HEIGHT - 30.0;
    let base = y0 + PANEL_HEIGHT;
    let max = medians
        .iter()
        .filter(|r| r.status.is_measured())
        .map(|r| (panel.value)(r))
        .fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { plot_h / (max * 1.1) } else { 0.0 };
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{}" font-size="13">{}</text><line x1="{LEFT}" y1="{base}" x2="{}" y2="{base}" stroke="black"/>"#,
        y0 + 14.0,
        escape(panel.title),
        WIDTH - RIGHT
    );
    if servers.is_empty() {
        return;
    }
    let group_w = plot_w / servers.len() as f64;
    let bar_w = (group_w * 0.8 / scenarios.len().max(1) as f64).min(40.0);
    for (g, server) in servers.iter().enumerate() {
        let gx = LEFT + g as f64 * group_w;
        let used = bar_w * scenarios.len() as f64;
        let start = gx + (group_w - used) / 2.0;
        for (s, scenario) in scenarios.iter().enumerate() {
            let Some(row) = medians
                .iter()
                .find(|r| r.status.is_measured() && r.server == *server && r.scenario == *scenario)
            else {
                continue;
            };
            let value = (panel.value)(row);
            let h = value * scale;
            let x = start + s as f64 * bar_w;
            let _ = writeln!(
                svg,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{} {}: {}</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"#,
                base - h,
                bar_w - 2.0,
                COLOURS[s % COLOURS.len()],
                escape(server),
                escape(scenario),
                (panel.format)(value),
                x + bar_w / 2.0 - 1.0,
                base - h - 3.0,
                (panel.format)(value)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12">({})</text>"#,
            gx + group_w / 2.0,
            base + 16.0,
            escape(server)
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
    fn one_bar_per_measured_pair_in_each_panel() {
        let rows = vec![
            row("c32", "c", 50_000.0, 19.0),
            row("c32", "f", 40_000.0, 24.0),
            row("handshake", "c", 1_600.0, 600.0),
            Row::unmeasured("c32", "f3", None, Status::Skipped("404".into())),
        ];
        let svg = bar_chart("gateway <vs> nginx", &rows);
        assert!(svg.starts_with("<svg "));
        assert!(svg.trim_end().ends_with("</svg>"));
        // Background + 2 legend squares + 3 bars × 2 panels.
        assert_eq!(svg.matches("<rect").count(), 1 + 2 + 6);
        assert!(svg.contains("gateway &lt;vs&gt; nginx"));
        assert!(svg.contains(">50k<"));
        assert!(!svg.contains("(f3)"));
    }

    #[test]
    fn an_empty_chart_is_still_a_document() {
        let svg = bar_chart("empty", &[]);
        assert!(svg.contains("</svg>"));
        assert!(!svg.contains("NaN"));
    }
}
