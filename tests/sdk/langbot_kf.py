"""LangBot's WeCom customer-service client as a middleware, against kfsim.

LangBot (an open-source platform for LLM bots on IM, installed from PyPI
by tests/middleware.rs) ships its own WeCom KF client,
`langbot.libs.wecom_customer_service_api.api.WecomCSClient`: WeCom's
WXBizMsgCrypt sample for the callbacks, httpx for the API, a Quart app
for the callback URL, a `sync_msg` cursor per open_kfid and a guard
against messages synced twice. It is used here unchanged, configured as a
LangBot user configures it but for `api_base_url`. What LangBot's
pipeline would do with a message (ask a model) is replaced by an echo
sent the way its adapter sends a reply (`reply_message` in
`langbot/pkg/platform/sources/wecomcs.py`: `send_text_msg` with the
customer message's own msgid). It never hands a session to people.

    KFSIM_API=http://127.0.0.1:8080/cgi-bin python langbot_kf.py PORT

Callback URL: http://127.0.0.1:PORT/callback/command. GET /stats answers
what it did as JSON, for the test to reconcile with kfsim's summary.
"""

import asyncio
import json
import os
import sys

from langbot.libs.wecom_customer_service_api.api import WecomCSClient

API = os.environ["KFSIM_API"]
PORT = int(sys.argv[1])
stats = {"texts": 0, "replies": 0, "reply_errors": 0, "errors_logged": 0}


class Logger:
    """The coroutine logger LangBot hands its platform clients."""

    async def error(self, message):
        stats["errors_logged"] += 1
        print("ERROR", message, file=sys.stderr, flush=True)

    async def warning(self, message):
        print("WARNING", message, file=sys.stderr, flush=True)

    async def info(self, message):
        pass

    async def debug(self, message):
        pass


client = WecomCSClient(
    "kfsim",
    "kfsim-secret",
    "kfsimToken",
    "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
    Logger(),
    api_base_url=API,
)


@client.on_message("text")
async def answer(event):
    stats["texts"] += 1
    content = (event.get("text") or {}).get("content", "")
    try:
        await client.send_text_msg(
            open_kfid=event.receiver_id,
            external_userid=event.user_id,
            msgid=event.message_id,
            content=f"echo: {content[:100]}",
        )
        stats["replies"] += 1
    except Exception:  # noqa: BLE001 (counted: the test asserts there are none)
        stats["reply_errors"] += 1


async def stats_page():
    return json.dumps(stats), 200, {"Content-Type": "application/json"}


client.app.add_url_rule("/stats", "stats", stats_page)
print("listening", flush=True)
asyncio.run(client.run_task("127.0.0.1", PORT))
