//! Gates: thresholds on any number of the summary, checked after a run so
//! that CI can fail a build on them.
//!
//! In a scenario, `[gates]` maps a metric path to a condition:
//! `"first_response.p95" = "< 60s"`. A path names a number in
//! `summary.json` (`fairness.presale.jain`, `agents.day-shift-03.occupancy`,
//! `by_entry.channels.queue_wait.p95`); the latency names alone are short for
//! their place under `latency_ms` (`queue_wait.p99`). A condition is an
//! operator (`<`, `<=`, `>`, `>=`, `==`, `!=`) and a number with an optional
//! unit: a duration unit (`ms`, `s`, `m`, `h`) for time metrics, `%` for
//! shares. A bare number is in the metric's own unit (ms under `latency_ms`).
//!
//! Paths are checked against the summary shape of the scenario itself, so a
//! typo is an error before anything runs, with the closest valid path:
//! [`bind`] turns a scenario's gates as written into [`Gate`]s, knowing the
//! summary's metric paths from [`metric_paths`] without running anything.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metrics::Metrics;
use crate::observe::RunStats;
use crate::scenario::units::parse_duration;
use crate::scenario::{Diagnostic, Scenario, ScenarioError};
use crate::summary::Summary;
pub use crate::summary::{GateResult, Verdict};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// Whether `actual OP threshold` holds.
    pub fn holds(self, actual: f64, threshold: f64) -> bool {
        match self {
            Op::Lt => actual < threshold,
            Op::Le => actual <= threshold,
            Op::Gt => actual > threshold,
            Op::Ge => actual >= threshold,
            Op::Eq => actual == threshold,
            Op::Ne => actual != threshold,
        }
    }
}

/// The unit a metric is expressed in, read from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricUnit {
    /// Milliseconds (`latency_ms.*`, `asa_ms`, `*_ms`).
    Ms,
    /// Seconds (`*_s`).
    S,
    /// A count or a share: no unit.
    Plain,
}

/// The unit of the metric at a canonical `path`.
pub fn unit_of(path: &str) -> MetricUnit {
    let segments: Vec<&str> = path.split('.').collect();
    let last = segments.last().copied().unwrap_or("");
    let latency_stat = ["mean", "p50", "p90", "p95", "p99", "p999", "max"].contains(&last);
    if segments.iter().any(|s| s.ends_with("_ms")) && last != "count" {
        MetricUnit::Ms
    } else if last.ends_with("_s") && !last.ends_with("_per_s") {
        // a rate per second is not a time (`live.messages_per_s` took
        // "100s" and was shown as "1m40s": found by review)
        MetricUnit::S
    } else if matches!(segments.first(), Some(&("http" | "by_entry" | "bot" | "by_account"))) && latency_stat
    {
        MetricUnit::Ms
    } else {
        MetricUnit::Plain
    }
}

/// A parsed condition: `op` and the threshold in the metric's unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The operator.
    pub op: Op,
    /// The threshold, in the metric's unit.
    pub threshold: f64,
    /// The condition as written.
    pub text: String,
}

impl Condition {
    /// Parse `text` for a metric in `unit`.
    pub fn parse(text: &str, unit: MetricUnit) -> Result<Condition, String> {
        let t = text.trim();
        let (op, rest) = [("<=", Op::Le), (">=", Op::Ge), ("==", Op::Eq), ("!=", Op::Ne), ("<", Op::Lt), (">", Op::Gt)]
            .iter()
            .find_map(|(sym, op)| t.strip_prefix(sym).map(|r| (*op, r.trim())))
            .ok_or_else(|| {
                format!("invalid condition \"{text}\": expected an operator (<, <=, >, >=, ==, !=) and a value, like \"< 60s\" or \">= 0.8\"")
            })?;
        let threshold = threshold(rest, unit).map_err(|e| format!("invalid condition \"{text}\": {e}"))?;
        Ok(Condition { op, threshold, text: t.to_owned() })
    }
}

/// [`Condition::parse`] for the metric at `path`, in its unit; a share's
/// threshold must be one (found by probing: `service_level>=80`, meant as
/// 80 %, was accepted and could never be met).
pub fn condition_for(path: &str, text: &str) -> Result<Condition, String> {
    let c = Condition::parse(text, unit_of(path))?;
    if is_share(path) && !(0.0..=1.0).contains(&c.threshold) {
        return Err(format!(
            "invalid condition \"{text}\": {path} is a share from 0 to 1: write 0.8 or 80%, not {}",
            c.threshold
        ));
    }
    // every figure of a summary is a time, a count, a rate or a share:
    // against a negative threshold a condition is always or never met
    // (found by probing: `asa_ms<=-5` was a plan's target, unreachable)
    if c.threshold < 0.0 {
        return Err(format!("invalid condition \"{text}\": {path} is never negative"));
    }
    Ok(c)
}

/// Whether the metric at `path` is a share that cannot pass 1 (occupancy
/// can: an agent gone off line keeps its sessions; so can an error rate: a
/// batch's failed actions count each).
pub fn is_share(path: &str) -> bool {
    let last = path.rsplit('.').next().unwrap_or(path);
    let bounded =
        ["service_level", "wait_probability", "abandon_rate", "jain", "jain_busy", "gini", "deflection"];
    bounded.contains(&last) || path == "sticky.rate"
}

fn threshold(value: &str, unit: MetricUnit) -> Result<f64, String> {
    if let Ok(n) = value.parse::<f64>() {
        return if n.is_finite() { Ok(n) } else { Err("the value must be finite".into()) };
    }
    if let Some(p) = value.strip_suffix('%') {
        let n: f64 = p.trim().parse().map_err(|_| format!("\"{value}\" is not a percentage"))?;
        return match unit {
            MetricUnit::Plain => Ok(n / 100.0),
            _ => Err("a percentage fits a share, not a time metric".into()),
        };
    }
    let us = parse_duration(value)
        .map_err(|_| format!("\"{value}\" is not a number, a percentage or a duration like \"60s\""))?
        as f64;
    match unit {
        MetricUnit::Ms => Ok(us / 1e3),
        MetricUnit::S => Ok(us / 1e6),
        MetricUnit::Plain => Err(format!("\"{value}\" is a duration, but this metric is not a time")),
    }
}

/// A gate of a scenario, with its path resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// The metric as written in the scenario.
    pub metric: String,
    /// The canonical path into the summary.
    pub path: String,
    /// The condition.
    pub condition: Condition,
}

/// Metric paths that [`resolve`] finds a name among: listed in a set, or
/// known without listing each (a million agents' paths, as strings in a
/// set, took gigabytes).
pub trait PathSet {
    /// Whether `path` is one.
    fn contains(&self, path: &str) -> bool;
    /// Call `f` with each, in any order (a path may come more than once).
    fn each(&self, f: &mut dyn FnMut(&str));
}

impl PathSet for BTreeSet<String> {
    fn contains(&self, path: &str) -> bool {
        BTreeSet::contains(self, path)
    }

    fn each(&self, f: &mut dyn FnMut(&str)) {
        self.iter().for_each(|p| f(p));
    }
}

/// The metric paths of a scenario's summary ([`metric_paths`]): its leaves
/// but its agents' listed, and its agents' (`agents.ID.FIELD`) known from
/// their ids and the fields every agent has.
pub struct ScenarioPaths {
    others: BTreeSet<String>,
    agent_ids: Vec<String>,
    agent_fields: Vec<String>,
}

impl PathSet for ScenarioPaths {
    fn contains(&self, path: &str) -> bool {
        let is_agents = |rest: &str| {
            // an id may hold a `.`: the field is matched from the end
            self.agent_fields.iter().any(|f| {
                rest.strip_suffix(f.as_str())
                    .and_then(|r| r.strip_suffix('.'))
                    .is_some_and(|id| self.agent_ids.iter().any(|a| a == id))
            })
        };
        self.others.contains(path) || path.strip_prefix("agents.").is_some_and(is_agents)
    }

    fn each(&self, f: &mut dyn FnMut(&str)) {
        self.others.iter().for_each(|p| f(p));
        let mut path = String::new();
        for id in &self.agent_ids {
            for field in &self.agent_fields {
                path.clear();
                path.extend(["agents.", id.as_str(), ".", field.as_str()]);
                f(&path);
            }
        }
    }
}

/// The simulator's arrivals refused at its bound on sessions in flight
/// (`RunInfo::shed`), left out of a summary when 0.
const RUN_SHED: &str = "run.shed";

/// Every metric path of the summary a run of `scenario` writes (the live
/// engine's own paths are [`LIVE_ONLY`]), known without running anything:
/// the leaves of the summary of a run that did nothing.
pub fn metric_paths(scenario: &Scenario) -> ScenarioPaths {
    let mut blank = Metrics::new(scenario).finish(scenario, &RunStats::default());
    let agents = std::mem::take(&mut blank.agents);
    let mut others = leaf_paths(&serde_json::to_value(&blank).expect("a summary is JSON"));
    // absent at 0, as in every blank summary, but a figure to gate on
    others.insert(RUN_SHED.to_owned());
    // `AgentSummary` leaves no field out: every agent has the first's
    let agent_fields = agents
        .first()
        .map(|a| leaf_paths(&serde_json::to_value(a).expect("an agent is JSON")).into_iter().collect())
        .unwrap_or_default();
    ScenarioPaths { others, agent_ids: agents.into_iter().map(|a| a.id).collect(), agent_fields }
}

/// Resolve each of the scenario's gates against the summary it produces and
/// parse its condition in that metric's unit; every bad one is an error at
/// its line and column in the scenario file, all of them at once.
pub fn bind(scenario: &Scenario) -> Result<Vec<Gate>, ScenarioError> {
    let (gates, problems) = bind_each(scenario);
    match ScenarioError::of_all(problems.into_iter().map(|p| p.at).collect()) {
        Some(e) => Err(e),
        None => Ok(gates),
    }
}

/// What is wrong with one gate.
struct Problem {
    at: Diagnostic,
    /// Its metric is not one of the summary's: a run that does not check
    /// the gates may go on (an override may have removed that entry or
    /// agent), where a condition that does not parse is wrong in any run.
    unbound: bool,
}

/// The gates of `scenario` that bind, and what is wrong with the others,
/// in file order.
fn bind_each(scenario: &Scenario) -> (Vec<Gate>, Vec<Problem>) {
    let (mut gates, mut problems) = (Vec::new(), Vec::new());
    if scenario.gates.is_empty() {
        return (gates, problems);
    }
    let valid = metric_paths(scenario);
    let mut unknown = 0;
    for spec in &scenario.gates {
        if let Some(at) = spec.written_error() {
            problems.push(Problem { at: at.clone(), unbound: false });
            continue;
        }
        let path = match resolve_hinted(&spec.metric, &valid, unknown < MAX_HINTS) {
            Ok(path) => path,
            Err(m) => {
                unknown += 1;
                problems.push(Problem { at: spec.metric_error(m), unbound: true });
                continue;
            }
        };
        match condition_for(&path, &spec.condition) {
            Ok(condition) => gates.push(Gate { metric: spec.metric.clone(), path, condition }),
            Err(m) => problems.push(Problem { at: spec.condition_error(m), unbound: false }),
        }
    }
    (gates, problems)
}

/// The mistakes of [`bind_each`] that are (`unbound`) or are not about a
/// gate's metric, as one error.
fn problems_of(scenario: &Scenario, unbound: bool) -> Result<(), ScenarioError> {
    let (_, problems) = bind_each(scenario);
    let found = problems.into_iter().filter(|p| p.unbound == unbound).map(|p| p.at).collect();
    ScenarioError::of_all(found).map_or(Ok(()), Err)
}

/// [`bind`] the gates of `scenario`, which is the text `text` of `file`
/// with the overrides `sets`: a gate an override added or broke is
/// reported as that `--set`, not at a line of the rewritten text that the
/// file does not have.
pub fn bind_given(
    scenario: &Scenario,
    text: &str,
    file: &str,
    sets: &[String],
) -> Result<Vec<Gate>, ScenarioError> {
    given(scenario, text, file, sets, bind)
}

/// The gates of a run that does not check them (`--no-gates`), as
/// [`bind_given`] finds them: first each whose metric the run does not
/// have, a warning since it is not checked; then an error if a condition
/// does not parse (or is not a string), as in `kfsim validate`: that is a
/// mistake in the file whatever is run, and went unsaid behind a first
/// unbound gate (found by probing).
pub fn unchecked_given(
    scenario: &Scenario,
    text: &str,
    file: &str,
    sets: &[String],
) -> (Vec<ScenarioError>, Result<(), ScenarioError>) {
    let check = |unbound: bool| given(scenario, text, file, sets, |s| problems_of(s, unbound));
    (check(true).err().map(ScenarioError::split).unwrap_or_default(), check(false))
}

/// `check` the gates of `scenario` (`text` of `file` with `sets`), with a
/// mistake an override made named as that override.
fn given<T>(
    scenario: &Scenario,
    text: &str,
    file: &str,
    sets: &[String],
    check: impl Fn(&Scenario) -> Result<T, ScenarioError>,
) -> Result<T, ScenarioError> {
    let err = match check(scenario) {
        Err(e) if !sets.is_empty() => e,
        r => return r,
    };
    let Some(whole) = err.first() else { return Err(err) };
    // the file's own gates first, at their own lines
    check(&Scenario::parse(text, file)?)?;
    let given: Vec<(&'static str, &str)> = sets.iter().map(|s| ("--set", s.as_str())).collect();
    let blame = |g: &[(&'static str, &str)]| {
        let sets: Vec<String> = g.iter().map(|(_, set)| (*set).to_owned()).collect();
        check(&Scenario::parse_with(text, file, &sets)?).map(|_| ())
    };
    let ScenarioError::Several(all) = &err else {
        return Err(crate::scenario::blame(&given, whole, blame).unwrap_or(err));
    };
    // Each bad gate is blamed on its own override: with two overrides
    // each breaking a gate, the first alone was named (found by probing).
    // A gate an override set is that override's (the last one's). A gate
    // of the file that other overrides broke (`fairness.GROUP.jain` with
    // the group renamed) is blamed on those, the gates' overrides kept:
    // known by its key, as a message can change with what else is wrong.
    let (on_gates, others): (Vec<_>, Vec<_>) = given.iter().partition(|(_, arg)| gate_set(arg).is_some());
    let each: Vec<ScenarioError> = all
        .iter()
        .map(|d| {
            let key = line_key(d);
            let set_by = key
                .as_ref()
                .and_then(|k| on_gates.iter().rev().find(|(_, a)| gate_set(a).as_ref() == Some(k)));
            if let Some(&(flag, arg)) = set_by {
                return crate::scenario::overridden(flag, arg, d);
            }
            let still = |g: &[(&'static str, &str)]| match blame(&[&on_gates[..], g].concat()) {
                Err(e) if mistakes(&e).any(|x| same_gate(x, d, &key)) => Err(e),
                _ => Ok(()),
            };
            crate::scenario::blame(&others, d, still)
                .unwrap_or_else(|| ScenarioError::Invalid(Box::new(d.clone())))
        })
        .collect();
    Err(ScenarioError::Overrides(each))
}

/// The mistakes at places in a file `e` has.
fn mistakes(e: &ScenarioError) -> impl Iterator<Item = &Diagnostic> {
    let (one, all): (Option<&Diagnostic>, &[Diagnostic]) = match e {
        ScenarioError::Invalid(d) => (Some(d), &[]),
        ScenarioError::Several(all) => (None, all),
        _ => (None, &[]),
    };
    one.into_iter().chain(all)
}

/// The gate a `--set` sets, if any.
fn gate_set(arg: &str) -> Option<String> {
    crate::scenario::split_key_value(arg).and_then(|(path, _)| crate::scenario::gate_metric(path.trim()))
}

/// The key of the `[gates]` line a mistake is on (`"queue_wait.p95" =
/// "foo"` in the text the overrides rewrote).
fn line_key(d: &Diagnostic) -> Option<String> {
    let t: toml::Table = toml::from_str(d.source_line()).ok()?;
    if t.len() == 1 { t.keys().next().cloned() } else { None }
}

/// `x` is a mistake in the gate `d` is in (its key, else its message).
fn same_gate(x: &Diagnostic, d: &Diagnostic, key: &Option<String>) -> bool {
    match key {
        Some(k) => line_key(x).as_ref() == Some(k),
        None => x.message == d.message,
    }
}

/// Paths that only the live engine measures. A gate on one of them is valid
/// in every scenario, and is skipped by an engine that does not measure it.
/// A segment `a|b` is either name, `#` an integer (`errcode_#`: that
/// prefix and an integer), `*` any one segment:
/// only where the names are open (the APIs a middleware calls), as a
/// misspelt name matched by `*` made a gate nobody checks (found by
/// probing: `live.gave_up.mesages` passed validate and every run).
pub const LIVE_ONLY: &[&str] = &[
    "messages.sent",
    "messages.delivered",
    "messages.lost",
    "messages.duplicated",
    "messages.reordered",
    "late_actions",
    "lag_ms.count|mean|p50|p90|p95|p99|p999|max",
    "live.time_scale",
    "live.wall_s",
    "live.messages_per_s",
    "live.replies_per_s",
    "live.open_at_end",
    "live.shed",
    "live.busy_at_start",
    "live.calls_cut_at_end",
    "live.overhead_ms",
    "live.distortion",
    "live.saturated",
    "live.driver_lag_ms.count|mean|p50|p90|p95|p99|p999|max",
    "live.gave_up.messages|leaves|replies|ends|bot",
    "live.missed.customers|servicers",
    "live.reconnects.count|held|waiting|messages_lost|sent_since",
    "http.customer_batch|customer_pull|servicer_batch|servicer_pull|open_channel|close_channel|set_status|gettoken|account_list|servicer_list|send_msg|service_state_trans.count|errors|error_rate|mean|p50|p90|p95|p99|p999|max",
    "http.customer_batch|customer_pull|servicer_batch|servicer_pull|open_channel|close_channel|set_status|gettoken|account_list|servicer_list|send_msg|service_state_trans.errors_by_kind.connect|broken|timeout|decode|request|too_large|results_mismatch|http_#|errcode_#",
    "delivery_ms.to_agent|to_customer.count|mean|p50|p90|p95|p99|p999|max",
    "messages.bot",
    "middleware.synced",
    "middleware.customer_messages",
    "middleware.gettoken",
    "middleware.unacted",
    "middleware.owed_at_end",
    "middleware.replies_after_end",
    "middleware.sent_twice",
    "middleware.sync_without_token",
    "middleware.resynced",
    "middleware.scale_effect",
    "middleware.callbacks.sent",
    "middleware.callbacks.delivered",
    "middleware.callbacks.failed",
    "middleware.callbacks.dropped",
    "middleware.callbacks.duplicated",
    "middleware.callbacks.in_flight_at_end",
    "middleware.callbacks.unannounced_at_end",
    "middleware.callbacks.retried",
    "middleware.callbacks.latency_ms.count|mean|p50|p90|p95|p99|p999|max",
    "middleware.sync_lag_ms.count|mean|p50|p90|p95|p99|p999|max",
    "middleware.bot_reply_ms.count|mean|p50|p90|p95|p99|p999|max",
    "middleware.routed_ms.count|mean|p50|p90|p95|p99|p999|max",
    "middleware.handoff_ms.count|mean|p50|p90|p95|p99|p999|max",
    "middleware.api.*.count",
    "middleware.api.*.errors",
    "middleware.api.*.errcodes.#",
    "middleware.api.*.latency_ms.count|mean|p50|p90|p95|p99|p999|max",
];

/// Whether `path` matches `pattern` (in [`LIVE_ONLY`]'s forms).
pub fn matches_pattern(path: &str, pattern: &str) -> bool {
    let (p, q): (Vec<&str>, Vec<&str>) = (path.split('.').collect(), pattern.split('.').collect());
    p.len() == q.len() && p.iter().zip(&q).all(|(a, b)| segment_matches(a, b))
}

/// Whether one segment of a path matches one of a pattern
/// ([`LIVE_ONLY`]'s forms).
fn segment_matches(seg: &str, pattern: &str) -> bool {
    pattern.split('|').any(|alt| match alt.strip_suffix('#') {
        _ if alt == "*" => true,
        Some(prefix) => {
            seg.strip_prefix(prefix).is_some_and(|n| n.strip_prefix('-').unwrap_or(n).parse::<u64>().is_ok())
        }
        None => alt == seg,
    })
}

/// Whether `path` is one only the live engine measures.
pub fn is_live_only(path: &str) -> bool {
    LIVE_ONLY.iter().any(|p| matches_pattern(path, p))
}

/// Every number (or null) leaf of a summary as a dotted path. Array
/// elements are named by their `id` where they have one, else by index.
pub fn leaf_paths(summary: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    visit_leaves(summary, &mut |_| true, &mut |p| {
        out.insert(p.to_owned());
    });
    out
}

/// Call `leaf` with the path of each leaf of `v` as [`leaf_paths`] names
/// it, in one buffer: none is kept unless `leaf` keeps it. A subtree (or
/// leaf) is skipped unless `enter` says its path, or one under it, may be
/// wanted.
pub fn visit_leaves(v: &Value, enter: &mut dyn FnMut(&str) -> bool, leaf: &mut dyn FnMut(&str)) {
    visit_at(v, &mut String::new(), enter, leaf);
}

fn visit_at(v: &Value, path: &mut String, enter: &mut dyn FnMut(&str) -> bool, leaf: &mut dyn FnMut(&str)) {
    match v {
        Value::Number(_) | Value::Null => leaf(path),
        _ => each_child(v, &mut |name, child| {
            let len = push_segment(path, name);
            if enter(path) {
                visit_at(child, path, enter, leaf);
            }
            path.truncate(len);
        }),
    }
}

/// Call `f` with each child of `v` and the segment that names it: an
/// object's by key, an array's by `id` where it has one, else by index.
fn each_child<'a>(v: &'a Value, f: &mut dyn FnMut(&str, &'a Value)) {
    match v {
        Value::Object(map) => map.iter().for_each(|(k, c)| f(k, c)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                match element_id(item) {
                    Some(id) => f(id, item),
                    None => f(&i.to_string(), item),
                }
            }
        }
        _ => {}
    }
}

fn element_id(item: &Value) -> Option<&str> {
    item.get("id").and_then(Value::as_str)
}

/// Append `.name` (or `name` at the top) to `path`; its length before.
fn push_segment(path: &mut String, name: &str) -> usize {
    let len = path.len();
    if len > 0 {
        path.push('.');
    }
    path.push_str(name);
    len
}

/// Call `leaf` with every leaf path of `a` or of `b` ([`leaf_paths`] of
/// both), walking the two side by side so that a path both have comes
/// once: twice only where one tree names two children alike (two elements
/// of one id, a key with a `.`), which a sort and `dedup` drop.
pub fn visit_union(a: &Value, b: &Value, leaf: &mut dyn FnMut(&str)) {
    union_at(Some(a), Some(b), &mut String::new(), leaf);
}

fn union_at(a: Option<&Value>, b: Option<&Value>, path: &mut String, leaf: &mut dyn FnMut(&str)) {
    let is_leaf = |v: Option<&Value>| matches!(v, Some(Value::Number(_) | Value::Null));
    if is_leaf(a) || is_leaf(b) {
        leaf(path);
    }
    let mut down = |name: &str, a: Option<&Value>, b: Option<&Value>| {
        let len = push_segment(path, name);
        union_at(a, b, path, leaf);
        path.truncate(len);
    };
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            x.iter().for_each(|(k, v)| down(k, Some(v), y.get(k)));
            y.iter().filter(|(k, _)| !x.contains_key(*k)).for_each(|(k, v)| down(k, None, Some(v)));
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            let name = |i: usize, item: &Value| element_id(item).map_or_else(|| i.to_string(), str::to_owned);
            // the first element of each name in `b`, met by `a`'s of that name
            let mut of_b: HashMap<String, usize> = HashMap::with_capacity(y.len());
            for (j, item) in y.iter().enumerate() {
                of_b.entry(name(j, item)).or_insert(j);
            }
            let mut met = vec![false; y.len()];
            for (i, item) in x.iter().enumerate() {
                let n = name(i, item);
                let j = of_b.get(&n).copied();
                if let Some(j) = j {
                    met[j] = true;
                }
                down(&n, Some(item), j.map(|j| &y[j]));
            }
            for (j, item) in y.iter().enumerate().filter(|(j, _)| !met[*j]) {
                down(&name(j, item), None, Some(item));
            }
        }
        // of other kinds, or on one side only: each side's children alone
        _ => {
            for side in [a, b].into_iter().flatten() {
                each_child(side, &mut |name, child| down(name, Some(child), None));
            }
        }
    }
}

const LATENCIES: [&str; 5] = ["queue_wait", "abandon_wait", "first_response", "reply", "session"];

/// Unknown metrics of one scenario given the closest known one: each is
/// compared with every path of the scenario, and 10 000 misspelt gates in
/// a wide one took 82 s to report (found by probing).
pub const MAX_HINTS: usize = 50;

/// The canonical path for `metric`, given the valid leaf paths.
pub fn resolve(metric: &str, valid: &(impl PathSet + ?Sized)) -> Result<String, String> {
    resolve_hinted(metric, valid, true)
}

/// [`resolve`], naming the closest path to an unknown one if `hint`.
fn resolve_hinted(metric: &str, valid: &(impl PathSet + ?Sized), hint: bool) -> Result<String, String> {
    let first = metric.split('.').next().unwrap_or("");
    let candidates = [
        metric.to_owned(),
        if LATENCIES.contains(&first) { format!("latency_ms.{metric}") } else { String::new() },
        if metric == "asa" { "asa_ms".to_owned() } else { String::new() },
    ];
    if let Some(path) = candidates.iter().find(|c| !c.is_empty() && valid.contains(c)) {
        return Ok(path.clone());
    }
    if is_live_only(metric) {
        return Ok(metric.to_owned());
    }
    // a figure of a part the scenario lacks: say so, rather than that no
    // metric is named like it (a bot's gate kept after the bot was removed)
    let parts =
        [("bot", "an account has a bot (`[account.bot]`)"), ("transfers", "a group has a `transfer`")];
    if let Some((part, when)) = parts.iter().find(|(p, _)| first == *p) {
        let mut has = false;
        valid.each(&mut |p| has |= p.split('.').next() == Some(part));
        if !has {
            return Err(format!("`{metric}` is measured only when {when}, and this scenario has none"));
        }
    }
    if !hint {
        return Err(format!(
            "unknown metric `{metric}` (past the first {MAX_HINTS} unknown metrics, none is given the closest known)"
        ));
    }
    match closest(metric, &WithLiveOnly(valid)) {
        near if !near.is_empty() => Err(format!("unknown metric `{metric}`: the closest is `{near}`")),
        _ => Err(format!(
            "unknown metric `{metric}`: no metric has a name near it (README.md, \"What a run reports\", lists them)"
        )),
    }
}

/// The scenario's paths and the live engine's spelt out ([`LIVE_ONLY`]
/// but for the patterns of open names), for the nearest to a mistake.
struct WithLiveOnly<'a, P: PathSet + ?Sized>(&'a P);

impl<P: PathSet + ?Sized> PathSet for WithLiveOnly<'_, P> {
    fn contains(&self, path: &str) -> bool {
        self.0.contains(path) || is_live_only(path)
    }

    fn each(&self, f: &mut dyn FnMut(&str)) {
        self.0.each(f);
        for pattern in LIVE_ONLY {
            let mut paths = vec![String::new()];
            for seg in pattern.split('.') {
                // an open name (`*`, `#`) is no name to suggest; its
                // pattern's spelt-out alternatives still are
                paths = paths
                    .iter()
                    .flat_map(|p| {
                        seg.split('|')
                            .filter(|alt| !alt.contains(['*', '#']))
                            .map(move |alt| if p.is_empty() { alt.to_owned() } else { format!("{p}.{alt}") })
                    })
                    .collect();
            }
            paths.iter().for_each(|p| f(p));
        }
    }
}

/// The farthest a path named as the closest may be from a name of `chars`
/// characters: farther, it is no hint of what was meant.
fn nearest_worth_naming(chars: usize) -> usize {
    (chars / 3).max(3)
}

/// The path nearest `metric` (by edit distance), in the form people write:
/// latencies without `latency_ms.`, if one is near enough to be a hint
/// ([`nearest_worth_naming`]), else `""`. Of paths as near, the first in
/// sorted order, as when every path was listed in a sorted set.
fn closest(metric: &str, valid: &(impl PathSet + ?Sized)) -> String {
    let short = |p: &str| p.strip_prefix("latency_ms.").unwrap_or(p).to_owned();
    let chars = metric.chars().count();
    let counts = char_counts(metric);
    // Begun just past the farthest worth naming: the bounds then pass over
    // every path too far to name before its distance is computed (a long
    // mistyped agent id, far from each of a million, took a minute).
    let mut best: (usize, String) = (nearest_worth_naming(chars) + 1, String::new());
    valid.each(&mut |p| {
        let s = p.strip_prefix("latency_ms.").unwrap_or(p);
        let (d, b) = &best;
        // bounds of the distance, cheap beside it, pass over most of a
        // million agents' paths
        // (every path sorts at or after the empty one of the start)
        let passed = |least: usize| least > *d || (least == *d && p >= b.as_str());
        if passed(chars.abs_diff(s.chars().count())) || counts.is_some_and(|c| passed(count_bound(&c, s))) {
            return;
        }
        let d = distance(metric, s);
        if d < best.0 || (d == best.0 && p < best.1.as_str()) {
            best = (d, p.to_owned());
        }
    });
    short(&best.1)
}

/// The edit distance of `a` and `b` (optimal string alignment: insertions,
/// deletions, substitutions and swaps of neighbours), their common start
/// and end set aside first (they change no distance). An agent's mistyped
/// path shares `agents.` and `.occupancy` with a million others: with
/// the whole paths' tables and unrestricted Damerau–Levenshtein (a hash
/// map per cell) a 40-character id took a minute (found by probing).
fn distance(a: &str, b: &str) -> usize {
    let head = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).map(|(x, _)| x.len_utf8()).sum::<usize>();
    let (a, b) = (&a[head..], &b[head..]);
    let tail = a
        .chars()
        .rev()
        .zip(b.chars().rev())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x.len_utf8())
        .sum::<usize>();
    strsim::osa_distance(&a[..a.len() - tail], &b[..b.len() - tail])
}

/// [`lookup`] of many paths in one summary: an element of a list is found
/// by its id in a map made once per list, where `lookup` scans the list (a
/// comparison looking up each of 20 000 agents so took minutes, of a
/// million days).
pub struct Finder<'a> {
    root: &'a Value,
    /// Per list (by address): each id's first element, as `lookup` finds it.
    ids: HashMap<usize, HashMap<&'a str, usize>>,
}

impl<'a> Finder<'a> {
    /// A finder in `summary`.
    pub fn new(summary: &'a Value) -> Finder<'a> {
        Finder { root: summary, ids: HashMap::new() }
    }

    /// [`lookup`]`(summary, path)`.
    pub fn get(&mut self, path: &str) -> Option<f64> {
        self.get_present(path).or_else(|| zero_when_absent(self.root, path))
    }

    fn get_present(&mut self, path: &str) -> Option<f64> {
        let mut cur = self.root;
        for seg in path.split('.') {
            cur = match cur {
                Value::Object(map) => map.get(seg)?,
                Value::Array(items) => {
                    let ids = self.ids.entry(std::ptr::from_ref(items) as usize).or_insert_with(|| {
                        let mut ids = HashMap::with_capacity(items.len());
                        for (i, item) in items.iter().enumerate() {
                            if let Some(id) = element_id(item) {
                                ids.entry(id).or_insert(i);
                            }
                        }
                        ids
                    });
                    match ids.get(seg) {
                        Some(&i) => &items[i],
                        None => seg.parse::<usize>().ok().and_then(|i| items.get(i))?,
                    }
                }
                _ => return None,
            };
        }
        cur.as_f64()
    }
}

/// How often each ASCII character comes in `text`; `None` past ASCII.
fn char_counts(text: &str) -> Option<[i32; 128]> {
    let mut counts = [0; 128];
    for b in text.bytes() {
        *counts.get_mut(usize::from(b))? += 1;
    }
    Some(counts)
}

/// At most the edit distance between the text of `counts` and `text`: an
/// edit moves at most two characters' counts by one (a transposition
/// none), so it is at least half the counts' difference.
fn count_bound(counts: &[i32; 128], text: &str) -> usize {
    let mut diff = *counts;
    for b in text.bytes() {
        match diff.get_mut(usize::from(b)) {
            Some(n) => *n -= 1,
            // past ASCII: no bound
            None => return 0,
        }
    }
    diff.iter().map(|n| n.unsigned_abs() as usize).sum::<usize>().div_ceil(2)
}

/// The number at a canonical path: `None` when it is null or absent, but
/// for a count a summary leaves out at 0 (see [`zero_when_absent`]).
pub fn lookup(summary: &Value, path: &str) -> Option<f64> {
    lookup_present(summary, path).or_else(|| zero_when_absent(summary, path))
}

/// 0 for a count a summary leaves out when it is 0, where the part of the
/// summary that would hold it is there: [`RUN_SHED`] in a `run`, an
/// endpoint the middleware never called or an errcode it never got in a
/// `middleware`, an error kind an endpoint never met in that endpoint's
/// `http` figures. Read as absent, a gate, a plan's target or a comparison
/// would call it not measured. (Gates alone used to read the last two as
/// 0, so a comparison showed an errcode new in a run as "not in the
/// baseline" rather than as a count that rose from 0: found by review.)
fn zero_when_absent(summary: &Value, path: &str) -> Option<f64> {
    let zero = if path == RUN_SHED {
        summary.get("run").is_some_and(Value::is_object)
    } else if path.starts_with("middleware.") {
        summary.get("middleware").is_some_and(Value::is_object)
            && ["errcodes.*", "count", "errors"]
                .iter()
                .any(|c| matches_pattern(path, &format!("middleware.api.*.{c}")))
    } else if let Some((endpoint, _)) = path.split_once(".errors_by_kind.") {
        matches_pattern(path, "http.*.errors_by_kind.*")
            && summary.pointer(&pointer(endpoint)).is_some_and(Value::is_object)
    } else {
        false
    };
    zero.then_some(0.0)
}

fn lookup_present(summary: &Value, path: &str) -> Option<f64> {
    let mut cur = summary;
    for seg in path.split('.') {
        cur = match cur {
            Value::Object(map) => map.get(seg)?,
            Value::Array(items) => items
                .iter()
                .find(|i| i.get("id").and_then(Value::as_str) == Some(seg))
                .or_else(|| seg.parse::<usize>().ok().and_then(|i| items.get(i)))?,
            _ => return None,
        };
    }
    cur.as_f64()
}

impl fmt::Display for GateResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.verdict {
            Verdict::Pass => "ok  ",
            Verdict::Fail => "FAIL",
            Verdict::Skipped => "skip",
        };
        let actual = match (self.verdict, self.actual) {
            (Verdict::Skipped, _) => "not measured by this engine".to_owned(),
            // only a ceiling on the waits of abandoned sessions passes so
            (Verdict::Pass, None) => "none: nobody abandoned".to_owned(),
            (_, None) => "no data".to_owned(),
            (_, Some(v)) => format_like(&self.condition, v, unit_of(&self.path)),
        };
        write!(f, "{mark} {} {}  (actual {actual})", self.metric, self.condition)
    }
}

/// `v` in the unit its threshold was written in: a share as a percentage
/// when the condition says `%`, so that `< 1%` is read against `3.37%`,
/// not `0.0337`. Times are always shown as times (`2m56s`).
pub fn format_like(condition: &str, v: f64, unit: MetricUnit) -> String {
    let written = condition.trim().trim_start_matches(['<', '>', '=', '!']).trim();
    match unit {
        MetricUnit::Plain if written.ends_with('%') => format!("{}%", trim_number(v * 100.0, 2)),
        MetricUnit::Ms | MetricUnit::S => {
            as_written(written, v, unit).unwrap_or_else(|| format_value(v, unit))
        }
        _ => format_value(v, unit),
    }
}

/// A time in the unit and to one decimal more than its threshold was
/// written with (`< 21.79s` against `21.791s`): shown the usual way
/// (`21.8s`), a failing value read as the threshold itself (found by
/// probing). `None` for a threshold of whole units or several parts.
fn as_written(written: &str, v: f64, unit: MetricUnit) -> Option<String> {
    let split = written.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, suffix) = written.split_at(split);
    let decimals = number.split_once('.')?.1.len();
    let per_ms = match suffix.trim() {
        "ms" => 1.0,
        "s" => 1e3,
        "m" | "min" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    let ms = if unit == MetricUnit::S { v * 1e3 } else { v };
    Some(format!("{:.*}{}", decimals + 1, ms / per_ms, suffix.trim()))
}

/// `v` with at most `digits` decimals, without trailing zeros.
fn trim_number(v: f64, digits: usize) -> String {
    let s = format!("{v:.digits$}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s }
}

/// `v` as a person reads it in the unit of its metric.
pub fn format_value(v: f64, unit: MetricUnit) -> String {
    match unit {
        MetricUnit::Ms => crate::scenario::units::human_ms(Some(v)),
        MetricUnit::S => format!("{v:.1}s"),
        MetricUnit::Plain if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        MetricUnit::Plain => format!("{v:.4}"),
    }
}

/// The summary as JSON for [`evaluate`]ing `gates`: whole but for its
/// agents, of which only those the gates name are kept, keyed by the
/// segment that names them (`agents.ID.…`, or an index). Every gate finds
/// what it would in the whole summary, whose agents (a million of them, as
/// JSON, take gigabytes) are not made JSON at all.
pub fn gate_view(summary: &mut Summary, gates: &[Gate]) -> serde_json::Result<Value> {
    let agents = std::mem::take(&mut summary.agents);
    let view = serde_json::to_value(&*summary);
    summary.agents = agents;
    let mut view = view?;
    let mut named = serde_json::Map::new();
    for seg in gates.iter().filter_map(|g| g.path.strip_prefix("agents.")) {
        let seg = seg.split('.').next().unwrap_or(seg);
        if named.contains_key(seg) {
            continue;
        }
        // as `lookup` picks an element of a list: by id, else by index
        let agents = &summary.agents;
        let agent = agents
            .iter()
            .find(|a| a.id == seg)
            .or_else(|| seg.parse::<usize>().ok().and_then(|i| agents.get(i)));
        if let Some(a) = agent {
            named.insert(seg.to_owned(), serde_json::to_value(a)?);
        }
    }
    if let Some(v) = view.get_mut("agents") {
        *v = Value::Object(named);
    }
    Ok(view)
}

/// Check every gate against a summary (as JSON) from `engine`.
pub fn evaluate(gates: &[Gate], summary: &Value) -> Vec<GateResult> {
    gates
        .iter()
        .map(|g| {
            let actual = lookup(summary, &g.path);
            let verdict = match actual {
                None if is_live_only(&g.path) && summary.pointer(&pointer(&g.path)).is_none() => {
                    Verdict::Skipped
                }
                None if holds_without_samples(&g.path, g.condition.op)
                    && lookup(summary, &sibling(&g.path, "count")) == Some(0.0) =>
                {
                    Verdict::Pass
                }
                None => Verdict::Fail,
                Some(v) if g.condition.op.holds(v, g.condition.threshold) => Verdict::Pass,
                Some(_) => Verdict::Fail,
            };
            GateResult {
                metric: g.metric.clone(),
                path: g.path.clone(),
                condition: g.condition.text.clone(),
                threshold: g.condition.threshold,
                actual,
                verdict,
            }
        })
        .collect()
}

/// Whether a ceiling on `path` holds when its histogram has no sample: a
/// latency of abandoned sessions (`abandon_wait.p95 <= 60s`), when nobody
/// abandoned, is the best outcome, not a figure that was not measured. (A
/// plan searching more staff reached such a point and called the target
/// unreachable.) An empty `queue_wait` or `first_response` still fails: a
/// run that answered nobody is not a pass.
pub fn holds_without_samples(path: &str, op: Op) -> bool {
    let mut rev = path.rsplit('.');
    matches!(op, Op::Lt | Op::Le) && rev.next().is_some() && rev.next() == Some("abandon_wait")
}

/// `path` with its last segment replaced by `leaf`.
fn sibling(path: &str, leaf: &str) -> String {
    match path.rsplit_once('.') {
        Some((parent, _)) => format!("{parent}.{leaf}"),
        None => leaf.to_owned(),
    }
}

/// The JSON pointer of a dotted path (an endpoint's name holds `/`).
fn pointer(path: &str) -> String {
    path.split('.').map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1"))).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_with_units() {
        let ms = |t: &str| Condition::parse(t, MetricUnit::Ms);
        assert_eq!(ms("< 60s").unwrap().threshold, 60_000.0);
        assert_eq!(ms("<= 5m").unwrap().op, Op::Le);
        assert_eq!(ms("<= 5m").unwrap().threshold, 300_000.0);
        assert_eq!(ms("<50ms").unwrap().threshold, 50.0);
        assert_eq!(ms("< 250").unwrap().threshold, 250.0, "a bare number is in the metric's unit");
        assert!(ms("< 80%").unwrap_err().contains("percentage"));
        let plain = |t: &str| Condition::parse(t, MetricUnit::Plain);
        assert_eq!(plain(">= 0.8").unwrap().threshold, 0.8);
        assert_eq!(plain(">= 80%").unwrap().threshold, 0.8);
        assert_eq!(plain("== 0").unwrap().op, Op::Eq);
        assert_eq!(plain("!= 3").unwrap().op, Op::Ne);
        assert_eq!(plain("> 1").unwrap().op, Op::Gt);
        assert!(plain("< 5s").unwrap_err().contains("not a time"));
        assert_eq!(Condition::parse("< 90s", MetricUnit::S).unwrap().threshold, 90.0);
        for bad in ["60s", "=< 3", "< ", "< fast", "< inf", "~ 3"] {
            assert!(Condition::parse(bad, MetricUnit::Ms).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_shares_threshold_is_a_share() {
        assert_eq!(condition_for("service_level", ">= 80%").unwrap().threshold, 0.8);
        assert_eq!(condition_for("by_account.kf.abandon_rate", "<= 0").unwrap().threshold, 0.0);
        assert_eq!(condition_for("fairness.kf.jain", ">= 1").unwrap().threshold, 1.0);
        for (path, bad) in [
            ("service_level", ">= 80"),
            ("abandon_rate", "< -0.1"),
            ("fairness.kf.gini", "<= 150%"),
            // a bot's deflection and the sticky rate are shares too (found by probing)
            ("bot.deflection", ">= 30"),
            ("by_account.kf.bot.deflection", "<= 30"),
            ("sticky.rate", ">= 90"),
        ] {
            let e = condition_for(path, bad).unwrap_err();
            assert!(e.contains("a share from 0 to 1"), "{path} {bad}: {e}");
        }
        // occupancy passes 1 when agents gone off line keep their sessions
        assert_eq!(condition_for("by_group.early.occupancy", "<= 250%").unwrap().threshold, 2.5);
        // not shares: counts and times keep any value at or above 0
        assert_eq!(condition_for("sessions.offered", ">= 80").unwrap().threshold, 80.0);
        assert_eq!(condition_for("asa_ms", "<= 30").unwrap().threshold, 30.0);
        assert_eq!(condition_for("asa_ms", ">= 0").unwrap().threshold, 0.0);
        for (path, bad) in [("asa_ms", "<= -5"), ("latency_ms.p99", "> -1"), ("sessions.offered", ">= -0.5")]
        {
            let e = condition_for(path, bad).unwrap_err();
            assert!(e.contains("is never negative"), "{path} {bad}: {e}");
        }
    }

    /// A live-only path names its figures: a misspelt one is unknown, with
    /// the nearest named (found by probing: `*` matched any word, and a
    /// gate on `live.gave_up.mesages` was skipped in every run).
    #[test]
    fn live_only_paths_are_spelt_out() {
        for name in crate::live::http::ENDPOINTS {
            for stat in ["count", "errors", "error_rate", "mean", "p50", "p99", "p999", "max"] {
                assert!(is_live_only(&format!("http.{name}.{stat}")), "{name} {stat}");
            }
        }
        for path in [
            "live.gave_up.messages",
            "live.missed.servicers",
            "live.reconnects.messages_lost",
            "delivery_ms.to_customer.p99",
            "middleware.api.kf/sync_msg.errcodes.45009",
            "middleware.api.kf/sync_msg.errcodes.-1",
            "middleware.handoff_ms.p95",
        ] {
            assert!(is_live_only(path), "{path}");
        }
        let sc = Scenario::parse("name = \"t\"\n[[account]]\nname = \"kf\"\n[[agents]]\ncount = 1\nreply_delay = \"1m\"\n[[entry]]\nscene = \"web\"\nrate = \"1/min\"\n", "t.toml").unwrap();
        let valid = metric_paths(&sc);
        for (typo, near) in [
            ("live.gave_up.mesages", "live.gave_up.messages"),
            ("http.customer_btach.error_rate", "http.customer_batch.error_rate"),
            ("delivery_ms.agnet.p95", "delivery_ms.to_agent.p95"),
            ("middleware.api.kf/sync_msg.errcodes.x1", ""),
            ("middleware.handoff_ms.p98", "middleware.handoff_ms.p90"),
        ] {
            assert!(!is_live_only(typo), "{typo}");
            let e = resolve(typo, &valid).unwrap_err();
            assert!(e.starts_with(&format!("unknown metric `{typo}`")), "{e}");
            if !near.is_empty() {
                assert!(e.ends_with(&format!("the closest is `{near}`")), "{e}");
            }
        }
    }

    /// Every number a summary documents can be gated (docs/ci.md): the
    /// driver's lag, the live run's time scale, wall time and sessions
    /// sent since a reconnect, an endpoint's errors by kind and the
    /// simulator's shed arrivals were refused as unknown metrics (found
    /// by checking README.md's list of figures against `kfsim validate`).
    #[test]
    fn every_documented_figure_can_be_gated() {
        for path in [
            "lag_ms.p99",
            "live.time_scale",
            "live.wall_s",
            "live.reconnects.sent_since",
            "http.customer_batch.errors_by_kind.errcode_40058",
            "http.customer_batch.errors_by_kind.errcode_-1",
            "http.servicer_pull.errors_by_kind.http_503",
            "http.send_msg.errors_by_kind.timeout",
        ] {
            assert!(is_live_only(path), "{path}");
        }
        for path in ["http.send_msg.errors_by_kind.errcode_", "http.send_msg.errors_by_kind.http_5x"] {
            assert!(!is_live_only(path), "{path}");
        }
        let sc = Scenario::parse("name = \"t\"\n[[account]]\nname = \"kf\"\n[[agents]]\ncount = 1\nreply_delay = \"1m\"\n[[entry]]\nscene = \"web\"\nrate = \"1/min\"\n", "t.toml").unwrap();
        let valid = metric_paths(&sc);
        assert_eq!(resolve("run.shed", &valid).unwrap(), "run.shed");
        let e = resolve("http.customer_batch.errors_by_kind.timout", &valid).unwrap_err();
        assert!(e.ends_with("the closest is `http.customer_batch.errors_by_kind.timeout`"), "{e}");
        assert_eq!(unit_of("lag_ms.p99"), MetricUnit::Ms);
        assert_eq!(unit_of("http.send_msg.errors_by_kind.timeout"), MetricUnit::Plain);

        let gates = [
            gate("run.shed", "== 0"),
            gate("http.customer_batch.errors_by_kind.errcode_40058", "== 0"),
            gate("http.customer_batch.errors_by_kind.timeout", "== 0"),
            gate("lag_ms.p99", "< 10ms"),
        ];
        let verdicts =
            |v: &Value| evaluate(&gates, v).iter().map(|r| (r.verdict, r.actual)).collect::<Vec<_>>();
        // a summary leaves out a shed count of 0 and an error kind never met
        let live = json!({
            "run": { "end_s": 1.0 },
            "http": { "customer_batch": { "errors": 2, "errors_by_kind": { "timeout": 2 } } },
            "lag_ms": { "p99": 3.0 }
        });
        assert_eq!(
            verdicts(&live),
            [
                (Verdict::Pass, Some(0.0)),
                (Verdict::Pass, Some(0.0)),
                (Verdict::Fail, Some(2.0)),
                (Verdict::Pass, Some(3.0))
            ]
        );
        // (a plan's target reads it likewise: sweep::tests, above this layer)
        assert_eq!(lookup(&json!({}), "run.shed"), None, "not a summary");
        let sim = json!({ "run": { "end_s": 1.0, "shed": 4 } });
        assert_eq!(
            verdicts(&sim),
            [
                (Verdict::Fail, Some(4.0)),
                (Verdict::Skipped, None),
                (Verdict::Skipped, None),
                (Verdict::Skipped, None)
            ]
        );
    }

    /// Every bad gate is reported at once, each at its place, in file
    /// order: a second one was only found once the first was fixed (found
    /// by probing). Without checking the gates, a metric the run has not
    /// is only a warning; a condition that does not parse is not.
    /// Past [`MAX_HINTS`] unknown metrics, the rest are reported without
    /// the search for the closest path that each costs.
    #[test]
    fn unknown_metrics_past_the_first_ones_get_no_hint() {
        let mut text = "name = \"g\"\n[[account]]\nname = \"kf\"\n[[agents]]\ncount = 2\nreply_delay = \"30s\"\n\
                        [[entry]]\nscene = \"web\"\nrate = \"1/min\"\n[gates]\n\"service_level\" = \">= 0.1\"\n"
            .to_owned();
        for i in 0..MAX_HINTS + 3 {
            text += &format!("\"servce_level{i}\" = \">= 0.8\"\n");
        }
        let sc = Scenario::parse(&text, "t.toml").unwrap();
        let all = bind(&sc).unwrap_err().split();
        assert_eq!(all.len(), MAX_HINTS + 3);
        let hinted = all.iter().filter(|e| e.to_string().contains("the closest is `service_level`")).count();
        assert_eq!(hinted, MAX_HINTS);
        assert!(all[MAX_HINTS].to_string().contains("none is given the closest known"), "{}", all[MAX_HINTS]);
    }

    /// Two overrides each breaking a gate: each is named with its own
    /// mistake (the first alone was, and the second was found only once
    /// the first was fixed).
    #[test]
    fn each_override_that_breaks_a_gate_is_named() {
        let text = "name = \"g\"\n[[account]]\nname = \"kf\"\n[[agents]]\ncount = 2\nreply_delay = \"30s\"\n\
                    [[entry]]\nscene = \"web\"\nrate = \"1/min\"\n[gates]\n\"queue_wait.p95\" = \"< 1m\"\n";
        let sets: Vec<String> =
            ["gates.queue_wait.p95=foo", "duration=2h", "gates.abandn_rate=< 5%"].map(String::from).into();
        let sc = Scenario::parse_with(text, "t.toml", &sets).unwrap();
        let e = bind_given(&sc, text, "t.toml", &sets).unwrap_err().split();
        let shown: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(
            shown[0].starts_with("--set gates.queue_wait.p95=foo: invalid condition \"foo\""),
            "{shown:?}"
        );
        assert!(
            shown[1].starts_with("--set gates.abandn_rate=< 5%: unknown metric `abandn_rate`"),
            "{shown:?}"
        );
        // the same mistake in two gates, each its own override's; past the
        // hints' bound, a mistake's message changes with the others (found
        // by review: the first override was named for both, then for a
        // 51st unknown metric)
        let sets: Vec<String> = ["gates.queue_wait.p95=foo".into(), "gates.abandon_rate=foo".into()].into();
        let sc = Scenario::parse_with(text, "t.toml", &sets).unwrap();
        let e = bind_given(&sc, text, "t.toml", &sets).unwrap_err().split();
        assert!(e[1].to_string().starts_with("--set gates.abandon_rate=foo: "), "{}", e[1]);
        let sets: Vec<String> = (0..=MAX_HINTS).map(|i| format!("gates.servce_levl{i}=>= 0.5")).collect();
        let sc = Scenario::parse_with(text, "t.toml", &sets).unwrap();
        let e = bind_given(&sc, text, "t.toml", &sets).unwrap_err().split();
        let last = e.last().unwrap().to_string();
        assert!(
            last.starts_with(&format!("--set gates.servce_levl{MAX_HINTS}=>= 0.5: unknown metric")),
            "{last}"
        );
        // one override, one mistake: as before
        let one = &sets[..1];
        let sc = Scenario::parse_with(text, "t.toml", one).unwrap();
        let e = bind_given(&sc, text, "t.toml", one).unwrap_err();
        assert!(matches!(e, ScenarioError::Override { .. }), "{e}");
    }

    #[test]
    fn every_bad_gate_is_reported_at_once() {
        let text = "name = \"g\"\n[[account]]\nname = \"kf\"\n[[agents]]\ncount = 2\nreply_delay = \"30s\"\n\
                    [[entry]]\nscene = \"web\"\nrate = \"1/min\"\n[gates]\n\
                    \"asa_ms\" = \"<= -5\"\n\"queue_wait.p95\" = \"< 1m\"\n\"servce_level\" = \">= 0.8\"\n\
                    \"service_level\" = \">= 80\"\n\"abandon_rate\" = 5\n";
        let sc = Scenario::parse(text, "t.toml").expect("gates are judged when bound, not when read");
        let e = bind(&sc).unwrap_err();
        let ScenarioError::Several(all) = &e else { panic!("one error for four bad gates: {e}") };
        let at: Vec<(usize, usize)> = all.iter().map(|d| (d.line, d.column)).collect();
        assert_eq!(at, [(11, 12), (13, 1), (14, 19), (15, 18)], "{e}");
        assert!(all[1].message.contains("the closest is `service_level`"), "{e}");
        assert!(all[2].message.contains("a share from 0 to 1"), "{e}");
        assert!(all[3].message.contains("must be a string"), "{e}");
        let shown = e.to_string();
        assert!(shown.starts_with("t.toml:11:12: "), "{shown}");
        assert_eq!(shown.matches("\nerror: t.toml:").count(), 3, "{shown}");

        let (unbound, malformed) = unchecked_given(&sc, text, "t.toml", &[]);
        let unbound: Vec<String> = unbound.iter().map(ToString::to_string).collect();
        assert!(unbound.len() == 1 && unbound[0].starts_with("t.toml:13:1: unknown metric"), "{unbound:?}");
        let malformed = malformed.unwrap_err().split();
        assert_eq!(malformed.len(), 3, "{malformed:?}");

        let fine = text.replace("\"asa_ms\" = \"<= -5\"\n", "").replace("= \">= 80\"", "= \">= 0.8\"");
        let fine = fine.replace("= 5\n", "= \"< 5%\"\n");
        let sc = Scenario::parse(&fine, "t.toml").unwrap();
        let (unbound, malformed) = unchecked_given(&sc, &fine, "t.toml", &[]);
        assert!(unbound.len() == 1 && malformed.is_ok(), "{unbound:?} {malformed:?}");
        let fine = fine.replace("\"servce_level\" = \">= 0.8\"\n", "");
        assert_eq!(bind(&Scenario::parse(&fine, "t.toml").unwrap()).unwrap().len(), 3);
    }

    /// A gate on a part the scenario lacks says which part, whether or not
    /// another metric's name is near; with the part, a typo gets the
    /// closest name as for any metric.
    #[test]
    fn a_metric_of_a_part_the_scenario_lacks_names_the_part() {
        let without: BTreeSet<String> = ["service_level", "sessions.offered"].map(String::from).into();
        let e = resolve("bot.deflection", &without).unwrap_err();
        assert!(e.contains("only when an account has a bot"), "{e}");
        let e = resolve("transfers.day->after", &without).unwrap_err();
        assert!(e.contains("only when a group has a `transfer`"), "{e}");
        let with: BTreeSet<String> = ["bot.deflection", "transfers.a->b"].map(String::from).into();
        assert_eq!(resolve("bot.deflection", &with).unwrap(), "bot.deflection");
        assert!(resolve("bot.deflektion", &with).unwrap_err().contains("the closest is `bot.deflection`"));
        assert!(resolve("transfers.a->c", &with).unwrap_err().contains("the closest is `transfers.a->b`"));
    }

    #[test]
    fn every_operator() {
        let cases =
            [(Op::Lt, [false, false, true]), (Op::Le, [false, true, true]), (Op::Gt, [true, false, false])];
        for (op, want) in cases {
            assert_eq!([op.holds(2.0, 1.0), op.holds(1.0, 1.0), op.holds(0.0, 1.0)], want, "{op:?}");
        }
        assert_eq!(
            [Op::Ge.holds(2.0, 1.0), Op::Ge.holds(1.0, 1.0), Op::Ge.holds(0.0, 1.0)],
            [true, true, false]
        );
        assert_eq!([Op::Eq.holds(1.0, 1.0), Op::Eq.holds(0.0, 1.0)], [true, false]);
        assert_eq!([Op::Ne.holds(1.0, 1.0), Op::Ne.holds(0.0, 1.0)], [false, true]);
    }

    fn sample() -> Value {
        json!({
            "service_level": 0.85,
            "asa_ms": 1500.0,
            "latency_ms": { "first_response": { "p95": 42_000.0, "p99": null } },
            "fairness": { "presale": { "jain": 0.97 } },
            "agents": [ { "id": "day-01", "occupancy": 0.7 }, { "id": "day-02", "occupancy": 0.9 } ],
            "engine": "sim"
        })
    }

    /// Middleware gates: valid in any scenario, skipped without a
    /// middleware, an errcode never seen is 0, a latency is in ms, and an
    /// endpoint's `/` is no path separator.
    #[test]
    fn middleware_gates() {
        let valid = leaf_paths(&sample());
        let bind = |m: &str, c: &str| {
            let path = resolve(m, &valid).unwrap();
            Gate { metric: m.into(), condition: Condition::parse(c, unit_of(&path)).unwrap(), path }
        };
        let gates = [
            bind("middleware.api.kf/send_msg.errcodes.95001", "<= 0"),
            bind("middleware.api.kf/send_msg.errcodes.95018", "<= 0"),
            bind("middleware.routed_ms.p95", "< 2s"),
            bind("middleware.unacted", "== 0"),
        ];
        assert!(resolve("middleware.unactd", &valid).is_err(), "typos are still caught");
        assert_eq!(gates[2].condition.threshold, 2000.0);
        let verdicts = |v: &Value| evaluate(&gates, v).iter().map(|r| r.verdict).collect::<Vec<_>>();
        assert_eq!(verdicts(&sample()), [Verdict::Skipped; 4], "a run without a middleware");
        let run = json!({ "middleware": {
            "api": { "kf/send_msg": { "count": 9, "errors": 2, "errcodes": { "95018": 2 } } },
            "routed_ms": { "p95": 2500.0 },
            "unacted": 0
        }});
        assert_eq!(verdicts(&run), [Verdict::Pass, Verdict::Fail, Verdict::Fail, Verdict::Pass]);
        assert_eq!(evaluate(&gates, &run)[0].actual, Some(0.0));
    }

    /// A gate on `path` (already canonical) with condition `c`.
    fn gate(path: &str, c: &str) -> Gate {
        Gate {
            metric: path.into(),
            path: path.into(),
            condition: Condition::parse(c, unit_of(path)).unwrap(),
        }
    }

    /// Nobody abandoned: a ceiling on their waits holds, a floor does not,
    /// and an empty histogram of any other latency still fails.
    #[test]
    fn a_ceiling_on_the_waits_of_abandoned_sessions_holds_when_nobody_abandoned() {
        let empty = json!({ "count": 0, "p95": null, "max": null });
        let run = json!({ "latency_ms": { "abandon_wait": empty, "queue_wait": empty } });
        let gates = [
            gate("latency_ms.abandon_wait.p95", "<= 10s"),
            gate("latency_ms.abandon_wait.max", "< 1m"),
            gate("latency_ms.abandon_wait.p95", ">= 1s"),
            gate("latency_ms.queue_wait.p95", "<= 10s"),
        ];
        let results = evaluate(&gates, &run);
        let verdicts: Vec<Verdict> = results.iter().map(|r| r.verdict).collect();
        assert_eq!(verdicts, [Verdict::Pass, Verdict::Pass, Verdict::Fail, Verdict::Fail]);
        assert_eq!(
            results[0].to_string(),
            "ok   latency_ms.abandon_wait.p95 <= 10s  (actual none: nobody abandoned)"
        );
        // a histogram with samples but no such figure is not "nobody"
        let odd = json!({ "latency_ms": { "abandon_wait": { "count": 3, "p95": null } } });
        assert_eq!(evaluate(&gates[..1], &odd)[0].verdict, Verdict::Fail);
        assert_eq!(evaluate(&gates[..1], &json!({}))[0].verdict, Verdict::Fail, "not in the summary at all");
    }

    #[test]
    fn paths_aliases_and_suggestions() {
        let valid = leaf_paths(&sample());
        assert!(valid.contains("agents.day-02.occupancy"));
        assert!(!valid.contains("engine"), "strings are not metrics");
        assert_eq!(resolve("first_response.p95", &valid).unwrap(), "latency_ms.first_response.p95");
        assert_eq!(resolve("asa", &valid).unwrap(), "asa_ms");
        assert_eq!(resolve("messages.lost", &valid).unwrap(), "messages.lost");
        assert_eq!(resolve("http.send_msg.p99", &valid).unwrap(), "http.send_msg.p99");
        let err = resolve("fairness.presale.jian", &valid).unwrap_err();
        assert!(err.contains("`fairness.presale.jain`"), "{err}");
        assert!(resolve("http.send_msg", &valid).is_err());
        assert_eq!(unit_of("latency_ms.first_response.p95"), MetricUnit::Ms);
        assert_eq!(unit_of("latency_ms.first_response.count"), MetricUnit::Plain);
        assert_eq!(unit_of("agents.day-01.busy_s"), MetricUnit::S);
        assert_eq!(unit_of("http.send_msg.p99"), MetricUnit::Ms);
        assert_eq!(unit_of("bot.first_response.p95"), MetricUnit::Ms);
        assert_eq!(unit_of("by_account.kf.queue_wait.p50"), MetricUnit::Ms);
        assert_eq!(unit_of("bot.deflection"), MetricUnit::Plain);
        assert_eq!(unit_of("service_level"), MetricUnit::Plain);
        assert_eq!(unit_of("live.messages_per_s"), MetricUnit::Plain);
        assert!(condition_for("live.replies_per_s", ">= 100s").is_err());
        assert_eq!(condition_for("live.replies_per_s", ">= 100").unwrap().threshold, 100.0);
    }

    #[test]
    fn evaluation() {
        let valid = leaf_paths(&sample());
        let gate = |m: &str, c: &str| {
            let path = resolve(m, &valid).unwrap();
            let condition = Condition::parse(c, unit_of(&path)).unwrap();
            Gate { metric: m.into(), path, condition }
        };
        let gates = [
            gate("first_response.p95", "< 60s"),
            gate("service_level", ">= 90%"),
            gate("first_response.p99", "< 1h"),
            gate("messages.lost", "== 0"),
            gate("agents.day-02.occupancy", "<= 0.9"),
        ];
        let verdicts: Vec<Verdict> = evaluate(&gates, &sample()).iter().map(|r| r.verdict).collect();
        assert_eq!(verdicts, [Verdict::Pass, Verdict::Fail, Verdict::Fail, Verdict::Skipped, Verdict::Pass]);
        let shown = evaluate(&gates[..1], &sample())[0].to_string();
        assert_eq!(shown, "ok   first_response.p95 < 60s  (actual 42.0s)");
        let shown = evaluate(&gates[1..2], &sample())[0].to_string();
        assert_eq!(shown, "FAIL service_level >= 90%  (actual 85%)", "a share in the threshold's unit");
    }

    /// Gates judged on the view of a summary (its agents left out but
    /// those named) get every verdict and value they get on the whole.
    #[test]
    fn the_gate_view_judges_as_the_whole_summary() {
        let text = r#"
name = "t"
seed = 4
duration = "2h"
[[account]]
name = "a"
[[agents]]
group = "day"
count = 12
reply_delay = { dist = "exponential", mean = "3m" }
[[entry]]
scene = "web"
rate = "6/min"
"#;
        let sc = Scenario::parse(text, "t.toml").unwrap();
        let mut summary = crate::sim::simulate(&sc);
        let whole = serde_json::to_value(&summary).unwrap();
        let ids: Vec<String> = summary.agents.iter().map(|a| a.id.clone()).collect();
        let gates = [
            gate("service_level", ">= 0.5"),
            gate(&format!("agents.{}.occupancy", ids[3]), "<= 0.5"),
            gate(&format!("agents.{}.occupancy", ids[3]), "> 0.5"),
            gate(&format!("agents.{}.sessions", ids[11]), ">= 1"),
            gate("agents.2.busy_s", "> 0"),
            gate("agents.nobody.occupancy", "< 1"),
            gate("agents.40.sessions", "< 1"),
            gate(&format!("agents.{}", ids[0]), "< 1"),
            gate("messages.lost", "== 0"),
        ];
        let view = gate_view(&mut summary, &gates).unwrap();
        assert_eq!(evaluate(&gates, &view), evaluate(&gates, &whole));
        assert_eq!(view["agents"].as_object().map(|m| m.len()), Some(4), "only the agents named: {view}");
        assert!(evaluate(&gates, &view)[3].actual.is_some_and(|n| n >= 1.0), "agents were measured");
        assert_eq!(serde_json::to_value(&summary).unwrap(), whole, "the summary keeps its agents");
    }

    /// Two summaries that differ every way a comparison meets: a renamed
    /// agent, a field gone or null, a number that became an object or a
    /// list, two elements of one id, an id that is an index, unnamed
    /// elements, keys and ids holding a `.`.
    pub(crate) fn unlike_pair() -> (Value, Value) {
        let a = json!({
            "engine": "sim", "seed": 1, "scenario": { "name": "x", "fingerprint": "f" },
            "service_level": 0.8, "asa_ms": null,
            "latency_ms": { "queue_wait": { "p95": 10.0, "p99": 20.0, "count": 3 }, "reply": { "p95": 1.0 } },
            "agents": [
                { "id": "a-1", "sessions": 3, "occupancy": 0.5 },
                { "id": "a-2", "sessions": 1, "occupancy": null },
                { "id": "a-1", "sessions": 9 },
                { "id": "3", "sessions": 4 },
                { "sessions": 5 },
                { "id": "x.y", "sessions": 6 },
                { "id": 7, "sessions": 8 }
            ],
            "fairness": { "kf": { "jain": 0.9, "agents": 2 }, "k.f": { "jain": 0.1 } },
            "flow": [[1, 2], [3]],
            "mixed": { "0": 1, "1": { "x": 2 } },
            "http": { "kf/send": { "p99": 3.0, "error_rate": 0.0 } },
            "gates": [{ "metric": "service_level", "actual": 0.8 }],
            "k.x": 1, "k": { "x": 2 }, "live": { "gave_up": { "messages": 0 } }
        });
        let b = json!({
            "engine": "sim", "seed": 1, "scenario": { "name": "x", "fingerprint": "f" },
            "service_level": "0.8", "asa_ms": 12.5,
            "latency_ms": { "queue_wait": { "p95": 11.0, "count": 3 }, "reply": 5 },
            "agents": [
                { "id": "a-1", "sessions": 3, "occupancy": 0.5 },
                { "id": "a-9", "sessions": 1, "occupancy": 0.2 },
                { "id": "4", "sessions": 4 },
                { "sessions": 2 },
                { "id": "x.y", "sessions": [6] }
            ],
            "fairness": { "kf": { "agents": 2 }, "k.f": { "jain": 0.2 } },
            "flow": { "0": [1] },
            "mixed": [7, { "x": 3 }, { "id": "1", "x": 4 }],
            "http": { "kf/send": { "p99": 4.0 } },
            "gates": [],
            "k.x": { "y": 1 }, "sticky": { "rate": 0.5 }, "live": { "gave_up": 3 }
        });
        (a, b)
    }

    #[test]
    fn the_union_walk_finds_the_leaves_of_both() {
        let (a, b) = unlike_pair();
        let old: BTreeSet<String> = leaf_paths(&a).union(&leaf_paths(&b)).cloned().collect();
        let mut new = Vec::new();
        visit_union(&a, &b, &mut |p| new.push(p.to_owned()));
        new.sort();
        new.dedup();
        assert_eq!(new, old.iter().cloned().collect::<Vec<_>>());
        for (x, y) in [(&b, &a), (&a, &a), (&a, &json!({})), (&json!(3), &b)] {
            let old: BTreeSet<String> = leaf_paths(x).union(&leaf_paths(y)).cloned().collect();
            let mut new = BTreeSet::new();
            visit_union(x, y, &mut |p| {
                new.insert(p.to_owned());
            });
            assert_eq!(new, old);
        }
        // a pruned walk sees what it enters
        let mut under = BTreeSet::new();
        visit_leaves(&a, &mut |p| p == "latency_ms" || p.starts_with("latency_ms.queue_wait"), &mut |p| {
            under.insert(p.to_owned());
        });
        let want: BTreeSet<String> =
            leaf_paths(&a).into_iter().filter(|p| p.starts_with("latency_ms.queue_wait.")).collect();
        assert_eq!(under, want);
    }

    #[test]
    fn the_finder_finds_what_lookup_finds() {
        let (a, b) = unlike_pair();
        let mut paths: BTreeSet<String> = leaf_paths(&a).union(&leaf_paths(&b)).cloned().collect();
        // by index where the element has an id, past the end, through a number
        paths.extend(
            ["agents.0.sessions", "agents.1.occupancy", "agents.9.sessions", "agents.3", "k.x.y"]
                .map(String::from),
        );
        paths.extend(
            ["service_level.x", "mixed.2.x", "mixed.1.x", "flow.0.0", "", "agents", "run.shed"]
                .map(String::from),
        );
        for v in [&a, &b] {
            let mut finder = Finder::new(v);
            for p in &paths {
                assert_eq!(finder.get(p), lookup(v, p), "{p}");
            }
        }
    }

    /// How `resolve` named the closest path when it listed them all.
    fn closest_in_a_list(metric: &str, valid: &BTreeSet<String>) -> String {
        valid
            .iter()
            .map(|p| p.strip_prefix("latency_ms.").unwrap_or(p))
            .map(|p| (strsim::osa_distance(metric, p), p))
            .min_by_key(|(d, _)| *d)
            .filter(|(d, _)| *d <= nearest_worth_naming(metric.chars().count()))
            .map(|(_, p)| p.to_owned())
            .unwrap_or_default()
    }

    /// A scenario's paths, its agents' known from their ids, are the leaves
    /// of its blank summary: the same names are found, and the same closest
    /// named.
    #[test]
    fn scenario_paths_are_the_blank_summarys_leaves() {
        let text = r#"
name = "t"
seed = 4
duration = "2h"
[[account]]
name = "a"
[[account]]
name = "b"
[[agents]]
account = "a"
group = "day"
count = 12
reply_delay = { dist = "exponential", mean = "3m" }
[[agents]]
account = "b"
group = "night"
count = 3
reply_delay = { dist = "exponential", mean = "3m" }
[[entry]]
scene = "web"
account = "a"
rate = "6/min"
"#;
        let sc = Scenario::parse(text, "t.toml").unwrap();
        let blank = Metrics::new(&sc).finish(&sc, &RunStats::default());
        let mut old = leaf_paths(&serde_json::to_value(&blank).unwrap());
        // the one figure a blank summary leaves out at 0
        old.insert(RUN_SHED.to_owned());
        let new = metric_paths(&sc);
        let mut each = BTreeSet::new();
        new.each(&mut |p| {
            assert!(each.insert(p.to_owned()), "{p} once");
        });
        assert_eq!(each, old);
        assert!(old.contains("agents.night-02.occupancy") && old.contains("agents.day-12.sessions"));
        let mut names: Vec<String> = old.iter().cloned().collect();
        names.extend(
            [
                "agents.night-04.occupancy",
                "agents.day-1.sessions",
                "agents.night-02",
                "agents.night-02.id",
                "agents.night-02.account",
                "agents.night-02.occupancy.x",
                "agents..occupancy",
                "agents.occupancy",
                "agents",
                "agent.day-03.busy_s",
                "first_respons.p95",
                "queue_wait.p95",
                "fairness.a.jian",
                "by_account.b.queue_wait.p99",
                "servce_level",
                "",
            ]
            .map(String::from),
        );
        for n in &names {
            assert_eq!(new.contains(n), old.contains(n), "{n}");
            assert_eq!(resolve(n, &new), resolve(n, &old), "{n}");
            assert_eq!(closest(n, &new), closest_in_a_list(n, &old), "{n}");
            assert_eq!(closest(n, &old), closest_in_a_list(n, &old), "{n}");
        }
        // the bound never passes over a nearer path
        for (a, b) in [("abc", "cab"), ("jain", "jian"), ("a-7.x", "a-0007.y"), ("p95", "p9é"), ("", "xy")] {
            let d = strsim::osa_distance(a, b);
            assert!(char_counts(a).is_none_or(|c| count_bound(&c, b) <= d), "{a} {b}");
        }
        assert_eq!(count_bound(&char_counts("abcd").unwrap(), "wxyz"), 4);
        // of paths as near, the first in order
        let tied: BTreeSet<String> = ["b.x", "a.x", "latency_ms.c.x"].map(String::from).into();
        assert_eq!(closest("q.x", &tied), closest_in_a_list("q.x", &tied));
        assert_eq!(closest("q.x", &BTreeSet::new()), "");
    }

    #[test]
    fn actual_values_in_the_thresholds_unit() {
        assert_eq!(format_like("< 1%", 0.0337, MetricUnit::Plain), "3.37%");
        assert_eq!(format_like(">= 0.8", 0.8397, MetricUnit::Plain), "0.8397");
        assert_eq!(format_like("< 5m", 176_000.0, MetricUnit::Ms), "2m56s");
        assert_eq!(format_like("< 25%", 0.25, MetricUnit::Plain), "25%");
        // to a decimal more than the threshold was written with (it read
        // "< 21.79s (actual 21.8s) FAIL")
        assert_eq!(format_like("< 21.79s", 21_790.7, MetricUnit::Ms), "21.791s");
        assert_eq!(format_like("<= 0.5m", 29_500.0, MetricUnit::Ms), "0.49m");
        assert_eq!(format_like("< 2.5s", 2.46, MetricUnit::S), "2.46s");
        assert_eq!(format_like("< 1m30s", 95_000.0, MetricUnit::Ms), "1m35s");
    }
}
