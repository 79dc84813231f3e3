//! `kfsim merge DIR… --out DIR`: the result of the whole from the folders
//! of its shards (`crate::merge` reads, checks and combines them): a run's
//! folder, gates, baseline and JUnit as `kfsim run` writes them; a sweep's
//! or a plan's folder as `kfsim sweep` or `kfsim plan` writes it.

use std::io::Write;
use std::path::PathBuf;

use super::run::{Export, Outputs, write_run};
use super::{ArgError, Exit};
use crate::gate;
use crate::merge::{self, Kind};
use crate::report::folder;

/// Arguments of `kfsim merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The shard folders: every shard of one live run, sweep or plan, each once.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where to write the merged run, sweep or plan folder.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
    /// Do not check the scenario's [gates].
    #[arg(long)]
    pub no_gates: bool,
    /// Compare the merged run with this earlier run (summary.json or run folder); exit 1 on a regression.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Tolerance for the baseline comparison (see `kfsim compare`).
    #[arg(long = "tolerance", value_name = "METRIC=VALUE", requires = "baseline")]
    pub tolerances: Vec<String>,
    /// Write the gates (and the baseline comparison) as JUnit XML.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Extra files to write into the merged run folder.
    #[arg(long, value_enum)]
    pub export: Vec<Export>,
}

/// `kfsim merge`.
pub fn cmd_merge(args: &MergeArgs) -> anyhow::Result<Exit> {
    let started = std::time::Instant::now();
    let stamp = super::iso_stamp(super::now_secs());
    let shards = merge::read_shards(&args.dirs)?;
    let kind = shards[0].kind;
    if kind != Kind::Run && (args.baseline.is_some() || args.junit.is_some() || !args.export.is_empty()) {
        return Err(ArgError("--baseline, --junit and --export apply to the shards of a run".into()).into());
    }
    match kind {
        Kind::Sweep => return super::plan::merge_sweep(&shards, &args.out),
        Kind::Plan => return super::plan::merge_plan(&shards, &args.out),
        Kind::Run => {}
    }
    let baseline = args
        .baseline
        .as_deref()
        .map(|p| folder::read_run_files(p).map_err(|e| ArgError(format!("--baseline: {e:#}"))))
        .transpose()?;
    let merged = merge::merge_run(&shards)?;
    let gates = if args.no_gates { Vec::new() } else { gate::bind(&merged.scenario)? };
    let mut stderr = std::io::stderr().lock();
    if !args.quiet {
        writeln!(stderr, "merge: {} shard(s) of {}", shards.len(), merged.scenario.name)?;
    }
    for s in &merged.interrupted {
        // said even with --quiet: the figures cover less than the run
        writeln!(stderr, "warning: shard {s} was interrupted: the merged figures cover what it ran")?;
    }
    let o = Outputs {
        out: &args.out,
        quiet: args.quiet,
        no_gates: args.no_gates,
        baseline: baseline.as_ref(),
        tolerances: &args.tolerances,
        junit: args.junit.as_deref(),
        export: &args.export,
        stamp: &stamp,
        started,
    };
    write_run(&o, &gates, merged.measured, None)
}
