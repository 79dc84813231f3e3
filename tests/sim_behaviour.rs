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
