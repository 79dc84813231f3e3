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

use crate::metrics::Metrics;
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
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
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
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            let code =
                if err.downcast_ref::<ScenarioError>().is_some() { Exit::Invalid } else { Exit::RunFailed };
            eprintln!("error: {err:#}");
            code
        }
    }
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
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => default_out_dir(&sc.name),
    };
    let summary = simulate_interactive(&sc, args.quiet);
    write_summary(&out, &summary)?;
    if !args.quiet {
        let mut stdout = std::io::stdout().lock();
        crate::report::terminal(&summary, &mut stdout)?;
        writeln!(stdout, "report     {}", out.join("summary.json").display())?;
    }
    Ok(if summary.run.interrupted { Exit::Interrupted } else { Exit::Success })
}

/// Run the simulator with a progress bar on a terminal, stopping cleanly on
/// the first Ctrl-C or SIGTERM (a second one ends the process at once).
fn simulate_interactive(sc: &Scenario, quiet: bool) -> Summary {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Registration fails only for forbidden signals, which these are not;
        // without it the default handler still ends the process.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, Exit::Interrupted as i32, stop.clone());
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
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
    metrics.finish(sc, "sim", &stats)
}

/// Run the simulator on `sc` and summarise.
pub fn simulate(sc: &Scenario) -> Summary {
    let mut metrics = Metrics::new(sc);
    let stats = crate::sim::run(sc, &mut metrics);
    metrics.finish(sc, "sim", &stats)
}

/// Write `summary.json` into `dir`, creating it.
pub fn write_summary(dir: &Path, summary: &Summary) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("summary.json");
    let mut json = serde_json::to_string_pretty(summary)?;
    json.push('\n');
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))
}

fn default_out_dir(name: &str) -> PathBuf {
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
