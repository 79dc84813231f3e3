//! kfsim as WeCom for a middleware: URL verification, signed and encrypted
//! `kf_msg_or_event` callbacks, their Tokens in `sync_msg`, retries and
//! coalescing, API-managed accounts and the welcome-code flow. The
//! middleware here is written as users write theirs: it reacts to callbacks
//! only, syncing with the callback's Token until `has_more` is 0 and
//! keeping its cursor. Traffic goes only to loopback.

mod service_util;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{RawQuery, State as AxState};
use axum::http::StatusCode;
use kfsim::service::crypto::CallbackCrypto;
use kfsim::service::push::{CallbackFaults, CallbackSettings, VerifyError, verify_url};
use kfsim::service::{Config, Options, State, SystemClock};
use serde_json::{Value, json};
use service_util::{Client, Server, account, batch, channel, say};

const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const TOKEN: &str = "QDG6eK";

/// What the test middleware saw and did.
#[derive(Default)]
struct Seen {
    /// Every entry read (messages and events), by msgid.
    msgids: BTreeSet<String>,
    /// Every entry read, counting repeats.
    reads: u64,
    /// Callbacks whose signature and decryption held, by OpenKfId.
    callbacks: BTreeMap<String, u64>,
    /// Cursor per account.
    cursors: BTreeMap<String, String>,
}

struct Middleware {
    crypto: CallbackCrypto,
    /// kfsim's address and the access token, known once kfsim is up.
    kfsim: std::sync::OnceLock<(std::net::SocketAddr, String)>,
    seen: tokio::sync::Mutex<Seen>,
    /// Answer 503 to the first POST of this many callbacks. A callback is
    /// known by its query (signature, timestamp, nonce), which its retries
    /// repeat; failing each callback once keeps the count of retries exact
    /// however the POSTs interleave (four 503s in a row to one callback
    /// would exhaust its retries).
    fail_first: AtomicU64,
    failed_once: std::sync::Mutex<BTreeSet<String>>,
    posts: AtomicU64,
    /// When each POST arrived.
    post_times: std::sync::Mutex<Vec<std::time::Instant>>,
    bad_signatures: AtomicU64,
}

fn query(raw: Option<String>) -> BTreeMap<String, String> {
    let raw = raw.unwrap_or_default();
    raw.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (k.to_owned(), percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
        })
        .collect()
}

fn xml_field(xml: &str, name: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    doc.descendants().find(|n| n.has_tag_name(name)).and_then(|n| n.text()).map(str::to_owned)
}

async fn verify(AxState(mw): AxState<Arc<Middleware>>, RawQuery(q): RawQuery) -> (StatusCode, String) {
    let q = query(q);
    let (sig, ts, nonce, echo) = (&q["msg_signature"], &q["timestamp"], &q["nonce"], &q["echostr"]);
    if !mw.crypto.verify(sig, ts, nonce, echo) {
        return (StatusCode::FORBIDDEN, "bad signature".into());
    }
    match mw.crypto.decrypt(echo) {
        Ok((plain, _)) => (StatusCode::OK, String::from_utf8_lossy(&plain).into_owned()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn callback(
    AxState(mw): AxState<Arc<Middleware>>,
    RawQuery(q): RawQuery,
    body: String,
) -> (StatusCode, &'static str) {
    mw.posts.fetch_add(1, Ordering::SeqCst);
    mw.post_times.lock().unwrap().push(std::time::Instant::now());
    let raw = q.clone().unwrap_or_default();
    if !mw.failed_once.lock().unwrap().contains(&raw)
        && mw.fail_first.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    {
        mw.failed_once.lock().unwrap().insert(raw);
        return (StatusCode::SERVICE_UNAVAILABLE, "busy");
    }
    let q = query(q);
    let encrypted = xml_field(&body, "Encrypt").expect("an Encrypt element");
    if !mw.crypto.verify(&q["msg_signature"], &q["timestamp"], &q["nonce"], &encrypted) {
        mw.bad_signatures.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::FORBIDDEN, "bad signature");
    }
    let (plain, receive_id) = mw.crypto.decrypt(&encrypted).expect("decrypts");
    assert_eq!(receive_id, "kfsim");
    let xml = String::from_utf8(plain).unwrap();
    assert_eq!(xml_field(&xml, "Event").as_deref(), Some("kf_msg_or_event"));
    let token = xml_field(&xml, "Token").expect("Token");
    let kf = xml_field(&xml, "OpenKfId").expect("OpenKfId");
    // one sync at a time per middleware: cursors are read and written whole
    let mut seen = mw.seen.lock().await;
    *seen.callbacks.entry(kf.clone()).or_default() += 1;
    let (addr, access_token) = mw.kfsim.get().expect("kfsim is up").clone();
    let mut c = Client::connect(addr).await;
    c.token = Some(access_token);
    loop {
        let cursor = seen.cursors.get(&kf).cloned().unwrap_or_default();
        let page =
            c.ok("/cgi-bin/kf/sync_msg", json!({"cursor": cursor, "token": token, "open_kfid": kf})).await;
        for m in page["msg_list"].as_array().unwrap() {
            seen.reads += 1;
            seen.msgids.insert(m["msgid"].as_str().unwrap().to_owned());
        }
        seen.cursors.insert(kf.clone(), page["next_cursor"].as_str().unwrap().to_owned());
        if page["has_more"] == 0 {
            break;
        }
    }
    (StatusCode::OK, "success")
}

/// The middleware on a loopback port; its callback URL.
async fn start_middleware(mw: Arc<Middleware>) -> String {
    let app =
        axum::Router::new().route("/kf/callback", axum::routing::get(verify).post(callback)).with_state(mw);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/kf/callback")
}

fn settings(url: &str, max_in_flight: u32) -> CallbackSettings {
    CallbackSettings {
        url: url.into(),
        crypto: CallbackCrypto::new(TOKEN, KEY, "kfsim").unwrap(),
        corpid: "kfsim".into(),
        timeout: Duration::from_secs(5),
        retries: 3,
        retry_delay: Duration::ZERO,
        max_in_flight,
        faults: CallbackFaults::default(),
    }
}

fn middleware(fail_first: u64) -> Arc<Middleware> {
    Arc::new(Middleware {
        crypto: CallbackCrypto::new(TOKEN, KEY, "kfsim").unwrap(),
        kfsim: Default::default(),
        seen: Default::default(),
        fail_first: AtomicU64::new(fail_first),
        failed_once: Default::default(),
        posts: AtomicU64::new(0),
        post_times: Default::default(),
        bad_signatures: AtomicU64::new(0),
    })
}

/// The middleware started first (its URL is checked as WeCom checks it),
/// then kfsim with callbacks to it, and a logged-in client.
async fn world(mw: Arc<Middleware>, max_in_flight: u32, state: State) -> (Server, Client) {
    world_with(mw, state, |url| settings(url, max_in_flight)).await
}

/// [`world`] with the callback settings made for the middleware's URL.
async fn world_with(
    mw: Arc<Middleware>,
    state: State,
    settings: impl FnOnce(&str) -> CallbackSettings,
) -> (Server, Client) {
    let url = start_middleware(mw.clone()).await;
    let s = settings(&url);
    verify_url(&s, 1, 1_700_000_000).await.expect("the middleware's URL verifies");
    let server =
        Server::start(state, Arc::new(SystemClock), Options { callbacks: Some(s), ..Options::default() })
            .await;
    let mut c = server.client().await;
    let token = c.login().await;
    mw.kfsim.set((server.addr, token)).unwrap();
    (server, c)
}

/// Wait until the service has no callback out or owed (bounded). The
/// state says so exactly: a callback is out from when it is taken until
/// its delivery (retries and duplicate included) is done.
async fn settled(server: &Server) {
    for _ in 0..1000 {
        if server.svc.with_state(|st, _| st.callbacks_settled()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("callbacks did not settle");
}

/// Every entry the service logged for `kf` (messages and events).
async fn logged(c: &mut Client, kf: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let page = c.ok("/cgi-bin/kf/sync_msg", json!({"cursor": cursor, "open_kfid": kf})).await;
        for m in page["msg_list"].as_array().unwrap() {
            out.insert(m["msgid"].as_str().unwrap().to_owned());
        }
        cursor = page["next_cursor"].as_str().unwrap().to_owned();
        if page["has_more"] == 0 {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_middleware_that_only_reacts_to_callbacks_sees_every_message_and_event() {
    // the first POST of 7 callbacks is answered 503 (retried), and only 2
    // callbacks per account may be out at once (the rest coalesce)
    let mw = middleware(7);
    let (server, mut c) = world(mw.clone(), 2, State::new(Config::default())).await;
    let a = account(&mut c, "presale", &["s1"], 5, json!({})).await;
    let b = account(&mut c, "aftersale", &[], 5, json!({})).await;
    c.ok("/cgi-bin/kf/add_contact_way", json!({"open_kfid": a, "scene": "web"})).await;
    let ch = channel(&mut c).await;
    for round in 0..20 {
        let mut actions = Vec::new();
        for i in 0..15 {
            let kf = if i % 3 == 0 { &b } else { &a };
            let who = format!("cust-{round}-{i}");
            if i % 5 == 0 {
                actions.push(json!({"type": "enter", "customer": who, "open_kfid": a, "scene": "web"}));
            }
            actions.push(say(&who, kf, &format!("m{round}-{i}"), "hello"));
        }
        batch(&mut c, &ch, actions).await;
    }
    settled(&server).await;
    let stats = server.svc.callback_stats().unwrap();
    let want: BTreeSet<String> = logged(&mut c, &a).await.union(&logged(&mut c, &b).await).cloned().collect();
    let seen = mw.seen.lock().await;
    assert!(
        want.len() >= 360,
        "300 customer messages and 60 enter_session events were logged: {}",
        want.len()
    );
    assert_eq!(seen.msgids, want, "the middleware saw exactly what was logged, through callbacks alone");
    assert_eq!(mw.bad_signatures.load(Ordering::SeqCst), 0);
    let get = |x: &AtomicU64| x.load(Ordering::SeqCst);
    // fewer than 7 callbacks are sent when a slow machine coalesces much;
    // the first one is always refused
    let refused = 7 - get(&mw.fail_first);
    assert!(refused >= 1);
    assert_eq!(get(&stats.retries), refused, "each 503 was followed by a retry");
    assert_eq!(get(&stats.failed), 0);
    let sent = server.svc.with_state(|st, _| st.figures().counters.callbacks_sent);
    assert_eq!(get(&stats.delivered), sent);
    assert_eq!(get(&stats.attempts), sent + refused);
    assert_eq!(get(&mw.posts), get(&stats.attempts), "every POST was counted where it was received");
    let coalesced = server.svc.with_state(|st, _| st.figures().counters.callbacks_coalesced);
    assert_eq!(
        sent + coalesced,
        want.len() as u64,
        "one callback per logged entry, or the entry was announced with others"
    );
    assert!(coalesced > 0, "with 2 out at once, bursts of 15 coalesce");
    drop(seen);
    server.stop().await.unwrap();
}

/// A callback refused with 503 is sent again after `retry_delay`, not at
/// once: a middleware shedding load is not given it back four times over
/// in the same millisecond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_callback_is_sent_again_after_the_retry_delay() {
    let delay = Duration::from_millis(400);
    let mw = middleware(1);
    let (server, mut c) = world_with(mw.clone(), State::new(Config::default()), |url| CallbackSettings {
        retry_delay: delay,
        ..settings(url, 4)
    })
    .await;
    let a = account(&mut c, "presale", &["s1"], 5, json!({})).await;
    let ch = channel(&mut c).await;
    batch(&mut c, &ch, vec![say("cust", &a, "m1", "hello")]).await;
    settled(&server).await;
    let stats = server.svc.callback_stats().unwrap();
    let get = |x: &AtomicU64| x.load(Ordering::SeqCst);
    let sent = server.svc.with_state(|st, _| st.figures().counters.callbacks_sent);
    assert_eq!((sent, get(&stats.retries), get(&stats.delivered)), (1, 1, 1));
    let times = mw.post_times.lock().unwrap().clone();
    assert_eq!(times.len(), 2, "the refused attempt and its retry");
    let gap = times[1] - times[0];
    assert!(gap >= delay, "the retry came {gap:?} after the refusal, before the {delay:?} asked");
    drop(c);
    server.stop().await.unwrap();
}

fn code(v: &Value) -> i64 {
    v["errcode"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_managed_account_leaves_new_sessions_to_the_middleware() {
    let mw = middleware(0);
    let (server, mut c) = world(mw.clone(), 64, State::new(Config::default())).await;
    let kf = account(&mut c, "presale", &["s1"], 5, json!({"api_managed": true})).await;
    c.ok("/cgi-bin/kf/add_contact_way", json!({"open_kfid": kf, "scene": "web"})).await;
    let ch = channel(&mut c).await;
    // taps the link and types at once: one sync returns both
    let enter = json!({"type": "enter", "customer": "alice", "open_kfid": kf, "scene": "web"});
    let r = batch(
        &mut c,
        &ch,
        vec![enter, say("alice", &kf, "a-1", "hello"), say("alice", &kf, "a-2", "anyone?")],
    )
    .await;
    assert_eq!(r[1]["service_state"], 0, "an API-managed account routes nothing: {r:?}");
    let ext = r[1]["external_userid"].as_str().unwrap().to_owned();
    let sync = c.ok("/cgi-bin/kf/sync_msg", json!({"open_kfid": kf})).await;
    let welcome = sync["msg_list"][0]["event"]["welcome_code"].as_str().expect("a welcome code").to_owned();
    let hi = json!({"code": welcome, "msgtype": "text", "text": {"content": "welcome!"}});
    c.ok("/cgi-bin/kf/send_msg_on_event", hi).await;

    // the middleware answers as a bot (0 → 1), then hands over to the pool
    let bot = json!({"touser": ext, "open_kfid": kf, "msgtype": "text", "text": {"content": "I am a bot"}});
    c.ok("/cgi-bin/kf/send_msg", bot).await;
    let st = c.ok("/cgi-bin/kf/service_state/get", json!({"open_kfid": kf, "external_userid": ext})).await;
    assert_eq!(st["service_state"], 1);
    let to_pool = json!({"open_kfid": kf, "external_userid": ext, "service_state": 2});
    c.ok("/cgi-bin/kf/service_state/trans", to_pool).await;
    let st = c.ok("/cgi-bin/kf/service_state/get", json!({"open_kfid": kf, "external_userid": ext})).await;
    assert_eq!((st["service_state"].as_i64(), st["servicer_userid"].as_str()), (Some(3), Some("s1")));
    // the servicer gets the session with the customer's messages
    let pulled = c.ok("/sim/servicer/pull", json!({"servicer_userid": "s1"})).await;
    let ids: Vec<&str> =
        pulled["event_list"].as_array().unwrap().iter().filter_map(|e| e["client_msgid"].as_str()).collect();
    assert_eq!(ids, ["a-1", "a-2"], "{pulled}");
    settled(&server).await;
    let seen = mw.seen.lock().await;
    assert!(seen.callbacks.get(&kf).copied().unwrap_or(0) >= 1, "the middleware was called back");
    // (what the API sends is not in sync_msg, as in WeCom)
    assert_eq!(seen.msgids.len(), 3, "enter_session and two messages: {:?}", seen.msgids);
    drop(seen);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_msg_without_open_kfid_reads_every_account() {
    let server = Server::empty().await;
    let mut c = server.client().await;
    c.login().await;
    let a = account(&mut c, "a", &[], 1, json!({})).await;
    let b = account(&mut c, "b", &[], 1, json!({})).await;
    let ch = channel(&mut c).await;
    batch(&mut c, &ch, vec![say("x", &a, "1", "one"), say("y", &b, "2", "two"), say("x", &a, "3", "three")])
        .await;
    // wechatpy 2.0's kf.sync_msg(token, cursor, limit) sends no open_kfid
    let page = c.ok("/cgi-bin/kf/sync_msg", json!({"token": "", "cursor": "", "limit": 2})).await;
    let texts = |p: &Value| -> Vec<String> {
        p["msg_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"]["content"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!((texts(&page), page["has_more"].as_i64()), (vec!["one".into(), "two".into()], Some(1)));
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    assert!(cursor.starts_with("all"), "{cursor}");
    let rest = c.ok("/cgi-bin/kf/sync_msg", json!({"cursor": cursor})).await;
    assert_eq!(texts(&rest), ["three"]);
    // absent is every account, and so is `null` (as for every optional
    // field); an empty open_kfid is refused, as WeCom refuses it
    let null = c.ok("/cgi-bin/kf/sync_msg", json!({"open_kfid": null, "cursor": null, "token": null})).await;
    assert_eq!(texts(&null), ["one", "two", "three"]);
    let empty = c.post("/cgi-bin/kf/sync_msg", json!({"open_kfid": "", "cursor": ""})).await;
    assert_eq!(code(&empty), 40058, "{empty}");
    // cursors of the two forms are not interchangeable
    let own = c.ok("/cgi-bin/kf/sync_msg", json!({"open_kfid": a})).await;
    let own_cursor = own["next_cursor"].as_str().unwrap();
    assert_ne!(code(&c.post("/cgi-bin/kf/sync_msg", json!({"cursor": own_cursor})).await), 0);
    assert_ne!(code(&c.post("/cgi-bin/kf/sync_msg", json!({"open_kfid": a, "cursor": cursor})).await), 0);
    // a token that no callback carried
    let without = async || server.svc.middleware_summary(1.0, 1).await.sync_without_token;
    let before = without().await;
    let forged = c.post("/cgi-bin/kf/sync_msg", json!({"open_kfid": a, "token": "ENC0000000001"})).await;
    assert_eq!(code(&forged), 95007, "{forged}");
    // calls without one are counted (WeCom throttles them), those with one not
    assert_eq!(without().await, before);
    c.ok("/cgi-bin/kf/sync_msg", json!({"open_kfid": a})).await;
    assert_eq!(without().await, before + 1);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_that_does_not_verify_says_why() {
    // a middleware with another key answers something else
    let other = Arc::new(Middleware {
        crypto: CallbackCrypto::new(TOKEN, "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "kfsim").unwrap(),
        ..Arc::try_unwrap(middleware(0)).ok().unwrap()
    });
    let url = start_middleware(other).await;
    let err = verify_url(&settings(&url, 4), 1, 1_700_000_000).await.unwrap_err();
    assert!(matches!(err, VerifyError::Status { status: 500, .. }), "{err}");
    // nothing listens there
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/kf/callback", listener.local_addr().unwrap());
    drop(listener);
    let err = verify_url(&settings(&dead, 4), 1, 1_700_000_000).await.unwrap_err();
    assert!(matches!(err, VerifyError::Unreachable { .. }), "{err}");
    // a URL that answers 200 with the wrong text
    let app = axum::Router::new().route("/cb", axum::routing::get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let err = verify_url(&settings(&format!("http://{addr}/cb"), 4), 1, 1_700_000_000).await.unwrap_err();
    assert!(matches!(err, VerifyError::WrongAnswer { .. }), "{err}");
    assert!(err.to_string().contains("Token, EncodingAESKey and corpid"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_count_the_day_and_upgrade_config_lists_the_servicers() {
    let server = Server::empty().await;
    let mut c = server.client().await;
    c.login().await;
    let kf = account(&mut c, "presale", &["s1", "s2"], 5, json!({})).await;
    let ch = channel(&mut c).await;
    batch(&mut c, &ch, vec![say("x", &kf, "1", "a"), say("y", &kf, "2", "b"), say("x", &kf, "3", "c")]).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let q = json!({"open_kfid": kf, "start_time": now - 86_400, "end_time": now});
    let corp = c.ok("/cgi-bin/kf/get_corp_statistic", q.clone()).await;
    let list = corp["statistic_list"].as_array().unwrap();
    assert_eq!(list.len(), 2, "yesterday and today: {corp}");
    let today = &list[1]["statistic"];
    assert_eq!((&today["session_cnt"], &today["customer_msg_cnt"]), (&json!(2), &json!(3)), "{corp}");
    assert_eq!(list[0]["statistic"]["session_cnt"], 0);
    assert_eq!((list[1]["stat_time"].as_u64().unwrap() + 8 * 3600) % 86_400, 0, "a CST midnight");
    let all = c.ok("/cgi-bin/kf/get_servicer_statistic", q.clone()).await;
    assert_eq!(all["statistic_list"][1]["statistic"]["session_cnt"], 2, "{all}");
    assert_eq!(all["statistic_list"][1]["statistic"]["customer_msg_cnt"], 3, "{all}");
    let one = json!({"open_kfid": kf, "servicer_userid": "s1", "start_time": now, "end_time": now});
    let s1 = c.ok("/cgi-bin/kf/get_servicer_statistic", one).await;
    assert_eq!(s1["statistic_list"][0]["statistic"]["session_cnt"], 1, "round robin gave s1 one: {s1}");
    let long = json!({"open_kfid": kf, "start_time": now - 40 * 86_400, "end_time": now});
    assert_eq!(code(&c.post("/cgi-bin/kf/get_corp_statistic", long).await), 40058);
    let (status, cfg) = c.get("/cgi-bin/kf/customer/get_upgrade_service_config").await;
    assert_eq!((status, code(&cfg)), (200, 0), "{cfg}");
    assert_eq!(cfg["member_range"]["userid_list"], json!(["s1", "s2"]));
    assert_eq!(cfg["groupchat_range"]["chat_id_list"], json!([]));
    server.stop().await.unwrap();
}

/// A multipart body with one part named `name` holding `bytes`.
fn multipart(name: &str, filename: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "kfsimBoundary7MA4YWxk";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// `account/list` gave avatars as `kfsim://media/…`, which SDK users who
/// fetch or check avatars as http(s) URLs could not take. An avatar is an
/// http URL on the service, at the address the client used, serving the
/// image uploaded for it without a token, or a 1×1 PNG for a media_id kfsim
/// never saw; a replaced avatar's URL is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_avatars_are_http_urls_the_service_serves() {
    let server = Server::empty().await;
    let mut c = server.client().await;
    c.login().await;
    let image: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
    let (ct, body) = multipart("media", "face.jpg", &image);
    let (_, _, up) = c.request("POST", "/cgi-bin/media/upload?type=image", &ct, body).await;
    let uploaded = serde_json::from_slice::<Value>(&up).unwrap()["media_id"].as_str().unwrap().to_owned();
    let kf = c.ok("/cgi-bin/kf/account/add", json!({"name": "a", "media_id": uploaded})).await;
    let kf = kf["open_kfid"].as_str().unwrap().to_owned();
    c.ok("/cgi-bin/kf/account/add", json!({"name": "b", "media_id": "never/uploaded ?#"})).await;
    // as a scenario's accounts are: without one
    c.ok("/cgi-bin/kf/account/add", json!({"name": "c", "media_id": ""})).await;
    let origin = format!("http://{}", server.addr);
    let avatars = |list: &Value| -> Vec<String> {
        let accounts = list["account_list"].as_array().unwrap().iter();
        accounts.map(|a| a["avatar"].as_str().unwrap().to_owned()).collect()
    };
    let list = c.ok("/cgi-bin/kf/account/list", json!({})).await;
    let got = avatars(&list);
    assert!(got.iter().all(|a| a.starts_with(&format!("{origin}/avatar/wk"))), "{list}");
    assert_eq!(avatars(&c.get("/cgi-bin/kf/account/list").await.1), got, "GET lists the same");
    assert!(got[1].ends_with("/never%2Fuploaded%20%3F%23"), "one path segment: {}", got[1]);
    // fetched as a browser would: no token
    let mut anyone = server.client().await;
    let path = |url: &str| url.strip_prefix(&origin).unwrap().to_owned();
    let (status, _, bytes) = anyone.request("GET", &path(&got[0]), "", Vec::new()).await;
    assert_eq!((status, bytes), (200, image), "the uploaded image");
    let (status, ct, png) = anyone.request("GET", &path(&got[1]), "", Vec::new()).await;
    assert_eq!((status, ct.as_str(), &png[1..4]), (200, "image/png", &b"PNG"[..]));
    assert!(got[2].ends_with("/default"), "{}", got[2]);
    let (status, ct, png) = anyone.request("GET", &path(&got[2]), "", Vec::new()).await;
    assert_eq!((status, ct.as_str(), &png[1..4]), (200, "image/png", &b"PNG"[..]), "an account without one");
    // a new avatar is a new URL; the old one is gone
    c.ok("/cgi-bin/kf/account/update", json!({"open_kfid": kf, "media_id": "other"})).await;
    let now = avatars(&c.ok("/cgi-bin/kf/account/list", json!({})).await);
    assert!(now[0].ends_with("/other") && now[1] == got[1] && now[2] == got[2], "{now:?}");
    let (status, _, _) = anyone.request("GET", &path(&got[0]), "", Vec::new()).await;
    assert_eq!(status, 404);
    let (status, _, _) = anyone.request("GET", &format!("/avatar/wk0000/{uploaded}"), "", Vec::new()).await;
    assert_eq!(status, 404, "the upload is an avatar of its account only");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_upload_and_download_with_wecoms_limits() {
    let server = Server::empty().await;
    let mut c = server.client().await;
    c.login().await;
    let image: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let (ct, body) = multipart("media", "photo.png", &image);
    let (status, _, up) = c.request("POST", "/cgi-bin/media/upload?type=image", &ct, body).await;
    let up: Value = serde_json::from_slice(&up).unwrap();
    assert_eq!((status, code(&up), up["type"].as_str()), (200, 0, Some("image")), "{up}");
    let id = up["media_id"].as_str().unwrap().to_owned();
    let (status, _, got) =
        c.request("GET", &format!("/cgi-bin/media/get?media_id={id}"), "", Vec::new()).await;
    assert_eq!((status, got.len()), (200, image.len()));
    assert_eq!(got, image, "the same bytes come back");

    let fail = |status: u16, errcode: i64, v: &[u8]| {
        let v: Value =
            serde_json::from_slice(v).unwrap_or_else(|_| panic!("JSON: {}", String::from_utf8_lossy(v)));
        assert_eq!(code(&v), errcode, "{v}");
        status
    };
    // a voice over its 2 MB
    let (ct, body) = multipart("media", "v.amr", &vec![0; (2 << 20) + 10]);
    let (s, _, v) = c.request("POST", "/cgi-bin/media/upload?type=voice", &ct, body).await;
    assert_eq!(fail(s, 40006, &v), 200);
    // no part named media, and a body that is not multipart at all
    let (ct, body) = multipart("other", "x", b"hello world");
    let (s, _, v) = c.request("POST", "/cgi-bin/media/upload?type=file", &ct, body).await;
    assert_eq!(fail(s, 44001, &v), 200);
    let (s, _, v) =
        c.request("POST", "/cgi-bin/media/upload?type=file", "application/json", b"{}".to_vec()).await;
    assert_eq!(fail(s, 44001, &v), 200);
    // larger than any type may be: refused as it streams in
    let (ct, body) = multipart("media", "big.bin", &vec![0; 21 << 20]);
    let (s, _, v) = c.request("POST", "/cgi-bin/media/upload?type=file", &ct, body).await;
    assert_eq!(fail(s, 40006, &v), 413);
    // the rest of that body was never read: the server may close the
    // connection after answering (HTTP/1.1 §9.6), so go on with a new one
    let token = c.token.take();
    c = server.client().await;
    c.token = token;
    // a bad type, a bad token (checked before the body is read), an unknown id
    let (ct, body) = multipart("media", "x", b"hello world");
    let (s, _, v) = c.request("POST", "/cgi-bin/media/upload?type=gif", &ct, body.clone()).await;
    assert_eq!(fail(s, 40004, &v), 200);
    let bad = "/cgi-bin/media/upload?type=file&access_token=nope";
    let (s, _, v) = c.request("POST", bad, &ct, body).await;
    assert_eq!(fail(s, 40014, &v), 200);
    let (s, _, v) = c.request("GET", "/cgi-bin/media/get?media_id=3nope", "", Vec::new()).await;
    assert_eq!(fail(s, 40007, &v), 200);
    // what a customer sent can be downloaded, and the service is still up
    let kf = account(&mut c, "presale", &[], 1, json!({})).await;
    let ch = channel(&mut c).await;
    let pic = json!({"type": "message", "customer": "x", "open_kfid": kf, "msgtype": "image", "image": {"media_id": "CUSTPIC1"}});
    batch(&mut c, &ch, vec![pic]).await;
    let (status, ct, png) = c.request("GET", "/cgi-bin/media/get?media_id=CUSTPIC1", "", Vec::new()).await;
    assert_eq!((status, ct.as_str(), &png[1..4]), (200, "image/png", &b"PNG"[..]));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_api_faults_are_counted_exactly() {
    use kfsim::scenario::TimeDist;
    use kfsim::service::faults::ApiFaults;
    let faults = ApiFaults { latency: Some(TimeDist::Constant { us: 200 }), error_rate: 0.2, busy_rate: 0.1 };
    let clock = Arc::new(kfsim::service::ManualClock::new(1_700_000_000_000_000));
    let cfg = Config { token_invalid_after_us: Some(60_000_000), ..Config::default() };
    let options = Options { api_faults: faults, ..Options::default() };
    let server = Server::start(State::new(cfg), clock.clone(), options).await;
    let mut c = server.client().await;
    // every errcode the client saw, over every /cgi-bin/ call it made
    let mut seen = BTreeMap::<i64, u64>::new();
    let mut calls = 0;
    // gettoken itself may be refused by a fault: retried, as SDKs do
    while c.token.is_none() {
        let (_, v) = c.get("/cgi-bin/gettoken?corpid=kfsim&corpsecret=kfsim-secret").await;
        calls += 1;
        *seen.entry(code(&v)).or_default() += 1;
        c.token = v["access_token"].as_str().map(str::to_owned);
    }
    for _ in 0..400 {
        calls += 1;
        *seen.entry(code(&c.post("/cgi-bin/kf/account/list", json!({})).await)).or_default() += 1;
    }
    // the driver ports are spared
    for _ in 0..50 {
        let id = channel(&mut c).await;
        c.ok("/sim/customer/close_channel", json!({"channel_id": id})).await;
    }
    // a token invalidated early: 42001 though expires_in promised 7200 s
    clock.advance(61_000_000);
    loop {
        calls += 1;
        let v = c.post("/cgi-bin/kf/account/list", json!({})).await;
        *seen.entry(code(&v)).or_default() += 1;
        if code(&v) == 42001 {
            assert!(v["errmsg"].as_str().unwrap().contains("invalidated early"), "{v}");
            break;
        }
    }
    let f = server.svc.fault_stats().unwrap();
    let get = |x: &AtomicU64| x.load(Ordering::SeqCst);
    let n = |c: i64| seen.get(&c).copied().unwrap_or(0);
    assert_eq!(
        (get(&f.delayed), get(&f.system_busy), get(&f.rate_limited)),
        (calls, n(-1), n(45009)),
        "{seen:?}"
    );
    assert!((50..=120).contains(&n(-1)) && (20..=70).contains(&n(45009)), "about 20 % and 10 %: {seen:?}");
    let early = server.svc.with_state(|st, _| st.figures().counters.tokens_refused_early);
    assert_eq!(early, n(42001));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_callback_faults_are_counted_where_they_land() {
    let mw = middleware(0);
    let url = start_middleware(mw.clone()).await;
    let faults = CallbackFaults {
        delay: Some(kfsim::scenario::TimeDist::Constant { us: 1_000 }),
        drop_rate: 0.3,
        duplicate_rate: 0.3,
    };
    let s = CallbackSettings { faults, ..settings(&url, 1000) };
    let options = Options { callbacks: Some(s), ..Options::default() };
    let server = Server::start(State::new(Config::default()), Arc::new(SystemClock), options).await;
    let mut c = server.client().await;
    let token = c.login().await;
    mw.kfsim.set((server.addr, token)).unwrap();
    let kf = account(&mut c, "presale", &[], 1, json!({})).await;
    let ch = channel(&mut c).await;
    for i in 0..200 {
        batch(&mut c, &ch, vec![say(&format!("c{i}"), &kf, "1", "hi")]).await;
    }
    settled(&server).await;
    let st = server.svc.callback_stats().unwrap();
    let get = |x: &AtomicU64| x.load(Ordering::SeqCst);
    let callbacks = server.svc.with_state(|st, _| st.figures().counters.callbacks_sent);
    let (dropped, duplicated) = (get(&st.dropped), get(&st.duplicated));
    assert_eq!(get(&st.delayed), callbacks, "every callback was held back");
    assert_eq!(get(&st.delivered) + dropped, callbacks);
    assert!((30..=100).contains(&dropped), "about 30 % of ~200 dropped: {dropped} of {callbacks}");
    assert!(duplicated > 20, "{duplicated}");
    // what was sent is what arrived: each delivered callback, and each duplicate of one
    assert_eq!(get(&mw.posts), get(&st.attempts));
    assert_eq!(
        get(&st.attempts),
        callbacks - dropped + duplicated,
        "no retries: the middleware answers at once"
    );
    let m = server.svc.middleware_summary(1.0, 20_000_000).await.callbacks;
    assert_eq!((m.sent, m.dropped, m.in_flight_at_end), (callbacks, dropped, 0), "{m:?}");
    assert_eq!(m.duplicated, duplicated, "{m:?}");
    server.stop().await.unwrap();
}

/// Callbacks still out when the run ends — a middleware that takes them
/// and never answers — are counted as such, so that what was sent is what
/// was delivered, failed, dropped or still in flight. They were counted
/// nowhere: `sent` 2, `delivered` + `failed` 0, and no figure said why.
/// Nor were the entries logged behind them, which no callback announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_out_when_the_run_ends_are_counted_in_flight() {
    // it accepts connections and reads, and never answers
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/kf/callback", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    // one place: what is logged while its callback hangs stays owed
    let s = CallbackSettings { timeout: Duration::from_secs(600), ..settings(&url, 1) };
    let options = Options { callbacks: Some(s), ..Options::default() };
    let server = Server::start(State::new(Config::default()), Arc::new(SystemClock), options).await;
    let mut c = server.client().await;
    c.login().await;
    let kf = account(&mut c, "presale", &[], 1, json!({})).await;
    let ch = channel(&mut c).await;
    batch(&mut c, &ch, vec![say("c1", &kf, "1", "hi"), say("c2", &kf, "2", "hi")]).await;
    let stats = server.svc.callback_stats().unwrap();
    for _ in 0..1000 {
        if stats.attempts.load(Ordering::SeqCst) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    batch(&mut c, &ch, vec![say("c3", &kf, "3", "hi"), say("c4", &kf, "4", "hi"), say("c5", &kf, "5", "hi")])
        .await;
    let m = server.svc.middleware_summary(1.0, 20_000_000).await.callbacks;
    assert_eq!((m.sent, m.delivered, m.failed, m.dropped), (1, 0, 0, 0), "one place, held: {m:?}");
    assert_eq!(m.in_flight_at_end, 1, "{m:?}");
    // every entry logged is announced by the callback out or still owed
    let entries = server.svc.with_state(|st, _| st.figures().counters.customer_messages);
    let coalesced = server.svc.with_state(|st, _| st.figures().counters.callbacks_coalesced);
    assert_eq!(entries, 5);
    assert_eq!(m.sent + coalesced + m.unannounced_at_end, entries, "{m:?}, {coalesced} coalesced");
    assert!(m.unannounced_at_end >= 3, "the second batch came while the place was held: {m:?}");
    drop(c);
    server.stop().await.unwrap();
}
