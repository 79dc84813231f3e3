"""A small KF middleware written with wechatpy 2.0, as a user writes one.

It is what kfsim load-tests: WeCom calls it back (`kf_msg_or_event`), it
pulls the messages with `sync_msg` (with the callback's Token, until
`has_more` is 0, keeping its cursor), welcomes a customer with the
`welcome_code`, answers the first text as a bot, and then puts the session
in the waiting pool for the reception staff.

Run it against kfsim (nothing here knows it is not WeCom but the base URL):

    pip install "wechatpy==2.0.0a26" cryptography
    KFSIM_API=http://127.0.0.1:8080/cgi-bin/ python wechatpy_middleware.py --port 8000
    kfsim serve --addr 127.0.0.1:8080 --scenario scenarios/quickstart.toml --api-managed \\
        --callback-url http://127.0.0.1:8000/kf/callback \\
        --callback-token kfsimToken --callback-aes-key jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C

Settings come from the environment: KFSIM_API (WeCom's base URL),
KF_CORPID, KF_SECRET, KF_TOKEN, KF_AES_KEY. GET /stats answers what it did
as JSON, so a test can reconcile it with kfsim's report.

Variants with the mistakes load tests exist to catch (`--mistake`):
  no-token-cache   fetch a new access_token for every call;
  slow-callback    answer callbacks after 6 s (past WeCom's 5 s deadline);
  ignore-quota     send 6 bot replies to a message (the 6th is refused, 95001);
  reply-late       answer as a bot after handing the session over (95018).
"""

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from wechatpy.exceptions import WeChatClientException
from wechatpy.work import WeChatClient, parse_message
from wechatpy.work.crypto import WeChatCrypto

API = os.environ.get("KFSIM_API", "https://qyapi.weixin.qq.com/cgi-bin/")
CORPID = os.environ.get("KF_CORPID", "kfsim")
SECRET = os.environ.get("KF_SECRET", "kfsim-secret")
TOKEN = os.environ.get("KF_TOKEN", "kfsimToken")
AES_KEY = os.environ.get("KF_AES_KEY", "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C")

crypto = WeChatCrypto(TOKEN, AES_KEY, CORPID)
stats = {
    "callbacks": 0,
    "synced": 0,
    "welcomed": 0,
    "bot_replies": 0,
    "handed_off": 0,
    "answers_dropped": 0,
    "errors": {},
}
lock = threading.Lock()  # one sync at a time: the cursor is read and written whole
stats_lock = threading.Lock()  # the counts are exact: a test reconciles them with kfsim's
cursor = ""
mistake = None


class Client(WeChatClient):
    """wechatpy's client with WeCom's base URL made a setting, as for any
    proxy in front of qyapi.weixin.qq.com (wechatpy writes the gettoken URL
    out in full, so it is given here too)."""

    API_BASE_URL = API

    def fetch_access_token(self):
        return self._fetch_access_token(
            url=f"{API}gettoken", params={"corpid": self.corp_id, "corpsecret": self.secret}
        )


def new_client():
    return Client(CORPID, SECRET)


shared_client = new_client()


def client():
    return new_client() if mistake == "no-token-cache" else shared_client


def count(key):
    with stats_lock:
        stats[key] += 1


def count_error(e):
    key = str(e.errcode)
    with stats_lock:
        stats["errors"][key] = stats["errors"].get(key, 0) + 1


def handle(m):
    """React to one entry of sync_msg."""
    if m["msgtype"] == "event":
        ev = m["event"]
        if ev.get("event_type") == "enter_session" and ev.get("welcome_code"):
            client().kf.send_msg_on_event(ev["welcome_code"], "text", {"text": {"content": "Welcome! How can we help?"}})
            count("welcomed")
        return
    if m.get("origin") != 3:
        return
    kf, ext = m["open_kfid"], m["external_userid"]
    state = client().kf.get_service_state(kf, ext)["service_state"]
    if state not in (0, 1):
        if mistake == "reply-late":
            client().kf_message.send_text(ext, kf, "still here (bot)")
        return
    replies = 6 if mistake == "ignore-quota" else 1
    for _ in range(replies):
        client().kf_message.send_text(ext, kf, "Hello, I am the bot. A colleague will take over.")
        count("bot_replies")
    client().kf.trans_service_state(kf, ext, 2)
    count("handed_off")
    if mistake == "reply-late":
        client().kf_message.send_text(ext, kf, "one more thing (bot)")


def on_callback(token):
    global cursor
    with lock:
        while True:
            page = client().kf.sync_msg(token, cursor)
            for m in page.get("msg_list", []):
                count("synced")
                try:
                    handle(m)
                except WeChatClientException as e:
                    count_error(e)
            cursor = page["next_cursor"]
            if not page.get("has_more"):
                break


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        try:
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # WeCom stopped waiting (5 s) and closed the connection: it will
            # retry the callback; the answer has nowhere to go
            count("answers_dropped")

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/stats":
            with stats_lock:
                return self.answer(200, json.dumps(stats))
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            echo = crypto.check_signature(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"])
        except Exception as e:  # a bad signature or key: not from WeCom
            return self.answer(403, str(e))
        self.answer(200, echo if isinstance(echo, str) else echo.decode())

    def do_POST(self):
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            xml = crypto.decrypt_message(body, q["msg_signature"], q["timestamp"], q["nonce"])
        except Exception as e:
            return self.answer(403, str(e))
        msg = parse_message(xml)
        count("callbacks")
        if mistake == "slow-callback":
            time.sleep(6)
        try:
            on_callback(msg.token)
        except WeChatClientException as e:
            count_error(e)
        self.answer(200, "success")


def main():
    global mistake
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--mistake", choices=["no-token-cache", "slow-callback", "ignore-quota", "reply-late"])
    args = p.parse_args()
    mistake = args.mistake
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
