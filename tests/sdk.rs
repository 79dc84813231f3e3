//! Real WeCom SDKs against `kfsim serve`, unchanged but for the base URL:
//! wechatpy 2.0 (the most used Python WeChat SDK) as a callback-driven
//! middleware, and its `WeChatCrypto` as an independent implementation of
//! the callback crypto. The SDK is installed by the test into a throwaway
//! virtual environment under Cargo's target directory (PyPI is one of the
//! registries CI reaches). Traffic goes only to loopback.

mod sdk_util;
mod service_util;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kfsim::service::crypto::CallbackCrypto;
use sdk_util::{Proc, easywechat, free_port, metrics, python};
use serde_json::{Value, json};
use service_util::{Client, batch, channel, say};

const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const TOKEN: &str = "kfsimToken";

fn get_json(port: u16, path: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = Client::connect(([127, 0, 0, 1], port).into()).await;
        c.get(path).await.1
    })
}

#[test]
fn wechatpys_crypto_and_kfsims_agree_both_ways() {
    let py = python();
    let ours = CallbackCrypto::new(TOKEN, KEY, "kfsim").unwrap();
    // wechatpy encrypts and signs; kfsim verifies and decrypts
    let script = format!(
        "from wechatpy.work.crypto import WeChatCrypto\n\
         c = WeChatCrypto('{TOKEN}', '{KEY}', 'kfsim')\n\
         print(c.encrypt_message('<xml><Content>你好 kfsim</Content></xml>', '4242', '1700000000'))"
    );
    let out = Command::new(&py).args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let xml = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        let doc = roxmltree::Document::parse(xml.trim()).unwrap();
        doc.descendants().find(|n| n.has_tag_name(name)).and_then(|n| n.text()).unwrap().to_owned()
    };
    let (encrypted, signature) = (field("Encrypt"), field("MsgSignature"));
    assert!(ours.verify(&signature, "1700000000", "4242", &encrypted), "{xml}");
    let (plain, receive_id) = ours.decrypt(&encrypted).unwrap();
    assert_eq!(
        (String::from_utf8(plain).unwrap().as_str(), receive_id.as_str()),
        ("<xml><Content>你好 kfsim</Content></xml>", "kfsim")
    );
    // kfsim encrypts and signs; wechatpy verifies and decrypts
    let echostr = ours.encrypt("1616140317555161061".as_bytes(), [9; 16]);
    let signature = ours.signature("1409659589", "263014780", &echostr);
    let script = format!(
        "from wechatpy.work.crypto import WeChatCrypto\n\
         c = WeChatCrypto('{TOKEN}', '{KEY}', 'kfsim')\n\
         print(c.check_signature('{signature}', '1409659589', '263014780', '{echostr}'))"
    );
    let out = Command::new(&py).args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "1616140317555161061");
}

#[test]
fn a_wechatpy_middleware_runs_against_kfsim_unchanged() {
    let py = python();
    let (kfsim_port, mw_port) = (free_port(), free_port());
    let middleware = Proc::start(
        Command::new(&py)
            .arg("examples/middleware/wechatpy_middleware.py")
            .args(["--port", &mw_port.to_string()])
            .env("KFSIM_API", format!("http://127.0.0.1:{kfsim_port}/cgi-bin/"))
            .env("KF_TOKEN", TOKEN)
            .env("KF_AES_KEY", KEY),
    );
    middleware.wait_for("listening");
    let kfsim = Proc::start(Command::new(env!("CARGO_BIN_EXE_kfsim")).args([
        "serve",
        "--addr",
        &format!("127.0.0.1:{kfsim_port}"),
        "--scenario",
        "scenarios/quickstart.toml",
        "--set",
        "agents.day-shift.count=3",
        "--api-managed",
        "--callback-url",
        &format!("http://127.0.0.1:{mw_port}/kf/callback"),
        "--callback-token",
        TOKEN,
        "--callback-aes-key",
        KEY,
    ]));
    kfsim.wait_for("listening");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut c = Client::connect(([127, 0, 0, 1], kfsim_port).into()).await;
        c.login().await;
        let list = c.ok("/cgi-bin/kf/account/list", json!({})).await;
        let kf = list["account_list"][0]["open_kfid"].as_str().unwrap().to_owned();
        let ch = channel(&mut c).await;
        let n = 6;
        let mut actions = Vec::new();
        for i in 0..n {
            let who = format!("cust{i}");
            actions.push(json!({"type": "enter", "customer": who, "open_kfid": kf, "scene": ""}));
            actions.push(say(&who, &kf, &format!("{i}-1"), "hi, is anyone there?"));
        }
        let r = batch(&mut c, &ch, actions).await;
        let externals: Vec<String> =
            (0..n).map(|i| r[2 * i + 1]["external_userid"].as_str().unwrap().to_owned()).collect();
        // the middleware welcomes, answers as a bot, and hands over to the
        // pool, where the account's rules give each a servicer
        for ext in &externals {
            let mut state = 0;
            for _ in 0..300 {
                let st = c
                    .ok("/cgi-bin/kf/service_state/get", json!({"open_kfid": kf, "external_userid": ext}))
                    .await;
                state = st["service_state"].as_i64().unwrap();
                if state == 3 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(state, 3, "{ext} reached a servicer");
        }
        let got = c.ok("/sim/customer/pull", json!({"channel_id": ch, "limit": 1000})).await;
        let api_messages = got["event_list"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "message" && e["sender"] == "api")
            .count();
        let stats = Client::connect(([127, 0, 0, 1], mw_port).into()).await.get("/stats").await.1;
        assert_eq!(api_messages, 2 * n, "a welcome and a bot answer each: {got}\nmiddleware: {stats}");
    });
    let stats = get_json(mw_port, "/stats");
    assert_eq!(
        (&stats["welcomed"], &stats["bot_replies"], &stats["handed_off"], &stats["errors"]),
        (&json!(6), &json!(6), &json!(6), &json!({})),
        "{stats}"
    );
    assert!(stats["callbacks"].as_u64().unwrap() >= 1, "{stats}");
    let metrics = {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut c = Client::connect(([127, 0, 0, 1], kfsim_port).into()).await;
            let (_, body) = c.raw("GET", "/metrics", Vec::new()).await;
            String::from_utf8(body).unwrap()
        })
    };
    assert!(metrics.contains("kfsim_callbacks_failed_total 0"), "{metrics}");
    drop(kfsim);
    drop(middleware);
}

/// `kfsim serve` with one account and a customer's message waiting.
fn serve_for_node() -> (Proc, u16, String) {
    let port = free_port();
    let kfsim = Proc::start(Command::new(env!("CARGO_BIN_EXE_kfsim")).args([
        "serve",
        "--addr",
        &format!("127.0.0.1:{port}"),
        "--scenario",
        "scenarios/quickstart.toml",
        "--set",
        "agents.day-shift.count=2",
        "--api-managed",
    ]));
    kfsim.wait_for("listening");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let kf = rt.block_on(async {
        let mut c = Client::connect(([127, 0, 0, 1], port).into()).await;
        c.login().await;
        let list = c.ok("/cgi-bin/kf/account/list", json!({})).await;
        let kf = list["account_list"][0]["open_kfid"].as_str().unwrap().to_owned();
        let ch = channel(&mut c).await;
        let enter = json!({"type": "enter", "customer": "alice", "open_kfid": kf, "scene": ""});
        batch(&mut c, &ch, vec![enter, say("alice", &kf, "a-1", "hello")]).await;
        kf
    });
    (kfsim, port, kf)
}

/// `gettoken` calls the service at `port` has answered so far.
fn gettoken_calls(port: u16) -> u64 {
    let m = metrics(port);
    m.get("kfsim_http_request_duration_seconds_count{route=\"/cgi-bin/gettoken\"}").map_or(0, |&n| n as u64)
}

/// tests/sdk/easywechat.js against the service at `port`, run in `work`
/// (where node-easywechat caches its access token): what each call answered.
fn node_easywechat(dir: &Path, work: &Path, port: u16, kf: &str) -> Value {
    let ours = CallbackCrypto::new(TOKEN, KEY, "kfsim").unwrap();
    let echostr = ours.encrypt(b"4823904823", [5; 16]);
    let signature = ours.signature("1700000000", "77", &echostr);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/easywechat.js");
    let out = Command::new("node")
        .arg(&script)
        .args([&format!("http://127.0.0.1:{port}"), kf, TOKEN, KEY, &echostr, &signature, "1700000000", "77"])
        .env("NODE_PATH", dir.join("node_modules"))
        .current_dir(work)
        .output()
        .expect("node runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    for call in [
        "account_list",
        "contact_way",
        "servicer_list",
        "sync_msg",
        "welcome",
        "send_msg",
        "state_bot",
        "trans",
        "state_human",
        "batchget",
        "corp_statistic",
        "upgrade_config",
    ] {
        assert_eq!(v[call]["errcode"], 0, "{call}: {}", v[call]);
    }
    v
}

#[test]
fn node_easywechat_calls_kfsim_unchanged() {
    let dir = easywechat();
    let work = std::env::temp_dir().join(format!("kfsim-easywechat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let (kfsim, port, kf) = serve_for_node();
    let v = node_easywechat(&dir, &work, port, &kf);
    assert_eq!(v["servicer_list"]["servicer_list"].as_array().unwrap().len(), 2);
    assert_eq!(v["state_bot"]["service_state"], 1, "a bot answer moves 0 → 1");
    assert_eq!(v["state_human"]["service_state"], 3, "the pool gave it a servicer");
    assert_eq!(v["corp_statistic"]["statistic_list"][0]["statistic"]["customer_msg_cnt"], 1);
    assert_eq!(v["echostr"], "4823904823", "node-easywechat decrypts kfsim's URL check");
    drop(kfsim);

    // node-easywechat cached its access token in a file in `work`: the next
    // kfsim (a new process, the same credentials) takes it, as WeCom takes
    // a token after the caller restarts, instead of refusing every call
    let (kfsim, port, kf) = serve_for_node();
    let before = gettoken_calls(port);
    // the set-up's own login: the count is read, not absent
    assert!(before > 0, "no gettoken counted");
    node_easywechat(&dir, &work, port, &kf);
    assert_eq!(gettoken_calls(port), before, "node-easywechat used the token it had cached");
    drop(kfsim);
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn wechatpy_uploads_and_downloads_media() {
    let py = python();
    let port = free_port();
    let kfsim = Proc::start(Command::new(env!("CARGO_BIN_EXE_kfsim")).args([
        "serve",
        "--addr",
        &format!("127.0.0.1:{port}"),
    ]));
    kfsim.wait_for("listening");
    let script = format!(
        "import io, sys\n\
         sys.argv = ['x']\n\
         import importlib.util\n\
         spec = importlib.util.spec_from_file_location('mw', 'examples/middleware/wechatpy_middleware.py')\n\
         import os\n\
         os.environ['KFSIM_API'] = 'http://127.0.0.1:{port}/cgi-bin/'\n\
         mw = importlib.util.module_from_spec(spec); spec.loader.exec_module(mw)\n\
         c = mw.new_client()\n\
         data = bytes(range(256)) * 20\n\
         up = c.media.upload('image', ('photo.png', io.BytesIO(data)))\n\
         import requests\n\
         # wechatpy writes media/get's URL out in full: fetched as the proxy's\n\
         got = requests.get(mw.API + 'media/get', params={{'access_token': c.access_token, 'media_id': up['media_id']}}).content\n\
         print(up['type'], len(got), got == data)\n"
    );
    let out = Command::new(&py).args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "image 5120 True");
    drop(kfsim);
}
