//! The HTML rendering of the report (docs/report.md): one self-contained page — styles
//! inline, charts as SVG drawn here, no script, no font or image fetched — from the same
//! model as the JSON and Markdown. The page is an askama template compiled into nines
//! (`templates/report.html`).

use askama::Template;
use serde_json::{Map, Value};

use crate::dora_cmd;
use crate::report_cmd::{self, objects};
use crate::rows;

/// A table of the page: its header and rows of cells (text, CSS class).
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<(String, String)>>,
}

impl Table {
    /// The `header` columns of `rows`; a cell's class is its column name, and the `status`
    /// and tier columns carry their value as a class too (the badges).
    fn of(header: &[&str], rows: &[Map<String, Value>]) -> Self {
        let badge =
            |h: &str| h == "status" || dora_cmd::TIER_HEADER[2..].contains(&h) || h == "flagged";
        Self {
            header: header.iter().map(|h| h.replace('_', " ")).collect(),
            rows: rows
                .iter()
                .map(|r| {
                    header
                        .iter()
                        .map(|h| {
                            let text = rows::cell(r.get(*h));
                            let class = if badge(h) {
                                format!("{h} badge b-{text}")
                            } else {
                                (*h).to_owned()
                            };
                            (text, class)
                        })
                        .collect()
                })
                .collect(),
        }
    }
}

/// One objective's block.
struct SloView {
    title: String,
    facts: Vec<(String, String)>,
    status: String,
    alerts: Vec<String>,
    charts: Vec<String>,
}

/// One service's section.
struct ServiceView {
    name: String,
    status: String,
    slos: Vec<SloView>,
}

#[derive(Template)]
#[template(path = "report.html")]
struct Page {
    from: String,
    to: String,
    generated: String,
    version: String,
    summary: Table,
    services: Vec<ServiceView>,
    deploys: Table,
    dora: Table,
    tiers: Table,
    tier_source: String,
    failed: Table,
    weekly_chart: String,
    weeks: Table,
    slas: Table,
    gate_counts: Table,
    gate_held: Table,
    slo_files: Vec<(String, String)>,
    tables: Vec<(String, String)>,
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| "-".to_owned(), str::to_owned)
}

/// Seconds since the epoch of an RFC 3339 value.
fn seconds(v: &Value) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|d| d.timestamp())
}

/// The page of a report model.
pub(crate) fn render(m: &Value) -> anyhow::Result<String> {
    let p = &m["provenance"];
    let (from, to) = (
        seconds(&p["from"]).unwrap_or(0),
        seconds(&p["to"]).unwrap_or(0),
    );
    let services: Vec<ServiceView> = objects(&m["services"])
        .iter()
        .map(|svc| {
            let markers: Vec<Marker> = objects(&svc["deploys"])
                .iter()
                .filter_map(|d| {
                    Some(Marker {
                        at: seconds(&d["deployed_at"])?,
                        label: format!("{} {}", text(&d["version"]), text(&d["environment"])),
                        flagged: flagged(m, &text(&svc["service"]), d),
                    })
                })
                .collect();
            ServiceView {
                name: text(&svc["service"]),
                status: text(&svc["status"]),
                slos: objects(&svc["slos"])
                    .iter()
                    .map(|slo| slo_view(slo, (from, to), &markers))
                    .collect(),
            }
        })
        .collect();
    let weeks = objects(&m["dora"]["weeks"]);
    let weekly_chart = bars(
        "Deployments per week (failed in red)",
        &weeks
            .iter()
            .map(|w| {
                let week = text(&w["week"]);
                let n = w["deployments"].as_f64().unwrap_or(0.0);
                let failed = n * w["change_fail_rate"].as_f64().unwrap_or(0.0);
                (week.get(5..10).unwrap_or(&week).to_owned(), n, failed)
            })
            .collect::<Vec<_>>(),
    );
    let page = Page {
        from: text(&p["from"]),
        to: text(&p["to"]),
        generated: text(&p["generated_at"]),
        version: text(&p["nines_version"]),
        summary: Table::of(&report_cmd::SUMMARY_HEADER, &report_cmd::summary_rows(m)),
        services,
        deploys: Table::of(&dora_cmd::BURN_HEADER, &objects(&m["deploys"])),
        dora: Table::of(&dora_cmd::HEADER, &objects(&m["dora"]["metrics"])),
        tiers: Table::of(
            &dora_cmd::TIER_HEADER,
            &objects(&m["dora"]["tiers"]["rows"]),
        ),
        tier_source: text(&m["dora"]["tiers"]["source"]),
        failed: Table::of(
            &dora_cmd::FAILED_HEADER,
            &objects(&m["dora"]["failed_deployments"]),
        ),
        weekly_chart,
        weeks: Table::of(&dora_cmd::WEEK_HEADER, &weeks),
        slas: Table::of(
            &crate::sla_cmd::SUMMARY_HEADER,
            &crate::sla_cmd::summary_rows(m["slas"].as_array().map_or(&[], Vec::as_slice)),
        ),
        gate_counts: Table::of(
            &crate::release_cmd::GATE_COUNT_HEADER,
            &objects(&m["gate"]["counts"]),
        ),
        gate_held: Table::of(
            &crate::release_cmd::GATE_HELD_HEADER,
            &objects(&m["gate"]["held"]),
        ),
        slo_files: objects(&p["slo_files"])
            .iter()
            .map(|f| (text(&f["path"]), text(&f["sha256"])))
            .collect(),
        tables: p["table_versions"]
            .as_object()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
            .unwrap_or_default(),
    };
    Ok(page.render()?)
}

/// Whether the deploys table flags this deploy of `service`.
fn flagged(m: &Value, service: &str, d: &Map<String, Value>) -> bool {
    objects(&m["deploys"]).iter().any(|r| {
        r["service"] == service
            && r["deployed_at"] == d["deployed_at"]
            && r["version"] == d["version"]
            && r["flagged"] == true
    })
}

fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |f| format!("{:.3} %", f * 100.0))
}

fn slo_view(slo: &Map<String, Value>, range: (i64, i64), markers: &[Marker]) -> SloView {
    let target = slo["target"].as_f64();
    let facts = vec![
        ("target".to_owned(), pct(&slo["target"])),
        ("method".to_owned(), text(&slo["method"])),
        ("window".to_owned(), text(&slo["window"])),
        ("SLI".to_owned(), pct(&slo["sli"])),
        ("budget".to_owned(), rows::cell(slo.get("budget_total"))),
        ("consumed".to_owned(), pct(&slo["consumed"])),
        ("remaining".to_owned(), pct(&slo["remaining"])),
    ];
    let alerts = slo["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{} ({}): {} to {}",
                text(&a["alert"]),
                text(&a["severity"]),
                text(&a["start"]),
                a["end"].as_str().unwrap_or("still firing")
            )
        })
        .collect();
    let history = objects(&slo["history"]);
    let at: Vec<Option<i64>> = history.iter().map(|h| seconds(&h["time"])).collect();
    let series = |f: &dyn Fn(&Map<String, Value>) -> Option<f64>| -> Vec<(i64, Option<f64>)> {
        history
            .iter()
            .zip(&at)
            .filter_map(|(h, t)| Some(((*t)?, f(h))))
            .collect()
    };
    let mut charts = Vec::new();
    if !history.is_empty() {
        charts.push(
            Chart {
                title: "SLI against target",
                range,
                lines: vec![Line {
                    name: "SLI".into(),
                    class: "l0",
                    points: series(&|h| h["sli"].as_f64()),
                }],
                rules: target
                    .map(|t| (t, format!("target {}", pct(&t.into())), "target"))
                    .into_iter()
                    .collect(),
                markers,
                percent: true,
            }
            .svg(),
        );
        charts.push(
            Chart {
                title: "Error budget remaining",
                range,
                lines: vec![Line {
                    name: "remaining".into(),
                    class: "l1",
                    points: series(&|h| h["remaining"].as_f64()),
                }],
                rules: vec![(0.0, "exhausted".into(), "target")],
                markers,
                percent: true,
            }
            .svg(),
        );
        let thresholds = objects(&slo["burn_thresholds"]);
        let mut windows: Vec<String> = thresholds.iter().map(|t| text(&t["window"])).collect();
        windows.dedup();
        charts.push(
            Chart {
                title: "Peak burn rate per window",
                range,
                lines: windows
                    .iter()
                    .enumerate()
                    .map(|(i, w)| Line {
                        name: w.clone(),
                        class: ["l0", "l1", "l2", "l3"][i % 4],
                        points: series(&|h| h["burn"][w.as_str()].as_f64()),
                    })
                    .collect(),
                rules: thresholds
                    .iter()
                    .filter_map(|t| {
                        Some((
                            t["factor"].as_f64()?,
                            format!(
                                "{}× {} {}",
                                rows::cell(t.get("factor")),
                                text(&t["window"]),
                                text(&t["severity"])
                            ),
                            "threshold",
                        ))
                    })
                    .collect(),
                markers,
                percent: false,
            }
            .svg(),
        );
    }
    SloView {
        title: format!("{} · {}", text(&slo["slo"]), text(&slo["objective"])),
        facts,
        status: text(&slo["status"]),
        alerts,
        charts,
    }
}

/// A deploy marker on a chart.
struct Marker {
    at: i64,
    label: String,
    flagged: bool,
}

/// A line of a chart: its points (a gap where a value is missing).
struct Line {
    name: String,
    class: &'static str,
    points: Vec<(i64, Option<f64>)>,
}

/// A time chart: lines over `range`, horizontal rules (value, label, class), deploy
/// markers.
struct Chart<'a> {
    title: &'static str,
    range: (i64, i64),
    lines: Vec<Line>,
    rules: Vec<(f64, String, &'static str)>,
    markers: &'a [Marker],
    percent: bool,
}

const W: f64 = 600.0;
const H: f64 = 210.0;
const LEFT: f64 = 58.0;
const RIGHT: f64 = 100.0;
const TOP: f64 = 26.0;
const BOTTOM: f64 = 26.0;

/// XML text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Chart<'_> {
    fn svg(&self) -> String {
        let (from, to) = self.range;
        let span = (to - from).max(1) as f64;
        let values = self
            .lines
            .iter()
            .flat_map(|l| l.points.iter().filter_map(|p| p.1))
            .chain(self.rules.iter().map(|r| r.0));
        let (mut lo, mut hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if !self.percent {
            lo = lo.min(0.0);
        }
        let pad = ((hi - lo) * 0.08).max(1e-6);
        // A rate axis starts at 0; a ratio axis gets room below its lowest value.
        let (lo, hi) = (if self.percent { lo - pad } else { lo }, hi + pad);
        let plot_w = W - LEFT - RIGHT;
        let plot_h = H - TOP - BOTTOM;
        let x = |t: i64| LEFT + (t - from) as f64 / span * plot_w;
        let y = |v: f64| TOP + (hi - v) / (hi - lo) * plot_h;
        let label = |v: f64| {
            if self.percent {
                format!("{:.2}%", v * 100.0)
            } else {
                format!("{v:.1}")
            }
        };
        let points: usize = self
            .lines
            .iter()
            .map(|l| l.points.iter().filter(|p| p.1.is_some()).count())
            .sum();
        let mut s = format!(
            "<svg class=\"chart\" data-points=\"{points}\" viewBox=\"0 0 {W} {H}\" \
             xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{t}\">\
             <text class=\"title\" x=\"{LEFT}\" y=\"16\">{t}</text>\
             <rect class=\"plot\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\"/>",
            t = esc(self.title)
        );
        for k in 0..=4 {
            let v = lo + (hi - lo) * f64::from(k) / 4.0;
            s += &format!(
                "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
                 <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT + plot_w,
                LEFT - 4.0,
                y(v) + 3.0,
                label(v),
                y = y(v)
            );
        }
        for k in 0..=4 {
            let t = from + (to - from) * k / 4;
            let when = chrono::DateTime::from_timestamp(t, 0).map_or_else(String::new, |d| {
                if to - from > 2 * 86_400 {
                    d.format("%b %d").to_string()
                } else {
                    d.format("%d %H:%M").to_string()
                }
            });
            s += &format!(
                "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{when}</text>",
                x(t),
                H - 8.0
            );
        }
        for (v, name, class) in &self.rules {
            s += &format!(
                "<line class=\"{class}\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{yv:.1}\" y2=\"{yv:.1}\"/>\
                 <text class=\"rule\" x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                LEFT + plot_w,
                LEFT + plot_w + 4.0,
                y(*v) + 3.0,
                esc(name),
                yv = y(*v),
            );
        }
        for m in self.markers {
            let class = if m.flagged {
                "deploy flagged"
            } else {
                "deploy"
            };
            s += &format!(
                "<g class=\"{class}\"><title>deploy {}</title>\
                 <line x1=\"{xm:.1}\" x2=\"{xm:.1}\" y1=\"{TOP}\" y2=\"{:.1}\"/>\
                 <path d=\"M{:.1} {TOP} l4 -6 h-8 z\"/></g>",
                esc(&m.label),
                TOP + plot_h,
                x(m.at) + 4.0,
                xm = x(m.at),
            );
        }
        for l in &self.lines {
            let mut segment = Vec::new();
            let mut segments = Vec::new();
            for (t, v) in &l.points {
                match v {
                    Some(v) => segment.push(format!("{:.1},{:.1}", x(*t), y(*v))),
                    None => segments.push(std::mem::take(&mut segment)),
                }
            }
            segments.push(segment);
            s += &format!(
                "<g class=\"series {}\"><title>{}</title>",
                l.class,
                esc(&l.name)
            );
            for seg in segments.iter().filter(|s| !s.is_empty()) {
                s += &format!("<polyline points=\"{}\"/>", seg.join(" "));
            }
            for (t, v) in &l.points {
                if let Some(v) = v {
                    s += &format!(
                        "<circle class=\"pt\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.6\"/>",
                        x(*t),
                        y(*v)
                    );
                }
            }
            s += "</g>";
        }
        // The legend, right-aligned on the title's line.
        let legend: Vec<String> = self
            .lines
            .iter()
            .map(|l| {
                format!(
                    "<tspan class=\"legend {}\">■ {}</tspan>",
                    l.class,
                    esc(&l.name)
                )
            })
            .collect();
        s += &format!(
            "<text x=\"{:.1}\" y=\"16\" text-anchor=\"end\">{}</text>",
            LEFT + plot_w,
            legend.join(" ")
        );
        s + "</svg>"
    }
}

/// A bar chart of (label, value, part in red) per bar.
fn bars(title: &str, data: &[(String, f64, f64)]) -> String {
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let hi = data.iter().map(|d| d.1).fold(1.0_f64, f64::max);
    let slot = plot_w / data.len().max(1) as f64;
    let mut s = format!(
        "<svg class=\"chart\" data-points=\"{}\" viewBox=\"0 0 {W} {H}\" \
         xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{t}\">\
         <text class=\"title\" x=\"{LEFT}\" y=\"16\">{t}</text>\
         <rect class=\"plot\" x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\"/>",
        data.len(),
        t = esc(title)
    );
    for k in 0..=4 {
        let v = hi * f64::from(k) / 4.0;
        let y = TOP + plot_h - v / hi * plot_h;
        s += &format!(
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.1}</text>",
            LEFT + plot_w,
            LEFT - 4.0,
            y + 3.0
        );
    }
    for (i, (label, v, failed)) in data.iter().enumerate() {
        let x = LEFT + slot * i as f64 + slot * 0.15;
        let w = slot * 0.7;
        let h = v / hi * plot_h;
        let hf = failed / hi * plot_h;
        s += &format!(
            "<g><title>week of {} : {} deployments, {} failed</title>\
             <rect class=\"pt bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{h:.1}\"/>\
             <rect class=\"bar failed\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{hf:.1}\"/></g>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            esc(label),
            v,
            failed.round(),
            TOP + plot_h - h,
            TOP + plot_h - hf,
            x + w / 2.0,
            H - 8.0,
            esc(label)
        );
    }
    s + "</svg>"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_in_the_data_breaks_the_line_and_every_value_is_a_point() {
        let chart = Chart {
            title: "t <&>",
            range: (0, 300),
            lines: vec![Line {
                name: "a".into(),
                class: "l0",
                points: vec![
                    (0, Some(1.0)),
                    (60, Some(0.5)),
                    (120, None),
                    (180, Some(0.7)),
                ],
            }],
            rules: vec![(0.9, "target".into(), "target")],
            markers: &[Marker {
                at: 60,
                label: "v2 prod".into(),
                flagged: true,
            }],
            percent: true,
        }
        .svg();
        assert_eq!(chart.matches("<polyline").count(), 2, "{chart}");
        assert_eq!(chart.matches("class=\"pt\"").count(), 3, "{chart}");
        assert!(chart.contains("data-points=\"3\""), "{chart}");
        assert!(chart.contains("t &lt;&amp;&gt;"), "{chart}");
        assert!(chart.contains("class=\"deploy flagged\""), "{chart}");
        // The marker at 60 s of 300 s sits a fifth of the way along the plot.
        let x = LEFT + (W - LEFT - RIGHT) / 5.0;
        assert!(chart.contains(&format!("x1=\"{x:.1}\"")), "{chart}");
    }
}
