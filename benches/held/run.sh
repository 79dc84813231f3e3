#!/usr/bin/env bash
# Memory the reference service spends on a session it holds: the growth of
# its resident set (VmRSS) per session, for sessions held by a servicer
# (state 3) and for sessions waiting in the pool (state 2).
#
#   bash benches/held/run.sh               # 200 000 sessions of each kind
#   SESSIONS=100000 bash benches/held/run.sh   # a multiple of 1000
#
# Each session is one customer who sent one short text message (the kind
# benches/wrk sends) and is kept: nobody answers (no --auto-reply), nothing
# ends it. Before measuring, one customer sends 200 000 messages to an
# account without servicers: that fills the bounded logs (sync_msg's, the
# corp's: 100 000 entries each) and the channel's queue, whose memory is
# the same whatever the number of sessions. The figure includes the
# allocator's slack and the service's indexes at the size they reached
# (hash maps and vectors double: a figure at another size differs by up to
# about a quarter). Prints RESULT lines.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/common.sh

PORT=${PORT:-18092}
SESSIONS=${SESSIONS:-200000}
(( SESSIONS >= 1000 && SESSIONS % 1000 == 0 )) || { echo "SESSIONS must be a multiple of 1000" >&2; exit 2; }
URL=http://127.0.0.1:$PORT
WORK=$(mktemp -d)
cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release
# as many servicers (1000 places each) as it takes to hold SESSIONS sessions
sed "s/^count = 200$/count = $((SESSIONS / 1000))/" benches/held/serve.toml >"$WORK/serve.toml"
"$BIN/kfsim" serve --addr "127.0.0.1:$PORT" --scenario "$WORK/serve.toml" >"$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_until_up "$URL/healthz" "$WORK/serve.log"

python3 - "$URL" "$SERVER" "$SESSIONS" <<'PY'
import json, re, sys, urllib.request
url, pid, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

def call(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data, {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))

token = call("/cgi-bin/gettoken?corpid=kfsim&corpsecret=kfsim-secret")["access_token"]
post = lambda path, body: call(f"{path}?access_token={token}", body)
accounts = {a["name"]: a["open_kfid"] for a in post("/cgi-bin/kf/account/list", {})["account_list"]}
channel = post("/sim/customer/open_channel", {"queue_cap": 10000})["channel_id"]

def send(customers, kf):
    """One message from each customer, 1000 to a request; every action must succeed."""
    for i in range(0, len(customers), 1000):
        actions = [{"type": "message", "customer": c, "open_kfid": kf, "msgtype": "text",
                    "text": {"content": "hello"}} for c in customers[i:i + 1000]]
        r = post("/sim/customer/batch", {"channel_id": channel, "actions": actions})
        bad = [x for x in r["results"] if x["errcode"] != 0]
        if bad:
            sys.exit(f"held bench: {len(bad)} actions failed, the first: {bad[0]}")

def rss_kb():
    return int(re.search(r"VmRSS:\s+(\d+) kB", open(f"/proc/{pid}/status").read()).group(1))

def sessions(state):
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    return sum(int(float(m.group(1))) for m in
               re.finditer(r'^kfsim_sessions\{[^}]*state="%d"\} (\S+)$' % state, text, re.M))

send(["warm"] * 200_000, accounts["bot"])
rss0 = rss_kb()
send([f"h{i}" for i in range(n)], accounts["human"])
rss1, held = rss_kb(), sessions(3)
send([f"q{i}" for i in range(n)], accounts["human"])
rss2, waiting = rss_kb(), sessions(2)
if held != n or waiting != n:
    sys.exit(f"held bench: expected {n} sessions held and {n} waiting, found {held} and {waiting}")
print(f"RESULT held state=3 sessions={n} rss_before_mb={rss0 / 1024:.1f} rss_after_mb={rss1 / 1024:.1f} "
      f"bytes_per_session={(rss1 - rss0) * 1024 / n:.0f}")
print(f"RESULT held state=2 sessions={n} rss_before_mb={rss1 / 1024:.1f} rss_after_mb={rss2 / 1024:.1f} "
      f"bytes_per_session={(rss2 - rss1) * 1024 / n:.0f}")
PY
