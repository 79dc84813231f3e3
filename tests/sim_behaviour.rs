//! Reception rules and run-level properties of the simulator.

mod common;

use common::replicate;
use kfsim::scenario::Scenario;

const BASE: &str = r#"
name = "policies"
duration = "7d"
warmup = "1h"
[[account]]
name = "kf"
policy = "round_robin"
[[agents]]
count = 20
max_concurrent = 1
reply_delay = { dist = "exponential", mean = "4m" }
[[entry]]
scene = "web"
rate = "4/min"
"#;

fn jain(s: &kfsim::summary::Summary) -> f64 {
    s.fairness["kf"].jain.unwrap()
}

#[test]
fn round_robin_and_idle_first_spread_sessions_evenly() {
    for policy in ["round_robin", "idle_first"] {
        let set = format!("account.kf.policy={policy}");
        for load in ["4/min", "1/min"] {
            let rate = format!("entry.web.rate={load}");
            let s = &replicate(BASE, &[&set, &rate], 1..2)[0];
            eprintln!("{policy} at {load}: Jain {}", jain(s));
            assert!(jain(s) >= 0.98, "{policy} at {load}: Jain {} < 0.98", jain(s));
        }
    }
}

#[test]
fn fill_first_packs_agents_at_low_load() {
    // 1/min × 4 min = 4 Erlangs on 20 agents: packing leaves the last agents idle
    let s = &replicate(BASE, &["account.kf.policy=fill_first", "entry.web.rate=1/min"], 1..2)[0];
    let f = &s.fairness["kf"];
    eprintln!("fill_first: Jain {:?} Gini {:?} histogram {:?}", f.jain, f.gini, f.histogram);
    assert!(jain(s) < 0.6, "fill_first should be visibly uneven, Jain {}", jain(s));
    let first = s.agents[0].sessions;
    let last = s.agents[19].sessions;
    assert!(first > 20 * last.max(1), "agent 1 got {first}, agent 20 got {last}");
}

#[test]
fn prefer_last_agent_keeps_returning_customers() {
    // Cap 3 at low load: the last agent nearly always has room.
    let sets = [
        "agents.kf.max_concurrent=3",
        "entry.web.rate=2/min",
        "entry.web.returning=0.5",
        "account.kf.prefer_last_agent=true",
    ];
    let on = &replicate(BASE, &sets, 1..2)[0];
    eprintln!("prefer_last_agent on: {:?}", on.sticky);
    assert!(on.sticky.eligible > 5_000);
    assert!(on.sticky.rate.unwrap() > 0.9, "kept only {:?}", on.sticky.rate);

    // Off, a returning customer lands on their last agent only by chance (≈ 1/20).
    let off = &replicate(BASE, &sets[..3], 1..2)[0];
    eprintln!("prefer_last_agent off: {:?}", off.sticky);
    let rate = off.sticky.rate.unwrap();
    assert!(rate > 0.01 && rate < 0.15, "kept {rate} without the rule");
    assert_eq!(off.sticky.returning, on.sticky.returning, "same seed, same customers");
}

#[test]
fn prefer_last_within_limits_eligibility() {
    let sets = ["entry.web.returning=0.5", "account.kf.prefer_last_agent=true"];
    let wide = &replicate(BASE, &[sets[0], sets[1], "account.kf.prefer_last_within=30d"], 1..2)[0];
    let narrow = &replicate(BASE, &[sets[0], sets[1], "account.kf.prefer_last_within=10m"], 1..2)[0];
    // A returning customer is drawn uniformly from those seen so far, so over
    // a 7-day run a 30-day window covers everyone and a 10-minute one almost
    // nobody.
    assert!(wide.sticky.eligible as f64 > 0.95 * wide.sticky.returning as f64);
    assert!((narrow.sticky.eligible as f64) < 0.05 * narrow.sticky.returning as f64, "{:?}", narrow.sticky);
}

#[test]
fn least_loaded_beats_packing_with_slowdown() {
    // With slowdown, how sessions are spread changes handle time
    // (shared/reference/queueing.md, "Chat").
    let sets = ["agents.kf.max_concurrent=3", "agents.kf.slowdown=0.5", "entry.web.rate=6/min"];
    let idle = &replicate(BASE, &[sets[0], sets[1], sets[2], "account.kf.policy=idle_first"], 1..2)[0];
    let fill = &replicate(BASE, &[sets[0], sets[1], sets[2], "account.kf.policy=fill_first"], 1..2)[0];
    let reply = |s: &kfsim::summary::Summary| s.latency_ms.reply.mean.unwrap() / 1e3;
    eprintln!("reply mean: idle_first {} s, fill_first {} s", reply(idle), reply(fill));
    assert!(reply(idle) > 240.0, "slowdown must lengthen replies beyond the 4 min of work");
    assert!(reply(fill) > 1.2 * reply(idle));
}

#[test]
fn queue_limit_rejects_and_counts_add_up() {
    let sets = ["agents.kf.count=10", "entry.web.rate=3/min", "account.kf.queue_limit=5"];
    let s = &replicate(BASE, &sets, 1..2)[0];
    let c = &s.sessions;
    assert!(c.rejected > 100, "{c:?}");
    assert_eq!(c.offered, c.answered + c.abandoned + c.rejected + c.unfinished);
    // rejections are not answered within T, so they lower the service level
    assert!(s.service_level.unwrap() <= (c.answered as f64) / (c.offered as f64));
}

#[test]
fn shifts_and_unfinished_sessions() {
    // Agents leave after 2 h; customers who never give up stay in the pool.
    let text =
        BASE.replace("max_concurrent = 1", "max_concurrent = 1\nonline = [{ from = \"0h\", to = \"2h\" }]");
    let s = &replicate(&text, &["duration=4h", "warmup=0s"], 1..2)[0];
    let c = &s.sessions;
    eprintln!("{c:?}");
    assert!(c.unfinished > 300, "about 2 h × 4/min arrive after the agents left: {c:?}");
    assert_eq!(c.offered, c.answered + c.unfinished);
    for a in &s.agents {
        assert!((a.online_s - 7200.0).abs() < 1e-6, "{a:?}");
    }
}

#[test]
fn warmup_sessions_are_not_counted() {
    let s = &replicate(BASE, &["duration=10h", "warmup=5h"], 1..2)[0];
    // 5 h × 4/min = 1200 expected, Poisson sd ≈ 35
    let offered = s.sessions.offered as f64;
    assert!((offered - 1200.0).abs() < 4.0 * 1200f64.sqrt(), "{offered}");
    assert!(s.run.sessions_total as f64 > 1.8 * offered);
    for a in &s.agents {
        assert!((a.online_s - 5.0 * 3600.0).abs() < 1e-6);
    }
}

#[test]
fn same_seed_same_summary_byte_for_byte() {
    let text = std::fs::read_to_string("scenarios/quickstart.toml").unwrap();
    let run = |seed: u64| {
        let mut sc = Scenario::parse(&text, "quickstart.toml").unwrap();
        sc.seed = seed;
        serde_json::to_string_pretty(&kfsim::sim::simulate(&sc)).unwrap()
    };
    let a = run(7);
    assert_eq!(a, run(7));
    assert_ne!(a, run(8), "a different seed must change the run");
}

#[test]
fn adding_an_entry_point_leaves_the_others_arrivals_unchanged() {
    let text = std::fs::read_to_string("scenarios/quickstart.toml").unwrap();
    let mut sc = Scenario::parse(&text, "q.toml").unwrap();
    let before = kfsim::sim::simulate(&sc).by_entry["search"].sessions.offered;
    let mut extra = sc.entries[0].clone();
    extra.name = "extra".into();
    sc.entries.push(extra);
    let after = kfsim::sim::simulate(&sc).by_entry["search"].sessions.offered;
    assert_eq!(before, after);
}

const TIERS: &str = r#"
name = "tiers"
duration = "2d"
warmup = "1h"
[[account]]
name = "kf"
[account.bot]
reply_delay = "2s"
resolve = 1.0
turns = 3
[[agents]]
count = 15
reply_delay = { dist = "exponential", mean = "4m" }
[[entry]]
scene = "web"
rate = "1/min"
think = "10s"
messages = 2
"#;

#[test]
fn a_bot_holds_a_session_for_its_turns_and_thinks_between_them() {
    // 3 bot answers of 2 s with 10 s of thinking between: 26 s in state 1
    let s = &replicate(TIERS, &[], 1..2)[0];
    let bot = s.bot.clone().unwrap();
    assert_eq!(bot.resolved, s.sessions.offered);
    assert_eq!(bot.replies, 3 * bot.sessions);
    assert_eq!((bot.time_in_bot.p50, bot.time_in_bot.max), (Some(26.0 * 1e3), Some(26.0 * 1e3)));
    assert_eq!(bot.first_response.max, Some(2e3));
    assert_eq!((s.sessions.to_people, s.sessions.answered), (Some(0), 0));
    assert_eq!(s.messages.customer, 3 * s.sessions.offered);
    // nobody reached people: the human figures are undefined, not 0 or 1
    assert_eq!((s.service_level, s.wait_probability), (None, None));
}

#[test]
fn a_handed_over_session_brings_its_request_to_people() {
    // the request that made the bot hand over is the first message people
    // answer: 2 bot turns, then 2 messages with people = 3 customer messages
    let s = &replicate(TIERS, &["account.kf.bot.resolve=0", "account.kf.bot.turns=2"], 1..2)[0];
    let bot = s.bot.clone().unwrap();
    assert_eq!((bot.resolved, bot.handed_over), (0, s.sessions.offered));
    assert_eq!(s.messages.customer, 3 * s.sessions.offered);
    assert_eq!(s.messages.replies, 2 * s.sessions.answered);
    // waits count from the hand-over, not the arrival: at about 8 Erlangs on
    // 15 agents most are assigned at once, 14 s after they arrived
    assert!(s.latency_ms.queue_wait.p50 == Some(0.0), "{:?}", s.latency_ms.queue_wait);
    assert_eq!(s.latency_ms.first_response.max, Some(2e3), "the bot answers first");
}

const SHARED: &str = r#"
name = "shared"
duration = "3d"
[[account]]
name = "vip"
[[account]]
name = "normal"
[[agents]]
group = "both"
accounts = ["vip", "normal"]
count = 6
max_concurrent = 2
reply_delay = { dist = "exponential", mean = "4m" }
[[entry]]
name = "vip"
scene = "app"
account = "vip"
rate = "1/min"
[[entry]]
name = "normal"
scene = "web"
account = "normal"
rate = "2.5/min"
patience = { dist = "exponential", mean = "10m" }
"#;

#[test]
fn a_shared_servicer_serves_the_pool_of_its_first_account_first() {
    use kfsim::observe::Obs;
    let sc = Scenario::parse(SHARED, "shared.toml").unwrap();
    // waiting per account, followed from the observations
    let mut waiting = [0i64; 2];
    let mut load = [0u32; 6];
    let (mut from_normal, mut normal_while_vip_waits) = (0u64, 0u64);
    let mut check = |o: Obs| match o {
        Obs::Queued { s, .. } => waiting[s.account as usize] += 1,
        Obs::Abandoned { s, .. } => waiting[s.account as usize] -= 1,
        Obs::Assigned { s, from_pool: true, .. } => {
            waiting[s.account as usize] -= 1;
            if s.account == 1 {
                from_normal += 1;
                normal_while_vip_waits += u64::from(waiting[0] > 0);
            }
        }
        Obs::AgentLoad { agent, load: l, .. } => {
            load[agent as usize] = l;
            assert!(l <= 2, "agent {agent} over its cap of 2 across both accounts");
        }
        _ => {}
    };
    kfsim::sim::run(&sc, &mut check);
    assert!(from_normal > 1000, "the normal pool was served from {from_normal} times");
    assert_eq!(normal_while_vip_waits, 0, "a freed slot went to normal while vip waited");
    let s = kfsim::sim::simulate(&sc);
    let (vip, normal) = (&s.by_account["vip"], &s.by_account["normal"]);
    eprintln!("vip ASA {:?}, normal ASA {:?}", vip.asa_ms, normal.asa_ms);
    assert!(vip.asa_ms.unwrap() * 5.0 < normal.asa_ms.unwrap());
    // one group, counted in both accounts' fairness
    assert_eq!(s.fairness["vip"].agents, 6);
    assert_eq!(s.fairness["normal"].agents, 6);
}

#[test]
fn route_rules_send_returning_customers_and_a_share_elsewhere() {
    let text = SHARED.replace(
        "rate = \"2.5/min\"",
        "rate = \"2.5/min\"\nreturning = 0.3\nroute = [{ account = \"vip\", returning = true }]",
    );
    let s = &replicate(&text, &[], 1..2)[0];
    let to_vip = |s: &kfsim::summary::Summary| {
        s.flow.iter().find(|e| e.from == "entry:normal" && e.to == "account:vip").map_or(0, |e| e.sessions)
    };
    assert_eq!(to_vip(s), s.sticky.returning, "every returning customer of `normal` went to vip");
    assert!(s.sticky.returning > 2000);

    let text = SHARED
        .replace("rate = \"2.5/min\"", "rate = \"2.5/min\"\nroute = [{ account = \"vip\", share = 0.25 }]");
    let s = &replicate(&text, &[], 1..2)[0];
    let n = s.by_entry["normal"].sessions.offered as f64;
    let share = to_vip(s) as f64 / n;
    let se = (0.25 * 0.75 / n).sqrt();
    assert!((share - 0.25).abs() < 4.0 * se, "routed share {share}, expected 0.25 ± {}", 4.0 * se);
}

#[test]
fn the_flow_of_sessions_is_conserved_at_every_node() {
    // a bot, a transfer, two accounts, cut off without a drain so that
    // sessions are still with the bot, waiting and held when the run stops
    let text = std::fs::read_to_string("tests/data/reception.toml").unwrap();
    let s = &replicate(&text, &["drain=0s"], 1..2)[0];
    let mut balance = std::collections::BTreeMap::<String, i64>::new();
    for e in &s.flow {
        *balance.entry(e.from.clone()).or_default() -= e.sessions as i64;
        *balance.entry(e.to.clone()).or_default() += e.sessions as i64;
    }
    for (node, b) in &balance {
        if node.starts_with("entry:") {
            let name = node.trim_start_matches("entry:");
            assert_eq!(-b, s.by_entry[name].sessions.offered as i64, "{node}: out of the entry");
        } else if node.contains(':') {
            assert_eq!(*b, 0, "{node}: what comes in goes out ({:?})", s.flow);
        }
    }
    assert!(balance.get("open").copied().unwrap_or(0) > 0, "the cut left sessions open: {:?}", s.flow);
    let g = &s.by_group;
    assert!(g.values().all(|g| !g.accounts.is_empty()));
}
