//! Capacity planning on the simulator: run a grid of scenario variants with
//! independent replications, in parallel, and summarise each point with a
//! mean and a 95 % confidence interval.
//!
//! A variant is the scenario with `--set`-style overrides (the same paths:
//! `agents.GROUP.count`, `entry.NAME.rate`, `account.NAME.policy`). A
//! replication's seed depends only on the scenario's seed and the
//! replication's number, so every grid point sees the same random numbers
//! (common random numbers: curves are smooth and differences between points
//! are not noise), and parallel and serial runs give the same figures.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::scenario::{Scenario, ScenarioError};
use crate::summary::Summary;

/// One `--vary PATH=VALUES`.
#[derive(Debug, Clone, PartialEq)]
pub struct Vary {
    /// The override path (`agents.day-shift.count`).
    pub path: String,
    /// The values, as `--set` would take them.
    pub values: Vec<String>,
}

impl Vary {
    /// Parse `PATH=A..B:STEP` (inclusive, numbers) or `PATH=V1,V2,…`.
    pub fn parse(arg: &str) -> Result<Vary, String> {
        let (path, spec) = crate::scenario::split_key_value(arg)
            .ok_or_else(|| format!("--vary {arg}: expected PATH=A..B:STEP or PATH=V1,V2"))?;
        let values = if let Some((range, step)) = spec.split_once(':').filter(|(r, _)| r.contains("..")) {
            range_values(range, step).map_err(|e| format!("--vary {arg}: {e}"))?
        } else if spec.contains("..") && !spec.contains(',') {
            range_values(spec, "1").map_err(|e| format!("--vary {arg}: {e}"))?
        } else {
            let values: Vec<String> = spec.split(',').map(|v| v.trim().to_owned()).collect();
            // "1,,2" was a sweep of 1 and 2: a lost value is more likely a slip
            if values.len() > 1 && values.iter().any(String::is_empty) {
                return Err(format!("--vary {arg}: an empty value (two commas in a row, or one at an end)"));
            }
            values.into_iter().filter(|v| !v.is_empty()).collect()
        };
        if values.is_empty() {
            return Err(format!("--vary {arg}: no values"));
        }
        Ok(Vary { path: path.trim().to_owned(), values })
    }
}

/// Most values of one `--vary` range.
pub const MAX_RANGE_VALUES: usize = 10_000;

fn range_values(range: &str, step: &str) -> Result<Vec<String>, String> {
    let (a, b) = range.split_once("..").ok_or("expected A..B")?;
    // whole numbers are stepped exactly: in floats a seed above 2⁵³ (or
    // u64::MAX itself) became another seed
    let int = |s: &str| s.trim().parse::<i128>().ok();
    if let (Some(a), Some(b), Some(step)) = (int(a), int(b), int(step)) {
        if step <= 0 || b < a {
            return Err("a range needs A ≤ B and a positive STEP".into());
        }
        let n = (b - a) / step + 1;
        if n > MAX_RANGE_VALUES as i128 {
            return Err(format!("{n} values are too many for one sweep (at most {MAX_RANGE_VALUES})"));
        }
        return Ok((0..n).map(|i| (a + i * step).to_string()).collect());
    }
    // `f64::from_str` takes "inf" and "NaN": neither bounds a range
    let num = |s: &str| match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("\"{s}\" is not a finite number")),
    };
    let (a, b, step) = (num(a)?, num(b)?, num(step)?);
    if step <= 0.0 || b < a {
        return Err("a range needs A ≤ B and a positive STEP".into());
    }
    // counted in floats first: a tiny STEP or a huge span (1e308 apart)
    // makes the count infinite, which no integer holds
    let steps = ((b - a) / step + 1e-9).floor();
    // never NaN: the bounds are finite and the step positive
    if steps >= MAX_RANGE_VALUES as f64 {
        return Err(format!(
            "{} values are too many for one sweep (at most {MAX_RANGE_VALUES})",
            match steps + 1.0 {
                n if n < 1e15 => format!("{n}"),
                n if n.is_finite() => format!("about {n:.0e}"),
                _ => "infinitely many".into(),
            }
        ));
    }
    let n = steps as usize + 1;
    Ok((0..n)
        .map(|i| {
            let v = a + i as f64 * step;
            // to the nanounit, where that is a finite number (not 1e300)
            let r = (v * 1e9).round() / 1e9;
            format!("{}", if r.is_finite() { r } else { v })
        })
        .collect())
}

/// The seed of replication `r` of a scenario seeded `seed`.
pub fn replication_seed(seed: u64, r: u32) -> u64 {
    // splitmix64 of (seed, r): replications are far apart in seed space
    let mut z = seed ^ (u64::from(r).wrapping_add(1)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A mean over replications and its 95 % confidence interval.
///
/// The interval respects the metric's bounds ([`crate::stats::interval`]):
/// for shares (service level, abandonment, occupancy, Jain's index) it is
/// Student's t on the logit scale, for times on the log scale, so it never
/// reaches past 100 % or below 0 and is longer on the open side (but for
/// an occupancy past 1, whose interval is the plain one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Mean over replications.
    pub mean: f64,
    /// Lower end of the 95 % confidence interval.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Replications that had a value.
    pub n: u32,
    /// Standard error of the mean (0 for one replication). In a plan, a
    /// share target's `mean`, `lo` and `hi` are its pooled share and the
    /// interval of its counts (`stats::Counted::interval`); its `n` and
    /// `se` stay the replications'.
    #[serde(default)]
    pub se: f64,
}

/// The confidence of every interval of sweeps and plans.
pub const CONFIDENCE: f64 = 0.95;

impl Estimate {
    /// The estimate of metric `path` from per-replication values (`None`s
    /// are skipped), on the metric's scale.
    pub fn of(path: &str, values: &[Option<f64>]) -> Option<Estimate> {
        let v: Vec<f64> = values.iter().flatten().copied().collect();
        let i = crate::stats::interval(&v, crate::stats::Scale::of(path), CONFIDENCE)?;
        Some(Estimate { mean: i.mean, lo: i.lo, hi: i.hi, n: i.n, se: i.se })
    }

    /// The interval's ends, if the replications give one: a single
    /// replication has no spread to make it from (its `lo` and `hi` are
    /// its value), and showing `[x, x]` would claim a certainty it lacks.
    pub fn ends(&self) -> Option<(f64, f64)> {
        (self.n >= 2).then_some((self.lo, self.hi))
    }

    /// How sure the replications make us that the metric `path`'s true mean
    /// is above (`above`) or below `x`.
    pub fn sure(&self, path: &str, x: f64, above: bool) -> f64 {
        let i = crate::stats::Interval { mean: self.mean, lo: self.lo, hi: self.hi, se: self.se, n: self.n };
        i.sure(x, above, crate::stats::Scale::of(path))
    }
}

/// The metrics a sweep reports per point.
pub const METRICS: &[&str] = &[
    "service_level",
    "wait_probability",
    "asa_ms",
    "abandon_rate",
    "occupancy",
    "latency_ms.queue_wait.p95",
    "latency_ms.first_response.p95",
];

/// One grid point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The overrides that make this variant, in `--vary` order.
    pub params: Vec<(String, String)>,
    /// Estimates per metric (see [`METRICS`], plus `fairness.ACCOUNT.jain`).
    pub metrics: std::collections::BTreeMap<String, Option<Estimate>>,
    /// Erlang theory for the point, when the scenario is a plain Erlang case.
    pub theory: Option<crate::theory::Prediction>,
    /// A plain Erlang case with no patience and no bound on the pool whose
    /// load meets or passes its servers: no steady state, so its figures
    /// follow the run's length (see [`crate::theory::unstable`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unstable: bool,
}

/// A whole sweep, as written to `sweep.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    /// The scenario's name.
    pub scenario: String,
    /// Its seed.
    pub seed: u64,
    /// Replications per point.
    pub replications: u32,
    /// The varied paths, in order.
    pub vary: Vec<String>,
    /// The grid, first `--vary` slowest.
    pub points: Vec<Point>,
    /// Set when the sweep was stopped (Ctrl-C) before every run finished:
    /// the estimates are over the replications that did (each says its `n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<Partial>,
}

/// How much of an interrupted sweep ran.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// Runs (point × replication) that finished.
    pub runs: u64,
    /// Runs the sweep asked for.
    pub of: u64,
}

/// Most points of a sweep's grid (the product of its `--vary` lists): each
/// is a whole run per replication, and the grid is held in memory.
pub const MAX_POINTS: usize = 100_000;

/// A path's segments, however they were quoted (a gate's path as one).
fn canonical(path: &str) -> Option<Vec<String>> {
    if let Some(metric) = crate::scenario::gate_metric(path) {
        return Some(vec!["gates".into(), metric]);
    }
    crate::scenario::segments(path).ok().map(|s| s.into_iter().map(|s| s.text).collect())
}

/// The variants of a grid: one list of overrides per point. Refused past
/// [`MAX_POINTS`] and when a path is varied twice.
pub fn grid(vary: &[Vary]) -> Result<Vec<Vec<(String, String)>>, String> {
    let mut n: usize = 1;
    for (i, v) in vary.iter().enumerate() {
        // `entry.web.rate` and `entry."web".rate` are one parameter
        let same = |w: &&Vary| canonical(&w.path) == canonical(&v.path);
        if let Some(first) = vary[..i].iter().find(same) {
            return Err(format!(
                "--vary {}: the parameter is varied twice (also {}={}); give it one list of values",
                v.path,
                first.path,
                first.values.join(",")
            ));
        }
        n = n.saturating_mul(v.values.len());
    }
    if n > MAX_POINTS {
        return Err(format!("--vary: {n} points in the grid; a sweep runs at most {MAX_POINTS}"));
    }
    let mut points: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for v in vary {
        points = points
            .into_iter()
            .flat_map(|p| {
                v.values.iter().map(move |val| {
                    let mut q = p.clone();
                    q.push((v.path.clone(), val.clone()));
                    q
                })
            })
            .collect();
    }
    Ok(points)
}

/// Refuse a grid two of whose points are the same scenario (a value given
/// twice, or two spellings of one value: `60/min,1/s`): they would be run
/// and reported as two points.
pub fn distinct(grid: &[Vec<(String, String)>], scenarios: &[Scenario]) -> Result<(), String> {
    let mut seen = std::collections::HashMap::with_capacity(scenarios.len());
    for (i, sc) in scenarios.iter().enumerate() {
        // the fingerprint leaves the seed out; a point may vary it
        if let Some(j) = seen.insert((sc.fingerprint(), sc.seed), i) {
            let show = |p: &[(String, String)]| {
                p.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
            };
            return Err(format!(
                "--vary: points `{}` and `{}` are the same scenario; give each value once",
                show(&grid[j]),
                show(&grid[i])
            ));
        }
    }
    Ok(())
}

/// The scenario of one point: the file text with `base_sets` then `params`.
pub fn variant(
    text: &str,
    file: &str,
    base_sets: &[String],
    params: &[(String, String)],
) -> Result<Scenario, ScenarioError> {
    let varied: Vec<String> = params.iter().map(|(p, v)| format!("{p}={v}")).collect();
    Scenario::parse_varied(text, file, base_sets, &varied)
}

/// Run every (point, replication) on the simulator; `parallel` uses every
/// core through rayon. The result does not depend on `parallel`.
pub fn run(scenarios: &[Scenario], replications: u32, parallel: bool) -> Vec<Vec<Summary>> {
    run_replications(scenarios, 0..replications, parallel)
}

/// Run the given (point, replication) jobs, in their order: a shard of a
/// sweep runs its own, with the seeds the whole sweep gives them.
pub fn run_jobs(scenarios: &[Scenario], jobs: &[(usize, u32)], parallel: bool) -> Vec<Summary> {
    run_jobs_until(scenarios, jobs, parallel, &|| true)
        .into_iter()
        .map(|s| s.expect("a run that is never told to stop finishes"))
        .collect()
}

/// [`run_jobs`], asking `go_on` as each job starts and as it runs (every
/// [`crate::sim::PROGRESS_EVERY`] events): once it says no, the jobs not yet
/// started are skipped and those running stop. A job that did not finish
/// is `None`: a replication cut short is not one of the scenario (its
/// figures cover part of the day, so they would bias the estimates).
pub fn run_jobs_until(
    scenarios: &[Scenario],
    jobs: &[(usize, u32)],
    parallel: bool,
    go_on: &(dyn Fn() -> bool + Sync),
) -> Vec<Option<Summary>> {
    run_mapped(scenarios, jobs, parallel, go_on, |s| s)
}

/// [`run_jobs_until`], keeping of each replication only its values (see
/// [`values_of`], with `extra`): a sweep of 100 000 points holds a few
/// numbers a replication, not every summary with its per-agent tables
/// until the last one ends (found by probing: 7.6 GB before anything was
/// written).
pub fn run_values_until(
    scenarios: &[Scenario],
    jobs: &[(usize, u32)],
    parallel: bool,
    go_on: &(dyn Fn() -> bool + Sync),
    extra: &[String],
) -> Vec<Option<RepValues>> {
    run_mapped(scenarios, jobs, parallel, go_on, |s| values_of(&s, extra))
}

fn run_mapped<T: Send>(
    scenarios: &[Scenario],
    jobs: &[(usize, u32)],
    parallel: bool,
    go_on: &(dyn Fn() -> bool + Sync),
    keep: impl Fn(Summary) -> T + Sync,
) -> Vec<Option<T>> {
    let one = |&(p, r): &(usize, u32)| {
        if !go_on() {
            return None;
        }
        let mut sc = scenarios[p].clone();
        sc.seed = replication_seed(sc.seed, r);
        let mut metrics = crate::metrics::Metrics::new(&sc);
        let stats = crate::sim::run_with_progress(&sc, &mut metrics, &mut |_| go_on());
        (!stats.interrupted).then(|| keep(metrics.finish(&sc, &stats)))
    };
    if parallel { jobs.par_iter().map(one).collect() } else { jobs.iter().map(one).collect() }
}

/// What sweeps and plans read of one replication: the value of each metric
/// they estimate, by path (`None`: nothing measured).
pub type RepValues = std::collections::BTreeMap<String, Option<f64>>;

/// The values of `s` at [`METRICS`], `fairness.ACCOUNT.jain` and `extra`.
pub fn values_of(s: &Summary, extra: &[String]) -> RepValues {
    let v = serde_json::to_value(s).expect("JSON");
    METRICS
        .iter()
        .map(|m| m.to_string())
        .chain(s.fairness.keys().map(|a| format!("fairness.{a}.jain")))
        .chain(extra.iter().cloned())
        .map(|m| {
            let x = crate::gate::lookup(&v, &m);
            (m, x)
        })
        .collect()
}

/// Where the replications of a sweep or a plan come from: run here, or
/// shared out among shards (a shard runs its share and reads the others'),
/// or read back from shards' files by `kfsim merge`. Every source gives
/// the values the simulator gives with the seeds of [`replication_seed`].
pub trait Replicate: Sync {
    /// The values (see [`values_of`], with `extra`) of replications `reps`
    /// of `sc`, in order.
    fn replicate(
        &self,
        sc: &Scenario,
        reps: std::ops::Range<u32>,
        extra: &[String],
    ) -> anyhow::Result<Vec<RepValues>>;
}

/// Replications run in this process until `go_on` says no; then
/// [`Replicate::replicate`] fails with [`Interrupted`].
pub struct Local<'a> {
    /// Use every core.
    pub parallel: bool,
    /// Asked as each replication starts and as it runs.
    pub go_on: &'a (dyn Fn() -> bool + Sync),
}

/// Replications were stopped before they finished (Ctrl-C).
#[derive(Debug, thiserror::Error)]
#[error("interrupted before the replications finished")]
pub struct Interrupted;

impl Replicate for Local<'_> {
    fn replicate(
        &self,
        sc: &Scenario,
        reps: std::ops::Range<u32>,
        extra: &[String],
    ) -> anyhow::Result<Vec<RepValues>> {
        let jobs: Vec<(usize, u32)> = reps.map(|r| (0, r)).collect();
        run_values_until(std::slice::from_ref(sc), &jobs, self.parallel, self.go_on, extra)
            .into_iter()
            .map(|v| v.ok_or_else(|| Interrupted.into()))
            .collect()
    }
}

/// The whole sweep from each point's replication values (in replication
/// order): what `kfsim sweep` and the merge of its shards both build.
pub fn assemble(
    base: &Scenario,
    vary: &[Vary],
    grid: Vec<Vec<(String, String)>>,
    scenarios: &[Scenario],
    values: &[Vec<RepValues>],
    replications: u32,
) -> SweepResult {
    let points = grid
        .into_iter()
        .zip(scenarios)
        .zip(values)
        .map(|((params, sc), runs)| Point {
            params,
            metrics: estimate_values(runs),
            theory: crate::theory::predict(sc),
            unstable: crate::theory::unstable(sc).is_some(),
        })
        .collect();
    SweepResult {
        scenario: base.name.clone(),
        seed: base.seed,
        replications,
        vary: vary.iter().map(|v| v.path.clone()).collect(),
        points,
        interrupted: None,
    }
}

/// Run replications `reps` of every point (the seeds of
/// [`replication_seed`]): a plan adds replications to a point by running
/// the next range, and gets the figures it would have had with all of them
/// at once.
pub fn run_replications(
    scenarios: &[Scenario],
    reps: std::ops::Range<u32>,
    parallel: bool,
) -> Vec<Vec<Summary>> {
    let jobs: Vec<(usize, u32)> =
        (0..scenarios.len()).flat_map(|p| reps.clone().map(move |r| (p, r))).collect();
    let flat = run_jobs(scenarios, &jobs, parallel);
    let mut out: Vec<Vec<Summary>> = (0..scenarios.len()).map(|_| Vec::new()).collect();
    for ((p, _), s) in jobs.iter().zip(flat) {
        out[*p].push(s);
    }
    out
}

/// Summaries of one point's replications → its estimates.
pub fn estimate(runs: &[Summary]) -> std::collections::BTreeMap<String, Option<Estimate>> {
    let values: Vec<RepValues> = runs.iter().map(|s| values_of(s, &[])).collect();
    estimate_values(&values)
}

/// One point's replication values → the estimate of every metric the
/// first replication has.
pub fn estimate_values(runs: &[RepValues]) -> std::collections::BTreeMap<String, Option<Estimate>> {
    let Some(first) = runs.first() else { return Default::default() };
    first
        .keys()
        .map(|m| {
            let per_run: Vec<Option<f64>> = runs.iter().map(|v| v.get(m).copied().flatten()).collect();
            (m.clone(), Estimate::of(m, &per_run))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A summary leaves `run.shed` out at 0: a plan's target on it reads
    /// 0 in every replication, not a figure no replication measured (it
    /// answered UNREACHABLE, found by auditing the docs).
    #[test]
    fn a_plan_reads_an_absent_shed_count_as_0() {
        let text = "name = \"t\"\n[[account]]\nname = \"kf\"\n[[agents]]\ncount = 1\nreply_delay = \"1m\"\n[[entry]]\nscene = \"web\"\nrate = \"1/min\"\n";
        let sc = Scenario::parse(text, "t.toml").unwrap();
        let blank = crate::metrics::Metrics::new(&sc).finish(&sc, &crate::observe::RunStats::default());
        assert_eq!(values_of(&blank, &["run.shed".to_owned()])["run.shed"], Some(0.0));
    }

    #[test]
    fn vary_specs() {
        let v = Vary::parse("agents.day.count=20..26:2").unwrap();
        assert_eq!(v.values, ["20", "22", "24", "26"]);
        assert_eq!(Vary::parse("x=1..3").unwrap().values, ["1", "2", "3"]);
        assert_eq!(Vary::parse("x=0.5..1:0.25").unwrap().values, ["0.5", "0.75", "1"]);
        let p = Vary::parse("account.a.policy=round_robin, idle_first").unwrap();
        assert_eq!(p.values, ["round_robin", "idle_first"]);
        assert_eq!(Vary::parse("entry.web.rate=2/s,3/s").unwrap().values, ["2/s", "3/s"]);
        assert_eq!(Vary::parse("x=1..10000").unwrap().values.len(), 10_000);
        // a name with `=` is quoted, and the path ends after its quotes
        let q = Vary::parse("agents.\"a=b\".count=1,2").unwrap();
        let twice =
            [Vary::parse("entry.web.rate=1/s").unwrap(), Vary::parse("entry.\"web\".rate=2/s").unwrap()];
        assert!(grid(&twice).unwrap_err().contains("varied twice"));
        let twice = [Vary::parse("gates.a.p95=< 1s").unwrap(), Vary::parse("gates.'a.p95'=< 2s").unwrap()];
        assert!(grid(&twice).unwrap_err().contains("varied twice"));
        assert_eq!((q.path.as_str(), q.values), ("agents.\"a=b\".count", vec!["1".to_owned(), "2".into()]));
        // whole numbers exactly, past 2⁵³ and up to u64::MAX (found by
        // probing: the odd seeds asked for ran as even ones)
        let big = Vary::parse("seed=9007199254740993..9007199254741001:2").unwrap().values;
        assert_eq!(
            big,
            [
                "9007199254740993",
                "9007199254740995",
                "9007199254740997",
                "9007199254740999",
                "9007199254741001"
            ]
        );
        let max = Vary::parse("seed=18446744073709551615..18446744073709551615:1").unwrap().values;
        assert_eq!(max, ["18446744073709551615"]);
        assert_eq!(Vary::parse("x=-3..3:3").unwrap().values, ["-3", "0", "3"]);
        // a huge float is itself, not "inf"
        let huge = Vary::parse("x=1e300..1e300:1").unwrap().values;
        assert!(huge.len() == 1 && !huge[0].contains("inf") && huge[0].len() == 301, "{huge:?}");
        for bad in ["x", "x=", "x=5..1:1", "x=1..5:0", "x=a..b:1", "x=1..10001", "x=1,,2", "x=1,2,", "x=,1"] {
            assert!(Vary::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grid_is_the_cartesian_product_first_slowest() {
        let g = grid(&[Vary::parse("a=1,2").unwrap(), Vary::parse("b=x,y,z").unwrap()]).unwrap();
        assert_eq!(g.len(), 6);
        assert_eq!(g[0], [("a".into(), "1".into()), ("b".into(), "x".into())]);
        assert_eq!(g[3], [("a".into(), "2".into()), ("b".into(), "x".into())]);
    }

    #[test]
    fn confidence_intervals() {
        let e = Estimate::of("x", &[Some(1.0), Some(2.0), Some(3.0), None]).unwrap();
        assert_eq!((e.mean, e.n), (2.0, 3));
        // a plain metric: sd 1, n 3, half-width t(2) / sqrt(3)
        assert!((e.hi - e.mean - 4.303 / 3f64.sqrt()).abs() < 1e-3);
        assert_eq!(Estimate::of("x", &[None]), None);
        let one = Estimate::of("x", &[Some(5.0)]).unwrap();
        assert_eq!((one.lo, one.hi), (5.0, 5.0));
        // a service level near 100 %: the interval stays below it
        let sl = Estimate::of("service_level", &[0.999, 0.985, 0.997, 0.978, 0.996].map(Some)).unwrap();
        assert!(sl.hi < 1.0 && sl.lo < sl.mean, "{sl:?}");
        let wait = Estimate::of("asa_ms", &[10.0, 0.0, 0.0, 0.0, 1.0].map(Some)).unwrap();
        assert!(wait.lo > 0.0, "{wait:?}");
    }

    #[test]
    fn replication_seeds_are_distinct_and_stable() {
        let seeds: std::collections::BTreeSet<u64> = (0..100).map(|r| replication_seed(7, r)).collect();
        assert_eq!(seeds.len(), 100);
        assert_eq!(replication_seed(7, 3), replication_seed(7, 3));
        assert_ne!(replication_seed(7, 3), replication_seed(8, 3));
    }
}
