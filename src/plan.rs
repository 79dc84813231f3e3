//! Staffing recommendations: the smallest value of a parameter (usually
//! `agents.GROUP.count`) at which every target holds, found by bisection
//! over the simulator with replications, and compared with Erlang where
//! the scenario is a plain Erlang case.
//!
//! A target holds at a point when the mean over replications meets it; the
//! 95 % confidence interval is reported beside it so a planner sees how
//! close to the line the recommendation is. Bisection assumes the targets
//! get easier as the parameter grows (more agents: shorter waits), which
//! holds in expectation; common random numbers across points keep the
//! estimates from crossing back and forth.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::gate::{self, Condition};
use crate::scenario::Scenario;
use crate::sweep::{self, Estimate};
use crate::theory::Prediction;

/// A target such as `service_level>=0.8`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// As written.
    pub text: String,
    /// Canonical summary path.
    pub path: String,
    /// The condition.
    pub condition: Condition,
}

impl Target {
    /// Parse `METRIC OP VALUE` against the metric paths of `scenario`.
    pub fn parse(text: &str, scenario: &Scenario) -> Result<Target, String> {
        let at = text.find(['<', '>', '=', '!']).ok_or_else(|| {
            format!("--target {text}: expected METRIC OP VALUE, like \"service_level>=0.8\"")
        })?;
        let (metric, cond) = text.split_at(at);
        let valid = gate::metric_paths(scenario);
        let path = gate::resolve(metric.trim(), &valid).map_err(|e| format!("--target {text}: {e}"))?;
        let condition =
            Condition::parse(cond, gate::unit_of(&path)).map_err(|e| format!("--target {text}: {e}"))?;
        Ok(Target { text: text.to_owned(), path, condition })
    }

    fn met_by(&self, value: Option<f64>) -> bool {
        value.is_some_and(|v| self.condition.op.holds(v, self.condition.threshold))
    }
}

/// The figures at one value of the parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluated {
    /// The parameter's value.
    pub value: u32,
    /// Every target met (on the mean).
    pub meets: bool,
    /// The targets' metrics (and the sweep's key metrics).
    pub metrics: BTreeMap<String, Option<Estimate>>,
    /// Erlang's prediction at this value, where it applies.
    pub theory: Option<Prediction>,
}

/// A staffing recommendation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// The varied path.
    pub path: String,
    /// The smallest value meeting every target, with its figures.
    pub at: Evaluated,
    /// One step below, for contrast (absent when the answer is the minimum).
    pub below: Option<Evaluated>,
    /// The smallest value at which Erlang meets every target it can judge.
    pub erlang: Option<u32>,
}

/// Where the search may look.
pub const MAX_VALUE: u32 = 100_000;

/// Everything a search needs about the scenario.
pub struct Problem<'a> {
    /// Scenario text.
    pub text: &'a str,
    /// Its file name (for errors).
    pub file: &'a str,
    /// `--set` overrides applied first.
    pub sets: Vec<String>,
    /// The path to vary (`agents.GROUP.count`).
    pub path: String,
    /// The targets.
    pub targets: Vec<Target>,
    /// Replications per evaluated value.
    pub replications: u32,
    /// Use every core.
    pub parallel: bool,
}

impl Problem<'_> {
    fn scenario_at(&self, value: u32) -> anyhow::Result<Scenario> {
        Ok(sweep::variant(self.text, self.file, &self.sets, &[(self.path.clone(), value.to_string())])?)
    }

    fn evaluate(&self, value: u32) -> anyhow::Result<Evaluated> {
        let sc = self.scenario_at(value)?;
        let runs = sweep::run(std::slice::from_ref(&sc), self.replications, self.parallel).remove(0);
        let values: Vec<serde_json::Value> =
            runs.iter().map(|s| serde_json::to_value(s).expect("JSON")).collect();
        let mut metrics = sweep::estimate(&runs);
        for t in &self.targets {
            let per_run: Vec<Option<f64>> = values.iter().map(|v| gate::lookup(v, &t.path)).collect();
            metrics.insert(t.path.clone(), Estimate::of(&per_run));
        }
        let meets =
            self.targets.iter().all(|t| t.met_by(metrics.get(&t.path).copied().flatten().map(|e| e.mean)));
        Ok(Evaluated { value, meets, metrics, theory: crate::theory::predict(&sc) })
    }

    /// The smallest value of the parameter meeting every target.
    pub fn solve(&self, start: u32) -> anyhow::Result<Recommendation> {
        let mut cache: BTreeMap<u32, Evaluated> = BTreeMap::new();
        let mut eval = |v: u32| -> anyhow::Result<bool> {
            if let std::collections::btree_map::Entry::Vacant(slot) = cache.entry(v) {
                slot.insert(self.evaluate(v)?);
            }
            Ok(cache[&v].meets)
        };
        // Bracket: a failing `lo` (or 0) and a passing `hi`.
        let mut hi = start.max(1);
        while !eval(hi)? {
            anyhow::ensure!(hi < MAX_VALUE, "no value of {} up to {MAX_VALUE} meets the targets", self.path);
            hi = (hi * 2).min(MAX_VALUE);
        }
        let mut lo = 0;
        let mut probe = hi / 2;
        while probe > 0 && eval(probe)? {
            hi = probe;
            probe /= 2;
        }
        if probe > 0 {
            lo = probe;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if eval(mid)? { hi = mid } else { lo = mid }
        }
        if hi > 1 {
            eval(hi - 1)?;
        }
        let below = if hi > 1 { cache.remove(&(hi - 1)) } else { None };
        Ok(Recommendation {
            path: self.path.clone(),
            at: cache.remove(&hi).expect("evaluated"),
            below,
            erlang: self.erlang_answer(hi)?,
        })
    }

    /// The smallest value at which Erlang's prediction meets every target
    /// it can judge (`None` if the scenario is not an Erlang case or a
    /// target is a metric theory does not give).
    fn erlang_answer(&self, near: u32) -> anyhow::Result<Option<u32>> {
        if crate::theory::predict(&self.scenario_at(near)?).is_none()
            && crate::theory::predict(&self.scenario_at(near.saturating_mul(2))?).is_none()
        {
            return Ok(None);
        }
        for v in 1..=MAX_VALUE.min(near.saturating_mul(4).max(16)) {
            let Some(p) = crate::theory::predict(&self.scenario_at(v)?) else { continue };
            let judged: Option<Vec<bool>> =
                self.targets.iter().map(|t| p.metric(&t.path).map(|x| t.met_by(Some(x)))).collect();
            match judged {
                None => return Ok(None),
                Some(ok) if ok.iter().all(|b| *b) => return Ok(Some(v)),
                Some(_) => {}
            }
        }
        Ok(None)
    }
}

/// Mean of a piecewise-linear profile over `[from, to)` (1 when flat).
pub fn mean_factor(profile: &[(u64, f64)], from: u64, to: u64) -> f64 {
    if profile.is_empty() || to <= from {
        return 1.0;
    }
    let at = |t: f64| -> f64 {
        let i = profile.iter().rposition(|p| (p.0 as f64) <= t);
        match i {
            None => profile[0].1,
            Some(i) => match profile.get(i + 1) {
                None => profile[i].1,
                Some(&(t1, f1)) => {
                    let (t0, f0) = profile[i];
                    if t1 == t0 { f1 } else { f0 + (f1 - f0) * (t - t0 as f64) / (t1 - t0) as f64 }
                }
            },
        }
    };
    // trapezoids on a fine grid: exact enough for a staffing table
    let steps = 200;
    let h = (to - from) as f64 / steps as f64;
    (0..steps)
        .map(|k| (at(from as f64 + k as f64 * h) + at(from as f64 + (k as f64 + 1.0) * h)) / 2.0)
        .sum::<f64>()
        / steps as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_means() {
        let p = [(0, 1.0), (100, 3.0)];
        assert!((mean_factor(&p, 0, 100) - 2.0).abs() < 1e-9);
        assert!((mean_factor(&p, 100, 200) - 3.0).abs() < 1e-9);
        assert_eq!(mean_factor(&[], 0, 10), 1.0);
        let step = [(0, 1.0), (50, 1.0), (50, 4.0)];
        assert!((mean_factor(&step, 0, 100) - 2.5).abs() < 0.02);
    }
}
