//! Unit tests of the state machine at fixed times: routing, the pool,
//! status, transfers, ends, authorization, send limits, codes, sweeping.

use super::errors::code;
use super::faults::Caller;
use super::model::{Change, Content, Event, Item, MSG_OVERHEAD, SyncEntry};
use super::state::{Config, DAY_US, HOUR_US, MAX_SCENES, Rule, State};
use crate::scenario::PolicyKind;

const T0: u64 = 1_700_000_000_000_000;
const S: u64 = 1_000_000;

struct World {
    st: State,
    kf: String,
    ch: u32,
}

fn world(servicers: &[&str], cap: u32, rule: Rule) -> World {
    let mut st = State::new(Config::default());
    st.get_token("kfsim", "kfsim-secret", Caller::Client, T0).unwrap();
    let kf = st.account_add("presale", "", Some(rule), T0).unwrap();
    if !servicers.is_empty() {
        let ids: Vec<String> = servicers.iter().map(|s| s.to_string()).collect();
        st.servicer_add(&kf, &ids, Some(cap), T0).unwrap();
    }
    let id = st.open_channel(None).unwrap();
    let ch = st.channel_of(&id).unwrap();
    World { st, kf, ch }
}

fn text(s: &str) -> Content {
    Content::text(s)
}

impl World {
    fn say(&mut self, who: &str, id: &str, t: u64) -> super::session::CustomerAck {
        let kf = self.kf.clone();
        self.st.customer_message(self.ch, who, &kf, Some(id), text(id), t).unwrap()
    }

    /// Customer messages (client ids) in a servicer's queue, and its notes.
    fn servicer_sees(&mut self, userid: &str) -> (Vec<String>, Vec<Change>) {
        let u = self.st.servicer_index(userid).unwrap();
        let p = self.st.pull_servicer(u, "", 1000).unwrap();
        let next = p.next_cursor.clone();
        self.st.pull_servicer(u, &next, 1).unwrap();
        split(p.items)
    }

    fn customer_sees(&mut self) -> (Vec<String>, Vec<Change>) {
        let p = self.st.pull_channel(self.ch, "", 1000).unwrap();
        let next = p.next_cursor.clone();
        self.st.pull_channel(self.ch, &next, 1).unwrap();
        split(p.items)
    }

    fn state_of(&self, ext: &str) -> (u8, Option<String>) {
        self.st.service_state_get(&self.kf, ext).unwrap()
    }
}

fn split(items: Vec<(u64, (Option<super::model::Name>, Item))>) -> (Vec<String>, Vec<Change>) {
    let mut msgs = Vec::new();
    let mut notes = Vec::new();
    for (_, (_, item)) in items {
        match item {
            Item::Msg(m) => {
                msgs.push(m.client_msgid.as_deref().or(m.in_reply_to.as_deref()).unwrap_or("").into())
            }
            Item::Session(n) => notes.push(n.change),
        }
    }
    (msgs, notes)
}

#[test]
fn a_first_message_starts_and_routes_a_session() {
    let mut w = world(&["a1", "a2"], 1, Rule::default());
    let ack = w.say("c1", "m1", T0);
    assert_eq!((ack.service_state, ack.servicer_userid.as_deref()), (3, Some("a1")));
    let ack2 = w.say("c1", "m2", T0 + S);
    assert_eq!(ack2.external_userid, ack.external_userid, "the same customer");
    assert_eq!(w.servicer_sees("a1"), (vec!["m1".into(), "m2".into()], vec![Change::Assigned]));
    assert_eq!(w.servicer_sees("a2"), (vec![], vec![]));
    assert_eq!(w.state_of(&ack.external_userid), (3, Some("a1".into())));
}

#[test]
fn the_pool_holds_messages_until_a_slot_frees() {
    let mut w = world(&["a1"], 1, Rule::default());
    let c1 = w.say("c1", "x1", T0).external_userid;
    let ack = w.say("c2", "y1", T0);
    assert_eq!(ack.service_state, 2);
    w.say("c2", "y2", T0 + S);
    assert_eq!(w.servicer_sees("a1").0, ["x1"]);
    let kf = w.kf.clone();
    w.st.servicer_end("a1", &kf, &c1, T0 + 2 * S).unwrap();
    let (msgs, notes) = w.servicer_sees("a1");
    assert_eq!(msgs, ["y1", "y2"], "the waiting messages follow the session, in order");
    assert_eq!(notes, [Change::Ended, Change::Assigned]);
    let (_, cust_notes) = w.customer_sees();
    assert_eq!(cust_notes, [Change::Assigned, Change::Queued, Change::Ended, Change::Assigned]);
    // the pool exit was logged for the enterprise as session_status_change 1
    let page = w.st.sync_msg(&kf, "", 1000, 0).unwrap();
    let json = serde_json::to_string(&page.msg_list).unwrap();
    assert!(json.contains(r#""change_type":1"#) && json.contains(r#""change_type":3"#), "{json}");
}

#[test]
fn a_full_pool_rejects_and_the_session_ends() {
    let mut w = world(&["a1"], 1, Rule { queue_limit: Some(0), ..Rule::default() });
    w.say("c1", "x", T0);
    let ack = w.say("c2", "y", T0);
    assert_eq!(ack.service_state, 4);
    assert_eq!(w.customer_sees().1, [Change::Assigned, Change::Rejected]);
    assert_eq!(w.st.figures().counters.rejected, 1);
}

#[test]
fn a_stopped_servicer_gets_no_new_sessions_and_coming_back_serves_the_pool() {
    let mut w = world(&["a1", "a2"], 1, Rule::default());
    w.st.servicer_set_status("a1", 1, 1, T0).unwrap();
    assert_eq!(w.say("c1", "x", T0).servicer_userid.as_deref(), Some("a2"));
    assert_eq!(w.say("c2", "y", T0).service_state, 2, "a1 is 暂时挂起, a2 is full");
    w.st.servicer_set_status("a1", 0, 0, T0 + S).unwrap();
    assert_eq!(w.servicer_sees("a1").0, ["y"]);
    let list = w.st.servicer_list(&w.kf.clone()).unwrap();
    assert_eq!((list[0].status, list[0].sessions), (0, 1));
    let page = w.st.sync_msg(&w.kf.clone(), "", 1000, 0).unwrap();
    let json = serde_json::to_string(&page.msg_list).unwrap();
    assert!(json.contains(r#""event_type":"servicer_status_change""#) && json.contains(r#""stop_type":1"#));
    assert!(w.st.servicer_set_status("a1", 2, 0, T0).is_err());
}

#[test]
fn servicers_touch_only_their_own_sessions() {
    let mut w = world(&["a1", "a2"], 1, Rule::default());
    let kf = w.kf.clone();
    let c1 = w.say("c1", "x", T0).external_userid;
    fn forbidden<T: std::fmt::Debug>(r: Result<T, super::errors::ApiError>) -> i32 {
        r.unwrap_err().code
    }
    assert_eq!(forbidden(w.st.servicer_reply("a2", &kf, &c1, text("hi"), None, None, T0)), code::FORBIDDEN);
    assert_eq!(forbidden(w.st.servicer_end("a2", &kf, &c1, T0)), code::FORBIDDEN);
    assert_eq!(forbidden(w.st.servicer_transfer("a2", &kf, &c1, Some("a2"), T0)), code::FORBIDDEN);
    assert_eq!(
        forbidden(w.st.servicer_reply("nobody", &kf, &c1, text("hi"), None, None, T0)),
        code::NOT_SERVICER
    );
    w.st.servicer_reply("a1", &kf, &c1, text("hello"), Some("x"), None, T0).unwrap();
    w.st.servicer_end("a1", &kf, &c1, T0).unwrap();
    assert_eq!(
        forbidden(w.st.servicer_reply("a1", &kf, &c1, text("late"), None, None, T0)),
        code::SESSION_ENDED
    );
    let (msgs, _) = w.customer_sees();
    assert_eq!(msgs, ["x"], "the reply echoes the customer's client_msgid in in_reply_to");
}

#[test]
fn transfer_to_a_servicer_or_the_pool_frees_the_slot() {
    let mut w = world(&["a1", "a2"], 1, Rule::default());
    let kf = w.kf.clone();
    let c1 = w.say("c1", "x", T0).external_userid;
    let c2 = w.say("c2", "y", T0).external_userid;
    let full = w.st.servicer_transfer("a1", &kf, &c1, Some("a2"), T0).unwrap_err();
    assert_eq!(full.code, code::NOT_SERVICER, "a2 is at its cap");
    w.st.servicer_end("a2", &kf, &c2, T0).unwrap();
    assert_eq!(w.st.servicer_transfer("a1", &kf, &c1, Some("a2"), T0).unwrap(), 3);
    assert_eq!(w.state_of(&c1), (3, Some("a2".into())));
    w.servicer_sees("a1");
    w.servicer_sees("a2");
    w.say("c1", "x2", T0 + S);
    assert_eq!(w.servicer_sees("a2").0, ["x2"], "new messages go to the new servicer only");
    assert!(w.servicer_sees("a1").0.is_empty());
    // back to the pool: a1 is free and gets it
    assert_eq!(w.st.servicer_transfer("a2", &kf, &c1, None, T0 + 2 * S).unwrap(), 3);
    assert_eq!(w.state_of(&c1), (3, Some("a1".into())));
    assert_eq!(w.st.servicer_transfer("a1", &kf, &c1, Some("zz"), T0).unwrap_err().code, code::NOT_SERVICER);
}

#[test]
fn an_account_without_servicers_leaves_sessions_to_the_api() {
    let mut w = world(&[], 1, Rule::default());
    let kf = w.kf.clone();
    let c = w.say("c1", "x", T0).external_userid;
    assert_eq!(w.state_of(&c).0, 0);
    for i in 0..5 {
        w.st.send_msg(&c, &kf, None, text("bot"), T0 + i).unwrap();
    }
    assert_eq!(w.state_of(&c).0, 1, "send_msg moves 0 to 1");
    assert_eq!(w.st.send_msg(&c, &kf, None, text("6th"), T0 + 9).unwrap_err().code, code::SEND_LIMIT);
    w.say("c1", "again", T0 + 10);
    assert!(
        w.st.send_msg(&c, &kf, Some("mine-1"), text("ok"), T0 + 11).is_ok(),
        "a new message reopens the quota"
    );
    assert_eq!(
        w.st.send_msg(&c, &kf, Some("mine-1"), text("dup"), T0 + 12).unwrap_err().code,
        code::INVALID_PARAM
    );
    let late = T0 + 10 + 48 * HOUR_US + 1;
    assert_eq!(w.st.send_msg(&c, &kf, None, text("late"), late).unwrap_err().code, code::SEND_LIMIT);
    assert_eq!(w.customer_sees().0.len(), 6);
}

#[test]
fn trans_follows_the_allowed_transitions() {
    let mut w = world(&[], 1, Rule::default());
    let kf = w.kf.clone();
    let c = w.say("c1", "x", T0).external_userid;
    let err = |r: Result<Option<String>, super::errors::ApiError>| r.unwrap_err().code;
    assert_eq!(err(w.st.service_state_trans(&kf, &c, 0, None, T0)), code::BAD_TRANSITION);
    assert_eq!(err(w.st.service_state_trans(&kf, &c, 3, Some("ghost"), T0)), code::NOT_SERVICER);
    w.st.servicer_add(&kf, &["a1".into()], Some(1), T0).unwrap();
    assert_eq!(w.state_of(&c).0, 0, "adding a servicer does not take sessions from the API");
    w.st.service_state_trans(&kf, &c, 1, None, T0).unwrap();
    let code2 = w.st.service_state_trans(&kf, &c, 2, None, T0).unwrap();
    assert!(code2.is_some(), "first time in 3 gives a code");
    assert_eq!(w.state_of(&c), (3, Some("a1".into())), "the pool assigned it at once");
    // 3 → 3 is to another servicer: to the same one it is no transition
    assert_eq!(err(w.st.service_state_trans(&kf, &c, 3, Some("a1"), T0)), code::BAD_TRANSITION);
    assert_eq!(err(w.st.service_state_trans(&kf, &c, 1, None, T0)), code::BAD_TRANSITION);
    let end = w.st.service_state_trans(&kf, &c, 4, None, T0).unwrap().expect("end code");
    assert_eq!(err(w.st.service_state_trans(&kf, &c, 4, None, T0)), code::BAD_TRANSITION);
    assert_eq!(err(w.st.service_state_trans(&kf, &c, 2, None, T0)), code::BAD_TRANSITION);
    // the end code: single use, within 20 s
    w.st.send_msg_on_event(&end, None, text("bye"), T0 + 19 * S).unwrap();
    assert_eq!(
        w.st.send_msg_on_event(&end, None, text("again"), T0 + 19 * S).unwrap_err().code,
        code::INVALID_CODE
    );
}

#[test]
fn a_stopped_servicer_cannot_be_named_in_trans() {
    let mut w = world(&["a1"], 1, Rule::default());
    let kf = w.kf.clone();
    w.st.servicer_set_status("a1", 1, 0, T0).unwrap();
    let c = w.say("c1", "x", T0).external_userid;
    assert_eq!(w.state_of(&c).0, 2);
    let e = w.st.service_state_trans(&kf, &c, 3, Some("a1"), T0).unwrap_err();
    assert_eq!(e.code, code::NOT_SERVICER);
    w.st.servicer_set_status("a1", 0, 0, T0).unwrap();
    assert_eq!(w.state_of(&c), (3, Some("a1".into())));
}

#[test]
fn an_account_keeps_a_bounded_number_of_contact_way_scenes() {
    let mut w = world(&["a1"], 1, Rule::default());
    let kf = w.kf.clone();
    for i in 0..MAX_SCENES {
        w.st.add_contact_way(&kf, &format!("s{i}")).unwrap();
    }
    // one already kept is added again at no cost; a new one is refused
    w.st.add_contact_way(&kf, "s7").unwrap();
    let e = w.st.add_contact_way(&kf, "one_more").unwrap_err();
    assert_eq!(e.code, code::LIMIT, "{e}");
    w.st.customer_enter(w.ch, "c1", &kf, &format!("s{}", MAX_SCENES - 1), "", T0).unwrap();
    let e = w.st.customer_enter(w.ch, "c2", &kf, "one_more", "", T0).unwrap_err();
    assert!(e.msg.contains("add_contact_way"), "{e}");
}

#[test]
fn welcome_codes_are_single_use_and_expire_after_20s() {
    let mut w = world(&["a1"], 1, Rule::default());
    let kf = w.kf.clone();
    w.st.add_contact_way(&kf, "live").unwrap();
    let err = w.st.customer_enter(w.ch, "c1", &kf, "nope", "", T0).unwrap_err();
    assert!(err.msg.contains("add_contact_way"), "{err}");
    w.st.customer_enter(w.ch, "c1", &kf, "live", "p=1", T0).unwrap();
    w.st.customer_enter(w.ch, "c2", &kf, "live", "", T0).unwrap();
    let page = w.st.sync_msg(&kf, "", 1000, 0).unwrap();
    let v: serde_json::Value = serde_json::to_value(&page.msg_list).unwrap();
    let codes: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["welcome_code"].as_str().expect("eligible for a welcome").to_owned())
        .collect();
    assert_eq!(v[0]["event"]["scene_param"], "p=1");
    assert_eq!(w.state_of(v[0]["event"]["external_userid"].as_str().unwrap()).0, 4, "entering sends nothing");
    assert_eq!(
        w.st.send_msg_on_event(&codes[0], None, text("hi"), T0 + 20 * S).unwrap_err().code,
        code::INVALID_CODE
    );
    w.st.send_msg_on_event(&codes[1], None, text("hi"), T0 + 5 * S).unwrap();
    assert_eq!(
        w.st.send_msg_on_event(&codes[1], None, text("hi"), T0 + 6 * S).unwrap_err().code,
        code::INVALID_CODE
    );
    assert_eq!(w.st.send_msg_on_event("1.zz", None, text("hi"), T0).unwrap_err().code, code::INVALID_CODE);
    // a welcome within 48 h means no new code
    w.st.customer_enter(w.ch, "c2", &kf, "live", "", T0 + HOUR_US).unwrap();
    let page = w.st.sync_msg(&kf, &page.next_cursor, 1000, 0).unwrap();
    let v: serde_json::Value = serde_json::to_value(&page.msg_list).unwrap();
    assert!(v[0]["event"].get("welcome_code").is_none(), "{v}");
}

#[test]
fn prefer_last_agent_brings_a_returning_customer_back() {
    let rule = Rule { prefer_last_agent: true, ..Rule::default() };
    let mut w = world(&["a1", "a2", "a3"], 2, rule);
    let kf = w.kf.clone();
    w.say("c0", "warm", T0); // round robin: a1
    let c = w.say("c1", "x", T0); // a2
    assert_eq!(c.servicer_userid.as_deref(), Some("a2"));
    w.st.servicer_end("a2", &kf, &c.external_userid, T0).unwrap();
    assert_eq!(w.say("c1", "y", T0 + HOUR_US).servicer_userid.as_deref(), Some("a2"));
    w.st.servicer_end("a2", &kf, &c.external_userid, T0 + HOUR_US).unwrap();
    let later = T0 + HOUR_US + 49 * HOUR_US;
    assert_ne!(
        w.say("c1", "z", later).servicer_userid.as_deref(),
        Some("a2"),
        "outside 48 h the policy decides"
    );
}

#[test]
fn idle_sessions_end_and_old_entries_go() {
    let mut w = world(&["a1"], 1, Rule::default());
    // the customers' channel is driven through the state, never pulled:
    // its lease must not end the sessions first
    w.st.cfg.channel_lease_us = u64::MAX;
    let kf = w.kf.clone();
    let c = w.say("c1", "x", T0).external_userid;
    let c2 = w.say("c2", "y", T0).external_userid;
    w.st.sweep(T0 + 47 * HOUR_US, 1000);
    assert_eq!(w.state_of(&c).0, 3);
    w.st.sweep(T0 + 48 * HOUR_US, 1000);
    assert_eq!(w.state_of(&c).0, 4, "idle for 48 h");
    assert_eq!(w.state_of(&c2).0, 3, "the freed slot served the pool");
    w.st.sweep(T0 + 96 * HOUR_US, 1000);
    assert_eq!(w.st.figures().counters.idle_ended, 2);
    w.st.sweep(T0 + 3 * DAY_US + 96 * HOUR_US + S, 1000);
    assert!(w.st.sync_msg(&kf, "", 1000, 0).unwrap().msg_list.is_empty(), "older than 3 days");
    assert_eq!(w.st.figures().customers, 0, "idle customers are forgotten");
    assert_eq!(w.st.service_state_get(&kf, &c).unwrap_err().code, code::INVALID_PARAM);
}

#[test]
fn channels_are_isolated_and_closing_one_ends_its_sessions() {
    let mut w = world(&["a1", "a2"], 5, Rule::default());
    let kf = w.kf.clone();
    let other = w.st.open_channel(None).unwrap();
    let och = w.st.channel_of(&other).unwrap();
    let mine = w.say("same", "x", T0).external_userid;
    let theirs = w.st.customer_message(och, "same", &kf, Some("o"), text("o"), T0).unwrap().external_userid;
    assert_ne!(mine, theirs, "one handle on two channels is two customers");
    w.st.servicer_reply("a1", &kf, &mine, text("for mine"), Some("x"), None, T0).unwrap();
    assert_eq!(w.customer_sees().0, ["x"]);
    let p = w.st.pull_channel(och, "", 100).unwrap();
    assert_eq!(split(p.items).0, Vec::<String>::new());
    w.st.close_channel(&other, T0).unwrap();
    assert!(w.st.channel_of(&other).is_err());
    assert_eq!(w.st.figures().accounts[0].by_state[3], 1);
}

/// Closing a channel finds every session of its customers: the one a
/// customer's record caches, and those of customers who wrote to several
/// accounts (read off the index), whichever account was first.
#[test]
fn closing_a_channel_ends_its_customers_sessions_in_every_account() {
    let mut w = world(&["a1"], 5, Rule::default());
    let kf = w.kf.clone();
    let kf2 = w.st.account_add("aftersale", "", Some(Rule::default()), T0).unwrap();
    w.st.servicer_add(&kf2, &["b1".into()], Some(5), T0).unwrap();
    let other = w.st.open_channel(None).unwrap();
    let och = w.st.channel_of(&other).unwrap();
    let ch = w.ch;
    for (who, accounts) in [("one", vec![&kf]), ("both", vec![&kf, &kf2]), ("second", vec![&kf2, &kf])] {
        for (i, a) in accounts.into_iter().enumerate() {
            w.st.customer_message(och, who, a, Some(&format!("{who}{i}")), text("m"), T0).unwrap();
        }
    }
    let stays = w.st.customer_message(ch, "stays", &kf2, Some("s"), text("m"), T0).unwrap().external_userid;
    let held = |w: &World| w.st.figures().accounts.iter().map(|a| a.by_state[3]).collect::<Vec<_>>();
    assert_eq!(held(&w), [3, 3]);
    w.st.close_channel(&other, T0 + S).unwrap();
    assert_eq!(held(&w), [0, 1], "every session of the closed channel's customers ended");
    assert_eq!(w.st.figures().customers, 1);
    assert_eq!((w.st.convs.len(), w.st.conv_ix.len()), (1, 1), "and was forgotten");
    assert_eq!(w.st.service_state_get(&kf2, &stays).unwrap().0, 3);
}

/// Closing a channel told its own queue that each of its sessions ended:
/// news for no one, which pushed out of a full queue items that were never
/// lost, counted as queue overflows (a million at a million customers),
/// and a servicer's reply in it logged as `msg_send_fail`. The channel goes
/// first; its sessions still end for their servicers, whose freed places
/// serve the pool, and its customers are forgotten.
#[test]
fn closing_a_channel_pushes_nothing_out_of_its_own_queue() {
    let mut w = world(&["a1"], 2, Rule::default());
    let kf = w.kf.clone();
    let small = w.st.open_channel(Some(3)).unwrap();
    let sch = w.st.channel_of(&small).unwrap();
    // a1 takes two of small's five customers, the rest wait, then `other`
    let ext: Vec<super::model::Name> = (0..5)
        .map(|i| {
            let (who, m) = (format!("c{i}"), format!("m{i}"));
            w.st.customer_message(sch, &who, &kf, Some(&m), text(&m), T0).unwrap().external_userid
        })
        .collect();
    let other = w.say("other", "o1", T0).external_userid;
    w.st.servicer_reply("a1", &kf, &ext[0], text("hi"), Some("m0"), None, T0).unwrap();
    let overflows = w.st.figures().counters.queue_overflows;
    w.st.close_channel(&small, T0 + S).unwrap();
    assert_eq!(w.st.figures().counters.queue_overflows, overflows, "nothing pushed out");
    let log = w.st.sync_msg(&kf, "", 1000, 0).unwrap().msg_list;
    let failed = log
        .iter()
        .filter(|e| matches!(e, SyncEntry::Event(r) if matches!(r.event, Event::MsgSendFail { .. })))
        .count();
    assert_eq!(failed, 0, "the reply was not lost to a full queue: {log:?}");
    assert!(w.st.channel_of(&small).is_err());
    assert!(w.st.pull_channel(sch, "", 10).is_err(), "its index names no channel");
    assert_eq!(w.st.figures().customers, 1, "its customers are forgotten");
    assert_eq!(w.state_of(&other), (3, Some("a1".into())), "a1's freed places serve the pool");
    let (_, notes) = w.servicer_sees("a1");
    assert!(notes.iter().filter(|&&c| c == Change::Ended).count() >= 2, "{notes:?}");
}

#[test]
fn pulls_acknowledge_and_report_what_was_missed() {
    let mut st = State::new(Config { servicer_queue_cap: 3, ..Config::default() });
    let kf = st.account_add("a", "", None, T0).unwrap();
    st.servicer_add(&kf, &["a1".into()], Some(1), T0).unwrap();
    let ch = st.open_channel(None).unwrap();
    let ch = st.channel_of(&ch).unwrap();
    for i in 0..5 {
        st.customer_message(ch, "c", &kf, Some(&i.to_string()), text("m"), T0).unwrap();
    }
    let u = st.servicer_index("a1").unwrap();
    let p = st.pull_servicer(u, "", 2).unwrap();
    assert_eq!(p.missed, 3, "the note and two messages fell out of a queue of 3");
    assert!(p.has_more);
    let p2 = st.pull_servicer(u, &p.next_cursor, 10).unwrap();
    assert_eq!((p2.items.len(), p2.missed, p2.has_more), (1, 0, false));
    assert_eq!(st.pull_servicer(u, "c99", 1).unwrap_err().code, code::INVALID_PARAM);
    assert_eq!(st.pull_servicer(u, "garbage", 1).unwrap_err().code, code::INVALID_PARAM);
}

/// A pull took cursors this service never writes (`c+1`, `c01`, `cA`:
/// `from_str_radix` reads them) and put a refused cursor, however long,
/// into its errmsg. Only the cursors it writes are taken, by the customer
/// and the servicer pulls and `sync_msg` alike, and the refusal says what
/// to send instead, not what was sent.
#[test]
fn pulls_take_only_the_cursors_this_service_writes_and_never_echo_one() {
    let mut w = world(&["a1"], 1, Rule::default());
    for i in 0..3 {
        w.say("c", &i.to_string(), T0);
    }
    let u = w.st.servicer_index("a1").unwrap();
    let kf = w.kf.clone();
    let (ch, long) = (w.ch, format!("c1{}", "0".repeat(100_000)));
    for bad in ["c+1", "c01", "c00", "cA", "c 1", "allc1", "c10000000000000000", long.as_str()] {
        for e in [
            w.st.pull_channel(ch, bad, 10).unwrap_err(),
            w.st.pull_servicer(u, bad, 10).unwrap_err(),
            w.st.sync_msg(&kf, bad, 10, T0).unwrap_err(),
        ] {
            assert_eq!(e.code, code::INVALID_PARAM, "{bad:.20}: {:.200}", e.msg);
            assert!(e.msg.len() < 120 && !e.msg.contains(bad), "{bad:.20}: {:.200}", e.msg);
        }
    }
    // what it writes is taken
    let (mut pulled, mut synced) = (String::new(), String::new());
    for limit in [1, 2, 10] {
        pulled = w.st.pull_servicer(u, &pulled, limit).unwrap().next_cursor;
        synced = w.st.sync_msg(&kf, &synced, limit, T0).unwrap().next_cursor;
    }
}

/// A well-formed cursor inside the queue that the service never gave was
/// taken: after pages that gave `c0` then `c3`, `c2` read from the third
/// item (and a pull acknowledged the two before it). The SDKs only ever
/// send back the `next_cursor` they got; any other cursor is refused as
/// an invalid one is, by both pulls and `sync_msg` in each form, and so
/// is a cursor another queue gave. Those given keep working, again and
/// again.
#[test]
fn a_cursor_never_given_is_refused_even_inside_the_queue() {
    let mut w = world(&["a1"], 1, Rule::default());
    for i in 0..4 {
        w.say("c", &i.to_string(), T0);
    }
    let u = w.st.servicer_index("a1").unwrap();
    let kf = w.kf.clone();
    let check_of = |cursor: &str| cursor.rsplit_once('_').unwrap().1.to_owned();
    let forge = |cursor: &str, seq: &str| {
        let prefix = if cursor.starts_with("all") { "allc" } else { "c" };
        vec![format!("{prefix}{seq}_{}", check_of(cursor)), format!("{prefix}{seq}")]
    };
    let refused = |r: Result<(), super::errors::ApiError>, what: &str| {
        let e = r.err().unwrap_or_else(|| panic!("{what} was taken"));
        assert_eq!(e.code, code::INVALID_PARAM, "{what}: {e}");
        assert!(e.msg.starts_with("invalid cursor"), "{what}: {e}");
    };

    // a servicer's queue: the assignment and four messages
    let c3 = w.st.pull_servicer(u, "", 3).unwrap().next_cursor;
    assert!(c3.starts_with("c3_"), "{c3}");
    for bad in forge(&c3, "2").into_iter().chain(forge(&c3, "4")) {
        refused(w.st.pull_servicer(u, &bad, 10).map(drop), &bad);
    }
    for _ in 0..2 {
        let again = w.st.pull_servicer(u, &c3, 10).unwrap();
        assert_eq!((again.items.len(), again.missed), (2, 0), "the cursor given, sent again");
    }
    // the channel's cursors are not the servicer queue's, nor the reverse
    let ch_cursor = w.st.pull_channel(w.ch, "", 1).unwrap().next_cursor;
    refused(w.st.pull_servicer(u, &ch_cursor, 10).map(drop), "the channel's cursor");
    refused(w.st.pull_channel(w.ch, &c3, 10).map(drop), "the servicer's cursor");

    // sync_msg, by account and across accounts
    for open_kfid in [kf.as_str(), ""] {
        let first = w.st.sync_msg(open_kfid, "", 1, T0).unwrap().next_cursor;
        let third = w.st.sync_msg(open_kfid, &first, 2, T0).unwrap().next_cursor;
        for bad in forge(&third, "2").into_iter().chain(forge(&first, "0")) {
            refused(w.st.sync_msg(open_kfid, &bad, 10, T0).map(drop), &bad);
        }
        for given in [&first, &third, &first] {
            w.st.sync_msg(open_kfid, given, 10, T0).unwrap();
        }
        refused(w.st.sync_msg(open_kfid, &c3, 10, T0).map(drop), "a pull's cursor");
    }
}

/// Issue 17: a token invalidated early (`--fault-token-lifetime`, an
/// injected fault) was refused to kfsim's own driver too, though the
/// driver is spared from injected faults. It keeps working for the driver
/// until the end `expires_in` promised — also once another client's
/// `gettoken` has replaced it — while every other client meets the fault.
#[test]
fn tokens_invalidated_early_still_work_for_the_driver() {
    let cfg = Config { token_invalid_after_us: Some(60 * S), ..Config::default() };
    let mut st = State::new(cfg);
    let (t1, ttl) = st.get_token("kfsim", "kfsim-secret", Caller::Driver, T0).unwrap();
    assert_eq!(ttl, 7200);
    assert!(st.check_token(&t1, Caller::Client, T0 + 59 * S).is_ok());
    let early = st.check_token(&t1, Caller::Client, T0 + 61 * S).unwrap_err();
    assert_eq!(early.code, code::EXPIRED_TOKEN);
    assert!(early.msg.contains("invalidated early"), "{early}");
    assert!(st.check_token(&t1, Caller::Driver, T0 + 61 * S).is_ok());
    // the driver asking again is handed the same token and its promised life
    let again = st.get_token("kfsim", "kfsim-secret", Caller::Driver, T0 + 100 * S).unwrap();
    assert_eq!(again, (t1.clone(), 7100));
    // a client asking gets a new one; the driver's old one still works
    let (t2, _) = st.get_token("kfsim", "kfsim-secret", Caller::Client, T0 + 120 * S).unwrap();
    assert_ne!(t1, t2);
    assert_eq!(st.check_token(&t1, Caller::Client, T0 + 121 * S).unwrap_err().code, code::EXPIRED_TOKEN);
    assert!(st.check_token(&t1, Caller::Driver, T0 + 7199 * S).is_ok());
    assert_eq!(st.check_token(&t1, Caller::Driver, T0 + 7200 * S).unwrap_err().code, code::EXPIRED_TOKEN);
    assert_eq!(st.figures().counters.tokens_refused_early, 1, "the client's first refusal was the fault");
}

#[test]
fn tokens_expire_and_are_reused_while_valid() {
    let mut st = State::new(Config::default());
    assert_eq!(st.get_token("x", "kfsim-secret", Caller::Client, T0).unwrap_err().code, code::INVALID_CORPID);
    assert_eq!(st.get_token("kfsim", "bad", Caller::Client, T0).unwrap_err().code, code::INVALID_SECRET);
    assert_eq!(st.get_token("", "", Caller::Client, T0).unwrap_err().code, code::MISSING_CORPID);
    let (t1, ttl) = st.get_token("kfsim", "kfsim-secret", Caller::Client, T0).unwrap();
    assert_eq!(ttl, 7200);
    assert_eq!(
        st.get_token("kfsim", "kfsim-secret", Caller::Client, T0 + 100 * S).unwrap(),
        (t1.clone(), 7100)
    );
    assert!(st.check_token(&t1, Caller::Client, T0 + 7199 * S).is_ok());
    assert_eq!(st.check_token(&t1, Caller::Client, T0 + 7200 * S).unwrap_err().code, code::EXPIRED_TOKEN);
    let (t2, _) = st.get_token("kfsim", "kfsim-secret", Caller::Client, T0 + 7200 * S).unwrap();
    assert_ne!(t1, t2);
    assert_eq!(st.check_token(&t1, Caller::Client, T0 + 7201 * S).unwrap_err().code, code::EXPIRED_TOKEN);
    assert_eq!(st.check_token("nope", Caller::Client, T0).unwrap_err().code, code::INVALID_TOKEN);
    assert_eq!(st.check_token("", Caller::Client, T0).unwrap_err().code, code::MISSING_TOKEN);
}

/// A token is signed with the credentials, not kept by the process that
/// issued it: a middleware that cached its token (in a file, in Redis)
/// keeps using it against the next kfsim, as against WeCom after it
/// restarts itself, until the token's 7200 s are up.
#[test]
fn a_token_outlives_the_service_that_issued_it() {
    let mut first = State::new(Config { seed: 1, ..Config::default() });
    let (t, _) = first.get_token("kfsim", "kfsim-secret", Caller::Client, T0).unwrap();
    let next = State::new(Config { seed: 2, ..Config::default() });
    assert!(next.check_token(&t, Caller::Client, T0 + 100 * S).is_ok());
    assert_eq!(next.check_token(&t, Caller::Client, T0 + 7200 * S).unwrap_err().code, code::EXPIRED_TOKEN);
    let reset = State::new(Config { corpsecret: "another".into(), ..Config::default() });
    assert_eq!(reset.check_token(&t, Caller::Client, T0).unwrap_err().code, code::INVALID_TOKEN);
    // one digit changed, in the time or in the signature
    for at in [0, 11, 12, 31] {
        let mut forged = t.clone().into_bytes();
        forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(
            next.check_token(&forged, Caller::Client, T0).unwrap_err().code,
            code::INVALID_TOKEN,
            "{forged}"
        );
    }
    // issued by a clock a day ahead of this one
    let (ahead, _) = State::new(Config::default())
        .get_token("kfsim", "kfsim-secret", Caller::Client, T0 + 86_400 * S)
        .unwrap();
    assert_eq!(next.check_token(&ahead, Caller::Client, T0).unwrap_err().code, code::INVALID_TOKEN);
    // an injected early expiry applies to another run's tokens too, and
    // spares the driver as for its own
    let faulty = State::new(Config { token_invalid_after_us: Some(60 * S), ..Config::default() });
    let early = faulty.check_token(&t, Caller::Client, T0 + 61 * S).unwrap_err();
    assert!(early.msg.contains("invalidated early"), "{early}");
    assert!(faulty.check_token(&t, Caller::Driver, T0 + 61 * S).is_ok());
    assert_eq!(faulty.figures().counters.tokens_refused_early, 1);
}

#[test]
fn removing_a_servicer_or_an_account_moves_or_ends_sessions() {
    let mut w = world(&["a1", "a2"], 1, Rule::default());
    let kf = w.kf.clone();
    let c1 = w.say("c1", "x", T0).external_userid;
    w.say("c2", "y", T0);
    let r = w.st.servicer_del(&kf, &["a1".into(), "ghost".into()], T0).unwrap();
    assert_eq!((r[0].1, r[1].1), (0, code::NOT_SERVICER));
    assert_eq!(w.state_of(&c1).0, 2, "a2 is full: back to the pool");
    assert!(w.st.servicer_index("a1").is_err(), "a servicer of no account is gone");
    w.st.account_del(&kf, T0).unwrap();
    assert_eq!(w.st.sync_msg(&kf, "", 10, 0).unwrap_err().code, code::OPEN_KFID_NOT_FOUND);
    assert_eq!(w.st.figures().convs, 0);
    let notes = w.customer_sees().1;
    assert!(
        notes.ends_with(&[Change::Ended, Change::Ended]),
        "no assignment while the account goes: {notes:?}"
    );
}

#[test]
fn rule_changes_apply_to_later_routing() {
    let mut w = world(&["a1", "a2"], 3, Rule::default());
    let kf = w.kf.clone();
    let fill = Rule { policy: PolicyKind::FillFirst, ..Rule::default() };
    w.st.account_update(&kf, None, None, Some(fill), T0).unwrap();
    let got: Vec<_> =
        (0..3).map(|i| w.say(&format!("c{i}"), "m", T0).servicer_userid.unwrap().to_string()).collect();
    assert_eq!(got, ["a1", "a1", "a1"]);
}

#[test]
fn auto_reply_answers_each_message_once_and_ends_the_session() {
    let mut w = world(&["a1", "a2"], 2, Rule::default());
    w.st.cfg.auto_reply = true;
    // four assigned, two waiting: those reach a servicer's queue only
    // when an answered session ends, while the queues are being answered
    for i in 0..6 {
        w.say(&format!("c{i}"), &format!("m{i}"), T0);
    }
    let mut calls = 0;
    while w.st.auto_reply(3, T0 + S) {
        calls += 1;
        assert!(calls < 10, "auto-reply does not come to an end");
    }
    let (msgs, _) = w.customer_sees();
    let mut msgs = msgs;
    msgs.sort();
    assert_eq!(msgs, ["m0", "m1", "m2", "m3", "m4", "m5"]);
    let f = w.st.figures();
    assert_eq!((f.counters.servicer_messages, f.counters.ended), (6, 6));
    assert_eq!(f.accounts[0].by_state, [0, 0, 0, 0]);
}

#[test]
fn scenarios_build_accounts_servicers_and_contact_ways() {
    let text = r#"
name = "t"
[[account]]
name = "presale"
policy = "idle_first"
prefer_last_agent = true
queue_limit = 5
[[agents]]
group = "day shift"
count = 3
max_concurrent = 4
reply_delay = "10s"
[[entry]]
scene = "web"
name = "web page"
rate = "1/s"
"#;
    let sc = crate::scenario::Scenario::parse(text, "t.toml").unwrap();
    let mut st = State::from_scenario(&sc, Config::default(), T0);
    let list = st.account_list(0, 100, "http://kfsim");
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].name.as_str(), list[0].reception_rule.policy), ("presale", PolicyKind::IdleFirst));
    assert_eq!(list[0].reception_rule.queue_limit, Some(5));
    let kf = list[0].open_kfid.clone();
    let servicers = st.servicer_list(&kf).unwrap();
    let ids: Vec<_> = servicers.iter().map(|s| (s.userid.as_str(), s.max_concurrent, s.status)).collect();
    assert_eq!(ids, [("day shift-01", 4, 0), ("day shift-02", 4, 0), ("day shift-03", 4, 0)]);
    let ch = st.open_channel(None).unwrap();
    let ch = st.channel_of(&ch).unwrap();
    assert!(st.customer_enter(ch, "c", &kf, "web_page", "", T0).is_ok());
}

#[test]
fn resent_messages_and_replies_are_answered_again_not_run_again() {
    let mut w = world(&["a1"], 1, Rule::default());
    let first = w.say("c1", "m1", T0);
    let again = w.say("c1", "m1", T0 + S);
    assert_eq!(first.msgid, again.msgid, "a resend gets the first answer");
    assert_eq!(again.service_state, 3);
    assert_eq!(w.servicer_sees("a1").0, ["m1"], "the servicer gets the message once");
    let kf = w.kf.clone();
    let ext = first.external_userid.clone();
    let r1 = w.st.servicer_reply("a1", &kf, &ext, text("hi"), Some("m1"), Some("r1"), T0 + 2 * S).unwrap();
    let r2 = w.st.servicer_reply("a1", &kf, &ext, text("hi"), Some("m1"), Some("r1"), T0 + 3 * S).unwrap();
    assert_eq!(r1, r2);
    assert_eq!(w.customer_sees().0, ["r1"], "the customer gets the reply once");
    // a new id is a new message; after the resend window an old id is new again
    w.say("c1", "m2", T0 + 4 * S);
    w.st.sweep(T0 + 120 * S, 1000);
    w.say("c1", "m1", T0 + 120 * S);
    assert_eq!(w.servicer_sees("a1").0, ["m2", "m1"]);
    assert_eq!(w.st.figures().counters.customer_messages, 3);
    // the same id from another customer is another message
    let other = w.say("c2", "m2", T0 + 121 * S);
    assert_ne!(other.msgid, None);
    assert_eq!(w.st.figures().counters.customer_messages, 4);
}

#[test]
fn servicers_move_between_channels_and_leave_them_when_removed() {
    let mut w = world(&["a1", "a2"], 1, Rule::default());
    let first = w.st.open_channel(None).unwrap();
    let first = w.st.channel_of(&first).unwrap();
    let second = w.st.open_channel(None).unwrap();
    let second_id = second.clone();
    let second = w.st.channel_of(&second).unwrap();
    w.st.bind_servicers(first, &["a1".into(), "a2".into()]).unwrap();
    // a later binding moves a1: its items go to the second channel only
    w.st.bind_servicers(second, &["a1".into()]).unwrap();
    w.say("c1", "m1", T0);
    let on = |st: &mut State, ch: u32| -> Vec<(Option<String>, String)> {
        let p = st.pull_channel(ch, "", 1000).unwrap();
        p.items
            .into_iter()
            .filter_map(|(_, (to, item))| match item {
                Item::Msg(m) => {
                    Some((to.map(|n| n.as_str().to_owned()), m.client_msgid.as_deref()?.to_owned()))
                }
                Item::Session(_) => None,
            })
            .collect()
    };
    assert_eq!(on(&mut w.st, second), [(Some("a1".to_owned()), "m1".to_owned())]);
    assert!(on(&mut w.st, first).is_empty());
    // a removed servicer leaves its channel; its place may be reused
    let kf = w.kf.clone();
    w.st.servicer_del(&kf, &["a2".into()], T0).unwrap();
    w.st.servicer_add(&kf, &["a3".into()], Some(1), T0).unwrap();
    w.say("c2", "m2", T0);
    let a3_own = w.servicer_sees("a3").0;
    assert_eq!(a3_own, ["m2"], "a3 was never bound: its own queue");
    assert!(on(&mut w.st, first).is_empty());
    // closing the channel gives a1 its own queue back
    w.st.close_channel(&second_id, T0).unwrap();
    w.say("c1", "m4", T0 + S);
    assert_eq!(w.servicer_sees("a1").0, ["m4"]);
}

#[test]
fn a_full_channel_of_customers_and_servicers_counts_every_drop_and_each_lost_reply() {
    let mut st = State::new(Config::default());
    let kf = st.account_add("a", "", None, T0).unwrap();
    st.servicer_add(&kf, &["a1".into()], Some(10), T0).unwrap();
    let id = st.open_channel(Some(2)).unwrap();
    let ch = st.channel_of(&id).unwrap();
    st.bind_servicers(ch, &["a1".into()]).unwrap();
    let ext = st.customer_message(ch, "c", &kf, Some("m1"), text("m1"), T0).unwrap().external_userid;
    // the notes and m1 have filled the queue of 2
    let before = st.figures().counters.queue_overflows;
    for r in ["r1", "r2", "r3"] {
        st.servicer_reply("a1", &kf, &ext, text(r), Some("m1"), Some(r), T0).unwrap();
    }
    // r1 goes for r3; r2 and r3 go for messages to the servicer
    for m in ["m2", "m3"] {
        st.customer_message(ch, "c", &kf, Some(m), text(m), T0).unwrap();
    }
    assert_eq!(st.figures().counters.queue_overflows - before, 5);
    let log = st.sync_msg(&kf, "", 1000, 0).unwrap().msg_list;
    let failed = log
        .iter()
        .filter(|e| matches!(e, SyncEntry::Event(r) if matches!(r.event, Event::MsgSendFail { .. })))
        .count();
    assert_eq!(failed, 3, "each reply pushed out before the customer read it: {log:?}");
}

/// A scenario's state with two accounts: `vip` (first) and `presale`,
/// served by `count` shared servicers of cap `cap`, and `after-sales`
/// with its own servicer; plus an open channel.
fn shared_world(count: u32, cap: u32, presale: &str) -> (State, [String; 3], u32) {
    let text = format!(
        r#"
name = "t"
[[account]]
name = "vip"
[[account]]
name = "presale"
{presale}
[[account]]
name = "after-sales"
[[agents]]
group = "s"
accounts = ["vip", "presale"]
count = {count}
max_concurrent = {cap}
reply_delay = "10s"
[[agents]]
group = "b"
account = "after-sales"
count = 1
reply_delay = "10s"
[[entry]]
scene = "web"
account = "presale"
rate = "1/s"
"#
    );
    let sc = crate::scenario::Scenario::parse(&text, "t.toml").unwrap();
    let mut st = State::from_scenario(&sc, Config::default(), T0);
    let kf = |name: &str| {
        st.account_list(0, 100, "http://kfsim").into_iter().find(|a| a.name == name).unwrap().open_kfid
    };
    let kfs = [kf("vip"), kf("presale"), kf("after-sales")];
    let ch = st.open_channel(None).unwrap();
    let ch = st.channel_of(&ch).unwrap();
    (st, kfs, ch)
}

/// Sessions each servicer holds over all its accounts, by userid.
fn held_by(st: &State) -> std::collections::BTreeMap<String, u32> {
    let mut out = std::collections::BTreeMap::new();
    for (conv, c) in st.convs.iter() {
        if c.state == 3 {
            *out.entry(st.servicer_name(conv).unwrap().as_str().to_owned()).or_default() += 1;
        }
    }
    out
}

#[test]
fn a_shared_servicer_has_one_load_and_serves_its_first_account_first() {
    let (mut st, [vip, presale, _], ch) = shared_world(1, 1, "");
    let msg = |st: &mut State, who: &str, kf: &str, t: u64| {
        st.customer_message(ch, who, kf, Some(who), text(who), t).unwrap()
    };
    let p1 = msg(&mut st, "p1", &presale, T0);
    assert_eq!(p1.service_state, 3);
    // s-01 is at its cap in presale: vip may not take it either
    assert_eq!(msg(&mut st, "v1", &vip, T0).service_state, 2);
    assert_eq!(msg(&mut st, "p2", &presale, T0).service_state, 2);
    for kf in [&vip, &presale] {
        let l = st.servicer_list(kf).unwrap();
        assert_eq!((l[0].userid.as_str(), l[0].sessions), ("s-01", 1), "one load seen from both accounts");
    }
    // the freed slot goes to vip, the first account, though p2 waited as long
    st.servicer_end("s-01", &presale, &p1.external_userid, T0 + S).unwrap();
    let (v1, p2) = (msg(&mut st, "v1", &vip, T0 + S), msg(&mut st, "p2", &presale, T0 + S));
    assert_eq!((v1.service_state, p2.service_state), (3, 2));
    assert_eq!(held_by(&st)["s-01"], 1);
    // a status change applies to both accounts
    st.servicer_set_status("s-01", 1, 0, T0 + S).unwrap();
    st.servicer_end("s-01", &vip, &v1.external_userid, T0 + 2 * S).unwrap();
    assert_eq!(msg(&mut st, "p2", &presale, T0 + 2 * S).service_state, 2, "stopped: nobody is served");
    st.servicer_set_status("s-01", 0, 0, T0 + 3 * S).unwrap();
    assert_eq!(msg(&mut st, "p2", &presale, T0 + 3 * S).service_state, 3);
}

#[test]
fn shared_servicers_never_hold_more_than_their_cap_over_their_accounts() {
    let (mut st, [vip, presale, _], ch) = shared_world(3, 2, "policy = \"idle_first\"");
    let mut open: Vec<(String, String)> = Vec::new();
    let mut t = T0;
    // arrivals in both accounts, and every third step the oldest held
    // session ends: the pools fill, drain and refill
    for i in 0..200 {
        t += S;
        let kf = if i % 3 == 0 { &vip } else { &presale };
        let who = format!("c{i}");
        let ack = st.customer_message(ch, &who, kf, Some(&who), text(&who), t).unwrap();
        open.push((kf.clone(), ack.external_userid.to_string()));
        if i % 3 == 2 {
            let held = open.iter().position(|(kf, ext)| st.service_state_get(kf, ext).unwrap().0 == 3);
            if let Some(p) = held {
                let (kf, ext) = open.remove(p);
                let (_, who) = st.service_state_get(&kf, &ext).unwrap();
                st.servicer_end(&who.unwrap(), &kf, &ext, t).unwrap();
            }
        }
        let held = held_by(&st);
        assert!(held.values().all(|&n| n <= 2), "step {i}: {held:?}");
        for kf in [&vip, &presale] {
            for s in st.servicer_list(kf).unwrap() {
                assert_eq!(s.sessions, held.get(&s.userid).copied().unwrap_or(0), "step {i}: {}", s.userid);
            }
        }
        // nobody waits while a servicer of the account has room
        let full = held.len() == 3 && held.values().all(|&n| n == 2);
        let waiting: usize = st.figures().accounts.iter().map(|a| a.waiting).sum();
        assert!(waiting == 0 || full, "step {i}: {waiting} wait beside room: {held:?}");
    }
}

#[test]
fn a_transfer_to_another_account_moves_the_conversation_there() {
    let (mut st, [vip, presale, after], ch) = shared_world(1, 1, "");
    let c1 = st.customer_message(ch, "c1", &presale, Some("m0"), text("m0"), T0).unwrap().external_userid;
    // c2 waits in presale for s-01
    let c2 = st.customer_message(ch, "c2", &presale, Some("n0"), text("n0"), T0).unwrap().external_userid;
    assert_eq!(
        st.servicer_transfer_account("s-01", &presale, &c1, &presale, T0).unwrap_err().code,
        code::INVALID_PARAM
    );
    assert_eq!(st.servicer_transfer_account("s-01", &presale, &c1, &after, T0 + S).unwrap(), 3);
    assert_eq!(st.service_state_get(&presale, &c1).unwrap(), (4, None));
    assert_eq!(st.service_state_get(&after, &c1).unwrap(), (3, Some("b-01".into())));
    // the customer sees the session leave presale for after-sales, then its
    // assignment there; the freed slot took c2
    let p = st.pull_channel(ch, "", 100).unwrap();
    let notes: Vec<_> = p
        .items
        .iter()
        .filter_map(|(_, (_, i))| match i {
            Item::Session(n) => {
                Some((n.customer.as_str().to_owned(), n.change, n.service_state, n.to_open_kfid.clone()))
            }
            _ => None,
        })
        .collect();
    let after_name = super::model::Name::new(&after);
    assert_eq!(
        notes,
        [
            ("c1".into(), Change::Assigned, 3, None),
            ("c2".into(), Change::Queued, 2, None),
            ("c1".into(), Change::Transferred, 4, Some(after_name)),
            ("c1".into(), Change::Assigned, 3, None),
            ("c2".into(), Change::Assigned, 3, None),
        ]
    );
    // the next message goes to the new servicer; the old one no longer holds it
    st.customer_message(ch, "c1", &after, Some("m1"), text("m1"), T0 + 2 * S).unwrap();
    let b = st.servicer_index("b-01").unwrap();
    let (msgs, changes) = split(st.pull_servicer(b, "", 100).unwrap().items);
    assert_eq!((msgs, changes), (vec!["m1".to_string()], vec![Change::Assigned]));
    let e = st.servicer_reply("s-01", &presale, &c1, text("late"), None, None, T0 + 2 * S).unwrap_err();
    assert_eq!(e.code, code::SESSION_ENDED);
    // after-sales is busy with c1, and a customer with a session there
    // cannot be transferred to it again
    assert_eq!(st.servicer_transfer_account("s-01", &presale, &c2, &after, T0 + 3 * S).unwrap(), 2);
    st.customer_message(ch, "c1", &vip, Some("v"), text("v"), T0 + 3 * S).unwrap();
    let e = st.servicer_transfer_account("s-01", &vip, &c1, &after, T0 + 3 * S).unwrap_err();
    assert_eq!(e.code, code::BAD_TRANSITION);
    assert_eq!(st.service_state_get(&vip, &c1).unwrap().0, 3, "a refused transfer leaves the session");
}

#[test]
fn a_transfer_to_an_account_whose_pool_is_full_is_refused() {
    let (mut st, [_, presale, after], ch) = shared_world(1, 1, "");
    let rule = Rule { queue_limit: Some(0), ..Rule::default() };
    st.account_update(&after, None, None, Some(rule), T0).unwrap();
    let say = |st: &mut State, who: &str, kf: &str| {
        st.customer_message(ch, who, kf, Some(who), text(who), T0).unwrap()
    };
    say(&mut st, "b", &after);
    let c = say(&mut st, "c", &presale).external_userid;
    let e = st.servicer_transfer_account("s-01", &presale, &c, &after, T0).unwrap_err();
    assert_eq!(e.code, code::LIMIT);
    assert_eq!(st.service_state_get(&presale, &c).unwrap(), (3, Some("s-01".into())));
    assert_eq!(st.service_state_get(&after, &c).unwrap().0, 4);
}

#[test]
fn a_bot_account_from_a_scenario_is_api_managed_and_its_sessions_go_0_1_then_2_3_or_4() {
    let text_sc = r#"
name = "t"
[[account]]
name = "presale"
bot = { reply_delay = "2s", resolve = 0.5 }
[[agents]]
count = 1
reply_delay = "10s"
[[entry]]
scene = "web"
rate = "1/s"
"#;
    let sc = crate::scenario::Scenario::parse(text_sc, "t.toml").unwrap();
    let mut st = State::from_scenario(&sc, Config::default(), T0);
    let kf = st.account_list(0, 100, "http://kfsim")[0].open_kfid.clone();
    assert!(st.account_list(0, 100, "http://kfsim")[0].reception_rule.api_managed);
    let id = st.open_channel(None).unwrap();
    let ch = st.channel_of(&id).unwrap();
    let mut states = |who: &str, last: u8| {
        let mut seen = Vec::new();
        let ext = st.customer_message(ch, who, &kf, Some(who), text(who), T0).unwrap().external_userid;
        seen.push(st.service_state_get(&kf, &ext).unwrap().0);
        st.send_msg(&ext, &kf, None, text("bot"), T0).unwrap();
        seen.push(st.service_state_get(&kf, &ext).unwrap().0);
        st.service_state_trans(&kf, &ext, last, None, T0).unwrap();
        seen.push(st.service_state_get(&kf, &ext).unwrap().0);
        if last == 2 {
            st.servicer_end("presale-01", &kf, &ext, T0 + S).unwrap();
            seen.push(st.service_state_get(&kf, &ext).unwrap().0);
        }
        seen
    };
    assert_eq!(states("c1", 2), [0, 1, 3, 4], "handed over: the servicer takes it");
    assert_eq!(states("c2", 4), [0, 1, 4], "resolved by the bot");
}

/// A client naming ever new customers grew the process without bound
/// until the retention forgot them. Past `max_customers` a new customer is
/// refused with 45009 on every path that would remember one (message,
/// enter, leave), counted; known ones still write; once the retention
/// forgets idle ones, new ones are taken again.
#[test]
fn new_customers_beyond_the_cap_are_refused_until_the_retention_forgets_some() {
    let mut w = world(&["a1"], 10, Rule::default());
    w.st.cfg.max_customers = 3;
    w.st.cfg.idle_end_us = 10 * S;
    w.st.cfg.retention_us = 20 * S;
    // driven through the state, never pulled: the lease must not forget
    // the customers first
    w.st.cfg.channel_lease_us = u64::MAX;
    let kf = w.kf.clone();
    for c in ["c1", "c2", "c3"] {
        w.say(c, c, T0);
    }
    let refused = w.st.customer_message(w.ch, "c4", &kf, Some("c4"), text("c4"), T0).unwrap_err();
    assert_eq!(refused.code, code::LIMIT, "{refused}");
    let e = w.st.customer_enter(w.ch, "c5", &kf, "", "", T0).unwrap_err();
    assert_eq!(e.code, code::LIMIT, "{e}");
    let e = w.st.customer_leave(w.ch, "c6", &kf, T0).unwrap_err();
    assert_eq!(e.code, code::LIMIT, "{e}");
    assert_eq!(w.st.figures().customers, 3, "nothing of the refused ones is kept");
    assert_eq!(w.st.figures().counters.customers_refused, 3);
    assert_eq!(w.say("c2", "again", T0 + S).service_state, 3, "a known customer still writes");
    // idle sessions end, then the retention forgets them and their customers
    w.st.sweep(T0 + 11 * S, 1000);
    w.st.sweep(T0 + 40 * S, 1000);
    assert_eq!(w.st.figures().customers, 0);
    assert_eq!(w.say("c4", "late", T0 + 41 * S).service_state, 3, "room again for a new one");
    assert_eq!(w.st.figures().counters.customers_refused, 3);
}

/// Messages waiting with sessions in the pool were bounded by count per
/// session only: 1000 messages of 2 KB for each of two million customers.
/// Past `pending_bytes_cap` in all a message that would wait is refused
/// with 45009; a message to a session a servicer holds still goes; the
/// budget frees as the waiting messages are handed over or dropped.
#[test]
fn messages_waiting_in_the_pool_are_bounded_in_bytes_across_sessions() {
    let mut w = world(&["a1"], 1, Rule::default());
    let weight = MSG_OVERHEAD + 1000;
    w.st.cfg.pending_bytes_cap = 3 * weight;
    let big = "x".repeat(1000);
    let kf = w.kf.clone();
    let ch = w.ch;
    let say = |w: &mut World, who: &str| w.st.customer_message(ch, who, &kf, None, text(&big), T0);
    let held = say(&mut w, "held").unwrap().external_userid;
    assert_eq!(w.st.pending_bytes, 0, "handed to the servicer at once");
    say(&mut w, "p1").unwrap();
    say(&mut w, "p2").unwrap();
    say(&mut w, "p1").unwrap();
    assert_eq!(w.st.pending_bytes, 3 * weight);
    let e = say(&mut w, "p2").unwrap_err();
    assert_eq!(e.code, code::LIMIT, "{e}");
    let e = say(&mut w, "p3").unwrap_err();
    assert_eq!(e.code, code::LIMIT, "a new session would wait too: {e}");
    assert_eq!(w.st.figures().accounts[0].by_state[2], 2, "the refused newcomer left nothing waiting");
    say(&mut w, "held").unwrap();
    // the servicer ends its session: p1's two messages go to it
    w.st.servicer_end("a1", &w.kf.clone(), &held, T0 + S).unwrap();
    assert_eq!(w.st.pending_bytes, weight);
    say(&mut w, "p2").unwrap();
    let p2 = w.st.customer_message(ch, "p2", &w.kf.clone(), None, text("y"), T0).unwrap().external_userid;
    // the pool's session ends (the customer leaves): its messages are dropped
    w.st.customer_leave(ch, "p2", &w.kf.clone(), T0 + 2 * S).unwrap();
    assert_eq!(w.st.service_state_get(&w.kf.clone(), &p2).unwrap().0, 4);
    assert_eq!(w.st.pending_bytes, 0, "nothing is counted twice or left behind");
}

/// One day's 升级服务 figures: the account's upgraded customers, and a
/// servicer's invitations, customers and (customer, 专员) pairs.
fn upgrade_figures(w: &World, servicer: &str, t: u64) -> (u64, [u64; 3]) {
    let s = t / S;
    let corp = w.st.corp_statistic(&w.kf, s, s).unwrap()[0].1;
    let d = w.st.servicer_statistic(&w.kf, servicer, s, s).unwrap()[0].1;
    (
        corp.upgrade_service_customer_cnt,
        [
            d.upgrade_service_member_invite_cnt,
            d.upgrade_service_customer_cnt,
            d.upgrade_service_member_customer_cnt,
        ],
    )
}

#[test]
fn upgrade_service_recommends_a_servicer_and_refuses_what_is_not_in_range() {
    use super::upgrade::UpgradeTo::{Groupchat, Member};
    let mut w = world(&["a1", "a2"], 1, Rule::default());
    let kf = w.kf.clone();
    let c1 = w.say("c1", "m1", T0).external_userid;
    w.st.upgrade_service(&kf, &c1, Member("a2"), T0).unwrap();
    assert_eq!(w.st.upgraded_to(&kf, &c1).unwrap().as_deref(), Some("a2"));
    w.st.upgrade_service(&kf, &c1, Member("a1"), T0).unwrap();
    assert_eq!(w.st.upgraded_to(&kf, &c1).unwrap().as_deref(), Some("a1"), "the latest replaces it");
    fn refused(
        st: &mut State,
        kf: &str,
        ext: &str,
        to: super::upgrade::UpgradeTo<'_>,
    ) -> super::errors::ApiError {
        st.upgrade_service(kf, ext, to, T0).unwrap_err()
    }
    for (to, want) in [
        (Member("nobody"), code::NOT_IN_UPGRADE_RANGE),
        (Groupchat("wrAAAA"), code::NOT_IN_UPGRADE_RANGE),
        (Member(""), code::INVALID_PARAM),
        (Groupchat(""), code::INVALID_PARAM),
    ] {
        assert_eq!(refused(&mut w.st, &kf, &c1, to).code, want, "{to:?}");
    }
    assert_eq!(refused(&mut w.st, "wk0000", &c1, Member("a1")).code, code::OPEN_KFID_NOT_FOUND);
    assert_eq!(refused(&mut w.st, "kf1", &c1, Member("a1")).code, code::INVALID_OPEN_KFID);
    let unknown = "wm0000000000000000";
    assert_eq!(refused(&mut w.st, &kf, unknown, Member("a1")).code, code::INVALID_PARAM);
    assert_eq!(refused(&mut w.st, &kf, "", Member("a1")).code, code::INVALID_PARAM);
    // a customer of the corp, but not of this account
    let other = w.st.account_add("other", "", None, T0).unwrap();
    let e = refused(&mut w.st, &other, &c1, Member("a1"));
    assert!(e.code == code::INVALID_PARAM && e.msg.contains("no session"), "{e}");
    assert_eq!(w.st.cancel_upgrade_service(&other, &c1, T0).unwrap_err().code, code::INVALID_PARAM);
    // a refusal leaves the recommendation as it was
    assert_eq!(w.st.upgraded_to(&kf, &c1).unwrap().as_deref(), Some("a1"));
    w.st.cancel_upgrade_service(&kf, &c1, T0).unwrap();
    assert_eq!(w.st.upgraded_to(&kf, &c1).unwrap(), None);
    w.st.cancel_upgrade_service(&kf, &c1, T0).unwrap();
    assert_eq!(w.st.cancel_upgrade_service(&kf, unknown, T0).unwrap_err().code, code::INVALID_PARAM);
    assert_eq!(w.st.upgrade_member_range(), ["a1", "a2"]);
}

#[test]
fn upgrades_are_counted_per_day_for_the_account_and_the_servicer_holding_the_session() {
    use super::upgrade::UpgradeTo::Member;
    let mut w = world(&["a1", "a2"], 1, Rule::default());
    w.st.cfg.channel_lease_us = u64::MAX;
    let kf = w.kf.clone();
    let c1 = w.say("c1", "m1", T0).external_userid;
    let c2 = w.say("c2", "m2", T0).external_userid;
    let c3 = w.say("c3", "m3", T0).external_userid;
    assert_eq!((w.state_of(&c1).1.as_deref(), w.state_of(&c3).0), (Some("a1"), 2));
    for to in ["a2", "a2", "a1"] {
        w.st.upgrade_service(&kf, &c1, Member(to), T0 + S).unwrap();
    }
    assert_eq!(upgrade_figures(&w, "a1", T0), (1, [3, 1, 2]), "one customer, three invitations, two 专员");
    // cancelled, then upgraded again the same day: counted once still
    w.st.cancel_upgrade_service(&kf, &c1, T0 + 2 * S).unwrap();
    w.st.upgrade_service(&kf, &c1, Member("a2"), T0 + 3 * S).unwrap();
    assert_eq!(upgrade_figures(&w, "a1", T0), (1, [4, 1, 2]));
    // a2's customer is a2's; a waiting session has no servicer to count it
    w.st.upgrade_service(&kf, &c2, Member("a1"), T0 + 3 * S).unwrap();
    w.st.upgrade_service(&kf, &c3, Member("a1"), T0 + 3 * S).unwrap();
    assert_eq!(upgrade_figures(&w, "a2", T0), (3, [1, 1, 1]));
    assert_eq!(upgrade_figures(&w, "a1", T0).1, [4, 1, 2]);
    let s = T0 / S;
    let all = w.st.servicer_statistic(&kf, "", s, s).unwrap()[0].1;
    assert_eq!(all.upgrade_service_member_invite_cnt, 5, "the sum over the servicers");
    assert_eq!(all.upgrade_service_groupchat_invite_cnt + all.upgrade_service_groupchat_customer_cnt, 0);
    // the next day counts the customer again
    let next = T0 + DAY_US;
    w.say("c1", "m4", next);
    w.st.upgrade_service(&kf, &c1, Member("a2"), next).unwrap();
    assert_eq!(upgrade_figures(&w, "a1", next), (1, [1, 1, 1]));
    assert_eq!(upgrade_figures(&w, "a1", T0), (3, [4, 1, 2]), "yesterday's stay");
}

/// What an upgrade's day has counted is kept by userid: a servicer (or a
/// 专员) removed and its index reused by a newcomer the same day leaves the
/// newcomer's first invitation (or pair) new.
#[test]
fn upgrades_count_the_userid_not_its_place() {
    use super::upgrade::UpgradeTo::Member;
    let mut w = world(&["a1"], 1, Rule::default());
    w.st.cfg.channel_lease_us = u64::MAX;
    let kf = w.kf.clone();
    // a 专员 of another account, so that removing it moves no session
    let other = w.st.account_add("other", "", None, T0).unwrap();
    w.st.servicer_add(&other, &["m1".to_owned()], Some(1), T0).unwrap();
    let c1 = w.say("c1", "m1", T0).external_userid;
    assert_eq!(w.state_of(&c1).1.as_deref(), Some("a1"));
    w.st.upgrade_service(&kf, &c1, Member("m1"), T0 + S).unwrap();
    assert_eq!(upgrade_figures(&w, "a1", T0), (1, [1, 1, 1]));
    // m1's place goes to m2: (a1, m2) is a pair not yet counted
    let m1 = w.st.servicer_index("m1").unwrap();
    w.st.servicer_del(&other, &["m1".to_owned()], T0 + 2 * S).unwrap();
    w.st.servicer_add(&other, &["m2".to_owned()], Some(1), T0 + 3 * S).unwrap();
    assert_eq!(w.st.servicer_index("m2").unwrap(), m1, "the place is reused");
    w.st.upgrade_service(&kf, &c1, Member("m2"), T0 + 4 * S).unwrap();
    assert_eq!(upgrade_figures(&w, "a1", T0), (1, [2, 1, 2]));
    // a1's place goes to b1, who takes the session: b1's first invitation
    let a1 = w.st.servicer_index("a1").unwrap();
    w.st.servicer_del(&kf, &["a1".to_owned()], T0 + 5 * S).unwrap();
    w.st.servicer_add(&kf, &["b1".to_owned()], Some(1), T0 + 6 * S).unwrap();
    assert_eq!(w.st.servicer_index("b1").unwrap(), a1, "the place is reused");
    assert_eq!(w.state_of(&c1).1.as_deref(), Some("b1"));
    w.st.upgrade_service(&kf, &c1, Member("m2"), T0 + 7 * S).unwrap();
    assert_eq!(upgrade_figures(&w, "b1", T0), (1, [1, 1, 1]), "b1 invited c1 to m2 once");
    assert_eq!(upgrade_figures(&w, "a1", T0).1, [2, 1, 2], "a1's stay a1's");
}

/// An upgrade is kept on the session: the retention forgets it with the
/// session, and one customer's upgrades remember a bounded number of pairs.
#[test]
fn upgrades_go_with_their_session_and_count_a_bounded_number_of_pairs() {
    use super::upgrade::UpgradeTo::Member;
    let names: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
    let ids: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut w = world(&ids, 1, Rule::default());
    w.st.cfg.channel_lease_us = u64::MAX;
    let kf = w.kf.clone();
    let c1 = w.say("c1", "m1", T0).external_userid;
    for (i, to) in ids.iter().enumerate() {
        w.st.upgrade_service(&kf, &c1, Member(to), T0 + i as u64 * S).unwrap();
    }
    let (corp, [invites, customers, pairs]) = upgrade_figures(&w, "s00", T0);
    assert_eq!((corp, invites, customers), (1, 20, 1));
    assert_eq!(pairs, 16, "past the bound no pair is new");
    w.st.upgrade_service(&kf, &c1, Member("s19"), T0 + 30 * S).unwrap();
    assert_eq!(upgrade_figures(&w, "s00", T0).1, [21, 1, 16], "nor counted again");
    w.st.sweep(T0 + 48 * HOUR_US, 1000);
    assert_eq!(w.state_of(&c1).0, 4);
    assert_eq!(w.st.upgraded_to(&kf, &c1).unwrap().as_deref(), Some("s19"), "an ended session keeps it");
    w.st.sweep(T0 + 48 * HOUR_US + 3 * DAY_US + S, 1000);
    assert_eq!(w.st.figures().convs, 0);
    assert_eq!(w.st.upgraded_to(&kf, &c1).unwrap_err().code, code::INVALID_PARAM, "forgotten with it");
}

/// A servicer's day is kept by its userid: one removed still answers for
/// it, and one added after it, taking its place, starts from nothing (the
/// index of a removed user is reused, and credited the newcomer with it).
#[test]
fn servicer_statistics_follow_the_userid_not_its_place() {
    let mut w = world(&["a1"], 1, Rule::default());
    let kf = w.kf.clone();
    let c1 = w.say("c1", "m1", T0).external_userid;
    w.say("c1", "m2", T0 + S);
    assert_eq!(w.state_of(&c1).1.as_deref(), Some("a1"));
    let index = w.st.servicer_index("a1").unwrap();
    w.st.servicer_del(&kf, &["a1".to_owned()], T0 + 2 * S).unwrap();
    w.st.servicer_add(&kf, &["b1".to_owned()], Some(1), T0 + 3 * S).unwrap();
    assert_eq!(w.st.servicer_index("b1").unwrap(), index, "the place is reused");
    let s = T0 / S;
    let day = |st: &State, who: &str| st.servicer_statistic(&kf, who, s, s).map(|d| d[0].1);
    let a1 = day(&w.st, "a1").unwrap();
    assert_eq!((a1.session_cnt, a1.customer_msg_cnt), (1, 2), "a1's day stays a1's");
    // the session went back to the pool with a1 gone, and b1 took it
    assert_eq!(w.state_of(&c1).1.as_deref(), Some("b1"));
    let b1 = day(&w.st, "b1").unwrap();
    assert_eq!((b1.session_cnt, b1.customer_msg_cnt), (1, 0), "b1's day is its own");
    w.say("c1", "m3", T0 + 4 * S);
    let (a1, b1) = (day(&w.st, "a1").unwrap(), day(&w.st, "b1").unwrap());
    assert_eq!((a1.customer_msg_cnt, b1.customer_msg_cnt, b1.session_cnt), (2, 1, 1));
    assert_eq!(day(&w.st, "").unwrap().customer_msg_cnt, 3, "the sum over both");
    assert_eq!(day(&w.st, "nobody").unwrap_err().code, code::NOT_SERVICER);
}

/// Entries `sync_msg` returns a second time are counted apart from those
/// returned the first time: a middleware that keeps no cursor reads its
/// whole log at every callback, which counted only as more calls.
#[test]
fn entries_synced_again_are_counted() {
    let mut w = world(&["a1"], 1, Rule::default());
    for i in 0..3 {
        w.say("c", &i.to_string(), T0);
    }
    let kf = w.kf.clone();
    let page = w.st.sync_msg(&kf, "", 2, T0).unwrap();
    let n = page.msg_list.len() as u64;
    assert!(n >= 2, "{n}");
    assert_eq!((w.st.audit().synced, w.st.audit().resynced), (n, 0));
    // from its cursor: only what is new
    let rest = w.st.sync_msg(&kf, &page.next_cursor, 100, T0).unwrap().msg_list.len() as u64;
    assert_eq!((w.st.audit().synced, w.st.audit().resynced), (n + rest, 0));
    // from the start again: every entry a second time
    let all = w.st.sync_msg(&kf, "", 100, T0).unwrap().msg_list.len() as u64;
    assert_eq!(all, n + rest);
    assert_eq!((w.st.audit().synced, w.st.audit().resynced), (all, all));
    // the corp-wide form has a cursor of its own: its first read is new
    let corp = w.st.sync_msg("", "", 100, T0).unwrap().msg_list.len() as u64;
    assert_eq!((w.st.audit().synced, w.st.audit().resynced), (all + corp, all));
}

/// A closed channel's customers are ended and forgotten a bounded part per
/// call (a million of them held the lock 1.3 s in one step), with the ends
/// closing them at once had: every open session ends once (reason `left`),
/// each ended held one tells its servicer, each freed place serves the pool
/// (logged), and nothing of the channel's customers is left. A channel
/// opened between the parts takes neither the closed one's index nor, so,
/// its customers for its own.
#[test]
fn a_closed_channel_is_drained_in_parts_with_the_ends_of_a_close_at_once() {
    const N: usize = 3000;
    let mut w = world(&["a1", "a2"], 200, Rule { queue_limit: Some(500), ..Rule::default() });
    w.st.cfg.channel_lease_us = u64::MAX;
    let kf = w.kf.clone();
    // no servicers: its sessions stay in state 0
    let kf2 = w.st.account_add("aftersale", "", Some(Rule::default()), T0).unwrap();
    for i in 0..N {
        let who = format!("c{i}");
        w.st.customer_message(w.ch, &who, &kf, None, text("m"), T0).unwrap();
        if i % 7 == 0 {
            w.st.customer_message(w.ch, &who, &kf2, None, text("m"), T0).unwrap();
        }
    }
    let by_state = |st: &State| st.figures().accounts.iter().map(|a| a.by_state).collect::<Vec<_>>();
    assert_eq!(by_state(&w.st), [[0, 0, 500, 400], [429, 0, 0, 0]]);
    let before = w.st.figures().counters;
    let logged = pool_exits_cursor(&mut w.st, &kf);
    for who in ["a1", "a2"] {
        w.servicer_sees(who);
    }
    let (id, ch) = (w.st.channels.get(w.ch).unwrap().id.to_string(), w.ch);

    w.st.begin_close(&id).unwrap();
    assert!(w.st.channel_of(&id).is_err(), "gone for every caller at once");
    let (mut parts, mut seen, mut newcomer) = (0, 0, None);
    loop {
        let (n, more) = w.st.drain_closing(64, T0 + S);
        assert!(n <= 64, "{n} customers in one part");
        (parts, seen) = (parts + 1, seen + n);
        if parts == 10 {
            let id = w.st.open_channel(None).unwrap();
            let new = w.st.channel_of(&id).unwrap();
            assert_ne!(new, ch, "the closed channel's index is kept until its customers are gone");
            let ext =
                w.st.customer_message(new, "c1", &kf2, None, text("m"), T0 + S).unwrap().external_userid;
            newcomer = Some((new, ext));
        }
        if !more {
            break;
        }
    }
    assert_eq!(seen, N, "each customer looked at once");
    assert!(parts > N / 64, "in {parts} parts");

    let after = w.st.figures().counters;
    let (ended, assigned) = (after.ended - before.ended, after.assigned - before.assigned);
    assert_eq!(ended, 400 + 500 + 429, "every open session ended, once");
    assert!(assigned > 0, "freed places served the pool");
    let mut told = 0;
    for who in ["a1", "a2"] {
        let u = w.st.servicer_index(who).unwrap();
        let items = w.st.pull_servicer(u, "", 1000).unwrap().items;
        for (_, (_, item)) in items {
            let Item::Session(n) = item else { continue };
            if n.change == Change::Ended {
                assert_eq!(n.reason, Some("left"));
                told += 1;
            }
        }
    }
    assert_eq!(told, 400 + assigned, "each held session's end told its servicer");
    let pool_exits = pool_exits(&mut w.st, &kf, &logged);
    assert_eq!(pool_exits as u64, assigned, "each pool exit logged");
    let (new, ext) = newcomer.unwrap();
    assert_eq!(by_state(&w.st), [[0; 4], [1, 0, 0, 0]], "only the newcomer's session is open");
    assert_eq!((w.st.figures().customers, w.st.convs.len(), w.st.conv_ix.len()), (1, 1, 1));
    assert_eq!(w.st.service_state_get(&kf2, &ext).unwrap().0, 0);
    assert_eq!(w.st.channels.get(new).unwrap().customers.len(), 1);
    assert!(w.st.closing.is_empty());
    let again = w.st.open_channel(None).unwrap();
    assert_eq!(w.st.channel_of(&again).unwrap(), ch, "the index is free again");
}

/// Between the parts of a close, a customer not yet ended had no channel
/// and was still known: a servicer's reply, a `send_msg` or a
/// `send_msg_on_event` to it was taken (counted, logged) and delivered
/// nowhere, with no `msg_send_fail` for it. After the close each is
/// refused (the customer is unknown: 40058, its code 95007); in between,
/// it must be the same.
#[test]
fn a_customer_of_a_closing_channel_is_gone_before_its_turn_comes() {
    let mut w = world(&["a1"], 5, Rule::default());
    w.st.cfg.channel_lease_us = u64::MAX;
    let kf = w.kf.clone();
    // no servicers: its sessions stay in state 0, for send_msg
    let kf2 = w.st.account_add("bot", "", Some(Rule::default()), T0).unwrap();
    let id = w.st.open_channel(None).unwrap();
    let ch = w.st.channel_of(&id).unwrap();
    let held = w.st.customer_message(ch, "held", &kf, Some("h"), text("h"), T0).unwrap().external_userid;
    // entered before its first message: welcomed
    w.st.customer_enter(ch, "bot", &kf2, "", "", T0).unwrap();
    let bot = w.st.customer_message(ch, "bot", &kf2, Some("b"), text("b"), T0).unwrap().external_userid;
    let log = w.st.sync_msg(&kf2, "", 1000, 0).unwrap().msg_list;
    let welcome = log
        .iter()
        .find_map(|e| match e {
            SyncEntry::Event(r) => match &r.event {
                Event::EnterSession { welcome_code, .. } => welcome_code.clone(),
                _ => None,
            },
            _ => None,
        })
        .expect("a welcome code");
    assert_eq!(w.state_of(&held), (3, Some("a1".into())));
    let attempts = |st: &mut State, t: u64| {
        [
            st.servicer_reply("a1", &kf, &held, text("r"), Some("h"), None, t).map(drop),
            st.send_msg(&bot, &kf2, None, text("s"), t).map(drop),
            st.send_msg_on_event(&welcome, None, text("w"), t).map(drop),
            st.service_state_get(&kf, &held).map(drop),
        ]
        .map(|r| r.err().map(|e| e.code))
    };
    let gone = [
        Some(code::INVALID_PARAM),
        Some(code::INVALID_PARAM),
        Some(code::INVALID_CODE),
        Some(code::INVALID_PARAM),
    ];
    let before = w.st.figures().counters;
    let after_end = w.st.audit().replies_after_end;

    w.st.begin_close(&id).unwrap();
    assert_eq!(attempts(&mut w.st, T0 + S), gone, "between the parts, as after the close");
    let counters = w.st.figures().counters;
    assert_eq!(
        (counters.servicer_messages, counters.api_messages),
        (before.servicer_messages, before.api_messages),
        "nothing taken"
    );
    assert_eq!(w.st.audit().replies_after_end, after_end);
    while w.st.drain_closing(1, T0 + S).1 {}
    assert_eq!(attempts(&mut w.st, T0 + 2 * S), gone, "after the close");
    assert_eq!(w.st.figures().customers, 0);
}

/// A close the HTTP answer gave up on is finished by the sweeper; a
/// middleware's summary read before that missed what the sessions not yet
/// ended owed (`owed_at_end`). The summary finishes the closes in progress
/// first.
#[tokio::test]
async fn a_middleware_summary_counts_what_closes_in_progress_owe() {
    let mut w = world(&[], 1, Rule { api_managed: true, ..Rule::default() });
    w.st.cfg.channel_lease_us = u64::MAX;
    let kf = w.kf.clone();
    for i in 0..10 {
        for m in 0..2 {
            w.st.customer_message(w.ch, &format!("c{i}"), &kf, Some(&format!("{i}-{m}")), text("m"), T0)
                .unwrap();
        }
    }
    assert_eq!(w.st.audit().customer_messages, 20);
    let id = w.st.channels.get(w.ch).unwrap().id.to_string();
    w.st.begin_close(&id).unwrap();
    // a first part only, as an HTTP close cut short leaves it
    assert!(w.st.drain_closing(3, T0 + S).1);
    let svc = super::Service::new(
        w.st,
        std::sync::Arc::new(super::ManualClock::new(T0 + S)),
        super::Options::default(),
    );
    let m = svc.middleware_summary(1.0, 20_000_000).await;
    assert_eq!((m.owed_at_end, m.unacted), (20, 0), "every owed message, none the middleware's fault");
    assert!(svc.with_state(|st, _| st.closing.is_empty()));
}

/// The customers of a closing channel with sessions in several accounts
/// were ended in one step at the end of the drain, whatever their number
/// (their sessions read off the whole index, then each ended): each part
/// ends and forgets at most its budget of them too, and the whole close
/// still ends every session once and forgets every customer.
#[test]
fn customers_with_sessions_in_several_accounts_are_closed_a_part_at_a_time() {
    const N: usize = 300;
    const BUDGET: usize = 16;
    let mut w = world(&[], 1, Rule::default());
    w.st.cfg.channel_lease_us = u64::MAX;
    let kf = w.kf.clone();
    let kf2 = w.st.account_add("aftersale", "", Some(Rule::default()), T0).unwrap();
    for i in 0..N {
        let who = format!("c{i}");
        w.st.customer_message(w.ch, &who, &kf, None, text("m"), T0).unwrap();
        w.st.customer_message(w.ch, &who, &kf2, None, text("m"), T0).unwrap();
    }
    // another channel's customer, in both accounts too, stays
    let id = w.st.open_channel(None).unwrap();
    let other = w.st.channel_of(&id).unwrap();
    w.st.customer_message(other, "stays", &kf, None, text("m"), T0).unwrap();
    let stays = w.st.customer_message(other, "stays", &kf2, None, text("m"), T0).unwrap().external_userid;
    let closed = w.st.channels.get(w.ch).unwrap().id.to_string();
    w.st.begin_close(&closed).unwrap();
    let (mut parts, mut most_ended, mut most_forgotten) = (0, 0, 0);
    loop {
        let (ended, customers) = (w.st.figures().counters.ended, w.st.figures().customers);
        let more = w.st.drain_closing(BUDGET, T0 + S).1;
        parts += 1;
        most_ended = most_ended.max(w.st.figures().counters.ended - ended);
        most_forgotten = most_forgotten.max(customers - w.st.figures().customers);
        if !more {
            break;
        }
    }
    assert!(most_ended <= BUDGET as u64, "{most_ended} sessions ended in one part");
    assert!(most_forgotten <= BUDGET, "{most_forgotten} customers forgotten in one part");
    assert!(parts > 2 * N / BUDGET, "in {parts} parts");
    assert_eq!(w.st.figures().counters.ended, 2 * N as u64, "every session ended once");
    assert_eq!((w.st.figures().customers, w.st.convs.len(), w.st.conv_ix.len()), (1, 2, 2));
    assert_eq!(w.st.service_state_get(&kf2, &stays).unwrap().0, 0);
    assert!(w.st.closing.is_empty());
}

/// The cursor past an account's log as it is.
fn pool_exits_cursor(st: &mut State, kf: &str) -> String {
    let mut cursor = String::new();
    loop {
        let page = st.sync_msg(kf, &cursor, 1000, 0).unwrap();
        cursor = page.next_cursor;
        if !page.has_more {
            return cursor;
        }
    }
}

/// `session_status_change` 1 (从接待池接入会话) in an account's log after `cursor`.
fn pool_exits(st: &mut State, kf: &str, cursor: &str) -> usize {
    let (mut cursor, mut n) = (cursor.to_string(), 0);
    loop {
        let page = st.sync_msg(kf, &cursor, 1000, 0).unwrap();
        n += page
            .msg_list
            .iter()
            .filter(|e| {
                matches!(e, SyncEntry::Event(r)
                    if matches!(r.event, Event::SessionStatusChange { change_type: 1, .. }))
            })
            .count();
        cursor = page.next_cursor;
        if !page.has_more {
            return n;
        }
    }
}

/// Not tests: how long the state is held by the operations that walk many
/// sessions, for the figures of commit messages. Run by hand:
/// `cargo test --lib service::tests::lock_figures -- --ignored --nocapture`.
// figures of wall time, printed for a person: nothing asserts on them
#[allow(clippy::disallowed_methods, clippy::print_stderr)]
mod lock_figures {
    use super::*;
    use std::time::Instant;

    /// A channel of `n` customers of one account: 1 000 held by a1, 1 000
    /// waiting, the rest rejected by the full pool (ended, remembered).
    fn channel_of(n: usize) -> (State, String) {
        let mut st = State::new(Config { max_customers: 2 * n, ..Config::default() });
        st.get_token("kfsim", "kfsim-secret", Caller::Client, T0).unwrap();
        let rule = Rule { queue_limit: Some(1000), ..Rule::default() };
        let kf = st.account_add("presale", "", Some(rule), T0).unwrap();
        st.servicer_add(&kf, &["a1".into()], Some(1000), T0).unwrap();
        let id = st.open_channel(Some(1000)).unwrap();
        let ch = st.channel_of(&id).unwrap();
        for i in 0..n {
            st.customer_message(ch, &format!("c{i}"), &kf, None, text("m"), T0).unwrap();
        }
        (st, id)
    }

    #[test]
    #[ignore]
    fn close_channel_of_a_million() {
        let (mut st, id) = channel_of(1_000_000);
        let t = Instant::now();
        st.begin_close(&id).unwrap();
        eprintln!("close_channel, 1 M customers: first step {:?}", t.elapsed());
        let (mut longest, mut parts) = (std::time::Duration::ZERO, 0);
        let all = Instant::now();
        loop {
            let t = Instant::now();
            let more = st.drain_closing(super::super::session::CLOSE_CHUNK, T0 + S).1;
            (longest, parts) = (longest.max(t.elapsed()), parts + 1);
            if !more {
                break;
            }
        }
        eprintln!("  then {parts} parts, the longest {longest:?}, {:?} in all", all.elapsed());
        let t = Instant::now();
        drop(st.take_closed());
        eprintln!("  dropping the channel (outside the lock): {:?}", t.elapsed());
    }

    /// A channel of `n` customers, each with a session in each of two
    /// accounts (held by servicers of 1 000 places, 1 000 waiting in each
    /// pool, the rest rejected), after `others` customers of one account
    /// on another channel (the sessions the close must look through):
    /// closed in parts, each part's time printed when it is the longest
    /// yet, and the median.
    fn close_several(n: usize, others: usize) {
        let mut st = State::new(Config { max_customers: n + others, ..Config::default() });
        st.get_token("kfsim", "kfsim-secret", Caller::Client, T0).unwrap();
        let rule = Rule { queue_limit: Some(1000), ..Rule::default() };
        let kfs: Vec<String> = (0..2)
            .map(|a| {
                let kf = st.account_add(&format!("acct{a}"), "", Some(rule.clone()), T0).unwrap();
                st.servicer_add(&kf, &[format!("s{a}")], Some(1000), T0).unwrap();
                kf
            })
            .collect();
        let other = st.open_channel(Some(1000)).unwrap();
        let other = st.channel_of(&other).unwrap();
        for i in 0..others {
            st.customer_message(other, &format!("o{i}"), &kfs[0], None, text("m"), T0).unwrap();
        }
        let id = st.open_channel(Some(1000)).unwrap();
        let ch = st.channel_of(&id).unwrap();
        for i in 0..n {
            for kf in &kfs {
                st.customer_message(ch, &format!("c{i}"), kf, None, text("m"), T0).unwrap();
            }
        }
        let t = Instant::now();
        st.begin_close(&id).unwrap();
        eprintln!(
            "close_channel, {n} customers of two accounts among {} sessions: first step {:?}",
            st.convs.len(),
            t.elapsed()
        );
        let (mut longest, mut took) = (std::time::Duration::ZERO, Vec::new());
        let all = Instant::now();
        loop {
            let t = Instant::now();
            let more = st.drain_closing(super::super::session::CLOSE_CHUNK, T0 + S).1;
            let part = t.elapsed();
            if !more || part > longest {
                eprintln!("  part {}: {part:?}{}", took.len(), if more { "" } else { " (the last)" });
            }
            longest = longest.max(part);
            took.push(part);
            if !more {
                break;
            }
        }
        let all = all.elapsed();
        took.sort();
        let median = took[took.len() / 2];
        eprintln!("  {} parts, the longest {longest:?}, median {median:?}, {all:?} in all", took.len());
        assert_eq!(st.figures().customers, others);
    }

    #[test]
    #[ignore]
    fn close_channel_of_100k_customers_of_two_accounts() {
        close_several(100_000, 0);
    }

    #[test]
    #[ignore]
    fn close_channel_of_1000_customers_of_two_accounts_among_a_million_sessions() {
        close_several(1000, 1_000_000);
    }

    /// 100 accounts of 1 000 customers each, every session held by the
    /// account's one servicer.
    fn accounts() -> (State, Vec<String>) {
        let mut st = State::new(Config::default());
        st.get_token("kfsim", "kfsim-secret", Caller::Client, T0).unwrap();
        let id = st.open_channel(Some(1000)).unwrap();
        let ch = st.channel_of(&id).unwrap();
        let mut kfs = Vec::new();
        for a in 0..100 {
            let kf = st.account_add(&format!("acct{a}"), "", Some(Rule::default()), T0).unwrap();
            st.servicer_add(&kf, &[format!("s{a}")], Some(1000), T0).unwrap();
            for i in 0..1000 {
                st.customer_message(ch, &format!("c{a}-{i}"), &kf, None, text("m"), T0).unwrap();
            }
            kfs.push(kf);
        }
        (st, kfs)
    }

    #[test]
    #[ignore]
    fn account_and_servicer_del_among_100k_sessions() {
        let (mut st, kfs) = accounts();
        let t = Instant::now();
        st.servicer_del(&kfs[1], &["s1".into()], T0 + S).unwrap();
        eprintln!("servicer/del, 1 000 of 100 000 sessions: {:?}", t.elapsed());
        let t = Instant::now();
        st.account_del(&kfs[0], T0 + S).unwrap();
        eprintln!("account/del, 1 000 of 100 000 sessions: {:?}", t.elapsed());
        let t = Instant::now();
        st.account_del(&kfs[2], T0 + S).unwrap();
        eprintln!("account/del, 1 000 of 99 000 sessions: {:?}", t.elapsed());
    }
}
