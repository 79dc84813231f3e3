//! Renderers of a sweep: `sweep.csv`, charts of each key metric against
//! the first varied parameter (mean line, 95 % confidence band, Erlang
//! theory dashed where it applies), and `sweep.html`.

use std::collections::HashMap;
use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::charts::{Chart, DrawResult, Drawable, FONT, err, hover, legend, note_axes, palette, render};
use crate::sweep::{METRICS, SweepResult};

/// `sweep.csv`: one row per point; per metric its mean, 95 % CI, the
/// replications that measured it (fewer than asked where some had no such
/// sessions, or where an interrupted sweep cut the point short) and the
/// theory value (empty where theory does not apply).
pub fn csv(r: &SweepResult) -> String {
    let metrics = metric_names(r);
    let mut out = String::new();
    // a varied path may hold quotes (`agents."a b".count`) or commas
    let mut header: Vec<String> = r.vary.iter().map(|v| csv_field(v)).collect();
    for m in &metrics {
        header.extend([
            format!("{m}.mean"),
            format!("{m}.lo95"),
            format!("{m}.hi95"),
            format!("{m}.n"),
            format!("{m}.theory"),
        ]);
    }
    let _ = writeln!(out, "{}", header.join(","));
    for p in &r.points {
        let mut row: Vec<String> = p.params.iter().map(|(_, v)| csv_field(v)).collect();
        for m in &metrics {
            let e = p.metrics.get(m).copied().flatten();
            let theory = p.theory.as_ref().and_then(|t| t.metric(m));
            let f = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
            let ends = e.and_then(|e| e.ends());
            let n = e.map_or(0, |e| e.n).to_string();
            row.extend([f(e.map(|e| e.mean)), f(ends.map(|e| e.0)), f(ends.map(|e| e.1)), n, f(theory)]);
        }
        let _ = writeln!(out, "{}", row.join(","));
    }
    out
}

fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.to_owned() }
}

fn metric_names(r: &SweepResult) -> Vec<String> {
    let mut names: Vec<String> = METRICS.iter().map(|m| m.to_string()).collect();
    if let Some(p) = r.points.first() {
        names.extend(p.metrics.keys().filter(|k| k.starts_with("fairness.")).cloned());
    }
    names
}

/// One metric against the first varied parameter.
struct MetricChart<'a> {
    r: &'a SweepResult,
    metric: String,
    label: &'static str,
    /// Multiplies values for display (1e-3: ms → s).
    scale: f64,
    /// Zoom the y axis to the data instead of starting at 0.
    zoom: bool,
    /// The largest possible value, in display units (100 for a percentage).
    ceiling: Option<f64>,
}

impl MetricChart<'_> {
    fn fmt(&self, v: f64) -> String {
        match self.ceiling {
            Some(100.0) => format!("{v:.2}%"),
            Some(_) => format!("{v:.4}"),
            None => format!("{v:.2}"),
        }
    }

    /// x for a value of the first parameter: the number itself, or its position.
    fn xs(&self) -> (Vec<f64>, bool) {
        let firsts: Vec<&str> = self.r.points.iter().map(|p| p.params[0].1.as_str()).collect();
        // "NaN", "inf" and values 1e308 apart parse, but an axis over them
        // has no ticks: plotters looped for ever looking for them
        let parsed: Vec<Option<f64>> =
            firsts.iter().map(|v| v.parse::<f64>().ok().filter(|x| x.is_finite())).collect();
        let (lo, hi) = parsed
            .iter()
            .flatten()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let numeric = parsed.iter().all(Option::is_some) && (hi - lo).is_finite();
        if numeric {
            return (parsed.iter().map(|x| x.unwrap_or(0.0)).collect(), true);
        }
        // each value's position among the distinct ones, in order of first
        // appearance; by a map: a scan of them per point made the report
        // of a 10 000-point sweep take seconds (after Ctrl-C too)
        let mut position: HashMap<&str, usize> = HashMap::new();
        let xs = firsts
            .iter()
            .map(|&v| {
                let next = position.len();
                *position.entry(v).or_insert(next) as f64
            })
            .collect();
        (xs, false)
    }

    /// Series: points grouped by the values of the other parameters.
    fn series(&self) -> Vec<(String, Vec<usize>)> {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for (i, p) in self.r.points.iter().enumerate() {
            let key = p.params[1..].iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ");
            match by_key.get(&key) {
                Some(&g) => groups[g].1.push(i),
                None => {
                    by_key.insert(key.clone(), groups.len());
                    groups.push((key, vec![i]));
                }
            }
        }
        groups
    }
}

impl Drawable for MetricChart<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<()> {
        let (xs, numeric) = self.xs();
        let (x0, x1) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        let pad = ((x1 - x0) * 0.03).max(0.5);
        let data_max = self.values().fold(0.0_f64, f64::max);
        let data_min = self.values().fold(f64::INFINITY, f64::min);
        let positive_min = self.values().filter(|&v| v > 0.0).fold(f64::INFINITY, f64::min);
        // rising curves keep the lower right free for the legend, falling
        // ones the upper right, which needs headroom above the curves
        let headroom = if self.rising() { 1.05 } else { 1.3 };
        let caption = format!("{} vs {} — {}", self.label, self.r.vary[0], self.r.scenario);
        let builder = || {
            let mut b = ChartBuilder::on(root);
            b.caption(&caption, (FONT, 18))
                .margin(12)
                .margin_right(24)
                .x_label_area_size(40)
                .y_label_area_size(64);
            b
        };
        let x_range = (x0 - pad)..(x1 + pad);
        // A time spanning more than two decades (an overloaded point's ASA
        // of an hour beside the seconds of the others) goes on a log axis:
        // on a linear one every point but the worst lay flat on zero.
        if self.ceiling.is_none() && positive_min.is_finite() && data_max > LOG_SPAN * positive_min {
            // at most LOG_DECADES below the largest value, smaller ones
            // drawn on the floor: a wait of 1e-320 ms (Erlang C's for
            // hundreds of agents) beside an overloaded point's hours made
            // the floor 0, whose ticks never ended and took all memory
            // (found by probing: a sweep of agents 1..800)
            let floor = (positive_min / 2.0).max(data_max / 10f64.powi(LOG_DECADES));
            // a legend in the upper right takes about a third of the height:
            // on a log axis that is as many decades as half the data's
            let top = data_max * (data_max / floor).powf(0.5);
            let mut chart =
                builder().build_cartesian_2d(x_range.clone(), (floor..top).log_scale()).map_err(err)?;
            note_axes(&caption, (x_range.start, x_range.end), (floor, top), true, self.scale);
            return self.plot(&mut chart, (&xs, numeric), |v| v.max(floor), " (log scale)");
        }
        let (y_min, y_max) = if self.zoom && data_min.is_finite() {
            // an index of 0.996–0.999 on 0–1 is a flat line: zoom to the data
            let span = (data_max - data_min).max(data_max.abs() * 1e-3).max(1e-6);
            (
                (data_min - span * 0.15).max(0.0),
                (data_max + span * 0.6).min(self.ceiling.unwrap_or(f64::INFINITY)).max(data_max),
            )
        } else {
            (0.0, if data_max > 0.0 { data_max * headroom } else { 1.0 })
        };
        // a share above its ceiling (a service level of 120 %) is only
        // room for the legend, which rising curves do not need
        let y_max = self.ceiling.map_or(y_max, |c| {
            if self.zoom || data_max > c {
                y_max
            } else {
                y_max.min(if self.rising() { c } else { c * headroom })
            }
        });
        let mut chart = builder().build_cartesian_2d(x_range.clone(), y_min..y_max).map_err(err)?;
        note_axes(&caption, (x_range.start, x_range.end), (y_min, y_max), false, self.scale);
        self.plot(&mut chart, (&xs, numeric), |v| v, "")
    }
}

/// A time whose largest value is this many times its smallest positive
/// one is drawn on a log axis.
const LOG_SPAN: f64 = 100.0;

/// The most decades a log axis spans below the largest value it draws.
const LOG_DECADES: i32 = 12;

impl MetricChart<'_> {
    fn get(&self, i: usize) -> Option<crate::sweep::Estimate> {
        self.r.points[i].metrics.get(&self.metric).copied().flatten()
    }

    fn theory(&self, i: usize) -> Option<f64> {
        self.r.points[i].theory.as_ref().and_then(|t| t.metric(&self.metric))
    }

    /// Every value the chart draws (interval ends and theory), scaled.
    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        (0..self.r.points.len())
            .flat_map(move |i| [self.get(i).map(|e| e.lo), self.get(i).map(|e| e.hi), self.theory(i)])
            .flatten()
            .map(|v| v * self.scale)
    }

    fn rising(&self) -> bool {
        self.metric == "service_level" || self.metric.ends_with(".jain")
    }

    /// The mesh, bands, lines, theory and legend on a built chart, at the
    /// points' x ([`MetricChart::xs`]); `clamp` keeps a value where the y
    /// axis can show it (a log axis has no 0).
    fn plot<'a, DB: DrawingBackend + 'a, Y>(
        &self,
        chart: &mut ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
        (xs, numeric): (&[f64], bool),
        clamp: impl Fn(f64) -> f64,
        y_note: &str,
    ) -> DrawResult<()>
    where
        Y: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
    {
        let firsts: Vec<String> = self.r.points.iter().map(|p| p.params[0].1.clone()).collect();
        let fmt_x = |x: &f64| {
            if numeric {
                format!("{x}")
            } else {
                let mut distinct: Vec<&String> = Vec::new();
                for f in &firsts {
                    if !distinct.contains(&f) {
                        distinct.push(f);
                    }
                }
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 {
                    distinct.get(i as usize).map_or(String::new(), |s| s.to_string())
                } else {
                    String::new()
                }
            }
        };
        let y_desc = format!("{}{y_note}", self.label);
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(self.r.vary[0].as_str()).y_desc(y_desc).x_label_formatter(&fmt_x);
        // a log axis's ticks are powers of ten: "1000", not "1000.0"
        let fmt_log = |y: &f64| {
            let s = if *y >= 1.0 { format!("{y:.0}") } else { format!("{y:.3}") };
            if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
        };
        if !y_note.is_empty() {
            mesh.y_label_formatter(&fmt_log);
        }
        mesh.draw().map_err(err)?;
        for (si, (label, idx)) in self.series().iter().enumerate() {
            let colour = palette(si);
            let pts: Vec<(f64, f64, f64, f64)> = idx
                .iter()
                .filter_map(|&i| {
                    self.get(i).map(|e| (xs[i], e.mean * self.scale, e.lo * self.scale, e.hi * self.scale))
                })
                .collect();
            let mut band: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, clamp(p.3))).collect();
            band.extend(pts.iter().rev().map(|p| (p.0, clamp(p.2))));
            chart.draw_series(std::iter::once(Polygon::new(band, colour.mix(0.18).filled()))).map_err(err)?;
            let name = if label.is_empty() {
                "simulation (95% CI band)".to_owned()
            } else {
                format!("{label} (95% CI band)")
            };
            chart
                .draw_series(
                    LineSeries::new(pts.iter().map(|p| (p.0, clamp(p.1))), colour.stroke_width(2))
                        .point_size(3),
                )
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
            for (&i, p) in idx.iter().zip(&pts) {
                let f = |v: f64| self.fmt(v);
                let params: Vec<String> =
                    self.r.points[i].params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                hover(
                    chart,
                    (p.0, clamp(p.1)),
                    format!("{}: {} [{}, {}]", params.join(" "), f(p.1), f(p.2), f(p.3)),
                );
            }
            let th: Vec<(f64, f64)> =
                idx.iter().filter_map(|&i| self.theory(i).map(|t| (xs[i], clamp(t * self.scale)))).collect();
            if !th.is_empty() {
                let model = idx
                    .iter()
                    .find_map(|&i| self.r.points[i].theory.as_ref().map(|t| t.model.replace('_', " ")))
                    .unwrap_or_default();
                chart
                    .draw_series(DashedLineSeries::new(th, 6, 4, BLACK.stroke_width(2)))
                    .map_err(err)?
                    .label(format!("theory: {model}"))
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(2)));
            }
        }
        legend(
            chart,
            if self.rising() { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight },
        )
    }
}

/// Every chart of a sweep.
pub fn charts(r: &SweepResult) -> DrawResult<Vec<Chart>> {
    let mut out = Vec::new();
    // (metric, label, scale, zoom, ceiling)
    let mut specs: Vec<(String, &'static str, f64, bool, Option<f64>)> = vec![
        ("service_level".into(), "service level [%]", 100.0, false, Some(100.0)),
        ("asa_ms".into(), "ASA [s]", 1e-3, false, None),
        ("abandon_rate".into(), "abandonment [%]", 100.0, false, Some(100.0)),
        ("occupancy".into(), "occupancy [%]", 100.0, false, Some(100.0)),
        ("latency_ms.first_response.p95".into(), "first response p95 [min]", 1.0 / 60_000.0, false, None),
    ];
    if let Some(p) = r.points.first() {
        specs.extend(
            p.metrics
                .keys()
                .filter(|k| k.starts_with("fairness."))
                .map(|k| (k.clone(), "Jain's fairness index", 1.0, true, Some(1.0))),
        );
    }
    for (metric, label, scale, zoom, ceiling) in specs {
        // nothing can abandon (no patience): an empty chart says nothing
        let nonzero = r.points.iter().any(|p| {
            p.metrics.get(&metric).copied().flatten().is_some_and(|e| e.hi > 0.0)
                || p.theory.as_ref().and_then(|t| t.metric(&metric)).is_some_and(|v| v > 0.0)
        });
        if !nonzero {
            continue;
        }
        let chart = MetricChart { r, metric: metric.clone(), label, scale, zoom, ceiling };
        let name = format!("sweep-{}", metric.replace('.', "-"));
        out.push(render(&chart, name, format!("{label} vs {}", r.vary[0]))?);
    }
    Ok(out)
}

/// `sweep.html`: the charts and the table of points.
pub fn html(r: &SweepResult, charts: &[Chart]) -> String {
    let esc = super::html::esc;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>kfsim sweep — {n}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:1000px;margin:0 auto;padding:24px}}\
         table{{border-collapse:collapse;font-size:13px}}td,th{{border-bottom:1px solid #eee;padding:3px 8px;text-align:right}}\
         figure svg{{max-width:100%;height:auto}}</style></head><body>\n<h1>Sweep — {n}</h1>\n\
         <p>seed {seed} · {reps} replications per point · means with 95% confidence intervals · varied: {vary}{partial}</p>\n",
        n = esc(&r.scenario),
        seed = r.seed,
        reps = r.replications,
        vary = esc(&r.vary.join(", ")),
        partial = r.interrupted.map_or(String::new(), |p| format!(
            " · <b>interrupted: {} of {} runs finished</b> (each point's figures are over its own)",
            p.runs, p.of
        ))
    );
    for c in charts {
        let svg = c.svg.find("<svg").map_or(c.svg.as_str(), |i| &c.svg[i..]);
        let _ = writeln!(h, "<figure>{svg}<figcaption>{}</figcaption></figure>", esc(&c.title));
    }
    h.push_str("<table><tr>");
    for v in &r.vary {
        let _ = write!(h, "<th>{}</th>", esc(v));
    }
    h.push_str(
        "<th>service level</th><th>ASA</th><th>abandon rate</th><th>occupancy</th><th>theory SL</th></tr>\n",
    );
    let ci = |e: Option<crate::sweep::Estimate>, scale: f64| {
        e.map_or("—".into(), |e| match e.ends() {
            Some((lo, hi)) => format!("{:.3} [{:.3}, {:.3}]", e.mean * scale, lo * scale, hi * scale),
            None => format!("{:.3} (n = 1)", e.mean * scale),
        })
    };
    for p in &r.points {
        h.push_str("<tr>");
        for (_, v) in &p.params {
            let _ = write!(h, "<td>{}</td>", esc(v));
        }
        let m = |k: &str| p.metrics.get(k).copied().flatten();
        let th = p.theory.as_ref().and_then(|t| t.service_level).map_or("—".into(), |v| format!("{v:.3}"));
        let _ = writeln!(
            h,
            "<td>{}</td><td>{} s</td><td>{}</td><td>{}</td><td>{th}</td></tr>",
            ci(m("service_level"), 1.0),
            ci(m("asa_ms"), 1e-3),
            ci(m("abandon_rate"), 1.0),
            ci(m("occupancy"), 1.0)
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::Point;

    fn point(params: &[(&str, &str)]) -> Point {
        Point {
            params: params.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect(),
            metrics: Default::default(),
            theory: None,
            unstable: false,
        }
    }

    /// A value that is not a number stands at its place among the distinct
    /// values, in order of first appearance; points group into series by the
    /// other parameters, in order of first appearance too.
    #[test]
    fn words_stand_in_order_of_first_appearance_and_series_group_by_the_rest() {
        let (p, r) = ("account.kf.policy", "entry.web.rate");
        let r = SweepResult {
            scenario: "t".into(),
            seed: 1,
            replications: 1,
            vary: vec![p.into(), r.into()],
            points: vec![
                point(&[(p, "round_robin"), (r, "2/min")]),
                point(&[(p, "round_robin"), (r, "1/min")]),
                point(&[(p, "idle_first"), (r, "2/min")]),
                point(&[(p, "idle_first"), (r, "1/min")]),
                point(&[(p, "round_robin"), (r, "3/min")]),
            ],
            interrupted: None,
        };
        let c = MetricChart {
            r: &r,
            metric: "service_level".into(),
            label: "",
            scale: 1.0,
            zoom: false,
            ceiling: None,
        };
        assert_eq!(c.xs(), (vec![0.0, 0.0, 1.0, 1.0, 0.0], false));
        let groups: Vec<(String, Vec<usize>)> = c.series();
        let want = [
            ("entry.web.rate=2/min", vec![0, 2]),
            ("entry.web.rate=1/min", vec![1, 3]),
            ("entry.web.rate=3/min", vec![4]),
        ];
        assert_eq!(groups, want.map(|(k, v)| (k.to_owned(), v)));
        let numbers = SweepResult { points: vec![point(&[(p, "7")]), point(&[(p, "5")])], ..r.clone() };
        let c = MetricChart { r: &numbers, ..c };
        assert_eq!(c.xs(), (vec![7.0, 5.0], true));
    }

    /// A time of a few ulps above 0 beside hours is drawn on a log axis of
    /// a bounded span: its floor was half the smallest value, 0 here, and
    /// the axis's ticks took all memory.
    #[test]
    fn a_log_axis_spans_a_bounded_number_of_decades() {
        let p = "agents.kf.count";
        let at = |count: &str, wait: f64| Point {
            metrics: [(
                "asa_ms".to_owned(),
                Some(crate::sweep::Estimate { mean: wait, lo: wait, hi: wait, n: 1, se: 0.0 }),
            )]
            .into(),
            ..point(&[(p, count)])
        };
        let r = SweepResult {
            scenario: "t".into(),
            seed: 1,
            replications: 1,
            vary: vec![p.into()],
            points: vec![at("1", 3.6e6), at("800", 5e-324)],
            interrupted: None,
        };
        let c = MetricChart {
            r: &r,
            metric: "asa_ms".into(),
            label: "ASA",
            scale: 1.0,
            zoom: false,
            ceiling: None,
        };
        let chart = render(&c, "asa".into(), "ASA".into()).expect("drawn");
        assert!(chart.svg.contains("(log scale)"), "on a log axis");
    }
}
