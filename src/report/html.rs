//! `report.html`: one self-contained page (inline CSS and SVG, no scripts,
//! no external requests) with the verdicts first, the baseline comparison
//! (with % changes) next, then the key numbers, the flow of sessions (when
//! they had more than one way to go: a bot, several accounts or groups,
//! transfers) with the bot, per-account, per-group and transfer tables, the
//! charts, the per-entry table with its chart, the agents with theirs,
//! returning customers and the message mix. Hovering a chart's point shows
//! its value (SVG titles).

use std::fmt::Write as _;

use super::charts::Chart;
use crate::compare::Comparison;
use crate::gate::{self, Verdict};
use crate::metrics::Measured;
use crate::scenario::units::human_ms;
use crate::summary::LatencyStats;

/// `s` safe inside HTML text and attribute values.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn pct(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{:.2}%", v * 100.0))
}

fn num(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.3}"))
}

/// The page style, shared by every kfsim page.
pub const CSS: &str = r#"
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 960px; padding: 24px; color: #222; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #555; margin-top: 0; }
.verdict { padding: 12px 16px; border-radius: 6px; font-weight: 600; margin: 16px 0; }
.pass { background: #e6f4ea; color: #137333; } .fail { background: #fce8e6; color: #a50e0e; } .skip { background: #f1f3f4; color: #555; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px 14px; min-width: 120px; }
.card .v { font-size: 22px; font-weight: 600; } .card .k { color: #555; font-size: 13px; }
table { border-collapse: collapse; width: 100%; font-size: 14px; margin: 8px 0; }
th, td { border-bottom: 1px solid #eee; padding: 4px 8px; text-align: right; } th:first-child, td:first-child { text-align: left; }
tr.fail td { color: #a50e0e; font-weight: 600; } tr.pass td:last-child { color: #137333; }
figure { margin: 16px 0; } figure svg { max-width: 100%; height: auto; } figcaption { color: #555; font-size: 13px; }
"#;

/// Render the page for `run`, with its `charts` and, if one was made, the
/// baseline `comparison`.
pub fn render(run: &Measured, charts: &[Chart], comparison: Option<&Comparison>) -> String {
    let s = &run.summary;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>kfsim — {name}</title><style>{CSS}</style></head><body>\n\
         <h1>{name}</h1>\n<p class=\"meta\">engine <b>{engine}</b> · seed {seed} · {window} · \
         service level T = {t} · kfsim {ver}{interrupted}</p>\n",
        name = esc(&s.scenario.name),
        engine = esc(s.engine.as_str()),
        seed = s.seed,
        window = esc(&super::arrival_window(s)),
        t = super::setting(s.scenario.service_level_s),
        ver = esc(&s.kfsim_version),
        interrupted = if s.run.interrupted { " · <b>interrupted: partial results</b>" } else { "" },
    );
    verdicts(&mut h, run, comparison);
    if let Some(c) = comparison {
        comparison_table(&mut h, c);
    }
    key_numbers(&mut h, run);
    if let Some(live) = &s.live {
        let distortion = match (live.overhead_ms, live.distortion) {
            (Some(ms), Some(d)) => format!(
                " · the run's own overhead {} of wall time per step × {} = <b>{:.1}%</b> of T{}",
                esc(&human_ms(Some(ms))),
                live.time_scale,
                d * 100.0,
                if d > super::DISTORTION_WARN { " — too much: lower the time scale" } else { "" }
            ),
            _ => String::new(),
        };
        let saturated = live.driver_saturated().map_or(String::new(), |share| {
            format!(
                " · <b>the driver was behind {:.0}% of the run, short of CPU: the figures may measure it, not the target</b>",
                share * 100.0
            )
        });
        // calls the target never answered, not counted in its latencies
        let cut = match live.calls_cut_at_end {
            0 => String::new(),
            n => format!(" · <b>{n} calls still in flight at the end were cut</b>, their answers never read"),
        };
        let _ = writeln!(
            h,
            "<p class=\"meta\" id=\"live\">live against {} at ×{} · {:.1} s of wall time{cut}{distortion}{saturated}</p>",
            esc(&live.target),
            live.time_scale,
            live.wall_s
        );
    }
    if let Some(m) = &s.middleware {
        middleware(&mut h, m, s.live.as_ref().map_or(1.0, |l| l.time_scale));
    }
    let (flow, rest): (Vec<&Chart>, Vec<&Chart>) = charts.iter().partition(|c| c.name == "flow");
    paths(&mut h, run, flow.first().copied());
    let (by_entry, rest): (Vec<&Chart>, Vec<&Chart>) = rest.into_iter().partition(|c| c.name == "by-entry");
    let (agent_charts, rest): (Vec<&Chart>, Vec<&Chart>) =
        rest.into_iter().partition(|c| c.name.starts_with("fairness-") || c.name.starts_with("occupancy-"));
    h.push_str("<h2>Charts</h2>\n");
    for c in rest {
        figure(&mut h, c);
    }
    entries(&mut h, run);
    for c in by_entry {
        figure(&mut h, c);
    }
    agents(&mut h, run);
    for c in agent_charts {
        figure(&mut h, c);
    }
    customers(&mut h, run);
    h.push_str("</body></html>\n");
    h
}

/// Returning customers and the message mix.
fn customers(h: &mut String, run: &Measured) {
    let s = &run.summary;
    let st = &s.sticky;
    let _ = writeln!(
        h,
        "<h2>Returning customers</h2>\n<table><tr><th>returning</th><th>eligible (last agent within prefer_last_within)</th>\
         <th>kept their agent</th><th>sticky rate</th></tr>\n<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        st.returning,
        st.eligible,
        st.kept,
        pct(st.rate)
    );
    let total: u64 = s.messages.by_type.values().sum();
    h.push_str("<h2>Messages</h2>\n<table><tr><th>customer messages by type</th><th>messages</th><th>share</th></tr>\n");
    let mut mix: Vec<(&String, &u64)> = s.messages.by_type.iter().collect();
    mix.sort_by(|a, b| b.1.cmp(a.1));
    for (k, v) in mix {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{v}</td><td>{}</td></tr>",
            esc(k),
            pct(crate::summary::ratio(*v as f64, total as f64))
        );
    }
    let _ = writeln!(
        h,
        "<tr><td>all customer messages</td><td>{}</td><td></td></tr><tr><td>agent replies</td><td>{}</td><td></td></tr></table>",
        s.messages.customer, s.messages.replies
    );
}

fn figure(h: &mut String, c: &Chart) {
    let _ = writeln!(
        h,
        "<figure id=\"{}\">{}<figcaption>{}</figcaption></figure>",
        esc(&c.name),
        strip_xml_decl(&c.svg),
        esc(&c.title)
    );
}

fn strip_xml_decl(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

fn verdicts(h: &mut String, run: &Measured, comparison: Option<&Comparison>) {
    let gates = &run.summary.gates;
    let failed = gates.iter().filter(|g| g.verdict == Verdict::Fail).count();
    let regressed = comparison.map_or(0, |c| c.rows.iter().filter(|r| r.status.fails()).count());
    if gates.is_empty() && comparison.is_none() {
        h.push_str("<div class=\"verdict skip\">No gates and no baseline: nothing to pass or fail.</div>\n");
    } else if failed + regressed == 0 {
        let _ = writeln!(
            h,
            "<div class=\"verdict pass\">PASSED — {} gate(s) met{}.</div>",
            gates.len(),
            if comparison.is_some() { ", no regression against the baseline" } else { "" }
        );
    } else {
        let baseline = if comparison.is_some() {
            format!(", {regressed} regression(s) against the baseline")
        } else {
            String::new()
        };
        let _ = writeln!(
            h,
            "<div class=\"verdict fail\">FAILED — {failed} of {} gate(s) failed{baseline}.</div>",
            gates.len()
        );
    }
    if !gates.is_empty() {
        h.push_str("<table><tr><th>gate</th><th>condition</th><th>actual</th><th>verdict</th></tr>\n");
        for g in gates {
            let class = match g.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "fail",
                Verdict::Skipped => "skip",
            };
            let actual =
                g.actual.map_or("—".into(), |v| gate::format_like(&g.condition, v, gate::unit_of(&g.path)));
            let _ = writeln!(
                h,
                "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{actual}</td><td>{class}</td></tr>",
                esc(&g.metric),
                esc(&g.condition)
            );
        }
        h.push_str("</table>\n");
    }
}

fn key_numbers(h: &mut String, run: &Measured) {
    let s = &run.summary;
    let mut cards = vec![
        ("offered", s.sessions.offered.to_string()),
        ("answered", s.sessions.answered.to_string()),
        ("service level", pct(s.service_level)),
        ("waited", pct(s.wait_probability)),
        ("abandoned", pct(s.abandon_rate)),
        ("ASA", human_ms(s.asa_ms)),
        ("occupancy", pct(s.occupancy)),
        ("first response p95", human_ms(s.latency_ms.first_response.p95)),
    ];
    if let (Some(b), Some(people)) = (&s.bot, s.sessions.to_people) {
        cards.insert(1, ("bot deflection", pct(b.deflection)));
        cards.insert(2, ("to people", people.to_string()));
    }
    h.push_str("<h2>Key numbers</h2>\n");
    // with a bot the people's figures are over fewer sessions than offered:
    // said before the first of them is read
    if let (Some(b), Some(people)) = (&s.bot, s.sessions.to_people) {
        let _ = writeln!(
            h,
            "<p class=\"meta\" id=\"to-people\">The bot resolved {} of {} sessions; answered, service level, \
             waits, abandonment and ASA are over the {people} that reached people (<code>sessions.to_people</code>).</p>",
            b.resolved, s.sessions.offered
        );
    }
    h.push_str("<div class=\"cards\">");
    for (k, v) in cards {
        let _ = write!(
            h,
            "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{k}</div></div>",
            esc(&v)
        );
    }
    h.push_str("</div>\n<table><tr><th>latency</th><th>count</th><th>mean</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>\n");
    let l = &s.latency_ms;
    for (name, st) in [
        ("queue wait", &l.queue_wait),
        ("first response", &l.first_response),
        ("reply", &l.reply),
        ("session", &l.session),
        ("abandon wait", &l.abandon_wait),
    ] {
        latency_row(h, name, st);
    }
    h.push_str("</table>\n");
}

/// What the middleware did: callbacks, its latencies (wall time), what it
/// left undone or did twice, and its API calls with their errcodes.
fn middleware(h: &mut String, m: &crate::summary::MiddlewareSummary, scale: f64) {
    let c = &m.callbacks;
    let _ = writeln!(
        h,
        "<h2 id=\"middleware\">The middleware</h2>\n<p class=\"meta\">callback URL {} · its latencies are wall time, \
         as it lived them</p>\n<div class=\"cards\">",
        esc(&m.url)
    );
    for (k, v) in [
        ("callbacks delivered", format!("{} of {}", c.delivered, c.sent)),
        ("callbacks failed", c.failed.to_string()),
        ("callbacks in flight at the end", c.in_flight_at_end.to_string()),
        ("entries no callback announced by the end", c.unannounced_at_end.to_string()),
        ("unacted messages", m.unacted.to_string()),
        ("replies after the end", m.replies_after_end.to_string()),
        ("sent twice", m.sent_twice.to_string()),
        ("gettoken calls", m.gettoken.to_string()),
        ("sync_msg without a Token", m.sync_without_token.to_string()),
        ("entries synced again", m.resynced.to_string()),
    ] {
        let _ = write!(
            h,
            "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{k}</div></div>",
            esc(&v)
        );
    }
    h.push_str("</div>\n<table><tr><th>it took</th><th>count</th><th>mean</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>\n");
    for (name, st) in [
        ("callback answer", &c.latency_ms),
        ("sync lag (entry → first returned by sync_msg)", &m.sync_lag_ms),
        ("bot reply (customer message → send_msg)", &m.bot_reply_ms),
        ("routed (session start → trans to 2 or 3)", &m.routed_ms),
        ("hand-off (session start → state 3)", &m.handoff_ms),
    ] {
        latency_row(h, name, st);
    }
    h.push_str("</table>\n");
    let _ = writeln!(
        h,
        "<p>{} customer messages in sessions it held · {} retried callbacks · {} callbacks dropped and {} repeated (injected) · {} messages still owed when the run ended</p>",
        m.customer_messages, c.retried, c.dropped, c.duplicated, m.owed_at_end
    );
    if let Some(e) = m.scale_effect {
        let warn =
            if e > 0.1 { " — <b>the time scale distorts what customers see: lower it</b>" } else { "" };
        let _ = writeln!(
            h,
            "<p>Time scale ×{scale}: its median added latency is {:.1}% of the service-level threshold in scenario time{warn}</p>",
            e * 100.0
        );
    }
    h.push_str("<table><tr><th>its API calls</th><th>count</th><th>errors</th><th>errcodes</th><th>p50</th><th>p99</th><th>max</th></tr>\n");
    for (name, e) in &m.api {
        let codes: Vec<String> = e.errcodes.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            e.count,
            e.errors,
            esc(&codes.join(", ")),
            human_ms(e.latency_ms.p50),
            human_ms(e.latency_ms.p99),
            human_ms(e.latency_ms.max)
        );
    }
    h.push_str("</table>\n");
}

fn latency_row(h: &mut String, name: &str, st: &LatencyStats) {
    let _ = writeln!(
        h,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(name),
        st.count,
        human_ms(st.mean),
        human_ms(st.p50),
        human_ms(st.p90),
        human_ms(st.p95),
        human_ms(st.p99),
        human_ms(st.p999),
        human_ms(st.max)
    );
}

fn entries(h: &mut String, run: &Measured) {
    h.push_str("<h2>By entry point</h2>\n<table><tr><th>entry</th><th>scene</th><th>account</th><th>offered</th><th>answered</th><th>abandoned</th><th>rejected</th><th>service level</th><th>queue wait p95</th><th>first response p95</th></tr>\n");
    for (name, e) in &run.summary.by_entry {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            esc(&e.scene),
            esc(&e.account),
            e.sessions.offered,
            e.sessions.answered,
            e.sessions.abandoned,
            e.sessions.rejected,
            pct(e.service_level),
            human_ms(e.queue_wait.p95),
            human_ms(e.first_response.p95)
        );
    }
    h.push_str("</table>\n");
}

/// Most rows of the page's agent table: a page a browser opens.
pub const MAX_AGENT_ROWS: usize = 1000;

fn agents(h: &mut String, run: &Measured) {
    let s = &run.summary;
    h.push_str("<h2>Agents</h2>\n<table><tr><th>account</th><th>agents</th><th>Jain</th><th>Gini</th><th>CV</th><th>max/min</th><th>Jain (busy time)</th></tr>\n");
    for (account, f) in &s.fairness {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(account),
            f.agents,
            num(f.jain),
            num(f.gini),
            num(f.cv),
            num(f.max_min),
            num(f.jain_busy)
        );
    }
    h.push_str("</table>\n");
    if s.agents.len() > MAX_AGENT_ROWS {
        let _ = writeln!(
            h,
            "<p class=\"meta\">The first {MAX_AGENT_ROWS} of {} agents; every one is in summary.json \
             (<code>agents</code>), and the charts above draw them all.</p>",
            s.agents.len()
        );
    }
    h.push_str("<table><tr><th>agent</th><th>account</th><th>group</th><th>sessions</th><th>replies</th><th>busy</th><th>online</th><th>occupancy</th></tr>\n");
    for a in s.agents.iter().take(MAX_AGENT_ROWS) {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.id),
            esc(&a.account),
            esc(&a.group),
            a.sessions,
            a.messages,
            human_ms(Some(a.busy_s * 1e3)),
            human_ms(Some(a.online_s * 1e3)),
            pct(a.occupancy)
        );
    }
    h.push_str("</table>\n");
}

/// The flow of sessions and what it is made of: the bot tier, each
/// account's pool and each group, and the transfer paths. Only what the
/// run has: a page without a bot, several accounts or groups, or transfers
/// has no such section.
fn paths(h: &mut String, run: &Measured, flow: Option<&Chart>) {
    let s = &run.summary;
    if !super::flow::has_paths(s) {
        return;
    }
    h.push_str(
        "<h2 id=\"flow-of-sessions\">Flow of sessions</h2>\n<p class=\"meta\">Counted sessions from entry point to \
         outcome, each band as wide as its count. A transfer runs back to the pool of the account it goes to: \
         one customer session, handled twice, so the pools and groups count handles.</p>\n",
    );
    if let Some(c) = flow {
        figure(h, c);
    }
    if let Some(b) = &s.bot {
        let held = b.sessions.saturating_sub(b.resolved + b.handed_over + b.rejected);
        let _ = writeln!(
            h,
            "<h3 id=\"bot\">The bot</h3>\n<table><tr><th>sessions</th><th>resolved by the bot</th>\
             <th>handed over to people</th><th>rejected before the hand-over</th><th>still with the bot at the end</th>\
             <th>deflection</th><th>bot replies</th></tr>\n\
             <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{held}</td><td>{}</td><td>{}</td></tr></table>",
            b.sessions,
            b.resolved,
            b.handed_over,
            b.rejected,
            pct(b.deflection),
            b.replies
        );
        h.push_str("<table><tr><th>the bot's latency</th><th>count</th><th>mean</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>\n");
        latency_row(h, "bot first response", &b.first_response);
        latency_row(h, "time in bot", &b.time_in_bot);
        h.push_str("</table>\n");
    }
    if !s.by_account.is_empty() {
        h.push_str(
            "<h3 id=\"by-account\">By account (its people)</h3>\n<table><tr><th>account</th><th>handles</th>\
             <th>transferred in</th><th>answered</th><th>waited</th><th>service level</th><th>abandoned</th>\
             <th>ASA</th><th>queue wait p95</th></tr>\n",
        );
        for (name, a) in &s.by_account {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                a.handles.offered,
                a.transferred_in,
                a.handles.answered,
                pct(a.wait_probability),
                pct(a.service_level),
                pct(a.abandon_rate),
                human_ms(a.asa_ms),
                human_ms(a.queue_wait.p95)
            );
        }
        h.push_str("</table>\n");
    }
    if !s.by_group.is_empty() {
        h.push_str(
            "<h3 id=\"by-group\">By agent group</h3>\n<table><tr><th>group</th><th>accounts</th><th>agents</th>\
             <th>handles</th><th>transferred</th><th>ended</th><th>occupancy</th></tr>\n",
        );
        for (name, g) in &s.by_group {
            // a summary from before groups listed their accounts: the agents say
            let account = if g.accounts.is_empty() {
                s.agents.iter().find(|a| &a.group == name).map_or(String::new(), |a| a.account.clone())
            } else {
                g.accounts.join(", ")
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(name),
                esc(&account),
                g.agents,
                g.handles,
                g.transferred,
                g.ended,
                pct(g.occupancy)
            );
        }
        h.push_str("</table>\n");
    }
    if !s.transfers.is_empty() {
        h.push_str(
            "<h3 id=\"transfers\">Transfers</h3>\n<table><tr><th>from group</th><th>to account</th>\
             <th>handles transferred</th><th>share of the group's handles</th></tr>\n",
        );
        for (path, n) in &s.transfers {
            let (group, account) = path.split_once("->").unwrap_or((path, ""));
            let share =
                s.by_group.get(group).and_then(|g| crate::summary::ratio(*n as f64, g.handles as f64));
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{n}</td><td>{}</td></tr>",
                esc(group),
                esc(account),
                pct(share)
            );
        }
        h.push_str("</table>\n");
    }
}

fn comparison_table(h: &mut String, c: &Comparison) {
    let _ = writeln!(h, "<h2>Against the baseline — {}</h2>", esc(c.mode.describe()));
    for n in &c.notes {
        let _ = writeln!(h, "<div class=\"verdict skip\">{}</div>", esc(n));
    }
    h.push_str(&super::compare::table(c));
}
