//! API conformance of the reference service over HTTP: fields, errcodes,
//! state transitions and limits of every endpoint of both surfaces, the
//! access_token, authorization, and bad input.

mod service_util;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kfsim::service::{Config, ManualClock, Options, State};
use serde_json::{Value, json};
use service_util::{Client, Server, account, batch, channel, say};

const T0: u64 = 1_700_000_000_000_000;

async fn logged_in() -> (Server, Client) {
    let server = Server::empty().await;
    let mut c = server.client().await;
    c.login().await;
    (server, c)
}

fn code(v: &Value) -> i64 {
    v["errcode"].as_i64().unwrap_or_else(|| panic!("no errcode in {v}"))
}

#[tokio::test]
async fn gettoken_checks_credentials_and_returns_token_and_expiry() {
    let server = Server::empty().await;
    let mut c = server.client().await;
    let (_, v) = c.get("/cgi-bin/gettoken?corpid=kfsim&corpsecret=kfsim-secret").await;
    assert_eq!((code(&v), v["errmsg"].as_str()), (0, Some("ok")));
    assert_eq!(v["expires_in"], 7200);
    assert_eq!(v["access_token"].as_str().unwrap().len(), 32);
    for (q, want) in [
        ("corpid=other&corpsecret=kfsim-secret", 40013),
        ("corpid=kfsim&corpsecret=wrong", 40001),
        ("corpsecret=kfsim-secret", 41002),
        ("corpid=kfsim", 41004),
    ] {
        let (status, v) = c.get(&format!("/cgi-bin/gettoken?{q}")).await;
        assert_eq!((status, code(&v)), (200, want), "{q}: {v}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn every_call_needs_a_valid_unexpired_token() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = Server::start(State::new(Config::default()), clock.clone(), Options::default()).await;
    let mut c = server.client().await;
    let body = json!({"name": "a"});
    assert_eq!(code(&c.post("/cgi-bin/kf/account/add", body.clone()).await), 41001);
    assert_eq!(code(&c.post("/cgi-bin/kf/account/add?access_token=forged", body.clone()).await), 40014);
    assert_eq!(code(&c.post("/sim/customer/open_channel?access_token=forged", json!({})).await), 40014);
    assert_eq!(code(&c.get("/cgi-bin/kf/servicer/list?open_kfid=wk1&access_token=x").await.1), 40014);
    c.login().await;
    assert_eq!(code(&c.post("/cgi-bin/kf/account/add", body.clone()).await), 0);
    clock.advance(7200 * 1_000_000);
    assert_eq!(code(&c.post("/cgi-bin/kf/account/add", body.clone()).await), 42001);
    assert_eq!(code(&c.post("/sim/customer/batch", json!({"actions": []})).await), 42001);
    let old = c.token.clone();
    c.login().await;
    assert_ne!(c.token, old, "a new token after expiry");
    assert_eq!(code(&c.post("/cgi-bin/kf/account/add", json!({"name": "b"})).await), 0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn accounts_add_list_update_delete() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "售前", &[], 1, json!({"policy": "idle_first", "queue_limit": 3})).await;
    assert!(kf.starts_with("wk"));
    let list = c.ok("/cgi-bin/kf/account/list", json!({"offset": 0, "limit": 100})).await;
    let a = &list["account_list"][0];
    assert_eq!((a["open_kfid"].as_str(), a["name"].as_str()), (Some(kf.as_str()), Some("售前")));
    assert_eq!(a["manage_privilege"], true);
    assert_eq!(a["reception_rule"]["policy"], "idle_first");
    assert_eq!(a["reception_rule"]["queue_limit"], 3);
    let (status, got) = c.get("/cgi-bin/kf/account/list").await;
    assert_eq!((status, got["account_list"].as_array().map(Vec::len)), (200, Some(1)), "GET works too");
    c.ok("/cgi-bin/kf/account/update", json!({"open_kfid": kf, "name": "售后"})).await;
    let list = c.ok("/cgi-bin/kf/account/list", json!({})).await;
    assert_eq!(list["account_list"][0]["name"], "售后");
    assert_eq!(list["account_list"][0]["reception_rule"]["policy"], "idle_first", "an omitted field is kept");
    let bad = [
        ("/cgi-bin/kf/account/add", json!({"name": "x".repeat(17)}), 40058),
        ("/cgi-bin/kf/account/add", json!({"name": ""}), 40058),
        ("/cgi-bin/kf/account/add", json!({"name": "a", "media_id": "m".repeat(129)}), 40058),
        ("/cgi-bin/kf/account/add", json!({"name": "a", "reception_rule": {"policy": "random"}}), 47001),
        ("/cgi-bin/kf/account/list", json!({"limit": 101}), 40058),
        ("/cgi-bin/kf/account/list", json!({"offset": -1}), 40058),
        ("/cgi-bin/kf/account/del", json!({"open_kfid": "wk0000"}), 95004),
        ("/cgi-bin/kf/account/del", json!({"open_kfid": "nope"}), 95000),
        ("/cgi-bin/kf/account/update", json!({"open_kfid": kf, "name": "y".repeat(17)}), 40058),
    ];
    for (path, body, want) in bad {
        let v = c.post(path, body.clone()).await;
        assert_eq!(code(&v), want, "{path} {body}: {v}");
    }
    c.ok("/cgi-bin/kf/account/del", json!({"open_kfid": kf})).await;
    assert_eq!(code(&c.post("/cgi-bin/kf/account/del", json!({"open_kfid": kf})).await), 95004);
    let list = c.ok("/cgi-bin/kf/account/list", json!({})).await;
    assert_eq!(list["account_list"].as_array().unwrap().len(), 0);
    server.stop().await.unwrap();
}

/// A customer's first session is cached on the customer (c3e5089's
/// profile: the (account, customer) index cost two cache misses a
/// message). Deleting an account forgets its sessions; the freed session
/// and account slots are taken again by the next ones, and neither may be
/// mistaken for the customer's old session.
#[tokio::test]
async fn a_customer_keeps_its_sessions_apart_when_accounts_and_sessions_are_reused() {
    let server = Server::empty().await;
    let mut c = server.client().await;
    c.login().await;
    let kf1 = account(&mut c, "one", &["s1"], 10, json!({})).await;
    let kf2 = account(&mut c, "two", &["s2"], 10, json!({})).await;
    let ch = channel(&mut c).await;
    let r = batch(&mut c, &ch, vec![say("a", &kf1, "1", "x"), say("a", &kf2, "2", "x")]).await;
    let a = r[0]["external_userid"].clone();
    assert_eq!((&r[0]["servicer_userid"], &r[1]["servicer_userid"]), (&json!("s1"), &json!("s2")), "{r:?}");
    c.ok("/cgi-bin/kf/account/del", json!({"open_kfid": kf1})).await;
    let b = batch(&mut c, &ch, vec![say("b", &kf2, "3", "x")]).await;
    let kf3 = account(&mut c, "three", &["s3"], 10, json!({})).await;
    let r = batch(
        &mut c,
        &ch,
        vec![say("a", &kf3, "4", "x"), say("a", &kf2, "5", "x"), say("b", &kf2, "6", "x")],
    )
    .await;
    let who: Vec<(&Value, &Value)> =
        r.iter().map(|x| (&x["external_userid"], &x["servicer_userid"])).collect();
    let b = &b[0]["external_userid"];
    assert_ne!(&a, b);
    assert_eq!(who, [(&a, &json!("s3")), (&a, &json!("s2")), (b, &json!("s2"))], "{r:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn contact_ways_and_servicers() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "a", &[], 1, json!({})).await;
    let url = c.ok("/cgi-bin/kf/add_contact_way", json!({"open_kfid": kf, "scene": "live_1"})).await;
    assert!(url["url"].as_str().unwrap().contains("live_1"), "{url}");
    assert_eq!(
        code(&c.post("/cgi-bin/kf/add_contact_way", json!({"open_kfid": kf, "scene": "a b"})).await),
        40058
    );
    let long = "s".repeat(33);
    assert_eq!(
        code(&c.post("/cgi-bin/kf/add_contact_way", json!({"open_kfid": kf, "scene": long})).await),
        40058
    );

    let r = c
        .ok(
            "/cgi-bin/kf/servicer/add",
            json!({"open_kfid": kf, "userid_list": ["u1", "u2", "bad id"], "department_id_list": [7]}),
        )
        .await;
    let codes: Vec<i64> = r["result_list"].as_array().unwrap().iter().map(code).collect();
    assert_eq!(codes, [0, 0, 40003, 40058], "{r}");
    assert_eq!(r["result_list"][3]["department_id"], 7);
    let again = c.ok("/cgi-bin/kf/servicer/add", json!({"open_kfid": kf, "userid_list": ["u1"]})).await;
    assert!(again["result_list"][0]["errmsg"].as_str().unwrap().starts_with("ignored"));
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    assert_eq!(
        code(&c.post("/cgi-bin/kf/servicer/add", json!({"open_kfid": kf, "userid_list": many})).await),
        40058
    );
    assert_eq!(code(&c.post("/cgi-bin/kf/servicer/add", json!({"open_kfid": kf})).await), 40058);

    let (_, list) = c.get(&format!("/cgi-bin/kf/servicer/list?open_kfid={kf}")).await;
    let rows = list["servicer_list"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[0]["userid"].as_str(), rows[0]["status"].as_i64(), rows[0]["stop_type"].as_i64()),
        (Some("u1"), Some(0), Some(0))
    );
    c.ok("/sim/servicer/set_status", json!({"servicer_userid": "u2", "status": 1, "stop_type": 1})).await;
    let (_, list) = c.get(&format!("/cgi-bin/kf/servicer/list?open_kfid={kf}")).await;
    assert_eq!(
        (list["servicer_list"][1]["status"].as_i64(), list["servicer_list"][1]["stop_type"].as_i64()),
        (Some(1), Some(1))
    );
    let r = c.ok("/cgi-bin/kf/servicer/del", json!({"open_kfid": kf, "userid_list": ["u1", "zz"]})).await;
    let codes: Vec<i64> = r["result_list"].as_array().unwrap().iter().map(code).collect();
    assert_eq!(codes, [0, 95014]);
    assert_eq!(code(&c.get("/cgi-bin/kf/servicer/list?open_kfid=wk404").await.1), 95004);
    server.stop().await.unwrap();
}

/// The whole path: enter, message, routing, the servicer's queue, reply,
/// sync_msg, service_state, trans → 4 with a code, send_msg_on_event.
#[tokio::test]
async fn a_session_end_to_end_over_both_surfaces() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "a", &["s1"], 2, json!({})).await;
    c.ok("/cgi-bin/kf/add_contact_way", json!({"open_kfid": kf, "scene": "web"})).await;
    let ch = channel(&mut c).await;
    let enter = json!({"type": "enter", "customer": "alice", "open_kfid": kf, "scene": "web", "scene_param": "from%3Dad"});
    let image = json!({"type": "message", "customer": "alice", "open_kfid": kf, "client_msgid": "a-2", "msgtype": "image", "image": {"media_id": "MID"}});
    let r = batch(&mut c, &ch, vec![enter, say("alice", &kf, "a-1", "hello"), image]).await;
    let ext = r[0]["external_userid"].as_str().unwrap().to_owned();
    assert!(ext.starts_with("wm"));
    assert_eq!(r[0]["service_state"], 4, "entering alone starts nothing");
    assert_eq!((r[1]["service_state"].as_i64(), r[1]["servicer_userid"].as_str()), (Some(3), Some("s1")));
    assert!(r[1]["msgid"].is_string());

    let sync = c.ok("/cgi-bin/kf/sync_msg", json!({"open_kfid": kf, "limit": 1000})).await;
    let msgs = sync["msg_list"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "{sync}");
    assert_eq!((msgs[0]["origin"].as_i64(), msgs[0]["msgtype"].as_str()), (Some(4), Some("event")));
    assert_eq!(msgs[0]["event"]["event_type"], "enter_session");
    assert_eq!(msgs[0]["event"]["scene"], "web");
    assert_eq!(msgs[0]["event"]["scene_param"], "from%3Dad");
    assert!(msgs[0]["event"]["welcome_code"].is_string());
    assert!(msgs[0].get("external_userid").is_none(), "events carry ids inside `event`");
    assert_eq!((msgs[1]["origin"].as_i64(), msgs[1]["text"]["content"].as_str()), (Some(3), Some("hello")));
    assert_eq!(
        (msgs[1]["open_kfid"].as_str(), msgs[1]["external_userid"].as_str()),
        (Some(kf.as_str()), Some(ext.as_str()))
    );
    assert!(msgs[1]["send_time"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(msgs[2]["image"]["media_id"], "MID");
    assert_eq!(sync["has_more"], 0);

    let page = c.ok("/cgi-bin/kf/sync_msg", json!({"open_kfid": kf, "limit": 1})).await;
    assert_eq!((page["has_more"].as_i64(), page["msg_list"].as_array().unwrap().len()), (Some(1), 1));
    let rest = c.ok("/cgi-bin/kf/sync_msg", json!({"open_kfid": kf, "cursor": page["next_cursor"]})).await;
    assert_eq!(rest["msg_list"].as_array().unwrap().len(), 2);
    // a limit of 0 is the default, as Go SDKs send a limit not set (it was 40058)
    let zero = c.ok("/cgi-bin/kf/sync_msg", json!({"open_kfid": kf, "limit": 0})).await;
    assert_eq!(zero["msg_list"].as_array().unwrap().len(), 3, "{zero}");
    let list = c.ok("/cgi-bin/kf/account/list", json!({"offset": 0, "limit": 0})).await;
    assert_eq!(list["account_list"].as_array().unwrap().len(), 1, "{list}");

    let pulled = c.ok("/sim/servicer/pull", json!({"servicer_userid": "s1"})).await;
    let ev = pulled["event_list"].as_array().unwrap();
    assert_eq!(ev.len(), 3, "{pulled}");
    assert_eq!((ev[0]["kind"].as_str(), ev[0]["change"].as_str()), (Some("session"), Some("assigned")));
    assert_eq!((ev[1]["kind"].as_str(), ev[1]["client_msgid"].as_str()), (Some("message"), Some("a-1")));
    assert_eq!(ev[1]["external_userid"], ext.as_str());
    assert_eq!(ev[2]["msgtype"], "image");

    let reply = json!({"servicer_userid": "s1", "open_kfid": kf, "external_userid": ext, "in_reply_to": "a-1",
                       "msgtype": "text", "text": {"content": "hi alice"}});
    let sent = c.ok("/sim/servicer/reply", reply).await;
    let st = c.ok("/cgi-bin/kf/service_state/get", json!({"open_kfid": kf, "external_userid": ext})).await;
    assert_eq!((st["service_state"].as_i64(), st["servicer_userid"].as_str()), (Some(3), Some("s1")));

    let sync = c.ok("/cgi-bin/kf/sync_msg", json!({"open_kfid": kf, "cursor": sync["next_cursor"]})).await;
    let m = &sync["msg_list"][0];
    assert_eq!((m["origin"].as_i64(), m["servicer_userid"].as_str()), (Some(5), Some("s1")));
    assert_eq!(m["msgid"], sent["msgid"]);

    let trans = c
        .ok(
            "/cgi-bin/kf/service_state/trans",
            json!({"open_kfid": kf, "external_userid": ext, "service_state": 4}),
        )
        .await;
    let end_code = trans["msg_code"].as_str().unwrap().to_owned();
    let bye = json!({"code": end_code, "msgtype": "text", "text": {"content": "bye"}});
    c.ok("/cgi-bin/kf/send_msg_on_event", bye.clone()).await;
    assert_eq!(code(&c.post("/cgi-bin/kf/send_msg_on_event", bye).await), 95007, "single use");

    let got = c.ok("/sim/customer/pull", json!({"channel_id": ch})).await;
    let ev = got["event_list"].as_array().unwrap();
    let kinds: Vec<(&str, &str)> = ev
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["change"].as_str().or(e["sender"].as_str()).unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("session", "assigned"), ("message", "servicer"), ("session", "ended"), ("message", "api")]
    );
    assert_eq!(ev[1]["in_reply_to"], "a-1");
    assert_eq!(ev[1]["customer"], "alice");
    assert_eq!(ev[2]["reason"], "api");
    let bc = c
        .ok(
            "/cgi-bin/kf/customer/batchget",
            json!({"external_userid_list": [ext, "wmnobody"], "need_enter_session_context": 1}),
        )
        .await;
    assert_eq!(bc["customer_list"][0]["external_userid"], ext.as_str());
    assert_eq!(bc["customer_list"][0]["enter_session_context"]["scene"], "web");
    assert_eq!(bc["invalid_external_userid"], json!(["wmnobody"]));
    server.stop().await.unwrap();
}

/// A list that names a customer twice got that customer twice. WeCom
/// documents the list, not what a repeated id does; kfsim answers each
/// id once, in the order first named, known or not.
#[tokio::test]
async fn a_customer_named_twice_in_batchget_is_listed_once() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "a", &["s1"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    let r = batch(&mut c, &ch, vec![say("alice", &kf, "a-1", "hi"), say("bob", &kf, "b-1", "hi")]).await;
    let (alice, bob) = (r[0]["external_userid"].as_str().unwrap(), r[1]["external_userid"].as_str().unwrap());
    let ids = json!([bob, "wmnobody", alice, bob, "wmnobody", "wmother", alice]);
    let got = c.ok("/cgi-bin/kf/customer/batchget", json!({"external_userid_list": ids})).await;
    let listed: Vec<&str> = got["customer_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["external_userid"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [bob, alice], "{got}");
    assert_eq!(got["invalid_external_userid"], json!(["wmnobody", "wmother"]), "{got}");
    server.stop().await.unwrap();
}

/// A customer batch's `channel_end` is the `seq` its channel's next event
/// gets: the events the batch caused, and those before, are below it;
/// later ones are not. So a driver whose `leave` was refused (40058)
/// because an agent had just taken the session can tell that the
/// assignment it pulls later was already queued: its seq is below the end.
#[tokio::test]
async fn a_customer_batch_says_where_its_channel_ends() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "a", &["s1"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    let run = |actions: Vec<Value>| json!({"channel_id": ch, "actions": actions});
    let end_of = |v: &Value| v["channel_end"].as_u64().unwrap_or_else(|| panic!("no channel_end in {v}"));
    // alice is assigned to s1 (its one slot), bob waits
    let a = c.ok("/sim/customer/batch", run(vec![say("alice", &kf, "a-1", "hi")])).await;
    let alice = a["results"][0]["external_userid"].as_str().unwrap().to_owned();
    let b = c.ok("/sim/customer/batch", run(vec![say("bob", &kf, "b-1", "hi")])).await;
    assert_eq!(b["results"][0]["service_state"], 2, "{b}");
    let empty = c.ok("/sim/customer/batch", run(vec![])).await;
    assert_eq!(end_of(&empty), end_of(&b), "a batch of nothing queues nothing");
    // alice's session ends: bob is assigned, and his leave is refused
    let end = json!({"open_kfid": kf, "external_userid": alice, "service_state": 4});
    c.ok("/cgi-bin/kf/service_state/trans", end).await;
    let leave = json!({"type": "leave", "customer": "bob", "open_kfid": kf});
    let refused = c.ok("/sim/customer/batch", run(vec![leave])).await;
    assert_eq!(refused["results"][0]["errcode"], 40058, "{refused}");
    let later = c.ok("/sim/customer/batch", run(vec![say("carol", &kf, "c-1", "hi")])).await;

    let pulled = c.ok("/sim/customer/pull", json!({"channel_id": ch})).await;
    let seq_of = |who: &str, change: &str| {
        let ev = pulled["event_list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["customer"] == who && e["change"] == change);
        ev.unwrap_or_else(|| panic!("no {change} of {who} in {pulled}"))["seq"].as_u64().unwrap()
    };
    let (a_assigned, b_queued) = (seq_of("alice", "assigned"), seq_of("bob", "queued"));
    let (b_assigned, c_queued) = (seq_of("bob", "assigned"), seq_of("carol", "queued"));
    assert!(a_assigned < end_of(&a) && end_of(&a) <= b_queued, "{a} {pulled}");
    assert!(b_queued < end_of(&b), "{b} {pulled}");
    assert!(b_assigned < end_of(&refused), "the assignment that refused the leave came before: {pulled}");
    assert!(end_of(&refused) <= c_queued && c_queued < end_of(&later), "{later} {pulled}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn send_msg_states_and_limits() {
    let (server, mut c) = logged_in().await;
    let bot = account(&mut c, "bot", &[], 1, json!({})).await;
    let human = account(&mut c, "human", &["s1"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    let r = batch(&mut c, &ch, vec![say("bob", &bot, "b1", "q"), say("bob", &human, "b2", "q")]).await;
    let ext = r[0]["external_userid"].as_str().unwrap().to_owned();
    assert_eq!((r[0]["service_state"].as_i64(), r[1]["service_state"].as_i64()), (Some(0), Some(3)));
    let send = |kf: &str, i: usize| json!({"touser": ext, "open_kfid": kf, "msgtype": "text", "text": {"content": format!("answer {i}")}});
    assert_eq!(code(&c.post("/cgi-bin/kf/send_msg", send(&human, 0)).await), 95018, "state 3");
    for i in 0..5 {
        let v = c.ok("/cgi-bin/kf/send_msg", send(&bot, i)).await;
        assert!(v["msgid"].is_string());
    }
    assert_eq!(code(&c.post("/cgi-bin/kf/send_msg", send(&bot, 5)).await), 95001, "5 per customer message");
    let st = c.ok("/cgi-bin/kf/service_state/get", json!({"open_kfid": bot, "external_userid": ext})).await;
    assert_eq!(st["service_state"], 1, "answered by the API: 智能助手");
    batch(&mut c, &ch, vec![say("bob", &bot, "b3", "more")]).await;
    let mut with_id = send(&bot, 6);
    with_id["msgid"] = json!("my-id_1");
    assert_eq!(c.ok("/cgi-bin/kf/send_msg", with_id.clone()).await["msgid"], "my-id_1");
    assert_eq!(code(&c.post("/cgi-bin/kf/send_msg", with_id).await), 40058, "msgid unique in the account");
    // given, a msgid must not be empty (WeCom's rule); `null` is left out
    let mut empty_id = send(&bot, 6);
    empty_id["msgid"] = json!("");
    let v = c.post("/cgi-bin/kf/send_msg", empty_id).await;
    assert!(code(&v) == 40058 && v["errmsg"].as_str().unwrap().contains("`msgid` unexpected empty"), "{v}");
    let mut null_id = send(&bot, 6);
    null_id["msgid"] = Value::Null;
    assert!(c.ok("/cgi-bin/kf/send_msg", null_id).await["msgid"].is_string());
    let mut card = send(&bot, 7);
    card["msgtype"] = json!("business_card");
    assert_eq!(code(&c.post("/cgi-bin/kf/send_msg", card).await), 40008);
    let ca = json!({"touser": ext, "open_kfid": bot, "msgtype": "ca_link", "ca_link": {"link_url": "https://work.weixin.qq.com/ca/x"}});
    c.ok("/cgi-bin/kf/send_msg", ca).await;
    let long =
        json!({"touser": ext, "open_kfid": bot, "msgtype": "text", "text": {"content": "x".repeat(2049)}});
    assert_eq!(code(&c.post("/cgi-bin/kf/send_msg", long).await), 40058);
    let menu = json!({"touser": ext, "open_kfid": bot, "msgtype": "msgmenu", "msgmenu": {"head_content": "h", "list": [{"type": "click", "click": {"id": "1", "content": "yes"}}]}});
    c.ok("/cgi-bin/kf/send_msg", menu).await;
    // the sync log does not carry messages sent through the API
    let sync = c.ok("/cgi-bin/kf/sync_msg", json!({"open_kfid": bot})).await;
    assert!(sync["msg_list"].as_array().unwrap().iter().all(|m| m["origin"] == 3));
    server.stop().await.unwrap();
}

/// A client's msgid is unique in the account whichever API sent it: a
/// `send_msg_on_event` took one a `send_msg` had used (and the other way
/// round), and the customer got two messages of one id.
#[tokio::test]
async fn a_msgid_is_unique_in_the_account_across_send_msg_and_send_msg_on_event() {
    let (server, mut c) = logged_in().await;
    let bot = account(&mut c, "bot", &[], 1, json!({})).await;
    let ch = channel(&mut c).await;
    let r = batch(&mut c, &ch, vec![say("bob", &bot, "b1", "q")]).await;
    let ext = r[0]["external_userid"].as_str().unwrap().to_owned();
    let text = json!({"content": "a"});
    let send =
        |id: &str| json!({"touser": ext, "open_kfid": bot, "msgid": id, "msgtype": "text", "text": text});
    c.ok("/cgi-bin/kf/send_msg", send("first")).await;
    let trans = json!({"open_kfid": bot, "external_userid": ext, "service_state": 4});
    let end_code =
        c.ok("/cgi-bin/kf/service_state/trans", trans).await["msg_code"].as_str().unwrap().to_owned();
    let on_event = |id: &str| json!({"code": end_code, "msgid": id, "msgtype": "text", "text": text});
    let v = c.post("/cgi-bin/kf/send_msg_on_event", on_event("first")).await;
    assert!(code(&v) == 40058 && v["errmsg"].as_str().unwrap().contains("already used"), "{v}");
    // refused, the code is not used up
    assert_eq!(c.ok("/cgi-bin/kf/send_msg_on_event", on_event("second")).await["msgid"], "second");
    batch(&mut c, &ch, vec![say("bob", &bot, "b2", "again")]).await;
    assert_eq!(code(&c.post("/cgi-bin/kf/send_msg", send("second")).await), 40058);
    let got = c.ok("/sim/customer/pull", json!({"channel_id": ch})).await;
    let ids: Vec<&str> = got["event_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["sender"] == "api")
        .map(|e| e["msgid"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["first", "second"]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn trans_transitions_and_servicer_availability() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "a", &["s1", "s2"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    c.ok("/sim/servicer/set_status", json!({"servicer_userid": "s2", "status": 1})).await;
    let r = batch(&mut c, &ch, vec![say("c1", &kf, "1", "x"), say("c2", &kf, "2", "y")]).await;
    let (e1, e2) = (r[0]["external_userid"].clone(), r[1]["external_userid"].clone());
    assert_eq!((r[0]["service_state"].as_i64(), r[1]["service_state"].as_i64()), (Some(3), Some(2)));
    let trans = |ext: &Value, s: i64, who: Option<&str>| {
        let mut b = json!({"open_kfid": kf, "external_userid": ext, "service_state": s});
        if let Some(w) = who {
            b["servicer_userid"] = json!(w);
        }
        b
    };
    let cases = [
        (trans(&e2, 3, Some("s2")), 95014),     // 停止接待
        (trans(&e2, 3, Some("s1")), 95014),     // at 接待上限
        (trans(&e2, 3, Some("nobody")), 95014), // not a servicer
        (trans(&e2, 3, None), 40058),           // servicer_userid required
        (trans(&e2, 1, None), 95016),           // 2 → 1
        (trans(&e2, 0, None), 95016),
        (trans(&e1, 2, None), 95016), // 3 → 2 is not documented
        (trans(&e1, 7, None), 40058),
        (json!({"open_kfid": kf, "external_userid": e1}), 40058),
        (json!({"open_kfid": kf, "external_userid": "wmghost", "service_state": 4}), 40058),
        (json!({"open_kfid": "wk0", "external_userid": e1, "service_state": 4}), 95004),
    ];
    for (body, want) in cases {
        let v = c.post("/cgi-bin/kf/service_state/trans", body.clone()).await;
        assert_eq!(code(&v), want, "{body}: {v}");
    }
    c.ok("/sim/servicer/set_status", json!({"servicer_userid": "s2", "status": 0})).await;
    let st = c.ok("/cgi-bin/kf/service_state/get", json!({"open_kfid": kf, "external_userid": e2})).await;
    assert_eq!(
        (st["service_state"].as_i64(), st["servicer_userid"].as_str()),
        (Some(3), Some("s2")),
        "s2 back: the pool is served"
    );
    let v = c.ok("/cgi-bin/kf/service_state/trans", trans(&e1, 4, None)).await;
    assert!(v["msg_code"].is_string());
    assert_eq!(
        code(&c.post("/cgi-bin/kf/service_state/trans", trans(&e1, 3, Some("s1"))).await),
        95016,
        "4 → 3 is not for the API"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn servicers_may_touch_only_sessions_assigned_to_them() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "a", &["s1", "s2"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    let r = batch(&mut c, &ch, vec![say("c1", &kf, "1", "x")]).await;
    let ext = r[0]["external_userid"].as_str().unwrap().to_owned();
    assert_eq!(r[0]["servicer_userid"], "s1");
    let act = |who: &str| json!({"servicer_userid": who, "open_kfid": kf, "external_userid": ext, "msgtype": "text", "text": {"content": "x"}});
    for path in ["/sim/servicer/reply", "/sim/servicer/end", "/sim/servicer/transfer"] {
        assert_eq!(code(&c.post(path, act("s2")).await), 48002, "{path}");
        assert_eq!(code(&c.post(path, act("ghost")).await), 95014, "{path}");
    }
    let pulled = c.ok("/sim/servicer/pull", json!({"servicer_userid": "s2"})).await;
    assert!(pulled["event_list"].as_array().unwrap().is_empty(), "s2 sees nothing of s1's session");
    let b = c
        .ok("/sim/servicer/batch", json!({"actions": [
            {"type": "reply", "servicer_userid": "s1", "open_kfid": kf, "external_userid": ext, "msgtype": "text", "text": {"content": "ok"}},
            {"type": "transfer", "servicer_userid": "s1", "open_kfid": kf, "external_userid": ext, "to_servicer_userid": "s2"},
            {"type": "reply", "servicer_userid": "s1", "open_kfid": kf, "external_userid": ext, "msgtype": "text", "text": {"content": "late"}},
            {"type": "end", "servicer_userid": "s2", "open_kfid": kf, "external_userid": ext},
            {"type": "dance", "servicer_userid": "s2"},
        ]}))
        .await;
    let codes: Vec<i64> = b["results"].as_array().unwrap().iter().map(code).collect();
    assert_eq!(codes, [0, 0, 48002, 0, 40058], "{b}");
    assert_eq!(b["results"][1]["service_state"], 3);
    // a customer only sees its own channel
    let other = channel(&mut c).await;
    let mine = c.ok("/sim/customer/pull", json!({"channel_id": ch})).await;
    let theirs = c.ok("/sim/customer/pull", json!({"channel_id": other})).await;
    assert!(!mine["event_list"].as_array().unwrap().is_empty());
    assert!(theirs["event_list"].as_array().unwrap().is_empty());
    assert_eq!(code(&c.post("/sim/customer/pull", json!({"channel_id": "chforged"})).await), 40058);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_input_gets_wecom_errors_never_a_500() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "a", &["s1"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    let raw_cases: [(&str, &[u8], u16, i64); 6] = [
        ("/cgi-bin/kf/account/add", b"{\"name\": ", 200, 47001),
        ("/cgi-bin/kf/account/add", b"[1,2]", 200, 47001),
        ("/cgi-bin/kf/account/add", b"\xff\xfe", 200, 47001),
        ("/cgi-bin/kf/account/add", br#"{"name": 5}"#, 200, 47001),
        ("/cgi-bin/kf/sync_msg", br#"{"open_kfid": ["x"]}"#, 200, 47001),
        ("/sim/customer/batch", br#"{"channel_id": 1, "actions": []}"#, 200, 47001),
    ];
    for (path, body, status, want) in raw_cases {
        let (s, bytes) = c.raw("POST", path, body.to_vec()).await;
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!((s, code(&v)), (status, want), "{path} {body:?}: {v}");
        if want == 47001 {
            assert!(v["errmsg"].as_str().unwrap().starts_with("Warning: wrong json format."), "{v}");
        }
    }
    let cases = [
        // (without open_kfid it reads every account: issue 10; a bad cursor is still refused)
        ("/cgi-bin/kf/sync_msg", json!({"cursor": "bogus"}), 40058),
        ("/cgi-bin/kf/sync_msg", json!({"open_kfid": "wkunknown"}), 95004),
        ("/cgi-bin/kf/sync_msg", json!({"open_kfid": kf, "limit": 1001}), 40058),
        ("/cgi-bin/kf/sync_msg", json!({"open_kfid": kf, "cursor": "bogus"}), 40058),
        ("/cgi-bin/kf/sync_msg", json!({"open_kfid": kf, "cursor": "c999"}), 40058),
        ("/cgi-bin/kf/sync_msg", json!({"open_kfid": kf, "cursor": "c".repeat(65)}), 40058),
        (
            "/cgi-bin/kf/send_msg",
            json!({"touser": "wmnobody", "open_kfid": kf, "msgtype": "text", "text": {"content": "x"}}),
            40058,
        ),
        (
            "/cgi-bin/kf/send_msg",
            json!({"open_kfid": kf, "msgtype": "text", "text": {"content": "x"}}),
            40058,
        ),
        ("/cgi-bin/kf/send_msg", json!({"touser": "wm1", "open_kfid": kf, "msgtype": "text"}), 40058),
        ("/cgi-bin/kf/send_msg", json!({"touser": "wm1", "open_kfid": kf, "msgtype": "sticker"}), 40008),
        ("/cgi-bin/kf/send_msg_on_event", json!({"msgtype": "text", "text": {"content": "x"}}), 40058),
        (
            "/cgi-bin/kf/send_msg_on_event",
            json!({"code": "zz", "msgtype": "text", "text": {"content": "x"}}),
            95007,
        ),
        ("/cgi-bin/kf/customer/batchget", json!({"external_userid_list": []}), 40058),
        ("/cgi-bin/kf/service_state/get", json!({"open_kfid": kf, "external_userid": "wmx"}), 40058),
        ("/cgi-bin/kf/service_state/get", json!({"open_kfid": "wk0", "external_userid": "wmx"}), 95004),
        ("/sim/customer/pull", json!({"channel_id": ch, "limit": 0}), 40058),
        ("/sim/customer/pull", json!({"channel_id": ch, "timeout_ms": 600000}), 40058),
        ("/sim/customer/open_channel", json!({"queue_cap": 0}), 40058),
        ("/sim/customer/open_channel", json!({"queue_cap": 2_000_000}), 40058),
        ("/sim/servicer/set_status", json!({"servicer_userid": "s1", "status": 9}), 40058),
        ("/sim/servicer/set_status", json!({"servicer_userid": "s1"}), 40058),
        ("/sim/servicer/pull", json!({"servicer_userid": "ghost"}), 95014),
    ];
    for (path, body, want) in cases {
        let v = c.post(path, body.clone()).await;
        assert_eq!(code(&v), want, "{path} {body}: {v}");
    }
    // per-action errors in a batch do not stop the others
    let actions = json!([
        say("c1", &kf, "1", "ok"),
        {"type": "message", "customer": "c1", "open_kfid": kf, "msgtype": "text", "text": {"content": 5}},
        {"type": "message", "customer": "bad handle", "open_kfid": kf, "msgtype": "text", "text": {"content": "x"}},
        {"type": "message", "customer": "c2", "open_kfid": "wk0", "msgtype": "text", "text": {"content": "x"}},
        {"type": "message", "customer": "c2", "open_kfid": kf, "msgtype": "msgmenu", "msgmenu": {}},
        {"type": "enter", "customer": "c2", "open_kfid": kf, "scene": "unregistered"},
        {"type": "fly", "customer": "c2", "open_kfid": kf},
        {"customer": "c2"},
        say("c1", &kf, "2", "still ok"),
    ]);
    let v = c.ok("/sim/customer/batch", json!({"channel_id": ch, "actions": actions})).await;
    let codes: Vec<i64> = v["results"].as_array().unwrap().iter().map(code).collect();
    assert_eq!(codes, [0, 47001, 40058, 95004, 40008, 40058, 40058, 40058, 0], "{v}");
    let too_many: Vec<Value> = (0..1001).map(|i| say("c", &kf, &i.to_string(), "x")).collect();
    assert_eq!(
        code(&c.post("/sim/customer/batch", json!({"channel_id": ch, "actions": too_many})).await),
        40058
    );
    // refused at the 1001st action, before the rest is read: the body
    // after it (here broken JSON) is never reached
    let body = json!({"channel_id": ch, "actions": too_many}).to_string();
    let cut = format!("{}, {{\"type\": ", &body[..body.len() - 2]);
    let (status, answer) = c.raw("POST", "/sim/customer/batch", cut.into_bytes()).await;
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!((status, code(&v)), (200, 40058), "{v}");
    assert!(v["errmsg"].as_str().unwrap().contains("at most 1000 actions"), "{v}");
    // a channel the service does not know: nothing in the batch runs
    let v = c
        .post("/sim/customer/batch", json!({"channel_id": "nope", "actions": [say("c", &kf, "1", "x")]}))
        .await;
    assert_eq!(code(&v), 40058, "{v}");
    assert!(v["errmsg"].as_str().unwrap().contains("unknown channel_id"), "{v}");
    assert!(v.get("results").is_none(), "{v}");
    server.stop().await.unwrap();
}

/// `null` for an optional number, flag or list is absent, as it is for a
/// string or an `Option` field: `"voice_format": null` was 47001 where
/// `"cursor": null` was taken. A required list given `null` is missing
/// (40058), as an empty string is; a value of the wrong type stays 47001.
#[tokio::test]
async fn a_null_number_or_list_is_absent_as_a_null_string_is() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "kf", &["s1"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    let ext = batch(&mut c, &ch, vec![say("bob", &kf, "b1", "q")]).await[0]["external_userid"].clone();
    let sync =
        c.ok("/cgi-bin/kf/sync_msg", json!({"open_kfid": kf, "cursor": null, "voice_format": null})).await;
    assert_eq!(sync["msg_list"].as_array().unwrap().len(), 1, "{sync}");
    let got = c
        .ok(
            "/cgi-bin/kf/customer/batchget",
            json!({"external_userid_list": [ext], "need_enter_session_context": null}),
        )
        .await;
    assert_eq!(got["customer_list"][0]["external_userid"], ext, "{got}");
    let add = json!({"open_kfid": kf, "userid_list": ["s2"], "department_id_list": null});
    assert_eq!(c.ok("/cgi-bin/kf/servicer/add", add).await["result_list"][0]["errcode"], 0);
    c.ok("/sim/servicer/set_status", json!({"servicer_userid": "s2", "status": 1, "stop_type": null})).await;
    for (path, body, want) in [
        ("/cgi-bin/kf/customer/batchget", json!({"external_userid_list": null}), 40058),
        ("/cgi-bin/kf/servicer/add", json!({"open_kfid": kf, "userid_list": null}), 40058),
        ("/sim/servicer/open_channel", json!({"servicer_userids": null}), 40058),
        ("/cgi-bin/kf/sync_msg", json!({"open_kfid": kf, "voice_format": "1"}), 47001),
        ("/cgi-bin/kf/servicer/add", json!({"open_kfid": kf, "userid_list": "s3"}), 47001),
    ] {
        let v = c.post(path, body.clone()).await;
        assert_eq!(code(&v), want, "{path} {body}: {v}");
    }
    server.stop().await.unwrap();
}

/// serde's messages for a value of the wrong type named the Rust type
/// being read (`expected struct SyncMsg`, `expected u32`). Every endpoint
/// says what it expected in JSON's words, with serde's line and column,
/// under 47001.
#[tokio::test]
async fn a_wrong_type_is_worded_in_json_terms() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "a", &["s1"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    let cases: [(&str, &[u8], &str); 12] = [
        ("/cgi-bin/kf/sync_msg", b"5", "expected a JSON object at line 1 column 1"),
        ("/cgi-bin/kf/account/add", br#"{"name": 5}"#, "invalid type: the number 5, expected a string"),
        ("/cgi-bin/kf/account/list", br#"{"limit": "10"}"#, "expected an integer"),
        ("/cgi-bin/kf/sync_msg", br#"{"open_kfid": ["x"]}"#, "invalid type: a JSON array, expected a string"),
        (
            "/cgi-bin/kf/send_msg",
            br#"{"touser": "wm1", "msgtype": "text", "text": "x"}"#,
            "expected a JSON object",
        ),
        (
            "/cgi-bin/kf/send_msg",
            br#"{"msgtype": "location", "location": {"latitude": "x"}}"#,
            "expected a number",
        ),
        (
            "/cgi-bin/kf/servicer/add",
            br#"{"max_concurrent": -1}"#,
            "expected an integer from 0 to 4294967295",
        ),
        ("/cgi-bin/kf/servicer/add", br#"{"userid_list": "s1"}"#, "expected a JSON array"),
        ("/cgi-bin/kf/account/add", br#"{"reception_rule": {"api_managed": 1}}"#, "expected true or false"),
        ("/sim/customer/open_channel", br#"{"queue_cap": true}"#, "invalid type: true, expected an integer"),
        (
            "/sim/customer/pull",
            br#"{"timeout_ms": 1.5}"#,
            "invalid type: the number 1.5, expected an integer",
        ),
        (
            "/sim/servicer/set_status",
            br#"{"status": {}}"#,
            "invalid type: a JSON object, expected an integer",
        ),
    ];
    // words of Rust, not of JSON
    let rust = ["struct", "enum", "u32", "i64", "u64", "f64", "String", "Vec", "Option", "sequence", "map"];
    for (path, body, want) in cases {
        let (_, bytes) = c.raw("POST", path, body.to_vec()).await;
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let msg = v["errmsg"].as_str().unwrap();
        assert_eq!(code(&v), 47001, "{path}: {v}");
        assert!(msg.starts_with("Warning: wrong json format."), "{path}: {msg}");
        assert!(msg.contains(want), "{path}: {msg:?} lacks {want:?}");
        assert!(msg.contains(" at line 1 column "), "{path}: {msg}");
        for word in rust {
            assert!(!msg.contains(word), "{path}: {msg:?} says {word:?}");
        }
    }
    // a batch action's own error too
    let bad = json!({"type": "message", "customer": "c1", "open_kfid": kf, "msgtype": "text", "text": {"content": 5}});
    let v = c.ok("/sim/customer/batch", json!({"channel_id": ch, "actions": [bad]})).await;
    let r = &v["results"][0];
    assert_eq!(code(r), 47001, "{v}");
    assert!(r["errmsg"].as_str().unwrap().contains("invalid type: the number 5, expected a string"), "{v}");
    server.stop().await.unwrap();
}

/// serde reads a struct from an array by position, so `["name", "media"]`
/// made an account. WeCom answers 47001 to a body that is not an object;
/// so does every endpoint, and a batch refuses an action that is not an
/// object, alone. An empty body is still `{}`.
#[tokio::test]
async fn a_body_or_an_action_that_is_not_an_object_is_refused() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "a", &["s1"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    let pull = format!(r#"["{ch}", "", "", 10, 0]"#);
    let cases: [(&str, &[u8]); 8] = [
        ("/cgi-bin/kf/account/add", br#"["positional", "m"]"#),
        ("/cgi-bin/kf/account/list", b"[0, 10]"),
        ("/cgi-bin/kf/account/list", b"  \n [0, 10]"),
        ("/cgi-bin/kf/sync_msg", br#"["", "", 10, 0, ""]"#),
        ("/sim/customer/pull", pull.as_bytes()),
        ("/sim/customer/close_channel", b"[]"),
        ("/sim/customer/batch", b"[]"),
        ("/cgi-bin/kf/account/list", b"\"x\""),
    ];
    for (path, body) in cases {
        let (status, bytes) = c.raw("POST", path, body.to_vec()).await;
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!((status, code(&v)), (200, 47001), "{path} {:?}: {v}", String::from_utf8_lossy(body));
        assert!(v["errmsg"].as_str().unwrap().contains("expected a JSON object"), "{path}: {v}");
    }
    let (_, list) = c.get("/cgi-bin/kf/account/list").await;
    assert_eq!(list["account_list"].as_array().unwrap().len(), 1, "no account was made: {list}");
    // the channel was not closed by `[]`
    c.ok("/sim/customer/pull", json!({"channel_id": ch})).await;
    for empty in [&b""[..], b" \r\n\t"] {
        let (_, bytes) = c.raw("POST", "/cgi-bin/kf/account/list", empty.to_vec()).await;
        assert_eq!(code(&serde_json::from_slice(&bytes).unwrap()), 0, "an empty body is {{}}");
    }
    // an action by position, alone and among well-formed ones
    let mut positional = json!(["message", "c9", kf, "", "", "p1", "text", {"content": "by position"}]);
    positional.as_array_mut().unwrap().extend(std::iter::repeat_n(Value::Null, 9));
    for actions in [json!([positional.clone()]), json!([say("c1", &kf, "1", "ok"), positional, 5])] {
        let v = c.ok("/sim/customer/batch", json!({"channel_id": ch, "actions": actions})).await;
        let results = v["results"].as_array().unwrap();
        let refused: Vec<&Value> = results.iter().filter(|r| code(r) != 0).collect();
        assert_eq!(refused.len(), actions.as_array().unwrap().len().min(2), "{v}");
        for r in refused {
            assert_eq!(code(r), 47001, "{v}");
            assert!(r["errmsg"].as_str().unwrap().contains("expected a JSON object"), "{v}");
        }
    }
    let mut by_position = json!(["end", "s1", kf, "wmnobody"]);
    by_position.as_array_mut().unwrap().extend(std::iter::repeat_n(Value::Null, 15));
    let v = c.ok("/sim/servicer/batch", json!({"actions": [by_position]})).await;
    assert_eq!(code(&v["results"][0]), 47001, "{v}");
    server.stop().await.unwrap();
}

/// `"policy": null` (or 5, or true) in a `reception_rule` was answered
/// with serde_json's bare "expected value", a syntax error's words for a
/// body that is valid JSON. A policy that is not one of the names is 47001
/// naming them, whatever its type, as an unknown name already was.
#[tokio::test]
async fn a_policy_that_is_no_policy_name_is_refused_naming_the_policies() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "a", &[], 1, json!({})).await;
    let names = "expected one of `round_robin`, `idle_first`, `fill_first`";
    for policy in [
        json!(null),
        json!(5),
        json!(true),
        json!(["idle_first"]),
        json!({"idle_first": null}),
        json!("random"),
    ] {
        let rule = json!({"policy": policy});
        for (path, body) in [
            ("/cgi-bin/kf/account/add", json!({"name": "b", "reception_rule": rule})),
            ("/cgi-bin/kf/account/update", json!({"open_kfid": kf, "reception_rule": rule})),
        ] {
            let v = c.post(path, body).await;
            let msg = v["errmsg"].as_str().unwrap();
            assert_eq!(code(&v), 47001, "{path} {policy}: {v}");
            assert!(msg.contains(names) && !msg.contains("expected value"), "{path} {policy}: {msg}");
        }
    }
    c.ok("/cgi-bin/kf/account/update", json!({"open_kfid": kf, "reception_rule": {"policy": "fill_first"}}))
        .await;
    let list = c.ok("/cgi-bin/kf/account/list", json!({})).await;
    assert_eq!(list["account_list"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["account_list"][0]["reception_rule"]["policy"], "fill_first", "{list}");
    server.stop().await.unwrap();
}

/// serde read a struct inside a body from an array as well, by position:
/// `"text": ["hi"]` was sent as `{"content": "hi"}`, `"reception_rule":
/// ["fill_first"]` made an account. Every struct a client sends, at any
/// depth, is 47001 unless it is an object, on both surfaces; a batch
/// refuses such an action alone.
#[tokio::test]
async fn a_message_object_or_rule_that_is_not_an_object_is_refused() {
    let (server, mut c) = logged_in().await;
    let bot = account(&mut c, "bot", &[], 1, json!({})).await;
    let human = account(&mut c, "human", &["s1"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    let r = batch(&mut c, &ch, vec![say("bob", &bot, "b1", "q"), say("ann", &human, "a1", "q")]).await;
    let (bob, ann) = (r[0]["external_userid"].as_str().unwrap(), r[1]["external_userid"].as_str().unwrap());
    let refused = |v: &Value| {
        assert_eq!(code(v), 47001, "{v}");
        let msg = v["errmsg"].as_str().unwrap();
        assert!(msg.contains("invalid type: a JSON array, expected a JSON object at line 1 column"), "{v}");
    };
    let send = |kf: &str, to: &str, msgtype: &str, object: Value| json!({"touser": to, "open_kfid": kf, "msgtype": msgtype, msgtype: object});
    for (msgtype, object) in [
        ("text", json!(["hi"])),
        ("image", json!(["MID"])),
        ("link", json!(["title", "desc", "https://example.com"])),
        ("location", json!(["name", "address", 10.0, 20.0])),
        ("miniprogram", json!(["title", "appid", "pages/a"])),
        ("msgmenu", json!(["head", [], "tail"])),
    ] {
        refused(&c.post("/cgi-bin/kf/send_msg", send(&bot, bob, msgtype, object)).await);
    }
    let reply = |object: Value| json!({"servicer_userid": "s1", "open_kfid": human, "external_userid": ann, "msgtype": "text", "text": object});
    refused(&c.post("/sim/servicer/reply", reply(json!(["hi"]))).await);
    let mut in_batch = reply(json!(["hi"]));
    in_batch["type"] = json!("reply");
    let v = c.ok("/sim/servicer/batch", json!({"actions": [in_batch]})).await;
    refused(&v["results"][0]);
    // a customer's message: refused alone, the rest of the batch runs
    let mut by_position = say("bob", &bot, "b2", "");
    by_position["text"] = json!(["by position"]);
    let v = c
        .ok(
            "/sim/customer/batch",
            json!({"channel_id": ch, "actions": [by_position, say("bob", &bot, "b3", "ok")]}),
        )
        .await;
    refused(&v["results"][0]);
    assert_eq!(code(&v["results"][1]), 0, "{v}");
    for (path, body) in [
        ("/cgi-bin/kf/account/add", json!({"name": "r", "media_id": "m", "reception_rule": ["fill_first"]})),
        ("/cgi-bin/kf/account/update", json!({"open_kfid": bot, "reception_rule": ["fill_first", true]})),
    ] {
        refused(&c.post(path, body).await);
    }
    let (_, list) = c.get("/cgi-bin/kf/account/list").await;
    let accounts = list["account_list"].as_array().unwrap();
    assert_eq!(accounts.len(), 2, "no account was made: {list}");
    assert!(accounts.iter().all(|a| a["reception_rule"]["policy"] == "round_robin"), "{list}");
    // nothing reached the customers: the objects sent as objects did
    let ok = c.ok("/cgi-bin/kf/send_msg", send(&bot, bob, "text", json!({"content": "hi"}))).await;
    c.ok("/sim/servicer/reply", reply(json!({"content": "hi"}))).await;
    let pulled = c.ok("/sim/customer/pull", json!({"channel_id": ch})).await;
    let texts: Vec<&str> = pulled["event_list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| e["text"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hi", "hi"], "{pulled}");
    assert!(ok["msgid"].is_string());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_bodies_unknown_paths_and_wrong_methods() {
    let (server, mut c) = logged_in().await;
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(1 << 20));
    let (status, bytes) = c.raw("POST", "/cgi-bin/kf/account/add", big.into_bytes()).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!((status, code(&v)), (413, 40058), "{v}");
    assert!(v["errmsg"].as_str().unwrap().contains("1 MiB"));
    let mut c = server.client().await;
    c.login().await;
    // a WeCom API kfsim lacks: HTTP 200 (SDKs look at the status first)
    // with an errcode and a message naming it (issue 10)
    let (status, bytes) = c.raw("POST", "/cgi-bin/kf/no_such_api", b"{}".to_vec()).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!((status, code(&v)), (200, 48002), "{v}");
    assert!(v["errmsg"].as_str().unwrap().contains("/cgi-bin/kf/no_such_api"), "{v}");
    let (status, bytes) = c.raw("POST", "/sim/no_such_port", b"{}".to_vec()).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!((status, code(&v)), (404, 40058), "{v}");
    let (status, bytes) = c.raw("DELETE", "/cgi-bin/kf/sync_msg", Vec::new()).await;
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!((status, code(&v)), (405, 40058), "{v}");
    // CONNECT answered 200 meant "tunnel open", its JSON body lost (found
    // by probing): under /cgi-bin/ any method but GET and POST is a 405
    for path in ["/cgi-bin/no_such_api", "/cgi-bin/kf/sync_msg"] {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(format!("CONNECT {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = s.read(&mut buf).await {
                answer.extend_from_slice(&buf[..n]);
                if answer.ends_with(b"}") {
                    break;
                }
            }
        })
        .await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 405") && answer.contains("\"errcode\":40058"),
            "{path}: {answer:?}"
        );
    }
    let (status, v) = c.get("/healthz").await;
    assert_eq!((status, v["status"].as_str()), (200, Some("ok")));
    server.stop().await.unwrap();
}

/// A servicer pull of a customer channel read and acknowledged the
/// customers' replies, lost to their driver; a customer batch on a
/// servicer channel made customers there (found by probing). Each kind of
/// call now refuses the other kind's channel, and nothing changes.
#[tokio::test]
async fn customer_and_servicer_channels_are_not_taken_for_each_other() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "presale", &["s1"], 1, json!({})).await;
    let cust = channel(&mut c).await;
    let serv = c.ok("/sim/servicer/open_channel", json!({"servicer_userids": ["s1"]})).await;
    let serv = serv["channel_id"].as_str().unwrap().to_owned();
    batch(&mut c, &cust, vec![say("a", &kf, "1", "hi")]).await;
    for (path, body) in [
        ("/sim/servicer/pull", json!({"channel_id": cust, "cursor": ""})),
        ("/sim/servicer/close_channel", json!({"channel_id": cust})),
        ("/sim/customer/pull", json!({"channel_id": serv, "cursor": ""})),
        ("/sim/customer/close_channel", json!({"channel_id": serv})),
        ("/sim/customer/batch", json!({"channel_id": serv, "actions": [say("b", &kf, "2", "hi")]})),
    ] {
        let v = c.post(path, body).await;
        assert_eq!(code(&v), 40058, "{path}: {v}");
        assert!(v["errmsg"].as_str().unwrap().contains("channel:"), "{path}: {v}");
    }
    // each channel still serves its own kind: the customer's session was
    // given to s1, who has it on the servicer channel
    let v = c.ok("/sim/customer/pull", json!({"channel_id": cust, "cursor": ""})).await;
    assert!(!v["event_list"].as_array().unwrap().is_empty(), "{v}");
    let v = c.ok("/sim/servicer/pull", json!({"channel_id": serv, "cursor": ""})).await;
    assert!(v.to_string().contains("hi"), "{v}");
    c.ok("/sim/servicer/close_channel", json!({"channel_id": serv})).await;
    c.ok("/sim/customer/close_channel", json!({"channel_id": cust})).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_report_sessions_queues_messages_and_latency() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "presale", &["s1"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    batch(&mut c, &ch, vec![say("a", &kf, "1", "x"), say("b", &kf, "2", "y"), say("b", &kf, "3", "z")]).await;
    c.post("/cgi-bin/kf/sync_msg", json!({"open_kfid": "bad"})).await;
    let (status, bytes) = c.raw("GET", "/metrics", Vec::new()).await;
    let text = String::from_utf8(bytes).unwrap();
    assert_eq!(status, 200);
    for line in [
        &*format!("kfsim_sessions{{open_kfid=\"{kf}\",account=\"presale\",state=\"3\"}} 1"),
        &*format!("kfsim_sessions{{open_kfid=\"{kf}\",account=\"presale\",state=\"2\"}} 1"),
        &*format!("kfsim_queue_length{{open_kfid=\"{kf}\",account=\"presale\"}} 1"),
        "kfsim_customer_messages_total 3",
        "kfsim_messages_routed_total 1",
        "kfsim_http_errors_total{route=\"/cgi-bin/kf/sync_msg\"} 1",
        "kfsim_http_request_duration_seconds_count{route=\"/sim/customer/batch\"} 1",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_servicer_channel_carries_many_servicers_queues_with_their_names() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "a", &["s1", "s2", "s3"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    // all or none: one unknown servicer opens nothing
    let bad = c.post("/sim/servicer/open_channel", json!({"servicer_userids": ["s1", "ghost"]})).await;
    assert_eq!(code(&bad), 95014, "{bad}");
    assert_eq!(code(&c.post("/sim/servicer/open_channel", json!({})).await), 40058);
    let opened = c.ok("/sim/servicer/open_channel", json!({"servicer_userids": ["s1", "s2"]})).await;
    let sch = opened["channel_id"].as_str().unwrap().to_owned();
    // three customers: one session each for s1, s2 and s3 (cap 1, idle-first)
    let r = batch(
        &mut c,
        &ch,
        vec![say("c1", &kf, "m1", "x"), say("c2", &kf, "m2", "x"), say("c3", &kf, "m3", "x")],
    )
    .await;
    let holder = |i: usize| r[i]["servicer_userid"].as_str().unwrap().to_owned();
    let holders = [holder(0), holder(1), holder(2)];
    let pulled = c.ok("/sim/servicer/pull", json!({"channel_id": sch, "timeout_ms": 1000})).await;
    let items = pulled["event_list"].as_array().unwrap();
    let msgs: Vec<(String, String)> = items
        .iter()
        .filter(|i| i["kind"] == "message")
        .map(|i| (i["to"].as_str().unwrap().to_owned(), i["client_msgid"].as_str().unwrap().to_owned()))
        .collect();
    let mut want: Vec<(String, String)> = holders
        .iter()
        .zip(["m1", "m2", "m3"])
        .filter(|(h, _)| *h != "s3")
        .map(|(h, m)| (h.clone(), m.to_owned()))
        .collect();
    want.sort();
    let mut got = msgs.clone();
    got.sort();
    assert_eq!(got, want, "each message once, named with its servicer: {pulled}");
    assert!(
        items
            .iter()
            .any(|i| i["kind"] == "session" && i["change"] == "assigned" && i["to"] == i["servicer_userid"]),
        "{pulled}"
    );
    // the bound servicers' own queues stay empty; s3's own queue has its message
    for s in ["s1", "s2"] {
        let own = c.ok("/sim/servicer/pull", json!({"servicer_userid": s})).await;
        assert!(own["event_list"].as_array().unwrap().is_empty(), "{s}: {own}");
    }
    let own = c.ok("/sim/servicer/pull", json!({"servicer_userid": "s3"})).await;
    assert!(own["event_list"].as_array().unwrap().iter().all(|i| i.get("to").is_none()), "{own}");
    assert!(own["event_list"].as_array().unwrap().iter().any(|i| i["client_msgid"] == "m3"), "{own}");
    // a customer channel's items carry no `to`
    let mine = c.ok("/sim/customer/pull", json!({"channel_id": ch})).await;
    assert!(mine["event_list"].as_array().unwrap().iter().all(|i| i.get("to").is_none()), "{mine}");
    // closed: items go to the servicers' own queues again
    c.ok("/sim/servicer/close_channel", json!({"channel_id": sch})).await;
    let s1_ext = r[holders.iter().position(|h| h == "s1").unwrap()]["external_userid"].clone();
    let c_of_s1 = ["c1", "c2", "c3"][holders.iter().position(|h| h == "s1").unwrap()];
    batch(&mut c, &ch, vec![say(c_of_s1, &kf, "m4", "y")]).await;
    let own = c.ok("/sim/servicer/pull", json!({"servicer_userid": "s1"})).await;
    assert!(
        own["event_list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["client_msgid"] == "m4" && i["external_userid"] == s1_ext),
        "{own}"
    );
    assert_eq!(code(&c.post("/sim/servicer/pull", json!({"channel_id": sch})).await), 40058);
    server.stop().await.unwrap();
}

/// A long-poll on a queue that goes (its channel closed, its servicer
/// removed) answers at once with the queue's error, not at its timeout
/// (found by probing: 15 s and 5 s).
#[tokio::test]
async fn long_polls_on_a_queue_that_goes_answer_at_once() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "a", &["s1"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    let polls = [
        ("/sim/customer/pull", json!({"channel_id": ch, "timeout_ms": 20000}), 40058),
        ("/sim/servicer/pull", json!({"servicer_userid": "s1", "timeout_ms": 20000}), 95014),
    ];
    let mut waiting = Vec::new();
    for (path, body, want) in polls {
        let mut poller = server.client().await;
        poller.token = c.token.clone();
        waiting.push(tokio::spawn(async move {
            let started = Instant::now();
            let first = poller.post(path, body.clone()).await;
            // an empty answer first (a queue's state at the call): poll again
            let v = if first["errcode"] == 0 { poller.post(path, body).await } else { first };
            (path, v, want, started.elapsed())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.ok("/sim/customer/close_channel", json!({"channel_id": ch})).await;
    c.ok("/cgi-bin/kf/servicer/del", json!({"open_kfid": kf, "userid_list": ["s1"]})).await;
    for w in waiting {
        let (path, v, want, waited) =
            tokio::time::timeout(Duration::from_secs(10), w).await.expect("answered").unwrap();
        assert_eq!(v["errcode"], want, "{path}: {v}");
        assert!(
            waited < Duration::from_secs(5),
            "{path}: woken when its queue went, not at the timeout: {waited:?}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn long_polls_wake_on_new_data_and_time_out_empty() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "a", &["s1"], 1, json!({})).await;
    let ch = channel(&mut c).await;
    let started = Instant::now();
    let empty = c.ok("/sim/servicer/pull", json!({"servicer_userid": "s1", "timeout_ms": 300})).await;
    let waited = started.elapsed();
    assert!(empty["event_list"].as_array().unwrap().is_empty());
    assert!(waited >= Duration::from_millis(290) && waited < Duration::from_secs(3), "{waited:?}");

    let mut poller = server.client().await;
    poller.token = c.token.clone();
    let poll = tokio::spawn(async move {
        let started = Instant::now();
        let v = poller.ok("/sim/servicer/pull", json!({"servicer_userid": "s1", "timeout_ms": 20000})).await;
        (v, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    batch(&mut c, &ch, vec![say("a", &kf, "m1", "x")]).await;
    let (v, waited) =
        tokio::time::timeout(Duration::from_secs(10), poll).await.expect("poll answered").unwrap();
    assert!(waited < Duration::from_secs(5), "woken by the message, not the timeout: {waited:?}");
    assert!(!v["event_list"].as_array().unwrap().is_empty(), "{v}");

    // a long-poll in flight does not hold up shutdown
    let mut poller = server.client().await;
    poller.token = c.token.clone();
    let cursor = v["next_cursor"].clone();
    let hanging = tokio::spawn(async move {
        poller
            .post(
                "/sim/servicer/pull",
                json!({"servicer_userid": "s1", "cursor": cursor, "timeout_ms": 60000}),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), server.stop()).await.expect("shutdown in time").unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    let answer = tokio::time::timeout(Duration::from_secs(5), hanging).await.expect("answered").unwrap();
    assert_eq!(answer["errcode"], 0);
}

/// 升级服务 as an SDK calls it: the servicers are the 专员 a customer can
/// be upgraded to, anything else is 95021, and the upgrade is counted for
/// the account and for the servicer holding the session.
#[tokio::test]
async fn upgrade_service_to_a_servicer_is_recorded_refused_out_of_range_and_counted() {
    let clock = Arc::new(ManualClock::new(T0));
    let server = Server::start(State::new(Config::default()), clock.clone(), Options::default()).await;
    let mut c = server.client().await;
    c.login().await;
    let kf = account(&mut c, "presale", &["s1", "s2"], 5, json!({})).await;
    let ch = channel(&mut c).await;
    let r = batch(&mut c, &ch, vec![say("x", &kf, "1", "hello")]).await;
    let x = r[0]["external_userid"].as_str().unwrap().to_owned();
    assert_eq!(r[0]["servicer_userid"], "s1", "{r:?}");
    let (status, cfg) = c.get("/cgi-bin/kf/customer/get_upgrade_service_config").await;
    assert_eq!((status, code(&cfg)), (200, 0), "{cfg}");
    assert_eq!(cfg["member_range"], json!({"userid_list": ["s1", "s2"], "department_id_list": []}));
    assert_eq!(cfg["groupchat_range"], json!({"chat_id_list": []}));

    let upgrade = "/cgi-bin/kf/customer/upgrade_service";
    let to = |userid: &str| {
        json!({"open_kfid": kf, "external_userid": x, "type": 1,
               "member": {"userid": userid, "wording": "你好，我是你的专属服务专员"}})
    };
    c.ok(upgrade, to("s2")).await;
    let with = |changes: Value| {
        let mut body = to("s2");
        for (k, v) in changes.as_object().unwrap() {
            match v {
                Value::Null => body.as_object_mut().unwrap().remove(k),
                v => body.as_object_mut().unwrap().insert(k.clone(), v.clone()),
            };
        }
        body
    };
    let bad = [
        (to("nobody"), 95021),
        (with(json!({"type": 2, "groupchat": {"chat_id": "wrOgQhDgAAMYQiS5ol9G7gK9JVAAAA"}})), 95021),
        (with(json!({"type": 3})), 40058),
        (with(json!({"type": null})), 40058),
        (with(json!({"type": "1"})), 47001),
        (with(json!({"member": null})), 40058),
        (with(json!({"type": 2})), 40058),
        (to(""), 40058),
        (with(json!({"open_kfid": "wk0000"})), 95004),
        (with(json!({"open_kfid": "nope"})), 95000),
        (with(json!({"external_userid": "wm0000000000000000"})), 40058),
        (with(json!({"external_userid": null})), 40058),
    ];
    for (body, want) in bad {
        let v = c.post(upgrade, body.clone()).await;
        assert_eq!(code(&v), want, "{body}: {v}");
    }

    let cancel = "/cgi-bin/kf/customer/cancel_upgrade_service";
    let by = json!({"open_kfid": kf, "external_userid": x});
    c.ok(cancel, by.clone()).await;
    c.ok(cancel, by).await;
    for (body, want) in [
        (json!({"open_kfid": kf, "external_userid": "wm0000000000000000"}), 40058),
        (json!({"open_kfid": "wk0000", "external_userid": x}), 95004),
        (json!({"open_kfid": kf}), 40058),
    ] {
        let v = c.post(cancel, body.clone()).await;
        assert_eq!(code(&v), want, "{body}: {v}");
    }
    // upgraded again after the cancel: one customer, two invitations
    c.ok(upgrade, to("s1")).await;

    let day = json!({"open_kfid": kf, "start_time": T0 / 1_000_000, "end_time": T0 / 1_000_000});
    let corp = c.ok("/cgi-bin/kf/get_corp_statistic", day.clone()).await;
    assert_eq!(corp["statistic_list"][0]["statistic"]["upgrade_service_customer_cnt"], 1, "{corp}");
    let mut one = day.clone();
    one["servicer_userid"] = json!("s1");
    let s1 = c.ok("/cgi-bin/kf/get_servicer_statistic", one).await;
    let s1 = &s1["statistic_list"][0]["statistic"];
    let figures = [
        "upgrade_service_member_invite_cnt",
        "upgrade_service_customer_cnt",
        "upgrade_service_member_customer_cnt",
        "upgrade_service_groupchat_invite_cnt",
    ];
    let got: Vec<&Value> = figures.iter().map(|f| &s1[f]).collect();
    assert_eq!(got, [&json!(2), &json!(1), &json!(2), &json!(0)], "s1 held the session: {s1}");
    let mut other = day;
    other["servicer_userid"] = json!("s2");
    let s2 = c.ok("/cgi-bin/kf/get_servicer_statistic", other).await;
    assert_eq!(s2["statistic_list"][0]["statistic"]["upgrade_service_member_invite_cnt"], 0, "{s2}");
    server.stop().await.unwrap();
}

/// The documents list every route the service has.
#[test]
fn protocol_documents_cover_every_route() {
    let openapi = std::fs::read_to_string("docs/openapi.yaml").unwrap();
    let protocol = std::fs::read_to_string("docs/protocol.md").unwrap();
    let routes = [
        "/cgi-bin/gettoken",
        "/cgi-bin/kf/account/add",
        "/cgi-bin/kf/account/del",
        "/cgi-bin/kf/account/update",
        "/cgi-bin/kf/account/list",
        "/cgi-bin/kf/add_contact_way",
        "/cgi-bin/kf/servicer/add",
        "/cgi-bin/kf/servicer/del",
        "/cgi-bin/kf/servicer/list",
        "/cgi-bin/kf/service_state/get",
        "/cgi-bin/kf/service_state/trans",
        "/cgi-bin/kf/sync_msg",
        "/cgi-bin/kf/send_msg",
        "/cgi-bin/kf/send_msg_on_event",
        "/cgi-bin/kf/customer/batchget",
        "/cgi-bin/kf/customer/get_upgrade_service_config",
        "/cgi-bin/kf/customer/upgrade_service",
        "/cgi-bin/kf/customer/cancel_upgrade_service",
        "/cgi-bin/kf/get_corp_statistic",
        "/cgi-bin/kf/get_servicer_statistic",
        "/cgi-bin/kf/get_corp_qualification",
        "/cgi-bin/media/upload",
        "/cgi-bin/media/get",
        "/avatar/{open_kfid}/{media_id}",
        "/sim/customer/open_channel",
        "/sim/customer/close_channel",
        "/sim/customer/batch",
        "/sim/customer/pull",
        "/sim/servicer/set_status",
        "/sim/servicer/pull",
        "/sim/servicer/reply",
        "/sim/servicer/transfer",
        "/sim/servicer/end",
        "/sim/servicer/batch",
        "/healthz",
        "/metrics",
    ];
    for r in routes {
        assert!(openapi.contains(&format!("  {r}:")), "{r} missing in docs/openapi.yaml");
        assert!(
            protocol.contains(&format!("`{r}")) || protocol.contains(&format!(" {r}")),
            "{r} missing in docs/protocol.md"
        );
    }
}

/// A channel of thousands of customers is closed a part per hold of the
/// state lock, yet answered only once all of it is done: right after the
/// answer every session of its customers has ended, once, and they are
/// forgotten, while another channel's customer waiting in the same pool
/// was served by the places their ends freed.
#[tokio::test]
async fn closing_a_channel_of_thousands_ends_their_sessions_before_it_answers() {
    let (server, mut c) = logged_in().await;
    let kf = account(&mut c, "a", &["s1"], 100, json!({})).await;
    let ch = channel(&mut c).await;
    let stays = channel(&mut c).await;
    for b in 0..10 {
        let actions = (0..1000).map(|i| say(&format!("c{b}-{i}"), &kf, &format!("m{b}-{i}"), "hi")).collect();
        batch(&mut c, &ch, actions).await;
    }
    batch(&mut c, &stays, vec![say("other", &kf, "o", "hi")]).await;
    let figures = |server: &Server| server.svc.with_state(|st, _| st.figures());
    let f = figures(&server);
    assert_eq!((f.customers, f.accounts[0].by_state), (10_001, [0, 0, 9_901, 100]));
    let before = f.counters;
    c.ok("/sim/customer/close_channel", json!({"channel_id": ch})).await;
    let f = figures(&server);
    assert_eq!((f.customers, f.convs), (1, 1), "its customers are forgotten");
    assert_eq!(f.accounts[0].by_state, [0, 0, 0, 1], "and their sessions ended: `other` is served");
    assert_eq!(f.counters.ended - before.ended, 10_000);
    server.stop().await.unwrap();
}
