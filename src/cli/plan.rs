//! The glue of `kfsim sweep` and `kfsim plan`: read the scenario, run the
//! grid or the search, print, write the files. The planning logic itself
//! lives in `sweep` and `plan`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use super::{ArgError, Exit, ScenarioArgs, default_out_dir};
use crate::merge::{Kind, PlanPart, PlanSpec, ReadShard, ShardFile, Source, SweepPart, SweepRep};
use crate::plan::{
    Check, Decision, Evaluated, IntervalRow, Outcome, PlanReport, Problem, Recommendation, Target,
    TargetInfo, Unreachable,
};
use crate::scenario::units::human_ms;
use crate::scenario::{Scenario, units::parse_duration};
use crate::sweep::{self, Replicate, SweepResult, Vary};

/// Arguments of `kfsim sweep`.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    #[command(flatten)]
    /// The scenario.
    pub scenario: ScenarioArgs,
    /// A parameter and its values: `agents.GROUP.count=20..60:2`,
    /// `entry.NAME.rate=60/min,120/min`, `account.NAME.policy=round_robin,idle_first`.
    #[arg(long = "vary", value_name = "PATH=VALUES", required = true)]
    pub vary: Vec<String>,
    /// Independent replications per point.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub replications: u32,
    /// Where to write sweep.json, sweep.csv, charts and sweep.html [default: reports/NAME-sweep-TIMESTAMP].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run on one core (the figures are the same).
    #[arg(long)]
    pub serial: bool,
    #[command(flatten)]
    /// This process's share of the (point × replication) runs.
    pub shard: super::shard::ShardArgs,
}

/// Arguments of `kfsim plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    /// The scenario.
    pub scenario: ScenarioArgs,
    /// A target every recommendation must meet: `service_level>=0.8`, `abandon_rate<=0.05`,
    /// `first_response.p95<60s`.
    #[arg(long = "target", value_name = "METRIC OP VALUE", required = true)]
    pub targets: Vec<String>,
    /// The parameter to size, usually `agents.GROUP.count`.
    #[arg(long, value_name = "PATH")]
    pub vary: String,
    /// Independent replications per evaluated value to begin with (at least 2: one gives
    /// no interval, and a plan decides by its interval).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub replications: u32,
    /// Most replications per value: while a target is undecided, replications are doubled up
    /// to this many. Each doubling is another look, so each look must be surer for every
    /// decision to stay 97.5% sure. [default: 40, or --replications if more]
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..=10000))]
    pub max_replications: Option<u32>,
    /// Recommend per interval of the arrival profile (the intraday staffing table).
    #[arg(long, value_name = "DURATION")]
    pub per_interval: Option<String>,
    /// Also write plan.json, the staffing chart and plan.html into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run on one core (the figures are the same).
    #[arg(long)]
    pub serial: bool,
    #[command(flatten)]
    /// This process's share of the replications of every value the search evaluates.
    pub shard: super::shard::ShardArgs,
    /// Shards of a plan: the folder they share to exchange replications [default: the parent of
    /// --out].
    // a setting an unsharded plan would ignore is refused, as `run`'s
    // live-only flags are with the simulator
    #[arg(long, value_name = "DIR", requires = "ShardArgs")]
    pub exchange: Option<PathBuf>,
    /// Shards of a plan: how long to wait for another shard's replications before giving up (exit 3).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration, requires = "ShardArgs")]
    pub shard_wait: u64,
}

fn read(path: &std::path::Path) -> anyhow::Result<String> {
    Ok(crate::scenario::read_file(path)?)
}

/// `kfsim sweep`.
pub fn cmd_sweep(args: &SweepArgs) -> anyhow::Result<Exit> {
    let file = args.scenario.scenario.display().to_string();
    let text = read(&args.scenario.scenario)?;
    let base = Scenario::parse_with(&text, &file, &args.scenario.sets)?;
    crate::gate::bind_given(&base, &text, &file, &args.scenario.sets)?;
    let vary = args.vary.iter().map(|v| Vary::parse(v).map_err(ArgError)).collect::<Result<Vec<_>, _>>()?;
    let grid = sweep::grid(&vary).map_err(ArgError)?;
    let scenarios = grid
        .iter()
        .map(|params| sweep::variant(&text, &file, &args.scenario.sets, params))
        .collect::<Result<Vec<_>, _>>()?;
    sweep::distinct(&grid, &scenarios).map_err(ArgError)?;
    let out = args.out.clone().unwrap_or_else(|| default_out_dir(&format!("{}-sweep", base.name)));
    super::run::out_folder(&out)?;
    let shard = args.shard.resolve()?;
    let r = args.replications;
    let all: Vec<(usize, u32)> = (0..scenarios.len()).flat_map(|p| (0..r).map(move |i| (p, i))).collect();
    let go_on = go_on();
    if shard.is_part() {
        crate::merge::clear_stale(&out)?;
        // (point, replication) dealt round-robin, with the seeds of the whole sweep
        let jobs: Vec<(usize, u32)> =
            all.into_iter().filter(|&(p, i)| shard.owns(p as u64 * u64::from(r) + u64::from(i))).collect();
        let runs = sweep::run_values_until(&scenarios, &jobs, !args.serial, &go_on, &[]);
        let results: Vec<SweepRep> = jobs
            .iter()
            .zip(runs)
            .filter_map(|(&(point, replication), values)| {
                Some(SweepRep { point, replication, values: values? })
            })
            .collect();
        let done = results.len();
        if done < jobs.len() {
            errln!("interrupted: writing the {done} of this shard's {} runs that finished", jobs.len());
        }
        let mut f: ShardFile =
            ShardFile::new(Kind::Sweep, shard, Source::new(&base, &file, &text, &args.scenario.sets));
        f.sweep = Some(SweepPart { vary: args.vary.clone(), replications: r, results });
        f.write(&out)?;
        outln!(
            "sweep shard {shard}: {done} of {} runs in {} (kfsim merge the {} shard folders)",
            scenarios.len() as u64 * u64::from(r),
            out.join(crate::merge::FILE).display(),
            shard.count
        );
        return Ok(if done < jobs.len() { Exit::Interrupted } else { Exit::Success });
    }
    let jobs = all;
    let runs = sweep::run_values_until(&scenarios, &jobs, !args.serial, &go_on, &[]);
    let done = runs.iter().flatten().count();
    let mut values: Vec<Vec<sweep::RepValues>> = vec![Vec::new(); scenarios.len()];
    for (&(p, _), v) in jobs.iter().zip(runs) {
        values[p].extend(v);
    }
    let mut result = sweep::assemble(&base, &vary, grid, &scenarios, &values, r);
    if done < jobs.len() {
        errln!("interrupted: writing the sweep of the {done} of {} runs that finished", jobs.len());
        result.interrupted = Some(sweep::Partial { runs: done as u64, of: jobs.len() as u64 });
    }
    write_sweep(&out, &result)
}

/// Whether to go on: not after Ctrl-C or SIGTERM (a second one ends the
/// process at once).
fn go_on() -> impl Fn() -> bool + Sync + Send + 'static {
    let stop = super::stop_flag();
    move || !stop.load(std::sync::atomic::Ordering::Relaxed)
}

fn write_sweep(out: &std::path::Path, result: &SweepResult) -> anyhow::Result<Exit> {
    // printed whether or not the folder takes it: a sweep's hours of
    // replications were lost with nothing but "No space left on device"
    // (found by probing)
    let written = crate::report::folder::write_sweep(out, result);
    print_sweep(&mut std::io::stdout().lock(), result)?;
    written.context("the sweep could not be written; its points are printed above, in no file")?;
    outln!("report     {}", out.join("sweep.html").display());
    Ok(if result.interrupted.is_some() { Exit::Interrupted } else { Exit::Success })
}

/// A sweep's or a plan's merge computes its intervals and decisions (a
/// plan's whole search) again from the shards' values, under this
/// binary's rules: shards of another version were refused only for a
/// replication they "lacked" when its rules differed (found by review).
fn same_version<M>(f: &crate::merge::ShardFile<M>) -> Result<(), crate::merge::Refused> {
    let this = env!("KFSIM_VERSION");
    if f.kfsim_version == this {
        return Ok(());
    }
    Err(crate::merge::Refused(format!(
        "the shards were written by kfsim {}, this is kfsim {this}: a sweep's or a plan's merge decides \
         again under its own rules; merge them with the kfsim that ran them",
        f.kfsim_version
    )))
}

/// `kfsim merge` of a sweep's shards: the sweep the shards' runs make.
pub(super) fn merge_sweep(shards: &[ReadShard], out: &std::path::Path) -> anyhow::Result<Exit> {
    let f = &shards[0].file;
    let part = f.sweep.as_ref().ok_or_else(|| crate::merge::Refused("not a sweep".into()))?;
    same_version(f)?;
    let base = f.source.scenario()?;
    let vary = part.vary.iter().map(|v| Vary::parse(v).map_err(ArgError)).collect::<Result<Vec<_>, _>>()?;
    let grid = sweep::grid(&vary).map_err(ArgError)?;
    let scenarios = grid
        .iter()
        .map(|params| sweep::variant(&f.source.text, &f.source.file, &f.source.sets, params))
        .collect::<Result<Vec<_>, _>>()?;
    let values = crate::merge::sweep_values(shards, grid.len())?;
    let result = sweep::assemble(&base, &vary, grid, &scenarios, &values, part.replications);
    write_sweep(out, &result)
}

fn est(e: Option<sweep::Estimate>, f: impl Fn(f64) -> String) -> String {
    e.map_or("—".into(), |e| match e.ends() {
        Some((lo, hi)) => format!("{} [{}, {}]", f(e.mean), f(lo), f(hi)),
        // one replication: no interval to give
        None => format!("{} (n = 1)", f(e.mean)),
    })
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn print_sweep(w: &mut dyn Write, r: &SweepResult) -> anyhow::Result<()> {
    let partial = r.interrupted.map_or(String::new(), |p| {
        format!(" · INTERRUPTED: {} of {} runs finished, each point's figures are over its own", p.runs, p.of)
    });
    writeln!(
        w,
        "{} · {} points × {} replications · mean [95% CI]{partial}",
        r.scenario,
        r.points.len(),
        r.replications
    )?;
    for p in &r.points {
        let params: Vec<String> = p.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let m = |k: &str| p.metrics.get(k).copied().flatten();
        let theory = p
            .theory
            .as_ref()
            .and_then(|t| t.service_level)
            .map_or(String::new(), |v| format!(" · theory {}", pct(v)));
        // found by probing: an overloaded point's figures looked like any other's
        let theory = if p.unstable {
            format!("{theory} · UNSTABLE: load ≥ servers, figures grow with the run")
        } else {
            theory
        };
        writeln!(
            w,
            "{}: SL {}{theory} · ASA {} · abandon rate {} · occupancy {}",
            params.join(" "),
            est(m("service_level"), pct),
            est(m("asa_ms"), |v| human_ms(Some(v))),
            est(m("abandon_rate"), pct),
            est(m("occupancy"), pct)
        )?;
    }
    Ok(())
}

/// `--max-replications` when not given (or `--replications`, if more).
const DEFAULT_MAX_REPLICATIONS: u32 = 40;

/// `kfsim plan`.
pub fn cmd_plan(args: &PlanArgs) -> anyhow::Result<Exit> {
    if let Some(out) = &args.out {
        super::run::out_folder(out)?;
    }
    let max_replications = match args.max_replications {
        // asked for fewer than the first look: said, not raised unseen
        Some(m) if m < args.replications => {
            return Err(ArgError(format!(
                "--max-replications {m} is below --replications {}: a plan begins with --replications \
                 and doubles them up to --max-replications",
                args.replications
            ))
            .into());
        }
        Some(m) => m,
        None => DEFAULT_MAX_REPLICATIONS.max(args.replications),
    };
    let file = args.scenario.scenario.display().to_string();
    let text = read(&args.scenario.scenario)?;
    let spec = PlanSpec {
        targets: args.targets.clone(),
        vary: args.vary.clone(),
        replications: args.replications,
        max_replications,
        per_interval: args.per_interval.clone(),
        curve: args.out.is_some(),
    };
    let shard = args.shard.resolve()?;
    if !shard.is_part() {
        let go_on = go_on();
        let runner = sweep::Local { parallel: !args.serial, go_on: &go_on };
        let (_, report, reachable) = match plan_with(&text, &file, &args.scenario.sets, &spec, &runner, 1) {
            Err(e) if e.is::<sweep::Interrupted>() => {
                // a search cut short has no answer: a value it had not
                // decided may be the one it would have recommended
                errln!("interrupted: the search had not finished; nothing is recommended or written");
                return Ok(Exit::Interrupted);
            }
            r => r?,
        };
        if let Some(out) = &args.out {
            crate::report::folder::write_plan(out, &report)?;
            outln!("report       {}", out.join("plan.html").display());
        }
        return Ok(if reachable { Exit::Success } else { Exit::GatesFailed });
    }
    let Some(out) = &args.out else {
        return Err(ArgError(format!(
            "a plan shard ({shard}) needs --out DIR: its shard.json, for kfsim merge"
        ))
        .into());
    };
    let exchange_dir = match &args.exchange {
        Some(d) => d.clone(),
        None => {
            out.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| ".".into(), |p| p.to_path_buf())
        }
    };
    let wait = std::time::Duration::from_micros(args.shard_wait);
    crate::merge::clear_stale(out)?;
    let runner = super::shard::Exchange::new(&exchange_dir, shard, !args.serial, wait, Box::new(go_on()))?;
    let (base, _report, _) = match plan_with(&text, &file, &args.scenario.sets, &spec, &runner, shard.count) {
        Err(e) if e.is::<sweep::Interrupted>() => {
            errln!(
                "interrupted: no shard.json written; the replications that finished are in {} (a shard started again takes them up)",
                runner.dir().display()
            );
            return Ok(Exit::Interrupted);
        }
        r => r?,
    };
    let mut f: ShardFile =
        ShardFile::new(Kind::Plan, shard, Source::new(&base, &file, &text, &args.scenario.sets));
    let values = std::mem::take(&mut *runner.seen.lock().unwrap_or_else(|e| e.into_inner()));
    f.plan = Some(PlanPart { spec, values });
    f.write(out)?;
    outln!(
        "plan shard {shard}: {} (kfsim merge the {} shard folders for plan.json and plan.html)",
        out.join(crate::merge::FILE).display(),
        shard.count
    );
    Ok(Exit::Success)
}

/// `kfsim merge` of a plan's shards: the search again, over the
/// replications the shards ran (nothing is simulated), so the same answer.
pub(super) fn merge_plan(shards: &[ReadShard], out: &std::path::Path) -> anyhow::Result<Exit> {
    let f = &shards[0].file;
    let part = f.plan.as_ref().ok_or_else(|| crate::merge::Refused("not a plan".into()))?;
    same_version(f)?;
    f.source.scenario()?;
    let runner = crate::merge::Cached::of(shards)?;
    let spec = PlanSpec { curve: true, ..part.spec.clone() };
    // judged as the shards judged it: their work is done
    let (_, report, reachable) =
        plan_with(&f.source.text, &f.source.file, &f.source.sets, &spec, &runner, f.shard.count)?;
    crate::report::folder::write_plan(out, &report)?;
    outln!("report       {}", out.join("plan.html").display());
    Ok(if reachable { Exit::Success } else { Exit::GatesFailed })
}

/// The plan `spec` asks of the scenario `text` (with `sets`), its
/// replications from `runner`, printed as it goes: the scenario, the
/// report, and whether every target can be met.
fn plan_with(
    text: &str,
    file: &str,
    sets: &[String],
    spec: &PlanSpec,
    runner: &dyn Replicate,
    shards: u32,
) -> anyhow::Result<(Scenario, PlanReport, bool)> {
    let base = Scenario::parse_with(text, file, sets)?;
    crate::gate::bind_given(&base, text, file, sets)?;
    let targets = spec
        .targets
        .iter()
        .map(|t| Target::parse(t, &base).map_err(ArgError))
        .collect::<Result<Vec<_>, _>>()?;
    // staffing: a group's agents or their cap (found by probing: `--vary
    // seed` "recommended seed = 4092")
    let parts: Vec<String> = crate::scenario::segments(&spec.vary)
        .map_err(|e| ArgError(format!("--vary {}: {e}", spec.vary)))?
        .into_iter()
        .map(|s| s.text)
        .collect();
    if !(parts.len() == 3 && parts[0] == "agents" && matches!(parts[2].as_str(), "count" | "max_concurrent"))
    {
        return Err(ArgError(format!(
            "--vary {}: a plan varies staffing, agents.GROUP.count or agents.GROUP.max_concurrent",
            spec.vary
        ))
        .into());
    }
    // the path must be one --set accepts: try it once
    sweep::variant(text, file, sets, &[(spec.vary.clone(), "1".into())])?;
    let problem = |sets: Vec<String>| Problem {
        text,
        file,
        sets,
        path: spec.vary.clone(),
        targets: targets.clone(),
        replications: spec.replications,
        max_replications: spec.max_replications.max(spec.replications),
        parallel: false,
    };
    let looks = crate::plan::looks(spec.replications, spec.max_replications.max(spec.replications));
    let mut report = PlanReport {
        scenario: base.name.clone(),
        seed: base.seed,
        path: spec.vary.clone(),
        targets: targets.iter().map(TargetInfo::from).collect(),
        replications: (spec.replications, spec.max_replications.max(spec.replications)),
        decided_at: crate::plan::decided_at(looks.len()),
        looks,
        outcome: None,
        knee: None,
        per_interval: Vec::new(),
    };
    // refused before anything is printed or run
    let cut = spec.per_interval.as_deref().map(|iv| cut(&base, iv, spec.replications, shards)).transpose()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "targets      {} · {}",
        targets.iter().map(|t| t.text.as_str()).collect::<Vec<_>>().join(", "),
        report.rule()
    )?;
    let mut reachable = true;
    match cut {
        None => {
            let p = problem(sets.to_vec());
            let mut outcome = p.solve_with(1, runner)?;
            if let (Outcome::Recommended(rec), true) = (&mut outcome, spec.curve) {
                // a curve around the answer, one step at a time, for the chart and its knee
                let n = rec.at.value;
                let step = (n / 20).max(1);
                let mut known: BTreeMap<u32, Evaluated> = rec.curve.drain(..).map(|e| (e.value, e)).collect();
                // upwards, so that each value's edges take the dispersion
                // of the values below it (see Problem::edge_dispersions)
                for k in -8i64..=8 {
                    let Ok(v) = u32::try_from(i64::from(n) + k * i64::from(step)) else { continue };
                    if v >= 1 && !known.contains_key(&v) {
                        let e = p.evaluate_near(v, runner, &known)?;
                        known.insert(v, e);
                    }
                }
                rec.curve = known.into_values().collect();
                report.knee = crate::plan::knee(&rec.curve, &targets[0]);
            }
            match &outcome {
                Outcome::Recommended(rec) => print_recommendation(&mut stdout, rec, &targets, report.knee)?,
                Outcome::Unreachable(u) => {
                    print_unreachable(&mut stdout, u)?;
                    reachable = false;
                }
            }
            report.outcome = Some(outcome);
        }
        Some((step, intervals)) => {
            let user_sets = sets.to_vec();
            report.per_interval =
                per_interval(&mut stdout, &base, &intervals, step, &targets, runner, |sets| {
                    problem([user_sets.clone(), sets].concat())
                })?;
            reachable =
                report.per_interval.iter().all(|r| !matches!(r.outcome, Some(Outcome::Unreachable(_))));
        }
    }
    Ok((base, report, reachable))
}

/// `--per-interval DURATION` of `base` checked: its step and intervals.
fn cut(base: &Scenario, iv: &str, replications: u32, shards: u32) -> Result<(u64, Vec<Interval>), ArgError> {
    let step = parse_duration(iv).map_err(ArgError)?;
    if step == 0 {
        return Err(ArgError("--per-interval must be longer than 0s".into()));
    }
    let day = crate::scenario::units::format_duration(base.duration_us);
    if step > base.duration_us {
        return Err(ArgError(format!(
            "--per-interval {iv} is longer than the scenario ({day}); leave it out for one recommendation over the whole run"
        )));
    }
    // each interval is a search of its own, of several runs
    let n = base.duration_us.div_ceil(step);
    if n > MAX_PLAN_INTERVALS {
        return Err(ArgError(format!(
            "--per-interval {iv} cuts the scenario ({day}) into {n} intervals; at most {MAX_PLAN_INTERVALS}"
        )));
    }
    let intervals = intervals(base, step);
    plan_work(base, &intervals, step, replications, shards).map_err(|m| {
        ArgError(format!("--per-interval {iv} cuts the scenario ({day}) into {n} intervals{m}"))
    })?;
    Ok((step, intervals))
}

fn sure(c: &Check) -> String {
    let p = c.sure * 100.0;
    let shown = if p > 99.9 {
        ">99.9".to_owned()
    } else if p < 0.1 {
        "<0.1".to_owned()
    } else {
        format!("{p:.1}")
    };
    format!("{shown}% sure it holds")
}

fn show_targets(e: &Evaluated, targets: &[Target]) -> String {
    targets
        .iter()
        .zip(&e.checks)
        .map(|(t, c)| {
            let v = e.metrics.get(&t.path).copied().flatten();
            let unit = crate::gate::unit_of(&t.path);
            let f = |x: f64| crate::gate::format_like(&t.condition.text, x, unit);
            let verdict = match c.decision {
                Decision::Meets => "meets",
                Decision::Misses => "misses",
                Decision::Unclear => "UNCLEAR",
            };
            // one replication's value has no interval: `[x, x]` claimed a
            // certainty it lacks (as sweeps say, `(n = 1)`)
            let spread = match v.map(|v| (v.ends(), v.n)) {
                None => "[—, —]".to_owned(),
                Some((Some((lo, hi)), _)) => format!("[{}, {}]", f(lo), f(hi)),
                Some((None, n)) => format!("(n = {n})"),
            };
            format!(
                "{} {} {spread} {verdict} ({})",
                display_name(&t.path),
                v.map_or("—".into(), |v| f(v.mean)),
                sure(c)
            )
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// A metric path as the reports name it: latencies without `latency_ms.`.
fn display_name(path: &str) -> &str {
    path.strip_prefix("latency_ms.").unwrap_or(path)
}

fn print_recommendation(
    w: &mut dyn Write,
    r: &Recommendation,
    targets: &[Target],
    knee: Option<u32>,
) -> anyhow::Result<()> {
    writeln!(w, "recommended  {} = {}", r.path, r.at.value)?;
    writeln!(
        w,
        "  at {:<8} {} · {} replications",
        r.at.value,
        show_targets(&r.at, targets),
        r.at.replications
    )?;
    if let Some(b) = &r.below {
        writeln!(w, "  at {:<8} {} · {} replications", b.value, show_targets(b, targets), b.replications)?;
        if b.decision == Decision::Unclear {
            writeln!(
                w,
                "  {} is not recommended: the replications cannot tell whether it meets every target",
                b.value
            )?;
        }
    }
    // more than the one below: say that the least may be further down
    if let Some((from, to)) = r.undecided.filter(|(from, to)| from < to) {
        writeln!(
            w,
            "  {from} to {to}: no replication showed them to miss, nor to meet, every target; the least \
             value meeting them may be among them"
        )?;
    }
    if let Some(k) = knee {
        writeln!(
            w,
            "knee         {} = {k}: beyond it each step improves {} much less",
            r.path, targets[0].path
        )?;
    }
    match (&r.at.theory, r.erlang) {
        (Some(t), Some(n)) => {
            writeln!(w, "theory       {} says {} = {n}", t.model.replace('_', " "), r.path)?
        }
        (Some(t), None) => {
            writeln!(w, "theory       {} cannot judge every target here", t.model.replace('_', " "))?
        }
        (None, _) => writeln!(w, "theory       not an Erlang-shaped scenario: simulation only")?,
    }
    Ok(())
}

fn print_unreachable(w: &mut dyn Write, u: &Unreachable) -> anyhow::Result<()> {
    let unit = crate::gate::unit_of(&u.metric);
    let f = |x: f64| crate::gate::format_value(x, unit);
    let tried: Vec<String> =
        u.tried.iter().map(|(v, e)| format!("{v}: {}", e.map_or("—".into(), |e| f(e.mean)))).collect();
    writeln!(
        w,
        "UNREACHABLE  {}: no value of {} meets it; {} {}",
        u.target,
        u.path,
        display_name(&u.metric),
        u.ends(f)
    )?;
    writeln!(w, "  tried      {}", tried.join(" · "))?;
    writeln!(w, "  why        {}", u.reason)?;
    Ok(())
}

/// Most intervals of `plan --per-interval`: a week in 5-minute intervals.
const MAX_PLAN_INTERVALS: u64 = 2016;

/// Each interval of `plan --per-interval` runs long enough to be steady:
/// 8 intervals or 4 h, whichever is longer.
fn interval_run_us(step: u64) -> u64 {
    (8 * step).max(MIN_INTERVAL_RUN_US)
}

/// See [`interval_run_us`].
const MIN_INTERVAL_RUN_US: u64 = 4 * 3_600_000_000;

/// One interval of `plan --per-interval`: where it starts and ends [µs],
/// and each entry's mean rate over it [/s].
struct Interval {
    start: u64,
    end: u64,
    rates: Vec<f64>,
}

impl Interval {
    /// Arrivals per second over all entries.
    fn total(&self) -> f64 {
        self.rates.iter().sum()
    }

    /// An interval with no arrivals is not searched.
    fn searched(&self) -> bool {
        self.total() * 60.0 >= 1e-6
    }
}

/// The scenario cut into intervals of `step`.
fn intervals(base: &Scenario, step: u64) -> Vec<Interval> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < base.duration_us {
        let end = (start + step).min(base.duration_us);
        let rates = base
            .entries
            .iter()
            .map(|e| e.rate_per_s * crate::plan::mean_factor(&e.profile, start, end))
            .collect();
        out.push(Interval { start, end, rates });
        start = end;
    }
    out
}

/// The least work of `plan --per-interval`, refused (why, and what to
/// change) past the bounds of one run (`scenario::MAX_ARRIVALS`,
/// `MAX_MESSAGES`, about half an hour each). Each interval with arrivals
/// is a search of its own, and a search evaluates at least one staffing
/// level at `replications` runs of [`interval_run_us`] (most evaluate ten
/// or more, and add replications while undecided), so this is a floor:
/// what it refuses cannot end within the bound. Unbounded, the intervals
/// were searched one after another with no estimate of the whole, which
/// grows with their number and their rates (found by probing: an erlang-c
/// plan at 1-minute intervals, 10 arrivals a minute, took 528 s).
/// Shared out by `--shard` over `shards` processes, each does its share.
fn plan_work(
    base: &Scenario,
    intervals: &[Interval],
    step: u64,
    replications: u32,
    shards: u32,
) -> Result<(), String> {
    use crate::scenario::{MAX_ARRIVALS, MAX_MESSAGES};
    let run_us = interval_run_us(step);
    let run_s = run_us as f64 / 1e6;
    let per_session = base.messages_per_session();
    let searched: Vec<&Interval> = intervals.iter().filter(|i| i.searched()).collect();
    // a shard runs its share of the replications (found by review: a plan
    // shared out 16 ways was refused for the work of all 16)
    let runs = f64::from(replications) * run_s / f64::from(shards.max(1));
    let each = if shards > 1 { format!(" on each of {shards} shards") } else { " in all".to_owned() };
    let arrivals: f64 = searched.iter().map(|i| i.total()).sum::<f64>() * runs;
    let messages: f64 = searched
        .iter()
        .map(|i| i.rates.iter().zip(&per_session).map(|(r, m)| r * m).sum::<f64>())
        .sum::<f64>()
        * runs;
    let what = if arrivals > MAX_ARRIVALS {
        format!(
            "{arrivals:.3e} arrivals{each}, above the most kfsim simulates in one run, {MAX_ARRIVALS:.0e}"
        )
    } else if messages > MAX_MESSAGES {
        format!(
            "{messages:.3e} customer messages{each}, above the most kfsim simulates in one run, {MAX_MESSAGES:.0e}"
        )
    } else {
        return Ok(());
    };
    let run = crate::scenario::units::format_duration(run_us);
    let longer = if run_us == MIN_INTERVAL_RUN_US {
        format!(
            "lengthen --per-interval (each interval is run for {run} however short it is: fewer intervals \
             are less work, up to intervals of {}), ",
            crate::scenario::units::format_duration(MIN_INTERVAL_RUN_US / 8)
        )
    } else {
        String::new()
    };
    let some = if searched.len() < intervals.len() {
        format!(" ({} with arrivals)", searched.len())
    } else {
        String::new()
    };
    Err(format!(
        "{some}, each sized by a search that runs at least {replications} replications (--replications) of \
         {run} at one staffing level: at least {what} (about half an hour), and a search tries several \
         levels: {longer}lower --replications, share the plan out over processes or machines (--shard I/N), or shorten the \
         scenario's `duration` or lower its entries' `rate`"
    ))
}

/// The intraday staffing table: each interval of the profile sized as if
/// its mean rate held steadily (the stationary approximation planners use).
fn per_interval<'a>(
    w: &mut dyn Write,
    base: &Scenario,
    intervals: &[Interval],
    step: u64,
    targets: &[Target],
    runner: &dyn Replicate,
    problem: impl Fn(Vec<String>) -> Problem<'a>,
) -> anyhow::Result<Vec<IntervalRow>> {
    let run_us = interval_run_us(step);
    writeln!(
        w,
        "{:<12}{:>14}{:>14}{:>10}   targets at the recommendation",
        "interval", "arrivals/min", "recommended", "erlang"
    )?;
    let mut rows = Vec::new();
    for i in intervals {
        let (start, end) = (i.start, i.end);
        let mut sets: Vec<String> = Vec::new();
        let total = i.total();
        for (e, rate) in base.entries.iter().zip(&i.rates) {
            let name = crate::scenario::key_segment(&e.name);
            sets.push(format!("entry.{name}.rate={}/s", rate.max(1e-9)));
            sets.push(format!("entry.{name}.profile=[{{ at = \"0s\", factor = 1.0 }}]"));
        }
        sets.push(format!("duration={}us", run_us));
        sets.push(format!("warmup={}us", run_us / 8));
        let label = crate::scenario::units::format_duration(start);
        let mut row = IntervalRow {
            start_s: start as f64 / 1e6,
            end_s: end as f64 / 1e6,
            arrivals_per_min: total * 60.0,
            outcome: None,
        };
        if !i.searched() {
            writeln!(w, "{label:<12}{:>14.2}{:>14}{:>10}   no arrivals", 0.0, 0, "—")?;
        } else {
            let outcome = problem(sets).solve_with(1, runner)?;
            match &outcome {
                Outcome::Recommended(rec) => writeln!(
                    w,
                    "{label:<12}{:>14.2}{:>14}{:>10}   {}",
                    total * 60.0,
                    rec.at.value,
                    rec.erlang.map_or("—".into(), |n| n.to_string()),
                    show_targets(&rec.at, targets)
                )?,
                Outcome::Unreachable(u) => writeln!(
                    w,
                    "{label:<12}{:>14.2}{:>14}{:>10}   {} cannot be met: {}",
                    total * 60.0,
                    "—",
                    "—",
                    u.target,
                    u.ends(|x| crate::gate::format_value(x, crate::gate::unit_of(&u.metric)))
                )?,
            }
            row.outcome = Some(outcome);
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The least work of a plan counts the intervals a search runs in:
    /// those without arrivals (the night, here) are not searched.
    #[test]
    fn a_plans_work_counts_the_intervals_it_searches() {
        let text = r#"
name = "t"
duration = "1d"
[[account]]
name = "kf"
[[agents]]
count = 2
reply_delay = "1m"
[[entry]]
scene = "web"
rate = "12/s"
messages = 2
profile = [["0h", 0.0], ["12h", 0.0], ["12h", 1.0]]
"#;
        let base = Scenario::parse(text, "t.toml").unwrap();
        let cut = intervals(&base, 3_600_000_000);
        assert_eq!(cut.len(), 24);
        assert_eq!(cut.iter().filter(|i| i.searched()).count(), 12);
        // 12 intervals × 5 replications × 8 h (8 intervals) × 12/s = 2.0736e7 arrivals
        assert!(plan_work(&base, &cut, 3_600_000_000, 5, 1).is_ok());
        let base = Scenario::parse_with(text, "t.toml", &["entry.web.rate=1200/s".into()]).unwrap();
        let cut = intervals(&base, 3_600_000_000);
        let e = plan_work(&base, &cut, 3_600_000_000, 5, 1).unwrap_err();
        assert!(e.starts_with(" (12 with arrivals), each sized by a search"), "{e}");
        assert!(e.contains("at least 2.074e9 arrivals in all"), "{e}");
        // 8 h runs past 30-minute intervals: longer ones are no less work
        assert!(!e.contains("lengthen --per-interval"), "{e}");
        // three shards each do a third: within the bound (found by review:
        // a plan shared out was refused for the work of all its shards)
        assert!(plan_work(&base, &cut, 3_600_000_000, 5, 3).is_ok());
        let e = plan_work(&base, &cut, 3_600_000_000, 5, 2).unwrap_err();
        assert!(e.contains("at least 1.037e9 arrivals on each of 2 shards"), "{e}");
    }
}
