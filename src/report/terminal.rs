//! The compact terminal summary printed after a run.

use std::io::{self, Write};

use super::human_ms;
use crate::summary::{LatencyStats, Summary};

fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{:.2}%", v * 100.0))
}

fn latency_row(w: &mut dyn Write, name: &str, s: &LatencyStats) -> io::Result<()> {
    writeln!(
        w,
        "  {name:<15}{:>10}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}",
        s.count,
        human_ms(s.mean),
        human_ms(s.p50),
        human_ms(s.p90),
        human_ms(s.p95),
        human_ms(s.p99),
        human_ms(s.max),
    )
}

/// The compact terminal summary printed after a run.
pub fn terminal(s: &Summary, w: &mut dyn Write) -> io::Result<()> {
    writeln!(
        w,
        "{} · engine {} · seed {} · {} of arrivals after {} warm-up{}",
        s.scenario.name,
        s.engine,
        s.seed,
        human_ms(Some(s.scenario.duration_s * 1e3 - s.scenario.warmup_s * 1e3)),
        human_ms(Some(s.scenario.warmup_s * 1e3)),
        if s.run.interrupted { " · INTERRUPTED: partial results" } else { "" }
    )?;
    let c = &s.sessions;
    writeln!(
        w,
        "sessions   offered {} · answered {} · abandoned {} · rejected {} · unfinished {}",
        c.offered, c.answered, c.abandoned, c.rejected, c.unfinished
    )?;
    writeln!(
        w,
        "service    SL({}) {} · waited {} · abandoned {} · ASA {} · occupancy {}",
        human_ms(Some(s.scenario.service_level_s * 1e3)),
        pct(s.service_level),
        pct(s.wait_probability),
        pct(s.abandon_rate),
        human_ms(s.asa_ms),
        pct(s.occupancy)
    )?;
    writeln!(w, "latency          count     mean      p50      p90      p95      p99      max")?;
    let l = &s.latency_ms;
    latency_row(w, "queue wait", &l.queue_wait)?;
    latency_row(w, "first response", &l.first_response)?;
    latency_row(w, "reply", &l.reply)?;
    latency_row(w, "session", &l.session)?;
    if l.abandon_wait.count > 0 {
        latency_row(w, "abandon after", &l.abandon_wait)?;
    }
    for (account, f) in &s.fairness {
        let num = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.3}"));
        writeln!(
            w,
            "fairness   {account}: {} agents · Jain {} · Gini {} · max/min {} · Jain(busy) {}",
            f.agents,
            num(f.jain),
            num(f.gini),
            num(f.max_min),
            num(f.jain_busy)
        )?;
    }
    if s.sticky.returning > 0 {
        writeln!(
            w,
            "sticky     {} returning · {} eligible · {} kept their agent ({})",
            s.sticky.returning,
            s.sticky.eligible,
            s.sticky.kept,
            pct(s.sticky.rate)
        )?;
    }
    if s.by_entry.len() > 1 {
        writeln!(w, "by entry         offered    SL     queue p95   first resp p95")?;
        for (name, e) in &s.by_entry {
            writeln!(
                w,
                "  {name:<15}{:>8}{:>8}{:>12}{:>15}",
                e.sessions.offered,
                pct(e.service_level),
                human_ms(e.queue_wait.p95),
                human_ms(e.first_response.p95)
            )?;
        }
    }
    Ok(())
}
