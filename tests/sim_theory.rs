//! The simulator against queueing theory (shared/reference/queueing.md).
//!
//! Each check runs R = 20 independent replications, on seeds no other check
//! uses, and requires the mean over replications to lie within 4 standard
//! errors of the formula, computed here from `kfsim::theory`. 4 SE of a
//! t-distribution with R−1 = 19 degrees of freedom leaves a false-alarm
//! probability of about 0.08 % per figure; the seeds are fixed, so the
//! outcome is the same on every run. (Checks sharing seeds drew the same
//! arrivals, so one unlucky stretch could fail several at once: found by
//! probing.)
//!
//! Each check also bounds the standard error, so that a loose simulation
//! cannot pass by being noisy. A bound is about twice the standard error
//! expected of 20 replications (measured over 40): a sample's standard error
//! is twice its expectation with probability about 1e-5 at 19 degrees of
//! freedom. Bounds fitted to one set of seeds (the expected error, or a
//! tenth above it) failed as soon as the seeds changed.

mod common;

use common::{assert_matches, replicate};
use kfsim::theory::{
    erlang_a, erlang_a_service_level, erlang_b, erlang_c, erlang_c_service_level, limited_pool,
};

/// λ = 10/min, exponential handle time with mean 4 min, one message, cap 1.
const MMN: &str = r#"
name = "mmn"
duration = "14d"
warmup = "12h"
service_level = "20s"
[[account]]
name = "kf"
[[agents]]
count = 44
reply_delay = { dist = "exponential", mean = "4m" }
[[entry]]
scene = "web"
rate = "10/min"
"#;

const LAMBDA: f64 = 10.0; // per minute
const MU: f64 = 0.25; // per minute

#[test]
fn erlang_c_m_m_44() {
    let runs = replicate(MMN, &[], 1..21);
    let theory = erlang_c(44, LAMBDA, MU).unwrap();
    let sl = erlang_c_service_level(44, LAMBDA, MU, 20.0 / 60.0).unwrap();
    // ~200 000 sessions per replication
    assert!(runs[0].sessions.offered > 190_000);
    assert_matches("P(W>0)", &runs, |s| s.wait_probability.unwrap(), theory.wait_probability, 0.007);
    assert_matches("ASA [s]", &runs, |s| s.asa_ms.unwrap() / 1e3, theory.asa * 60.0, 0.9);
    assert_matches("SL(20s)", &runs, |s| s.service_level.unwrap(), sl, 0.007);
    assert_matches("occupancy", &runs, |s| s.occupancy.unwrap(), LAMBDA / MU / 44.0, 0.002);
    for s in &runs {
        assert_eq!(s.sessions.abandoned + s.sessions.rejected + s.sessions.unfinished, 0);
    }
}

#[test]
fn erlang_a_m_m_42_with_patience() {
    let sets = ["agents.kf.count=42", "entry.web.patience={ dist = \"exponential\", mean = \"2m\" }"];
    let runs = replicate(MMN, &sets, 21..41);
    let theory = erlang_a(42, LAMBDA, MU, 0.5).unwrap();
    assert_matches("P(W>0)", &runs, |s| s.wait_probability.unwrap(), theory.wait_probability, 0.005);
    // 0.84155 in shared/reference/queueing.md
    let sl = erlang_a_service_level(42, LAMBDA, MU, 0.5, 20.0 / 60.0).unwrap();
    assert_matches("SL(20s)", &runs, |s| s.service_level.unwrap(), sl, 0.005);
    assert_matches("P(Ab)", &runs, |s| s.abandon_rate.unwrap(), theory.abandon_rate, 0.002);
    assert_matches("ASA answered [s]", &runs, |s| s.asa_ms.unwrap() / 1e3, theory.asa * 60.0, 0.2);
    // mean wait over all arrivals is P(Ab)/θ (Little's law on the queue)
    let all_wait = |s: &kfsim::summary::Summary| {
        let l = &s.latency_ms;
        (l.queue_wait.mean.unwrap() * l.queue_wait.count as f64
            + l.abandon_wait.mean.unwrap() * l.abandon_wait.count as f64)
            / s.sessions.offered as f64
            / 1e3
    };
    assert_matches("E[W] all [s]", &runs, all_wait, theory.abandon_rate / 0.5 * 60.0, 0.3);
}

#[test]
fn erlang_b_when_the_pool_is_off() {
    // queue_limit = 0: no waiting room, blocked arrivals are rejected (M/M/N/N)
    let sets = ["agents.kf.count=40", "account.kf.queue_limit=0"];
    let runs = replicate(MMN, &sets, 41..61);
    let b = erlang_b(40, LAMBDA / MU);
    let blocked = |s: &kfsim::summary::Summary| s.sessions.rejected as f64 / s.sessions.offered as f64;
    assert_matches("blocking", &runs, blocked, b, 0.003);
    assert_matches("P(not immediate)", &runs, |s| s.wait_probability.unwrap(), b, 0.003);
}

#[test]
fn a_limited_pool_is_m_m_n_n_plus_k() {
    // 40 agents at 40 Erlangs: without its limit the pool would grow
    // without bound; with 8 places a tenth or so is refused
    let rejected = |s: &kfsim::summary::Summary| s.sessions.rejected as f64 / s.sessions.offered as f64;
    let runs = replicate(MMN, &["agents.kf.count=40", "account.kf.queue_limit=8"], 61..81);
    let l = limited_pool(40, 8, LAMBDA, MU, 0.0, 20.0 / 60.0).unwrap();
    assert!(l.reject_rate > 0.05, "the case this test is for: {l:?}");
    assert_matches("refused", &runs, rejected, l.reject_rate, 0.002);
    assert_matches("P(not immediate)", &runs, |s| s.wait_probability.unwrap(), l.wait_probability, 0.004);
    assert_matches("ASA answered [s]", &runs, |s| s.asa_ms.unwrap() / 1e3, l.asa * 60.0, 0.15);
    assert_matches("SL(20s)", &runs, |s| s.service_level.unwrap(), l.service_level.unwrap(), 0.003);
    assert_matches(
        "occupancy",
        &runs,
        |s| s.occupancy.unwrap(),
        LAMBDA * (1.0 - l.reject_rate) / MU / 40.0,
        0.002,
    );

    // with patience (M/M/n/n+k+M): some leave the pool, fewer find it full
    let patience = "entry.web.patience={ dist = \"exponential\", mean = \"2m\" }";
    let runs = replicate(MMN, &["agents.kf.count=40", "account.kf.queue_limit=8", patience], 81..101);
    let a = limited_pool(40, 8, LAMBDA, MU, 0.5, 20.0 / 60.0).unwrap();
    assert!(a.abandon_rate > 0.03 && a.reject_rate > 0.01, "the case this test is for: {a:?}");
    assert_matches("refused, with patience", &runs, rejected, a.reject_rate, 0.002);
    assert_matches("P(Ab)", &runs, |s| s.abandon_rate.unwrap(), a.abandon_rate, 0.002);
    assert_matches(
        "P(not immediate), with patience",
        &runs,
        |s| s.wait_probability.unwrap(),
        a.wait_probability,
        0.003,
    );
    assert_matches("ASA answered [s], with patience", &runs, |s| s.asa_ms.unwrap() / 1e3, a.asa * 60.0, 0.1);
    let sl = a.service_level.expect("computed with patience too");
    assert_matches("SL(20s), with patience", &runs, |s| s.service_level.unwrap(), sl, 0.003);
}

/// Chats: cap k without slowdown is exactly M/M/(c·k), whatever the policy.
const CHAT: &str = r#"
name = "chat"
duration = "70d"
warmup = "1d"
service_level = "20s"
[[account]]
name = "kf"
policy = "round_robin"
[[agents]]
count = 4
max_concurrent = 3
reply_delay = { dist = "exponential", mean = "8m" }
[[entry]]
scene = "miniprogram"
rate = "1/min"
"#;

#[test]
fn chat_with_3_slots_is_erlang_c_with_3c_servers() {
    let theory = erlang_c(12, 1.0, 1.0 / 8.0).unwrap();
    let sl = erlang_c_service_level(12, 1.0, 1.0 / 8.0, 20.0 / 60.0).unwrap();
    for policy in ["round_robin", "idle_first", "fill_first"] {
        let set = format!("account.kf.policy={policy}");
        let runs = replicate(CHAT, &[&set], 101..121);
        assert_matches(
            &format!("{policy} P(W>0)"),
            &runs,
            |s| s.wait_probability.unwrap(),
            theory.wait_probability,
            0.005,
        );
        assert_matches(
            &format!("{policy} ASA [s]"),
            &runs,
            |s| s.asa_ms.unwrap() / 1e3,
            theory.asa * 60.0,
            0.6,
        );
        assert_matches(&format!("{policy} SL(20s)"), &runs, |s| s.service_level.unwrap(), sl, 0.005);
    }
}

#[test]
fn multi_message_sessions_hold_the_slot_for_the_whole_conversation() {
    // 4 messages with exponential replies of mean 30 s and constant think of
    // 20 s plus a 10 s wrap-up: the slot is held 4·30 + 3·20 + 10 = 190 s on
    // average. Occupancy is then λ·E[hold]/(c·k) by Little's law.
    let text = CHAT
        .replace(
            "reply_delay = { dist = \"exponential\", mean = \"8m\" }",
            "reply_delay = { dist = \"exponential\", mean = \"30s\" }\nwrap_up = \"10s\"",
        )
        .replace("rate = \"1/min\"", "rate = \"3/min\"\nmessages = 4\nthink = \"20s\"");
    let runs = replicate(&text, &["duration=10d"], 121..141);
    let expected = 3.0 * (190.0 / 60.0) / 12.0;
    assert_matches("occupancy", &runs, |s| s.occupancy.unwrap(), expected, 0.003);
    assert_matches(
        "session [s]",
        &runs,
        |s| s.latency_ms.session.mean.unwrap() / 1e3 - s.asa_ms.unwrap() / 1e3,
        190.0,
        0.5,
    );
    for s in &runs {
        assert_eq!(s.messages.customer, 4 * s.sessions.offered);
        assert_eq!(s.messages.replies, s.messages.customer);
    }
}

/// A bot (智能助手) with exponential handling in front of the people of
/// MMN: it resolves a share p of the sessions and hands the rest over. The
/// bot has no capacity limit (M/M/∞), so what leaves it for people is
/// Poisson with rate λ·(1−p) and the human tier is Erlang C with that rate.
const BOT: &str = r#"
name = "bot"
duration = "14d"
warmup = "12h"
service_level = "20s"
[[account]]
name = "kf"
[account.bot]
reply_delay = { dist = "exponential", mean = "1m" }
resolve = 0.4
[[agents]]
count = 27
reply_delay = { dist = "exponential", mean = "4m" }
[[entry]]
scene = "web"
rate = "10/min"
"#;

#[test]
fn a_bot_that_deflects_p_leaves_erlang_c_with_the_rest() {
    let p = 0.4;
    let runs = replicate(BOT, &[], 141..161);
    let lambda = LAMBDA * (1.0 - p);
    let theory = erlang_c(27, lambda, MU).unwrap();
    let sl = erlang_c_service_level(27, lambda, MU, 20.0 / 60.0).unwrap();
    // ~200 000 sessions per replication, ~120 000 of them reach people
    assert!(runs[0].sessions.offered > 190_000);
    let bot = |s: &kfsim::summary::Summary| s.bot.clone().expect("a bot section");
    assert_matches("deflection", &runs, |s| bot(s).deflection.unwrap(), p, 0.002);
    assert_matches("P(W>0) of people", &runs, |s| s.wait_probability.unwrap(), theory.wait_probability, 0.01);
    assert_matches("ASA [s]", &runs, |s| s.asa_ms.unwrap() / 1e3, theory.asa * 60.0, 1.5);
    assert_matches("SL(20s) of people", &runs, |s| s.service_level.unwrap(), sl, 0.01);
    assert_matches("occupancy", &runs, |s| s.occupancy.unwrap(), lambda / MU / 27.0, 0.003);
    assert_matches("bot first response [s]", &runs, |s| bot(s).first_response.mean.unwrap() / 1e3, 60.0, 0.2);
    for s in &runs {
        let b = bot(s);
        // nothing waits forever, so every session ends with the bot or with people
        assert_eq!(b.sessions, s.sessions.offered);
        assert_eq!(b.resolved + b.handed_over, b.sessions);
        assert_eq!(s.sessions.to_people, Some(b.handed_over));
        assert_eq!(s.sessions.answered, b.handed_over);
        assert_eq!(b.replies, s.sessions.offered, "one bot turn each");
    }
}

/// Two accounts whose people are M/M/c, and presale transfers a share q of
/// its handles to after-sales (转接) once it has answered: an open Jackson
/// network. After-sales sees Poisson arrivals at λ_B = λ_B0 + q·λ_A and
/// each group is Erlang C at its own rate.
const JACKSON: &str = r#"
name = "jackson"
duration = "14d"
warmup = "12h"
service_level = "20s"
[[account]]
name = "presale"
[[account]]
name = "aftersales"
[[agents]]
account = "presale"
group = "pre"
count = 44
reply_delay = { dist = "exponential", mean = "4m" }
transfer = { to = "aftersales", share = 0.3 }
[[agents]]
account = "aftersales"
group = "after"
count = 24
reply_delay = { dist = "exponential", mean = "5m" }
[[entry]]
scene = "web"
account = "presale"
rate = "10/min"
[[entry]]
scene = "app"
account = "aftersales"
rate = "1/min"
"#;

#[test]
fn transfers_between_two_groups_are_a_jackson_network() {
    let q = 0.3;
    let runs = replicate(JACKSON, &[], 161..181);
    let (lambda_a, mu_a) = (LAMBDA, MU);
    let (lambda_b, mu_b) = (1.0 + q * LAMBDA, 0.2);
    let a = erlang_c(44, lambda_a, mu_a).unwrap();
    let b = erlang_c(24, lambda_b, mu_b).unwrap();
    let acc = |s: &kfsim::summary::Summary, name: &str| s.by_account[name].clone();
    assert_matches(
        "presale P(W>0)",
        &runs,
        |s| acc(s, "presale").wait_probability.unwrap(),
        a.wait_probability,
        0.007,
    );
    assert_matches("presale ASA [s]", &runs, |s| acc(s, "presale").asa_ms.unwrap() / 1e3, a.asa * 60.0, 1.2);
    assert_matches(
        "aftersales P(W>0)",
        &runs,
        |s| acc(s, "aftersales").wait_probability.unwrap(),
        b.wait_probability,
        0.01,
    );
    assert_matches(
        "aftersales ASA [s]",
        &runs,
        |s| acc(s, "aftersales").asa_ms.unwrap() / 1e3,
        b.asa * 60.0,
        2.0,
    );
    let share = |s: &kfsim::summary::Summary| {
        s.transfers["pre->aftersales"] as f64 / s.by_group["pre"].handles as f64
    };
    assert_matches("transfer share", &runs, share, q, 0.002);
    for s in &runs {
        let (pre, after) = (acc(s, "presale"), acc(s, "aftersales"));
        let moved = s.transfers["pre->aftersales"];
        // one customer session, two handles: transfers add handles, not sessions
        assert_eq!(after.transferred_in, moved);
        assert_eq!(s.sessions.offered, pre.handles.offered + after.handles.offered - moved);
        assert_eq!(s.by_group["pre"].handles, s.by_group["pre"].transferred + s.by_group["pre"].ended);
    }
}

/// M/D/1: one agent, a handle time of exactly 1 min, λ = 0.8/min. The
/// other checks have exponential handle times; here the wait is
/// Pollaczek–Khinchine's, E[W] = λ·E[S²]/(2(1−ρ)) = ρ·S/(2(1−ρ)), half
/// M/M/1's, and P(W>0) = ρ for any handle time.
#[test]
fn a_constant_handle_time_is_pollaczek_khinchine() {
    let text = MMN
        .replace("count = 44", "count = 1")
        .replace("\"10/min\"", "\"0.8/min\"")
        .replace("reply_delay = { dist = \"exponential\", mean = \"4m\" }", "reply_delay = \"1m\"");
    // ~115 000 sessions per replication
    let runs = replicate(&text, &["duration=100d", "warmup=1d"], 181..201);
    let (rho, hold) = (0.8, 60.0); // hold: the handle time [s]
    assert_matches("P(W>0)", &runs, |s| s.wait_probability.unwrap(), rho, 0.0012);
    assert_matches("ASA [s]", &runs, |s| s.asa_ms.unwrap() / 1e3, rho * hold / (2.0 * (1.0 - rho)), 1.5);
    assert_matches("occupancy", &runs, |s| s.occupancy.unwrap(), rho, 0.0012);
}

/// Entry points whose rates add up to MMN's 10/min: Poisson streams
/// superposed are Poisson, so the whole is Erlang C at their sum, and by
/// PASTA each stream, the smallest too, sees the same waits.
#[test]
fn entry_points_superposed_are_one_poisson_stream() {
    let text = MMN.replace("rate = \"10/min\"", "rate = \"5/min\"")
        + "[[entry]]\nscene = \"app\"\nrate = \"3/min\"\n[[entry]]\nscene = \"search\"\nrate = \"120/h\"\n";
    let runs = replicate(&text, &["duration=7d"], 201..221);
    let theory = erlang_c(44, LAMBDA, MU).unwrap();
    let sl = erlang_c_service_level(44, LAMBDA, MU, 20.0 / 60.0).unwrap();
    assert_matches("P(W>0)", &runs, |s| s.wait_probability.unwrap(), theory.wait_probability, 0.008);
    assert_matches("ASA [s]", &runs, |s| s.asa_ms.unwrap() / 1e3, theory.asa * 60.0, 1.5);
    assert_matches("SL(20s)", &runs, |s| s.service_level.unwrap(), sl, 0.008);
    let search = |s: &kfsim::summary::Summary| s.by_entry["search"].clone();
    let share = |s: &kfsim::summary::Summary| search(s).sessions.offered as f64 / s.sessions.offered as f64;
    assert_matches("search's share", &runs, share, 0.2, 0.0005);
    assert_matches("search SL(20s)", &runs, |s| search(s).service_level.unwrap(), sl, 0.008);
    assert_matches(
        "search ASA [s]",
        &runs,
        |s| search(s).queue_wait.mean.unwrap() / 1e3,
        theory.asa * 60.0,
        1.5,
    );
}
