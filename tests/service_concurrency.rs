//! Many customers and servicers at once over HTTP: every customer message
//! reaches exactly one servicer exactly once, and every reply reaches the
//! customer it answers exactly once — through the pool, transfers and ends.
//!
//! Customers are closed-loop: each sends its next message after the reply
//! to the previous one. Servicers reply to everything, send every fourth
//! customer back to the pool after its second message (转接), and end a
//! session after its last message. All loops are bounded by a deadline.

mod service_util;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use service_util::{Client, Server, account, channel, say};

const SERVICERS: usize = 20;
const CAP: u32 = 3;
const CHANNELS: usize = 3;
const CUSTOMERS_PER_CHANNEL: usize = 150;
const MESSAGES: usize = 5;

/// What servicers saw: client_msgid → servicers who got it.
type Seen = Arc<Mutex<HashMap<String, Vec<String>>>>;

fn msg_id(ch: usize, cust: usize, k: usize) -> String {
    format!("{ch}-{cust}-{k}")
}

async fn servicer(
    mut c: Client,
    userid: String,
    kf: String,
    seen: Seen,
    stop: Arc<tokio::sync::Notify>,
) -> usize {
    let mut cursor = String::new();
    let mut errors = 0;
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        let pull = c.ok(
            "/sim/servicer/pull",
            json!({"servicer_userid": userid, "cursor": cursor, "timeout_ms": 200}),
        );
        let v = tokio::select! {
            v = pull => v,
            _ = &mut stopped => return errors,
        };
        assert_eq!(v["missed"], 0, "{userid} lost queue items");
        cursor = v["next_cursor"].as_str().unwrap().to_owned();
        let mut actions = Vec::new();
        for e in v["event_list"].as_array().unwrap() {
            if e["kind"] != "message" {
                continue;
            }
            let id = e["client_msgid"].as_str().unwrap().to_owned();
            seen.lock().unwrap().entry(id.clone()).or_default().push(userid.clone());
            let ext = e["external_userid"].clone();
            let mut parts = id.split('-').map(|p| p.parse::<usize>().unwrap());
            let (_, cust, k) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            actions.push(json!({"type": "reply", "servicer_userid": userid, "open_kfid": kf, "external_userid": ext,
                                "in_reply_to": id, "msgtype": "text", "text": {"content": format!("re {id}")}}));
            if k == MESSAGES - 1 {
                actions.push(json!({"type": "end", "servicer_userid": userid, "open_kfid": kf, "external_userid": ext}));
            } else if k == 1 && cust % 4 == 0 {
                actions.push(json!({"type": "transfer", "servicer_userid": userid, "open_kfid": kf, "external_userid": ext}));
            }
        }
        if actions.is_empty() {
            continue;
        }
        let r = c.ok("/sim/servicer/batch", json!({"actions": actions})).await;
        errors += r["results"].as_array().unwrap().iter().filter(|x| x["errcode"] != 0).count();
    }
}

/// One customer driver: sends each customer's messages in turn and checks
/// what comes back. Returns (replies received per client_msgid, sessions ended).
async fn driver(mut c: Client, ch_no: usize, kf: String) -> (HashMap<String, usize>, usize) {
    let ch = channel(&mut c).await;
    let first: Vec<Value> =
        (0..CUSTOMERS_PER_CHANNEL).map(|i| say(&format!("k{i}"), &kf, &msg_id(ch_no, i, 0), "hi")).collect();
    let r = c.ok("/sim/customer/batch", json!({"channel_id": ch, "actions": first})).await;
    assert!(r["results"].as_array().unwrap().iter().all(|x| x["errcode"] == 0), "{r}");
    let mut replies: HashMap<String, usize> = HashMap::new();
    let mut ended = 0;
    let mut cursor = String::new();
    let want = CUSTOMERS_PER_CHANNEL * MESSAGES;
    while replies.len() < want || ended < CUSTOMERS_PER_CHANNEL {
        let v = c
            .ok(
                "/sim/customer/pull",
                json!({"channel_id": ch, "cursor": cursor, "limit": 1000, "timeout_ms": 1000}),
            )
            .await;
        assert_eq!(v["missed"], 0);
        cursor = v["next_cursor"].as_str().unwrap().to_owned();
        let mut next = Vec::new();
        for e in v["event_list"].as_array().unwrap() {
            let customer = e["customer"].as_str().unwrap();
            if e["kind"] == "session" {
                ended += usize::from(e["change"] == "ended");
                continue;
            }
            let id = e["in_reply_to"].as_str().expect("replies name their message").to_owned();
            let mut parts = id.split('-').map(|p| p.parse::<usize>().unwrap());
            let (c_no, cust, k) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            assert_eq!(
                (c_no, format!("k{cust}")),
                (ch_no, customer.to_owned()),
                "a reply reached the wrong customer"
            );
            *replies.entry(id).or_default() += 1;
            if k + 1 < MESSAGES {
                next.push(say(customer, &kf, &msg_id(ch_no, cust, k + 1), "more"));
            }
        }
        if !next.is_empty() {
            let r = c.ok("/sim/customer/batch", json!({"channel_id": ch, "actions": next})).await;
            assert!(r["results"].as_array().unwrap().iter().all(|x| x["errcode"] == 0), "{r}");
        }
    }
    (replies, ended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_reaches_one_servicer_once_and_every_reply_its_customer() {
    let server = Server::empty().await;
    let mut admin = server.client().await;
    let token = admin.login().await;
    let ids: Vec<String> = (0..SERVICERS).map(|i| format!("s{i:02}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let kf = account(&mut admin, "load", &id_refs, CAP, json!({"policy": "idle_first"})).await;

    let seen: Seen = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut agents = Vec::new();
    for id in &ids {
        let mut c = server.client().await;
        c.token = Some(token.clone());
        agents.push(tokio::spawn(servicer(c, id.clone(), kf.clone(), seen.clone(), stop.clone())));
    }
    let mut drivers = Vec::new();
    for ch_no in 0..CHANNELS {
        let mut c = server.client().await;
        c.token = Some(token.clone());
        drivers.push(tokio::spawn(driver(c, ch_no, kf.clone())));
    }
    let results = tokio::time::timeout(Duration::from_secs(90), async {
        let mut out = Vec::new();
        for d in drivers {
            out.push(d.await.expect("driver"));
        }
        out
    })
    .await
    .expect("all customers done within 90 s");
    stop.notify_waiters();
    let mut agent_errors = 0;
    for a in agents {
        agent_errors +=
            tokio::time::timeout(Duration::from_secs(10), a).await.expect("servicer stops").unwrap();
    }

    let total = CHANNELS * CUSTOMERS_PER_CHANNEL * MESSAGES;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), total, "every customer message reached a servicer");
    let dup: Vec<_> = seen.iter().filter(|(_, who)| who.len() != 1).collect();
    assert!(
        dup.is_empty(),
        "{} messages seen more than once, e.g. {:?}",
        dup.len(),
        &dup[..dup.len().min(5)]
    );
    for (replies, ended) in &results {
        assert_eq!(replies.len(), CUSTOMERS_PER_CHANNEL * MESSAGES, "every message answered");
        assert!(replies.values().all(|&n| n == 1), "a reply arrived twice");
        assert_eq!(*ended, CUSTOMERS_PER_CHANNEL, "every session ended once");
    }
    assert_eq!(agent_errors, 0, "no servicer action failed");
    let transferred: usize = seen
        .iter()
        .filter(|(id, _)| id.split('-').nth(1).unwrap().parse::<usize>().unwrap() % 4 == 0)
        .count();
    assert!(transferred > 0);
    let f = server.svc.with_state(|st, _| st.figures());
    assert_eq!(f.counters.customer_messages as usize, total);
    assert_eq!(f.counters.messages_routed as usize, total);
    assert_eq!(f.accounts[0].by_state, [0, 0, 0, 0], "nothing left open");
    assert!(f.counters.queued > 0, "the pool was used: {:?}", f.counters);
    server.stop().await.unwrap();
}
