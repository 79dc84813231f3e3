//! `compare.html` (`kfsim compare --out DIR`): the verdict, what makes the
//! runs unlike, the latency percentile curves of both runs overlaid, and
//! every compared metric with its % change.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::charts::{self, Chart, DrawResult};
use crate::compare::{Comparison, Status, percent_change};

/// The overlaid percentile curves: one chart per latency both runs have.
pub fn charts(
    base: Option<&BTreeMap<String, Histogram<u64>>>,
    cur: Option<&BTreeMap<String, Histogram<u64>>>,
    base_label: &str,
    cur_label: &str,
    service_level_ms: Option<f64>,
) -> DrawResult<Vec<Chart>> {
    let (Some(base), Some(cur)) = (base, cur) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for key in ["queue_wait", "first_response", "reply", "session"] {
        let (Some(b), Some(c)) = (base.get(key), cur.get(key)) else { continue };
        if b.is_empty() && c.is_empty() {
            continue;
        }
        let colour = charts::metric_colour(key);
        let curves = vec![
            charts::Curve {
                label: format!("{} — {base_label}", key.replace('_', " ")),
                h: b,
                colour,
                dashed: true,
            },
            charts::Curve {
                label: format!("{} — {cur_label}", key.replace('_', " ")),
                h: c,
                colour,
                dashed: false,
            },
        ];
        let marker = if key == "queue_wait" { service_level_ms } else { None };
        let caption = format!("{} by percentile: baseline against current", key.replace('_', " "));
        out.push(charts::render(
            &charts::Percentiles { caption: caption.clone(), curves, marker_ms: marker },
            format!("compare-{key}"),
            caption,
        )?);
    }
    Ok(out)
}

/// The page.
pub fn html(c: &Comparison, base_label: &str, cur_label: &str, charts: &[Chart]) -> String {
    let esc = super::html::esc;
    let mut h = String::new();
    let failed = c.rows.iter().filter(|r| r.status.fails()).count();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>kfsim compare</title>\
         <style>{css}</style></head><body>\n<h1>Compare</h1>\n\
         <p class=\"meta\">baseline <b>{b}</b> · current <b>{cu}</b> · {mode}</p>\n",
        css = super::html::CSS,
        b = esc(base_label),
        cu = esc(cur_label),
        mode = esc(c.mode.describe()),
    );
    if failed == 0 {
        h.push_str("<div class=\"verdict pass\">No regression against the baseline.</div>\n");
    } else {
        let _ = writeln!(
            h,
            "<div class=\"verdict fail\">{failed} metric(s) regressed against the baseline.</div>"
        );
    }
    for n in &c.notes {
        let _ = writeln!(h, "<div class=\"verdict skip\">{}</div>", esc(n));
    }
    for ch in charts {
        let svg = ch.svg.find("<svg").map_or(ch.svg.as_str(), |i| &ch.svg[i..]);
        let _ = writeln!(
            h,
            "<figure id=\"{}\">{svg}<figcaption>{}</figcaption></figure>",
            esc(&ch.name),
            esc(&ch.title)
        );
    }
    h.push_str(&table(c));
    h.push_str("</body></html>\n");
    h
}

/// The compared metrics with their % change, failures first; in exact
/// mode only what differs.
pub fn table(c: &Comparison) -> String {
    let esc = super::html::esc;
    let mut h = String::from(
        "<table><tr><th>metric</th><th>baseline</th><th>current</th><th>change</th><th>rule</th><th>verdict</th></tr>\n",
    );
    let mut rows: Vec<&crate::compare::Row> =
        c.rows.iter().filter(|r| !c.exact || r.status != Status::Ok).collect();
    rows.sort_by_key(|r| !r.status.fails());
    for r in rows {
        let class = if r.status.fails() { "fail" } else { "pass" };
        let unit = crate::gate::unit_of(&r.metric);
        let v =
            |x: Option<f64>| x.map_or("—".into(), |x| crate::compare::format_metric(&r.metric, x, unit));
        let _ = writeln!(
            h,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(crate::compare::display_name(&r.metric)),
            esc(&v(r.baseline)),
            esc(&v(r.current)),
            r.change().map_or("—".into(), percent_change),
            esc(&r.tolerance),
            format!("{:?}", r.status).to_lowercase()
        );
    }
    h.push_str("</table>\n");
    h
}
