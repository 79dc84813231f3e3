//! The command line: argument definitions and the glue from a parsed command
//! to the library. This is the only place (with `main.rs`) that reads the
//! wall clock, the environment or the file system for a run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use crate::compare::{self, Comparison};
use crate::gate::{self, GateResult, Verdict};
use crate::metrics::Metrics;
use crate::report::{RunData, folder};
use crate::scenario::{Scenario, ScenarioError};
use crate::summary::Summary;

/// Exit codes, as documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The run completed (and its gates passed).
    Success = 0,
    /// Gates failed.
    GatesFailed = 1,
    /// The scenario or the arguments are invalid.
    Invalid = 2,
    /// The run itself failed (I/O, unreachable target).
    RunFailed = 3,
    /// Interrupted by Ctrl-C or SIGTERM; the report of what ran was written.
    Interrupted = 130,
}

/// kfsim: load tests and queueing simulation for WeChat-Customer-Service-style
/// reception systems.
#[derive(Debug, Parser)]
#[command(name = "kfsim", version, about, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario and write DIR/summary.json.
    Run(RunArgs),
    /// Check a scenario file without running it.
    Validate(ScenarioArgs),
    /// Measure the simulator's speed and memory on benchmark scenarios.
    Bench(BenchArgs),
    /// Compare two runs (summary.json files or run folders); exit 1 on a regression.
    Compare(CompareArgs),
    /// Render the charts and report.html of a run folder again, without running.
    Report(ReportArgs),
    /// Serve the reference KF service (WeCom API + simulation ports) until Ctrl-C or SIGTERM.
    Serve(crate::service::ServeArgs),
    /// Run a grid of scenario variants with replications (capacity planning).
    Sweep(SweepArgs),
    /// Find the smallest staffing that meets service targets.
    Plan(PlanArgs),
}

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
    /// Independent replications per evaluated value.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub replications: u32,
    /// Recommend per interval of the arrival profile (the intraday staffing table).
    #[arg(long, value_name = "DURATION")]
    pub per_interval: Option<String>,
    /// Run on one core (the figures are the same).
    #[arg(long)]
    pub serial: bool,
}

/// Arguments of `kfsim compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The baseline: a summary.json or a run folder.
    pub baseline: PathBuf,
    /// The run to judge: a summary.json or a run folder.
    pub current: PathBuf,
    /// How far a metric may get worse: `first_response.p95=10%`, `asa=5s`,
    /// `*=5%` for every key metric [default: exact for the same sim scenario
    /// and seed, else 10%].
    #[arg(long = "tolerance", value_name = "METRIC=VALUE")]
    pub tolerances: Vec<String>,
    /// Also write the comparison as JUnit XML.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

/// Arguments of `kfsim report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A run folder (with summary.json, series.json and histograms.json).
    pub dir: PathBuf,
}

/// Extra outputs of `kfsim run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Export {
    /// Each latency histogram in HdrHistogram's percentile text format (`hgrm/*.hgrm`).
    Hgrm,
}

/// A scenario and overrides of its keys.
#[derive(Debug, clap::Args)]
pub struct ScenarioArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// Override a key: `seed=9`, `duration=2h`, `agents.GROUP.count=20`,
    /// `entry.NAME.rate=3/s`, `account.NAME.policy=idle_first`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

/// Which engine runs the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// Discrete-event simulation in virtual time.
    Sim,
    /// Real time over HTTP, against the embedded reference service or `--target`.
    Live,
}

/// Arguments of `kfsim run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    /// The scenario.
    pub scenario: ScenarioArgs,
    /// Where to write the report [default: reports/NAME-TIMESTAMP].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seed of every random draw (overrides the scenario's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The engine.
    #[arg(long, value_enum, default_value = "sim")]
    pub engine: Engine,
    /// Live engine: run this many times faster than the scenario's clock [default: the scenario's time_scale, else 1].
    #[arg(long, value_name = "N")]
    pub time_scale: Option<f64>,
    /// Live engine: the service to drive (http://HOST:PORT) [default: the scenario's [target] url, else an embedded service].
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// Do not check the scenario's [gates].
    #[arg(long)]
    pub no_gates: bool,
    /// Compare with this earlier run (summary.json or run folder); exit 1 on a regression.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Tolerance for the baseline comparison (see `kfsim compare`).
    #[arg(long = "tolerance", value_name = "METRIC=VALUE", requires = "baseline")]
    pub tolerances: Vec<String>,
    /// Write the gates (and the baseline comparison) as JUnit XML.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Extra files to write into the run folder.
    #[arg(long, value_enum)]
    pub export: Vec<Export>,
}

/// Arguments of `kfsim bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Scenarios to measure [default: scenarios/bench-mmc.toml and scenarios/bench-chat.toml].
    pub scenarios: Vec<PathBuf>,
    /// Sessions per measurement (the duration is set to reach about this many).
    #[arg(long, default_value_t = 5_000_000)]
    pub sessions: u64,
    /// Measure in this process and print one JSON line (used by `bench` itself,
    /// so that each scenario's peak memory is its own).
    #[arg(long, hide = true)]
    pub child: bool,
}

/// Run a parsed command; the result is the process exit code.
pub fn run(cli: Cli) -> Exit {
    let result = match cli.command {
        Command::Run(args) => cmd_run(&args),
        Command::Validate(args) => cmd_validate(&args),
        Command::Bench(args) => cmd_bench(&args),
        Command::Compare(args) => cmd_compare(&args),
        Command::Report(args) => cmd_report(&args),
        Command::Serve(args) => crate::service::cmd_serve(&args),
        Command::Sweep(args) => crate::cli_plan::cmd_sweep(&args),
        Command::Plan(args) => crate::cli_plan::cmd_plan(&args),
    };
    match result {
        Ok(code) => code,
        // `kfsim … | head` closing the pipe early is not a failure.
        Err(err) if err.chain().any(is_broken_pipe) => Exit::Success,
        Err(err) => {
            let invalid =
                err.downcast_ref::<ScenarioError>().is_some() || err.downcast_ref::<ArgError>().is_some();
            eprintln!("error: {err:#}");
            if invalid { Exit::Invalid } else { Exit::RunFailed }
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn load(args: &ScenarioArgs) -> anyhow::Result<Scenario> {
    Ok(Scenario::load(&args.scenario, &args.sets)?)
}

fn cmd_validate(args: &ScenarioArgs) -> anyhow::Result<Exit> {
    let sc = load(args)?;
    println!(
        "{}: ok — {} account(s), {} agent(s) in {} group(s), {} entry point(s)",
        args.scenario.display(),
        sc.accounts.len(),
        sc.agent_count(),
        sc.groups.len(),
        sc.entries.len()
    );
    Ok(Exit::Success)
}

fn cmd_run(args: &RunArgs) -> anyhow::Result<Exit> {
    let mut sc = load(&args.scenario)?;
    if let Some(seed) = args.seed {
        sc.seed = seed;
    }
    // A bad baseline is an argument error: find out before running.
    let baseline = args.baseline.as_deref().map(crate::report::folder::read_summary_value).transpose()?;
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => default_out_dir(&sc.name),
    };
    let mut run: RunData = match args.engine {
        Engine::Sim => simulate_interactive(&sc, args.quiet).into(),
        Engine::Live => run_live(&sc, args)?.into(),
    };
    let json = serde_json::to_value(&run.summary)?;
    if !args.no_gates {
        run.summary.gates = gate::evaluate(&sc.gates, &json);
    }
    let comparison = match &baseline {
        Some(base) => Some(compare_values(base, &json, &args.tolerances)?),
        None => None,
    };
    folder::write_data(&out, &run)?;
    folder::write_report(&out, &run, comparison.as_ref())?;
    if args.export.contains(&Export::Hgrm) {
        folder::write_hgrm(&out, &run)?;
    }
    if let Some(path) = &args.junit {
        write_junit(path, &run.summary.scenario.name, &run.summary.gates, comparison.as_ref())?;
    }
    let mut stdout = std::io::stdout().lock();
    if !args.quiet {
        crate::report::terminal(&run.summary, &mut stdout)?;
        writeln!(stdout, "report     {}", out.join("report.html").display())?;
    }
    let regressed = comparison.as_ref().is_some_and(Comparison::failed);
    if let Some(c) = &comparison {
        print_comparison(&mut stdout, c, args.quiet)?;
    }
    // Failed gates come last, where a CI log is read.
    let failed = print_gates(&mut stdout, &run.summary.gates, args.quiet)?;
    Ok(if run.summary.run.interrupted {
        Exit::Interrupted
    } else if failed || regressed {
        Exit::GatesFailed
    } else {
        Exit::Success
    })
}

fn compare_values(
    base: &serde_json::Value,
    cur: &serde_json::Value,
    args: &[String],
) -> anyhow::Result<Comparison> {
    let valid: std::collections::BTreeSet<String> =
        gate::leaf_paths(base).union(&gate::leaf_paths(cur)).cloned().collect();
    let tolerances = args
        .iter()
        .map(|a| compare::parse_tolerance_arg(a, &valid).map_err(|m| ArgError(m).into()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(compare::compare(base, cur, &tolerances))
}

/// An invalid argument found after clap's own checks (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(pub String);

fn write_junit(
    path: &Path,
    name: &str,
    gates: &[GateResult],
    comparison: Option<&Comparison>,
) -> anyhow::Result<()> {
    let mut xml = Vec::new();
    crate::report::junit::write(name, gates, comparison, &mut xml)?;
    std::fs::write(path, xml).with_context(|| format!("writing {}", path.display()))
}

/// Print the gates, failed ones last; returns whether any failed.
fn print_gates(w: &mut dyn Write, gates: &[GateResult], quiet: bool) -> anyhow::Result<bool> {
    let failed: Vec<&GateResult> = gates.iter().filter(|g| g.verdict == Verdict::Fail).collect();
    if !quiet {
        for g in gates.iter().filter(|g| g.verdict != Verdict::Fail) {
            writeln!(w, "gate       {g}")?;
        }
    }
    for g in &failed {
        writeln!(w, "gate       {g}")?;
    }
    if !failed.is_empty() {
        writeln!(w, "FAILED     {} of {} gates failed", failed.len(), gates.len())?;
    }
    Ok(!failed.is_empty())
}

fn print_comparison(w: &mut dyn Write, c: &Comparison, quiet: bool) -> anyhow::Result<()> {
    let mode = if c.exact { "exact (same sim scenario and seed)" } else { "with tolerances" };
    let failing: Vec<&compare::Row> = c.rows.iter().filter(|r| r.status.fails()).collect();
    if !quiet {
        writeln!(w, "baseline   {} metrics compared, {mode}", c.rows.len())?;
        for r in c.rows.iter().filter(|r| !r.status.fails() && r.status != compare::Status::Ok) {
            writeln!(w, "  {}", comparison_line(r))?;
        }
    }
    for r in &failing {
        writeln!(w, "  {}", comparison_line(r))?;
    }
    if !failing.is_empty() {
        writeln!(w, "REGRESSED  {} metric(s) against the baseline", failing.len())?;
    }
    Ok(())
}

fn comparison_line(r: &compare::Row) -> String {
    let unit = gate::unit_of(&r.metric);
    let v = |x: Option<f64>| x.map_or("—".to_owned(), |x| gate::format_value(x, unit));
    let status = format!("{:?}", r.status).to_lowercase();
    format!("{status:<9} {}  {} → {}  (tolerance {})", r.metric, v(r.baseline), v(r.current), r.tolerance)
}

fn cmd_compare(args: &CompareArgs) -> anyhow::Result<Exit> {
    let base = folder::read_summary_value(&args.baseline).map_err(|e| ArgError(format!("{e:#}")))?;
    let cur = folder::read_summary_value(&args.current).map_err(|e| ArgError(format!("{e:#}")))?;
    let c = compare_values(&base, &cur, &args.tolerances)?;
    let mut stdout = std::io::stdout().lock();
    print_comparison(&mut stdout, &c, false)?;
    if let Some(path) = &args.junit {
        let name = cur.pointer("/scenario/name").and_then(|v| v.as_str()).unwrap_or("kfsim");
        write_junit(path, name, &[], Some(&c))?;
    }
    if !c.failed() {
        writeln!(stdout, "ok         no regression")?;
    }
    Ok(if c.failed() { Exit::GatesFailed } else { Exit::Success })
}

fn cmd_report(args: &ReportArgs) -> anyhow::Result<Exit> {
    let run = folder::read(&args.dir).map_err(|e| ArgError(format!("{e:#}")))?;
    let comparison = folder::read_comparison(&args.dir)?;
    folder::write_report(&args.dir, &run, comparison.as_ref())?;
    println!("report     {}", args.dir.join("report.html").display());
    Ok(Exit::Success)
}

fn stop_flag() -> Arc<AtomicBool> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Registration fails only for forbidden signals, which these are not;
        // without it the default handler still ends the process.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, Exit::Interrupted as i32, stop.clone());
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    stop
}

fn run_live(sc: &Scenario, args: &RunArgs) -> anyhow::Result<crate::metrics::Measured> {
    let time_scale = args.time_scale.unwrap_or(sc.time_scale);
    if !(time_scale.is_finite() && time_scale > 0.0) {
        return Err(ArgError("--time-scale must be a number above 0".into()).into());
    }
    let target = args.target.clone().or_else(|| sc.target_url.clone());
    if let Some(t) = &target
        && !t.starts_with("http://")
    {
        return Err(ArgError(format!("--target {t}: expected http://HOST:PORT")).into());
    }
    let mut opts =
        crate::live::LiveOptions { target, time_scale, progress: !args.quiet, ..Default::default() };
    if let Some((id, secret)) = &sc.target_credentials {
        opts.corpid = id.clone();
        opts.corpsecret = secret.clone();
    }
    if !args.quiet {
        eprintln!(
            "live: {} of scenario time at ×{time_scale} takes about {:.0} s against {}",
            crate::report::human_ms(Some(sc.duration_us as f64 / 1e3)),
            sc.duration_us as f64 / 1e6 / time_scale,
            opts.target.as_deref().unwrap_or("the embedded service")
        );
    }
    crate::live::run(sc, &opts, stop_flag())
}

/// Run the simulator with a progress bar on a terminal, stopping cleanly on
/// the first Ctrl-C or SIGTERM (a second one ends the process at once).
fn simulate_interactive(sc: &Scenario, quiet: bool) -> crate::metrics::Measured {
    let stop = stop_flag();
    let total_s = sc.duration_us / 1_000_000;
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(total_s) };
    bar.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} s of scenario time · {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    let mut metrics = Metrics::new(sc);
    let stats = crate::sim::run_with_progress(sc, &mut metrics, &mut |p| {
        bar.set_position((p.now_us / 1_000_000).min(total_s));
        bar.set_message(format!("{} sessions, {} in flight", p.sessions, p.in_flight));
        !stop.load(Ordering::Relaxed)
    });
    bar.finish_and_clear();
    if stats.interrupted {
        eprintln!("interrupted: writing the report of what ran");
    }
    metrics.finish_all(sc, "sim", &stats)
}

/// Run the simulator on `sc` and summarise.
pub fn simulate(sc: &Scenario) -> Summary {
    let mut metrics = Metrics::new(sc);
    let stats = crate::sim::run(sc, &mut metrics);
    metrics.finish(sc, "sim", &stats)
}

/// `reports/NAME-YYYYMMDD-HHMMSS`, made unique.
pub fn default_out_dir(name: &str) -> PathBuf {
    let safe: String =
        name.chars().map(|c| if c.is_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let base = format!("{safe}-{}", utc_stamp(secs));
    let mut dir = Path::new("reports").join(&base);
    let mut n = 2;
    while dir.exists() {
        dir = Path::new("reports").join(format!("{base}-{n}"));
        n += 1;
    }
    dir
}

/// `YYYYMMDD-HHMMSS` in UTC, from seconds since the epoch.
pub fn utc_stamp(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn cmd_bench(args: &BenchArgs) -> anyhow::Result<Exit> {
    if args.child {
        let path = args.scenarios.first().context("--child needs one scenario")?;
        let sc = bench_scenario(path, args.sessions)?;
        let started = Instant::now();
        let summary = simulate(&sc);
        let wall = started.elapsed().as_secs_f64();
        let line = serde_json::json!({
            "scenario": sc.name,
            "sessions": summary.run.sessions_total,
            "wall_s": wall,
            "sessions_per_s": summary.run.sessions_total as f64 / wall,
            "peak_rss_mb": peak_rss_mb(),
        });
        println!("{line}");
        return Ok(Exit::Success);
    }
    let scenarios = if args.scenarios.is_empty() {
        vec![PathBuf::from("scenarios/bench-mmc.toml"), PathBuf::from("scenarios/bench-chat.toml")]
    } else {
        args.scenarios.clone()
    };
    let exe = std::env::current_exe().context("locating the kfsim binary")?;
    println!("{:<16}{:>14}{:>10}{:>18}{:>14}", "scenario", "sessions", "wall", "sessions/s", "peak RSS");
    for path in &scenarios {
        // Validate here so a bad file is exit 2, not a child's failure.
        bench_scenario(path, args.sessions)?;
        let output = std::process::Command::new(&exe)
            .args(["bench", "--child", "--sessions", &args.sessions.to_string()])
            .arg(path)
            .output()
            .context("starting the benchmark process")?;
        anyhow::ensure!(
            output.status.success(),
            "benchmark of {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        println!(
            "{:<16}{:>14}{:>9.2}s{:>18.0}{:>11.1} MB",
            v["scenario"].as_str().unwrap_or("?"),
            v["sessions"],
            v["wall_s"].as_f64().unwrap_or(0.0),
            v["sessions_per_s"].as_f64().unwrap_or(0.0),
            v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(Exit::Success)
}

/// The scenario at `path` with its duration set so that about `sessions`
/// sessions arrive, and no warm-up.
fn bench_scenario(path: &Path, sessions: u64) -> anyhow::Result<Scenario> {
    let mut sc = Scenario::load(path, &[])?;
    let rate: f64 = sc.entries.iter().map(|e| e.rate_per_s).sum();
    sc.duration_us = ((sessions as f64 / rate) * 1e6).ceil() as u64;
    sc.warmup_us = 0;
    Ok(sc)
}

/// Peak resident memory of this process [MB], from /proc (Linux only).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_795_636_800), "20261125-200000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
    }
}
