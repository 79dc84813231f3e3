//! `kfsim merge DIR… --out DIR`: the result of the whole from the folders
//! of its shards (`crate::merge` reads, checks and combines them): a run's
//! folder, gates, baseline and JUnit as `kfsim run` writes them; a sweep's
//! or a plan's folder as `kfsim sweep` or `kfsim plan` writes it.

use std::io::Write;
use std::path::PathBuf;

use super::run::{Outputs, ResultArgs, write_run};
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
    #[command(flatten)]
    /// What the merged run's report checks and writes (--baseline, --junit and --export: a run's shards only).
    pub result: ResultArgs,
}

/// `kfsim merge`.
pub fn cmd_merge(args: &MergeArgs) -> anyhow::Result<Exit> {
    let started = std::time::Instant::now();
    let stamp = super::iso_stamp(super::now_secs());
    // writing the whole over one of its parts would leave that folder
    // the whole's report beside the part's shard.json (found by probing)
    let same = |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    let folder = |d: &PathBuf| {
        if d.is_file() { d.parent().map(|p| p.to_path_buf()).unwrap_or_default() } else { d.clone() }
    };
    if let Some(d) = args.dirs.iter().find(|d| same(&folder(d), &args.out)) {
        return Err(ArgError(format!(
            "--out {} is one of the shard folders ({}): merge into another folder",
            args.out.display(),
            d.display()
        ))
        .into());
    }
    // Ctrl-C, SIGTERM or SIGHUP while reading: stop before writing
    // anything; once writing, finish it (each file is written whole)
    let stop = super::stop_flag();
    let stopped = || {
        let now = stop.load(std::sync::atomic::Ordering::Relaxed);
        if now {
            errln!("interrupted: nothing written");
        }
        now
    };
    let shards = merge::read_shards(&args.dirs)?;
    if stopped() {
        return Ok(Exit::Interrupted);
    }
    let kind = shards[0].file.kind;
    if kind != Kind::Run
        && (args.result.baseline.is_some() || args.result.junit.is_some() || !args.result.export.is_empty())
    {
        return Err(ArgError("--baseline, --junit and --export apply to the shards of a run".into()).into());
    }
    match kind {
        Kind::Sweep => return super::plan::merge_sweep(&shards, &args.out),
        Kind::Plan => return super::plan::merge_plan(&shards, &args.out),
        Kind::Run => {}
    }
    let baseline = args
        .result
        .baseline
        .as_deref()
        .map(|p| folder::read_run_files(p).map_err(|e| ArgError(format!("--baseline: {e:#}"))))
        .transpose()?;
    baseline.iter().for_each(|b| super::run::warn_unread(&[b]));
    let merged = merge::merge_run(&shards)?;
    let src = &shards[0].file.source;
    let (sc, text, file, sets) = (&merged.scenario, &src.text, &src.file, &src.sets);
    let gates = if args.result.no_gates {
        // as `kfsim run --no-gates`
        let (unbound, malformed) = gate::unchecked_given(sc, text, file, sets);
        for e in unbound {
            errln!("warning: {e} (not checked: --no-gates)");
        }
        malformed?;
        Vec::new()
    } else {
        gate::bind_given(sc, text, file, sets)?
    };
    if stopped() {
        return Ok(Exit::Interrupted);
    }
    let mut stderr = std::io::stderr().lock();
    if !args.result.quiet {
        writeln!(stderr, "merge: {} shard(s) of {}", shards.len(), merged.scenario.name)?;
    }
    for s in &merged.interrupted {
        // said even with --quiet: the figures cover less than the run
        writeln!(stderr, "warning: shard {s} was interrupted: the merged figures cover what it ran")?;
    }
    for (s, share) in &merged.saturated {
        writeln!(
            stderr,
            "warning: shard {s}'s driver was behind for {:.0}% of its run (its live.saturated: its own wake-ups \
             more than 10 ms late): it was short of CPU, and what it measured may measure its driver rather than \
             the target; give each shard its own cores, or split the run into more shards",
            share * 100.0
        )?;
    }
    drop(stderr);
    if let Some(live) = &merged.measured.summary.live {
        super::run::warn_shed_missed(live);
    }
    let o =
        Outputs { out: &args.out, result: &args.result, baseline: baseline.as_ref(), stamp: &stamp, started };
    write_run(&o, &gates, merged.measured, None)
}
