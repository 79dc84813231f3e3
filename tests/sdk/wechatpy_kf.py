"""Every customer-service (微信客服) method of wechatpy 2.0 against kfsim serve.

wechatpy's `client.kf` (WeChatKF) and `client.kf_message` (WeChatKFMessage)
are called as a user calls them, configured as for WeCom but for the base
URL. Calls wechatpy has no method for (account add/update/del, statistics,
qualification, knowledge base) go through its generic `client.post` and
`client.get`, as a user of wechatpy writes them.
Run by tests/sdk.rs:

    python wechatpy_kf.py BASE_URL

against `kfsim serve --scenario scenarios/quickstart.toml --api-managed`.
The WeChat customers are played through kfsim's /sim/customer API (plain
requests: that side is WeChat, not an SDK). Prints one JSON object: for
each call, what it answered, or {"exception", "errcode", "errmsg"} for the
error wechatpy raised.
"""

import io
import json
import sys
import time

import requests
from wechatpy.exceptions import WeChatClientException
from wechatpy.work import WeChatClient

BASE = sys.argv[1].rstrip("/")
API = BASE + "/cgi-bin/"


class Client(WeChatClient):
    """wechatpy's client with WeCom's base URL made a setting (wechatpy
    writes the gettoken URL out in full, so it is given here too)."""

    API_BASE_URL = API

    def fetch_access_token(self):
        return self._fetch_access_token(
            url=f"{API}gettoken", params={"corpid": self.corp_id, "corpsecret": self.secret}
        )


out = {}


def call(name, fn, *args, **kwargs):
    """Run one SDK call and keep what it answered, or the error it raised."""
    try:
        r = fn(*args, **kwargs)
    except WeChatClientException as e:
        r = {"exception": type(e).__name__, "errcode": e.errcode, "errmsg": e.errmsg}
    except Exception as e:  # noqa: BLE001 (a parse failure is an answer too)
        r = {"exception": type(e).__name__, "message": str(e)}
    out[name] = r
    return r


c = Client("kfsim", "kfsim-secret")
kf = c.kf
msg = c.kf_message

# ---- accounts ----
accounts = call("get_account_list", kf.get_account_list)
open_kfid = accounts["account_list"][0]["open_kfid"]
avatar = call("media_upload_image", c.media.upload, "image", ("avatar.png", io.BytesIO(b"\x89PNG" + bytes(200))))
added = call("account_add", c.post, "kf/account/add", data={"name": "wechatpy", "media_id": avatar["media_id"]})
new_kfid = added["open_kfid"]
call("account_update", c.post, "kf/account/update", data={"open_kfid": new_kfid, "name": "wechatpy-2"})
call("get_account_list_after_add", kf.get_account_list)
call("add_contact_way_new", kf.add_contact_way, new_kfid, "")
call("account_del", c.post, "kf/account/del", data={"open_kfid": new_kfid})
call("get_servicer_list_deleted", kf.get_servicer_list, new_kfid)
call("account_list_paged", c.post, "kf/account/list", data={"offset": 1, "limit": 1})

# ---- contact way and the customers who come through it ----
call("add_contact_way", kf.add_contact_way, open_kfid, "web")
call("add_contact_way_bad_scene", kf.add_contact_way, open_kfid, "not a scene!")

sim = requests.Session()
sim.params = {"access_token": c.access_token}
channel = sim.post(BASE + "/sim/customer/open_channel", json={}).json()["channel_id"]
customers = ["alice", "bob", "carol"]
actions = []
for i, who in enumerate(customers):
    actions.append({"type": "enter", "customer": who, "open_kfid": open_kfid, "scene": "web", "scene_param": f"p{i}"})
    actions.append(
        {
            "type": "message",
            "customer": who,
            "open_kfid": open_kfid,
            "client_msgid": f"{who}-1",
            "msgtype": "text",
            "text": {"content": f"hello from {who}"},
        }
    )
entered = sim.post(BASE + "/sim/customer/batch", json={"channel_id": channel, "actions": actions}).json()
assert all(r["errcode"] == 0 for r in entered["results"]), entered
ext = {who: entered["results"][2 * i + 1]["external_userid"] for i, who in enumerate(customers)}
out["external_userid"] = ext

# ---- servicers ----
servicers = call("get_servicer_list", kf.get_servicer_list, open_kfid)
first = servicers["servicer_list"][0]["userid"]
extra = "wechatpy-servicer"
call("add_servicer", kf.add_servicer, open_kfid, extra)
call("get_servicer_list_after_add", kf.get_servicer_list, open_kfid)
call("del_servicer", kf.del_servicer, open_kfid, [extra])
call("del_servicer_again", kf.del_servicer, open_kfid, [extra])
call("get_servicer_list_bad_kfid", kf.get_servicer_list, "wk-not-an-account")

# ---- sync_msg: paged with the cursor, then whole ----
pages, cursor, seen = 0, "", []
while True:
    page = call("sync_msg_page", kf.sync_msg, "", cursor, 2)
    pages += 1
    seen += page["msg_list"]
    cursor = page["next_cursor"]
    if not page["has_more"] or pages > 10:
        break
out["sync_msg_paged"] = {"pages": pages, "entries": len(seen)}
synced = call("sync_msg", kf.sync_msg, "", "", 1000)
call("sync_msg_bad_token", kf.sync_msg, "ENC-not-a-callback-token")
call("sync_msg_bad_limit", kf.sync_msg, "", "", 1001)
call("sync_msg_at_end", kf.sync_msg, "", synced["next_cursor"])
# what wechatpy's sync_msg does not send: by generic post
call("sync_msg_by_account", c.post, "kf/sync_msg", data={"open_kfid": open_kfid, "voice_format": 1, "limit": 1000})
call("sync_msg_other_account", c.post, "kf/sync_msg", data={"open_kfid": accounts["account_list"][1]["open_kfid"]})
call("sync_msg_bad_voice_format", c.post, "kf/sync_msg", data={"open_kfid": open_kfid, "voice_format": 2})
welcome = {
    m["event"]["external_userid"]: m["event"].get("welcome_code")
    for m in synced["msg_list"]
    if m["msgtype"] == "event" and m["event"]["event_type"] == "enter_session"
}

# ---- send_msg_on_event: welcome messages ----
call("welcome_text", kf.send_msg_on_event, welcome[ext["alice"]], "text", {"text": {"content": "welcome, alice"}})
call("welcome_reused", kf.send_msg_on_event, welcome[ext["alice"]], "text", {"text": {"content": "again"}})
menu = {
    "head_content": "How can we help?",
    "list": [
        {"type": "click", "click": {"id": "101", "content": "Order status"}},
        {"type": "view", "view": {"url": "https://example.com/faq", "content": "FAQ"}},
        {"type": "miniprogram", "miniprogram": {"appid": "wx123", "pagepath": "pages/index", "content": "Shop"}},
        {"type": "text", "text": {"content": "Or just write", "no_newline": 1}},
    ],
    "tail_content": "Thanks",
}
call("welcome_msgmenu", kf.send_msg_on_event, welcome[ext["bob"]], "msgmenu", {"msgmenu": menu}, msgid="welcome-bob")
call("welcome_image", kf.send_msg_on_event, welcome[ext["carol"]], "image", {"image": {"media_id": avatar["media_id"]}})

# ---- send_msg: each message type wechatpy builds ----
media = {}
for t, name in [("image", "a.png"), ("voice", "a.amr"), ("video", "a.mp4"), ("file", "a.pdf")]:
    media[t] = call(f"media_upload_{t}", c.media.upload, t, (name, io.BytesIO(bytes(range(256)) * 4)))["media_id"]
a, b, cc = ext["alice"], ext["bob"], ext["carol"]
call("send_text", msg.send_text, a, open_kfid, "a bot answer", msgid="bot-a-1")
call("send_text_same_msgid", msg.send_text, a, open_kfid, "the same msgid", msgid="bot-a-1")
call("send_image", msg.send_image, a, open_kfid, media["image"])
call("send_voice", msg.send_voice, a, open_kfid, media["voice"])
call("send_video", msg.send_video, a, open_kfid, media["video"])
call("send_file", msg.send_file, a, open_kfid, media["file"])
call("send_sixth", msg.send_text, a, open_kfid, "one too many")
call("send_msgmenu", msg.send_msgmenu, b, open_kfid, menu["head_content"], menu["list"], menu["tail_content"])
article = {"title": "kfsim", "desc": "a link", "url": "https://example.com/a", "thumb_media_id": media["image"]}
# wechatpy 2.0.0a26 builds these three wrongly (msgtype "news"; the
# location's and miniprogram's fields under "msgmenu"): WeCom refuses them
call("send_articles_link", msg.send_articles_link, b, open_kfid, article)
call("send_location", msg.send_location, b, open_kfid, "Office", "1 Road", 39.9, 116.3)
call("send_miniprogram", msg.send_miniprogram, b, open_kfid, "wx123", "Shop", media["image"], "pages/index")
# the same three as WeCom documents them, through wechatpy's generic send
call("send_link", msg.send, b, open_kfid, msg={"msgtype": "link", "link": article})
call(
    "send_location_doc",
    msg.send,
    b,
    open_kfid,
    msg={"msgtype": "location", "location": {"name": "Office", "address": "1 Road", "latitude": 39.9, "longitude": 116.3}},
)
call(
    "send_miniprogram_doc",
    msg.send,
    b,
    open_kfid,
    msg={
        "msgtype": "miniprogram",
        "miniprogram": {"appid": "wx123", "title": "Shop", "thumb_media_id": media["image"], "pagepath": "pages/index"},
    },
)
call("send_unknown_customer", msg.send_text, "wm-nobody", open_kfid, "hello?")
call("state_untouched", kf.get_service_state, open_kfid, cc)
call("send_bad_media", msg.send_image, cc, open_kfid, "no-such-media")
call("state_after_bad_media", kf.get_service_state, open_kfid, cc)

# ---- service state ----
call("state_after_bot", kf.get_service_state, open_kfid, a)
# the account's reception rules give a session in the pool a servicer at once
pool = call("trans_to_pool", kf.trans_service_state, open_kfid, a, 2)
call("assign_prompt", kf.send_msg_on_event, pool.get("msg_code"), "text", {"text": {"content": "a colleague is here"}})
holder = call("state_assigned", kf.get_service_state, open_kfid, a).get("servicer_userid")
call("send_with_servicer", msg.send_text, a, open_kfid, "the bot again")
other = next(s["userid"] for s in servicers["servicer_list"] if s["userid"] != holder)
out["transfer_to"] = other
call("trans_to_servicer", kf.trans_service_state, open_kfid, a, 3, other)
call("trans_to_same_servicer", kf.trans_service_state, open_kfid, a, 3, other)
call("state_transferred", kf.get_service_state, open_kfid, a)
call("trans_back_to_bot", kf.trans_service_state, open_kfid, a, 1)
end = call("trans_end", kf.trans_service_state, open_kfid, a, 4)
call("state_ended", kf.get_service_state, open_kfid, a)
call("end_msgmenu", kf.send_msg_on_event, end.get("msg_code"), "msgmenu", {"msgmenu": menu})
call("trans_bad_state", kf.trans_service_state, open_kfid, cc, 7)
call("trans_to_servicer_missing", kf.trans_service_state, open_kfid, cc, 3)
call("state_bad_kfid", kf.get_service_state, "wk-not-an-account", cc)
call("state_unknown_customer", kf.get_service_state, open_kfid, "wm-nobody")

# ---- customers ----
call("batchget_customer", kf.batchget_customer, [a, b, "wm-nobody"])
call("batchget_customer_one", kf.batchget_customer, cc)
call("batchget_customer_none", kf.batchget_customer, [])

# ---- upgrade service ----
config = call("get_upgrade_service_config", kf.get_upgrade_service_config)
member = config.get("member_range", {}).get("userid_list", [first])[0]
call("upgrade_member", kf.upgrade_service, open_kfid, b, 1, member={"userid": member, "wording": "our expert"})
call("cancel_upgrade_service", kf.cancel_upgrade_service, open_kfid, b)
call("upgrade_groupchat", kf.upgrade_service, open_kfid, b, 2, groupchat={"chat_id": "wr-none", "wording": "our group"})

# ---- statistics (no wechatpy method: generic post) ----
# yesterday and today (China time): a run across midnight counts on both days
now = int(time.time())
call("get_corp_statistic", c.post, "kf/get_corp_statistic", data={"open_kfid": open_kfid, "start_time": now - 86400, "end_time": now})
call(
    "get_servicer_statistic",
    c.post,
    "kf/get_servicer_statistic",
    data={"open_kfid": open_kfid, "servicer_userid": other, "start_time": now - 86400, "end_time": now},
)
call("get_corp_statistic_no_span", c.post, "kf/get_corp_statistic", data={"open_kfid": open_kfid})
call("get_corp_qualification", c.get, "kf/get_corp_qualification")
# the knowledge base (机器人-知识库) is not modelled: a WeCom-style errcode
call("knowledge_list_group", c.post, "kf/knowledge/list_group", data={"limit": 100})

# ---- credentials ----
call("bad_secret", Client("kfsim", "not-the-secret").kf.get_account_list)

# the messages sent reached the customers as WeChat shows them
pulled = sim.post(BASE + "/sim/customer/pull", json={"channel_id": channel, "limit": 1000}).json()
out["customer_received"] = [
    {"customer": e.get("customer"), "msgtype": e.get("msgtype"), "sender": e.get("sender")}
    for e in pulled.get("event_list", [])
    if e.get("kind") == "message"
]
print(json.dumps(out, ensure_ascii=False))
