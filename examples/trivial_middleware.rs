//! A trivial KF middleware, written as a user of WeCom writes one: it talks
//! to kfsim over HTTP only, exactly as it would to qyapi.weixin.qq.com.
//! It is the fast counterpart of `examples/middleware/wechatpy_middleware.py`,
//! for benchmarks (`benches/middleware/run.sh`) and tests.
//!
//! On each `kf_msg_or_event` callback it answers `success` at once and, in a
//! task of its own, reads the account's log with `sync_msg` (the callback's
//! Token, the cursor it keeps, until `has_more` is 0). Each customer message
//! of a session it has not handed off yet is answered once by the bot
//! (`--mode bot`) and put in the waiting pool (`service_state/trans` to 2);
//! later messages of that session are the servicers' business. A session
//! ended by its servicer is logged (`session_status_change` 3), but one the
//! customer left while waiting is not: the next message of a customer
//! handed off and not known to be with a servicer is checked with
//! `service_state/get` (at most about once per session), so that a
//! returning customer is not ignored.
//!
//!   cargo run --release --example trivial_middleware -- --port 8000 --api http://127.0.0.1:8080
//!
//! `GET /stats` answers what it did, as JSON, so that a test can reconcile it
//! with kfsim's own counts: `callbacks`, `synced` (entries sync_msg
//! returned), `customer_messages` (of those, origin 3), `bot_replies`
//! (send_msg accepted), `handed_off` (trans to 2 accepted), `errors`
//! (non-zero errcodes by code, every call), `api_calls` (answered calls by
//! endpoint, each retry counted) and `transport_errors` (calls without an
//! HTTP answer or with one that is not JSON: kfsim may not have seen them).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kfsim::service::crypto::CallbackCrypto;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::{OwnedMutexGuard, Semaphore};

#[derive(Parser)]
#[command(about = "A trivial, fast KF middleware: bot reply and hand-off to the waiting pool")]
struct Args {
    /// Port to listen on (0: any free port; the chosen one is printed).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// WeCom's base URL (kfsim's address); a trailing `/cgi-bin/` is accepted.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    #[arg(long, default_value = "kfsim")]
    corpid: String,
    #[arg(long, default_value = "kfsim-secret")]
    secret: String,
    /// The callback's Token.
    #[arg(long, default_value = "kfsimToken")]
    token: String,
    /// The callback's EncodingAESKey.
    #[arg(long, default_value = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C")]
    aes_key: String,
    /// `bot`: answer a new session once, then hand it to the pool;
    /// `pool`: hand it to the pool without a word.
    #[arg(long, value_enum, default_value_t = Mode::Bot)]
    mode: Mode,
    /// Sessions being answered and handed off at once (each is two calls
    /// in a row, so this, not CPU, bounds the rate on a busy machine).
    #[arg(long, default_value_t = 1024)]
    concurrency: usize,
    /// Worker threads (1: everything on one core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Bot,
    Pool,
}

const BOT_TEXT: &str = "Hello, I am the bot. A colleague will take over.";

/// Codes that mean the access_token is no good: fetch another, call again.
const TOKEN_CODES: [i64; 3] = [40014, 42001, 40001];

/// The largest body read from a request or an answer.
const MAX_BODY: usize = 4 << 20;

/// Customers remembered (see [`Sessions`]); beyond this the oldest half is
/// forgotten, and a forgotten customer costs at most a refused call.
const SESSIONS_CAP: usize = 1_000_000;

#[derive(Clone, Copy)]
enum Endpoint {
    GetToken,
    SyncMsg,
    SendMsg,
    Trans,
    GetState,
}

impl Endpoint {
    const ALL: [Endpoint; 5] =
        [Endpoint::GetToken, Endpoint::SyncMsg, Endpoint::SendMsg, Endpoint::Trans, Endpoint::GetState];

    fn name(self) -> &'static str {
        match self {
            Endpoint::GetToken => "gettoken",
            Endpoint::SyncMsg => "sync_msg",
            Endpoint::SendMsg => "send_msg",
            Endpoint::Trans => "service_state/trans",
            Endpoint::GetState => "service_state/get",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Endpoint::GetToken => "/cgi-bin/gettoken",
            Endpoint::SyncMsg => "/cgi-bin/kf/sync_msg",
            Endpoint::SendMsg => "/cgi-bin/kf/send_msg",
            Endpoint::Trans => "/cgi-bin/kf/service_state/trans",
            Endpoint::GetState => "/cgi-bin/kf/service_state/get",
        }
    }
}

#[derive(Default)]
struct Stats {
    callbacks: AtomicU64,
    synced: AtomicU64,
    customer_messages: AtomicU64,
    bot_replies: AtomicU64,
    handed_off: AtomicU64,
    transport_errors: AtomicU64,
    api_calls: [AtomicU64; 5],
    errors: Mutex<BTreeMap<i64, u64>>,
}

impl Stats {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn error(&self, errcode: i64) {
        *self.errors.lock().unwrap_or_else(|e| e.into_inner()).entry(errcode).or_default() += 1;
    }

    fn json(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let errors: serde_json::Map<String, serde_json::Value> = self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let api_calls: serde_json::Map<String, serde_json::Value> = Endpoint::ALL
            .iter()
            .map(|e| (e.name().to_owned(), json!(get(&self.api_calls[*e as usize]))))
            .collect();
        json!({
            "callbacks": get(&self.callbacks),
            "synced": get(&self.synced),
            "customer_messages": get(&self.customer_messages),
            "bot_replies": get(&self.bot_replies),
            "handed_off": get(&self.handed_off),
            "errors": errors,
            "api_calls": api_calls,
            "transport_errors": get(&self.transport_errors),
        })
        .to_string()
    }
}

/// Why a call failed.
enum Failed {
    /// No HTTP answer, or one that is not JSON.
    Transport(String),
    /// An answer with this errcode.
    Code(i64),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Transport(e) => write!(f, "{e}"),
            Failed::Code(c) => write!(f, "errcode {c}"),
        }
    }
}

trait Answer: DeserializeOwned {
    fn errcode(&self) -> i64;
}

#[derive(Deserialize)]
struct Plain {
    #[serde(default)]
    errcode: i64,
}

impl Answer for Plain {
    fn errcode(&self) -> i64 {
        self.errcode
    }
}

#[derive(Deserialize)]
struct StateAnswer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    service_state: u8,
}

impl Answer for StateAnswer {
    fn errcode(&self) -> i64 {
        self.errcode
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    access_token: String,
}

impl Answer for TokenAnswer {
    fn errcode(&self) -> i64 {
        self.errcode
    }
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    next_cursor: String,
    #[serde(default)]
    has_more: u8,
    #[serde(default)]
    msg_list: Vec<Entry>,
}

impl Answer for Page {
    fn errcode(&self) -> i64 {
        self.errcode
    }
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    open_kfid: String,
    #[serde(default)]
    external_userid: String,
    #[serde(default)]
    origin: u8,
    event: Option<Event>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    open_kfid: String,
    #[serde(default)]
    external_userid: String,
    #[serde(default)]
    change_type: u8,
    new_servicer_userid: Option<String>,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// WeCom's API with a cached access_token.
struct Api {
    http: HttpClient,
    base: String,
    corpid: String,
    secret: String,
    /// The token and how many times it was fetched, so that calls refused
    /// together fetch one new token between them, not one each.
    token: Mutex<(u64, Option<Arc<str>>)>,
    refreshing: tokio::sync::Mutex<()>,
    stats: Arc<Stats>,
}

impl Api {
    async fn request<T: Answer>(&self, ep: Endpoint, req: Request<Full<Bytes>>) -> Result<T, Failed> {
        let answer = async {
            let resp = self.http.request(req).await.map_err(|e| e.to_string())?;
            let body = Limited::new(resp.into_body(), MAX_BODY).collect().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(body.to_bytes())
        }
        .await;
        let body = answer.map_err(|e| {
            Stats::add(&self.stats.transport_errors, 1);
            Failed::Transport(e)
        })?;
        Stats::add(&self.stats.api_calls[ep as usize], 1);
        let v: T = serde_json::from_slice(&body).map_err(|e| {
            Stats::add(&self.stats.transport_errors, 1);
            Failed::Transport(format!("{}: not the JSON expected: {e}", ep.name()))
        })?;
        match v.errcode() {
            0 => Ok(v),
            c => {
                self.stats.error(c);
                Err(Failed::Code(c))
            }
        }
    }

    fn current(&self) -> (u64, Option<Arc<str>>) {
        self.token.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fetch a new token unless another call did since `seen`.
    async fn refresh(&self, seen: u64) -> Result<(), Failed> {
        let _one_at_a_time = self.refreshing.lock().await;
        if self.current().0 != seen {
            return Ok(());
        }
        let url = format!("{}/cgi-bin/gettoken?corpid={}&corpsecret={}", self.base, self.corpid, self.secret);
        let req = Request::get(url).body(Full::default()).map_err(|e| Failed::Transport(e.to_string()))?;
        let t: TokenAnswer = self.request(Endpoint::GetToken, req).await?;
        let mut token = self.token.lock().unwrap_or_else(|e| e.into_inner());
        *token = (token.0 + 1, Some(t.access_token.into()));
        Ok(())
    }

    /// [`Api::call`], again after a short pause when the service was busy
    /// (-1, 45009) or, if `resend` (the call is safe to repeat), did not
    /// answer. The pauses are short: a customer is waiting.
    async fn call_retrying<T: Answer>(
        &self,
        ep: Endpoint,
        body: &serde_json::Value,
        resend: bool,
    ) -> Result<T, Failed> {
        let mut pause = Duration::from_millis(10);
        for _ in 0..3 {
            match self.call(ep, body).await {
                Err(Failed::Code(-1 | 45009)) => {}
                Err(Failed::Transport(_)) if resend => {}
                r => return r,
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        self.call(ep, body).await
    }

    /// POST a JSON body to an endpoint that needs the access_token; with a
    /// refused token, fetch another and call once more.
    async fn call<T: Answer>(&self, ep: Endpoint, body: &serde_json::Value) -> Result<T, Failed> {
        let body = Bytes::from(body.to_string());
        let mut fresh = false;
        loop {
            let (seen, token) = self.current();
            let Some(token) = token else {
                self.refresh(seen).await?;
                fresh = true;
                continue;
            };
            let url = format!("{}{}?access_token={token}", self.base, ep.path());
            let req = Request::post(url)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
                .map_err(|e| Failed::Transport(e.to_string()))?;
            match self.request(ep, req).await {
                Err(Failed::Code(c)) if TOKEN_CODES.contains(&c) && !fresh => {
                    self.refresh(seen).await?;
                    fresh = true;
                }
                r => return r,
            }
        }
    }
}

/// What the middleware knows of a customer's session.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Being answered and handed off now.
    Handing,
    /// Handed off: waiting in the pool, with a servicer, or ended without
    /// an event (the customer left the pool; the session idled out).
    Handed,
    /// With a servicer: only a servicer ends it, and that is logged.
    Servicer,
}

/// Customers by `open_kfid` and `external_userid` whose session is not
/// (or not only) the bot's, in two generations: when the young one fills,
/// the old one is dropped, so memory stays bounded without a clock.
#[derive(Default)]
struct Sessions {
    young: HashMap<String, Known>,
    old: HashMap<String, Known>,
}

impl Sessions {
    fn key(open_kfid: &str, external_userid: &str) -> String {
        format!("{open_kfid}\n{external_userid}")
    }

    fn get(&self, key: &str) -> Option<Known> {
        self.young.get(key).or_else(|| self.old.get(key)).copied()
    }

    fn set(&mut self, key: String, k: Known) {
        self.old.remove(&key);
        if self.young.len() >= SESSIONS_CAP / 2 && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, k);
    }

    fn remove(&mut self, key: &str) {
        self.young.remove(key);
        self.old.remove(key);
    }
}

/// One customer-service account: its cursor, read by one sync at a time.
struct Account {
    open_kfid: String,
    cursor: Arc<tokio::sync::Mutex<String>>,
    /// A callback came since the running sync started: read once more.
    again: AtomicBool,
    /// The Token of the newest callback (each is valid for 10 minutes).
    token: Mutex<String>,
}

struct App {
    api: Api,
    crypto: CallbackCrypto,
    corpid: String,
    mode: Mode,
    stats: Arc<Stats>,
    accounts: Mutex<HashMap<String, Arc<Account>>>,
    sessions: Mutex<Sessions>,
    /// Bounds the sessions being answered at once; a sync waits for room,
    /// so a burst slows the reading instead of piling up tasks.
    room: Arc<Semaphore>,
}

impl App {
    fn account(&self, open_kfid: &str) -> Arc<Account> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        accounts
            .entry(open_kfid.to_owned())
            .or_insert_with(|| {
                Arc::new(Account {
                    open_kfid: open_kfid.to_owned(),
                    cursor: Arc::new(tokio::sync::Mutex::new(String::new())),
                    again: AtomicBool::new(false),
                    token: Mutex::new(String::new()),
                })
            })
            .clone()
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A callback for `open_kfid`: start a sync, or have the running one
    /// read once more (a callback must never be lost, and must never wait).
    fn callback(self: &Arc<Self>, open_kfid: &str, token: &str) {
        let acct = self.account(open_kfid);
        *acct.token.lock().unwrap_or_else(|e| e.into_inner()) = token.to_owned();
        acct.again.store(true, Ordering::SeqCst);
        if let Ok(guard) = acct.cursor.clone().try_lock_owned() {
            tokio::spawn(self.clone().drain(acct, guard));
        }
    }

    /// Sync while callbacks keep coming. The flag is checked again after
    /// the lock is released: a callback that came between the last check
    /// and the release found the lock taken and relies on this.
    async fn drain(self: Arc<Self>, acct: Arc<Account>, mut cursor: OwnedMutexGuard<String>) {
        loop {
            while acct.again.swap(false, Ordering::SeqCst) {
                self.sync(&acct, &mut cursor).await;
            }
            drop(cursor);
            if !acct.again.load(Ordering::SeqCst) {
                return;
            }
            match acct.cursor.clone().try_lock_owned() {
                Ok(g) => cursor = g,
                Err(_) => return,
            }
        }
    }

    /// Read the log from the cursor until `has_more` is 0.
    async fn sync(self: &Arc<Self>, acct: &Account, cursor: &mut String) {
        loop {
            let token = acct.token.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let body = json!({"cursor": *cursor, "token": token, "limit": 1000, "open_kfid": acct.open_kfid});
            let page: Page = match self.api.call_retrying(Endpoint::SyncMsg, &body, true).await {
                Ok(p) => p,
                // the cursor stays: the next callback reads from it
                Err(e) => {
                    eprintln!("sync_msg of {} failed: {e}", acct.open_kfid);
                    return;
                }
            };
            Stats::add(&self.stats.synced, page.msg_list.len() as u64);
            for entry in page.msg_list {
                self.entry(entry).await;
            }
            *cursor = page.next_cursor;
            if page.has_more == 0 {
                return;
            }
        }
    }

    async fn entry(self: &Arc<Self>, e: Entry) {
        if let Some(ev) = e.event {
            if ev.event_type == "session_status_change" {
                let key = Sessions::key(&ev.open_kfid, &ev.external_userid);
                match (ev.change_type, ev.new_servicer_userid) {
                    (1, _) | (2, Some(_)) => self.sessions().set(key, Known::Servicer),
                    (2, None) => self.sessions().set(key, Known::Handed),
                    (3, _) => self.sessions().remove(&key),
                    _ => {}
                }
            }
            return;
        }
        if e.origin != 3 {
            return;
        }
        Stats::add(&self.stats.customer_messages, 1);
        let key = Sessions::key(&e.open_kfid, &e.external_userid);
        let known = self.sessions().get(&key);
        match known {
            Some(Known::Handing | Known::Servicer) => return,
            // The session may have ended unannounced and this message
            // started the next one: ask. Awaited here, in log order, so
            // that no later entry of this customer is read meanwhile.
            Some(Known::Handed) => {
                let body = json!({"open_kfid": e.open_kfid, "external_userid": e.external_userid});
                match self.api.call_retrying::<StateAnswer>(Endpoint::GetState, &body, true).await {
                    Ok(a) if a.service_state <= 1 => {}
                    Ok(a) if a.service_state == 3 => return self.sessions().set(key, Known::Servicer),
                    _ => return,
                }
            }
            None => {}
        }
        // marked before the hand-off is done: later messages of the
        // session may be in this very page
        self.sessions().set(key.clone(), Known::Handing);
        let permit = self.room.clone().acquire_owned().await.expect("never closed");
        let app = self.clone();
        tokio::spawn(async move {
            app.hand_off(&e.open_kfid, &e.external_userid, key).await;
            drop(permit);
        });
    }

    async fn hand_off(&self, open_kfid: &str, external_userid: &str, key: String) {
        if self.mode == Mode::Bot {
            let body = json!({"touser": external_userid, "open_kfid": open_kfid,
                              "msgtype": "text", "text": {"content": BOT_TEXT}});
            // Not resent without an answer: it may have gone out. A refused
            // reply does not keep the customer from the servicers.
            if self.api.call_retrying::<Plain>(Endpoint::SendMsg, &body, false).await.is_ok() {
                Stats::add(&self.stats.bot_replies, 1);
            }
        }
        let body = json!({"open_kfid": open_kfid, "external_userid": external_userid, "service_state": 2});
        // resent without an answer: a trans that went through is 95016 the second time
        let handed = match self.api.call_retrying::<Plain>(Endpoint::Trans, &body, true).await {
            Ok(_) => {
                Stats::add(&self.stats.handed_off, 1);
                true
            }
            // not in 0 or 1 any more (the customer left before the hand-off)
            Err(Failed::Code(95016)) => true,
            // still the bot's: the customer's next message tries again
            Err(_) => false,
        };
        let mut sessions = self.sessions();
        // an event read meanwhile knows better
        if matches!(sessions.get(&key), None | Some(Known::Handing)) {
            if handed {
                sessions.set(key, Known::Handed);
            } else {
                sessions.remove(&key);
            }
        }
    }

    async fn serve(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        let query = query(req.uri().query().unwrap_or(""));
        match (method, path.as_str()) {
            (Method::GET, "/stats") => {
                let mut r = answer(StatusCode::OK, self.stats.json());
                r.headers_mut()
                    .insert(hyper::header::CONTENT_TYPE, "application/json".parse().expect("valid"));
                r
            }
            (Method::GET, _) => match self.verify_url(&query) {
                Ok(echo) => answer(StatusCode::OK, echo),
                Err(e) => answer(StatusCode::FORBIDDEN, e.to_string()),
            },
            (Method::POST, _) => {
                let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => return answer(StatusCode::BAD_REQUEST, e.to_string()),
                };
                match self.open_callback(&query, &body) {
                    Ok((open_kfid, token)) => {
                        Stats::add(&self.stats.callbacks, 1);
                        self.callback(&open_kfid, &token);
                        answer(StatusCode::OK, "success".into())
                    }
                    Err(e) => answer(StatusCode::FORBIDDEN, e.to_string()),
                }
            }
            _ => answer(StatusCode::METHOD_NOT_ALLOWED, String::new()),
        }
    }

    /// The URL check: the plaintext of a signed `echostr`.
    fn verify_url(&self, q: &HashMap<String, String>) -> Result<String> {
        let field = |k: &str| q.get(k).map(String::as_str).with_context(|| format!("`{k}` missing"));
        let echostr = field("echostr")?;
        anyhow::ensure!(
            self.crypto.verify(field("msg_signature")?, field("timestamp")?, field("nonce")?, echostr),
            "bad msg_signature"
        );
        Ok(String::from_utf8(self.decrypt(echostr)?)?)
    }

    /// A signed, encrypted callback: its `OpenKfId` and `Token`.
    fn open_callback(&self, q: &HashMap<String, String>, body: &[u8]) -> Result<(String, String)> {
        let field = |k: &str| q.get(k).map(String::as_str).with_context(|| format!("`{k}` missing"));
        let outer = std::str::from_utf8(body)?;
        let doc = roxmltree::Document::parse(outer)?;
        let encrypted = text_of(&doc, "Encrypt").context("no <Encrypt>")?;
        anyhow::ensure!(
            self.crypto.verify(field("msg_signature")?, field("timestamp")?, field("nonce")?, &encrypted),
            "bad msg_signature"
        );
        let plain = String::from_utf8(self.decrypt(&encrypted)?)?;
        let inner = roxmltree::Document::parse(&plain)?;
        let open_kfid = text_of(&inner, "OpenKfId").context("no <OpenKfId>")?;
        let token = text_of(&inner, "Token").unwrap_or_default();
        Ok((open_kfid, token))
    }

    fn decrypt(&self, encrypted: &str) -> Result<Vec<u8>> {
        let (msg, receive_id) = self.crypto.decrypt(encrypted)?;
        anyhow::ensure!(receive_id == self.corpid, "encrypted for {receive_id:?}, not this corpid");
        Ok(msg)
    }
}

fn text_of(doc: &roxmltree::Document, tag: &str) -> Option<String> {
    doc.descendants().find(|n| n.has_tag_name(tag)).map(|n| n.text().unwrap_or("").to_owned())
}

fn query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned();
            (k.to_owned(), v)
        })
        .collect()
}

/// `host:port` of an `http://` URL.
fn authority(url: &str) -> Option<String> {
    let uri: hyper::Uri = url.parse().ok()?;
    let a = uri.authority()?;
    Some(format!("{}:{}", a.host(), a.port_u16().unwrap_or(80)))
}

fn answer(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r
}

async fn run(args: Args) -> Result<()> {
    let stats = Arc::new(Stats::default());
    let base = args.api.trim_end_matches('/').trim_end_matches("/cgi-bin").to_owned();
    // kfsim closes connections idle for 30 s; dropping them sooner here
    // keeps a request from going out on one the server is closing
    let http = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(10)).build_http();
    let app = Arc::new(App {
        api: Api {
            http,
            base,
            corpid: args.corpid.clone(),
            secret: args.secret,
            token: Mutex::new((0, None)),
            refreshing: tokio::sync::Mutex::new(()),
            stats: stats.clone(),
        },
        crypto: CallbackCrypto::new(&args.token, &args.aes_key, &args.corpid)?,
        corpid: args.corpid,
        mode: args.mode,
        stats,
        accounts: Mutex::new(HashMap::new()),
        sessions: Mutex::new(Sessions::default()),
        room: Arc::new(Semaphore::new(args.concurrency.max(1))),
    });
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
    println!("listening on {}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    // The token is fetched before the first callback needs it. kfsim may
    // not be up yet (it checks this URL before it serves): wait for its
    // port first, so that the waiting is not counted as failed calls.
    let a = app.clone();
    tokio::spawn(async move {
        if let Some(addr) = authority(&a.api.base) {
            while tokio::net::TcpStream::connect(addr.as_str()).await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if let Err(e) = a.api.refresh(0).await {
            eprintln!("gettoken failed: {e} (tried again when a call needs it)");
        }
    });
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.serve(req).await) }
            });
            let _ =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?
    };
    rt.block_on(run(args))
}
