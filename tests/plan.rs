//! Capacity planning: sweeps against Erlang C, the staffing recommendation,
//! replication seeds, and parallel runs.

use std::process::Command;

use kfsim::plan::{Outcome, Problem, Target};
use kfsim::scenario::Scenario;
use kfsim::sweep::{self, Estimate, Vary};

const ERLANG_C: &str = include_str!("../scenarios/erlang-c.toml");

fn summaries_json(runs: &[Vec<kfsim::summary::Summary>]) -> String {
    serde_json::to_string(runs).unwrap()
}

#[test]
fn sweep_of_an_erlang_c_scenario_follows_the_theory_curve() {
    // 8 replications of 5 days (~70 000 sessions) per point.
    let sets = vec!["duration=5d".to_string(), "warmup=6h".to_string()];
    let vary = [Vary::parse("agents.kf.count=44..48:2").unwrap()];
    let grid = sweep::grid(&vary).unwrap();
    let scenarios: Vec<Scenario> =
        grid.iter().map(|p| sweep::variant(ERLANG_C, "erlang-c.toml", &sets, p).unwrap()).collect();
    let runs = sweep::run(&scenarios, 8, true);
    for (sc, runs) in scenarios.iter().zip(&runs) {
        let theory = kfsim::theory::predict(sc).expect("an Erlang C scenario");
        let est = sweep::estimate(runs);
        for metric in ["service_level", "wait_probability", "asa_ms", "occupancy"] {
            let e: Estimate = est[metric].unwrap();
            let t = theory.metric(metric).unwrap();
            let half = (e.hi - e.lo) / 2.0;
            eprintln!("{} agents, {metric}: sim {:.4} ± {:.4}, theory {t:.4}", theory.servers, e.mean, half);
            // mean waits converge slowly near ρ ≈ 0.9 (queueing.md), so their
            // intervals are the widest; 20 % of the value still separates
            // neighbouring staffing levels, whose ASA differ by 40 % or more
            assert!(half < 0.2 * t.abs().max(0.05), "{metric}: the interval is too wide to test anything");
            // 1.5 half-widths of a 95 % interval: about 99.7 % coverage
            assert!(
                (e.mean - t).abs() <= 1.5 * half,
                "{} agents, {metric}: sim {e:?} vs theory {t}",
                theory.servers
            );
        }
    }
}

#[test]
fn staffing_for_80_percent_in_20s_matches_erlang_c() {
    let base = Scenario::parse(ERLANG_C, "erlang-c.toml").unwrap();
    let target = Target::parse("service_level>=0.8", &base).unwrap();
    let problem = Problem {
        text: ERLANG_C,
        file: "erlang-c.toml",
        sets: vec!["duration=3d".into(), "warmup=6h".into()],
        path: "agents.kf.count".into(),
        targets: vec![target],
        replications: 5,
        max_replications: 40,
        parallel: true,
    };
    let Outcome::Recommended(rec) = problem.solve(1).unwrap() else { panic!("46 agents meet the target") };
    // Erlang C: SL(20 s) is 0.775 with 45 agents and 0.839 with 46
    assert_eq!(rec.erlang, Some(46));
    assert_eq!(rec.at.value, 46, "{rec:#?}");
    let below = rec.below.as_ref().unwrap();
    assert!(rec.at.meets && !below.meets);
    assert_eq!(below.value, 45);
    // decided: the recommendation's 95 % interval is above the target,
    // the value below it is clearly under
    let sl = rec.at.metrics["service_level"].unwrap();
    assert!(sl.lo > 0.8 && sl.hi < 1.0, "{sl:?}");
    assert!(rec.at.checks[0].sure >= 0.975 && below.checks[0].sure <= 0.025, "{rec:#?}");
}

#[test]
fn replications_differ_and_repeat() {
    let sc = Scenario::parse_with(ERLANG_C, "e.toml", &["duration=6h".to_string()]).unwrap();
    let a = sweep::run(std::slice::from_ref(&sc), 3, false);
    let b = sweep::run(std::slice::from_ref(&sc), 3, false);
    assert_eq!(summaries_json(&a), summaries_json(&b), "same seed, same figures");
    let offered: Vec<u64> = a[0].iter().map(|s| s.sessions.offered).collect();
    assert!(offered[0] != offered[1] && offered[1] != offered[2], "replications must differ: {offered:?}");
    let seeds: Vec<u64> = a[0].iter().map(|s| s.seed).collect();
    assert_eq!(seeds, (0..3).map(|r| sweep::replication_seed(1, r)).collect::<Vec<_>>());
}

#[test]
fn parallel_and_serial_give_the_same_numbers() {
    let grid = sweep::grid(&[Vary::parse("agents.kf.count=43..46").unwrap()]).unwrap();
    let scenarios: Vec<Scenario> = grid
        .iter()
        .map(|p| sweep::variant(ERLANG_C, "e.toml", &["duration=6h".to_string()], p).unwrap())
        .collect();
    assert_eq!(
        summaries_json(&sweep::run(&scenarios, 4, true)),
        summaries_json(&sweep::run(&scenarios, 4, false))
    );
}

#[test]
fn sweep_and_plan_commands() {
    let out = std::env::temp_dir().join(format!("kfsim-sweep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let kfsim = env!("CARGO_BIN_EXE_kfsim");
    let o = Command::new(kfsim)
        .args(["sweep", "scenarios/erlang-c.toml", "--set", "duration=6h", "--replications", "3"])
        .args([
            "--vary",
            "agents.kf.count=44,46",
            "--vary",
            "account.kf.policy=round_robin,idle_first",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(result["points"].as_array().unwrap().len(), 4);
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.starts_with("agents.kf.count,account.kf.policy,service_level.mean,"));
    for p in result["points"].as_array().unwrap() {
        let sl = &p["metrics"]["service_level"];
        let (lo, hi) = (sl["lo"].as_f64().unwrap(), sl["hi"].as_f64().unwrap());
        assert!(0.0 <= lo && lo <= hi && hi <= 1.0, "a service level interval stays in [0, 1]: {sl}");
    }
    let svg = std::fs::read_to_string(out.join("charts/sweep-service_level.svg")).unwrap();
    assert!(svg.contains("theory: erlang c") && svg.contains("account.kf.policy=idle_first"));
    assert!(std::fs::read_to_string(out.join("sweep.html")).unwrap().contains("<svg"));

    let o = Command::new(kfsim)
        .args(["sweep", "scenarios/erlang-c.toml", "--vary", "agents.nobody.count=1..2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));

    let o = Command::new(kfsim)
        .args(["plan", "scenarios/erlang-c.toml", "--set", "duration=1d", "--target", "service_level>=0.8"])
        .args(["--vary", "agents.kf.count"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("erlang c says agents.kf.count = 46"), "{stdout}");
    let o = Command::new(kfsim)
        .args([
            "plan",
            "scenarios/erlang-c.toml",
            "--target",
            "servce_level>=0.8",
            "--vary",
            "agents.kf.count",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn per_interval_staffing_follows_the_profile() {
    let dir = std::env::temp_dir().join(format!("kfsim-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("day.toml");
    // each interval is set by name: one that must be quoted in a path
    // (found by review: `'tis` broke every interval)
    let text = ERLANG_C.replace(
        "rate = \"10/min\"",
        "name = \"'tis=web\"\nrate = \"10/min\"\nprofile = [{ at = \"0h\", factor = 0.5 }, { at = \"2h\", factor = 0.5 }, { at = \"2h\", factor = 2.0 }]",
    );
    std::fs::write(&path, text).unwrap();
    let out = dir.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_kfsim"))
        .args(["plan", path.to_str().unwrap(), "--set", "duration=4h", "--set", "warmup=0s"])
        .args(["--target", "service_level>=0.8", "--vary", "agents.kf.count", "--per-interval", "2h"])
        .args(["--replications", "3", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip(2)
        .filter(|l| !l.starts_with("report"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(out.join("charts/plan-per-interval.svg").exists(), "the intraday staffing as a chart");
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["per_interval"].as_array().unwrap().len(), 2);
    let staff = |r: &Vec<&str>| r[2].parse::<u32>().unwrap();
    // 5/min then 20/min at 4 min each: 20 and 80 Erlangs
    assert!((21..=30).contains(&staff(&rows[0])), "{stdout}");
    assert!((82..=95).contains(&staff(&rows[1])), "{stdout}");
    for r in &rows {
        let erlang: u32 = r[3].parse().expect("an Erlang C answer per interval");
        assert!(erlang.abs_diff(staff(r)) <= 1, "simulation and Erlang C disagree: {stdout}");
    }
}

#[test]
fn an_impossible_target_stops_at_its_plateau() {
    // replies take minutes: no number of agents gets the p95 reply under a
    // minute (the first response is the bot's, in seconds)
    let started = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_kfsim"))
        .args(["plan", "scenarios/quickstart.toml", "--target", "reply.p95<60s"])
        .args(["--vary", "agents.day-shift.count"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "an unreachable target is a failed plan, not a crash: {stdout}");
    assert!(stdout.contains("UNREACHABLE  reply.p95<60s"), "{stdout}");
    assert!(stdout.contains("levels off at about 2m"), "{stdout}");
    let tried = stdout.lines().find(|l| l.trim_start().starts_with("tried")).unwrap();
    let largest: u32 = tried.split(" · ").last().unwrap().split(':').next().unwrap().trim().parse().unwrap();
    assert!(largest <= 1024, "the search stops early, not at 100 000 agents: {tried}");
    assert!(started.elapsed().as_secs() < 60);
}

#[test]
fn plan_out_writes_the_staffing_curve_and_the_decision() {
    let out = std::env::temp_dir().join(format!("kfsim-plan-out-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new(env!("CARGO_BIN_EXE_kfsim"))
        .args(["plan", "scenarios/erlang-c.toml", "--set", "duration=1d", "--target", "service_level>=0.8"])
        .args(["--vary", "agents.kf.count", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("% sure it holds"), "how sure each decision is: {stdout}");
    let plan: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("plan.json")).unwrap()).unwrap();
    assert_eq!(plan["outcome"]["outcome"], "recommended");
    let at = &plan["outcome"]["at"];
    assert_eq!(at["decision"], "meets");
    assert!(at["checks"][0]["sure"].as_f64().unwrap() >= 0.975, "{at}");
    assert!(
        at["metrics"]["service_level"]["lo"].as_f64().unwrap() >= 0.8,
        "decided, so its 95 % interval is above: {at}"
    );
    let curve = plan["outcome"]["curve"].as_array().unwrap();
    assert!(curve.len() >= 10, "a curve around the answer: {}", curve.len());
    assert!(
        out.join("charts/plan-service_level.svg").exists()
            && out.join("charts/plan-service_level.png").exists()
    );
    assert!(
        std::fs::read_to_string(out.join("plan.html")).unwrap().contains("Recommended: agents.kf.count =")
    );
}

/// The erlang-c scenario with a bot in front that resolves `resolve`.
const BOT: &str = "account.kf.bot={ reply_delay = { dist = \"exponential\", mean = \"1m\" }, resolve = 0.4 }";

#[test]
fn sweeping_the_bots_share_follows_erlang_c_of_what_is_left() {
    let sets = vec![
        "duration=5d".to_string(),
        "warmup=6h".to_string(),
        BOT.to_string(),
        "agents.kf.count=28".into(),
    ];
    let vary = [Vary::parse("account.kf.bot.resolve=0.35,0.45").unwrap()];
    let grid = sweep::grid(&vary).unwrap();
    let scenarios: Vec<Scenario> =
        grid.iter().map(|p| sweep::variant(ERLANG_C, "erlang-c.toml", &sets, p).unwrap()).collect();
    let runs = sweep::run(&scenarios, 8, true);
    let mut asa = Vec::new();
    for (sc, runs) in scenarios.iter().zip(&runs) {
        let theory = kfsim::theory::predict(sc).expect("Erlang C behind a bot");
        let est = sweep::estimate(runs);
        for metric in ["service_level", "wait_probability", "occupancy"] {
            let e: Estimate = est[metric].unwrap();
            let t = theory.metric(metric).unwrap();
            let half = (e.hi - e.lo) / 2.0;
            eprintln!("{metric}: sim {:.4} ± {half:.4}, theory {t:.4}", e.mean);
            assert!(half < 0.2 * t.abs().max(0.05), "{metric}: the interval is too wide to test anything");
            assert!((e.mean - t).abs() <= 1.5 * half, "{metric}: sim {e:?} vs theory {t}");
        }
        asa.push(est["asa_ms"].unwrap().mean);
    }
    assert!(asa[1] < asa[0], "a bot resolving more leaves shorter waits: {asa:?}");
}

#[test]
fn a_bot_lowers_the_staffing_plan_to_erlang_c_of_what_is_left() {
    let base = Scenario::parse_with(ERLANG_C, "erlang-c.toml", &[BOT.to_string()]).unwrap();
    let target = Target::parse("service_level>=0.8", &base).unwrap();
    let problem = Problem {
        text: ERLANG_C,
        file: "erlang-c.toml",
        sets: vec!["duration=3d".into(), "warmup=6h".into(), BOT.into()],
        path: "agents.kf.count".into(),
        targets: vec![target],
        replications: 5,
        max_replications: 40,
        parallel: true,
    };
    let Outcome::Recommended(rec) = problem.solve(1).unwrap() else { panic!("a staffing meets the target") };
    let erlang = rec.erlang.expect("theory applies behind a bot");
    assert!(erlang < 46, "46 agents without the bot; {erlang} with it");
    assert_eq!(rec.at.value, erlang, "{rec:#?}");
}

#[test]
fn grids_and_intervals_that_cannot_be_meant_are_refused() {
    let sweep = |vary: &[&'static str]| {
        let mut args = vec!["sweep", "scenarios/erlang-c.toml"];
        for v in vary {
            args.extend(["--vary", v]);
        }
        args
    };
    let plan = |every: &'static str| {
        let target = ["--target", "service_level>=0.8", "--vary", "agents.kf.count"];
        [&["plan", "scenarios/erlang-c.toml"][..], &target, &["--per-interval", every]].concat()
    };
    let cases = [
        (
            sweep(&["agents.kf.count=44,45", "agents.kf.count=46"]),
            "--vary agents.kf.count: the parameter is varied twice (also agents.kf.count=44,45)",
        ),
        (
            sweep(&["agents.kf.count=44,45,44"]),
            "points `agents.kf.count=44` and `agents.kf.count=44` are the same scenario",
        ),
        // two spellings of one rate are one scenario too
        (
            sweep(&["entry.web.rate=60/min,1/s"]),
            "points `entry.web.rate=60/min` and `entry.web.rate=1/s` are the same scenario",
        ),
        (
            sweep(&["agents.kf.count=1..1000", "seed=1..1000"]),
            "--vary: 1000000 points in the grid; a sweep runs at most 100000",
        ),
        (plan("1us"), "--per-interval 1us cuts the scenario (1d) into 86400000000 intervals; at most 2016"),
        (plan("1000d"), "--per-interval 1000d is longer than the scenario (1d)"),
        // Bounded as a run is, by its least work: each interval a search of
        // at least --replications runs of 8 intervals or 4 h (unbounded,
        // these ran for hours before the first interval was done)
        (
            [&plan("1h")[..], &["--set", "entry.web.rate=1000/s"]].concat(),
            "--per-interval 1h cuts the scenario (1d) into 24 intervals, each sized by a search that runs at \
             least 5 replications (--replications) of 8h at one staffing level: at least 3.456e9 arrivals in all",
        ),
        (
            [&plan("5m")[..], &["--set", "entry.web.rate=40/s", "--set", "entry.web.messages=20"]].concat(),
            "at least 1.659e10 customer messages in all, above the most kfsim simulates in one run, 1e10",
        ),
        (
            [&plan("5m")[..], &["--set", "entry.web.rate=40/s", "--set", "entry.web.messages=20"]].concat(),
            "lengthen --per-interval (each interval is run for 4h however short it is",
        ),
        // the interval's runs as the work of a run counts them: the
        // transfers a session may expect too (here 16, back and forth)
        (
            [
                &plan("1h")[..],
                &[
                    "--set",
                    "entry.web.rate=250/s",
                    "--set",
                    "agents.kf.transfer={ to = \"kf\", share = 0.99 }",
                ],
            ]
            .concat(),
            "customer messages in all",
        ),
    ];
    for (args, want) in cases {
        let o = Command::new(env!("CARGO_BIN_EXE_kfsim")).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr:?} should say {want:?}");
    }
}

/// A plan decides by a 95 % interval over staffing: one replication gives
/// no interval, and a seed or a scenario setting is neither staffing nor
/// an outcome (found by probing: `--replications 1 --max-replications 1`
/// was ">99.9 % sure", `--vary seed` recommended a seed). Each is refused
/// (exit 2) before anything runs.
#[test]
fn a_plan_refuses_what_gives_no_staffing_answer() {
    let kfsim = env!("CARGO_BIN_EXE_kfsim");
    let plan = |extra: &[&str]| {
        let o = Command::new(kfsim).args(["plan", "scenarios/erlang-c.toml"]).args(extra).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let sl = |more: &[&'static str]| [&["--target", "service_level>=0.8"][..], more].concat();
    let cases: [(Vec<&str>, &str); 9] = [
        (sl(&["--vary", "agents.kf.count", "--replications", "1"]), "not in 2..=1000"),
        (sl(&["--vary", "agents.kf.count", "--max-replications", "1"]), "not in 2..=10000"),
        (
            sl(&["--vary", "agents.kf.count", "--replications", "8", "--max-replications", "4"]),
            "--max-replications 4 is below --replications 8",
        ),
        (vec!["--target", "asa_ms<=-5", "--vary", "agents.kf.count"], "asa_ms is never negative"),
        (sl(&["--vary", "seed"]), "a plan varies staffing"),
        (vec!["--target", "seed>=0", "--vary", "agents.kf.count"], "not a measured outcome"),
        // no side of a threshold to search for (found by probing:
        // `service_level!=0.8` recommended 1 agent, at a service level of 0)
        (
            vec!["--target", "service_level!=0.8", "--vary", "agents.kf.count"],
            "`!=` names no side of the threshold: a plan's targets use >=, >, <= or <",
        ),
        (
            vec!["--target", "abandon_rate == 0", "--vary", "agents.kf.count"],
            "`==` names no side of the threshold: a plan's targets use >=, >, <= or <",
        ),
        // a mistyped `=` was told the gates' operators, `==` and `!=` among them
        (
            vec!["--target", "service_level=0.8", "--vary", "agents.kf.count"],
            "`=` names no side of the threshold: a plan's targets use >=, >, <= or <",
        ),
    ];
    for (extra, says) in &cases {
        let (code, stderr) = plan(extra);
        assert_eq!(code, Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(says), "{extra:?}: {stderr}");
    }
}

/// `kfsim plan scenarios/erlang-c.toml ARGS`: exit code and standard output.
fn plan_erlang_c(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_kfsim"))
        .args(["plan", "scenarios/erlang-c.toml"])
        .args(args)
        .output()
        .unwrap();
    (o.status.code(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
}

/// `kfsim plan` of scenario `text` (written to a file named after `name`)
/// with `args`: exit code and standard output.
fn plan_text(name: &str, text: &str, args: &[&str]) -> (Option<i32>, String) {
    let file = std::env::temp_dir().join(format!("kfsim-plan-{name}-{}.toml", std::process::id()));
    std::fs::write(&file, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kfsim")).arg("plan").arg(&file).args(args).output().unwrap();
    let _ = std::fs::remove_file(&file);
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned())
}

fn recommended(stdout: &str) -> Option<u32> {
    let line = stdout.lines().find(|l| l.starts_with("recommended"))?;
    line.rsplit('=').next()?.trim().parse().ok()
}

/// Found by probing: with no spread over the replications, `>=` and `<=`
/// were judged strict, so a service level of exactly 1 at every
/// replication missed `service_level>=1` and the plan said it levels off
/// at about 1.
#[test]
fn a_target_met_exactly_at_its_bound_is_met() {
    for target in ["service_level>=1", "wait_probability<=0"] {
        let (code, out) = plan_erlang_c(&["--target", target, "--vary", "agents.kf.count"]);
        assert_eq!(code, Some(0), "{target}: {out}");
        // Erlang C needs 46 for 80 % in 20 s: every customer within 20 s takes more
        let n = recommended(&out).unwrap_or_else(|| panic!("{target}: {out}"));
        assert!((50..=100).contains(&n), "{target}: {out}");
    }
}

/// Found by probing: a small team (6 chats an hour, 10-minute chats, 48
/// sessions a replication) asked for a 99.9 % service level in 20 s,
/// which Erlang C gives at 6 agents (5 give 99.66 %). Every replication
/// at 5 agents had all its sessions in time often enough that 7 seeds of
/// 12 recommended 5, ">99.9 % sure" from 240 sessions. Judged by its
/// sessions, a perfect 100 % of a few hundred cannot show 99.9 %, and no
/// seed recommends fewer than Erlang C's 6.
#[test]
fn a_perfect_share_of_few_sessions_does_not_meet_a_high_target() {
    let sets = ["duration=10h", "warmup=2h", "entry.web.rate=6/h", "agents.kf.reply_delay.mean=10m"];
    let sets: Vec<&str> = sets.iter().flat_map(|s| ["--set", s]).collect();
    // the seeds that recommended 5
    for seed in ["1", "2", "6"] {
        let seed_set = format!("seed={seed}");
        let mut args = sets.clone();
        args.extend(["--set", &seed_set]);
        args.extend(["--target", "service_level>=0.999", "--vary", "agents.kf.count", "--serial"]);
        let (_, out) = plan_erlang_c(&args);
        match recommended(&out) {
            Some(n) => assert!(n >= 6, "seed {seed}: {n} agents give 99.66 %, below the target: {out}"),
            // undecided, said so, and the search stopped where the group
            // idles instead of walking on to 100 000 agents
            None => assert!(out.contains("cannot show it") && !out.contains("100000:"), "seed {seed}: {out}"),
        }
    }
}

/// Found by probing: whether agents were still the bottleneck was read off
/// the whole scenario, so a small account's target was "unreachable" at 2
/// agents because a large account's 100 agents sat almost idle.
#[test]
fn a_group_is_judged_by_its_own_load_not_the_scenarios() {
    let text = r#"
name = "two-accounts"
seed = 1
duration = "24h"
warmup = "1h"
service_level = "20s"
[[account]]
name = "big"
[[account]]
name = "small"
[[agents]]
account = "big"
group = "bigg"
count = 100
reply_delay = { dist = "exponential", mean = "4m" }
[[agents]]
account = "small"
group = "smallg"
count = 50
reply_delay = { dist = "exponential", mean = "4m" }
[[entry]]
scene = "web"
account = "big"
rate = "1/min"
[[entry]]
scene = "app"
account = "small"
rate = "10/min"
"#;
    let args = ["--target", "by_account.small.service_level>=0.8", "--vary", "agents.smallg.count"];
    let (code, out) = plan_text("two-accounts", text, &args);
    assert_eq!(code, Some(0), "{out}");
    // the small account alone is the M/M/N of scenarios/erlang-c.toml: Erlang C says 46
    let n = recommended(&out).unwrap_or_else(|| panic!("{out}"));
    assert!(n.abs_diff(46) <= 1, "{out}");
}

/// A floor on occupancy gets harder with more staff: it is checked where
/// the other targets are first met, not searched over (found by probing:
/// `occupancy>=0.8` beside a service level made a plan that 46 agents meet
/// "unreachable", as its search doubled past where occupancy holds).
#[test]
fn a_target_more_staff_makes_harder_is_checked_at_the_answer() {
    let sl = ["--target", "service_level>=0.8", "--vary", "agents.kf.count"];
    let (code, out) = plan_erlang_c(&[&sl[..], &["--target", "occupancy>=0.8"]].concat());
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(recommended(&out), Some(46), "Erlang C's 46 (occupancy 87 %) meets both: {out}");
    let (code, out) = plan_erlang_c(&[&sl[..], &["--target", "occupancy>=0.9"]].concat());
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("UNREACHABLE  occupancy>=0.9"), "{out}");
    assert!(out.contains("falls with more"), "{out}");
    // alone, it holds at the smallest staffing
    let (code, out) = plan_erlang_c(&["--target", "occupancy>=0.95", "--vary", "agents.kf.count"]);
    assert_eq!((code, recommended(&out)), (Some(0), Some(1)), "{out}");
}

/// Found by probing: a target on a figure no run produces (abandonment
/// with no patience) searched every staffing up to 100 000 agents.
#[test]
fn a_target_nothing_measures_stops_early() {
    // a floor: nobody abandoning never meets it
    let (code, out) = plan_erlang_c(&["--target", "abandon_wait.p95>1s", "--vary", "agents.kf.count"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("has no value in any replication"), "{out}");
    let tried = out.lines().find(|l| l.trim_start().starts_with("tried")).unwrap();
    let largest: u32 = tried.split(" · ").last().unwrap().split(':').next().unwrap().trim().parse().unwrap();
    assert!(largest <= 256, "{tried}");
}

/// A ceiling on the waits of those who abandon is met once nobody does,
/// as the gate judges it: a plan that staffed past the last abandonment
/// called such a target unreachable ("has no value in any replication").
#[test]
fn a_ceiling_on_abandoned_waits_is_met_once_nobody_abandons() {
    let text = std::fs::read_to_string("scenarios/erlang-c.toml").unwrap().replace(
        "rate = \"10/min\"",
        "rate = \"10/min\"\npatience = { dist = \"exponential\", mean = \"1m\" }",
    );
    assert!(text.contains("patience"));
    let args = ["--target", "abandon_wait.p95<=10s", "--vary", "agents.kf.count"];
    let (code, out) = plan_text("abandoned-waits", &text, &args);
    assert_eq!(code, Some(0), "{out}");
    let n = recommended(&out).unwrap_or_else(|| panic!("{out}"));
    // Erlang A puts about 1 % of arrivals past their patience at 50 agents;
    // waits of 10 s or less among those who leave take many more
    assert!((50..=100).contains(&n), "{out}");
    // without patience nobody ever abandons: met at the least staffing
    let (code, out) = plan_erlang_c(&["--target", "abandon_wait.p95<60s", "--vary", "agents.kf.count"]);
    assert_eq!((code, recommended(&out)), (Some(0), Some(1)), "{out}");
}

/// A group serving several accounts is still the bottleneck while any of
/// them has customers waiting (found by review: with the quiet account
/// first in `accounts`, its idleness ended the search at 16 agents).
#[test]
fn a_shared_group_is_judged_by_every_account_it_serves() {
    let text = |accounts: &str| {
        format!(
            r#"
name = "shared"
seed = 1
duration = "24h"
service_level = "20s"
[[account]]
name = "quiet"
[[account]]
name = "busy"
[[agents]]
accounts = {accounts}
group = "g"
count = 50
reply_delay = {{ dist = "exponential", mean = "4m" }}
[[entry]]
scene = "web"
account = "busy"
rate = "10/min"
patience = {{ dist = "exponential", mean = "2m" }}
profile = [{{ at = "0h", factor = 1.0 }}, {{ at = "20h", factor = 1.0 }}, {{ at = "20h", factor = 0.0 }}]
[[entry]]
scene = "app"
account = "quiet"
rate = "1/min"
profile = [{{ at = "0h", factor = 0.0 }}, {{ at = "21h", factor = 0.0 }}, {{ at = "21h", factor = 1.0 }}]
"#
        )
    };
    let mut answers = Vec::new();
    for (k, accounts) in [r#"["quiet", "busy"]"#, r#"["busy", "quiet"]"#].into_iter().enumerate() {
        let args = ["--target", "by_account.busy.service_level>=0.8", "--vary", "agents.g.count"];
        let (code, out) = plan_text(&format!("shared-{k}"), &text(accounts), &args);
        assert_eq!(code, Some(0), "{accounts}: {out}");
        answers.push(recommended(&out).unwrap_or_else(|| panic!("{out}")));
    }
    assert_eq!(answers[0], answers[1], "the order of `accounts` changes no answer");
    assert!((35..=50).contains(&answers[0]), "{answers:?}");
}

/// A figure only one replication measured (an entry a customer comes
/// through once in a while) has no interval: it was shown as `[1, 1]`.
#[test]
fn a_figure_one_replication_measured_shows_no_interval() {
    let text = std::fs::read_to_string("scenarios/erlang-c.toml")
        .unwrap()
        .replace("[[entry]]", "[[entry]]\nscene = \"app\"\nrate = \"0.008/h\"\n\n[[entry]]");
    // a threshold of 0 is the condition's to decide (one session cannot
    // show a share of 0.8: see the test above)
    let args = ["--set", "duration=4h", "--set", "seed=23", "--target", "by_entry.app.service_level>=0"];
    let (_, out) = plan_text("one-rep", &text, &[&args[..], &["--vary", "agents.kf.count"]].concat());
    assert!(out.contains("by_entry.app.service_level ") && out.contains(" (n = 1)"), "{out}");
    assert!(!out.contains("[1, 1]") && !out.contains("[0, 0]"), "{out}");
}

/// Found by probing: with replications of 48 sessions, doubling went from
/// 4 agents (missed) to 8 and 16, where every session of every
/// replication was answered in time; each borrowed the overdispersion 4
/// measured, too large to decide, and the plan gave up ("cannot show
/// it"), where 6 and 7 decide from their own few late answers. The
/// search now looks between. Erlang C: 6 agents give 0.99948, 7 0.99993.
#[test]
fn a_plan_looks_between_values_it_could_not_decide() {
    let text = r#"
name = "small-team"
seed = 3
duration = "10h"
warmup = "2h"
service_level = "20s"
[[account]]
name = "kf"
[[agents]]
count = 2
reply_delay = { dist = "exponential", mean = "10m" }
[[entry]]
scene = "web"
rate = "6/h"
"#;
    let args = ["--target", "service_level>=0.999", "--vary", "agents.kf.count", "--max-replications", "640"];
    let (code, out) = plan_text("between", text, &args);
    assert_eq!(code, Some(0), "{out}");
    assert!(matches!(recommended(&out), Some(6 | 7)), "{out}");
    // With the default 40 replications it cannot be shown, and the plan
    // says by how much the replications fall short, not only that they do.
    let (code, out) = plan_text("between-short", &text.replace("seed = 3", "seed = 1"), &args[..4]);
    assert_eq!(code, Some(1), "{out}");
    let number = |after: &str| -> f64 {
        let at = out.find(after).unwrap_or_else(|| panic!("no {after:?} in {out}")) + after.len();
        out[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let (have, need) = (number("cannot show it: their "), number("it takes about "));
    assert!(need > have && have >= 1000.0, "{have} {need}: {out}");
    let fold = number("--max-replications about ");
    assert!(fold >= (need / have).ceil(), "{fold}: {out}");
}
