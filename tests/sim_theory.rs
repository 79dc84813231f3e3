//! The simulator against queueing theory (shared/reference/queueing.md).
//!
//! Each check runs independent replications (seeds 1..=R) and requires the
//! mean over replications to lie within 4 standard errors of the formula,
//! computed here from `kfsim::theory`. 4 SE of a t-distribution with R−1 = 9
//! degrees of freedom leaves a false-alarm probability of about 0.3 % per
//! figure; the seeds are fixed, so the outcome is the same on every run.
//! Each check also bounds the standard error, so that a loose simulation
//! cannot pass by being noisy.

mod common;

use common::{assert_matches, replicate};
use kfsim::theory::{erlang_a, erlang_b, erlang_c, erlang_c_service_level};

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
    let runs = replicate(MMN, &[], 1..11);
    let theory = erlang_c(44, LAMBDA, MU).unwrap();
    let sl = erlang_c_service_level(44, LAMBDA, MU, 20.0 / 60.0).unwrap();
    // ~200 000 sessions per replication
    assert!(runs[0].sessions.offered > 190_000);
    assert_matches("P(W>0)", &runs, |s| s.wait_probability.unwrap(), theory.wait_probability, 0.005);
    assert_matches("ASA [s]", &runs, |s| s.asa_ms.unwrap() / 1e3, theory.asa * 60.0, 0.6);
    assert_matches("SL(20s)", &runs, |s| s.service_level.unwrap(), sl, 0.005);
    assert_matches("occupancy", &runs, |s| s.occupancy.unwrap(), LAMBDA / MU / 44.0, 0.002);
    for s in &runs {
        assert_eq!(s.sessions.abandoned + s.sessions.rejected + s.sessions.unfinished, 0);
    }
}

#[test]
fn erlang_a_m_m_42_with_patience() {
    let sets = ["agents.kf.count=42", "entry.web.patience={ dist = \"exponential\", mean = \"2m\" }"];
    let runs = replicate(MMN, &sets, 1..11);
    let theory = erlang_a(42, LAMBDA, MU, 0.5);
    assert_matches("P(W>0)", &runs, |s| s.wait_probability.unwrap(), theory.wait_probability, 0.005);
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
    let runs = replicate(MMN, &sets, 1..11);
    let b = erlang_b(40, LAMBDA / MU);
    let blocked = |s: &kfsim::summary::Summary| s.sessions.rejected as f64 / s.sessions.offered as f64;
    assert_matches("blocking", &runs, blocked, b, 0.003);
    assert_matches("P(not immediate)", &runs, |s| s.wait_probability.unwrap(), b, 0.003);
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
        let runs = replicate(CHAT, &[&set], 1..11);
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
    let runs = replicate(&text, &["duration=10d"], 1..11);
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
