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

/// `kfsim serve` of the quickstart with two agents, its accounts managed
/// by the API, listening.
fn serve_quickstart() -> (Proc, u16) {
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
    (kfsim, port)
}

/// `kfsim serve` with one account and a customer's message waiting.
fn serve_for_node() -> (Proc, u16, String) {
    let (kfsim, port) = serve_quickstart();
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

/// tests/sdk/wechatpy_kf.py against a fresh `kfsim serve`: what each of
/// wechatpy's customer-service calls answered.
fn wechatpy_kf_answers() -> (Value, u16) {
    let py = python();
    let (kfsim, port) = serve_quickstart();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/wechatpy_kf.py");
    let out = Command::new(&py).arg(&script).arg(format!("http://127.0.0.1:{port}")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(kfsim);
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (v, port)
}

#[test]
fn every_kf_method_of_wechatpy_answers_as_wecom_does() {
    let (v, port) = wechatpy_kf_answers();
    // 0: wechatpy returned the answer, errcode 0 in it; else the errcode of
    // the WeChatClientException it raised (never another exception: an
    // answer it could not read)
    let expected = [
        ("get_account_list", 0),
        ("media_upload_image", 0),
        ("account_add", 0),
        ("account_update", 0),
        ("get_account_list_after_add", 0),
        ("add_contact_way_new", 0),
        ("account_del", 0),
        ("get_servicer_list_deleted", 95004),
        ("account_list_paged", 0),
        ("add_contact_way", 0),
        ("add_contact_way_bad_scene", 40058),
        ("get_servicer_list", 0),
        ("add_servicer", 0),
        ("get_servicer_list_after_add", 0),
        ("del_servicer", 0),
        ("del_servicer_again", 0),
        ("get_servicer_list_bad_kfid", 95004),
        ("sync_msg_page", 0),
        ("sync_msg", 0),
        ("sync_msg_bad_token", 95007),
        ("sync_msg_bad_limit", 40058),
        ("sync_msg_at_end", 0),
        ("sync_msg_by_account", 0),
        ("sync_msg_other_account", 0),
        ("sync_msg_bad_voice_format", 40058),
        ("welcome_text", 0),
        ("welcome_reused", 95007),
        ("welcome_msgmenu", 0),
        ("welcome_image", 40008),
        ("media_upload_voice", 0),
        ("media_upload_video", 0),
        ("media_upload_file", 0),
        ("send_text", 0),
        ("send_text_same_msgid", 40058),
        ("send_image", 0),
        ("send_voice", 0),
        ("send_video", 0),
        ("send_file", 0),
        ("send_sixth", 95001),
        ("send_msgmenu", 0),
        // wechatpy 2.0.0a26 builds these three wrongly: refused, as by WeCom
        ("send_articles_link", 40008),
        ("send_location", 40058),
        ("send_miniprogram", 40058),
        ("send_link", 0),
        ("send_location_doc", 0),
        ("send_miniprogram_doc", 0),
        ("send_unknown_customer", 40058),
        ("state_untouched", 0),
        ("send_bad_media", 40007),
        ("state_after_bad_media", 0),
        ("state_after_bot", 0),
        ("trans_to_pool", 0),
        ("assign_prompt", 0),
        ("state_assigned", 0),
        ("send_with_servicer", 95018),
        ("trans_to_servicer", 0),
        ("trans_to_same_servicer", 95016),
        ("state_transferred", 0),
        ("trans_back_to_bot", 95016),
        ("trans_end", 0),
        ("state_ended", 0),
        ("end_msgmenu", 0),
        ("trans_bad_state", 40058),
        ("trans_to_servicer_missing", 40058),
        ("state_bad_kfid", 95004),
        ("state_unknown_customer", 40058),
        ("batchget_customer", 0),
        ("batchget_customer_one", 0),
        ("batchget_customer_none", 40058),
        ("get_upgrade_service_config", 0),
        ("upgrade_member", 0),
        ("cancel_upgrade_service", 0),
        ("upgrade_groupchat", 95021),
        ("get_corp_statistic", 0),
        ("get_servicer_statistic", 0),
        ("get_corp_statistic_no_span", 40058),
        ("get_corp_qualification", 0),
        ("knowledge_list_group", 48002),
        ("bad_secret", 40001),
    ];
    for (call, code) in expected {
        let r = &v[call];
        let raised = if code == 0 { Value::Null } else { json!("WeChatClientException") };
        assert_eq!((&r["exception"], r["errcode"].as_i64()), (&raised, Some(code)), "{call}: {r}");
        assert!(r["errmsg"].is_string(), "{call}: {r}");
    }

    // accounts
    let list = v["get_account_list"]["account_list"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["presale", "after-sales"]);
    assert!(
        list.iter()
            .all(|a| a["manage_privilege"] == true && a["open_kfid"].as_str().unwrap().starts_with("wk"))
    );
    let added = &v["get_account_list_after_add"]["account_list"][2];
    assert_eq!((&added["open_kfid"], &added["name"]), (&v["account_add"]["open_kfid"], &json!("wechatpy-2")));
    let avatar = added["avatar"].as_str().unwrap();
    assert!(avatar.starts_with(&format!("http://127.0.0.1:{port}/avatar/")), "{avatar}");
    assert_eq!(v["account_list_paged"]["account_list"][0]["name"], "after-sales");
    let url = v["add_contact_way"]["url"].as_str().unwrap();
    assert!(url.starts_with("https://work.weixin.qq.com/kf/") && url.contains("enc_scene="), "{url}");

    // servicers: status and stop_type are numbers, 0 接待中
    let servicers = v["get_servicer_list"]["servicer_list"].as_array().unwrap();
    assert_eq!(servicers.len(), 2);
    assert!(servicers.iter().all(|s| s["status"] == 0 && s["stop_type"] == 0), "{servicers:?}");
    assert_eq!(
        v["add_servicer"]["result_list"],
        json!([{"userid": "wechatpy-servicer", "errcode": 0, "errmsg": "success"}])
    );
    assert_eq!(v["get_servicer_list_after_add"]["servicer_list"].as_array().unwrap().len(), 3);
    assert_ne!(v["del_servicer_again"]["result_list"][0]["errcode"], 0);

    // sync_msg: two entries a page, three pages; events keep their ids inside
    assert_eq!(v["sync_msg_paged"], json!({"pages": 3, "entries": 6}));
    let sync = &v["sync_msg"];
    assert_eq!(sync["has_more"], 0);
    let msgs = sync["msg_list"].as_array().unwrap();
    assert_eq!(msgs.len(), 6, "{sync}");
    let ext = &v["external_userid"];
    for (i, who) in ["alice", "bob", "carol"].iter().enumerate() {
        let (enter, text) = (&msgs[2 * i], &msgs[2 * i + 1]);
        assert_eq!((&enter["origin"], &enter["msgtype"]), (&json!(4), &json!("event")), "{enter}");
        assert!(enter.get("external_userid").is_none(), "an event's ids are inside it: {enter}");
        let ev = &enter["event"];
        assert_eq!(
            (&ev["event_type"], &ev["external_userid"], &ev["scene"], &ev["scene_param"]),
            (&json!("enter_session"), &ext[who], &json!("web"), &json!(format!("p{i}")))
        );
        assert!(ev["welcome_code"].is_string(), "{ev}");
        assert_eq!((&text["origin"], &text["external_userid"]), (&json!(3), &ext[who]));
        assert_eq!(text["text"]["content"], format!("hello from {who}"));
        assert!(text["send_time"].is_u64() && text["msgid"].is_string(), "{text}");
    }
    assert_eq!(v["sync_msg_at_end"]["msg_list"], json!([]));
    assert_eq!(v["sync_msg_at_end"]["next_cursor"], sync["next_cursor"]);
    assert_eq!(v["sync_msg_by_account"]["msg_list"].as_array().unwrap().len(), 6);
    assert_eq!(v["sync_msg_other_account"]["msg_list"], json!([]));

    // sending
    assert_eq!(v["welcome_msgmenu"]["msgid"], "welcome-bob");
    assert_eq!(v["send_text"]["msgid"], "bot-a-1");

    // session states: numbers, the servicer named only in 3
    let state = |call: &str| {
        (v[call]["service_state"].as_i64().unwrap(), v[call]["servicer_userid"].as_str().unwrap())
    };
    assert_eq!(state("state_untouched"), (0, ""));
    assert_eq!(state("state_after_bad_media"), (0, ""), "a refused send_msg moves nothing");
    assert_eq!(state("state_after_bot"), (1, ""));
    assert_eq!(state("state_assigned").0, 3);
    assert_eq!(state("state_transferred"), (3, v["transfer_to"].as_str().unwrap()));
    assert_eq!(state("state_ended"), (4, ""));
    for call in ["trans_to_pool", "trans_end"] {
        assert!(v[call]["msg_code"].is_string(), "{call}: {}", v[call]);
    }

    // customers
    let b = &v["batchget_customer"];
    let nicknames: Vec<&Value> =
        b["customer_list"].as_array().unwrap().iter().map(|c| &c["nickname"]).collect();
    assert_eq!(nicknames, [&json!("alice"), &json!("bob")]);
    assert!(b["customer_list"][0]["gender"].is_i64(), "{b}");
    assert_eq!(b["invalid_external_userid"], json!(["wm-nobody"]));
    assert_eq!(v["batchget_customer_one"]["customer_list"][0]["external_userid"], ext["carol"]);
    let config = &v["get_upgrade_service_config"];
    assert!(
        config["member_range"]["userid_list"].as_array().unwrap().contains(&json!("day-shift-01")),
        "{config}"
    );
    assert_eq!(config["groupchat_range"]["chat_id_list"], json!([]));

    // statistics of yesterday and today: the three customers' sessions and
    // messages, on one day unless the script ran across midnight (a
    // customer active on both days is counted on each)
    let days = |call: &str| v[call]["statistic_list"].as_array().unwrap().clone();
    let total =
        |call: &str, field: &str| days(call).iter().map(|d| d["statistic"][field].as_u64().unwrap()).sum();
    let active = days("get_corp_statistic").iter().filter(|d| d["statistic"]["customer_cnt"] != 0).count();
    assert!((1..=2).contains(&active), "{:?}", days("get_corp_statistic"));
    assert_eq!(days("get_corp_statistic").len(), 2, "a day a list entry");
    let (sessions, messages): (u64, u64) =
        (total("get_corp_statistic", "session_cnt"), total("get_corp_statistic", "customer_msg_cnt"));
    assert_eq!((sessions, messages), (3, 3));
    let customers: u64 = total("get_corp_statistic", "customer_cnt");
    assert!(if active == 1 { customers == 3 } else { (3..=6).contains(&customers) }, "{customers}");
    assert_eq!(total("get_servicer_statistic", "session_cnt"), 1u64);
    assert_eq!(v["get_corp_qualification"]["wechat_channels_binding"], true);
    let unserved = v["knowledge_list_group"]["errmsg"].as_str().unwrap();
    assert!(unserved.contains("kf/knowledge/list_group") && !unserved.contains("kf/*"), "{unserved}");

    // what the customers received, in order, from the calls that succeeded
    let received: Vec<String> = v["customer_received"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{} {}", m["customer"].as_str().unwrap(), m["msgtype"].as_str().unwrap()))
        .collect();
    assert_eq!(
        received,
        [
            "alice text",
            "bob msgmenu",
            "alice text",
            "alice image",
            "alice voice",
            "alice video",
            "alice file",
            "bob msgmenu",
            "bob link",
            "bob location",
            "bob miniprogram",
            "alice text",
            "alice msgmenu",
        ]
    );
}
