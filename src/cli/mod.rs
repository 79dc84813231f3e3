//! The command line, the top of the crate: argument definitions, and the
//! glue that assembles a run from the layers below — it loads the scenario
//! and binds its gates, starts the embedded service for a live run, hands
//! the engines a progress callback, renders the report and maps every
//! outcome to an exit code. It alone reads the environment, handles
//! signals and starts services; nothing below imports it.
//!
//! One file per family of commands: [`run`] (`run`, `validate`, `compare`,
//! `report`), [`plan`] (`sweep`, `plan`), [`merge`], [`serve`] and
//! [`bench`]; [`shard`] has what shards share (`--shard`, the live start
//! barrier, the plan's exchange).

// The command line is the edge: it reads the clock (report folder names,
// benchmark timing), the environment and signals, and prints.
#![allow(clippy::disallowed_methods, clippy::print_stdout, clippy::print_stderr)]

/// `println!` that does not panic when standard output is gone: a
/// terminal that hung up (SIGHUP) answers every write with EIO, and a
/// panic there lost the report an interrupted run was about to write.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `eprintln!` that does not panic when standard error is gone (see
/// `outln!`).
macro_rules! errln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

pub mod bench;
pub mod merge;
pub mod plan;
pub mod run;
pub mod serve;
pub mod shard;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::builder::PossibleValue;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

pub use bench::BenchArgs;
pub use merge::MergeArgs;
pub use plan::{PlanArgs, SweepArgs};
pub use run::{CompareArgs, Export, ReportArgs, RunArgs};
pub use serve::ServeArgs;

use crate::gate::{self, Gate};
use crate::observe::{Engine, Progress};
use crate::scenario::{Scenario, ScenarioError};

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
    Serve(ServeArgs),
    /// Run a grid of scenario variants with replications (capacity planning).
    Sweep(SweepArgs),
    /// Find the smallest staffing that meets service targets.
    Plan(PlanArgs),
    /// Merge the shard folders of a live run, a sweep or a plan (`--shard I/N`) into one result.
    Merge(MergeArgs),
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

impl ValueEnum for Engine {
    fn value_variants<'a>() -> &'a [Self] {
        &[Engine::Sim, Engine::Live]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Engine::Sim => PossibleValue::new("sim").help("Discrete-event simulation in virtual time"),
            Engine::Live => PossibleValue::new("live")
                .help("Real time over HTTP, against the embedded reference service or `--target`"),
        })
    }
}

/// Parse the command line `args` (the program's name first), or exit as
/// clap does (code 2 for an error, 0 for `--help`). An error of the
/// arguments themselves still writes the `--junit` file they name, one
/// `run` case in error, as a run that cannot be made does: CI shows an
/// error, not no result (`--seed abc` wrote none: found by probing).
pub fn parse(args: impl IntoIterator<Item = std::ffi::OsString>) -> Cli {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            if e.use_stderr()
                && let Some(path) = junit_arg(&args)
                && let Err(w) = write_arg_error(&path, &e.render().to_string())
            {
                let _ = writeln!(std::io::stderr().lock(), "warning: {w:#}");
            }
            e.exit()
        }
    }
}

/// The `--junit` file named in `args`, however they failed to parse.
fn junit_arg(args: &[std::ffi::OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--junit" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--junit=")) {
            return Some(v.into());
        }
    }
    None
}

fn write_arg_error(path: &Path, message: &str) -> anyhow::Result<()> {
    run::junit_folder(path)?;
    let meta = crate::report::junit::Meta {
        scenario: "kfsim".into(),
        timestamp: Some(iso_stamp(now_secs())),
        time_s: 0.0,
        engine: None,
        properties: Vec::new(),
        interrupted: false,
    };
    run::write_junit_error(path, &meta, message.trim_end())
}

/// Run a parsed command; the result is the process exit code.
pub fn run(cli: Cli) -> Exit {
    let result = match cli.command {
        Command::Run(args) => run::cmd_run(&args),
        Command::Validate(args) => run::cmd_validate(&args),
        Command::Bench(args) => bench::cmd_bench(&args),
        Command::Compare(args) => run::cmd_compare(&args),
        Command::Report(args) => run::cmd_report(&args),
        Command::Serve(args) => serve::cmd_serve(&args),
        Command::Sweep(args) => plan::cmd_sweep(&args),
        Command::Plan(args) => plan::cmd_plan(&args),
        Command::Merge(args) => merge::cmd_merge(&args),
    };
    match result {
        Ok(code) => code,
        // `kfsim … | head` closing the pipe early is not a failure.
        Err(err) if err.chain().any(is_broken_pipe) => {
            if signalled() {
                Exit::Interrupted
            } else {
                Exit::Success
            }
        }
        // the closing lines to a terminal that hung up: the files are written
        Err(err) if signalled() && err.chain().any(is_terminal_gone) => Exit::Interrupted,
        Err(err) => {
            let invalid = err.downcast_ref::<ScenarioError>().is_some()
                || err.downcast_ref::<ArgError>().is_some()
                || err.downcast_ref::<crate::merge::Refused>().is_some();
            // stderr closed early (`2>&1 | head`) is no reason to panic
            let _ = writeln!(std::io::stderr().lock(), "error: {err:#}");
            if err.downcast_ref::<crate::live::InterruptedConnecting>().is_some()
                || err.downcast_ref::<Stopped>().is_some()
            {
                return Exit::Interrupted;
            }
            if invalid { Exit::Invalid } else { Exit::RunFailed }
        }
    }
}

/// EIO, what a terminal that hung up answers a write with.
fn is_terminal_gone(e: &(dyn std::error::Error + 'static)) -> bool {
    const EIO: i32 = 5;
    e.downcast_ref::<std::io::Error>().is_some_and(|io| io.raw_os_error() == Some(EIO))
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Read, override and validate a scenario file, and bind its gates to the
/// summary's metrics: every mistake in it is found before anything runs.
fn load(args: &ScenarioArgs) -> anyhow::Result<(Scenario, Vec<Gate>)> {
    let text = crate::scenario::read_file(&args.scenario)?;
    let file = args.scenario.display().to_string();
    let sc = Scenario::parse_with(&text, &file, &args.sets)?;
    let gates = gate::bind_given(&sc, &text, &file, &args.sets)?;
    Ok((sc, gates))
}

/// An invalid argument found after clap's own checks (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(pub String);

/// Stopped by a signal before anything ran, so with nothing to report
/// (exit 130).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Stopped(pub String);

/// Set by Ctrl-C, SIGTERM or SIGHUP (a closed terminal or ssh session):
/// the command stops and writes what it has; a second signal ends the
/// process at once. SIGHUP is left alone when it is ignored (`nohup`),
/// which a handler would undo.
///
/// One flag for the process, registered at the first call: each phase of
/// a run (a shard's barrier, then the engine's progress) asks the same
/// flag, so a signal between two phases is not taken by the first alone
/// (with a flag each, the run went on and only a second signal ended it).
pub(crate) fn stop_flag() -> Arc<AtomicBool> {
    STOP.get_or_init(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let stop = Arc::new(AtomicBool::new(false));
        let hup = (!hangup_ignored()).then_some(SIGHUP);
        for sig in [SIGINT, SIGTERM].into_iter().chain(hup) {
            // Registration fails only for forbidden signals, which these are
            // not; without it the default handler still ends the process.
            let _ =
                signal_hook::flag::register_conditional_shutdown(sig, Exit::Interrupted as i32, stop.clone());
            let _ = signal_hook::flag::register(sig, stop.clone());
        }
        stop
    })
    .clone()
}

/// The flag of [`stop_flag`], once a command asked for it.
static STOP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

/// Whether a stop signal came: then a terminal that fails to take the
/// closing lines (hung up: EIO) or a reader gone is part of being stopped,
/// not a failed run.
fn signalled() -> bool {
    STOP.get().is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
}

/// Whether SIGHUP is ignored by this process (`nohup`, or a parent that
/// ignored it), from the kernel's `SigIgn` mask: the one way to ask
/// without `sigaction` (and so `unsafe`). Elsewhere than Linux, said to be
/// ignored, so that the default disposition stays.
pub(crate) fn hangup_ignored() -> bool {
    std::fs::read_to_string("/proc/self/status").map_or(true, |status| sighup_in_mask(&status))
}

/// Whether the `SigIgn:` line of a `/proc/PID/status` text has SIGHUP (1,
/// the mask's lowest bit); a text without one counts as ignored.
fn sighup_in_mask(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_none_or(|mask| mask & 1 == 1)
}

/// A progress bar over the scenario's clock on the terminal (hidden when
/// `quiet`), and the callback an engine calls with its progress: it moves
/// the bar and answers whether to go on (not after Ctrl-C or SIGTERM).
fn progress_bar(sc: &Scenario, quiet: bool) -> (ProgressBar, impl FnMut(&Progress) -> bool + Send + use<>) {
    let stop = stop_flag();
    let total_s = sc.duration_us / 1_000_000;
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(total_s) };
    bar.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} s of scenario time · {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    let shown = bar.clone();
    let callback = move |p: &Progress| {
        shown.set_position((p.now_us / 1_000_000).min(total_s));
        let mut msg = format!("{} sessions, {} in flight", p.sessions, p.in_flight);
        if let Some(errors) = p.errors {
            msg += &format!(" · {errors} errors");
        }
        if let Some(p95) = p.call_p95_ms {
            msg += &format!(" · batch p95 {p95:.1} ms");
        }
        shown.set_message(msg);
        !stop.load(std::sync::atomic::Ordering::Relaxed)
    };
    (bar, callback)
}

/// `reports/NAME-YYYYMMDD-HHMMSS`, made unique.
pub(crate) fn default_out_dir(name: &str) -> PathBuf {
    let safe = folder_name(name);
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

/// Most bytes of a scenario's name in a folder's name: file systems take
/// 255 bytes, and the stamp and a suffix come after it.
const NAME_BYTES: usize = 96;

/// The scenario's name as a folder name: no separators or dots, and short
/// enough for any file system (a name is free text, 一个中文名 too).
fn folder_name(name: &str) -> String {
    let mut safe = String::new();
    for c in name.chars() {
        let c = if c.is_alphanumeric() || c == '-' || c == '_' { c } else { '-' };
        if safe.len() + c.len_utf8() > NAME_BYTES {
            break;
        }
        safe.push(c);
    }
    safe
}

/// `YYYYMMDD-HHMMSS` in UTC, from seconds since the epoch.
pub fn utc_stamp(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}{m:02}{d:02}-{hh:02}{mm:02}{ss:02}")
}

/// `YYYY-MM-DDTHH:MM:SS` (ISO 8601, UTC, as JUnit's `timestamp` wants it).
pub fn iso_stamp(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}")
}

/// Seconds since the epoch now.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Year, month, day, hour, minute, second in UTC.
fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
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
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_junit_file_is_found_in_arguments_that_do_not_parse() {
        let args = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert_eq!(junit_arg(&args(&["kfsim", "run", "x", "--junit", "a/j.xml"])), Some("a/j.xml".into()));
        assert_eq!(junit_arg(&args(&["kfsim", "run", "--junit=j.xml", "--seed", "q"])), Some("j.xml".into()));
        assert_eq!(junit_arg(&args(&["kfsim", "run", "--junit"])), None);
        assert_eq!(junit_arg(&args(&["--junit", "run"])), None, "the program's name is not an option");
    }

    /// A signal between two phases of a run (the barrier's end and the
    /// progress bar) must reach the later phase: both hold one flag.
    #[test]
    fn every_phase_asks_one_stop_flag() {
        assert!(Arc::ptr_eq(&stop_flag(), &stop_flag()));
    }

    #[test]
    fn sighup_is_read_from_the_ignored_mask() {
        let status =
            |mask: &str| format!("Name:\tkfsim\nSigBlk:\t0000000000000000\nSigIgn:\t{mask}\nSigCgt:\t0\n");
        assert!(!sighup_in_mask(&status("0000000000000000")));
        assert!(!sighup_in_mask(&status("0000000000001000")));
        assert!(sighup_in_mask(&status("0000000000000001")));
        assert!(sighup_in_mask(&status("0000000000001003")));
        // no line, or one that is not hex: leave the default alone
        assert!(sighup_in_mask("Name:\tkfsim\n"));
        assert!(sighup_in_mask(&status("zz")));
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_795_636_800), "20261125-200000");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert_eq!(iso_stamp(1_795_636_800), "2026-11-25T20:00:00");
    }

    #[test]
    fn any_scenario_name_makes_a_folder_name() {
        assert_eq!(folder_name("peak day/v2.1"), "peak-day-v2-1");
        assert_eq!(folder_name("../etc"), "---etc");
        assert_eq!(folder_name(&"x".repeat(300)), "x".repeat(NAME_BYTES));
        // cut at a character, never inside one
        assert_eq!(
            folder_name(&"双十一".repeat(100)),
            "双十一".repeat(100).chars().take(32).collect::<String>()
        );
        let dir = std::env::temp_dir().join(format!("{}-20261203-120000-2", folder_name(&"名".repeat(200))));
        std::fs::create_dir(&dir).expect("the longest name is a valid folder name");
        std::fs::remove_dir(&dir).unwrap();
    }
}
