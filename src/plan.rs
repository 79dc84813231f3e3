//! Staffing recommendations: the smallest value of a parameter (usually
//! `agents.GROUP.count`) at which every target holds, found by bisection
//! over the simulator with replications, and compared with Erlang where
//! the scenario is a plain Erlang case.
//!
//! A target is decided at a value when the confidence interval of its
//! metric (over replications, on the metric's scale: see [`crate::stats`])
//! lies on one side of the threshold. Until then replications are added
//! (doubling, up to `max_replications`), and each doubling is another look
//! at the same question: a look at 97.5 % four times over (5, 10, 20, 40
//! replications) said "meets" at a target set at the exact Erlang value 11 %
//! of the time, not 2.5 % (found by probing, 300 seeds). So each look
//! decides at 1 − 2.5 %/looks (Bonferroni over the looks the replication
//! schedule can take), which keeps every decision at least 97.5 % sure
//! however many looks it took. A value still undecided after the last look
//! is reported as *unclear*, with how sure the replications make us, and
//! is not recommended. A share of sessions (service level, wait
//! probability, abandonment) is judged by its sessions over the
//! replications rather than by the replications' shares (see
//! [`Counted`]), its overdispersion bounded from their counts; where the
//! counts cannot bound it (every session on one side) the nearest smaller
//! value's stands in, and the search runs again until every value it
//! holds was judged with the values below it. With no spread over the
//! replications of another metric the condition itself decides (`>=` and
//! `<=` inclusive). Bisection assumes the targets
//! get easier as the parameter grows (more agents: shorter waits), which
//! holds in expectation; common random numbers across values keep the
//! estimates from crossing back and forth. A value left undecided says
//! nothing of the side the answer is on: the search looks on both sides
//! of it (a bounded number of times), and names the values below its
//! answer that no replication showed to miss. A floor on occupancy or on an
//! agent's work gets harder instead: it is left out of the search and
//! checked at its answer, where it holds or no larger value can make it
//! hold.
//!
//! A target staffing cannot reach — a first-response p95 under a minute
//! when agents take minutes to reply — is found while the search doubles
//! the parameter: when the varied group is no longer the bottleneck (fewer
//! than 1 % of the customers of any account it serves wait, or its
//! occupancy is under 50 % with fewer than 10 % waiting) and doubling it
//! closed less than a tenth of the gap to the target, or no replication at
//! either value measured the metric at all, the search stops with
//! [`Outcome::Unreachable`].

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use serde::Serialize;

use crate::gate::{self, Condition, Op};
use crate::scenario::Scenario;
use crate::stats::Counted;
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
        // what the scenario says, not what a run measured: no staffing
        // changes it (found by probing: `seed>=0` was "met")
        if path == "seed" || path.starts_with("scenario.") {
            return Err(format!(
                "--target {text}: `{path}` is the scenario's setting, not a measured outcome"
            ));
        }
        // The search wants the least staffing on one side of the threshold.
        // `!=` was met by nearly any value (`service_level!=0.8`
        // recommended 1 agent, at a service level of 0: found by probing),
        // and `==` by none but a bound (`abandon_rate==0`, which is `<=0`).
        // Said before the condition is parsed: a mistyped `=` was told the
        // gates' operators, `==` and `!=` among them.
        let cond = cond.trim_start();
        if !cond.starts_with(['<', '>']) {
            let sign = &cond[..cond.find(|c| !matches!(c, '=' | '!')).unwrap_or(cond.len())];
            return Err(format!(
                "--target {text}: `{sign}` names no side of the threshold: a plan's targets use >=, >, <= or < \
                 (the least staffing at which the metric is at least, or at most, the value)"
            ));
        }
        let condition = gate::condition_for(&path, cond).map_err(|e| format!("--target {text}: {e}"))?;
        Ok(Target { text: text.to_owned(), path, condition })
    }

    fn met_by(&self, value: Option<f64>) -> bool {
        value.is_some_and(|v| self.condition.op.holds(v, self.condition.threshold))
    }

    /// Whether larger values are the good side (`>=`, `>`).
    pub fn wants_more(&self) -> bool {
        matches!(self.condition.op, Op::Ge | Op::Gt)
    }

    /// Whether more staff makes the target harder, not easier: a floor on
    /// occupancy (`occupancy>=0.8`, a group's or an agent's alike) or on
    /// an agent's share of the work (`sessions`, `messages`, `busy_s`: the
    /// same work spread over more agents). The search is over the other
    /// targets; this one is checked at their answer, where it holds or no
    /// larger staffing can make it hold.
    pub fn harder_with_staff(&self) -> bool {
        let last = self.path.rsplit('.').next().unwrap_or_default();
        let per_agent =
            self.path.starts_with("agents.") && ["sessions", "messages", "busy_s"].contains(&last);
        self.wants_more() && (last == "occupancy" || per_agent)
    }

    /// The summary paths of the sessions a share target is a share of, in
    /// order of preference (the first a run has): the count that makes
    /// "every replication at 100 %" mean something. Empty for targets that
    /// are not a share of sessions.
    pub fn sessions_paths(&self) -> Vec<String> {
        let (scope, last) = self.path.rsplit_once('.').unwrap_or(("", &self.path));
        if !["service_level", "wait_probability", "abandon_rate"].contains(&last) {
            return Vec::new();
        }
        match scope.split_once('.') {
            None if scope.is_empty() => vec!["sessions.to_people".into(), OFFERED.into()],
            Some(("by_entry", _)) => {
                vec![format!("{scope}.sessions.to_people"), format!("{scope}.sessions.offered")]
            }
            Some(("by_account", _)) => vec![format!("{scope}.handles.offered")],
            _ => Vec::new(),
        }
    }

    /// Whether a share target's sessions, when counted, decide it rather
    /// than its replications' values: a threshold strictly inside (0, 1),
    /// on one side of it.
    fn judged_by_counts(&self) -> bool {
        let t = self.condition.threshold;
        matches!(self.condition.op, Op::Ge | Op::Gt | Op::Le | Op::Lt) && t > 0.0 && t < 1.0
    }

    /// How sure the replications make us that the target holds. `counted`:
    /// a share target's sessions over the replications (see
    /// [`Target::sessions_paths`]); `edge_dispersion`: the overdispersion
    /// to assume where they cannot bound it (see [`Counted::sure`]).
    pub fn sure(&self, e: Option<Estimate>, counted: Option<&Counted>, edge_dispersion: f64) -> f64 {
        // as the gate judges it: nobody abandoned in any replication meets
        // a ceiling on the waits of those who did
        let Some(e) = e else {
            return f64::from(u8::from(gate::holds_without_samples(&self.path, self.condition.op)));
        };
        // A share is judged by its sessions, not by its replications'
        // values alone (see `Counted`); the edge of every replication at
        // 0 or 1 too (found by probing: 5 replications of 48 sessions all
        // answered in time were ">99.9 % sure" of a 99.9 % service level
        // that was 99.66 %).
        if let Some(c) = counted.filter(|_| self.judged_by_counts()) {
            return c.sure(self.condition.threshold, self.wants_more(), edge_dispersion);
        }
        // Every replication that measured it gave the same value (or only
        // one did): the spread says nothing, and the condition decides,
        // `>=` and `<=` inclusive (a service level of exactly 1 at every
        // replication meets `service_level>=1`; judged as a strict `>` it
        // made the target unreachable).
        if e.se == 0.0 {
            return f64::from(u8::from(self.met_by(Some(e.mean))));
        }
        match self.condition.op {
            Op::Ge | Op::Gt => e.sure(&self.path, self.condition.threshold, true),
            Op::Le | Op::Lt => e.sure(&self.path, self.condition.threshold, false),
            Op::Eq | Op::Ne => f64::from(u8::from(self.met_by(Some(e.mean)))),
        }
    }
}

/// A share target's sessions over `runs`, when every replication that
/// measured the share says how many sessions it is of (replications from
/// before the counts were recorded do not: the replications' values alone
/// decide).
fn counted(t: &Target, runs: &[sweep::RepValues]) -> Option<Counted> {
    let paths = t.sessions_paths();
    if paths.is_empty() {
        return None;
    }
    let shares: Vec<f64> = runs.iter().filter_map(|v| v.get(&t.path).copied().flatten()).collect();
    let counts: Vec<(f64, f64)> = runs
        .iter()
        .filter_map(|v| {
            let share = v.get(&t.path).copied().flatten()?;
            Some((share, paths.iter().find_map(|p| v.get(p).copied().flatten())?))
        })
        .collect();
    (counts.len() == shares.len()).then(|| Counted::of(&counts)).flatten()
}

/// What the replications say about a target at one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Met, the replications [`decided_at`] sure of it.
    Meets,
    /// Missed, as sure.
    Misses,
    /// Neither.
    Unclear,
}

/// How sure every decision must be, whatever the number of looks it took.
pub const DECIDED: f64 = 0.975;

/// The replication counts at which a value is looked at: `replications`,
/// doubled while undecided, the last one `max_replications`.
pub fn looks(replications: u32, max_replications: u32) -> Vec<u32> {
    let mut at = vec![replications.max(1)];
    while let Some(&done) = at.last().filter(|&&d| d < max_replications) {
        // straight to the most when doubling would leave less than a look's
        // worth: a last look of one replication (5, 10, 20, 40, 41) would
        // raise every look's bar for nothing (found by review)
        let next = done.saturating_mul(2);
        at.push(if max_replications.saturating_sub(next) < done { max_replications } else { next });
    }
    at
}

/// How sure one look must be for its decision to be [`DECIDED`] sure over
/// all of `looks`: the union bound spends 1 − `DECIDED` evenly.
pub fn decided_at(looks: usize) -> f64 {
    1.0 - (1.0 - DECIDED) / looks.max(1) as f64
}

fn decide(sure: f64, at: f64) -> Decision {
    if sure >= at {
        Decision::Meets
    } else if sure <= 1.0 - at {
        Decision::Misses
    } else {
        Decision::Unclear
    }
}

/// One target at one value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// The target as written.
    pub target: String,
    /// Its metric.
    pub path: String,
    /// The decision.
    pub decision: Decision,
    /// How sure the replications make us that the target holds (0–1).
    pub sure: f64,
    /// A share target's overdispersion, bounded from its replications'
    /// counts (see [`Counted::dispersion`]): absent at an edge, where the
    /// nearest smaller value's stood in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispersion: Option<f64>,
}

/// The figures at one value of the parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluated {
    /// The parameter's value.
    pub value: u32,
    /// Every target clearly met.
    pub meets: bool,
    /// Every target met (`meets`), one clearly missed, or undecided.
    pub decision: Decision,
    /// Each target.
    pub checks: Vec<Check>,
    /// Replications run at this value.
    pub replications: u32,
    /// The targets' metrics (and the sweep's key metrics).
    pub metrics: BTreeMap<String, Option<Estimate>>,
    /// Erlang's prediction at this value, where it applies.
    pub theory: Option<Prediction>,
    /// Every replication run at this value, those past the deciding look
    /// too: judged again with other edge dispersions, it needs no rerun.
    #[serde(skip)]
    runs: Vec<sweep::RepValues>,
    /// The edge dispersion each target was judged with.
    #[serde(skip)]
    edge: Vec<f64>,
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
    /// The values below the answer, from the first to the last, that no
    /// replication showed to miss (undecided, or past the search's budget
    /// for undecided values): the least value meeting every target may be
    /// among them. Absent when the value below the answer clearly missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undecided: Option<(u32, u32)>,
    /// The smallest value at which Erlang meets every target it can judge.
    pub erlang: Option<u32>,
    /// Every value evaluated, in order: the staffing curve.
    pub curve: Vec<Evaluated>,
}

/// A target no value of the parameter meets: its metric levels off.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unreachable {
    /// The varied path.
    pub path: String,
    /// The target that cannot be met.
    pub target: String,
    /// Its metric.
    pub metric: String,
    /// Where the metric levels off (its mean at the largest value tried;
    /// `null` when no replication measured it). For a target more staff
    /// makes harder, its mean where the other targets are first met.
    pub levels_off_at: f64,
    /// The target gets harder with more staff (a floor on occupancy).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub harder_with_staff: bool,
    /// Where it levels off the metric meets the target, but the
    /// replications could not show it (too few sessions at a share's edge).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub undecided: bool,
    /// When `undecided` at a share's edge: the sessions of the largest
    /// value tried, and about how many it would take to show the target
    /// met (see [`Counted::sure`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<ToShow>,
    /// The values tried and the metric's estimate at each.
    pub tried: Vec<(u32, Option<Estimate>)>,
    /// Why the search stopped.
    pub reason: String,
}

impl Unreachable {
    /// Where the metric ends up, its value written by `format`: "levels off
    /// at about X", or that no replication measured it.
    pub fn ends(&self, format: impl Fn(f64) -> String) -> String {
        match (self.harder_with_staff, self.levels_off_at.is_finite()) {
            (true, true) => format!(
                "is about {} at the smallest value meeting the other targets, and falls with more",
                format(self.levels_off_at)
            ),
            (true, false) => "has no value at the smallest value meeting the other targets".into(),
            (false, true) if self.undecided => match self.sessions {
                // how much longer, not just "longer": late answers in bursts
                // can ask for many times what the target's share suggests
                Some(ToShow { have, independent, need }) => format!(
                    "seems met at about {}, but the replications cannot show it: their {have:.0} \
                     sessions at the largest value tried, every one on the target's side, say as much \
                     as {independent:.0} independent ones would (late answers come in bursts), and it \
                     takes about {need:.0}: lengthen the scenario's `duration` or raise \
                     --max-replications about {:.0}-fold",
                    format(self.levels_off_at),
                    (need / have).ceil().max(2.0)
                ),
                None => format!(
                    "seems met at about {}, but the replications cannot show it (too few sessions): \
                     lengthen the scenario's `duration` or raise --max-replications",
                    format(self.levels_off_at)
                ),
            },
            (false, true) => format!("levels off at about {}", format(self.levels_off_at)),
            (false, false) => "has no value in any replication at the largest values tried".into(),
        }
    }
}

/// Sessions at a share's edge, and about how many would show the target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ToShow {
    /// Sessions over the replications, every one on the target's side.
    pub have: f64,
    /// What they weigh as independent sessions (over the overdispersion
    /// assumed).
    pub independent: f64,
    /// About how many it would take for the decision.
    pub need: f64,
}

/// The answer of a search.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "outcome")]
pub enum Outcome {
    /// The smallest value meeting every target.
    Recommended(Box<Recommendation>),
    /// A target cannot be met by this parameter.
    Unreachable(Unreachable),
}

/// Where the search may look.
pub const MAX_VALUE: u32 = 100_000;

/// Most undecided values a search looks past on both sides (each costs
/// the values below it): a band of undecided values is usually a few
/// wide, and one of hundreds would be run value by value.
const UNDECIDED_BUDGET: u32 = 16;

/// The sessions that arrived in a replication.
const OFFERED: &str = "sessions.offered";

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
    /// Replications per evaluated value to begin with.
    pub replications: u32,
    /// Most replications per value while a decision is unclear.
    pub max_replications: u32,
    /// Use every core.
    pub parallel: bool,
}

impl Problem<'_> {
    fn scenario_at(&self, value: u32) -> anyhow::Result<Scenario> {
        Ok(sweep::variant(self.text, self.file, &self.sets, &[(self.path.clone(), value.to_string())])?)
    }

    /// Evaluate the targets at `value`, adding replications (doubling) while
    /// a decision is unclear, up to `max_replications`.
    pub fn evaluate(&self, value: u32) -> anyhow::Result<Evaluated> {
        self.evaluate_with(value, &sweep::Local { parallel: self.parallel, go_on: &|| true })
    }

    /// [`Problem::evaluate`] with the replications from `runner`. The
    /// search's course depends only on the replications' values, so every
    /// shard of a plan, and the merge of their files, follows the same one.
    pub fn evaluate_with(&self, value: u32, runner: &dyn sweep::Replicate) -> anyhow::Result<Evaluated> {
        self.evaluate_near(value, runner, &BTreeMap::new())
    }

    /// [`Problem::evaluate_with`], a share target at its edge taking the
    /// dispersion of the nearest smaller value of `known` that measured
    /// one (see [`Problem::edge_dispersions`]), and the replications
    /// `known` already has at `value` reused.
    pub fn evaluate_near(
        &self,
        value: u32,
        runner: &dyn sweep::Replicate,
        known: &BTreeMap<u32, Evaluated>,
    ) -> anyhow::Result<Evaluated> {
        let prior = known.get(&value).map(|e| e.runs.clone()).unwrap_or_default();
        self.evaluate_from(value, runner, prior, self.edge_dispersions(value, known))
    }

    /// The overdispersion each share target assumes at its edge at
    /// `value`: what the nearest smaller value of `known` measured (a
    /// target gets harder with fewer staff, and its late answers come in
    /// longer episodes: over the simulator's M/M/c replications the
    /// dispersion fell from 10 to 5 as agents went from 6 to 10), or 1
    /// when none did. Assumed 1 throughout, 20 replications of 48
    /// sessions all in time were "sure" of a 99.4 % service level that
    /// was the truth: "meets" 17 % of the time at the threshold; with the
    /// smaller value's, 1 %.
    pub fn edge_dispersions(&self, value: u32, known: &BTreeMap<u32, Evaluated>) -> Vec<f64> {
        (0..self.targets.len())
            .map(|i| {
                let below = known.range(..value).rev();
                below.filter_map(|(_, e)| e.checks.get(i)?.dispersion).next().unwrap_or(1.0)
            })
            .collect()
    }

    /// Looks at `value` in order, with the replications of `runs` first
    /// (the same decisions as from none: only the runner's work differs).
    fn evaluate_from(
        &self,
        value: u32,
        runner: &dyn sweep::Replicate,
        mut runs: Vec<sweep::RepValues>,
        edge: Vec<f64>,
    ) -> anyhow::Result<Evaluated> {
        let sc = self.scenario_at(value)?;
        // a target's path as this value's summary names it
        let mut named: Vec<(String, &str)> =
            self.targets.iter().map(|t| (agent_path_at(&t.path, &sc), t.path.as_str())).collect();
        // two targets on one figure: renamed once (a second rename found
        // nothing and wrote "no value" over the first's; found by review)
        named.sort_unstable();
        named.dedup();
        let extra: Vec<String> = named
            .iter()
            .map(|(at, _)| at.clone())
            .chain(self.bottleneck(&sc).into_iter().flatten())
            .chain(self.targets.iter().flat_map(Target::sessions_paths))
            .chain(std::iter::once(OFFERED.to_owned()))
            .collect();
        let looks = self.looks();
        for (i, &reps) in looks.iter().enumerate() {
            let done = runs.len() as u32;
            if done < reps {
                let mut more = runner.replicate(&sc, done..reps, &extra)?;
                for v in &mut more {
                    for (at, path) in named.iter().filter(|(at, path)| at != path) {
                        let x = v.remove(at).flatten();
                        v.insert((*path).to_owned(), x);
                    }
                }
                runs.extend(more);
            }
            let e = self.judge(value, &runs[..reps as usize], &sc, &edge);
            if self.settled(&e) || i + 1 == looks.len() {
                return Ok(Evaluated { runs, edge, ..e });
            }
        }
        unreachable!("looks() is never empty")
    }

    /// The replication counts at which each value is looked at.
    pub fn looks(&self) -> Vec<u32> {
        looks(self.replications, self.max_replications)
    }

    /// How sure one look must be (see [`decided_at`]).
    pub fn decided_at(&self) -> f64 {
        decided_at(self.looks().len())
    }

    /// Whether more replications could change what the search does at
    /// `e`: not once a target more staff makes easier is missed; once they
    /// are all met, not until the others are decided too (they are checked
    /// at the answer). A target more staff makes harder missing does not
    /// settle a value: the search is not over it.
    fn settled(&self, e: &Evaluated) -> bool {
        let of = |harder: bool| {
            let mut d = self.targets.iter().zip(&e.checks).filter(|(t, _)| t.harder_with_staff() == harder);
            if d.clone().any(|(_, c)| c.decision == Decision::Misses) {
                Decision::Misses
            } else if d.all(|(_, c)| c.decision == Decision::Meets) {
                Decision::Meets
            } else {
                Decision::Unclear
            }
        };
        match of(false) {
            Decision::Misses => true,
            Decision::Meets => of(true) != Decision::Unclear,
            Decision::Unclear => false,
        }
    }

    fn judge(&self, value: u32, runs: &[sweep::RepValues], sc: &Scenario, edge: &[f64]) -> Evaluated {
        let mut metrics = sweep::estimate_values(runs);
        for t in &self.targets {
            let per_run: Vec<Option<f64>> = runs.iter().map(|v| v.get(&t.path).copied().flatten()).collect();
            metrics.insert(t.path.clone(), Estimate::of(&t.path, &per_run));
        }
        let at = self.decided_at();
        // Shown as decided: a share target's pooled share and the interval
        // of its counts, not the replications' own; put in once every
        // target is judged, so that another target on the same figure
        // reads the replications' (it read the first's: found by review).
        let mut shown = Vec::new();
        let checks: Vec<Check> = self
            .targets
            .iter()
            .zip(edge)
            .map(|(t, &edge)| {
                let counted = counted(t, runs);
                let estimate = metrics.get(&t.path).copied().flatten();
                let sure = t.sure(estimate, counted.as_ref(), edge);
                if let (Some(c), Some(e)) = (counted.filter(|_| t.judged_by_counts()), estimate) {
                    let (lo, hi) = c.interval(sweep::CONFIDENCE, edge);
                    shown.push((t.path.clone(), Estimate { mean: c.share(), lo, hi, ..e }));
                }
                Check {
                    target: t.text.clone(),
                    path: t.path.clone(),
                    decision: decide(sure, at),
                    sure,
                    dispersion: counted.and_then(|c| c.dispersion()),
                }
            })
            .collect();
        for (path, e) in shown {
            metrics.insert(path, Some(e));
        }
        let decision = if checks.iter().all(|c| c.decision == Decision::Meets) {
            Decision::Meets
        } else if checks.iter().any(|c| c.decision == Decision::Misses) {
            Decision::Misses
        } else {
            Decision::Unclear
        };
        Evaluated {
            value,
            meets: decision == Decision::Meets,
            decision,
            checks,
            replications: runs.len() as u32,
            metrics,
            theory: crate::theory::predict(sc),
            runs: Vec::new(),
            edge: Vec::new(),
        }
    }

    /// The figures that tell whether the varied group is still the
    /// bottleneck: its occupancy, then the wait probability of each account
    /// it serves. The whole scenario's would say "idle" when another
    /// account's agents are (found by probing: a small account's service
    /// level was declared unreachable at 2 agents because a large one sat
    /// at 4 % occupancy); its first account's alone, when a later one's
    /// customers wait (found by review).
    fn bottleneck(&self, sc: &Scenario) -> Option<Vec<String>> {
        let name = self.path.split('.').nth(1)?;
        let g = sc.groups.iter().find(|g| g.group == name)?;
        let accounts = std::iter::once(g.account).chain(g.also.iter().copied());
        Some(
            std::iter::once(format!("by_group.{name}.occupancy"))
                .chain(accounts.map(|a| format!("by_account.{}.wait_probability", sc.accounts[a].name)))
                .collect(),
        )
    }

    /// The smallest value of the parameter meeting every target, or the
    /// target that cannot be met.
    pub fn solve(&self, start: u32) -> anyhow::Result<Outcome> {
        self.solve_with(start, &sweep::Local { parallel: self.parallel, go_on: &|| true })
    }

    /// [`Problem::solve`] with the replications from `runner`.
    pub fn solve_with(&self, start: u32, runner: &dyn sweep::Replicate) -> anyhow::Result<Outcome> {
        let cache: RefCell<BTreeMap<u32, Evaluated>> = RefCell::new(BTreeMap::new());
        let changed = Cell::new(false);
        let least = self.least_value();
        // the search is over the targets more staff makes easier; a value
        // is judged again when a value evaluated below it since changed
        // the dispersion its edges assume
        let eval = |v: u32| -> anyhow::Result<bool> {
            if v < least {
                return Ok(false);
            }
            let stale = {
                let c = cache.borrow();
                c.get(&v).is_none_or(|e| e.edge != self.edge_dispersions(v, &c))
            };
            if stale {
                let e = self.evaluate_near(v, runner, &cache.borrow())?;
                cache.borrow_mut().insert(v, e);
                changed.set(true);
            }
            let c = cache.borrow();
            let mut easier = self.targets.iter().zip(&c[&v].checks).filter(|(t, _)| !t.harder_with_staff());
            Ok(easier.all(|(_, c)| c.decision == Decision::Meets))
        };
        // The search, again until it runs with what it evaluated, and
        // every value it holds judged with the values below it: each
        // pass settles the values above those already settled, so it
        // ends; the bound is a guard.
        let mut found = self.search(start, least, &eval, &cache)?;
        for _ in 0..64 {
            if !changed.replace(false) {
                break;
            }
            let held: Vec<u32> = cache.borrow().keys().copied().collect();
            for v in held {
                eval(v)?;
            }
            found = self.search(start, least, &eval, &cache)?;
        }
        let hi = match found {
            Ok(hi) => hi,
            Err(u) => return Ok(Outcome::Unreachable(u)),
        };
        let cache = cache.into_inner();
        let harder = self
            .targets
            .iter()
            .zip(&cache[&hi].checks)
            .find(|(t, c)| t.harder_with_staff() && c.decision != Decision::Meets);
        if let Some((t, c)) = harder {
            let y = cache[&hi].metrics.get(&t.path).copied().flatten().map_or(f64::NAN, |x| x.mean);
            let reason = format!(
                "it is {} at {hi}, the smallest {} meeting the other targets, and more staff only lowers it",
                if c.decision == Decision::Misses { "missed" } else { "not clearly met" },
                self.path
            );
            return Ok(Outcome::Unreachable(self.unreachable_target(&cache, t, y, reason)));
        }
        let erlang = self.erlang_answer(hi)?;
        let first = self.missed_below(hi, &cache) + 1;
        let undecided = (first < hi).then_some((first, hi - 1));
        // the search is over: its replications are not needed again
        let curve: Vec<Evaluated> =
            cache.into_values().map(|e| Evaluated { runs: Vec::new(), ..e }).collect();
        let of = |v: u32| curve.iter().find(|e| e.value == v).cloned();
        Ok(Outcome::Recommended(Box::new(Recommendation {
            path: self.path.clone(),
            at: of(hi).expect("the answer was evaluated"),
            below: if hi > 1 { of(hi - 1) } else { None },
            undecided,
            erlang,
            curve,
        })))
    }

    /// One pass of the search with `eval`: the smallest value meeting the
    /// targets more staff makes easier, or why none does.
    fn search(
        &self,
        start: u32,
        least: u32,
        eval: &dyn Fn(u32) -> anyhow::Result<bool>,
        cache: &RefCell<BTreeMap<u32, Evaluated>>,
    ) -> anyhow::Result<Result<u32, Unreachable>> {
        // Bracket: a failing `lo` (or 0) and a passing `hi`.
        let mut hi = start.max(least);
        let mut prev: Option<u32> = None;
        while !eval(hi)? {
            if prev.is_none()
                && let Some(u) = self.nothing_arrives(&cache.borrow(), hi)
            {
                return Ok(Err(u));
            }
            if let Some(p) = prev {
                let stalled = self.levelled_off(&cache.borrow(), p, hi);
                if let Some(u) = stalled {
                    match self.between(hi, eval, cache)? {
                        Some(v) if u.undecided => {
                            hi = v;
                            break;
                        }
                        _ => return Ok(Err(u)),
                    }
                }
            }
            if hi >= MAX_VALUE {
                let c = cache.borrow();
                let u = self.unreachable(&c, hi, format!("no value up to {MAX_VALUE} meets it"));
                return Ok(Err(u));
            }
            prev = Some(hi);
            hi = (hi * 2).min(MAX_VALUE);
        }
        let mut probe = hi / 2;
        while probe > 0 && eval(probe)? {
            hi = probe;
            probe /= 2;
        }
        // Bisection took an undecided value for a miss and skipped every
        // value below it, and those between two undecided ones, where one
        // may meet (found by probing): below the largest value that missed
        // the search is over, the others are looked at.
        let lo = self.missed_below(hi, &cache.borrow());
        let mut budget = UNDECIDED_BUDGET;
        if let Some(v) = self.first_meeting(lo, hi, eval, cache, &mut budget)? {
            hi = v;
        }
        if hi > 1 {
            eval(hi - 1)?;
        }
        Ok(Ok(hi))
    }

    /// The largest value below `hi` at which a target more staff makes
    /// easier was clearly missed (below [`Problem::least_value`], every
    /// value is), or 0: targets get easier with staff, so no value at or
    /// below it meets them.
    fn missed_below(&self, hi: u32, cache: &BTreeMap<u32, Evaluated>) -> u32 {
        let known = cache.range(..hi).rev().find(|(_, e)| self.easier_missed(e)).map(|(v, _)| *v);
        known.unwrap_or(0).max(self.least_value().saturating_sub(1)).min(hi.saturating_sub(1))
    }

    fn easier_missed(&self, e: &Evaluated) -> bool {
        let mut easier = self.targets.iter().zip(&e.checks).filter(|(t, _)| !t.harder_with_staff());
        easier.any(|(_, c)| c.decision == Decision::Misses)
    }

    /// The smallest value strictly between `lo` and `hi` meeting the
    /// targets more staff makes easier, by bisection that goes on both
    /// sides of a value it could not decide (lower first): a missed value
    /// rules out those below it, a met one those above, an undecided one
    /// neither. `budget` bounds how many undecided values are looked past;
    /// once spent, what lies below the last is not looked at, and is
    /// reported as not shown to miss (see [`Recommendation::undecided`]).
    fn first_meeting(
        &self,
        lo: u32,
        hi: u32,
        eval: &dyn Fn(u32) -> anyhow::Result<bool>,
        cache: &RefCell<BTreeMap<u32, Evaluated>>,
        budget: &mut u32,
    ) -> anyhow::Result<Option<u32>> {
        if hi <= lo + 1 {
            return Ok(None);
        }
        let mid = lo + (hi - lo) / 2;
        if eval(mid)? {
            return Ok(Some(self.first_meeting(lo, mid, eval, cache, budget)?.unwrap_or(mid)));
        }
        let missed = mid < self.least_value() || self.easier_missed(&cache.borrow()[&mid]);
        if missed {
            return self.first_meeting(mid, hi, eval, cache, budget);
        }
        if *budget == 0 {
            return Ok(None);
        }
        *budget -= 1;
        match self.first_meeting(lo, mid, eval, cache, budget)? {
            Some(v) => Ok(Some(v)),
            None => self.first_meeting(mid, hi, eval, cache, budget),
        }
    }

    /// A value below `hi` meeting the targets, looked for between `hi` and
    /// the largest value below it that missed one, when doubling found
    /// only values it could not decide: at an edge (every session in
    /// time) the dispersion of a value far below stands in, where one
    /// nearer would be smaller, and the values between, with a few late
    /// answers, measure their own (found by probing: a plan of 48-session
    /// replications doubled from 4 agents, which missed, to 8 and 16,
    /// all in time and undecided, and gave up, where 7 met).
    ///
    /// An undecided value there was taken to say "lower" and the values
    /// above it were never looked at (found by probing: 4 missed, 16, 10,
    /// 7 and 5 undecided, and the plan gave up where 6 met); both sides
    /// of one are looked at now (see [`Problem::first_meeting`]).
    fn between(
        &self,
        hi: u32,
        eval: &dyn Fn(u32) -> anyhow::Result<bool>,
        cache: &RefCell<BTreeMap<u32, Evaluated>>,
    ) -> anyhow::Result<Option<u32>> {
        let lo = self.missed_below(hi, &cache.borrow());
        let mut budget = UNDECIDED_BUDGET;
        self.first_meeting(lo, hi, eval, cache, &mut budget)
    }

    /// The smallest value worth evaluating: 1, or when the group's size
    /// varies, the number of the highest of its agents a target names (a
    /// floor on `kf-50`'s sessions is about a group of at least 50; taken
    /// out of the search as a floor, it was judged at an answer of 49
    /// agents, where kf-50 has no figures, and called unreachable: found by
    /// review).
    fn least_value(&self) -> u32 {
        let Some(group) = self.path.strip_prefix("agents.").and_then(|p| p.strip_suffix(".count")) else {
            return 1;
        };
        self.targets.iter().filter_map(|t| agent_number(&t.path, group)).map(|(n, _)| n).fold(1, u32::max)
    }

    /// Every target not met at `at` because no replication had a session
    /// at all: arrivals do not depend on staffing, so no value would have
    /// one (it used to double up to [`MAX_VALUE`] before saying so).
    fn nothing_arrives(&self, cache: &BTreeMap<u32, Evaluated>, at: u32) -> Option<Unreachable> {
        let e = &cache[&at];
        let none = e.metrics.get(OFFERED).copied().flatten().is_some_and(|x| x.n > 0 && x.mean == 0.0);
        if !none {
            return None;
        }
        let reason = format!(
            "no session arrived after the warm-up in any of its {} replications at {at}, and arrivals do not \
             depend on staffing: lengthen the scenario's duration, shorten its warm-up or raise its entries' rates",
            e.replications
        );
        Some(self.unreachable(cache, at, reason))
    }

    /// A missed target whose metric stopped moving between `from` and
    /// `to` (= 2·`from`) while agents are no longer the bottleneck.
    fn levelled_off(&self, cache: &BTreeMap<u32, Evaluated>, from: u32, to: u32) -> Option<Unreachable> {
        let (a, b) = (&cache[&from], &cache[&to]);
        let mean = |e: &Evaluated, k: &str| e.metrics.get(k).copied().flatten().map(|x| x.mean);
        let paths = self.scenario_at(to).ok().and_then(|sc| self.bottleneck(&sc));
        let (occupancy, waits): (Option<f64>, Vec<Option<f64>>) = match &paths {
            Some(p) => (mean(b, &p[0]), p[1..].iter().map(|w| mean(b, w)).collect()),
            None => (mean(b, "occupancy"), vec![mean(b, "wait_probability")]),
        };
        // the most any of the group's accounts had waiting (a figure a
        // replication lacks is the scenario's)
        let wait = waits
            .iter()
            .map(|w| w.or_else(|| mean(b, "wait_probability")))
            .try_fold(0.0, |m: f64, w| w.map(|w| m.max(w)));
        let few_wait = wait.is_some_and(|w| w < 0.01);
        // occupancy is a whole-run average: a day whose peak overloads the
        // group can still average under a half, so waits must be few too
        // (found by review: a 10-hour peak in a 24-hour day stopped at 2)
        let idle = few_wait || (occupancy.is_some_and(|o| o < 0.5) && wait.is_some_and(|w| w < 0.1));
        if !idle {
            return None;
        }
        let why = if few_wait {
            "fewer than 1 % of the customers of the group's accounts waited"
        } else {
            "the group was busy less than half the time and fewer than 10 % of its accounts' customers waited"
        };
        // a target still undecided where the group idles and doubling it
        // moved nothing stops the search as a missed one does: more staff
        // adds no evidence (found by probing: a plan whose replications
        // could not show 99.9 % walked on to 100 000 agents)
        for (t, check) in self.targets.iter().zip(&b.checks) {
            if check.decision == Decision::Meets || t.harder_with_staff() {
                continue;
            }
            let (Some(x), Some(y)) = (mean(a, &t.path), mean(b, &t.path)) else {
                if mean(a, &t.path).is_none() && mean(b, &t.path).is_none() {
                    // nothing to level off: no replication had a value (an
                    // abandonment figure with no patience, or once no one
                    // abandons); searching on would try every value up to
                    // MAX_VALUE
                    let measured = cache.values().any(|e| mean(e, &t.path).is_some());
                    let reason = format!(
                        "no replication measured {} at {from} or {to} while {why}: {}",
                        t.path,
                        if measured {
                            "it missed at every value tried that measured it"
                        } else {
                            "nothing staffing changes produces it"
                        }
                    );
                    return Some(self.unreachable_target(cache, t, f64::NAN, reason));
                }
                continue;
            };
            let gain = if t.wants_more() { y - x } else { x - y };
            let gap = (t.condition.threshold - y).abs();
            if gain <= 0.1 * gap {
                let reason = format!(
                    "doubling {} from {from} to {to} moved it by {:.1} % of the gap while {why}",
                    self.path,
                    100.0 * gain.max(0.0) / gap.max(f64::MIN_POSITIVE),
                );
                return Some(self.unreachable_target(cache, t, y, reason));
            }
        }
        None
    }

    fn unreachable(&self, cache: &BTreeMap<u32, Evaluated>, at: u32, reason: String) -> Unreachable {
        let e = &cache[&at];
        let t = self
            .targets
            .iter()
            .zip(&e.checks)
            .find(|(t, c)| c.decision != Decision::Meets && !t.harder_with_staff())
            .map_or(&self.targets[0], |(t, _)| t);
        let y = e.metrics.get(&t.path).copied().flatten().map_or(f64::NAN, |x| x.mean);
        self.unreachable_target(cache, t, y, reason)
    }

    fn unreachable_target(
        &self,
        cache: &BTreeMap<u32, Evaluated>,
        t: &Target,
        levels_off_at: f64,
        reason: String,
    ) -> Unreachable {
        let undecided = levels_off_at.is_finite() && t.met_by(Some(levels_off_at));
        Unreachable {
            path: self.path.clone(),
            target: t.text.clone(),
            metric: t.path.clone(),
            levels_off_at,
            harder_with_staff: t.harder_with_staff(),
            undecided,
            sessions: undecided.then(|| self.to_show(cache, t)).flatten(),
            tried: cache.iter().map(|(v, e)| (*v, e.metrics.get(&t.path).copied().flatten())).collect(),
            reason,
        }
    }

    /// At the largest value of `cache`, when target `t` is at its edge
    /// there: its sessions, and about how many would make a look sure of
    /// it with the dispersion assumed (all n/φ independent sessions on one
    /// side happen with probability q^(n/φ) at the threshold).
    fn to_show(&self, cache: &BTreeMap<u32, Evaluated>, t: &Target) -> Option<ToShow> {
        let i = self.targets.iter().position(|x| x == t)?;
        let (_, e) = cache.iter().next_back()?;
        let c = counted(t, e.runs.get(..e.replications as usize)?)?;
        let th = t.condition.threshold;
        if !c.at_edge() || th <= 0.0 || th >= 1.0 {
            return None;
        }
        let phi = e.edge.get(i).copied().unwrap_or(1.0).max(1.0);
        let q = if c.share() >= 1.0 { th } else { 1.0 - th };
        let need = phi * (1.0 - self.decided_at()).ln() / q.ln();
        Some(ToShow { have: c.n, independent: c.n / phi, need: need.ceil() })
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
        if !self.targets.iter().all(|t| Prediction::gives(&t.path)) {
            return Ok(None);
        }
        // A value where theory gives a target's metric no figure (a service
        // level too long to compute: a pool of millions with patience of
        // weeks, where few agents are far too few) is not judged; it used
        // to end the search with no answer (found by probing: erlang-c.toml
        // with a patience of 20 days had none, where Erlang A says 46). An
        // answer stands when no value below it, past the last one judged
        // short, went unjudged: targets get easier with staff.
        let mut unjudged = false;
        for v in 1..=MAX_VALUE.min(near.saturating_mul(4).max(16)) {
            let Some(p) = crate::theory::predict(&self.scenario_at(v)?) else { continue };
            // a target theory misses makes the value short, whatever it
            // cannot say of the others (taken for unjudged, such a value
            // left no answer: found by review)
            let judged: Vec<Option<bool>> =
                self.targets.iter().map(|t| p.metric(&t.path).map(|x| t.met_by(Some(x)))).collect();
            if judged.contains(&Some(false)) {
                unjudged = false;
            } else if judged.contains(&None) {
                unjudged = true;
            } else {
                return Ok((!unjudged).then_some(v));
            }
        }
        Ok(None)
    }
}

/// The knee of the staffing curve for `target`: the first value after the
/// steepest stretch of the curve at which the improvement per added unit
/// falls below a quarter of that steepest one — where adding staff starts
/// to pay off much less. `None` with fewer than three values.
pub fn knee(curve: &[Evaluated], target: &Target) -> Option<u32> {
    let pts: Vec<(u32, f64)> = curve
        .iter()
        .filter_map(|e| e.metrics.get(&target.path).copied().flatten().map(|m| (e.value, m.mean)))
        .collect();
    let slopes: Vec<(u32, f64)> = pts
        .windows(2)
        .map(|w| {
            let gain = if target.wants_more() { w[1].1 - w[0].1 } else { w[0].1 - w[1].1 };
            (w[0].0, gain / f64::from(w[1].0 - w[0].0))
        })
        .collect();
    if slopes.len() < 2 {
        return None;
    }
    let (i_max, g_max) =
        slopes.iter().enumerate().max_by(|a, b| a.1.1.total_cmp(&b.1.1)).map(|(i, s)| (i, s.1))?;
    if g_max <= 0.0 {
        return None;
    }
    slopes[i_max..].iter().find(|(_, g)| *g < g_max / 4.0).map(|(v, _)| *v)
}

/// A target as a plan file records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetInfo {
    /// As written.
    pub text: String,
    /// Canonical metric path.
    pub path: String,
    /// The threshold in the metric's unit.
    pub threshold: f64,
    /// Larger values are better.
    pub wants_more: bool,
}

impl From<&Target> for TargetInfo {
    fn from(t: &Target) -> TargetInfo {
        TargetInfo {
            text: t.text.clone(),
            path: t.path.clone(),
            threshold: t.condition.threshold,
            wants_more: t.wants_more(),
        }
    }
}

/// One interval of the intraday staffing table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntervalRow {
    /// Start of the interval [s of scenario time].
    pub start_s: f64,
    /// End [s].
    pub end_s: f64,
    /// Mean arrivals per minute over the interval, all entry points.
    pub arrivals_per_min: f64,
    /// What the search found (absent without arrivals).
    pub outcome: Option<Outcome>,
}

impl IntervalRow {
    /// The recommended value, if one was found.
    pub fn recommended(&self) -> Option<u32> {
        match &self.outcome {
            Some(Outcome::Recommended(r)) => Some(r.at.value),
            _ => None,
        }
    }

    /// Erlang's answer, if it has one.
    pub fn erlang(&self) -> Option<u32> {
        match &self.outcome {
            Some(Outcome::Recommended(r)) => r.erlang,
            _ => None,
        }
    }
}

/// Everything `kfsim plan --out` writes to `plan.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanReport {
    /// The scenario's name.
    pub scenario: String,
    /// Its seed.
    pub seed: u64,
    /// The varied path.
    pub path: String,
    /// The targets.
    pub targets: Vec<TargetInfo>,
    /// Replications to begin with, and at most, per value.
    pub replications: (u32, u32),
    /// A target is decided when one look's replications make us this sure
    /// (see [`decided_at`]).
    pub decided_at: f64,
    /// The replication counts at which a value is looked at.
    pub looks: Vec<u32>,
    /// The whole-run answer (absent with `--per-interval`).
    pub outcome: Option<Outcome>,
    /// The knee of the staffing curve of the first target.
    pub knee: Option<u32>,
    /// The intraday staffing table (with `--per-interval`).
    pub per_interval: Vec<IntervalRow>,
}

impl PlanReport {
    /// The decision rule in words, for the terminal and `plan.html`.
    pub fn rule(&self) -> String {
        let looks: Vec<String> = self.looks.iter().map(u32::to_string).collect();
        format!(
            "decided at {:.2}% sure per look ({} replications), so at least {}% sure over the looks",
            self.decided_at * 100.0,
            looks.join(", "),
            DECIDED * 100.0
        )
    }
}

/// `path` with its agent's id as `sc` writes it: ids are numbered to the
/// width of their group's size (`kf-01` of 44 agents is `kf-001` of 120),
/// so a target on one agent's figure found no value once a plan crossed a
/// hundred (found by review). Other paths, and ids `sc` does not have,
/// are unchanged.
fn agent_path_at(path: &str, sc: &Scenario) -> String {
    sc.groups
        .iter()
        .find_map(|g| {
            let (n, field) = agent_number(path, &g.group)?;
            (1..=g.count).contains(&n).then(|| format!("agents.{}.{field}", g.agent_id(n)))
        })
        .unwrap_or_else(|| path.to_owned())
}

/// The number and field of `path` when it is a figure of one of `group`'s
/// agents (`agents.GROUP-NN.FIELD`, at any width of NN).
fn agent_number<'p>(path: &'p str, group: &str) -> Option<(u32, &'p str)> {
    let (id, field) = path.strip_prefix("agents.")?.rsplit_once('.')?;
    Some((id.strip_prefix(group)?.strip_prefix('-')?.parse().ok()?, field))
}

/// Mean of a piecewise-linear profile over `[from, to)` (1 when flat),
/// exact: a trapezoid grid put a step at an interval's edge partly into
/// the interval before (found by probing: 5.01/min where the profile says
/// 5.00).
pub fn mean_factor(profile: &[(u64, f64)], from: u64, to: u64) -> f64 {
    if profile.is_empty() || to <= from {
        return 1.0;
    }
    let area = |t| crate::scenario::profile_area(profile, t);
    (area(to) - area(from)) / (to - from) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Beta, Distribution, Normal};
    use std::sync::Mutex;

    type Rng = rand_xoshiro::Xoshiro256PlusPlus;

    /// Replications drawn by `draw` stand in for the simulator.
    struct Drawn<F> {
        draw: F,
        rng: Mutex<Rng>,
    }

    impl<F: Fn(&mut Rng) -> sweep::RepValues + Sync> sweep::Replicate for Drawn<F> {
        fn replicate(
            &self,
            _: &Scenario,
            reps: std::ops::Range<u32>,
            _: &[String],
        ) -> anyhow::Result<Vec<sweep::RepValues>> {
            let mut rng = self.rng.lock().unwrap();
            Ok(reps.map(|_| (self.draw)(&mut rng)).collect())
        }
    }

    /// Replications whose service level at each number of agents is
    /// clearly met (0.9 every time), clearly missed (0.7) or undecided
    /// (0.75 and 0.95 in turn), as the table says; the group idle (0.1 %
    /// waiting) from 5 agents up.
    struct Table(fn(u32) -> Decision);

    impl sweep::Replicate for Table {
        fn replicate(
            &self,
            sc: &Scenario,
            reps: std::ops::Range<u32>,
            _: &[String],
        ) -> anyhow::Result<Vec<sweep::RepValues>> {
            let v = sc.groups[0].count;
            let sl = |r: u32| match (self.0)(v) {
                Decision::Meets => 0.9,
                Decision::Misses => 0.7,
                Decision::Unclear => [0.75, 0.95][r as usize % 2],
            };
            let wait = if v > 4 { 0.001 } else { 0.5 };
            Ok(reps
                .map(|r| {
                    [
                        ("service_level".to_owned(), Some(sl(r))),
                        ("by_group.kf.occupancy".to_owned(), Some(0.1)),
                        ("by_account.kf.wait_probability".to_owned(), Some(wait)),
                    ]
                    .into()
                })
                .collect())
        }
    }

    /// Bisection took an undecided value for a miss: from 16 and 8 (met)
    /// and 4 (undecided), 6 undecided sent it up to 7, past 5, which met,
    /// and 4 and 6 undecided hid it. The least met value is 5, and 4 below
    /// it is reported as not shown to miss.
    #[test]
    fn the_search_looks_below_values_it_could_not_decide() {
        use Decision::*;
        let p = erlang_c(&[], &["service_level>=0.8"], 2, 4);
        let table = Table(|v| match v {
            ..=3 => Misses,
            4 | 6 => Unclear,
            _ => Meets,
        });
        let Outcome::Recommended(r) = p.solve_with(16, &table).unwrap() else { panic!("unreachable") };
        assert_eq!((r.at.value, r.undecided), (5, Some((4, 4))), "{:?}", r.curve);
        let all = Table(|v| if v <= 3 { Misses } else { Meets });
        let Outcome::Recommended(r) = p.solve_with(16, &all).unwrap() else { panic!("unreachable") };
        assert_eq!((r.at.value, r.undecided), (4, None), "decided throughout");
    }

    /// Doubling from 4 (missed) to 8 and 16, undecided while the group
    /// idles, looked between them; an undecided value there sent the
    /// search lower only, through 10, 7 and 5, and it gave up where 6 met
    /// (found by probing). Both sides of an undecided value are looked at.
    #[test]
    fn between_undecided_values_the_search_goes_both_ways() {
        use Decision::*;
        let p = erlang_c(&[], &["service_level>=0.8"], 2, 4);
        let table = Table(|v| match v {
            ..=4 => Misses,
            6 => Meets,
            _ => Unclear,
        });
        let Outcome::Recommended(r) = p.solve_with(4, &table).unwrap() else { panic!("unreachable") };
        assert_eq!((r.at.value, r.undecided), (6, Some((5, 5))), "{:?}", r.curve);
        // none meets: the search stops, saying the target seems met but
        // cannot be shown, after at most its budget of undecided values
        let none = Table(|v| if v <= 4 { Misses } else { Unclear });
        let Outcome::Unreachable(u) = p.solve_with(4, &none).unwrap() else { panic!("met") };
        assert!(u.undecided && u.tried.len() <= 4 + UNDECIDED_BUDGET as usize, "{u:?}");
    }

    /// A plan of scenarios/erlang-c.toml with `sets`, sizing `kf`'s agents
    /// for `targets` with `replications` up to `max` per value.
    fn erlang_c(sets: &[&str], targets: &[&str], replications: u32, max: u32) -> Problem<'static> {
        let text = include_str!("../scenarios/erlang-c.toml");
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let sc = Scenario::parse_with(text, "erlang-c.toml", &sets).unwrap();
        Problem {
            text,
            file: "erlang-c.toml",
            sets,
            path: "agents.kf.count".into(),
            targets: targets.iter().map(|t| Target::parse(t, &sc).unwrap()).collect(),
            replications,
            max_replications: max,
            parallel: false,
        }
    }

    /// How often `law`'s replications decide `service_level>=0.8` each way
    /// over `trials` values, with the CLI's default looks.
    fn decisions(law: impl Distribution<f64> + Sync, trials: u32) -> BTreeMap<&'static str, u32> {
        let p = erlang_c(&[], &["service_level>=0.8"], 5, 40);
        let draw = move |rng: &mut Rng| {
            let v = law.sample(rng).clamp(1e-4, 1.0 - 1e-4);
            [("service_level".to_owned(), Some(v))].into()
        };
        let runner = Drawn { draw, rng: Mutex::new(Rng::seed_from_u64(7)) };
        let mut n = BTreeMap::new();
        for _ in 0..trials {
            let d = match p.evaluate_with(44, &runner).unwrap().decision {
                Decision::Meets => "meets",
                Decision::Misses => "misses",
                Decision::Unclear => "unclear",
            };
            *n.entry(d).or_default() += 1;
        }
        n
    }

    /// With a patience of 20 days one agent at 40 Erlangs would hold some
    /// 280 000 waiting; in a pool of 270 000 it fills it, too many for the
    /// service level's stages: no figure there, where 46 agents (Erlang
    /// C's answer too) have one. (Without the limit Erlang A's closed form
    /// gives one everywhere.)
    #[test]
    fn erlang_answers_past_values_it_cannot_judge() {
        let patience =
            |mean: &str| format!("entry.web.patience={{ dist = \"exponential\", mean = \"{mean}\" }}");
        let pool = "account.kf.queue_limit=270000";
        let answer = |mean: &str, targets: &[&str]| {
            erlang_c(&[&patience(mean), pool], targets, 2, 2).erlang_answer(46).unwrap()
        };
        let one = erlang_c(&[&patience("20d"), pool], &[], 2, 2);
        let p = crate::theory::predict(&one.scenario_at(1).unwrap()).expect("Erlang A");
        assert_eq!(p.service_level, None, "the case this test is for");
        assert_eq!(answer("20d", &["service_level>=0.8"]), Some(46));
        assert_eq!(answer("1d", &["service_level>=0.8"]), Some(46));
        assert_eq!(answer("20d", &["service_level>=0.8", "first_response.p95<=1m"]), None, "not theory's");
        // A value theory finds short on one target is short whatever it
        // cannot say of the others. With a service level at 2 h and a pool
        // of 7 000, 39 agents fill it (no service level) and 2.30 % abandon;
        // 40 have 0.147 % abandon and 97.3 % within 2 h (the chain summed
        // and the wait's density integrated by mpmath): 40 is the answer.
        let sets = [patience("20d"), "account.kf.queue_limit=7000".into(), "service_level=2h".into()];
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let p = erlang_c(&sets, &["service_level>=0.8", "abandon_rate<=0.01"], 2, 2);
        let at = |v: u32| crate::theory::predict(&p.scenario_at(v).unwrap()).expect("Erlang A, limited");
        assert_eq!(at(39).service_level, None, "the case this is for");
        assert!((at(39).abandon_rate - 0.023_046_569).abs() < 1e-6, "{:?}", at(39));
        assert!((at(40).abandon_rate - 0.001_469_418).abs() < 1e-6, "{:?}", at(40));
        assert!((at(40).service_level.unwrap() - 0.973_459_116).abs() < 1e-6, "{:?}", at(40));
        assert_eq!(p.erlang_answer(40).unwrap(), Some(40));
    }

    #[test]
    fn floors_on_an_agents_work_get_harder_with_staff() {
        let sc = Scenario::parse(include_str!("../scenarios/erlang-c.toml"), "erlang-c.toml").unwrap();
        let id = sc.agent_ids().next().unwrap();
        let harder = |t: &str| Target::parse(t, &sc).unwrap().harder_with_staff();
        for t in ["occupancy>=0.8", "by_group.kf.occupancy>=0.8", "sessions>=1"] {
            let t = t.replace("sessions", &format!("agents.{id}.sessions"));
            assert!(harder(&t), "{t}");
        }
        assert!(harder(&format!("agents.{id}.busy_s>=3600")));
        assert!(harder(&format!("agents.{id}.messages>=10")));
        // ceilings get easier; and the group's totals do not shrink with staff
        assert!(!harder(&format!("agents.{id}.sessions<=400")));
        assert!(!harder("occupancy<=0.9"));
        assert!(!harder("by_group.kf.handles>=100"));
        assert!(!harder("service_level>=0.8"));
    }

    /// Arrivals do not depend on staffing: a scenario where none come
    /// stops at the first value, saying why, rather than doubling to
    /// MAX_VALUE.
    #[test]
    fn a_plan_where_no_one_arrives_stops_at_the_first_value() {
        let sets = ["duration=1h", "warmup=0s", "entry.web.rate=1/d"];
        let p = erlang_c(&sets, &["service_level>=0.8"], 3, 6);
        let Outcome::Unreachable(u) = p.solve(44).unwrap() else { panic!("met with no sessions") };
        assert_eq!(u.tried.iter().map(|(v, _)| *v).collect::<Vec<_>>(), [44], "{u:?}");
        assert!(
            u.reason.contains("no session arrived after the warm-up in any of its 3 replications at 44"),
            "{}",
            u.reason
        );
        // one arrival a minute: the search goes on as before
        let p =
            erlang_c(&["duration=1h", "warmup=0s", "entry.web.rate=1/min"], &["service_level>=0.8"], 3, 6);
        assert!(matches!(p.solve(1).unwrap(), Outcome::Recommended(_)));
    }

    #[test]
    fn a_target_on_one_agent_follows_its_id_past_a_hundred() {
        // two targets on one figure (the second rename wrote "no value"
        // over the first's)
        let targets = ["agents.kf-01.sessions>=1", "agents.kf-01.sessions<=100000"];
        let p = erlang_c(&["duration=2h", "warmup=10m"], &targets, 2, 2);
        assert_eq!(p.scenario_at(44).unwrap().agent_ids().next().unwrap(), "kf-01");
        let at = p.scenario_at(120).unwrap();
        assert_eq!(agent_path_at("agents.kf-01.sessions", &at), "agents.kf-001.sessions");
        assert_eq!(agent_path_at("agents.kf-121.sessions", &at), "agents.kf-121.sessions");
        assert_eq!(agent_path_at("service_level", &at), "service_level");
        // the first of 120 agents serves (idle-first, round-robin alike):
        // its figure is measured under the target's own path
        let e = p.evaluate(120).unwrap();
        let m = e.metrics["agents.kf-01.sessions"].expect("measured at 120 agents");
        assert_eq!(m.n, 2);
        assert!(m.mean >= 1.0, "{m:?}");
        assert!(e.checks.iter().all(|c| c.decision == Decision::Meets), "{:?}", e.checks);
    }

    /// A floor on agent kf-50's sessions is about a group of at least 50:
    /// the answer is not below 50 (where kf-50 has no figures), and at 50
    /// it holds (about 44 sessions in 4 h at 10/min over 50 agents).
    #[test]
    fn a_target_on_an_agent_sizes_the_group_to_have_it() {
        let sets = ["duration=4h", "warmup=10m", "agents.kf.count=60"];
        let p = erlang_c(&sets, &["service_level>=0.8", "agents.kf-50.sessions>=30"], 5, 40);
        assert!(p.targets[1].harder_with_staff());
        assert_eq!(p.least_value(), 50);
        let Outcome::Recommended(r) = p.solve(1).unwrap() else { panic!("unreachable") };
        assert_eq!(r.at.value, 50, "{:?}", r.at.checks);
        assert!(r.curve.iter().all(|e| e.value >= 50), "nothing below 50 is run");
    }

    #[test]
    fn replications_agreeing_exactly_let_the_condition_decide() {
        let sc = Scenario::parse(include_str!("../scenarios/erlang-c.toml"), "erlang-c.toml").unwrap();
        let t = Target::parse("service_level>=0.8", &sc).unwrap();
        let at = |mean, n| Some(Estimate { mean, lo: mean, hi: mean, n, se: 0.0 });
        assert_eq!(t.sure(at(0.8, 3), None, 1.0), 1.0);
        assert_eq!(t.sure(at(0.79, 3), None, 1.0), 0.0);
        assert_eq!(t.sure(None, None, 1.0), 0.0);
    }

    /// Every replication at 100 % (or 0 %) says as much as its sessions
    /// over the dispersion assumed: 240 sessions answered in time cannot
    /// show a 99.9 % service level (were it 99.9 %, all 240 would be in
    /// time 79 % of the time), 20 000 can, unless late answers come ten at
    /// a time; a threshold of exactly 1 (or 0) is still the condition's.
    #[test]
    fn a_share_at_its_edge_in_every_replication_is_judged_by_its_sessions() {
        let sc = Scenario::parse(include_str!("../scenarios/erlang-c.toml"), "erlang-c.toml").unwrap();
        let t = |text: &str| Target::parse(text, &sc).unwrap();
        let at = |mean| Some(Estimate { mean, lo: mean, hi: mean, n: 5, se: 0.0 });
        let all = |share: f64, n: f64| Counted::of(&[(share, n / 5.0); 5]).unwrap();
        let sl = t("service_level>=0.999");
        assert_eq!(sl.sessions_paths(), ["sessions.to_people", "sessions.offered"]);
        let sure = |n, phi| sl.sure(at(1.0), Some(&all(1.0, n)), phi);
        assert!((sure(2400.0, 1.0) - (1.0 - 0.999f64.powi(2400))).abs() < 1e-12);
        assert_eq!(decide(sure(240.0, 1.0), DECIDED), Decision::Unclear);
        assert_eq!(decide(sure(48.0, 10.0), DECIDED), Decision::Unclear, "too few to show a miss");
        assert_eq!(decide(sure(20_000.0, 1.0), DECIDED), Decision::Meets);
        assert_eq!(decide(sure(20_000.0, 10.0), DECIDED), Decision::Unclear);
        let none = sl.sure(at(0.0), Some(&all(0.0, 240.0)), 1.0);
        assert!((none - 0.001f64.powi(240)).abs() < 1e-300, "none in time: missed");
        assert_eq!(t("service_level>=1").sure(at(1.0), Some(&all(1.0, 10.0)), 1.0), 1.0);
        let ab = t("abandon_rate<=0.01");
        assert!((ab.sure(at(0.0), Some(&all(0.0, 100.0)), 1.0) - (1.0 - 0.99f64.powi(100))).abs() < 1e-12);
        assert_eq!(ab.sure(at(0.0), Some(&all(0.0, 50.0)), 1.0), 0.5, "nobody abandoned: never a miss");
        assert_eq!(ab.sure(at(0.0), None, 1.0), 1.0, "without a count, the condition");
        assert_eq!(t("by_account.kf.service_level>=0.9").sessions_paths(), ["by_account.kf.handles.offered"]);
        assert!(t("asa_ms<=20000").sessions_paths().is_empty());
    }

    #[test]
    fn a_decision_stays_97_5_percent_sure_over_its_looks() {
        assert_eq!(looks(5, 40), [5, 10, 20, 40]);
        assert_eq!(looks(5, 30), [5, 10, 20, 30]);
        assert_eq!(looks(5, 41), [5, 10, 20, 41]);
        assert_eq!(looks(3, 7), [3, 7]);
        assert_eq!(looks(2, 3), [2, 3]);
        assert_eq!(looks(7, 7), [7]);
        assert_eq!(looks(3, 4), [3, 4]);
        // A target exactly at the true mean: "meets" is wrong, and must be
        // said at most 2.5 % of the time however many looks it took. The
        // bound allows 3 standard errors of the 4 000 trials (0.74 points).
        // Deciding at 97.5 % at each of the four looks said it 6.9 % of the
        // time for the normal law here, and 11 % for the simulator itself.
        let trials = 4000;
        let most = (1.0 - DECIDED) + 3.0 * (DECIDED * (1.0 - DECIDED) / f64::from(trials)).sqrt();
        let normal = Normal::new(0.8, 0.03).unwrap();
        // mean 16/20 = 0.8, skewed to the left as a service level near its
        // ceiling is
        let skewed = Beta::new(16.0, 4.0).unwrap();
        for (name, n) in [("normal", decisions(normal, trials)), ("beta", decisions(skewed, trials))] {
            let share = |d| f64::from(n.get(d).copied().unwrap_or(0)) / f64::from(trials);
            assert!(share("meets") <= most, "{name}: {n:?}");
            // and "misses" as rarely: the other side of the same rule
            assert!(share("misses") <= most, "{name}: {n:?}");
        }
        // the price is replications, not decisions: two points above the
        // threshold are still decided (the 97.5 % looks decided 98 % of these)
        let above = decisions(Normal::new(0.82, 0.03).unwrap(), 1000);
        assert!(above.get("meets").copied().unwrap_or(0) >= 900, "{above:?}");
        assert!(above.get("misses").copied().unwrap_or(0) <= 10, "{above:?}");
    }

    /// Replications drawn, with replacement, from the simulator's own at
    /// `agents` in `p`'s scenario; and their pooled service level.
    fn pool(
        p: &Problem,
        agents: u32,
        count: u32,
    ) -> (Drawn<impl Fn(&mut Rng) -> sweep::RepValues + Sync>, f64) {
        use rand::RngExt;
        let sc = p.scenario_at(agents).unwrap();
        let extra = p.targets[0].sessions_paths();
        let local = sweep::Local { parallel: true, go_on: &|| true };
        let reps = sweep::Replicate::replicate(&local, &sc, 0..count, &extra).unwrap();
        let share = counted(&p.targets[0], &reps).unwrap().share();
        let draw = move |rng: &mut Rng| reps[rng.random_range(0..reps.len())].clone();
        (Drawn { draw, rng: Mutex::new(Rng::seed_from_u64(u64::from(agents))) }, share)
    }

    /// Short replications of an M/M/c (48 sessions each) at a service-level
    /// target set at the true level: "meets" is wrong, and may be said
    /// 2.5 % of the time. Late answers come in congestion episodes, so most
    /// replications have none and a few have many; the Student-t interval
    /// of the replications' shares said "meets" 12 % of the time at 8
    /// agents (mostly with a few late answers, whose spread looked small),
    /// and 17 % at 10 (mostly with none at all over 20 replications, judged
    /// as 960 independent sessions). The bound allows 3 standard errors of
    /// the trials (1.5 points); the rule measured 0.9 % and 1.1 % (a Python
    /// port, 1 500 plans each over 8 000 replications).
    #[test]
    fn a_share_at_its_true_level_over_short_replications_is_rarely_met() {
        let sets = ["entry.web.rate=1/min", "duration=58m", "warmup=10m"];
        let trials = 1000;
        let most = (1.0 - DECIDED) + 3.0 * (DECIDED * (1.0 - DECIDED) / f64::from(trials)).sqrt();
        let base = erlang_c(&sets, &["service_level>=0.5"], 5, 40);
        let pools: BTreeMap<u32, _> = (7..=10).map(|k| (k, pool(&base, k, 3000))).collect();
        // how often `k` agents are said to meet the service level of
        // `of` agents, after `k - 1` was evaluated (as the search does)
        let meets = |k: u32, of: u32| {
            let target = format!("service_level>={}", pools[&of].1);
            let p = erlang_c(&sets, &[&target], 5, 40);
            let met = (0..trials).filter(|_| {
                let below = p.evaluate_with(k - 1, &pools[&(k - 1)].0).unwrap();
                let known = BTreeMap::from([(k - 1, below)]);
                p.evaluate_near(k, &pools[&k].0, &known).unwrap().decision == Decision::Meets
            });
            f64::from(met.count() as u32) / f64::from(trials)
        };
        for k in [8, 10] {
            let wrong = meets(k, k);
            assert!(wrong <= most, "{k} agents at their own service level: met {wrong}");
        }
        // the price is power: 8 agents against 7's level (0.96 against
        // 0.90) was met 68 % of the time (89 % before)
        let right = meets(8, 7);
        assert!(right >= 0.5, "8 agents at 7's service level: met {right}");
    }

    /// A share target is shown as it is decided: its interval lies past
    /// the threshold whenever the decision is made, and only when the
    /// counts are 97.5 % sure which side it is on (the replications' own
    /// interval lay below 0.8 beside "unclear, 3.7 % sure").
    #[test]
    fn a_share_targets_interval_agrees_with_its_decision() {
        let sets = ["entry.web.rate=1/min", "duration=58m", "warmup=10m"];
        let p = erlang_c(&sets, &["service_level>=0.9"], 5, 40);
        let pools: BTreeMap<u32, _> = (5..=10).map(|k| (k, pool(&p, k, 300).0)).collect();
        let (mut decided, mut outside, mut edges) = (0, 0, 0);
        for k in 6..=10 {
            for _ in 0..40 {
                // as the search does: the value below first, whose
                // dispersion an edge at `k` takes
                let below = p.evaluate_with(k - 1, &pools[&(k - 1)]).unwrap();
                let known = BTreeMap::from([(k - 1, below.clone())]);
                for e in [below, p.evaluate_near(k, &pools[&k], &known).unwrap()] {
                    let c = &e.checks[0];
                    let (lo, hi) = e.metrics["service_level"].unwrap().ends().unwrap();
                    match c.decision {
                        Decision::Meets => assert!(lo > 0.9, "{k}: met, yet {lo}"),
                        Decision::Misses => assert!(hi < 0.9, "{k}: missed, yet {hi}"),
                        Decision::Unclear => {}
                    }
                    if lo > 0.9 || hi < 0.9 {
                        assert!(c.sure > 0.975 || c.sure < 0.025, "{k}: [{lo}, {hi}] beside {}", c.sure);
                        outside += 1;
                    }
                    decided += u32::from(c.decision != Decision::Unclear);
                    edges += u32::from(hi == 1.0);
                }
            }
        }
        assert!(
            decided > 100 && outside >= decided && edges > 0,
            "{decided} decided, {outside} outside, {edges}"
        );
    }

    /// Two targets on one figure are judged as they would be alone,
    /// whatever their order: one judged by its counts does not hand the
    /// other its interval (`service_level<=1` read the pooled figures of
    /// `service_level>=0.8` when it came second: found by review).
    #[test]
    fn targets_on_one_figure_do_not_depend_on_their_order() {
        let sets = ["duration=2h", "warmup=10m"];
        let local = sweep::Local { parallel: false, go_on: &|| true };
        let judged = |targets: &[&str]| erlang_c(&sets, targets, 5, 5).evaluate_with(42, &local).unwrap();
        let a = judged(&["service_level>=0.8", "service_level<=1"]);
        let b = judged(&["service_level<=1", "service_level>=0.8"]);
        assert_eq!((a.checks[0].sure, a.checks[1].sure), (b.checks[1].sure, b.checks[0].sure));
        assert!(a.checks[1].sure < 1.0, "judged by the replications' spread: {}", a.checks[1].sure);
        assert_eq!(a.metrics["service_level"], b.metrics["service_level"]);
    }

    #[test]
    fn profile_means() {
        let p = [(0, 1.0), (100, 3.0)];
        assert!((mean_factor(&p, 0, 100) - 2.0).abs() < 1e-9);
        assert!((mean_factor(&p, 100, 200) - 3.0).abs() < 1e-9);
        assert_eq!(mean_factor(&[], 0, 10), 1.0);
        let step = [(0, 1.0), (50, 1.0), (50, 4.0)];
        assert!((mean_factor(&step, 0, 100) - 2.5).abs() < 1e-12);
        // a step at an interval's edge belongs to the interval after it
        assert_eq!(mean_factor(&step, 0, 50), 1.0);
        assert_eq!(mean_factor(&step, 50, 100), 4.0);
        // before the first point the first factor holds, after the last the last
        let late = [(100, 2.0), (200, 4.0)];
        assert_eq!(mean_factor(&late, 0, 100), 2.0);
        assert!((mean_factor(&late, 50, 150) - 2.25).abs() < 1e-12);
        assert_eq!(mean_factor(&late, 300, 400), 4.0);
    }
}
