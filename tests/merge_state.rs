//! Merging measured state (`kfsim::tally`): the settled metrics of shards
//! of a run merge into what the whole run measured, for every figure of the
//! summary, the series and the histograms — with no merge code per metric,
//! so a metric added later is covered by these tests without a change.
//!
//! The shards are made from one simulated run: every observation of a
//! session goes to the shard its session hashes to, every agent's status
//! to the shard of its index — as live shards split the customers and the
//! agents. Their merge must equal the metrics that saw the whole stream.

use kfsim::metrics::{Measured, Metrics};
use kfsim::observe::{Obs, RunStats, SessionInfo};
use kfsim::scenario::Scenario;
use serde_json::Value;

fn load(file: &str, sets: &[&str]) -> Scenario {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Scenario::load(std::path::Path::new(&format!("{}/scenarios/{file}", env!("CARGO_MANIFEST_DIR"))), &sets)
        .unwrap()
}

fn session_shard(s: &SessionInfo, n: usize) -> usize {
    // all observations of a session carry the same info: it picks one shard
    let h = s.arrived_us.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(s.entry) << 7;
    (h >> 17) as usize % n
}

fn shard_of(o: &Obs, n: usize) -> usize {
    match *o {
        Obs::AgentLoad { agent, .. } | Obs::AgentOnline { agent, .. } => agent as usize % n,
        Obs::Entered { s, .. }
        | Obs::Queued { s, .. }
        | Obs::Rejected { s, .. }
        | Obs::Assigned { s, .. }
        | Obs::Abandoned { s, .. }
        | Obs::Message { s, .. }
        | Obs::Reply { s, .. }
        | Obs::BotReply { s, .. }
        | Obs::Handoff { s, .. }
        | Obs::BotEnded { s, .. }
        | Obs::Transferred { s, .. }
        | Obs::Ended { s, .. }
        | Obs::Unfinished { s, .. } => session_shard(&s, n),
    }
}

/// The whole run's metrics and `n` shards' settled states, and the stats.
fn split_run(sc: &Scenario, n: usize) -> (Metrics, Vec<Value>, RunStats) {
    let mut whole = Metrics::new(sc);
    whole.keep_interval_histograms();
    let mut parts: Vec<Metrics> = (0..n).map(|_| whole.clone()).collect();
    let stats = kfsim::sim::run(sc, &mut |o: Obs| {
        kfsim::observe::Observer::observe(&mut whole, o);
        kfsim::observe::Observer::observe(&mut parts[shard_of(&o, n)], o);
    });
    let states = parts.iter().map(|m| m.state(stats.end_us)).collect();
    (whole, states, stats)
}

fn merged(sc: &Scenario, states: &[Value], stats: &RunStats) -> Measured {
    let mut fresh = Metrics::new(sc);
    fresh.keep_interval_histograms();
    let fresh = serde_json::to_value(&fresh).unwrap();
    let refs: Vec<&Value> = states.iter().collect();
    let state = kfsim::tally::merge(&fresh, &refs).unwrap();
    Metrics::from_state(state).unwrap().finish_all(sc, stats, None)
}

/// Every leaf of `a` and `b`, compared: integers and strings exactly,
/// other numbers to 1e-9 relative (sums of floats taken in another order).
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                diff(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), p, q, out);
            }
        }
        (Value::Number(x), Value::Number(y)) if !(x.is_u64() && y.is_u64()) => {
            let (p, q) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            if (p - q).abs() > 1e-9 * p.abs().max(q.abs()).max(1e-12) {
                out.push(format!("{path}: {p} ≠ {q}"));
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: {a} ≠ {b}")),
    }
}

fn assert_same(whole: &Measured, merged: &Measured, what: &str) {
    let mut d = Vec::new();
    let v = |m: &Measured| serde_json::to_value(&m.summary).unwrap();
    diff("summary", &v(whole), &v(merged), &mut d);
    let s = |m: &Measured| serde_json::to_value(&m.series).unwrap();
    diff("series", &s(whole), &s(merged), &mut d);
    let keys = |m: &Measured| m.histograms.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(whole), keys(merged), "{what}: the same histograms");
    for (k, h) in &whole.histograms {
        if h != &merged.histograms[k] {
            d.push(format!("histogram {k}: {} samples ≠ {}", h.len(), merged.histograms[k].len()));
        }
    }
    assert!(d.is_empty(), "{what}: merged shards differ from the whole run:\n{}", d.join("\n"));
}

/// Every figure of the summary (and of the series and histograms) of the
/// whole run is reproduced by merging its shards: a figure computed from
/// something that does not add up, or kept outside the merged state, fails
/// here by name.
#[test]
fn merged_shards_reproduce_the_whole_run_figure_for_figure() {
    let cases = [
        ("quickstart.toml", vec![]),
        ("erlang-c.toml", vec!["duration=6h"]),
        ("bench-chat.toml", vec!["duration=6h"]),
        ("middleware.toml", vec![]),
        ("live-check.toml", vec![]),
        // a bot, a transfer and two accounts (issue 14's sections)
        ("../tests/data/reception.toml", vec![]),
    ];
    for (file, sets) in cases {
        let sc = load(file, &sets);
        for n in [1, 3, 7] {
            let (whole, states, stats) = split_run(&sc, n);
            let whole = whole.finish_all(&sc, &stats, None);
            assert!(whole.summary.sessions.offered > 100, "{file}: a run with sessions");
            assert_same(&whole, &merged(&sc, &states, &stats), &format!("{file}, {n} shards"));
            // every shard's counts are those of a run: the typed merge's
            // checks refuse none of them
            let mut fresh = Metrics::new(&sc);
            fresh.keep_interval_histograms();
            let mut sum = kfsim::metrics::StateMerge::new(fresh);
            for st in &states {
                sum.add(serde_json::from_value(st.clone()).unwrap())
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
            }
            if n > 1 {
                // the comparison sees a shard left out
                let short = merged(&sc, &states[1..], &stats);
                assert_ne!(short.summary.sessions.offered, whole.summary.sessions.offered);
            }
        }
    }
}

/// A state written to JSON text and read back merges to the same figures:
/// what a shard folder keeps is enough.
#[test]
fn a_state_survives_json_text() {
    let sc = load("quickstart.toml", &[]);
    let (whole, states, stats) = split_run(&sc, 2);
    let whole = whole.finish_all(&sc, &stats, None);
    let reread: Vec<Value> =
        states.iter().map(|s| serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap()).collect();
    assert_same(&whole, &merged(&sc, &reread, &stats), "quickstart via JSON text");
}

/// Hand-made shards with known counts: the merge sums them (no simulator).
#[test]
fn hand_made_shards_sum() {
    let sc = load("erlang-c.toml", &["duration=2h"]);
    let w = sc.warmup_us;
    let mk = |arrivals: &[u64], agent: u32| {
        let mut m = Metrics::new(&sc);
        m.keep_interval_histograms();
        kfsim::observe::Observer::observe(&mut m, Obs::AgentOnline { t: 0, agent, online: true });
        for (i, &t) in arrivals.iter().enumerate() {
            let s = SessionInfo::new(w + t, 0, 0);
            kfsim::observe::Observer::observe(
                &mut m,
                Obs::Entered { s, returning: false, sticky_eligible: false, msgtype: 0 },
            );
            let at = w + t + 1_000_000 * i as u64;
            kfsim::observe::Observer::observe(
                &mut m,
                Obs::Assigned { t: at, s, agent, kept: false, from_pool: i > 0 },
            );
        }
        m.state(sc.duration_us)
    };
    let a = mk(&[0, 10_000_000, 20_000_000], 0);
    let b = mk(&[5_000_000, 6_000_000], 1);
    let stats = RunStats { end_us: sc.duration_us, ..Default::default() };
    let m = merged(&sc, &[a, b], &stats).summary;
    assert_eq!(m.sessions.offered, 5);
    assert_eq!(m.sessions.answered, 5);
    // waits 0, 1, 2 s and 0, 1 s: mean 0.8 s
    assert_eq!(m.asa_ms, Some(800.0));
    assert_eq!(m.latency_ms.queue_wait.max, Some(2000.0));
    assert_eq!(m.wait_probability, Some(3.0 / 5.0));
    let online: Vec<f64> = m.agents.iter().take(2).map(|a| a.online_s).collect();
    assert_eq!(online, [(sc.duration_us - w) as f64 / 1e6; 2]);
    assert_eq!(m.agents.iter().map(|a| a.sessions).collect::<Vec<_>>()[..2], [3, 2]);
    assert_eq!(m.fairness["kf"].agents, 2);
}

/// The typed merge (`StateMerge`, what `kfsim merge` runs on the states it
/// reads from `shard.json`) gives the metrics the merge of JSON trees
/// gives, field for field, and so the same figures.
#[test]
fn the_typed_merge_equals_the_merge_of_trees() {
    let cases =
        [("quickstart.toml", vec![]), ("middleware.toml", vec![]), ("../tests/data/reception.toml", vec![])];
    for (file, sets) in cases {
        let sc = load(file, &sets);
        for n in [1, 3] {
            let (_, states, stats) = split_run(&sc, n);
            let mut fresh = Metrics::new(&sc);
            fresh.keep_interval_histograms();
            let mut sum = kfsim::metrics::StateMerge::new(fresh);
            for s in &states {
                // as a merge reads it from the file
                let typed: Metrics = serde_json::from_str(&serde_json::to_string(s).unwrap()).unwrap();
                sum.add(typed).unwrap();
            }
            let typed = sum.finish().unwrap();
            let mut fresh = Metrics::new(&sc);
            fresh.keep_interval_histograms();
            let fresh = serde_json::to_value(&fresh).unwrap();
            let refs: Vec<&Value> = states.iter().collect();
            let trees = Metrics::from_state(kfsim::tally::merge(&fresh, &refs).unwrap()).unwrap();
            let what = format!("{file}, {n} shards");
            assert_eq!(
                serde_json::to_value(&typed).unwrap(),
                serde_json::to_value(&trees).unwrap(),
                "{what}"
            );
            assert_same(&trees.finish_all(&sc, &stats, None), &typed.finish_all(&sc, &stats, None), &what);
        }
    }
}

/// A shard whose state has another number of agents than the scenario is
/// refused by name, where a merge of trees let the summary index past its
/// list; agents' settings that differ merge as the trees did.
#[test]
fn the_typed_merge_refuses_a_state_of_other_agents() {
    let sc = load("erlang-c.toml", &["duration=2h"]);
    let (_, states, _) = split_run(&sc, 2);
    let fresh = || {
        let mut m = Metrics::new(&sc);
        m.keep_interval_histograms();
        m
    };
    let mut shorter = states[1].clone();
    shorter["agents"].as_array_mut().unwrap().pop();
    let mut sum = kfsim::metrics::StateMerge::new(fresh());
    sum.add(serde_json::from_value(states[0].clone()).unwrap()).unwrap();
    let e = sum.add(serde_json::from_value(shorter).unwrap()).unwrap_err();
    assert_eq!(e.path, "/agents");
    assert!(e.what.contains("in the scenario"), "{e}");
    // a flag and a setting per agent changed by hand: as the trees merge them
    let mut odd = states[1].clone();
    odd["agents"][2]["online"] = true.into();
    odd["series"]["agents"][3]["cap"] = 7.into();
    let parts = [states[0].clone(), odd.clone()];
    let mut sum = kfsim::metrics::StateMerge::new(fresh());
    for p in &parts {
        sum.add(serde_json::from_value(p.clone()).unwrap()).unwrap();
    }
    let refs: Vec<&Value> = parts.iter().collect();
    let trees = kfsim::tally::merge(&serde_json::to_value(fresh()).unwrap(), &refs).unwrap();
    assert_eq!(serde_json::to_value(sum.finish().unwrap()).unwrap(), trees);
    // a setting of the run's (an agent's group, the series' interval) that
    // differs is refused: added up as a count, an interval of 0 divided
    // by zero when the merged series were closed
    for (edit, to, says) in
        [("/agent_group/0", 3, "agents' groups"), ("/series/interval", 0, "series interval")]
    {
        let mut odd = states[1].clone();
        *odd.pointer_mut(edit).unwrap() = to.into();
        let mut sum = kfsim::metrics::StateMerge::new(fresh());
        sum.add(serde_json::from_value(states[0].clone()).unwrap()).unwrap();
        let e = sum.add(serde_json::from_value(odd).unwrap()).unwrap_err();
        assert!(e.what.contains(says), "{edit}: {e}");
    }
    // counts that no run makes: more within the service level, or answered
    // at once, than answered (a service level of 5.6e7 %)
    for (edit, says) in [
        ("/counts/within_sl", "within the service level > answered"),
        ("/entries/0/counts/immediate", "answered at once > answered"),
    ] {
        let mut odd = states[1].clone();
        *odd.pointer_mut(edit).unwrap() = 1_000_000_000_u64.into();
        let mut sum = kfsim::metrics::StateMerge::new(fresh());
        let e = sum.add(serde_json::from_value(odd).unwrap()).unwrap_err();
        assert!(e.what.contains(says) && edit.starts_with(&e.path), "{edit}: {e}");
    }
}
