//! Baselines: compare a run's summary with an earlier one and call out
//! regressions.
//!
//! Two modes:
//! - **exact**, when both runs are simulations of the same scenario (same
//!   fingerprint) with the same seed and no tolerance was given: the sim is
//!   deterministic, so every number must be equal, and any difference is a
//!   change to explain.
//! - **tolerance** otherwise: the key metrics (service level, waits,
//!   latency percentiles, abandonment, fairness, and the live engine's HTTP
//!   and delivery figures) are compared in their "worse" direction against a
//!   relative (`10%`) or absolute (`5s`) tolerance; default 10 %.
//!   A change must also exceed a floor (1 ms for times, 0.001 for other
//!   numbers) to count, so that a p50 of 0 ms turning into 0.4 ms is noise.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::gate::{MetricUnit, leaf_paths, lookup, resolve, unit_of};
use crate::scenario::units::parse_duration;

/// Which way is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Lower is better (waits, latencies, abandonment, errors).
    Lower,
    /// Higher is better (service level, fairness, stickiness).
    Higher,
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
    ("http.*.p99", Better::Lower),
    ("http.*.error_rate", Better::Lower),
    ("delivery_ms.*.p99", Better::Lower),
];

fn better_of(path: &str) -> Option<Better> {
    KEY_METRICS.iter().find(|(p, _)| crate::gate::matches_pattern(path, p)).map(|(_, b)| *b)
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
                Err(format!("invalid tolerance \"{text}\""))
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
    /// The tolerance applied, as written (`exact` in exact mode).
    pub tolerance: String,
    /// The verdict.
    pub status: Status,
}

/// A compared metric's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Equal, or within tolerance.
    Ok,
    /// Better beyond the tolerance.
    Improved,
    /// Worse beyond the tolerance: a failure.
    Regressed,
    /// Different in exact mode: a failure.
    Changed,
    /// Present in only one of the two.
    Missing,
}

impl Status {
    /// Whether this row fails the comparison.
    pub fn fails(self) -> bool {
        matches!(self, Status::Regressed | Status::Changed)
    }
}

/// The result of comparing two summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Exact mode (deterministic sim runs of the same scenario and seed).
    pub exact: bool,
    /// One row per compared metric.
    pub rows: Vec<Row>,
}

impl Comparison {
    /// Whether any row is a regression or an exact-mode change.
    pub fn failed(&self) -> bool {
        self.rows.iter().any(|r| r.status.fails())
    }
}

/// `--tolerance METRIC=VALUE` (METRIC `*` sets the default).
pub fn parse_tolerance_arg(arg: &str, valid: &BTreeSet<String>) -> Result<(String, Tolerance), String> {
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

fn is_exact_pair(base: &Value, cur: &Value) -> bool {
    let field = |v: &Value, p: &str| v.pointer(p).cloned();
    field(base, "/engine") == Some(Value::from("sim"))
        && field(cur, "/engine") == Some(Value::from("sim"))
        && field(base, "/seed") == field(cur, "/seed")
        && field(base, "/scenario/fingerprint").is_some()
        && field(base, "/scenario/fingerprint") == field(cur, "/scenario/fingerprint")
}

/// Compare `current` with `baseline` (both summaries as JSON). Explicit
/// `tolerances` (path, tolerance; path `*` is the default) switch to
/// tolerance mode.
pub fn compare(baseline: &Value, current: &Value, tolerances: &[(String, Tolerance)]) -> Comparison {
    if tolerances.is_empty() && is_exact_pair(baseline, current) {
        let paths: BTreeSet<String> = leaf_paths(baseline).union(&leaf_paths(current)).cloned().collect();
        let rows = paths
            .into_iter()
            .filter(|p| !p.starts_with("gates."))
            .map(|metric| {
                let (b, c) = (lookup(baseline, &metric), lookup(current, &metric));
                let status = if b == c { Status::Ok } else { Status::Changed };
                Row { metric, baseline: b, current: c, tolerance: "exact".into(), status }
            })
            .collect();
        return Comparison { exact: true, rows };
    }
    let default = tolerances.iter().find(|(p, _)| p == "*").map_or(DEFAULT_TOLERANCE, |(_, t)| *t);
    let all: BTreeSet<String> = leaf_paths(baseline).union(&leaf_paths(current)).cloned().collect();
    let mut rows = Vec::new();
    for metric in all {
        let explicit = tolerances.iter().find(|(p, _)| *p == metric).map(|(_, t)| *t);
        let Some(better) = better_of(&metric).or(explicit.map(|_| Better::Lower)) else { continue };
        let tol = explicit.unwrap_or(default);
        let (b, c) = (lookup(baseline, &metric), lookup(current, &metric));
        let status = judge(b, c, tol, better, unit_of(&metric));
        rows.push(Row {
            metric: metric.clone(),
            baseline: b,
            current: c,
            tolerance: tol.describe(unit_of(&metric)),
            status,
        });
    }
    Comparison { exact: false, rows }
}

fn judge(b: Option<f64>, c: Option<f64>, tol: Tolerance, better: Better, unit: MetricUnit) -> Status {
    let (Some(b), Some(c)) = (b, c) else {
        return if b.is_none() && c.is_none() { Status::Ok } else { Status::Missing };
    };
    let floor = if unit == MetricUnit::Ms { 1.0 } else { 1e-3 };
    let worse_by = match better {
        Better::Lower => c - b,
        Better::Higher => b - c,
    };
    let allowed = tol.allowed(b).max(floor);
    if worse_by > allowed {
        Status::Regressed
    } else if -worse_by > allowed {
        Status::Improved
    } else {
        Status::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
