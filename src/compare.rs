//! Baselines: compare a run's summary with an earlier one and call out
//! regressions.
//!
//! Three modes, chosen from the two runs (see `docs/ci.md`):
//! - **exact**, when both runs are simulations of the same scenario (same
//!   fingerprint) with the same seed and no tolerance was given: the sim is
//!   deterministic, so every number must be equal, and any difference is a
//!   change to explain.
//! - **noise**, when both are runs of the same scenario with different
//!   seeds: a difference counts only when it is larger than what another
//!   seed gives. Service level, abandonment, waiting and ASA are judged by a
//!   paired batch-means test over the runs' `series.json` (the same time of
//!   day against each other); latency percentiles by distribution-free
//!   intervals of the quantile from `histograms.json`, with the sample size
//!   deflated by the runs' autocorrelation; the sticky rate by a
//!   two-proportion test. Other key metrics keep the tolerance.
//! - **tolerance** otherwise: the key metrics (service level, waits,
//!   latency percentiles, abandonment, fairness, and the live engine's HTTP
//!   and delivery figures) are compared in their "worse" direction against a
//!   relative (`10%`) or absolute (`5s`) tolerance; default 10 %.
//!   A change must also exceed a floor (1 ms for times, 0.001 for other
//!   numbers) to count, so that a p50 of 0 ms turning into 0.4 ms is noise.
//!
//! Runs that are not alike — other scenarios, a changed scenario, other
//! engines — are still compared, with a note saying so. A metric the
//! baseline had and the current run has not (absent, or `null`) fails.

use std::collections::{BTreeMap, BTreeSet};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::gate::{Finder, MetricUnit, PathSet, lookup, resolve, unit_of, visit_leaves, visit_union};
use crate::scenario::units::parse_duration;
use crate::series::SeriesData;

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Lower is better (waits, latencies, abandonment, errors).
    Lower,
    /// Higher is better (service level, fairness, stickiness).
    Higher,
    /// Neither (sessions offered, occupancy): a metric given a tolerance
    /// that moves beyond it either way has changed, which fails.
    Either,
}

/// The metrics compared in tolerance mode (`*` is one segment), and which
/// way is better.
pub const KEY_METRICS: &[(&str, Better)] = &[
    ("service_level", Better::Higher),
    ("wait_probability", Better::Lower),
    ("abandon_rate", Better::Lower),
    ("asa_ms", Better::Lower),
    ("latency_ms.queue_wait.p50", Better::Lower),
    ("latency_ms.queue_wait.p95", Better::Lower),
    ("latency_ms.queue_wait.p99", Better::Lower),
    ("latency_ms.first_response.p50", Better::Lower),
    ("latency_ms.first_response.p95", Better::Lower),
    ("latency_ms.first_response.p99", Better::Lower),
    ("latency_ms.reply.p95", Better::Lower),
    ("latency_ms.reply.p99", Better::Lower),
    ("latency_ms.session.p95", Better::Lower),
    ("fairness.*.jain", Better::Higher),
    ("sticky.rate", Better::Higher),
    ("messages.lost", Better::Lower),
    ("messages.duplicated", Better::Lower),
    ("live.gave_up.*", Better::Lower),
    ("live.missed.*", Better::Lower),
    ("live.saturated", Better::Lower),
    ("http.*.p99", Better::Lower),
    ("http.*.error_rate", Better::Lower),
    ("delivery_ms.*.p99", Better::Lower),
];

fn better_of(path: &str) -> Option<Better> {
    KEY_METRICS.iter().find(|(p, _)| crate::gate::matches_pattern(path, p)).map(|(_, b)| *b)
}

/// Which way is better for a metric given a tolerance: a key metric's way,
/// else what the metric is wherever it sits (an entry's or an account's
/// service level is better higher like the run's; a wait, a loss, an error
/// lower), else [`Better::Either`]. Every metric given a tolerance used to
/// be taken as better lower, so an entry's service level falling from 92 %
/// to 80 % was "improved" (found by probing).
fn direction_of(path: &str) -> Better {
    if let Some(b) = better_of(path) {
        return b;
    }
    const HIGHER: &[&str] =
        &["service_level", "jain", "jain_busy", "kept", "deflection", "answered", "resolved"];
    const LOWER: &[&str] = &[
        "wait_probability",
        "abandon_rate",
        "abandoned",
        "rejected",
        "unfinished",
        "gini",
        "cv",
        "max_min",
        "error_rate",
        "errors",
        "timeouts",
        "lost",
        "duplicated",
    ];
    let last = path.rsplit('.').next().unwrap_or(path);
    // a time's figures, but not how many there were
    let timed = last != "count" && path.split('.').any(|s| s.ends_with("_ms"));
    // an endpoint's errors of one kind (`timeout`, `connect`, `broken`,
    // `http_503`, …), and the middleware's answers with one errcode, are
    // errors whatever the kind's name
    let errors = matches!(path.split('.').rev().nth(1), Some("errors_by_kind" | "errcodes"));
    if HIGHER.contains(&last) || path == "sticky.rate" {
        Better::Higher
    } else if LOWER.contains(&last) || timed || errors {
        Better::Lower
    } else {
        Better::Either
    }
}

/// The tolerance given for `path` (`*` for the default): the last one
/// given, as with any repeated option (the first one used to win, silently,
/// over a CI script's later override: found by probing).
fn tolerance_for(tolerances: &[(String, Tolerance)], path: &str) -> Option<Tolerance> {
    tolerances.iter().rev().find(|(p, _)| p == path).map(|(_, t)| *t)
}

/// How far a metric may move in its worse direction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Tolerance {
    /// A share of the baseline value (0.1 for 10 %).
    Relative(f64),
    /// An amount in the metric's unit.
    Absolute(f64),
}

impl Tolerance {
    /// Parse `10%` or an amount (`5s`, `250ms`, `0.02`) for a metric in `unit`.
    pub fn parse(text: &str, unit: MetricUnit) -> Result<Tolerance, String> {
        let t = text.trim();
        if let Some(p) = t.strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(Tolerance::Relative(v / 100.0)),
                _ => Err(format!("invalid tolerance \"{text}\": expected a percentage like 10%")),
            };
        }
        if let Ok(v) = t.parse::<f64>() {
            return if v.is_finite() && v >= 0.0 {
                Ok(Tolerance::Absolute(v))
            } else {
                // "invalid tolerance "nan"" alone said not what would do
                Err(format!(
                    "invalid tolerance \"{text}\": expected a number from 0 up, a percentage (10%) or a duration (5s)"
                ))
            };
        }
        let us = parse_duration(t).map_err(|_| {
            format!("invalid tolerance \"{text}\": expected a percentage (10%), a number or a duration (5s)")
        })? as f64;
        match unit {
            MetricUnit::Ms => Ok(Tolerance::Absolute(us / 1e3)),
            MetricUnit::S => Ok(Tolerance::Absolute(us / 1e6)),
            MetricUnit::Plain => {
                Err(format!("tolerance \"{text}\" is a duration, but the metric is not a time"))
            }
        }
    }

    fn allowed(self, baseline: f64) -> f64 {
        match self {
            Tolerance::Relative(r) => r * baseline.abs(),
            Tolerance::Absolute(a) => a,
        }
    }

    fn describe(self, unit: MetricUnit) -> String {
        match (self, unit) {
            (Tolerance::Relative(r), _) => format!("{}%", r * 100.0),
            (Tolerance::Absolute(a), MetricUnit::Ms) => format!("{a}ms"),
            (Tolerance::Absolute(a), MetricUnit::S) => format!("{a}s"),
            (Tolerance::Absolute(a), MetricUnit::Plain) => format!("{a}"),
        }
    }
}

/// The default tolerance in tolerance mode.
pub const DEFAULT_TOLERANCE: Tolerance = Tolerance::Relative(0.10);

/// One compared metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Its path.
    pub metric: String,
    /// Baseline value.
    pub baseline: Option<f64>,
    /// Current value.
    pub current: Option<f64>,
    /// The rule applied: the tolerance as written, `exact`, or the test of
    /// noise mode.
    pub tolerance: String,
    /// The verdict.
    pub status: Status,
}

impl Row {
    /// The change relative to the baseline (0.1 for +10 %), when both are
    /// numbers and the baseline is not 0.
    pub fn change(&self) -> Option<f64> {
        match (self.baseline, self.current) {
            (Some(b), Some(c)) if b != 0.0 => Some((c - b) / b.abs()),
            _ => None,
        }
    }

    /// The row as the terminal, the page and JUnit say it:
    /// `service_level 83.97% → 80.12% (−4.6 %; tolerance 10%)`.
    pub fn describe(&self) -> String {
        let unit = unit_of(&self.metric);
        let v = |x: Option<f64>| x.map_or("—".to_owned(), |x| format_metric(&self.metric, x, unit));
        let change = match (self.change(), self.baseline, self.current) {
            (Some(c), _, _) => format!("{}; ", percent_change(c)),
            (None, Some(_), Some(_)) => String::new(),
            (None, Some(_), None) => "gone from the current run; ".into(),
            (None, None, Some(_)) => "new in the current run; ".into(),
            (None, None, None) => String::new(),
        };
        format!(
            "{} {} → {} ({change}{})",
            display_name(&self.metric),
            v(self.baseline),
            v(self.current),
            self.tolerance
        )
    }
}

/// A metric path as the reports name it: latencies without `latency_ms.`.
pub fn display_name(path: &str) -> &str {
    path.strip_prefix("latency_ms.").unwrap_or(path)
}

/// A relative change as people write it: `+12.3 %`, `−4.6 %`.
pub fn percent_change(c: f64) -> String {
    let p = c * 100.0;
    if p.abs() < 0.05 {
        "±0 %".into()
    } else if p > 0.0 {
        format!("+{p:.1} %")
    } else {
        format!("−{:.1} %", -p)
    }
}

/// A metric's value the way the terminal shows it: shares as percentages,
/// times in their unit, counts as integers.
pub fn format_metric(path: &str, v: f64, unit: MetricUnit) -> String {
    if unit == MetricUnit::Plain && crate::stats::Scale::of(path) == crate::stats::Scale::Share {
        format!("{:.2}%", v * 100.0)
    } else {
        crate::gate::format_value(v, unit)
    }
}

/// A compared metric's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", remote = "Self")]
pub enum Status {
    /// Equal, within tolerance, or within seed noise.
    Ok,
    /// Better beyond the tolerance (or the noise).
    Improved,
    /// Worse beyond the tolerance (or the noise): a failure.
    Regressed,
    /// Different in exact mode: a failure.
    Changed,
    /// The baseline has a value, the current run none: a failure.
    Missing,
    /// Only the current run has it.
    New,
}

crate::scenario::by_name_only!(Status);
crate::scenario::serialize_as_derived!(Status);

impl Status {
    /// Whether this row fails the comparison.
    pub fn fails(self) -> bool {
        matches!(self, Status::Regressed | Status::Changed | Status::Missing)
    }
}

/// How two runs were compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", remote = "Self")]
pub enum Mode {
    /// Same sim scenario and seed: every number must be equal.
    Exact,
    /// Same scenario, other seeds: differences beyond seed noise.
    Noise,
    /// Key metrics against tolerances.
    #[default]
    Tolerance,
}

crate::scenario::by_name_only!(Mode);
crate::scenario::serialize_as_derived!(Mode);

impl Mode {
    /// How the terminal and the page name the mode.
    pub fn describe(self) -> &'static str {
        match self {
            Mode::Exact => "exact (same sim scenario and seed)",
            Mode::Noise => "beyond seed noise (same scenario, other seeds; docs/ci.md)",
            Mode::Tolerance => "with tolerances",
        }
    }
}

/// The result of comparing two summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Exact mode (deterministic sim runs of the same scenario and seed).
    pub exact: bool,
    /// The mode.
    #[serde(default)]
    pub mode: Mode,
    /// What makes the runs unlike, and what that means for the verdicts.
    #[serde(default)]
    pub notes: Vec<String>,
    /// One row per compared metric.
    pub rows: Vec<Row>,
}

impl Comparison {
    /// Whether any row is a regression, an exact-mode change or a metric
    /// gone missing.
    pub fn failed(&self) -> bool {
        self.rows.iter().any(|r| r.status.fails())
    }
}

/// One side of a comparison: the summary and, when a run folder was given,
/// its series and histograms (for noise mode).
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    /// The summary as JSON.
    pub summary: &'a Value,
    /// `series.json`.
    pub series: Option<&'a SeriesData>,
    /// `histograms.json`, decoded.
    pub histograms: Option<&'a BTreeMap<String, Histogram<u64>>>,
}

impl<'a> Side<'a> {
    /// A summary alone.
    pub fn summary(summary: &'a Value) -> Side<'a> {
        Side { summary, series: None, histograms: None }
    }
}

/// The leaf paths of summaries ([`crate::gate::leaf_paths`] of each),
/// walked when asked for, not listed.
pub struct SummaryPaths<'a>(pub &'a [&'a Value]);

impl PathSet for SummaryPaths<'_> {
    fn contains(&self, path: &str) -> bool {
        let mut found = false;
        let mut on_the_way =
            |p: &str| path.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
        for v in self.0 {
            visit_leaves(v, &mut on_the_way, &mut |p| found |= p == path);
        }
        found
    }

    fn each(&self, f: &mut dyn FnMut(&str)) {
        // the agents last: the nearest name is mostly found before them,
        // and then `resolve`'s bounds pass over most of theirs
        let agents = |p: &str| p.strip_prefix("agents").is_some_and(|r| r.is_empty() || r.starts_with('.'));
        for v in self.0 {
            visit_leaves(v, &mut |p| !agents(p), f);
        }
        for v in self.0 {
            visit_leaves(v, &mut |p| agents(p), f);
        }
    }
}

/// `--tolerance METRIC=VALUE` (METRIC `*` sets the default).
pub fn parse_tolerance_arg(
    arg: &str,
    valid: &(impl PathSet + ?Sized),
) -> Result<(String, Tolerance), String> {
    let (metric, value) =
        arg.split_once('=').ok_or_else(|| format!("--tolerance {arg}: expected METRIC=VALUE"))?;
    let metric = metric.trim();
    if metric == "*" {
        return Tolerance::parse(value, MetricUnit::Plain)
            .or_else(|_| Tolerance::parse(value, MetricUnit::Ms))
            .map(|t| ("*".into(), t))
            .map_err(|e| format!("--tolerance {arg}: {e}"));
    }
    let path = resolve(metric, valid).map_err(|e| format!("--tolerance {arg}: {e}"))?;
    let t = Tolerance::parse(value, unit_of(&path)).map_err(|e| format!("--tolerance {arg}: {e}"))?;
    Ok((path, t))
}

fn field(v: &Value, p: &str) -> Option<Value> {
    v.pointer(p).cloned()
}

fn same_scenario(base: &Value, cur: &Value) -> bool {
    field(base, "/scenario/fingerprint").is_some()
        && field(base, "/scenario/fingerprint") == field(cur, "/scenario/fingerprint")
}

fn is_exact_pair(base: &Value, cur: &Value) -> bool {
    field(base, "/engine") == Some(Value::from("sim"))
        && field(cur, "/engine") == Some(Value::from("sim"))
        && field(base, "/seed") == field(cur, "/seed")
        && same_scenario(base, cur)
}

/// What makes two runs unlike.
fn notes(base: &Value, cur: &Value) -> Vec<String> {
    let s =
        |v: &Value, p: &str| field(v, p).map_or("?".into(), |x| x.to_string().trim_matches('"').to_owned());
    let mut out = Vec::new();
    if s(base, "/scenario/name") != s(cur, "/scenario/name") {
        out.push(format!(
            "different scenarios: {} against {}; differences may come from the scenario, not the system",
            s(base, "/scenario/name"),
            s(cur, "/scenario/name")
        ));
    } else if !same_scenario(base, cur) {
        out.push(format!(
            "the scenario {} changed between the runs (fingerprints {} and {}): differences may come from the scenario, not the system",
            s(base, "/scenario/name"),
            s(base, "/scenario/fingerprint"),
            s(cur, "/scenario/fingerprint")
        ));
    }
    if s(base, "/engine") != s(cur, "/engine") {
        out.push(format!("different engines: {} against {}", s(base, "/engine"), s(cur, "/engine")));
    }
    out
}

/// Compare `current` with `baseline` (both summaries as JSON). Explicit
/// `tolerances` (path, tolerance; path `*` is the default) switch to
/// tolerance mode.
pub fn compare(baseline: &Value, current: &Value, tolerances: &[(String, Tolerance)]) -> Comparison {
    compare_runs(Side::summary(baseline), Side::summary(current), tolerances)
}

/// Compare two runs, with their series and histograms where they are
/// known (see the module's documentation for the modes).
pub fn compare_runs(base: Side<'_>, cur: Side<'_>, tolerances: &[(String, Tolerance)]) -> Comparison {
    let (baseline, current) = (base.summary, cur.summary);
    let mut notes = notes(baseline, current);
    if tolerances.is_empty() && is_exact_pair(baseline, current) {
        // a row per leaf of either run, made once: as sets of paths of
        // both runs, a million agents took gigabytes beside the rows
        let mut rows = Vec::new();
        visit_union(baseline, current, &mut |metric| {
            if !metric.starts_with("gates.") {
                let (metric, tolerance) = (metric.to_owned(), "exact".into());
                rows.push(Row { metric, baseline: None, current: None, tolerance, status: Status::Ok });
            }
        });
        rows.sort_unstable_by(|a, b| a.metric.cmp(&b.metric));
        rows.dedup_by(|a, b| a.metric == b.metric);
        let (mut in_base, mut in_cur) = (Finder::new(baseline), Finder::new(current));
        for r in &mut rows {
            (r.baseline, r.current) = (in_base.get(&r.metric), in_cur.get(&r.metric));
            if r.baseline != r.current {
                r.status = Status::Changed;
            }
        }
        return Comparison { exact: true, mode: Mode::Exact, notes, rows };
    }
    let seeds_differ = field(baseline, "/seed") != field(current, "/seed");
    let noise = if same_scenario(baseline, current) && seeds_differ {
        let n = Noise::of(base, cur);
        if n.is_none() {
            notes.push(format!(
                "different seeds ({} and {}) of the same scenario, but without series.json and histograms.json \
                 beside the summaries seed noise cannot be estimated: compared with tolerances, which seed \
                 noise alone can exceed (compare run folders instead)",
                field(baseline, "/seed").unwrap_or_default(),
                field(current, "/seed").unwrap_or_default()
            ));
        }
        n
    } else {
        None
    };
    let default = tolerance_for(tolerances, "*").unwrap_or(DEFAULT_TOLERANCE);
    let all = judged_paths(baseline, current, tolerances);
    let (mut in_base, mut in_cur) = (Finder::new(baseline), Finder::new(current));
    let mut rows = Vec::new();
    for metric in all {
        let explicit = tolerance_for(tolerances, &metric);
        let Some(better) = better_of(&metric).or(explicit.map(|_| direction_of(&metric))) else { continue };
        let unit = unit_of(&metric);
        let (b, c) = (in_base.get(&metric), in_cur.get(&metric));
        let judged = noise.as_ref().and_then(|n| n.judge(&metric, b, c, better, unit));
        let (status, rule) = match judged {
            Some((noise_status, rule)) => {
                // a tolerance given (for the metric, or `*`) still says how
                // large a change must be to matter
                let practical = explicit.or(tolerance_for(tolerances, "*"));
                let status = match (noise_status, practical) {
                    (Status::Regressed | Status::Improved, Some(tol)) => {
                        match judge(b, c, tol, better, unit) {
                            Status::Ok => Status::Ok,
                            _ => noise_status,
                        }
                    }
                    _ => noise_status,
                };
                let rule = match practical {
                    Some(t) => format!("{rule} and tolerance {}", t.describe(unit)),
                    None => rule,
                };
                (status, rule)
            }
            None => {
                let tol = explicit.unwrap_or(default);
                (judge(b, c, tol, better, unit), format!("tolerance {}", tol.describe(unit)))
            }
        };
        rows.push(Row { metric: metric.clone(), baseline: b, current: c, tolerance: rule, status });
    }
    let mode = if noise.is_some() { Mode::Noise } else { Mode::Tolerance };
    if let Some(n) = &noise {
        notes.push(format!(
            "different seeds ({} and {}) of the same scenario: a difference counts only beyond seed noise \
             ({} batches of {} paired by time of day; percentiles with the sample deflated {:.1}×)",
            field(baseline, "/seed").unwrap_or_default(),
            field(current, "/seed").unwrap_or_default(),
            n.batches,
            crate::scenario::units::format_seconds(n.batch_s),
            n.deff
        ));
    }
    Comparison { exact: false, mode, notes, rows }
}

/// The leaf paths of either run that tolerance and noise modes judge: the
/// key metrics and those given a tolerance. Subtrees that hold none (a
/// million agents) are not walked.
fn judged_paths(baseline: &Value, current: &Value, tolerances: &[(String, Tolerance)]) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    let mut may_hold = |path: &str| {
        let segments = path.split('.').count();
        KEY_METRICS.iter().any(|(pattern, _)| {
            segments <= pattern.split('.').count()
                && path.split('.').zip(pattern.split('.')).all(|(s, p)| p == "*" || s == p)
        }) || tolerances
            .iter()
            .any(|(t, _)| t.strip_prefix(path).is_some_and(|rest| rest.is_empty() || rest.starts_with('.')))
    };
    for side in [baseline, current] {
        visit_leaves(side, &mut may_hold, &mut |metric| {
            if better_of(metric).is_some() || tolerances.iter().any(|(t, _)| t == metric) {
                all.insert(metric.to_owned());
            }
        });
    }
    all
}

fn judge(b: Option<f64>, c: Option<f64>, tol: Tolerance, better: Better, unit: MetricUnit) -> Status {
    let (Some(b), Some(c)) = (b, c) else {
        return match (b, c) {
            (Some(_), None) => Status::Missing,
            (None, Some(_)) => Status::New,
            _ => Status::Ok,
        };
    };
    let floor = floor(unit);
    let allowed = tol.allowed(b).max(floor);
    let worse_by = match better {
        Better::Lower => c - b,
        Better::Higher => b - c,
        Better::Either => return if (c - b).abs() > allowed { Status::Changed } else { Status::Ok },
    };
    if worse_by > allowed {
        Status::Regressed
    } else if -worse_by > allowed {
        Status::Improved
    } else {
        Status::Ok
    }
}

fn floor(unit: MetricUnit) -> f64 {
    if unit == MetricUnit::Ms { 1.0 } else { 1e-3 }
}

/// One-sided level of every noise test: a difference this unlikely under
/// seed noise alone counts.
const NOISE_LEVEL: f64 = 0.999;

/// The most batches a run is split into for noise mode, and the fewest
/// that merging correlated ones goes down to.
const MAX_BATCHES: usize = 20;
const MIN_BATCHES: usize = 5;

/// What noise mode knows about two runs of the same scenario.
struct Noise<'a> {
    base: Side<'a>,
    cur: Side<'a>,
    /// Paired batches: the measured intervals of both runs, split alike.
    ranges: Vec<std::ops::Range<usize>>,
    batches: usize,
    batch_s: f64,
    /// Design effect: how much more the service level varies between
    /// batches than independent sessions would make it (≥ 1).
    deff: f64,
}

impl<'a> Noise<'a> {
    fn of(base: Side<'a>, cur: Side<'a>) -> Option<Noise<'a>> {
        let (bs, cs) = (base.series?, cur.series?);
        if bs.offered.is_empty() || cs.offered.is_empty() || bs.interval_s != cs.interval_s {
            return None;
        }
        let get = |p: &str| lookup(base.summary, p);
        let (warmup, duration) = (get("scenario.warmup_s")?, get("scenario.duration_s")?);
        let iv = bs.interval_s;
        let first = (warmup / iv).ceil() as usize;
        let last = ((duration / iv).floor() as usize).min(bs.offered.len()).min(cs.offered.len());
        let m = last.saturating_sub(first);
        if m < 4 {
            return None;
        }
        let split =
            |k: usize| -> Vec<_> { (0..k).map(|j| first + j * m / k..first + (j + 1) * m / k).collect() };
        let mut k = m.min(MAX_BATCHES);
        let mut noise = Noise { base, cur, batch_s: 0.0, batches: k, ranges: split(k), deff: 1.0 };
        // Batches must be about independent for the t-test: a busy queue
        // remembers for longer than a short batch (found by probing: 4-hour
        // runs of the Erlang C case at 91 % load, batches of 9 minutes,
        // called one pair of seeds in six "regressed"). While the batches'
        // service levels follow one another, they are merged in pairs.
        while k >= 2 * MIN_BATCHES && noise.lag_correlation() > 1.0 / (k as f64).sqrt() {
            k /= 2;
            noise.ranges = split(k);
        }
        noise.batches = k;
        noise.batch_s = iv * (m / k) as f64;
        noise.deff = noise.design_effect();
        Some(noise)
    }

    /// The lag-1 autocorrelation of the batches' service levels, both runs
    /// pooled (each about its own mean).
    fn lag_correlation(&self) -> f64 {
        let (mut cross, mut square) = (0.0, 0.0);
        for s in [self.base.series, self.cur.series].into_iter().flatten() {
            let Some(v) = self.batch_values(s, "service_level") else { continue };
            let v: Vec<f64> = v.into_iter().flatten().collect();
            if v.len() < 3 {
                continue;
            }
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            cross += v.windows(2).map(|w| (w[0] - mean) * (w[1] - mean)).sum::<f64>();
            square += v.iter().map(|x| (x - mean).powi(2)).sum::<f64>();
        }
        if square > 0.0 { cross / square } else { 0.0 }
    }

    /// numerator and denominator per interval of a rate metric.
    fn parts(s: &SeriesData, metric: &str) -> Option<(Vec<f64>, Vec<f64>)> {
        let f = |v: &[u64]| v.iter().map(|x| *x as f64).collect::<Vec<_>>();
        let offered = f(&s.offered);
        match metric {
            "service_level" => Some((f(&s.within_t), offered)),
            "abandon_rate" => Some((f(&s.abandoned_by_arrival), offered)),
            "wait_probability" => {
                let waited = s.offered.iter().zip(&s.immediate).map(|(o, i)| o.saturating_sub(*i) as f64);
                Some((waited.collect(), offered))
            }
            "asa_ms" => Some((s.queue_wait_sum_ms.clone(), f(&s.answered_by_arrival))),
            _ => None,
        }
    }

    fn batch_values(&self, s: &SeriesData, metric: &str) -> Option<Vec<Option<f64>>> {
        let (num, den) = Self::parts(s, metric)?;
        Some(
            self.ranges
                .iter()
                .map(|r| {
                    let n: f64 = num.get(r.clone())?.iter().sum();
                    let d: f64 = den.get(r.clone())?.iter().sum();
                    (d > 0.0).then(|| n / d)
                })
                .collect(),
        )
    }

    /// How much more the service level of paired batches differs than if
    /// every session were independent: var(d) over the binomial variance
    /// of the differences (pairing takes out the time of day's own swing).
    fn design_effect(&self) -> f64 {
        let (Some(bs), Some(cs)) = (self.base.series, self.cur.series) else { return 1.0 };
        let (Some(b), Some(c)) =
            (self.batch_values(bs, "service_level"), self.batch_values(cs, "service_level"))
        else {
            return 1.0;
        };
        let size =
            |s: &SeriesData, r: &std::ops::Range<usize>| s.offered[r.clone()].iter().sum::<u64>() as f64;
        let mut d = Vec::new();
        let mut binomial = Vec::new();
        for (j, r) in self.ranges.iter().enumerate() {
            if let (Some(x), Some(y)) = (b[j], c[j]) {
                d.push(y - x);
                binomial.push(x * (1.0 - x) / size(bs, r) + y * (1.0 - y) / size(cs, r));
            }
        }
        if d.len() < 4 {
            return 1.0;
        }
        let k = d.len() as f64;
        let mean = d.iter().sum::<f64>() / k;
        let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0);
        let expected = binomial.iter().sum::<f64>() / k;
        if expected > 0.0 { (var / expected).clamp(1.0, 1e4) } else { 1.0 }
    }

    /// The verdict and the rule, for a metric noise mode can judge.
    fn judge(
        &self,
        metric: &str,
        b: Option<f64>,
        c: Option<f64>,
        better: Better,
        unit: MetricUnit,
    ) -> Option<(Status, String)> {
        let (Some(bv), Some(cv)) = (b, c) else { return None };
        let worse_by = match better {
            Better::Lower => cv - bv,
            Better::Higher => bv - cv,
            // seed noise has no side to judge on: the tolerance decides
            Better::Either => return None,
        };
        if let (Some(bb), Some(cb)) =
            (self.batch_values(self.base.series?, metric), self.batch_values(self.cur.series?, metric))
        {
            let d: Vec<f64> =
                bb.iter().zip(&cb).filter_map(|(x, y)| Some(y.as_ref()? - x.as_ref()?)).collect();
            if d.len() >= 4 {
                let k = d.len() as f64;
                let mean = d.iter().sum::<f64>() / k;
                let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0)).sqrt();
                let t_crit = crate::stats::t_quantile(NOISE_LEVEL, d.len() as u32 - 1);
                let bound = t_crit * sd / k.sqrt();
                let status = if worse_by.abs() <= floor(unit) || worse_by.abs() <= bound {
                    Status::Ok
                } else if worse_by > 0.0 {
                    Status::Regressed
                } else {
                    Status::Improved
                };
                let rule = format!(
                    "seed noise ±{} (paired batch means, {:.1} %)",
                    format_metric(metric, bound, unit),
                    NOISE_LEVEL * 100.0
                );
                return Some((status, rule));
            }
        }
        if let Some((name, q)) = percentile_of(metric) {
            let (hb, hc) = (self.base.histograms?.get(name)?, self.cur.histograms?.get(name)?);
            if hb.is_empty() || hc.is_empty() {
                return None;
            }
            // one-sided 99 % for each run: both sides together about 99.99 %
            let z = crate::stats::normal_quantile(0.99);
            // An end past the sample's own (too few independent values for
            // the quantile) is unknown, not the sample's extreme: clamped
            // to the maximum, another seed's p99 above a baseline's maximum
            // was "regressed" (found by probing).
            let at = |h: &Histogram<u64>, dq: f64| {
                let n_eff = h.len() as f64 / self.deff;
                let half = z * (q * (1.0 - q) / n_eff).sqrt();
                let qq = q + dq * half;
                if qq >= 1.0 {
                    f64::INFINITY
                } else if qq <= 0.0 {
                    0.0
                } else {
                    h.value_at_quantile(qq).min(h.max()) as f64 / 1e3
                }
            };
            let (b_lo, b_hi, c_lo, c_hi) = (at(hb, -1.0), at(hb, 1.0), at(hc, -1.0), at(hc, 1.0));
            let (worse, better_) = match better {
                Better::Higher => (c_hi < b_lo, c_lo > b_hi),
                _ => (c_lo > b_hi, c_hi < b_lo),
            };
            let status = if worse_by.abs() <= floor(unit) {
                Status::Ok
            } else if worse {
                Status::Regressed
            } else if better_ {
                Status::Improved
            } else {
                Status::Ok
            };
            let f =
                |v: f64| if v.is_finite() { crate::gate::format_value(v, unit) } else { "unbounded".into() };
            let rule = format!(
                "seed noise: baseline {}–{}, current {}–{} (99 % quantile intervals)",
                f(b_lo),
                f(b_hi),
                f(c_lo),
                f(c_hi)
            );
            return Some((status, rule));
        }
        if metric == "sticky.rate" {
            let n = |v: &Value| lookup(v, "sticky.eligible").filter(|n| *n > 0.0);
            let (n1, n2) = (n(self.base.summary)?, n(self.cur.summary)?);
            let pooled = (bv * n1 + cv * n2) / (n1 + n2);
            let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2) * self.deff).sqrt();
            let bound = crate::stats::normal_quantile(NOISE_LEVEL) * se;
            let status = if worse_by.abs() <= bound.max(floor(unit)) {
                Status::Ok
            } else if worse_by > 0.0 {
                Status::Regressed
            } else {
                Status::Improved
            };
            return Some((
                status,
                format!("seed noise ±{:.2}% (two proportions, {:.1} %)", bound * 100.0, NOISE_LEVEL * 100.0),
            ));
        }
        None
    }
}

/// `latency_ms.first_response.p95` → (`first_response`, 0.95).
fn percentile_of(metric: &str) -> Option<(&str, f64)> {
    let rest = metric.strip_prefix("latency_ms.")?;
    let (name, stat) = rest.split_once('.')?;
    let q = match stat {
        "p50" => 0.5,
        "p90" => 0.9,
        "p95" => 0.95,
        "p99" => 0.99,
        "p999" => 0.999,
        _ => return None,
    };
    Some((name, q))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::leaf_paths;
    use crate::gate::tests::unlike_pair;
    use serde_json::json;

    /// A comparison's mode and each row's status, read back from a run
    /// folder's `comparison.json` by `kfsim report`, are names: serde's
    /// derive read `{"regressed": null}` as `"regressed"` too.
    #[test]
    fn modes_and_statuses_are_read_from_their_names_alone() {
        assert_eq!(serde_json::from_str::<Mode>(r#""noise""#).unwrap(), Mode::Noise);
        assert_eq!(serde_json::from_str::<Status>(r#""missing""#).unwrap(), Status::Missing);
        for table in [r#"{"exact": null}"#, r#"{"exact": {}}"#] {
            let read = serde_json::from_str::<Mode>(table);
            assert!(read.is_err(), "{table} read as {read:?}");
        }
        for table in [r#"{"regressed": null}"#, r#"{"ok": {}}"#] {
            let read = serde_json::from_str::<Status>(table);
            assert!(read.is_err(), "{table} read as {read:?}");
        }
    }

    fn union(a: &Value, b: &Value) -> BTreeSet<String> {
        leaf_paths(a).union(&leaf_paths(b)).cloned().collect()
    }

    /// Exact mode's rows, as they were made from the union of both runs'
    /// listed paths, each looked up by scanning.
    fn exact_rows_from_lists(a: &Value, b: &Value) -> Vec<Row> {
        let rows = union(a, b).into_iter().filter(|p| !p.starts_with("gates."));
        rows.map(|metric| {
            let (x, y) = (lookup(a, &metric), lookup(b, &metric));
            let status = if x == y { Status::Ok } else { Status::Changed };
            Row { metric, baseline: x, current: y, tolerance: "exact".into(), status }
        })
        .collect()
    }

    #[test]
    fn exact_rows_are_those_of_the_listed_paths() {
        let (a, b) = unlike_pair();
        for (x, y) in [(&a, &b), (&b, &a), (&a, &a)] {
            let c = compare(x, y, &[]);
            assert_eq!(c.mode, Mode::Exact);
            assert_eq!(c.rows, exact_rows_from_lists(x, y));
        }
        let c = compare(&a, &b, &[]);
        assert_eq!(status(&c, "agents.a-2.sessions"), Status::Changed);
        assert_eq!(status(&c, "agents.a-1.sessions"), Status::Ok, "the first a-1, as lookup finds it");
    }

    #[test]
    fn judged_paths_are_the_listed_paths_judged() {
        let (a, b) = unlike_pair();
        let tol = |p: &str| (p.to_owned(), Tolerance::Relative(0.1));
        let cases = [
            vec![],
            vec![tol("*")],
            vec![tol("agents.a-1.sessions"), tol("agents.x.y.sessions"), tol("k.x"), tol("mixed.1.x")],
            vec![tol("agents.4.sessions"), tol("flow.0.0"), tol("agents"), tol("nowhere.x")],
        ];
        for tolerances in &cases {
            for (x, y) in [(&a, &b), (&b, &a)] {
                let listed: BTreeSet<String> = union(x, y)
                    .into_iter()
                    .filter(|m| better_of(m).is_some() || tolerances.iter().any(|(p, _)| p == m))
                    .collect();
                assert_eq!(judged_paths(x, y, tolerances), listed, "{tolerances:?}");
            }
        }
        let c = compare(&a, &b, &cases[2]);
        assert_eq!(status(&c, "latency_ms.queue_wait.p99"), Status::Missing);
        assert_eq!(status(&c, "live.gave_up.messages"), Status::Missing);
    }

    #[test]
    fn tolerances_resolve_against_the_walked_paths_as_the_listed() {
        let (a, b) = unlike_pair();
        let listed = union(&a, &b);
        let summaries = [&a, &b];
        let walked = SummaryPaths(&summaries);
        let mut each = BTreeSet::new();
        walked.each(&mut |p| {
            each.insert(p.to_owned());
        });
        assert_eq!(each, listed);
        let mut names: Vec<String> = listed.iter().cloned().collect();
        names.extend(
            ["agents.a-3.sessions", "agents.x", "k", "queue_wait.p95", "sticky.rat", ""].map(String::from),
        );
        for n in &names {
            assert_eq!(walked.contains(n), listed.contains(n), "{n}");
            let arg = format!("{n}=5%");
            assert_eq!(parse_tolerance_arg(&arg, &walked), parse_tolerance_arg(&arg, &listed), "{arg}");
        }
    }

    fn summary(sl: f64, p95: f64, seed: u64) -> Value {
        json!({
            "engine": "sim", "seed": seed,
            "scenario": { "fingerprint": "abc" },
            "service_level": sl,
            "latency_ms": { "first_response": { "p95": p95, "count": 10 } },
        })
    }

    fn status(c: &Comparison, metric: &str) -> Status {
        c.rows.iter().find(|r| r.metric == metric).unwrap_or_else(|| panic!("{metric} not compared")).status
    }

    #[test]
    fn same_sim_run_is_compared_exactly() {
        let a = summary(0.8, 1000.0, 7);
        let c = compare(&a, &a, &[]);
        assert!(c.exact && !c.failed());
        let tiny = compare(&a, &summary(0.8, 1000.001, 7), &[]);
        assert!(tiny.failed(), "any difference fails in exact mode");
        assert_eq!(status(&tiny, "latency_ms.first_response.p95"), Status::Changed);
        assert_eq!(status(&tiny, "latency_ms.first_response.count"), Status::Ok);
    }

    #[test]
    fn other_seeds_use_tolerances() {
        let base = summary(0.80, 1000.0, 7);
        let c = compare(&base, &summary(0.79, 1050.0, 8), &[]);
        assert!(!c.exact);
        assert!(!c.failed(), "{c:?}");
        let worse = compare(&base, &summary(0.70, 1200.0, 8), &[]);
        assert_eq!(status(&worse, "service_level"), Status::Regressed);
        assert_eq!(status(&worse, "latency_ms.first_response.p95"), Status::Regressed);
        let better = compare(&base, &summary(0.95, 500.0, 8), &[]);
        assert_eq!(status(&better, "service_level"), Status::Improved);
        assert!(!better.failed());
        assert!(
            !worse.rows.iter().any(|r| r.metric.ends_with("count")),
            "counts are not key metrics in tolerance mode"
        );
    }

    #[test]
    fn explicit_tolerances() {
        let base = summary(0.80, 1000.0, 7);
        let valid = leaf_paths(&base);
        let loose = parse_tolerance_arg("first_response.p95=30%", &valid).unwrap();
        assert_eq!(loose.0, "latency_ms.first_response.p95");
        let c = compare(&base, &summary(0.80, 1250.0, 7), &[loose]);
        assert!(!c.exact, "a tolerance switches exact mode off");
        assert_eq!(status(&c, "latency_ms.first_response.p95"), Status::Ok);
        let abs = parse_tolerance_arg("first_response.p95=100ms", &valid).unwrap();
        assert_eq!(abs.1, Tolerance::Absolute(100.0));
        let c = compare(&base, &summary(0.80, 1150.0, 7), &[abs]);
        assert_eq!(status(&c, "latency_ms.first_response.p95"), Status::Regressed);
        let all = parse_tolerance_arg("*=1%", &valid).unwrap();
        let c = compare(&base, &summary(0.78, 1000.0, 7), &[all]);
        assert_eq!(status(&c, "service_level"), Status::Regressed);
        assert!(parse_tolerance_arg("first_respons.p95=1%", &valid).unwrap_err().contains("closest"));
        assert!(parse_tolerance_arg("service_level=5s", &valid).is_err());
        for bad in ["*=nan", "service_level=-5", "first_response.p95=inf"] {
            let e = parse_tolerance_arg(bad, &valid).unwrap_err();
            assert!(e.contains("expected a number from 0 up"), "{bad}: {e}");
        }
    }

    /// A tolerance on a metric that is not a key one judges it the way it
    /// is better (found by probing: an entry's service level falling from
    /// 92 % to 80 % was "improved"); a metric with no better side fails
    /// when it moves beyond the tolerance either way; a repeated tolerance
    /// takes the last.
    #[test]
    fn a_tolerance_judges_a_metric_the_way_it_is_better() {
        let with = |sl: f64, answered: f64, offered: f64| {
            let mut s = summary(0.80, 1000.0, 7);
            s["by_entry"] = json!({ "web": { "service_level": sl, "asa_ms": 900.0 * (1.0 - sl) } });
            s["sessions"] =
                json!({ "answered": answered, "offered": offered, "abandoned": 1000.0 - answered });
            s
        };
        let base = with(0.92, 900.0, 1000.0);
        let valid = leaf_paths(&base);
        let tol = |arg: &str| parse_tolerance_arg(arg, &valid).unwrap();
        let sl = tol("by_entry.web.service_level=1%");
        let c = compare(&base, &with(0.80, 900.0, 1000.0), std::slice::from_ref(&sl));
        assert_eq!(status(&c, "by_entry.web.service_level"), Status::Regressed);
        let c = compare(&base, &with(0.99, 900.0, 1000.0), &[sl]);
        assert_eq!(status(&c, "by_entry.web.service_level"), Status::Improved);
        assert_eq!(direction_of("latency_ms.queue_wait.count"), Better::Either);
        assert_eq!(direction_of("by_entry.web.latency_ms.queue_wait.p90"), Better::Lower);
        // an error of any kind (`timeout` was judged either way, as was `connect`)
        for kind in ["timeout", "connect", "broken", "http_503", "errcode_45009"] {
            let path = format!("http.customer_batch.errors_by_kind.{kind}");
            assert_eq!(direction_of(&path), Better::Lower, "{path}");
        }
        assert_eq!(direction_of("middleware.api.kf/send_msg.errcodes.95018"), Better::Lower);
        let c = compare(&base, &with(0.92, 950.0, 1000.0), &[tol("by_entry.web.asa_ms=1%")]);
        assert_eq!(status(&c, "by_entry.web.asa_ms"), Status::Ok);
        let worse = compare(&base, &with(0.5, 950.0, 1000.0), &[tol("by_entry.web.asa_ms=1%")]);
        assert_eq!(status(&worse, "by_entry.web.asa_ms"), Status::Regressed);
        let fewer = compare(&base, &with(0.92, 800.0, 1000.0), &[tol("sessions.answered=5%")]);
        assert_eq!(status(&fewer, "sessions.answered"), Status::Regressed);
        let abandoned = compare(&base, &with(0.92, 800.0, 1000.0), &[tol("sessions.abandoned=5%")]);
        assert_eq!(status(&abandoned, "sessions.abandoned"), Status::Regressed);
        // sessions offered are neither better more nor fewer
        let offered = tol("sessions.offered=5%");
        for o in [800.0, 1200.0] {
            let c = compare(&base, &with(0.92, 900.0, o), std::slice::from_ref(&offered));
            assert_eq!(status(&c, "sessions.offered"), Status::Changed, "{o}");
            assert!(c.failed());
        }
        let c = compare(&base, &with(0.92, 900.0, 1020.0), &[offered]);
        assert_eq!(status(&c, "sessions.offered"), Status::Ok);
        // the last of two tolerances for one metric counts
        let (loose, tight) = (tol("service_level=50%"), tol("service_level=1%"));
        let worse = with(0.92, 900.0, 1000.0);
        let mut worse_sl = worse.clone();
        worse_sl["service_level"] = json!(0.70);
        let c = compare(&base, &worse_sl, &[loose.clone(), tight.clone()]);
        assert_eq!(status(&c, "service_level"), Status::Regressed);
        let c = compare(&base, &worse_sl, &[tight, loose]);
        assert_eq!(status(&c, "service_level"), Status::Ok);
    }

    /// An error kind or errcode a run never met is left out of its summary:
    /// a baseline without it had 0, so a run that meets it has more errors,
    /// not a new metric (which passes).
    #[test]
    fn an_error_the_baseline_never_met_counts_from_0() {
        let mut base = summary(0.80, 1000.0, 7);
        base["http"] = json!({ "send_msg": { "errors": 0, "errors_by_kind": {} } });
        base["middleware"] = json!({ "api": { "kf/send_msg": { "count": 9, "errors": 0, "errcodes": {} } } });
        let mut cur = summary(0.80, 1000.0, 8);
        cur["http"] = json!({ "send_msg": { "errors": 40, "errors_by_kind": { "timeout": 40 } } });
        cur["middleware"] =
            json!({ "api": { "kf/send_msg": { "count": 9, "errors": 3, "errcodes": { "95018": 3 } } } });
        let valid = leaf_paths(&cur);
        let tol = |arg: &str| parse_tolerance_arg(arg, &valid).unwrap();
        for path in ["http.send_msg.errors_by_kind.timeout", "middleware.api.kf/send_msg.errcodes.95018"] {
            let c = compare(&base, &cur, &[tol(&format!("{path}=10%"))]);
            let row = c.rows.iter().find(|r| r.metric == path).unwrap();
            assert_eq!((row.baseline, row.status), (Some(0.0), Status::Regressed), "{path}");
            assert!(c.failed(), "{path}");
        }
        // where the part that would hold it is absent, it was not measured
        let mut bare = summary(0.80, 1000.0, 7);
        bare["http"] = json!({});
        let c = compare(&bare, &cur, &[tol("http.send_msg.errors_by_kind.timeout=10%")]);
        assert_eq!(status(&c, "http.send_msg.errors_by_kind.timeout"), Status::New);
    }

    /// A summary written before callbacks in flight at the end were
    /// counted compares with one that counts them: the figure is new, not
    /// a count that rose from 0 (the older run may have had some), and a
    /// tolerance on it does not fail.
    #[test]
    fn callback_figures_an_older_summary_lacks_are_new() {
        let callbacks = |extra: Value| {
            let mut c = json!({ "sent": 10, "delivered": 7, "failed": 1, "retried": 2 });
            c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let mut s = summary(0.80, 1000.0, 7);
            s["engine"] = json!("live");
            s["middleware"] = json!({ "url": "http://mw/cb", "callbacks": c });
            s
        };
        let old = callbacks(json!({}));
        let cur = callbacks(
            json!({ "dropped": 0, "duplicated": 1, "in_flight_at_end": 2, "unannounced_at_end": 3 }),
        );
        let valid = leaf_paths(&cur);
        let tol = |p: &str| parse_tolerance_arg(&format!("middleware.callbacks.{p}=10%"), &valid).unwrap();
        let tols = ["in_flight_at_end", "dropped", "duplicated", "unannounced_at_end"].map(tol);
        let c = compare(&old, &cur, &tols);
        for path in [
            "middleware.callbacks.in_flight_at_end",
            "middleware.callbacks.dropped",
            "middleware.callbacks.duplicated",
            "middleware.callbacks.unannounced_at_end",
        ] {
            assert_eq!(status(&c, path), Status::New, "{path}");
        }
        assert!(!c.failed(), "{c:?}");
        assert!(!compare(&old, &cur, &[]).failed());
    }

    /// A live summary written before the calls cut at the end were
    /// counted compares with one that counts them: new, not a count that
    /// rose from 0, and a tolerance on it does not fail.
    #[test]
    fn calls_cut_an_older_summary_lacks_are_new() {
        let live = |extra: Value| {
            let mut l = json!({ "target": "http://t", "time_scale": 60.0, "wall_s": 12.0, "open_at_end": 3 });
            l.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let mut s = summary(0.80, 1000.0, 7);
            s["engine"] = json!("live");
            s["live"] = l;
            s
        };
        let (old, cur) = (live(json!({})), live(json!({ "calls_cut_at_end": 40 })));
        let valid = leaf_paths(&cur);
        let tol = parse_tolerance_arg("live.calls_cut_at_end=10%", &valid).unwrap();
        let c = compare(&old, &cur, &[tol]);
        assert_eq!(status(&c, "live.calls_cut_at_end"), Status::New);
        assert!(!c.failed(), "{c:?}");
        assert!(!compare(&old, &cur, &[]).failed());
    }

    #[test]
    fn a_metric_gone_from_the_current_run_fails() {
        let base = summary(0.80, 1000.0, 7);
        let mut cur = summary(0.80, 1000.0, 8);
        cur["latency_ms"]["first_response"]["p95"] = Value::Null;
        let c = compare(&base, &cur, &[]);
        assert_eq!(status(&c, "latency_ms.first_response.p95"), Status::Missing);
        assert!(c.failed());
        let new = compare(&cur, &base, &[]);
        assert_eq!(status(&new, "latency_ms.first_response.p95"), Status::New);
        assert!(!new.failed(), "a metric that appears is not a failure");
    }

    #[test]
    fn unlike_runs_are_named() {
        let base = summary(0.80, 1000.0, 7);
        let mut other = summary(0.80, 1000.0, 7);
        other["scenario"]["fingerprint"] = json!("def");
        let c = compare(&base, &other, &[]);
        assert!(!c.exact && c.notes.iter().any(|n| n.contains("changed between the runs")), "{c:?}");
        let mut named = summary(0.80, 1000.0, 7);
        named["scenario"]["name"] = json!("x");
        let mut named2 = named.clone();
        named2["scenario"]["name"] = json!("y");
        let c = compare(&named, &named2, &[]);
        assert!(c.notes.iter().any(|n| n.starts_with("different scenarios: x against y")), "{c:?}");
        let seeds = compare(&base, &summary(0.80, 1000.0, 8), &[]);
        assert!(seeds.notes.iter().any(|n| n.contains("seed noise cannot be estimated")), "{seeds:?}");
    }

    /// A day of 96 intervals with service level `sl` ± seeded noise.
    fn series(sl: f64, seed: u64) -> SeriesData {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut noise = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1000) as f64 / 1000.0 - 0.5
        };
        let offered = vec![100u64; 96];
        let within: Vec<u64> =
            offered.iter().map(|o| ((sl + 0.1 * noise()) * *o as f64).round() as u64).collect();
        SeriesData {
            interval_s: 900.0,
            offered: offered.clone(),
            immediate: within.clone(),
            within_t: within,
            abandoned_by_arrival: vec![0; 96],
            answered_by_arrival: offered,
            queue_wait_sum_ms: vec![1000.0; 96],
            ..SeriesData::default()
        }
    }

    fn day(sl: f64, seed: u64) -> Value {
        json!({
            "engine": "sim", "seed": seed, "service_level": sl,
            "scenario": { "name": "day", "fingerprint": "abc", "warmup_s": 0.0, "duration_s": 86400.0 },
        })
    }

    #[test]
    fn other_seeds_are_judged_against_seed_noise() {
        let (b, c, w) = (series(0.8, 1), series(0.8, 2), series(0.7, 3));
        let (sb, sc, sw) = (day(0.8, 1), day(0.79, 2), day(0.7, 3));
        let same = compare_runs(
            Side { summary: &sb, series: Some(&b), histograms: None },
            Side { summary: &sc, series: Some(&c), histograms: None },
            &[],
        );
        assert_eq!(same.mode, Mode::Noise);
        assert_eq!(status(&same, "service_level"), Status::Ok, "{same:?}");
        let worse = compare_runs(
            Side { summary: &sb, series: Some(&b), histograms: None },
            Side { summary: &sw, series: Some(&w), histograms: None },
            &[],
        );
        assert_eq!(status(&worse, "service_level"), Status::Regressed, "{worse:?}");
        // a congestion episode: a queue at high load remembers for hours,
        // and two seeds put its episodes at other times and lengths; the
        // batches follow one another, so they are merged until they do not
        // (20 batches said "regressed": found by probing)
        let episode = |from: usize, to: usize, seed: u64| {
            let mut s = series(0.0, seed);
            for (i, w) in s.within_t.iter_mut().enumerate() {
                *w += if (from..to).contains(&i) { 60 } else { 80 };
            }
            s.immediate = s.within_t.clone();
            s
        };
        let (long_b, long_c) = (episode(72, 96, 4), episode(24, 96, 5));
        let (lb, lc) = (day(0.8, 4), day(0.7, 5));
        let long = compare_runs(
            Side { summary: &lb, series: Some(&long_b), histograms: None },
            Side { summary: &lc, series: Some(&long_c), histograms: None },
            &[],
        );
        assert_eq!(status(&long, "service_level"), Status::Ok, "{long:?}");
        assert!(long.notes.iter().any(|n| n.contains("5 batches of 4h45m")), "{:?}", long.notes);
        // a flat 1 % tolerance would have failed the same seed noise
        let flat = compare(&sb, &sc, &[("*".into(), Tolerance::Relative(0.01))]);
        assert_eq!(status(&flat, "service_level"), Status::Regressed);
    }

    #[test]
    fn rows_read_like_the_terminal() {
        let r = Row {
            metric: "service_level".into(),
            baseline: Some(0.8397),
            current: Some(0.7678),
            tolerance: "tolerance 10%".into(),
            status: Status::Regressed,
        };
        assert_eq!(r.describe(), "service_level 83.97% → 76.78% (−8.6 %; tolerance 10%)");
        let r = Row {
            metric: "latency_ms.queue_wait.p95".into(),
            baseline: Some(35_300.0),
            current: Some(51_000.0),
            ..r
        };
        assert_eq!(r.describe(), "queue_wait.p95 35.3s → 51.0s (+44.5 %; tolerance 10%)");
    }

    #[test]
    fn a_zero_baseline_needs_more_than_noise_to_regress() {
        let base =
            json!({ "engine": "live", "latency_ms": { "queue_wait": { "p50": 0.0 } }, "abandon_rate": 0.0 });
        let cur =
            json!({ "engine": "live", "latency_ms": { "queue_wait": { "p50": 0.4 } }, "abandon_rate": 0.01 });
        let c = compare(&base, &cur, &[]);
        assert_eq!(status(&c, "latency_ms.queue_wait.p50"), Status::Ok);
        assert_eq!(status(&c, "abandon_rate"), Status::Regressed);
    }
}
