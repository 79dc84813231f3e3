//! `kfsim run`, `validate`, `compare` and `report`: a run assembled from
//! the scenario, an engine and the report, then its verdicts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;

pub use super::serve::WeComSetup;
use super::{ArgError, Exit, ScenarioArgs, default_out_dir, load, progress_bar};
use crate::compare::{self, Comparison};
use crate::gate::{self, GateResult, Verdict};
use crate::live::LiveOptions;
use crate::metrics::{Measured, Settled};
use crate::observe::Engine;
use crate::report::folder;
use crate::report::junit;
use crate::scenario::Scenario;
use crate::scenario::units::human_ms;

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
    /// Also write compare.html (percentile curves of both runs overlaid, % changes) into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
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

/// What a run's report checks and writes: the options of `kfsim run` and of
/// `kfsim merge` of a run's shards, which write the same report.
#[derive(Debug, clap::Args)]
pub struct ResultArgs {
    /// Print only warnings, failed gates, regressions and errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// Do not check the scenario's [gates] (a gate on a metric the run has not is a warning, not an
    /// error; a malformed condition is still an error).
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
    #[command(flatten)]
    /// What the report checks and writes.
    pub result: ResultArgs,
    #[command(flatten)]
    /// Against a middleware.
    pub middleware: MiddlewareArgs,
    #[command(flatten)]
    /// Live engine: this process's share of the run.
    pub shard: super::shard::ShardArgs,
    /// Live shards: start the scenario's clock at this wall time (seconds since the epoch), so
    /// shards started apart run one schedule.
    #[arg(long, value_name = "UNIX_SECONDS", conflicts_with = "barrier")]
    pub start_at: Option<f64>,
    /// Live shards: wait until every shard has written its ready file into DIR (a folder they
    /// share, fresh for each run), then start together.
    #[arg(long, value_name = "DIR")]
    pub barrier: Option<PathBuf>,
    /// How long to wait at the barrier for the other shards before giving up (exit 3).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = wait_us, requires = "barrier")]
    pub barrier_wait: u64,
}

/// The latest `--start-at`: 9999-12-31T23:59:59Z.
const LAST_START_AT: f64 = 253_402_300_799.0;

/// `kfsim run --middleware`: kfsim plays WeCom for a KF middleware.
#[derive(Debug, clap::Args)]
pub struct MiddlewareArgs {
    /// Live engine: load-test the KF middleware whose callback URL this is. kfsim plays WeCom
    /// (its API at --listen, callbacks to URL), the customers and the servicers.
    #[arg(long, value_name = "URL", conflicts_with = "target")]
    pub middleware: Option<String>,
    /// Where kfsim's WeCom listens: the middleware's base URL is http://ADDR/cgi-bin/
    /// [default: the scenario's [wecom] listen, else 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR", requires = "middleware")]
    pub listen: Option<std::net::SocketAddr>,
    /// How long to keep checking the callback URL before giving up (exit 3): the middleware may
    /// still be starting.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = wait_us, requires = "middleware")]
    pub callback_wait: u64,
}

fn wait_us(text: &str) -> Result<u64, String> {
    crate::scenario::units::parse_duration(text)
}

pub(super) fn cmd_validate(args: &ScenarioArgs) -> anyhow::Result<Exit> {
    let (sc, _gates) = load(args)?;
    warn_scenario(&sc);
    outln!(
        "{}: ok — {} account(s), {} agent(s) in {} group(s), {} entry point(s)",
        args.scenario.display(),
        sc.accounts.len(),
        sc.agent_count(),
        sc.groups.len(),
        sc.entries.len()
    );
    Ok(Exit::Success)
}

pub(super) fn cmd_run(args: &RunArgs) -> anyhow::Result<Exit> {
    let started = std::time::Instant::now();
    let stamp = super::iso_stamp(super::now_secs());
    if let Some(path) = &args.result.junit {
        junit_folder(path)?;
    }
    let result = run_and_report(args, &stamp, started);
    if let (Err(e), Some(path)) = (&result, &args.result.junit) {
        // CI shows an error instead of no result
        let meta = junit::Meta {
            scenario: args
                .scenario
                .scenario
                .file_stem()
                .map_or("kfsim".into(), |s| s.to_string_lossy().into_owned()),
            timestamp: Some(stamp),
            time_s: started.elapsed().as_secs_f64(),
            engine: Some(args.engine.as_str().to_owned()),
            properties: vec![("scenario.file".into(), args.scenario.scenario.display().to_string())],
            interrupted: false,
        };
        // the run's own error is the one to tell: a JUnit file that
        // cannot be written is said beside it (found by probing: exit 3
        // and "writing /dev/full" hid a scenario's mistake)
        if let Err(w) = write_junit_error(path, &meta, &format!("{e:#}")) {
            errln!("warning: {w:#}");
        }
    }
    result
}

/// The `--junit` file of a run that cannot be made: one `run` case in
/// error with `message`.
pub(super) fn write_junit_error(path: &Path, meta: &junit::Meta, message: &str) -> anyhow::Result<()> {
    let mut xml = Vec::new();
    junit::write_error(meta, message, &mut xml)?;
    std::fs::write(path, xml).with_context(|| format!("writing {}", path.display()))
}

fn run_and_report(args: &RunArgs, stamp: &str, started: std::time::Instant) -> anyhow::Result<Exit> {
    let text = crate::scenario::read_file(&args.scenario.scenario)?;
    let file = args.scenario.scenario.display().to_string();
    let mut sc = Scenario::parse_with(&text, &file, &args.scenario.sets)?;
    warn_scenario(&sc);
    let shard = args.shard.resolve()?;
    if shard.is_part() && args.engine != Engine::Live {
        return Err(ArgError(
            "--shard splits a live run's load; the simulator does not split one run's queue (N small \
             systems are not one large one): shard a sweep or a plan instead"
                .into(),
        )
        .into());
    }
    if shard.is_part() && args.middleware.middleware.is_some() {
        return Err(ArgError(
            "--shard does not split a run against a middleware (one kfsim plays its WeCom)".into(),
        )
        .into());
    }
    if args.middleware.middleware.is_some() && args.engine != Engine::Live {
        return Err(
            ArgError("--middleware drives a middleware in real time: add --engine live".into()).into()
        );
    }
    // The middleware under test is the bot: kfsim plays none, and a
    // scenario's bot would have its account's sessions counted as the
    // bot's, never as offered to people (a service level above 1 where
    // such accounts mixed with others, none where all had one).
    if args.middleware.middleware.is_some()
        && let Some(a) = sc.accounts.iter().find(|a| a.bot.is_some())
    {
        return Err(ArgError(format!(
            "--middleware: account `{}` has a `bot`, but the middleware under test is the bot (kfsim plays \
             none against it): remove the account's `bot` table, and gates on `bot.*`, from the scenario run \
             against a middleware",
            a.name
        ))
        .into());
    }
    if args.engine != Engine::Live {
        // a flag the run would ignore is a mistake in the command, not a wish
        let live_only = [
            ("--time-scale", args.time_scale.is_some()),
            ("--target", args.target.is_some()),
            ("--start-at", args.start_at.is_some()),
            ("--barrier", args.barrier.is_some()),
        ];
        if let Some((flag, _)) = live_only.iter().find(|(_, given)| *given) {
            return Err(ArgError(format!(
                "{flag} is for the live engine; the simulator runs in virtual time: add --engine live"
            ))
            .into());
        }
    }
    let gates = if args.result.no_gates {
        // a gate that is not checked cannot fail for want of its metric:
        // say so and go on (see `gate::unchecked_given`)
        let (unbound, malformed) = gate::unchecked_given(&sc, &text, &file, &args.scenario.sets);
        for e in unbound {
            errln!("warning: {e} (not checked: --no-gates)");
        }
        malformed?;
        Vec::new()
    } else {
        gate::bind_given(&sc, &text, &file, &args.scenario.sets)?
    };
    if let Some(seed) = args.seed {
        sc.seed = seed;
    }
    // A bad baseline is an argument error: find out before running.
    let baseline = args
        .result
        .baseline
        .as_deref()
        .map(|p| folder::read_run_files(p).map_err(|e| ArgError(format!("--baseline: {e:#}"))))
        .transpose()?;
    baseline.iter().for_each(|b| warn_unread(&[b]));
    let out = match &args.out {
        Some(dir) => dir.clone(),
        None => default_out_dir(&sc.name),
    };
    out_folder(&out)?;
    // before the run, not when its files are written: a live shard killed
    // mid-run left the shard file of the run before, which a merge took
    // for this one's
    crate::merge::clear_stale(&out)?;
    let (run, state) = match args.engine {
        Engine::Sim => {
            let (run, state) = simulate_interactive(&sc, args.result.quiet);
            (run, Some(state))
        }
        Engine::Live => run_live(&sc, args, shard)?,
    };
    let shard_file = state.map(|state| {
        // every run can be merged: as the one shard of itself, or with the
        // other shards of a sharded live run
        let mut f = crate::merge::ShardFile::new(
            crate::merge::Kind::Run,
            shard,
            crate::merge::Source::new(&sc, &file, &text, &args.scenario.sets),
        );
        f.engine = Some(args.engine);
        f.run = Some(state);
        f
    });
    let o = Outputs { out: &out, result: &args.result, baseline: baseline.as_ref(), stamp, started };
    write_run(&o, &gates, run, shard_file.as_ref())
}

/// Where and how a run's results go: its folder, gates, baseline, JUnit
/// and terminal summary (`run`, and `merge` of a run's shards).
pub(super) struct Outputs<'a> {
    pub out: &'a Path,
    pub result: &'a ResultArgs,
    /// `result.baseline`, read.
    pub baseline: Option<&'a folder::RunFiles>,
    pub stamp: &'a str,
    pub started: std::time::Instant,
}

/// Judge `run` by `gates` and the baseline, write its folder (with
/// `shard_file`, what a merge needs), JUnit and the terminal summary; the
/// exit code.
pub(super) fn write_run(
    o: &Outputs<'_>,
    gates: &[crate::gate::Gate],
    mut run: Measured,
    shard_file: Option<&crate::merge::ShardFile<Settled>>,
) -> anyhow::Result<Exit> {
    let (out, started, stamp) = (o.out, o.started, o.stamp);
    // compared before the gates are judged: the summary as the baseline
    // comparison sees it has no verdicts yet
    let comparison = match o.baseline {
        Some(base) => {
            // a comparison reaches every agent (exact mode compares each
            // number): the whole summary as JSON, for as long as it takes
            let json = serde_json::to_value(&run.summary)?;
            let current = compare::Side {
                summary: &json,
                series: Some(&run.series),
                histograms: Some(&run.histograms),
            };
            Some(compare_sides(base.side(), current, &o.result.tolerances)?)
        }
        None => None,
    };
    if !o.result.no_gates {
        let view = gate::gate_view(&mut run.summary, gates)?;
        run.summary.gates = gate::evaluate(gates, &view);
    }
    let written = (|| {
        folder::begin(out)?;
        folder::write_data(out, &run)?;
        if let Some(f) = shard_file {
            f.write(out)?;
        }
        folder::write_report(out, &run, comparison.as_ref())?;
        if o.result.export.contains(&Export::Hgrm) {
            folder::write_hgrm(out, &run)?;
        }
        folder::write_summary(out, &run.summary)
    })();
    // A folder that cannot take the report (a full disk) must not take the
    // measurement with it: an hour's live run printed nothing but "No
    // space left on device" (found by probing). Its figures are printed,
    // even with --quiet, as they are in no file, and the error follows.
    let quiet = o.result.quiet && written.is_ok();
    if written.is_ok()
        && let Some(path) = &o.result.junit
    {
        let s = &run.summary;
        let meta = junit::Meta {
            scenario: s.scenario.name.clone(),
            timestamp: Some(stamp.to_owned()),
            time_s: started.elapsed().as_secs_f64(),
            engine: Some(s.engine.as_str().to_owned()),
            properties: run_properties(s),
            interrupted: s.run.interrupted,
        };
        write_junit(path, &meta, Some(&s.gates), comparison.as_ref())?;
    }
    let mut stdout = std::io::stdout().lock();
    if !quiet {
        crate::report::terminal(&run.summary, &mut stdout)?;
        if written.is_ok() {
            writeln!(stdout, "report     {}", out.join("report.html").display())?;
        }
    }
    let regressed = comparison.as_ref().is_some_and(Comparison::failed);
    if let Some(c) = &comparison {
        print_comparison(&mut stdout, c, quiet)?;
    }
    // Failed gates come last, where a CI log is read.
    let failed = print_gates(&mut stdout, &run.summary.gates, quiet)?;
    written.context("the report could not be written; its figures are printed above, in no file")?;
    Ok(if run.summary.run.interrupted {
        Exit::Interrupted
    } else if failed || regressed {
        Exit::GatesFailed
    } else {
        Exit::Success
    })
}

/// The JUnit properties of a run: what makes it reproducible.
fn run_properties(s: &crate::summary::Summary) -> Vec<(String, String)> {
    vec![
        ("scenario".into(), s.scenario.name.clone()),
        ("seed".into(), s.seed.to_string()),
        ("engine".into(), s.engine.as_str().to_owned()),
        ("scenario.fingerprint".into(), s.scenario.fingerprint.clone()),
        ("kfsim.version".into(), s.kfsim_version.clone()),
        ("interrupted".into(), s.run.interrupted.to_string()),
    ]
}

fn compare_sides(
    base: compare::Side<'_>,
    cur: compare::Side<'_>,
    args: &[String],
) -> anyhow::Result<Comparison> {
    let summaries = [base.summary, cur.summary];
    let valid = compare::SummaryPaths(&summaries);
    let tolerances = args
        .iter()
        .map(|a| compare::parse_tolerance_arg(a, &valid).map_err(|m| ArgError(m).into()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(compare::compare_runs(base, cur, &tolerances))
}

/// Refuse an `--out` that cannot be a folder (a file there, or where a
/// folder above it should be) before anything runs: a plan found it only
/// after its whole search, and exited 3 (found by probing).
pub(super) fn out_folder(out: &Path) -> Result<(), ArgError> {
    match out.ancestors().find(|a| a.is_file()) {
        Some(file) if file == out => {
            Err(ArgError(format!("--out {}: a file is there; --out names a folder", out.display())))
        }
        Some(file) => {
            Err(ArgError(format!("--out {}: {} is a file, not a folder", out.display(), file.display())))
        }
        None => Ok(()),
    }
}

/// Make the folder of the `--junit` file as `--out` makes its own, before
/// anything runs: a missing one failed only after the run, with exit 3
/// hiding the gates' verdict (found by probing).
pub(super) fn junit_folder(path: &Path) -> anyhow::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // a file in the way is the argument's mistake, not a failure to write
        Some(dir) => std::fs::create_dir_all(dir).map_err(|e| {
            let why = match dir.ancestors().find(|a| a.is_file()) {
                Some(file) => format!("{} is a file, not a folder", file.display()),
                None => e.to_string(),
            };
            ArgError(format!("--junit {}: cannot make its folder {}: {why}", path.display(), dir.display()))
                .into()
        }),
        None => Ok(()),
    }
}

fn write_junit(
    path: &Path,
    meta: &junit::Meta,
    gates: Option<&[GateResult]>,
    comparison: Option<&Comparison>,
) -> anyhow::Result<()> {
    let mut xml = Vec::new();
    junit::write(meta, gates, comparison, &mut xml)?;
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
    let failing: Vec<&compare::Row> = c.rows.iter().filter(|r| r.status.fails()).collect();
    // unlike runs are said even with --quiet: they change what a verdict means
    for n in &c.notes {
        writeln!(w, "warning    {n}")?;
    }
    if !quiet {
        writeln!(w, "baseline   {} metrics compared, {}", c.rows.len(), c.mode.describe())?;
        for r in c.rows.iter().filter(|r| !r.status.fails() && !matches!(r.status, compare::Status::Ok)) {
            writeln!(w, "  {}", comparison_line(r))?;
        }
    }
    for r in &failing {
        writeln!(w, "  {}", comparison_line(r))?;
    }
    // in exact mode a change either way fails, and is called what it is
    let verdict = if c.exact { "CHANGED   " } else { "REGRESSED " };
    if !failing.is_empty() {
        writeln!(w, "{verdict} {} metric(s) against the baseline", failing.len())?;
    }
    Ok(())
}

fn comparison_line(r: &compare::Row) -> String {
    let status = format!("{:?}", r.status).to_lowercase();
    format!("{status:<9} {}", r.describe())
}

/// Say which files beside a compared summary did not read: the
/// comparison goes on without them, and may then not tell a change from
/// seed noise.
pub(super) fn warn_unread(sides: &[&folder::RunFiles]) {
    for why in folder::unread_once(sides) {
        errln!("warning: {why}; compared without it");
    }
}

pub(super) fn cmd_compare(args: &CompareArgs) -> anyhow::Result<Exit> {
    let started = std::time::Instant::now();
    let stamp = super::iso_stamp(super::now_secs());
    let base = folder::read_run_files(&args.baseline).map_err(|e| ArgError(format!("{e:#}")))?;
    let cur = folder::read_run_files(&args.current).map_err(|e| ArgError(format!("{e:#}")))?;
    warn_unread(&[&base, &cur]);
    if let Some(out) = &args.out {
        out_folder(out)?;
    }
    if let Some(path) = &args.junit {
        junit_folder(path)?;
    }
    let c = compare_sides(base.side(), cur.side(), &args.tolerances)?;
    let mut stdout = std::io::stdout().lock();
    print_comparison(&mut stdout, &c, false)?;
    if let Some(path) = &args.junit {
        let name = cur.summary.pointer("/scenario/name").and_then(|v| v.as_str()).unwrap_or("kfsim");
        let prop = |side: &str, v: &serde_json::Value, p: &str| {
            (
                format!("{side}.{}", p.trim_start_matches('/').replace('/', ".")),
                v.pointer(p).map_or("?".into(), |x| x.to_string().trim_matches('"').to_owned()),
            )
        };
        let mut properties = Vec::new();
        for (side, v) in [("baseline", &base.summary), ("current", &cur.summary)] {
            for p in ["/scenario/name", "/seed", "/engine", "/scenario/fingerprint"] {
                properties.push(prop(side, v, p));
            }
        }
        let meta = junit::Meta {
            scenario: name.to_owned(),
            timestamp: Some(stamp),
            time_s: started.elapsed().as_secs_f64(),
            engine: None,
            properties,
            interrupted: false,
        };
        write_junit(path, &meta, None, Some(&c))?;
    }
    if let Some(out) = &args.out {
        folder::write_comparison_page(out, &base, &cur, &c)?;
        writeln!(stdout, "report     {}", out.join("compare.html").display())?;
    }
    if !c.failed() {
        writeln!(stdout, "ok         no regression")?;
    }
    Ok(if c.failed() { Exit::GatesFailed } else { Exit::Success })
}

pub(super) fn cmd_report(args: &ReportArgs) -> anyhow::Result<Exit> {
    // a run's summary.json stands for its folder, as `compare` takes
    // either (it was "reading a/summary.json/summary.json: Not a directory")
    let dir = match args.dir.parent() {
        Some(parent) if args.dir.is_file() && args.dir.file_name() == Some("summary.json".as_ref()) => {
            if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            }
        }
        _ => args.dir.as_path(),
    };
    if dir.is_file() {
        return Err(ArgError(format!("{} is a file: kfsim report takes a run folder", dir.display())).into());
    }
    let run = folder::read(dir).map_err(|e| ArgError(format!("{e:#}")))?;
    let comparison = folder::read_comparison(dir)?;
    folder::write_report(dir, &run, comparison.as_ref())?;
    outln!("report     {}", dir.join("report.html").display());
    Ok(Exit::Success)
}

/// A live run: the embedded reference service on a loopback port unless a
/// target is given, then the live engine against it with a progress bar.
fn run_live(
    sc: &Scenario,
    args: &RunArgs,
    shard: crate::tally::Shard,
) -> anyhow::Result<(Measured, Option<crate::tally::RunState<Settled>>)> {
    let wecom = match &args.middleware.middleware {
        Some(url) => {
            let mut setup = WeComSetup::from_scenario(sc, url, args.middleware.listen)?;
            setup.verify_within = Duration::from_micros(args.middleware.callback_wait);
            Some(setup)
        }
        None => None,
    };
    let target = match &wecom {
        Some(_) => None,
        None => args.target.clone().or_else(|| sc.target_url.clone()),
    };
    let mut opts = LiveOptions {
        time_scale: args.time_scale.unwrap_or(sc.time_scale),
        target_label: target.clone().unwrap_or_else(|| "embedded".into()),
        // checked with the rest below; for the embedded service, a valid
        // stand-in (its port is known later)
        target: target.clone().unwrap_or_else(|| "http://127.0.0.1:1".into()),
        ..Default::default()
    };
    if let Some((id, secret)) = &sc.target_credentials {
        opts.corpid = id.clone();
        opts.corpsecret = secret.clone();
    }
    opts.shard = shard;
    if shard.is_part() && target.is_none() {
        return Err(ArgError(
            "--shard needs one --target all shards drive (an embedded service per shard would be N small services)"
                .into(),
        )
        .into());
    }
    opts.shards_dir = args.barrier.clone();
    opts.start_at = match (args.start_at, &args.barrier) {
        // past the year 9999 no clock converts it (a panic, not an error)
        (Some(s), _) if (0.0..=LAST_START_AT).contains(&s) => {
            Some(std::time::UNIX_EPOCH + Duration::from_secs_f64(s))
        }
        (Some(s), _) => {
            // as given, not as the 300 digits of 1e300
            let given = if s.abs() < 1e15 { format!("{s}") } else { format!("{s:e}") };
            return Err(ArgError(format!(
                "--start-at {given}: seconds since the epoch, from 0 to {LAST_START_AT} (the end of the year 9999)"
            ))
            .into());
        }
        (None, Some(dir)) => {
            if !args.result.quiet {
                errln!("live: shard {shard} waiting at the barrier {} for the others", dir.display());
            }
            let stop = super::stop_flag();
            Some(super::shard::barrier(dir, shard, Duration::from_micros(args.barrier_wait), &stop)?)
        }
        (None, None) => None,
    };
    if let Some(w) = &wecom {
        opts.target_label = format!("middleware {}", w.callbacks.url);
        // the middleware is the bot
        opts.play_bots = false;
        opts.corpid = w.corpid.clone();
        opts.corpsecret = w.corpsecret.clone();
    }
    opts.check().map_err(|m| {
        let m = m.replace("the time scale", "--time-scale").replace("target ", "--target ");
        ArgError(m)
    })?;
    crate::live::check_load(sc, opts.time_scale).map_err(ArgError)?;
    if !args.result.quiet {
        errln!(
            "live: {} of scenario time at ×{} takes about {:.0} s against {}, on {}",
            human_ms(Some(sc.duration_us as f64 / 1e3)),
            opts.time_scale,
            sc.duration_us as f64 / 1e6 / opts.time_scale,
            match &wecom {
                Some(w) => format!("the middleware at {} (kfsim's WeCom on {})", w.callbacks.url, w.listen),
                None => target.clone().unwrap_or_else(|| "the embedded service".into()),
            },
            match super::serve::cpus() {
                1 => "one thread".to_string(),
                n => format!("{n} threads"),
            }
        );
    }
    if let Some(w) = &wecom
        && !args.result.quiet
    {
        errln!("live: waiting (at most {:?}) for the callback URL to verify", w.verify_within);
    }
    let (bar, mut bar_progress) = progress_bar(sc, args.result.quiet);
    let shown = bar.clone();
    let mut told = false;
    let (mut told_wait, mut told_down) = (args.result.quiet, false);
    let stop_within = crate::live::stop_within(&opts);
    let mut progress = move |p: &crate::observe::Progress| {
        let go_on = bar_progress(p);
        // Once the run has begun (a run still reaching its target stops at
        // once, writing nothing), a stop gives the sessions and the calls
        // in flight a short grace: it waited out the calls' timeouts, half
        // a minute and more with nothing said against a target that
        // stopped answering, in which a second Ctrl-C pressed to get on
        // threw the report away (found by probing).
        if !go_on && !told && p.now_us > 0 {
            told = true;
            // what the wait after the last arrival would say, this says
            told_wait = true;
            shown.suspend(|| errln!("{}", interrupted_note(stop_within)));
        }
        // After the last arrival the run waits for the sessions still open
        // and the calls in flight: against a target that died, half a
        // minute and more with nothing said (found by probing).
        if let Some(e) = &p.ending {
            if e.target_down_for.is_some() && !told_down {
                told_down = true;
                shown.suspend(|| errln!("{}", ending_note(e)));
            } else if e.waited >= ENDING_NOTICE && !told_wait {
                told_wait = true;
                shown.suspend(|| errln!("{}", ending_note(e)));
            }
        }
        go_on
    };
    let measured = match &wecom {
        // a middleware's section is kfsim's WeCom's, outside the merged state
        Some(w) => run_live_middleware(sc, opts, w, &mut progress).map(|m| (m, None)),
        None => run_live_state(sc, opts, target.is_none(), &mut progress).map(|(m, s)| (m, Some(s))),
    };
    bar.finish_and_clear();
    let (measured, state) = measured?;
    if let Some(live) = &measured.summary.live
        && let Some(d) = live.distortion.filter(|&d| d > crate::report::DISTORTION_WARN)
        && live.time_scale <= 1.0
    {
        // nothing is compressed: the wait is the target's and the round
        // trip's (telling to run at ×1 a run at ×1 helped nobody)
        errln!(
            "warning: sessions the target assigned at once waited {} (median, live.overhead_ms), {:.0}% of the \
             service-level threshold: every wait carries that much of the target's latency and the round trip",
            human_ms(live.overhead_ms),
            d * 100.0
        );
    } else if let Some(live) = &measured.summary.live
        && let Some(d) = live.distortion.filter(|&d| d > crate::report::DISTORTION_WARN)
    {
        // a driver short of CPU adds its own lateness to that overhead:
        // a lower scale helps, but so would the CPU it lacked
        let starved = if live.driver_saturated().is_some() {
            " (part of that overhead is the driver's own lateness: see live.saturated below)"
        } else {
            ""
        };
        errln!(
            "warning: at ×{} the run's own overhead ({} of wall time per step) becomes {:.0}% of the \
             service-level threshold in scenario time: waits measure the compression, not the target; \
             run at ×{:.0} or less{starved}",
            live.time_scale,
            human_ms(live.overhead_ms),
            d * 100.0,
            live.max_time_scale(crate::report::DISTORTION_WARN).unwrap_or(1.0).floor().max(1.0)
        );
    }
    if let Some(m) = &measured.summary.middleware {
        warn_middleware(m, sc, measured.summary.live.as_ref().map_or(1.0, |l| l.time_scale));
    }
    if let Some(r) = measured.summary.live.as_ref().map(|l| &l.reconnects).filter(|r| r.count > 0) {
        errln!(
            "warning: the target forgot the run's channels {} time(s) (it restarted?): the driver opened new ones; \
             the sessions it had ({} held, {} waiting) and {} of their messages were lost with them (live.reconnects)",
            r.count,
            r.held,
            r.waiting,
            r.messages_lost
        );
    }
    if let Some(live) = &measured.summary.live {
        warn_driver(live);
    }
    if let Some(busy) = measured.summary.live.as_ref().map(|l| l.busy_at_start).filter(|&n| n > 0) {
        errln!(
            "warning: the target's servicers already held {busy} session(s) when the run began \
             (a run killed before this one?): the figures are skewed until those end"
        );
    }
    if let Some(failed) = measured.summary.failed_target() {
        errln!(
            "warning: none of the {} sessions got through and the target failed calls ({failed}): the run \
             measured its failure, not its reception (http.*)",
            measured.summary.sessions.offered
        );
    }
    if measured.summary.run.interrupted {
        errln!("interrupted: writing the report of what ran");
    }
    Ok((measured, state))
}

/// Assemble a live run: a runtime, the embedded reference service when
/// `embedded` (its URL replaces `opts.target`), the live engine with
/// `progress`, then the service stopped.
pub fn run_live_with(
    sc: &Scenario,
    opts: LiveOptions,
    embedded: bool,
    progress: &mut crate::live::ProgressFn<'_>,
) -> anyhow::Result<Measured> {
    Ok(run_live_state(sc, opts, embedded, progress)?.0)
}

/// [`run_live_with`], and the run's state for a merge.
pub fn run_live_state(
    sc: &Scenario,
    mut opts: LiveOptions,
    embedded: bool,
    progress: &mut crate::live::ProgressFn<'_>,
) -> anyhow::Result<(Measured, crate::tally::RunState<Settled>)> {
    // the driver's connections, and the embedded service's, are files
    super::serve::raise_fd_limit();
    let rt = super::serve::runtime(super::serve::cpus())?;
    rt.block_on(async {
        let service = if embedded {
            let (url, service) = super::serve::start_embedded(sc).await?;
            opts.target = url;
            Some(service)
        } else {
            None
        };
        let measured = crate::live::run_with_state(sc, &opts, progress).await;
        if let Some(service) = service {
            service.stop(Duration::from_secs(5)).await;
        }
        measured
    })
}

/// Assemble a run against a middleware: a runtime, kfsim's WeCom for it
/// (started, then the callback URL verified), the live engine with
/// `progress` against that WeCom, what the middleware did added to the
/// summary, then WeCom stopped.
pub fn run_live_middleware(
    sc: &Scenario,
    mut opts: LiveOptions,
    setup: &WeComSetup,
    progress: &mut crate::live::ProgressFn<'_>,
) -> anyhow::Result<Measured> {
    super::serve::raise_fd_limit();
    let rt = super::serve::runtime(super::serve::cpus())?;
    rt.block_on(async {
        let (url, embedded, service) = super::serve::start_wecom(sc, setup).await?;
        opts.target = url;
        let measured = crate::live::run(sc, &opts, progress).await;
        let figures = service.middleware_summary(opts.time_scale, sc.service_level_us).await;
        embedded.stop(Duration::from_secs(5)).await;
        let mut measured = measured?;
        measured.summary.middleware = Some(figures);
        Ok(measured)
    })
}

/// Say what a valid scenario most likely did not mean.
fn warn_scenario(sc: &Scenario) {
    for w in sc.warnings().into_iter().chain(crate::theory::unstable(sc)) {
        errln!("warning: {w}");
    }
}

/// Say what makes a middleware run's figures doubtful: a time scale that
/// multiplies the middleware's latency into a share of the service level,
/// callbacks that failed.
fn warn_middleware(m: &crate::summary::MiddlewareSummary, sc: &Scenario, scale: f64) {
    if let Some(effect) = m.scale_effect.filter(|&e| e > SCALE_EFFECT_WARN) {
        errln!(
            "warning: at ×{scale} the middleware's median added latency ({}) becomes {} of scenario time, \
             {:.0}% of the service-level threshold ({}): customers wait for the scale, not the middleware; \
             lower --time-scale",
            human_ms(m.routed_ms.p50),
            human_ms(m.routed_ms.p50.map(|ms| ms * scale)),
            effect * 100.0,
            human_ms(Some(sc.service_level_us as f64 / 1e3)),
        );
    }
    if m.callbacks.failed > 0 {
        errln!(
            "warning: {} of {} callbacks to the middleware failed after every retry",
            m.callbacks.failed,
            m.callbacks.sent
        );
    }
}

/// A wait after a live run's last arrival this long is said on the
/// console, once.
const ENDING_NOTICE: Duration = Duration::from_secs(2);

/// What a live run waits for after its last arrival, and at most how long;
/// or why it stops waiting.
fn ending_note(e: &crate::observe::Ending) -> String {
    let secs = |d: Duration| d.as_secs_f64().ceil();
    match e.target_down_for {
        Some(down) => format!(
            "warning: the target has taken no connection for {:.0} s (each refused or not answered): it is down, \
             and the run stops waiting for its {} session(s) still open (counted as a drain's end leaves them), \
             then writes its report",
            down.as_secs_f64().floor(),
            e.open
        ),
        None => format!(
            "live: the arrivals are over; waiting at most {:.0} s more for the {} session(s) still open to end \
             and the calls in flight to be answered",
            secs(e.at_most),
            e.open
        ),
    }
}

/// What a live run does once stopped (Ctrl-C), ending within `within`.
fn interrupted_note(within: Duration) -> String {
    format!(
        "interrupted: waiting at most {:.0} s for the sessions still open to end and the calls in flight to be \
         answered (those still in flight then are cut, counted in live.calls_cut_at_end), then writing the \
         report of what ran; a second Ctrl-C ends at once, without it",
        within.as_secs_f64().ceil()
    )
}

/// Above this share of the service-level threshold, the time scale's
/// effect on a middleware's latency is warned about.
pub const SCALE_EFFECT_WARN: f64 = 0.1;

/// What made a live run's figures less than the target's alone, said
/// even with `--quiet`: a gate may still pass on them.
fn warn_driver(live: &crate::summary::LiveInfo) {
    if let Some(w) = saturation_warning(live) {
        errln!("{w}");
    }
    warn_shed_missed(live);
}

/// [`warn_driver`] but the driver's saturation (which `kfsim merge` says
/// per shard).
pub(super) fn warn_shed_missed(live: &crate::summary::LiveInfo) {
    if live.shed > 0 {
        errln!(
            "warning: {} arrivals were more than 5 s behind their schedule and were shed, counted offered and \
             rejected (live.shed): the target left the driver's requests unanswered, or the driver lacked CPU \
             (see live.saturated)",
            live.shed
        );
    }
    let m = &live.missed;
    if m.customers + m.servicers > 0 {
        errln!(
            "warning: the target dropped {} events of the customers' queue and {} of the servicers' before the \
             driver read them (live.missed): the sessions they were about may be counted abandoned or \
             unfinished and their replies unanswered",
            m.customers,
            m.servicers
        );
    }
}

/// The warning of a live run whose driver was behind for much of it
/// ([`LiveInfo::driver_saturated`](crate::summary::LiveInfo::driver_saturated)),
/// with what to do about it.
fn saturation_warning(live: &crate::summary::LiveInfo) -> Option<String> {
    let share = live.driver_saturated()?;
    // the embedded service takes its CPU from the driver's
    let embedded = if live.target == "embedded" {
        "; the embedded service shares the driver's CPU: run it apart (kfsim serve) and --target it"
    } else {
        ""
    };
    Some(format!(
        "warning: the driver was behind for {:.0}% of the run (live.saturated: its own wake-ups more than 10 ms \
         late): it was short of CPU, and the latencies, deliveries and service level may measure the driver \
         rather than the target; lower the rate or the time scale, shard the run (--shard I/N, on more cores \
         or machines), or give the driver more CPU{embedded}",
        share * 100.0
    ))
}

/// Run the simulator with a progress bar on a terminal, stopping cleanly on
/// the first Ctrl-C or SIGTERM (a second one ends the process at once).
fn simulate_interactive(sc: &Scenario, quiet: bool) -> (Measured, crate::tally::RunState<Settled>) {
    let (bar, mut progress) = progress_bar(sc, quiet);
    let mut metrics = crate::metrics::Metrics::new(sc);
    metrics.keep_interval_histograms();
    let stats = crate::sim::run_with_progress(sc, &mut metrics, &mut progress);
    let state = crate::tally::RunState {
        end_us: stats.end_us,
        sessions: stats.sessions,
        peak_in_flight: stats.peak_in_flight,
        shed: stats.shed,
        interrupted: stats.interrupted,
        horizon: stats.horizon,
        wall_s: None,
        metrics: metrics.settled(stats.end_us),
        live: None,
    };
    let measured = metrics.finish_all(sc, &stats, None);
    bar.finish_and_clear();
    if measured.summary.run.interrupted {
        errln!("interrupted: writing the report of what ran");
    }
    if stats.horizon {
        errln!(
            "warning: the run stopped at the simulator's clock horizon ({:.0} years of scenario time) with sessions \
             still open (run.horizon): they are counted as a drain's end leaves them",
            crate::sim::HORIZON_US as f64 / 3.156e13
        );
    }
    if stats.shed > 0 {
        errln!(
            "warning: {} arrivals were refused (counted rejected, run.shed): {} sessions were in flight, \
             far beyond what the agents serve; set the account's queue_limit or the entries' patience",
            stats.shed,
            crate::sim::MAX_IN_FLIGHT
        );
    }
    (measured, state)
}

#[cfg(test)]
mod tests {
    use super::{ending_note, interrupted_note, saturation_warning};
    use crate::summary::{LatencyStats, LiveInfo, SATURATED_WARN};

    fn live(target: &str, saturated: Option<f64>) -> LiveInfo {
        LiveInfo {
            target: target.into(),
            time_scale: 120.0,
            wall_s: 30.0,
            messages_per_s: None,
            replies_per_s: None,
            open_at_end: 0,
            gave_up: Default::default(),
            shed: 0,
            busy_at_start: 0,
            calls_cut_at_end: 0,
            missed: Default::default(),
            overhead_ms: None,
            distortion: None,
            reconnects: Default::default(),
            saturated,
            driver_lag_ms: LatencyStats::default(),
        }
    }

    /// A driver behind for more than a fifth of the run is warned about,
    /// with the ways out; one that kept up, or never ran, is not.
    #[test]
    fn a_saturated_driver_is_warned_about_with_what_to_do() {
        let w = saturation_warning(&live("http://10.0.0.5:8080", Some(0.62))).expect("warned");
        assert!(w.contains("behind for 62% of the run"), "{w}");
        for remedy in ["lower the rate or the time scale", "--shard", "more CPU"] {
            assert!(w.contains(remedy), "{remedy}: {w}");
        }
        assert!(!w.contains("embedded"), "{w}");
        let embedded = saturation_warning(&live("embedded", Some(0.62))).expect("warned");
        assert!(embedded.contains("run it apart (kfsim serve) and --target it"), "{embedded}");
        for quiet in [None, Some(0.0), Some(SATURATED_WARN)] {
            assert_eq!(saturation_warning(&live("embedded", quiet)), None, "{quiet:?}");
        }
    }

    /// The wait after the last arrival says what it waits for and at most
    /// how long; a target that is down, that the run stops waiting.
    #[test]
    fn the_wait_after_the_last_arrival_is_said() {
        use crate::observe::Ending;
        use std::time::Duration;
        let e = Ending {
            open: 12,
            waited: Duration::from_secs(2),
            at_most: Duration::from_millis(58_200),
            target_down_for: None,
        };
        let note = ending_note(&e);
        assert!(note.contains("waiting at most 59 s more for the 12 session(s) still open"), "{note}");
        let down = ending_note(&Ending { target_down_for: Some(Duration::from_millis(5_300)), ..e });
        assert!(down.starts_with("warning: the target has taken no connection for 5 s"), "{down}");
        assert!(down.contains("stops waiting for its 12 session(s)"), "{down}");
    }

    /// A stop says how long the run may still take, and what becomes of
    /// the calls it does not wait for.
    #[test]
    fn a_stop_says_what_it_waits_for_and_how_long() {
        let opts = crate::live::LiveOptions::default();
        let note = interrupted_note(crate::live::stop_within(&opts));
        assert!(note.contains("waiting at most 8 s for the sessions still open to end"), "{note}");
        assert!(note.contains("cut, counted in live.calls_cut_at_end"), "{note}");
        let short = crate::live::LiveOptions { drain: std::time::Duration::from_secs(1), ..opts };
        assert!(interrupted_note(crate::live::stop_within(&short)).contains("at most 4 s"));
    }
}
