//! `kfsim run --engine live --middleware URL` against real middlewares, as
//! two processes, the way CI runs it: the wechatpy example (and its
//! variants with the mistakes load tests exist to catch), a middleware
//! that is down, and one that answers garbage.
//!
//! Every figure of the summary's `middleware` section is reconciled with
//! what the middleware itself counted.

mod common;
mod sdk_util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kfsim::service::crypto::CallbackCrypto;
use sdk_util::{Proc, easywechat, free_port, langbot_python, python};
use serde_json::Value;

const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const TOKEN: &str = "kfsimToken";

/// The runs here measure wall-clock behaviour on two cores: the one
/// compared with the simulator runs alone; the others may share.
static QUIET: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    QUIET.read().unwrap_or_else(|e| e.into_inner())
}

/// The wechatpy example middleware (with `mistake`, a variant), calling
/// kfsim's WeCom on `api_port`.
fn wechatpy_middleware(api_port: u16, mistake: Option<&str>) -> (Proc, u16) {
    let port = free_port();
    let mut cmd = Command::new(python());
    cmd.arg("examples/middleware/wechatpy_middleware.py")
        .args(["--port", &port.to_string()])
        .env("KFSIM_API", format!("http://127.0.0.1:{api_port}/cgi-bin/"));
    if let Some(m) = mistake {
        cmd.args(["--mistake", m]);
    }
    let p = Proc::start(&mut cmd);
    p.wait_for("listening");
    (p, port)
}

/// `kfsim run scenarios/middleware.toml --engine live --middleware URL`
/// with kfsim's WeCom on `api_port`; its output and the run folder.
fn run_kfsim(api_port: u16, callback: &str, name: &str, extra: &[&str]) -> (Output, PathBuf) {
    let out = std::env::temp_dir().join(format!("kfsim-mw-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let output = Command::new(env!("CARGO_BIN_EXE_kfsim"))
        .args(["run", "scenarios/middleware.toml", "--engine", "live", "--quiet", "--no-gates"])
        .args(["--middleware", callback, "--listen", &format!("127.0.0.1:{api_port}")])
        // 6 minutes of scenario time at ×20: 18 s of wall time
        .args(["--set", "duration=6m", "--set", "warmup=1m"])
        .args(extra)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("kfsim runs");
    (output, out)
}

fn summary(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("summary.json")).expect("summary.json written");
    serde_json::from_str(&text).unwrap()
}

/// GET a JSON document (the middleware's /stats) over plain HTTP/1.0.
fn get_json(port: u16, path: &str) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

/// Successful calls of one endpoint, as kfsim counted them.
fn ok_calls(mw: &Value, endpoint: &str) -> u64 {
    let e = &mw["api"][endpoint];
    e["count"].as_u64().unwrap_or(0) - e["errors"].as_u64().unwrap_or(0)
}

/// Errcodes over every endpoint, as kfsim counted them.
fn errcodes(mw: &Value) -> serde_json::Map<String, Value> {
    let mut all = serde_json::Map::new();
    for e in mw["api"].as_object().unwrap().values() {
        for (code, n) in e["errcodes"].as_object().unwrap() {
            let sum = all.get(code).and_then(Value::as_u64).unwrap_or(0) + n.as_u64().unwrap();
            all.insert(code.clone(), sum.into());
        }
    }
    all
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The same middleware written with node-easywechat 3.6: EasyWeChat's
/// Server checks and decrypts kfsim's callbacks, its client makes the
/// calls. Counts what it did at `GET /stats`, as the wechatpy one.
/// It runs in a folder of its own: node-easywechat caches its access
/// token in a file in the working folder, which is not the repository's.
fn easywechat_middleware(api_port: u16) -> (Proc, u16) {
    let port = free_port();
    let work = std::env::temp_dir().join(format!("kfsim-mw-node-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/middleware/easywechat_middleware.js");
    let p = Proc::start(
        Command::new("node")
            .arg(script)
            .args(["--port", &port.to_string()])
            .env("KFSIM_API", format!("http://127.0.0.1:{api_port}/"))
            .env("NODE_PATH", easywechat().join("node_modules"))
            .current_dir(&work),
    );
    p.wait_for("listening");
    (p, port)
}

/// The plain middleware: every figure of the summary's middleware section
/// agrees exactly with what the middleware counted, and the customers'
/// side shows the bot's answers as first responses.
#[test]
fn the_summary_agrees_exactly_with_what_the_middleware_counted() {
    let _shared = shared();
    let api = free_port();
    let (mw_proc, port) = wechatpy_middleware(api, None);
    agrees_exactly(api, mw_proc, port, "plain");
}

/// The same of a middleware written with the other SDK family (EasyWeChat,
/// in its Node.js port): its Server takes kfsim's signed, encrypted
/// callbacks unchanged.
#[test]
fn a_node_easywechat_middleware_agrees_exactly_too() {
    let _shared = shared();
    let api = free_port();
    let (mw_proc, port) = easywechat_middleware(api);
    agrees_exactly(api, mw_proc, port, "easywechat");
}

/// Run kfsim against the middleware `mw_proc` (listening on `port`, its
/// callback URL at `path`, calling kfsim's WeCom on `api`), which must
/// succeed: kfsim's output, the run folder, and what the middleware
/// counted (its `/stats`, read before it stops).
fn run_and_count(api: u16, mw_proc: Proc, port: u16, path: &str, name: &str) -> (Output, PathBuf, Value) {
    let (o, dir) = run_kfsim(api, &format!("http://127.0.0.1:{port}{path}"), name, &[]);
    assert!(o.status.success(), "exit {:?}: {}", o.status.code(), stderr(&o));
    let stats = get_json(port, "/stats");
    drop(mw_proc);
    (o, dir, stats)
}

/// A count in a summary or a middleware's `/stats`.
fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("a count: {v}"))
}

/// Run kfsim against the middleware `mw_proc` (listening on `port`, calling
/// kfsim's WeCom on `api`) and reconcile the summary with its `/stats`.
fn agrees_exactly(api: u16, mw_proc: Proc, port: u16, name: &str) {
    let (o, dir, stats) = run_and_count(api, mw_proc, port, "/kf/callback", name);
    let s = summary(&dir);
    let mw = &s["middleware"];
    let n = count;
    let at_mw = |k: &str| n(&stats[k]);
    eprintln!("middleware: {stats}\nkfsim: {mw:#}");
    assert!(at_mw("handed_off") > 50, "enough sessions to mean something: {stats}");
    assert_eq!(n(&mw["callbacks"]["delivered"]), at_mw("callbacks"), "callbacks it received");
    assert_eq!(n(&mw["callbacks"]["sent"]), at_mw("callbacks"), "none failed");
    assert_eq!(n(&mw["callbacks"]["failed"]), 0);
    assert_eq!(n(&mw["synced"]), at_mw("synced"), "log entries sync_msg gave it");
    assert_eq!(n(&mw["sync_lag_ms"]["count"]), at_mw("synced"));
    assert_eq!(ok_calls(mw, "kf/send_msg_on_event"), at_mw("welcomed"));
    assert_eq!(ok_calls(mw, "kf/send_msg"), at_mw("bot_replies"));
    assert_eq!(ok_calls(mw, "kf/service_state/trans"), at_mw("handed_off"));
    assert_eq!(n(&mw["routed_ms"]["count"]), at_mw("handed_off"), "one hand-off per session");
    assert_eq!(Value::Object(errcodes(mw)), stats["errors"], "errcodes it got");
    // it answers each session's message once before it hands the session
    // over: one bot-reply sample per session it answered. A session that
    // leaves 0/1 between the middleware's service_state/get and its
    // send_msg has that send_msg refused with 95018; its message still has
    // a sample when the welcome (send_msg_on_event), sent after it, had
    // answered it first
    let bot_samples = n(&mw["bot_reply_ms"]["count"]);
    let too_late = mw["api"]["kf/send_msg"]["errcodes"].get("95018").map_or(0, n);
    assert!(
        (at_mw("bot_replies")..=at_mw("bot_replies") + too_late).contains(&bot_samples),
        "{bot_samples} bot-reply samples for {} replies and {too_late} refused: {stats}",
        at_mw("bot_replies")
    );
    assert!(too_late * 20 < at_mw("bot_replies"), "a rare race, not the rule: {stats}");
    // a customer whose patience runs out between the middleware's
    // service_state/get and its trans has ended the session: that trans
    // is refused with 95016 (4 → 2), as WeCom would; every other answered
    // session was handed off
    let refused = stats["errors"].get("95016").map_or(0, n);
    assert_eq!(at_mw("handed_off") + refused, at_mw("bot_replies"), "{stats}");
    assert!(refused * 20 < at_mw("bot_replies"), "a rare race, not the rule: {stats}");
    assert_eq!(n(&mw["unacted"]), 0, "it acts on every message it is given");
    assert_eq!(n(&mw["sent_twice"]), 0);
    assert_eq!(n(&mw["replies_after_end"]), 0);
    assert_eq!(n(&mw["sync_without_token"]), 0, "it pulls with the callback's Token");
    // (its threads may race for the first token; kfsim's own driver is not counted)
    assert!(n(&mw["gettoken"]) <= 2, "it caches its token: {}", mw["gettoken"]);
    // what the customers saw: the welcome or the bot came first
    let first = n(&s["latency_ms"]["first_response"]["count"]);
    let answered = n(&s["sessions"]["answered"]);
    assert!(first >= answered, "every answered session had a first response: {first} < {answered}");
    // (the customers' figures cover sessions after the warm-up, the
    // middleware's the whole run)
    let bot = n(&s["messages"]["bot"]);
    let sent_to_customers = at_mw("welcomed") + at_mw("bot_replies");
    assert!(bot > 0 && bot <= sent_to_customers, "bot {bot} of {sent_to_customers}");
    // its added latency is tiny against a 30 s service level at ×20
    let effect = mw["scale_effect"].as_f64().unwrap();
    assert!(effect < 0.1, "scale effect {effect}");
    assert!(!stderr(&o).contains("warning: at ×"), "{}", stderr(&o));
    // a gate may name any of the middleware's figures: each is in its summary
    // (an errcode only once one was caused: see the quota test)
    let leaves = kfsim::gate::leaf_paths(&s);
    for pattern in
        kfsim::gate::LIVE_ONLY.iter().filter(|p| p.starts_with("middleware.") && !p.contains("errcodes"))
    {
        assert!(
            leaves.iter().any(|p| kfsim::gate::matches_pattern(p, pattern)),
            "`{pattern}` is in no summary"
        );
    }
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("id=\"middleware\"") && html.contains("kf/sync_msg"), "the report shows it");
}

/// LangBot's WeCom KF client (tests/sdk/langbot_kf.py: a middleware that
/// others wrote, for their own users, with WeCom's WXBizMsgCrypt sample
/// and httpx): it verifies kfsim's callback URL, decrypts every callback,
/// keeps its `sync_msg` cursor and answers every text, unchanged but for
/// its base URL. It never hands a session over: the customers who wanted
/// people give up, which the summary says, and the bot's answer is every
/// session's first response.
#[test]
fn a_langbot_middleware_runs_against_kfsim_unchanged() {
    let _shared = shared();
    let api = free_port();
    let port = free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/langbot_kf.py");
    let mw_proc = Proc::start(
        Command::new(langbot_python())
            .arg(script)
            .arg(port.to_string())
            .env("KFSIM_API", format!("http://127.0.0.1:{api}/cgi-bin")),
    );
    mw_proc.wait_for("listening");
    let (_, dir, stats) = run_and_count(api, mw_proc, port, "/callback/command", "langbot");
    let s = summary(&dir);
    let mw = &s["middleware"];
    let n = count;
    let at_mw = |k: &str| n(&stats[k]);
    eprintln!("langbot: {stats}\nkfsim: {mw:#}");
    assert!(at_mw("texts") > 50, "enough messages to mean something: {stats}");
    assert_eq!((at_mw("reply_errors"), at_mw("errors_logged")), (0, 0), "{stats}");
    // each customer text reached its handler once (its cursor and its
    // guard against messages synced twice), and each got its answer
    assert_eq!(n(&mw["customer_messages"]), at_mw("texts"));
    assert_eq!(at_mw("replies"), at_mw("texts"));
    assert_eq!(ok_calls(mw, "kf/send_msg"), at_mw("replies"));
    assert_eq!(n(&mw["bot_reply_ms"]["count"]), at_mw("replies"));
    assert_eq!(n(&mw["unacted"]), 0);
    assert_eq!(n(&mw["resynced"]), 0, "it keeps its cursor per open_kfid");
    assert_eq!(n(&mw["sync_without_token"]), 0);
    assert_eq!(n(&mw["sent_twice"]), 0);
    assert!(errcodes(mw).is_empty(), "{:?}", errcodes(mw));
    let cb = &mw["callbacks"];
    assert_eq!((n(&cb["failed"]), n(&cb["delivered"])), (0, n(&cb["sent"])), "{cb}");
    assert!(n(&mw["gettoken"]) <= 2, "it caches its token: {}", mw["gettoken"]);
    // what the customers saw: the bot answered first, and nobody took
    // over. A customer whose patience (exponential, mean 5 min) runs out in
    // the fraction of a second before the bot's answer leaves unanswered:
    // about 1 in 1 000; a few percent are allowed.
    let sessions = &s["sessions"];
    let first = n(&s["latency_ms"]["first_response"]["count"]);
    let offered = n(&sessions["offered"]);
    assert!(first <= offered && first * 100 >= offered * 95, "{first} first responses: {sessions}");
    assert_eq!(n(&sessions["answered"]), 0, "{sessions}");
    let m = &s["messages"];
    assert!(n(&m["replies"]) == 0 && n(&m["bot"]) >= first, "{m}");
    assert_eq!(n(&mw["routed_ms"]["count"]), 0);
}

/// Each mistake shows in the report as it should.
#[test]
fn a_middleware_without_a_token_cache_shows_in_gettoken() {
    let _shared = shared();
    let api = free_port();
    let (mw_proc, port) = wechatpy_middleware(api, Some("no-token-cache"));
    let (o, dir) = run_kfsim(api, &format!("http://127.0.0.1:{port}/kf/callback"), "no-cache", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    drop(mw_proc);
    let mw = &summary(&dir)["middleware"];
    let calls: u64 = mw["api"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "gettoken")
        .map(|(_, e)| e["count"].as_u64().unwrap())
        .sum();
    let gettoken = mw["gettoken"].as_u64().unwrap();
    assert!(calls > 100, "{mw:#}");
    assert!(gettoken >= calls, "a token fetched for every call: {gettoken} for {calls}");
}

#[test]
fn a_slow_callback_handler_is_retried_and_its_delay_reported() {
    let _shared = shared();
    let api = free_port();
    let (mw_proc, port) = wechatpy_middleware(api, Some("slow-callback"));
    let (o, dir) = run_kfsim(
        api,
        &format!("http://127.0.0.1:{port}/kf/callback"),
        "slow",
        &["--set", "duration=3m", "--set", "warmup=30s"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let stats = get_json(port, "/stats");
    drop(mw_proc);
    let mw = &summary(&dir)["middleware"];
    let c = &mw["callbacks"];
    assert!(c["retried"].as_u64().unwrap() > 0, "past the 5 s deadline, WeCom retries: {c}");
    assert!(
        stats["callbacks"].as_u64().unwrap() > c["delivered"].as_u64().unwrap(),
        "it handled callbacks kfsim had given up waiting for: {stats} vs {c}"
    );
    let routed_p50 = mw["routed_ms"]["p50"].as_f64().unwrap();
    // a message waits for the end of a 6 s handler that began before it
    assert!(routed_p50 >= 1_000.0, "sessions wait for its slow handler: {routed_p50} ms");
    assert!(mw["scale_effect"].as_f64().unwrap() > 0.1);
    assert!(stderr(&o).contains("warning: at ×20"), "the scale's effect is warned: {}", stderr(&o));
}

#[test]
fn ignoring_the_quota_shows_95001_and_messages_sent_twice() {
    let _shared = shared();
    let api = free_port();
    let (mw_proc, port) = wechatpy_middleware(api, Some("ignore-quota"));
    let (o, dir) = run_kfsim(api, &format!("http://127.0.0.1:{port}/kf/callback"), "quota", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stats = get_json(port, "/stats");
    drop(mw_proc);
    let mw = &summary(&dir)["middleware"];
    let refused = mw["api"]["kf/send_msg"]["errcodes"]["95001"].as_u64().unwrap();
    let leaves = kfsim::gate::leaf_paths(mw);
    assert!(leaves.contains("api.kf/send_msg.errcodes.95001"), "a gate can name it: {leaves:?}");
    assert!(refused > 20, "{mw:#}");
    assert_eq!(stats["errors"]["95001"], refused, "what it was refused");
    // five identical answers to one message, the sixth refused
    assert_eq!(mw["sent_twice"].as_u64().unwrap(), 4 * refused);
    assert_eq!(ok_calls(mw, "kf/send_msg"), stats["bot_replies"].as_u64().unwrap());
}

#[test]
fn replying_after_the_hand_off_shows_95018() {
    let _shared = shared();
    let api = free_port();
    let (mw_proc, port) = wechatpy_middleware(api, Some("reply-late"));
    let (o, dir) = run_kfsim(api, &format!("http://127.0.0.1:{port}/kf/callback"), "late", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stats = get_json(port, "/stats");
    drop(mw_proc);
    let mw = &summary(&dir)["middleware"];
    let wrong_state = mw["api"]["kf/send_msg"]["errcodes"]["95018"].as_u64().unwrap();
    assert!(wrong_state >= stats["handed_off"].as_u64().unwrap(), "one at least per hand-off: {mw:#}");
    assert_eq!(stats["errors"]["95018"], wrong_state);
}

/// A middleware that never answers the URL check: exit 3, soon, saying so.
#[test]
fn a_middleware_that_is_down_exits_3() {
    let _shared = shared();
    let api = free_port();
    let down = free_port();
    let started = Instant::now();
    let (o, _) =
        run_kfsim(api, &format!("http://127.0.0.1:{down}/kf/callback"), "down", &["--callback-wait", "2s"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(20), "gave up in {:?}", started.elapsed());
    assert!(stderr(&o).contains("never verified"), "{}", stderr(&o));
}

/// A middleware that passes the URL check and then answers every callback
/// with garbage: the run goes on, counts the failures and what was never
/// acted on, and the customers' side shows sessions nobody handed over.
#[test]
fn a_middleware_answering_garbage_is_measured_not_fatal() {
    let _shared = shared();
    let api = free_port();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || garbage_middleware(listener));
    let (o, dir) = run_kfsim(
        api,
        &format!("http://127.0.0.1:{port}/kf/callback"),
        "garbage",
        &["--set", "wecom.callback.timeout=1s", "--set", "wecom.callback.retries=1"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = summary(&dir);
    let mw = &s["middleware"];
    let c = &mw["callbacks"];
    assert_eq!(c["delivered"], 0, "{c}");
    assert!(c["failed"].as_u64().unwrap() > 0 && c["retried"].as_u64().unwrap() > 0, "{c}");
    assert!(mw["unacted"].as_u64().unwrap() > 0, "nobody acted on the messages: {mw:#}");
    assert_eq!(mw["synced"], 0);
    assert_eq!(s["sessions"]["answered"], 0, "no session reached a servicer");
    assert!(s["sessions"]["abandoned"].as_u64().unwrap() > 0);
    assert!(stderr(&o).contains("callbacks to the middleware failed"), "{}", stderr(&o));
}

/// Answers the URL check as WeCom expects, then every callback with bytes
/// that are not HTTP.
fn garbage_middleware(listener: TcpListener) {
    let crypto = CallbackCrypto::new(TOKEN, KEY, "kfsim").unwrap();
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]).into_owned();
        if let Some(query) = head.strip_prefix("GET ").and_then(|r| r.split_whitespace().next()) {
            let echostr = query
                .split_once('?')
                .map_or("", |(_, q)| q)
                .split('&')
                .find_map(|kv| kv.strip_prefix("echostr="))
                .map(percent_decode)
                .unwrap_or_default();
            let plain = crypto.decrypt(&echostr).map(|(p, _)| p).unwrap_or_default();
            let _ =
                write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", plain.len());
            let _ = s.write_all(&plain);
        } else {
            let _ = s.write_all(b"\x00\x01 not http at all \xff\r\n\r\n");
        }
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `examples/trivial_middleware` (built by `cargo test`; built here when a
/// narrower command did not).
fn trivial_middleware() -> PathBuf {
    let kfsim = Path::new(env!("CARGO_BIN_EXE_kfsim"));
    let exe = kfsim.parent().unwrap().join("examples").join("trivial_middleware");
    if !exe.exists() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--example", "trivial_middleware"]);
        if kfsim.parent().unwrap().ends_with("release") {
            cmd.arg("--release");
        }
        let built = cmd.status().expect("cargo runs");
        assert!(built.success() && exe.exists(), "building examples/trivial_middleware.rs");
    }
    exe
}

/// A middleware that moves every session to the pool at once adds only its
/// own latency: the run agrees with the simulator's runs of the same
/// scenario within the live-vs-sim tolerance of tests/live.rs.
#[test]
fn a_middleware_that_pools_at_once_agrees_with_the_simulator() {
    let _quiet = QUIET.write().unwrap_or_else(|e| e.into_inner());
    let text = std::fs::read_to_string("scenarios/live-check.toml").unwrap();
    let mut sc = kfsim::scenario::Scenario::parse(&text, "live-check.toml").unwrap();
    sc.wecom.callback = Some(kfsim::scenario::Callback {
        url: None,
        token: TOKEN.into(),
        encoding_aes_key: KEY.into(),
        timeout_us: 5_000_000,
        retries: 3,
        retry_delay_us: 0,
        max_in_flight: 64,
    });
    let api = free_port();
    let mw = Proc::start(
        Command::new(trivial_middleware())
            .args(["--port", "0", "--mode", "pool", "--api"])
            .arg(format!("http://127.0.0.1:{api}")),
    );
    let port: u16 = mw.wait_for("listening on").rsplit(' ').next().unwrap().trim().parse().unwrap();
    let url = format!("http://127.0.0.1:{port}/kf/callback");
    let listen = Some(([127, 0, 0, 1], api).into());
    let setup = kfsim::cli::run::WeComSetup::from_scenario(&sc, &url, listen).unwrap();
    let opts = kfsim::live::LiveOptions { time_scale: sc.time_scale, ..Default::default() };
    let run = kfsim::cli::run::run_live_middleware(&sc, opts, &setup, &mut |_| true).expect("the run works");
    drop(mw);
    let live = run.summary;
    let m = live.middleware.as_ref().unwrap();
    assert_eq!(m.unacted, 0, "it hands over every session");
    assert!(m.routed_ms.count > 1000, "{:?}", m.routed_ms);
    let wait_p = |s: &kfsim::summary::Summary| s.wait_probability.unwrap();
    let asa_s = |s: &kfsim::summary::Summary| s.asa_ms.unwrap() / 1e3;
    let (pm, psd) = common::sim_spread(&sc, 1..=20, wait_p);
    let (am, asd) = common::sim_spread(&sc, 1..=20, asa_s);
    eprintln!(
        "P(W>0): live {:.3}, sim {pm:.3} ± {psd:.3}; ASA: live {:.2} s, sim {am:.2} ± {asd:.2} s; routed p50 {:?} ms",
        wait_p(&live),
        asa_s(&live),
        m.routed_ms.p50
    );
    // the same tolerance as tests/live.rs, plus the middleware's own
    // routing time in scenario time
    let added_s = m.routed_ms.p50.unwrap() / 1e3 * sc.time_scale;
    assert!((wait_p(&live) - pm).abs() <= 4.0 * psd + 0.03, "wait probability disagrees");
    assert!((asa_s(&live) - am).abs() <= 4.0 * asd + 1.0 + added_s, "mean queue wait disagrees");
    assert_eq!(live.messages.lost, Some(0));
}
