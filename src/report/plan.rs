//! Renderers of a plan (`kfsim plan --out`): the staffing curve of each
//! target (mean and 95 % interval per value tried, the target line, the
//! recommendation and the knee marked), the intraday staffing as a chart,
//! and `plan.html`.

use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::charts::{Chart, DrawResult, Drawable, FONT, err, hover, legend, note_axes, palette, render};
use crate::gate::{self, MetricUnit};
use crate::plan::{Decision, Outcome, PlanReport, TargetInfo};

/// How a metric is shown on an axis: (scale from its unit, unit label).
pub fn display_unit(path: &str, max: f64) -> (f64, &'static str) {
    match gate::unit_of(path) {
        MetricUnit::Ms if max >= 180_000.0 => (1.0 / 60_000.0, "min"),
        MetricUnit::Ms if max >= 2_000.0 => (1e-3, "s"),
        MetricUnit::Ms => (1.0, "ms"),
        MetricUnit::S => (1.0, "s"),
        MetricUnit::Plain if crate::stats::Scale::of(path) == crate::stats::Scale::Share => (100.0, "%"),
        MetricUnit::Plain => (1.0, ""),
    }
}

fn short(path: &str) -> &str {
    path.strip_prefix("latency_ms.").unwrap_or(path)
}

struct Curve<'a> {
    plan: &'a PlanReport,
    target: &'a TargetInfo,
}

impl Drawable for Curve<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<()> {
        let Some(Outcome::Recommended(rec)) = &self.plan.outcome else { return Ok(()) };
        let path = &self.target.path;
        let pts: Vec<(f64, f64, f64, f64, Decision)> = rec
            .curve
            .iter()
            .filter_map(|e| {
                let m = e.metrics.get(path).copied().flatten()?;
                Some((f64::from(e.value), m.mean, m.lo, m.hi, e.decision))
            })
            .collect();
        let max = pts.iter().map(|p| p.3).fold(self.target.threshold, f64::max);
        let (k, unit) = display_unit(path, max);
        let (x0, x1) =
            pts.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let pad = ((x1 - x0) * 0.04).max(0.5);
        let ys = pts.iter().flat_map(|p| [p.2, p.3]).chain([self.target.threshold]).map(|v| v * k);
        let (y0, y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        let ypad = ((y1 - y0) * 0.08).max(1e-6);
        let share = unit == "%";
        let (ylo, yhi) = if share {
            ((y0 - ypad).max(0.0), (y1 + ypad).min(100.0))
        } else {
            ((y0 - ypad).max(0.0), y1 + ypad)
        };
        let caption = format!("{} vs {} — {}", short(path), self.plan.path, self.plan.scenario);
        let mut chart = ChartBuilder::on(root)
            .caption(&caption, (FONT, 18))
            .margin(12)
            .margin_right(24)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d((x0 - pad)..(x1 + pad), ylo..yhi)
            .map_err(err)?;
        note_axes(&caption, (x0 - pad, x1 + pad), (ylo, yhi), false, k);
        chart
            .configure_mesh()
            .x_desc(self.plan.path.as_str())
            .y_desc(if unit.is_empty() {
                short(path).to_owned()
            } else {
                format!("{} [{unit}]", short(path))
            })
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(err)?;
        let colour = palette(0);
        let mut band: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.3 * k)).collect();
        band.extend(pts.iter().rev().map(|p| (p.0, p.2 * k)));
        chart.draw_series(std::iter::once(Polygon::new(band, colour.mix(0.18).filled()))).map_err(err)?;
        chart
            .draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1 * k)), colour.stroke_width(2)))
            .map_err(err)?
            .label("simulation: mean and 95% interval")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        let red = RGBColor(214, 39, 40);
        chart
            .draw_series(DashedLineSeries::new(
                [(x0 - pad, self.target.threshold * k), (x1 + pad, self.target.threshold * k)],
                6,
                4,
                red.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("target {}", self.target.text))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], red.stroke_width(2)));
        for p in &pts {
            let fill = match p.4 {
                Decision::Meets => RGBColor(44, 160, 44),
                Decision::Misses => red,
                Decision::Unclear => RGBColor(150, 150, 150),
            };
            chart.draw_series(std::iter::once(Circle::new((p.0, p.1 * k), 4, fill.filled()))).map_err(err)?;
            let f = |v: f64| fmt_unit(v * k, unit);
            hover(
                &chart,
                (p.0, p.1 * k),
                format!("{} = {}: {} [{}, {}] {:?}", self.plan.path, p.0, f(p.1), f(p.2), f(p.3), p.4)
                    .to_lowercase(),
            );
        }
        let mark = |v: u32| pts.iter().find(|p| p.0 == f64::from(v)).map(|p| (p.0, p.1 * k));
        if let Some(at) = mark(rec.at.value) {
            chart
                .draw_series(std::iter::once(Circle::new(at, 9, BLACK.stroke_width(2))))
                .map_err(err)?
                .label(format!("recommended: {}", rec.at.value))
                .legend(|(x, y)| Circle::new((x + 9, y), 6, BLACK.stroke_width(2)));
        }
        if let Some(at) = self.plan.knee.and_then(mark) {
            let purple = RGBColor(148, 103, 189);
            chart
                .draw_series(std::iter::once(TriangleMarker::new(at, 9, purple.filled())))
                .map_err(err)?
                .label(format!("knee: {}", self.plan.knee.unwrap_or_default()))
                .legend(move |(x, y)| TriangleMarker::new((x + 9, y), 6, purple.filled()));
        }
        legend(
            &mut chart,
            if self.target.wants_more {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperRight
            },
        )
    }
}

fn fmt_unit(v: f64, unit: &str) -> String {
    match unit {
        "%" => format!("{v:.1}%"),
        "" => format!("{v:.4}"),
        u => format!("{v:.1} {u}"),
    }
}

struct Intraday<'a> {
    plan: &'a PlanReport,
}

impl Drawable for Intraday<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<()> {
        let rows = &self.plan.per_interval;
        let h_end = rows.last().map_or(1.0, |r| r.end_s / 3600.0);
        let staff: Vec<(f64, f64, u32)> = rows
            .iter()
            .filter_map(|r| r.recommended().map(|n| (r.start_s / 3600.0, r.end_s / 3600.0, n)))
            .collect();
        let y_max =
            rows.iter().flat_map(|r| [r.recommended(), r.erlang()]).flatten().max().unwrap_or(1).max(1)
                as f64
                * 1.12;
        let caption = format!("Agents needed per interval — {}", self.plan.scenario);
        let chart = ChartBuilder::on(root)
            .caption(&caption, (FONT, 18))
            .margin(12)
            .margin_right(24)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .right_y_label_area_size(64)
            .build_cartesian_2d(0.0..h_end, 0.0..y_max)
            .map_err(err)?;
        let a_max = rows.iter().map(|r| r.arrivals_per_min).fold(0.0, f64::max).max(1e-9) * 1.12;
        let mut chart = chart.set_secondary_coord(0.0..h_end, 0.0..a_max);
        note_axes(&caption, (0.0, h_end), (0.0, y_max), false, 1.0);
        chart
            .configure_mesh()
            .x_desc("scenario time [h]")
            .y_desc(format!("{} (recommended)", self.plan.path))
            .y_label_formatter(&|y| if y.fract() == 0.0 { format!("{y:.0}") } else { String::new() })
            .draw()
            .map_err(err)?;
        chart.configure_secondary_axes().y_desc("arrivals / min").draw().map_err(err)?;
        let grey = RGBColor(170, 170, 170);
        chart
            .draw_secondary_series(rows.iter().map(|r| {
                Rectangle::new(
                    [(r.start_s / 3600.0, 0.0), (r.end_s / 3600.0, r.arrivals_per_min)],
                    grey.mix(0.35).filled(),
                )
            }))
            .map_err(err)?
            .label("arrivals / min (right axis)")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], grey.mix(0.5).filled()));
        let colour = palette(0);
        let mut steps: Vec<(f64, f64)> = Vec::new();
        for (a, b, n) in &staff {
            steps.push((*a, f64::from(*n)));
            steps.push((*b, f64::from(*n)));
        }
        chart
            .draw_series(LineSeries::new(steps, colour.stroke_width(3)))
            .map_err(err)?
            .label("recommended (simulation)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(3)));
        for (a, b, n) in &staff {
            hover(&chart, ((a + b) / 2.0, f64::from(*n)), format!("{a:.2} h – {b:.2} h: {n} agents"));
        }
        let erl: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| r.erlang().map(|n| ((r.start_s + r.end_s) / 7200.0, f64::from(n))))
            .collect();
        if !erl.is_empty() {
            chart
                .draw_series(erl.iter().map(|p| Cross::new(*p, 6, BLACK.stroke_width(2))))
                .map_err(err)?
                .label("Erlang")
                .legend(|(x, y)| Cross::new((x + 6, y), 5, BLACK.stroke_width(2)));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft)
    }
}

/// Every chart of a plan.
pub fn charts(plan: &PlanReport) -> DrawResult<Vec<Chart>> {
    let mut out = Vec::new();
    if matches!(plan.outcome, Some(Outcome::Recommended(_))) {
        for t in &plan.targets {
            let name = format!("plan-{}", short(&t.path).replace('.', "-"));
            let title = format!(
                "{} against {}, with the target, the recommendation and the knee",
                short(&t.path),
                plan.path
            );
            out.push(render(&Curve { plan, target: t }, name, title)?);
        }
    }
    if !plan.per_interval.is_empty() {
        out.push(render(&Intraday { plan }, "plan-per-interval".into(), "Staffing per interval".into())?);
    }
    Ok(out)
}

/// `plan.html`: the answer, the charts, and the values tried.
pub fn html(plan: &PlanReport, charts: &[Chart]) -> String {
    let esc = super::html::esc;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>kfsim plan — {n}</title>\
         <style>{css}</style></head><body>\n<h1>Plan — {n}</h1>\n\
         <p class=\"meta\">seed {seed} · varied: {path} · targets: {targets} · {r0}–{r1} replications per value; a target is \
         {rule}</p>\n",
        rule = esc(&plan.rule()),
        css = super::html::CSS,
        n = esc(&plan.scenario),
        seed = plan.seed,
        path = esc(&plan.path),
        targets = esc(&plan.targets.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(", ")),
        r0 = plan.replications.0,
        r1 = plan.replications.1,
    );
    match &plan.outcome {
        Some(Outcome::Recommended(r)) => {
            let _ = writeln!(
                h,
                "<div class=\"verdict pass\">Recommended: {} = {}{}{}</div>",
                esc(&plan.path),
                r.at.value,
                r.erlang.map_or(String::new(), |n| format!(" · Erlang says {n}")),
                plan.knee.map_or(String::new(), |k| format!(" · knee at {k}"))
            );
        }
        Some(Outcome::Unreachable(u)) => {
            let _ = writeln!(
                h,
                "<div class=\"verdict fail\">{} cannot be met by {}: {} ({})</div>",
                esc(&u.target),
                esc(&u.path),
                esc(&u.ends(|x| gate::format_value(x, gate::unit_of(&u.metric)))),
                esc(&u.reason)
            );
        }
        None => {}
    }
    for c in charts {
        let svg = c.svg.find("<svg").map_or(c.svg.as_str(), |i| &c.svg[i..]);
        let _ = writeln!(
            h,
            "<figure id=\"{}\">{svg}<figcaption>{}</figcaption></figure>",
            esc(&c.name),
            esc(&c.title)
        );
    }
    if let Some(Outcome::Recommended(r)) = &plan.outcome {
        h.push_str("<h2>Values tried</h2>\n<table><tr><th>value</th><th>replications</th>");
        for t in &plan.targets {
            let _ = write!(h, "<th>{} [95% interval]</th><th>sure it holds</th>", esc(short(&t.path)));
        }
        h.push_str("<th>decision</th></tr>\n");
        for e in &r.curve {
            let _ = write!(h, "<tr><td>{}</td><td>{}</td>", e.value, e.replications);
            for (t, c) in plan.targets.iter().zip(&e.checks) {
                let unit = gate::unit_of(&t.path);
                let m = e.metrics.get(&t.path).copied().flatten();
                let f = |v: f64| esc(&gate::format_value(v, unit));
                let _ = write!(
                    h,
                    "<td>{}</td><td>{:.1}%</td>",
                    m.map_or("—".into(), |m| match m.ends() {
                        Some((lo, hi)) => format!("{} [{}, {}]", f(m.mean), f(lo), f(hi)),
                        None => format!("{} (n = {})", f(m.mean), m.n),
                    }),
                    c.sure * 100.0
                );
            }
            let _ = writeln!(h, "<td>{:?}</td></tr>", e.decision);
        }
        h.push_str("</table>\n");
    }
    if !plan.per_interval.is_empty() {
        h.push_str("<h2>Staffing per interval</h2>\n<table><tr><th>interval</th><th>arrivals/min</th><th>recommended</th><th>Erlang</th></tr>\n");
        for r in &plan.per_interval {
            let _ = writeln!(
                h,
                "<tr><td>{} – {}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
                crate::report::setting(r.start_s),
                crate::report::setting(r.end_s),
                r.arrivals_per_min,
                r.recommended().map_or("—".into(), |n| n.to_string()),
                r.erlang().map_or("—".into(), |n| n.to_string())
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("</body></html>\n");
    h
}
