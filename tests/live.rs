//! The live engine end to end against the embedded reference service:
//! message accounting, agreement with the simulator, interruption and an
//! unreachable target. Traffic goes only to loopback.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use kfsim::live::LiveOptions;
use kfsim::scenario::Scenario;

/// Live runs measure wall-clock behaviour: one at a time, so that they do
/// not compete for the two cores and skew each other's timing.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn live(sc: &Scenario, scale: f64) -> kfsim::metrics::Measured {
    let opts = LiveOptions { time_scale: scale, target_label: "embedded".into(), ..Default::default() };
    kfsim::cli::run::run_live_with(sc, opts, true, &mut |_| true).expect("the live run works")
}

#[test]
fn a_chat_scenario_runs_live_with_nothing_lost() {
    let _one = serial();
    let text = r#"
name = "live-chat"
seed = 9
duration = "20m"
service_level = "20s"
[[account]]
name = "kf"
policy = "idle_first"
[[agents]]
group = "chat"
count = 6
max_concurrent = 3
reply_delay = { dist = "exponential", mean = "30s" }
wrap_up = "5s"
[[entry]]
scene = "web"
rate = "6/min"
messages = { dist = "geometric", mean = 3 }
think = { dist = "exponential", mean = "20s" }
patience = { dist = "exponential", mean = "3m" }
mix = { text = 0.8, image = 0.2 }
[[entry]]
scene = "payment"
rate = "2/min"
"#;
    let sc = Scenario::parse(text, "live-chat.toml").unwrap();
    let m = live(&sc, 120.0);
    let s = &m.summary;
    let c = &s.sessions;
    eprintln!("{c:?} {:?}", s.messages);
    assert_eq!(s.engine, "live");
    assert!(c.offered > 80, "about 160 arrivals expected: {c:?}");
    assert_eq!(c.offered, c.answered + c.abandoned + c.rejected + c.unfinished);
    let msgs = &s.messages;
    assert_eq!(msgs.lost, Some(0), "{msgs:?}");
    assert_eq!(msgs.duplicated, Some(0));
    assert_eq!(msgs.reordered, Some(0));
    assert_eq!(msgs.sent, Some(msgs.customer), "every customer message was accepted");
    assert!(msgs.delivered.unwrap() <= msgs.sent.unwrap());
    assert_eq!(msgs.replies, msgs.delivered.unwrap(), "every delivered message was answered");
    assert_eq!(s.latency_ms.session.count, c.answered, "every answered session ended");
    let http = s.http.as_ref().unwrap();
    for (name, e) in http {
        assert_eq!(e.errors, 0, "{name}: {e:?}");
    }
    assert!(http["customer_batch"].latency.count > 0 && http["servicer_batch"].latency.count > 0);
    assert!(s.by_entry["payment"].sessions.offered > 0);
    assert!(m.histograms.contains_key("http.customer_batch"));
    let info = s.live.as_ref().unwrap();
    assert_eq!((info.open_at_end, &info.gave_up), (0, &Default::default()));
    // a gate may name any live-only figure: each is in a live summary (the
    // middleware's in a run against one: tests/middleware.rs)
    for name in http.keys() {
        assert!(kfsim::live::http::ENDPOINTS.contains(&name.as_str()), "`{name}` is not in ENDPOINTS");
    }
    let leaves = kfsim::gate::leaf_paths(&serde_json::to_value(s).unwrap());
    // an error kind is in a summary only once met: a run without errors has
    // none (a gate reads one never met as 0: gate.rs)
    let listed = |p: &&&str| !p.starts_with("middleware.") && !p.contains(".errors_by_kind.");
    for pattern in kfsim::gate::LIVE_ONLY.iter().filter(listed) {
        assert!(
            leaves.iter().any(|p| kfsim::gate::matches_pattern(p, pattern)),
            "`{pattern}` is in no live summary"
        );
    }
}

#[test]
fn live_agrees_with_the_simulator() {
    let _one = serial();
    let text = std::fs::read_to_string("scenarios/live-check.toml").unwrap();
    let sc = Scenario::parse(&text, "live-check.toml").unwrap();
    let live = live(&sc, sc.time_scale).summary;
    // The live run is one more replication of the same model: it must fall
    // within the simulator's own run-to-run spread (4 standard deviations
    // of single runs), plus what the driver's timing adds (a few ms of wall
    // time per step, ×120).
    let wait_p = |s: &kfsim::summary::Summary| s.wait_probability.unwrap();
    let asa_s = |s: &kfsim::summary::Summary| s.asa_ms.unwrap() / 1e3;
    let (pm, psd) = common::sim_spread(&sc, 1..=20, wait_p);
    let (am, asd) = common::sim_spread(&sc, 1..=20, asa_s);
    eprintln!("P(W>0): live {:.3}, sim {pm:.3} ± {psd:.3}", wait_p(&live));
    eprintln!("ASA: live {:.2} s, sim {am:.2} ± {asd:.2} s", asa_s(&live));
    assert!((wait_p(&live) - pm).abs() <= 4.0 * psd + 0.03, "wait probability disagrees");
    assert!((asa_s(&live) - am).abs() <= 4.0 * asd + 1.0, "mean queue wait disagrees");
    assert_eq!(live.messages.lost, Some(0));
}

#[test]
fn ctrl_c_stops_a_live_run_and_writes_the_report() {
    stop_a_live_run_with("INT");
}

#[test]
fn sigterm_stops_a_live_run_and_writes_the_report() {
    stop_a_live_run_with("TERM");
}

/// A closed terminal or ssh session (SIGHUP) stops a run as Ctrl-C does:
/// run from a process that put SIGHUP back to its default, as a login
/// shell has it (this test's own may inherit it ignored).
#[test]
fn sighup_stops_a_live_run_and_writes_the_report() {
    stop_a_live_run_with("HUP");
}

/// Under `nohup` SIGHUP stays ignored (a handler would undo what nohup
/// asked): the run goes on, and SIGTERM still stops it with its report.
#[test]
fn under_nohup_sighup_leaves_a_live_run_running() {
    stop_a_live_run_with("nohup");
}

/// Send `signal` to a live run past its warm-up: it stops arrivals, drains
/// briefly, writes the report of what ran and exits 130. `nohup`: SIGHUP
/// first, which the run outlives, then SIGTERM.
fn stop_a_live_run_with(signal: &str) {
    let _one = serial();
    let out = std::env::temp_dir().join(format!("kfsim-live-{signal}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = match signal {
        "nohup" => Command::new("nohup"),
        // Perl is part of every Debian system (perl-base is essential)
        _ => {
            let mut c = Command::new("perl");
            c.args(["-e", "$SIG{HUP} = 'DEFAULT'; exec @ARGV or die \"exec: $!\""]);
            c
        }
    };
    let mut child = cmd
        .arg(env!("CARGO_BIN_EXE_kfsim"))
        .args(["run", "scenarios/live-check.toml", "--engine", "live", "--time-scale", "120", "-q", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // past the 5 min warm-up (2.5 s at ×120), well before the hour ends (30 s)
    std::thread::sleep(Duration::from_secs(6));
    let pid = child.id().to_string();
    let kill = |sig: &str| {
        let sig = format!("-{sig}");
        assert!(Command::new("kill").args([sig.as_str(), &pid]).status().unwrap().success());
    };
    if signal == "nohup" {
        kill("HUP");
        std::thread::sleep(Duration::from_secs(1));
        assert!(child.try_wait().unwrap().is_none(), "SIGHUP under nohup ended the run");
        kill("TERM");
    } else {
        kill(signal);
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", String::from_utf8_lossy(&o.stderr));
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["run"]["interrupted"], true);
    assert_eq!(s["engine"], "live");
    assert!(s["sessions"]["offered"].as_u64().unwrap() > 0);
    assert!(s["run"]["end_s"].as_f64().unwrap() < 3600.0);
    let _ = std::fs::remove_dir_all(&out);
}

/// Pinned to one CPU, `kfsim run` runs the driver and the embedded service
/// on one thread (tokio's current-thread scheduler, as `kfsim serve` does):
/// it says so, and nothing waits on another thread that is not there — the
/// run ends on time with every message accounted for.
#[test]
fn a_live_run_pinned_to_one_cpu_runs_on_one_thread() {
    let _one = serial();
    let out = std::env::temp_dir().join(format!("kfsim-live-one-cpu-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let o = Command::new("taskset")
        .args(["-c", "0", env!("CARGO_BIN_EXE_kfsim")])
        .args(["run", "scenarios/live-check.toml", "--engine", "live", "--time-scale", "120"])
        .args(["--set", "duration=20m", "--no-gates", "--out"])
        .arg(&out)
        .output()
        .expect("taskset (util-linux) runs kfsim");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "exit {:?}: {stderr}", o.status.code());
    assert!(stderr.contains("on one thread"), "{stderr}");
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("a count: {v}"));
    let c = &s["sessions"];
    assert!(n(&c["offered"]) > 200, "15 minutes after the warm-up at 30/min: {c}");
    assert_eq!(
        n(&c["offered"]),
        n(&c["answered"]) + n(&c["abandoned"]) + n(&c["rejected"]) + n(&c["unfinished"]),
        "{c}"
    );
    let m = &s["messages"];
    assert_eq!((n(&m["lost"]), n(&m["duplicated"]), n(&m["reordered"])), (0, 0, 0), "{m}");
    assert!(n(&m["delivered"]) > 0 && n(&m["delivered"]) <= n(&m["sent"]), "{m}");
    assert_eq!(s["run"]["interrupted"], false);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn an_unreachable_target_exits_3() {
    // port 1 on loopback: nothing listens there
    let o = Command::new(env!("CARGO_BIN_EXE_kfsim"))
        .args([
            "run",
            "scenarios/live-check.toml",
            "--engine",
            "live",
            "--target",
            "http://127.0.0.1:1",
            "-q",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("never reachable"), "{stderr}");
}

/// The README's first command: the quickstart at its shipped scale passes
/// its own gates, lands within the simulator's spread over seeds, and says
/// how much its own timing distorted it (well under 10 %).
#[test]
fn the_quickstart_agrees_with_the_simulator_at_its_shipped_scale() {
    let _one = serial();
    let text = std::fs::read_to_string("scenarios/quickstart.toml").unwrap();
    let sc = Scenario::parse(&text, "quickstart.toml").unwrap();
    let run = live(&sc, sc.time_scale);
    let gates = kfsim::gate::bind(&sc).unwrap();
    let json = serde_json::to_value(&run.summary).unwrap();
    for g in kfsim::gate::evaluate(&gates, &json) {
        assert_eq!(g.verdict, kfsim::summary::Verdict::Pass, "{g}");
    }
    let info = run.summary.live.as_ref().unwrap();
    let distortion = info.distortion.expect("measured");
    eprintln!("overhead {:?} ms wall, distortion {distortion:.3}", info.overhead_ms);
    assert!(distortion < 0.1, "the run's timing distorts waits by {distortion:.3} of T");
    let (mean, sd) = common::sim_spread(&sc, 1..=10, |s| s.service_level.unwrap());
    let live_sl = run.summary.service_level.unwrap();
    eprintln!("service level: live {live_sl:.3}, sim {mean:.3} ± {sd:.3} over 10 seeds");
    // one more replication of the same model: within 3 standard deviations
    // of single simulated runs (the old 4.5 ms dispatch tick put it 4 below)
    assert!((live_sl - mean).abs() <= 3.0 * sd, "live {live_sl:.3} vs sim {mean:.3} ± {sd:.3}");
}

/// A time scale that turns the run's own milliseconds into a large share
/// of the service-level threshold is warned about, with the largest scale
/// that keeps it under 10 %.
#[test]
fn a_time_scale_that_distorts_is_warned_with_the_scale_to_use() {
    let _one = serial();
    let out = std::env::temp_dir().join(format!("kfsim-distortion-{}", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_kfsim"))
        .args(["run", "scenarios/live-check.toml", "--engine", "live", "-q", "--time-scale", "1000"])
        .args(["--set", "duration=15m", "--set", "warmup=1m", "--set", "service_level=1s", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let (overhead_ms, d) =
        (s["live"]["overhead_ms"].as_f64().unwrap(), s["live"]["distortion"].as_f64().unwrap());
    // 1 000 × the overhead, against a 1 s threshold
    assert!(
        (d - overhead_ms).abs() < 1e-9 * d.max(1.0) + 1e-6,
        "distortion {d} = overhead {overhead_ms} ms × 1000 / 1 s"
    );
    assert!(d > 0.1, "{d}");
    let suggested: f64 = stderr
        .split("run at ×")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a suggested scale: {stderr}"));
    let expected = (1000.0 * 0.1 / d).floor();
    assert_eq!(suggested, expected.max(1.0), "{stderr}");
    let _ = std::fs::remove_dir_all(&out);
}

/// `account/list` answers at most 100 accounts a page: a scenario with
/// more finds them all.
#[test]
fn a_target_with_more_than_100_accounts_is_read_page_by_page() {
    let _one = serial();
    let mut text = String::from("name = \"many\"\nduration = \"2m\"\ntime_scale = 60\n");
    for i in 0..150 {
        text += &format!(
            "[[account]]\nname = \"a{i}\"\n[[agents]]\naccount = \"a{i}\"\ngroup = \"g{i}\"\ncount = 1\nreply_delay = \"5s\"\n"
        );
    }
    text += "[[entry]]\nscene = \"web\"\naccount = \"a149\"\nrate = \"20/min\"\n";
    let sc = Scenario::parse(&text, "many.toml").unwrap();
    let s = live(&sc, 60.0).summary;
    assert!(s.sessions.answered > 10, "sessions of the 150th account were served: {:?}", s.sessions);
}

/// The sim's summary of the same scenario and seed.
fn sim(sc: &Scenario) -> kfsim::summary::Summary {
    kfsim::sim::simulate(sc)
}

fn http_errors(s: &kfsim::summary::Summary) -> u64 {
    s.http.as_ref().unwrap().values().map(|e| e.errors).sum()
}

/// A bot in front of people, played by the driver through `send_msg` and
/// `service_state/trans`: every session the bot took is resolved or handed
/// over; with constant turns and delays the only draw of `bot/<account>`
/// is each session's resolution, taken in arrival order in both engines,
/// so the live run resolves exactly the sessions the simulator resolves.
#[test]
fn a_bot_answers_its_turns_then_resolves_or_hands_over() {
    let _one = serial();
    let text = r#"
name = "bot"
seed = 4
duration = "30m"
time_scale = 120
[[account]]
name = "kf"
bot = { reply_delay = "3s", resolve = 0.4, turns = 2 }
[[agents]]
count = 8
max_concurrent = 2
reply_delay = { dist = "exponential", mean = "30s" }
[[entry]]
scene = "web"
rate = "6/min"
messages = 2
think = "10s"
"#;
    let sc = Scenario::parse(text, "bot.toml").unwrap();
    let s = live(&sc, sc.time_scale).summary;
    let want = sim(&sc);
    let (b, wb) = (s.bot.as_ref().unwrap(), want.bot.as_ref().unwrap());
    eprintln!("live {b:?}\nsim {wb:?}\n{:?}", s.messages);
    assert!(b.sessions > 100, "{b:?}");
    assert_eq!((b.sessions, b.resolved, b.handed_over), (wb.sessions, wb.resolved, wb.handed_over));
    assert_eq!(b.replies, 2 * b.sessions, "two bot turns each");
    assert_eq!(s.messages.bot, Some(b.replies));
    assert_eq!(b.first_response.count, b.sessions);
    // the bot's calls are endpoints a gate may name
    for name in s.http.as_ref().unwrap().keys() {
        assert!(kfsim::live::http::ENDPOINTS.contains(&name.as_str()), "`{name}` is not in ENDPOINTS");
    }
    assert!(s.http.as_ref().unwrap().contains_key("send_msg"));
    // the bot answers each turn after 3 s, and the customer thinks 10 s
    // between: about 16 s in state 1 (plus the run's own milliseconds)
    let in_bot = b.time_in_bot.mean.unwrap() / 1e3;
    assert!((16.0..17.5).contains(&in_bot), "time in the bot {in_bot} s");
    let c = &s.sessions;
    assert_eq!(c.to_people, Some(b.handed_over));
    assert_eq!((c.answered, c.abandoned, c.rejected, c.unfinished), (b.handed_over, 0, 0, 0));
    // people answer the message handed over and one more; the first message
    // to the bot reaches them with the session, seen and not answered
    let m = &s.messages;
    assert_eq!(m.replies, 2 * c.answered);
    assert_eq!(m.customer, 3 * b.handed_over + 2 * b.resolved);
    assert_eq!(m.sent, Some(m.customer));
    assert_eq!(m.delivered, Some(m.replies + b.handed_over));
    assert_eq!((m.lost, m.duplicated, m.reordered), (Some(0), Some(0), Some(0)));
    assert_eq!(http_errors(&s), 0, "{:?}", s.http);
    let http = s.http.as_ref().unwrap();
    assert_eq!(http["send_msg"].latency.count, b.replies);
    assert_eq!(http["service_state_trans"].latency.count, b.sessions);
    assert_eq!(s.latency_ms.session.count, c.answered);
}

/// Every handle of the presale group passes its session to after-sales
/// once it answered the first message: one customer session, two handles,
/// each answered once; the customer's request to after-sales is a message
/// the target took (sent) but no new customer message.
#[test]
fn a_transferred_session_is_one_customer_session_with_two_handles() {
    let _one = serial();
    let text = r#"
name = "transfer"
seed = 6
duration = "30m"
time_scale = 120
[[account]]
name = "presale"
[[account]]
name = "after-sales"
prefer_last_agent = true
[[agents]]
group = "presale"
account = "presale"
count = 4
reply_delay = { dist = "exponential", mean = "20s" }
transfer = { to = "after-sales", share = 1.0, after = "10s" }
[[agents]]
group = "after-sales"
account = "after-sales"
count = 4
reply_delay = { dist = "exponential", mean = "20s" }
[[entry]]
scene = "web"
account = "presale"
rate = "6/min"
messages = 1
"#;
    let sc = Scenario::parse(text, "transfer.toml").unwrap();
    let s = live(&sc, sc.time_scale).summary;
    let c = &s.sessions;
    eprintln!("{c:?} {:?} {:?} {:?}", s.by_account, s.by_group, s.messages);
    assert!(c.offered > 100, "{c:?}");
    assert_eq!((c.answered, c.abandoned, c.rejected, c.unfinished), (c.offered, 0, 0, 0));
    let (pre, after) = (&s.by_account["presale"], &s.by_account["after-sales"]);
    assert_eq!(pre.handles.offered, c.offered);
    assert_eq!(s.transfers["presale->after-sales"], c.offered);
    assert_eq!((after.transferred_in, after.handles.answered), (c.offered, c.offered));
    let (gp, ga) = (&s.by_group["presale"], &s.by_group["after-sales"]);
    assert_eq!((gp.handles, gp.transferred, gp.ended), (c.offered, c.offered, 0));
    assert_eq!((ga.handles, ga.ended), (c.offered, c.offered));
    assert_eq!(s.latency_ms.session.count, c.offered, "each session ended once, in after-sales");
    let m = &s.messages;
    assert_eq!(m.replies, 2 * c.offered);
    assert_eq!(m.customer, c.offered);
    assert_eq!(m.sent, Some(m.customer + c.offered), "the request each transfer carries over");
    assert_eq!(m.delivered, Some(m.replies));
    assert_eq!((m.lost, m.duplicated, m.reordered), (Some(0), Some(0), Some(0)));
    assert_eq!(http_errors(&s), 0, "{:?}", s.http);
    // the presale agent works `after` (10 s), not its reply delay, on the
    // message it transfers: the first response
    let first = s.latency_ms.first_response.mean.unwrap() / 1e3;
    assert!((10.0..12.0).contains(&first), "first response {first} s");
}

/// Route rules send arrivals to the rule's account by `route/<entry>`, the
/// same stream as the simulator: with a share-only rule the picks depend on
/// nothing else, so the live run routes exactly the simulator's arrivals.
#[test]
fn routed_arrivals_land_in_the_rules_account() {
    let _one = serial();
    let text = r#"
name = "route"
seed = 8
duration = "30m"
time_scale = 120
[[account]]
name = "presale"
[[account]]
name = "vip"
[[agents]]
group = "presale"
account = "presale"
count = 6
reply_delay = { dist = "exponential", mean = "20s" }
[[agents]]
group = "vip"
account = "vip"
count = 3
reply_delay = { dist = "exponential", mean = "20s" }
[[entry]]
scene = "web"
account = "presale"
rate = "8/min"
route = [{ account = "vip", share = 0.3 }]
"#;
    let sc = Scenario::parse(text, "route.toml").unwrap();
    let s = live(&sc, sc.time_scale).summary;
    let want = sim(&sc);
    let offered = |s: &kfsim::summary::Summary, a: &str| s.by_account[a].handles.offered;
    eprintln!(
        "vip {} presale {} (sim {} {})",
        offered(&s, "vip"),
        offered(&s, "presale"),
        offered(&want, "vip"),
        offered(&want, "presale")
    );
    assert!(offered(&s, "vip") > 30);
    assert_eq!(offered(&s, "vip"), offered(&want, "vip"));
    assert_eq!(offered(&s, "presale"), offered(&want, "presale"));
    assert_eq!(s.by_group["vip"].handles, s.by_account["vip"].handles.answered, "vip's people took them");
    assert_eq!(http_errors(&s), 0, "{:?}", s.http);
}

/// scenarios/tiers.toml (a bot, a transfer, shared servicers and a route
/// rule) run live at its shipped scale is one more replication of the
/// simulator's model: each figure within 4 standard deviations of single
/// simulated runs over 10 seeds, plus a small allowance for the run's own
/// milliseconds (0.03 on shares).
#[test]
fn the_tiers_agree_with_the_simulator() {
    let _one = serial();
    let text = std::fs::read_to_string("scenarios/tiers.toml").unwrap();
    let sc = Scenario::parse(&text, "tiers.toml").unwrap();
    let run = live(&sc, sc.time_scale);
    let s = &run.summary;
    let gates = kfsim::gate::bind(&sc).unwrap();
    for g in kfsim::gate::evaluate(&gates, &serde_json::to_value(s).unwrap()) {
        assert_eq!(g.verdict, kfsim::summary::Verdict::Pass, "{g}");
    }
    type Figure = (&'static str, fn(&kfsim::summary::Summary) -> f64);
    let figures: [Figure; 6] = [
        ("deflection", |s| s.bot.as_ref().unwrap().deflection.unwrap()),
        ("presale wait probability", |s| s.by_account["presale"].wait_probability.unwrap()),
        ("presale service level", |s| s.by_account["presale"].service_level.unwrap()),
        ("after-sales wait probability", |s| s.by_account["after-sales"].wait_probability.unwrap()),
        ("after-sales service level", |s| s.by_account["after-sales"].service_level.unwrap()),
        ("transfer share", |s| {
            s.by_group["presale"].transferred as f64 / s.by_group["presale"].handles as f64
        }),
    ];
    let mut off = Vec::new();
    for (name, f) in figures {
        let (mean, sd) = common::sim_spread(&sc, 1..=10, f);
        let got = f(s);
        eprintln!("{name}: live {got:.3}, sim {mean:.3} ± {sd:.3}");
        if (got - mean).abs() > 4.0 * sd + 0.03 {
            off.push(format!("{name}: live {got:.3}, sim {mean:.3} ± {sd:.3}"));
        }
    }
    assert!(off.is_empty(), "{off:?}");
    let m = &s.messages;
    assert_eq!((m.lost, m.duplicated), (Some(0), Some(0)));
    assert_eq!(http_errors(s), 0, "{:?}", s.http);
    assert!(s.by_group["floaters"].handles > 0 && !s.transfers.is_empty());
}
