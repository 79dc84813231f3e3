//! The compact terminal summary printed after a run.

use std::io::{self, Write};

use crate::scenario::units::human_ms;
use crate::summary::{LatencyStats, Summary};

fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{:.2}%", v * 100.0))
}

/// Columns of the latency table: name, then count and six times.
const LATENCY_HEADER: [&str; 8] = ["latency", "count", "mean", "p50", "p90", "p95", "p99", "max"];

fn latency_header(w: &mut dyn Write) -> io::Result<()> {
    let h = LATENCY_HEADER;
    writeln!(w, "{:<17}{:>10}{:>9}{:>9}{:>9}{:>9}{:>9}{:>9}", h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7])
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
        "{} · engine {} · seed {} · {}{}",
        s.scenario.name,
        s.engine,
        s.seed,
        super::arrival_window(s),
        if s.run.interrupted { " · INTERRUPTED: partial results" } else { "" }
    )?;
    let c = &s.sessions;
    // with a bot, the human figures are over the sessions that reached
    // people, not over all offered: the lines say so where they are read
    let (to_people, over) = match (&s.bot, c.to_people) {
        (Some(b), Some(p)) => (
            format!(" · resolved by the bot {} · to people {p}", b.resolved),
            format!("over the {p} to people: "),
        ),
        _ => (String::new(), String::new()),
    };
    writeln!(
        w,
        "sessions   offered {}{to_people} · answered {} · abandoned {} · rejected {} · unfinished {}",
        c.offered, c.answered, c.abandoned, c.rejected, c.unfinished
    )?;
    bot(s, w)?;
    writeln!(
        w,
        "service    {over}SL({}) {} · waited {} · abandoned {} · ASA {} · occupancy {}",
        super::setting(s.scenario.service_level_s),
        pct(s.service_level),
        pct(s.wait_probability),
        pct(s.abandon_rate),
        human_ms(s.asa_ms),
        pct(s.occupancy)
    )?;
    latency_header(w)?;
    let l = &s.latency_ms;
    latency_row(w, "queue wait", &l.queue_wait)?;
    latency_row(w, "first response", &l.first_response)?;
    latency_row(w, "reply", &l.reply)?;
    latency_row(w, "session", &l.session)?;
    if l.abandon_wait.count > 0 {
        latency_row(w, "abandon wait", &l.abandon_wait)?;
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
        writeln!(
            w,
            "{:<17}{:>8}{:>9}{:>16}{:>21}",
            "by entry", "offered", "SL", "queue wait p95", "first response p95"
        )?;
        for (name, e) in &s.by_entry {
            writeln!(
                w,
                "  {name:<15}{:>8}{:>9}{:>16}{:>21}",
                e.sessions.offered,
                pct(e.service_level),
                human_ms(e.queue_wait.p95),
                human_ms(e.first_response.p95)
            )?;
        }
    }
    paths(s, w)?;
    live(s, w)?;
    middleware(s, w)
}

/// The bot tier (智能助手): how many sessions it took, resolved and handed
/// over, and how fast it answered.
fn bot(s: &Summary, w: &mut dyn Write) -> io::Result<()> {
    let Some(b) = &s.bot else { return Ok(()) };
    // sessions the bot still held when the run stopped: offered, yet neither
    // resolved nor handed over
    let held = b.sessions.saturating_sub(b.resolved + b.handed_over + b.rejected);
    writeln!(
        w,
        "bot        {} sessions · resolved {} · handed over {} · deflection {}{}{}",
        b.sessions,
        b.resolved,
        b.handed_over,
        pct(b.deflection),
        if b.rejected > 0 {
            format!(" · rejected {} before the hand-over", b.rejected)
        } else {
            String::new()
        },
        if held > 0 { format!(" · {held} still with the bot at the end") } else { String::new() },
    )?;
    writeln!(
        w,
        "           first response p50 {} p95 {} · time in bot p50 {} p95 {}",
        human_ms(b.first_response.p50),
        human_ms(b.first_response.p95),
        human_ms(b.time_in_bot.p50),
        human_ms(b.time_in_bot.p95)
    )
}

/// Per account and per group, and the transfer paths, when sessions had
/// more than one way to go. Without several accounts or transfers the
/// account table repeats the lines above, and the group table without
/// several groups or transfers repeats the agents'.
fn paths(s: &Summary, w: &mut dyn Write) -> io::Result<()> {
    let transfers = !s.transfers.is_empty();
    if s.by_account.len() > 1 || transfers {
        writeln!(
            w,
            "{:<17}{:>8}{:>16}{:>9}{:>9}{:>11}{:>9}",
            "by account", "handles", "transferred in", "waited", "SL", "abandoned", "ASA"
        )?;
        for (name, a) in &s.by_account {
            writeln!(
                w,
                "  {name:<15}{:>8}{:>16}{:>9}{:>9}{:>11}{:>9}",
                a.handles.offered,
                a.transferred_in,
                pct(a.wait_probability),
                pct(a.service_level),
                pct(a.abandon_rate),
                human_ms(a.asa_ms)
            )?;
        }
    }
    if s.by_group.len() > 1 || transfers {
        writeln!(
            w,
            "{:<17}{:>8}{:>9}{:>13}{:>9}{:>11}",
            "by group", "agents", "handles", "transferred", "ended", "occupancy"
        )?;
        for (name, g) in &s.by_group {
            writeln!(
                w,
                "  {name:<15}{:>8}{:>9}{:>13}{:>9}{:>11}",
                g.agents,
                g.handles,
                g.transferred,
                g.ended,
                pct(g.occupancy)
            )?;
        }
    }
    for (path, n) in &s.transfers {
        let (group, account) = path.split_once("->").unwrap_or((path, "?"));
        let share = s.by_group.get(group).and_then(|g| crate::summary::ratio(*n as f64, g.handles as f64));
        writeln!(w, "transfer   {group} → {account}: {n} handles ({} of {group}'s)", pct(share))?;
    }
    Ok(())
}

/// What a middleware did (`run --middleware`): its callbacks, how fast it
/// read, answered and handed over, its API calls and its mistakes.
fn middleware(s: &Summary, w: &mut dyn Write) -> io::Result<()> {
    let Some(m) = &s.middleware else { return Ok(()) };
    let c = &m.callbacks;
    writeln!(
        w,
        "middleware {} · callbacks {} sent · {} delivered · {} failed{}{}{} · {} retried{} · answer p50 {} p99 {} (wall)",
        m.url,
        c.sent,
        c.delivered,
        c.failed,
        // shown when not 0, so that the counts before them add up to `sent`
        if c.dropped > 0 { format!(" · {} dropped (injected)", c.dropped) } else { String::new() },
        if c.in_flight_at_end > 0 {
            format!(" · {} in flight at the end", c.in_flight_at_end)
        } else {
            String::new()
        },
        if c.unannounced_at_end > 0 {
            format!(" · {} entries not yet announced", c.unannounced_at_end)
        } else {
            String::new()
        },
        c.retried,
        // repeats of callbacks counted above, not more of them
        if c.duplicated > 0 { format!(" · {} repeated (injected)", c.duplicated) } else { String::new() },
        human_ms(c.latency_ms.p50),
        human_ms(c.latency_ms.p99)
    )?;
    writeln!(w, "{:<17}{:>8}{:>9}{:>9}{:>9}  (wall)", "  it took", "count", "p50", "p99", "max")?;
    for (name, l) in [
        ("sync lag", &m.sync_lag_ms),
        ("bot reply", &m.bot_reply_ms),
        ("routed", &m.routed_ms),
        ("hand-off", &m.handoff_ms),
    ] {
        writeln!(
            w,
            "  {name:<15}{:>8}{:>9}{:>9}{:>9}",
            l.count,
            human_ms(l.p50),
            human_ms(l.p99),
            human_ms(l.max)
        )?;
    }
    writeln!(
        w,
        "  acted      {} customer messages · {} unacted · {} owed at the end · {} replies after the end · {} sent twice · gettoken {}",
        m.customer_messages, m.unacted, m.owed_at_end, m.replies_after_end, m.sent_twice, m.gettoken
    )?;
    if m.sync_without_token > 0 {
        let calls = m.api.get("kf/sync_msg").map_or(0, |e| e.count);
        writeln!(
            w,
            "  warning    {} of its {calls} sync_msg calls had no callback Token: WeCom rate-limits those strictly, kfsim does not",
            m.sync_without_token
        )?;
    }
    if m.resynced > 0 {
        writeln!(
            w,
            "  warning    sync_msg returned {} log entries it had returned before (to {} first returned): a cursor not kept, or read again from an older one",
            m.resynced, m.synced
        )?;
    }
    writeln!(w, "{:<17}{:>8}{:>9}{:>9}{:>9}", "  its API calls", "count", "errors", "p50", "p99")?;
    for (name, e) in &m.api {
        writeln!(
            w,
            "  {name:<23}{:>8}{:>9}{:>9}{:>9}",
            e.count,
            e.errors,
            human_ms(e.latency_ms.p50),
            human_ms(e.latency_ms.p99)
        )?;
        if !e.errcodes.is_empty() {
            let codes: Vec<String> = e.errcodes.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
            writeln!(w, "    errcodes: {}", codes.join(" · "))?;
        }
    }
    if let Some(effect) = m.scale_effect {
        let warn = if effect > 0.1 { "  ← the time scale distorts what customers see" } else { "" };
        writeln!(
            w,
            "  scale      its median added latency × {} = {:.1}% of the service-level threshold{warn}",
            s.live.as_ref().map_or(1.0, |l| l.time_scale),
            effect * 100.0
        )?;
    }
    Ok(())
}

/// Above this share of the service-level threshold, a live run's timing
/// overhead × its time scale is said to distort its figures.
pub const DISTORTION_WARN: f64 = 0.1;

/// What only the live engine measures: the target's load, end-to-end
/// accounting, the driver's own lag, and the HTTP calls.
fn live(s: &Summary, w: &mut dyn Write) -> io::Result<()> {
    let Some(info) = &s.live else { return Ok(()) };
    let rate = |v: Option<f64>| v.map_or("—".into(), |v| format!("{v:.0}/s"));
    writeln!(
        w,
        "live       {} · ×{} · {:.1} s wall · {} messages accepted · {} replies received",
        info.target,
        info.time_scale,
        info.wall_s,
        rate(info.messages_per_s),
        rate(info.replies_per_s)
    )?;
    let m = &s.messages;
    let n = |v: Option<u64>| v.map_or("—".into(), |v| v.to_string());
    // the rest no servicer was due to see by the end (`MessageCounts::
    // delivered`): a line whose sums did not meet read as a leak
    let rest = match (m.sent, m.delivered, m.lost) {
        (Some(s), Some(d), Some(l)) if s > d + l => format!(" · for no servicer {}", s - d - l),
        _ => String::new(),
    };
    writeln!(
        w,
        "delivery   sent {} · delivered {} · lost {}{rest} · duplicated {} · reordered {} (whole run)",
        n(m.sent),
        n(m.delivered),
        n(m.lost),
        n(m.duplicated),
        n(m.reordered)
    )?;
    if let Some(d) = &s.delivery_ms {
        writeln!(
            w,
            "           to agent p50 {} p99 {} · to customer p50 {} p99 {} (wall)",
            human_ms(d.to_agent.p50),
            human_ms(d.to_agent.p99),
            human_ms(d.to_customer.p50),
            human_ms(d.to_customer.p99)
        )?;
    }
    let g = &info.gave_up;
    writeln!(
        w,
        "resends    gave up on {} messages · {} leaves · {} replies · {} ends · {} sessions held at the end",
        g.messages, g.leaves, g.replies, g.ends, info.open_at_end
    )?;
    if let Some(late) = s.late_actions {
        let p99 = s.lag_ms.as_ref().and_then(|l| l.p99);
        writeln!(w, "driver     {late} actions late (> 10 ms) · lag p99 {}", human_ms(p99))?;
    }
    if let Some(share) = info.saturated {
        writeln!(
            w,
            "           behind {:.1}% of the run (its wake-ups > 10 ms late) · wake-up lag p99 {}",
            share * 100.0,
            human_ms(info.driver_lag_ms.p99)
        )?;
    }
    if let (Some(ms), Some(d)) = (info.overhead_ms, info.distortion) {
        let flag = if d > DISTORTION_WARN { "  ← too much: lower the time scale" } else { "" };
        writeln!(
            w,
            "distortion {} of wall time per step × {} = {:.1}% of the service-level threshold{flag}",
            human_ms(Some(ms)),
            info.time_scale,
            d * 100.0
        )?;
    }
    // both skew every figure above: said where the figures are read
    if info.shed > 0 {
        writeln!(
            w,
            "OVERLOAD   {} arrivals shed, more than 5 s late (the target not answering, or the driver short of CPU): counted rejected, see live.shed",
            info.shed
        )?;
    }
    if let Some(share) = info.driver_saturated() {
        writeln!(
            w,
            "SATURATED  the driver was behind {:.0}% of the run, short of CPU: the figures may measure the driver, not the target, see live.saturated",
            share * 100.0
        )?;
    }
    let m = &info.missed;
    if m.customers + m.servicers > 0 {
        writeln!(
            w,
            "MISSED     the target dropped {} customer-side and {} servicer-side events from full queues: sessions may count as abandoned or unfinished, see live.missed",
            m.customers, m.servicers
        )?;
    }
    let r = &info.reconnects;
    if r.count > 0 {
        writeln!(
            w,
            "RESTART    the target forgot the run's channels {} time(s): reopened; lost with them {} held and {} waiting sessions, {} messages",
            r.count, r.held, r.waiting, r.messages_lost
        )?;
    }
    if info.calls_cut_at_end > 0 {
        writeln!(
            w,
            "CUT        {} calls were still in flight when the run stopped waiting for answers: cut, their answers never read, see live.calls_cut_at_end",
            info.calls_cut_at_end
        )?;
    }
    if info.busy_at_start > 0 {
        writeln!(
            w,
            "WARNING    {} sessions were already held by the scenario's servicers when the run began",
            info.busy_at_start
        )?;
    }
    if let Some(failed) = s.failed_target() {
        writeln!(
            w,
            "WARNING    no session got through and the target failed calls ({failed}): its failure was measured, not its reception"
        )?;
    }
    let Some(http) = &s.http else { return Ok(()) };
    // endpoint names run longer than other tables' (service_state_trans)
    let width = http.keys().map(|k| k.chars().count()).max().unwrap_or(0).max(15);
    writeln!(
        w,
        "{:<w2$}{:>8}{:>9}{:>9}{:>9}{:>9}",
        "http",
        "count",
        "errors",
        "p50",
        "p99",
        "max",
        w2 = width + 2
    )?;
    for (name, e) in http {
        writeln!(
            w,
            "  {name:<width$}{:>8}{:>9}{:>9}{:>9}{:>9}",
            e.latency.count,
            e.errors,
            human_ms(e.latency.p50),
            human_ms(e.latency.p99),
            human_ms(e.latency.max)
        )?;
        if !e.errors_by_kind.is_empty() {
            let kinds: Vec<String> = e.errors_by_kind.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(w, "    errors: {}", kinds.join(" · "))?;
        }
    }
    Ok(())
}
