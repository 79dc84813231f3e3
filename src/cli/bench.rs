//! `kfsim bench`: the simulator's speed and memory, each scenario measured
//! in a process of its own.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;

use super::{ArgError, Exit};
use crate::scenario::Scenario;

/// Arguments of `kfsim bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Scenarios to measure [default: scenarios/bench-mmc.toml and scenarios/bench-chat.toml].
    pub scenarios: Vec<PathBuf>,
    /// Sessions per measurement (the duration is set to reach about this
    /// many), at most a billion: the bound on arrivals in one run.
    #[arg(long, default_value_t = 5_000_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub sessions: u64,
    /// Measure the engine alone: every observation is counted, none folded
    /// into metrics, time series or histograms (what the metrics cost is
    /// the difference from a run without it).
    #[arg(long)]
    pub engine_only: bool,
    /// Measure in this process and print one JSON line (used by `bench` itself,
    /// so that each scenario's peak memory is its own).
    #[arg(long, hide = true)]
    pub child: bool,
}

pub(super) fn cmd_bench(args: &BenchArgs) -> anyhow::Result<Exit> {
    if args.child {
        end_with_parent();
        let path = args.scenarios.first().context("--child needs one scenario")?;
        let sc = bench_scenario(path, args.sessions)?;
        let started = Instant::now();
        let sessions = if args.engine_only {
            let mut observations = 0u64;
            let stats = crate::sim::run(&sc, &mut |_: crate::observe::Obs| observations += 1);
            // so that the observations are made, not optimised away with an unused count
            std::hint::black_box(observations);
            stats.sessions
        } else {
            crate::sim::simulate(&sc).run.sessions_total
        };
        let wall = started.elapsed().as_secs_f64();
        let line = serde_json::json!({
            "scenario": sc.name,
            "sessions": sessions,
            "wall_s": wall,
            "sessions_per_s": sessions as f64 / wall,
            "peak_rss_mb": peak_rss_mb(),
        });
        outln!("{line}");
        return Ok(Exit::Success);
    }
    let scenarios = if args.scenarios.is_empty() {
        vec![PathBuf::from("scenarios/bench-mmc.toml"), PathBuf::from("scenarios/bench-chat.toml")]
    } else {
        args.scenarios.clone()
    };
    let exe = std::env::current_exe().context("locating the kfsim binary")?;
    if args.engine_only {
        outln!("# the engine alone: observations counted, not measured");
    }
    outln!("{:<16}{:>14}{:>10}{:>18}{:>14}", "scenario", "sessions", "wall", "sessions/s", "peak RSS");
    for path in &scenarios {
        // Validate here so a bad file is exit 2, not a child's failure.
        bench_scenario(path, args.sessions)?;
        let mut child = std::process::Command::new(&exe)
            .args(["bench", "--child", "--sessions", &args.sessions.to_string()])
            .args(args.engine_only.then_some("--engine-only"))
            .arg(path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("starting the benchmark process")?;
        // held open, never written, until the child is done: see `end_with_parent`
        let lifeline = child.stdin.take();
        let output = child.wait_with_output().context("waiting for the benchmark process")?;
        drop(lifeline);
        anyhow::ensure!(
            output.status.success(),
            "benchmark of {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        outln!(
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

/// End this benchmark process when the `bench` that started it ends. A
/// parent killed (SIGTERM from a CI job's timeout, SIGHUP, SIGKILL) left
/// its child measuring for as long as a billion sessions take, orphaned,
/// on a machine that had moved on (found by probing). The parent holds
/// the write end of this process's stdin and never writes: the kernel
/// closes it however the parent ends, and the read here sees the end.
fn end_with_parent() {
    std::thread::spawn(|| {
        use std::io::Read as _;
        let mut sink = [0u8; 64];
        loop {
            match std::io::stdin().read(&mut sink) {
                Ok(0) => std::process::exit(Exit::Interrupted as i32),
                Err(e) if e.kind() != std::io::ErrorKind::Interrupted => {
                    std::process::exit(Exit::Interrupted as i32)
                }
                _ => {}
            }
        }
    });
}

/// The scenario at `path` with its duration set so that about `sessions`
/// sessions arrive, and no warm-up.
fn bench_scenario(path: &Path, sessions: u64) -> anyhow::Result<Scenario> {
    let mut sc = Scenario::load(path, &[])?;
    let rate: f64 = sc.entries.iter().map(|e| e.rate_per_s).sum();
    let duration_us = (sessions as f64 / rate) * 1e6;
    // the longest duration a scenario file may give; an argument that
    // asks for more is invalid (exit 2), as a scenario that gives more is
    if duration_us.is_nan() || duration_us > 1e17 {
        let years = duration_us / 3.156e13;
        let took = if years.is_finite() { format!("{years:.1e} years") } else { "for ever".into() };
        return Err(ArgError(format!(
            "{}: {sessions} sessions at its rate ({rate:.3e}/s) would take {took} of virtual time (at most \
             1e17 µs): ask for fewer",
            path.display()
        ))
        .into());
    }
    sc.duration_us = duration_us.ceil() as u64;
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
