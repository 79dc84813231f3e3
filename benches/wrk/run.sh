#!/usr/bin/env bash
# Benchmark of the reference service with wrk (Debian's package), on
# loopback only: the service pinned to core 0, wrk to core 1.
#
#   bash benches/wrk/run.sh            # 15 s per measurement
#   DURATION=30s CONNECTIONS=64 bash benches/wrk/run.sh
#
# 1. customer messages through /sim/customer/batch, one message per request
#    and ten per request, while `--auto-reply` servicers answer each message
#    and end its session (so every message starts, routes and ends a session);
#    after each, the wait until the servicers have ended every session wrk
#    started is measured (`drain_s`), and `sustained_msgs_per_s` counts it:
#    the share of the trivial server is of that rate;
# 2. kf/send_msg to customers of an account without servicers (state 0/1).
# The anchor: wrk against a trivial keep-alive server (examples/driver_ceiling.rs
# --serve, a fixed 27-byte JSON answer) on the same core in the same run, so
# that each figure is also given as a share of what wrk gets from a server
# that does nothing (`RESULT ratio …`): absolute figures drift between days.
# Prints one RESULT line per measurement and the service's own counters.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/common.sh

PORT=${PORT:-18080}
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-64}
ADDR=127.0.0.1:$PORT
URL=http://$ADDR
HERE=benches/wrk
WORK=$(mktemp -d)
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }
command -v taskset >/dev/null || { echo "taskset is missing (util-linux)" >&2; exit 2; }

cargo build --release --quiet
cargo build --release --quiet --example driver_ceiling
BIN=${CARGO_TARGET_DIR:-target}/release
taskset -c 0 "$BIN/examples/driver_ceiling" --serve "127.0.0.1:$((PORT + 1))" >"$WORK/trivial.log" 2>&1 &
TRIVIAL=$!
# one core, one thread (what it picks by itself when pinned; said here so
# the figure does not depend on that default). Ten messages a request
# outrun the servicers and pile sessions into the pool: with the default
# budget of waiting messages (512 MiB, --pending-memory) about 3 million
# a round were refused, and the rate counted the refusals (the seventieth
# block of docs/performance.md).
taskset -c 0 "$BIN/kfsim" serve --addr "$ADDR" --scenario "$HERE/serve.toml" --auto-reply --threads 1 \
  --pending-memory 4096 \
  >"$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER $TRIVIAL 2>/dev/null || true; wait $SERVER $TRIVIAL 2>/dev/null || true; rm -rf "$WORK"' EXIT

wait_until_up "$URL/healthz" "$WORK/serve.log"
wait_until_up "http://127.0.0.1:$((PORT + 1))/" "$WORK/trivial.log"

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {'d': d}))" "$1"; }
post() { curl -sf -H 'Content-Type: application/json' -d "$2" "$URL$1?access_token=$TOKEN"; }

export TOKEN=$(curl -sf "$URL/cgi-bin/gettoken?corpid=kfsim&corpsecret=kfsim-secret" | json "d['access_token']")
ACCOUNTS=$(post /cgi-bin/kf/account/list '{}')
HUMAN=$(echo "$ACCOUNTS" | json "[a['open_kfid'] for a in d['account_list'] if a['name']=='human'][0]")
BOT=$(echo "$ACCOUNTS" | json "[a['open_kfid'] for a in d['account_list'] if a['name']=='bot'][0]")
# Nobody pulls this channel: a bounded queue keeps the replies' memory flat.
export CHANNEL=$(post /sim/customer/open_channel '{"queue_cap": 10000}' | json "d['channel_id']")

measure() { taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$@" | grep '^RESULT'; }
# wrk's own summary of a plain GET: requests/s and p99 [ms].
anchor() {
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$((PORT + 1))/" | awk '
    /^Requests\/sec:/ {rps = $2}
    $1 == "99%" {v = $2; ms = v + 0; if (v ~ /us$/) ms /= 1000; else if (v ~ /[^m]s$/) ms *= 1000; p99 = ms}
    END {printf "RESULT path=trivial req_per_s=%.0f p99_ms=%.2f\n", rps, p99}'
}
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p"; }
# Seconds until no session of the human account is open: wrk counts a
# message when its batch is answered, but the auto-reply servicers may
# still be answering and ending the sessions it started. The wait is part
# of the measurement (a sustained rate counts it), and the next one starts
# from a quiet service.
drain() {
  local t0 open
  t0=$(date +%s.%N)
  while :; do
    open=$(curl -sf "$URL/metrics" | awk '/^kfsim_sessions\{.*account="human".*state="[0-3]"/ {s += $2} END {print s + 0}')
    [ "$open" = 0 ] && break
    if awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {exit !(b - a > 300)}'; then
      echo "# $open sessions of the human account still open after 300 s" >&2
      break
    fi
    sleep 0.05
  done
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}'
}
# RESULT line of the sustained rate: the messages of a wrk line over its
# duration and the drain after it
sustained() {
  local line=$1 batch=$2 d
  d=$(drain)
  awk -v r="$(field requests <<<"$line")" -v b="$batch" -v t="${DURATION%s}" -v d="$d" \
    'BEGIN {printf "RESULT path=customer_message batch=%d drain_s=%.2f sustained_msgs_per_s=%.0f\n", b, d, r * b / (t + d)}'
}

echo "# anchor: wrk against a trivial server on the same core"
TRIVIAL_LINE=$(anchor)
echo "$TRIVIAL_LINE"
TRIVIAL_RPS=$(field req_per_s <<<"$TRIVIAL_LINE")
echo "# customer messages, 1 per request (agents: 200 × 10 slots, auto-reply)"
ONE=$(KF=$HUMAN BATCH=1 measure -s "$HERE/customer_message.lua" "$URL")
echo "$ONE"
ONE_SUSTAINED=$(sustained "$ONE" 1)
echo "$ONE_SUSTAINED"
echo "# customer messages, 10 per request"
TEN=$(KF=$HUMAN BATCH=10 measure -s "$HERE/customer_message.lua" "$URL")
echo "$TEN"
sustained "$TEN" 10

# Each customer may be sent 5 messages after theirs (WeCom's limit, 95001
# after): 400 000 customers allow 2 million sends, more than a 15 s round
# has made on this machine (1.3 million, when 300 000 customers left little
# room; with 200 000, a tenth of a round's answers were 95001s, cheaper
# than a send: `over_limit_95001` counts them).
# They are spread over ten channels (a million items and 64 MB each; 40 000
# customers, 200 000 sends of about 270 bytes each), so every send is
# queued for its customer. Until the fortieth block of docs/performance.md one channel of
# 1 000 overflowed at each send, which also logged a msg_send_fail event
# and dropped a queued message (about a tenth of the service's time under
# this load). `overflowed` counts what still does.
echo "# send_msg: preparing 400000 customers of the bot account"
python3 - "$URL" "$TOKEN" "$BOT" "$WORK/ids.txt" <<'PY'
import json, sys, urllib.request
url, token, kf, out = sys.argv[1:]
def post(path, body):
    req = urllib.request.Request(f"{url}{path}?access_token={token}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req))
chs = [post("/sim/customer/open_channel", {"queue_cap": 1000000})["channel_id"] for _ in range(10)]
ids = []
for b in range(400):
    actions = [{"type": "message", "customer": f"b{b * 1000 + i}", "open_kfid": kf, "msgtype": "text",
                "text": {"content": "question"}} for i in range(1000)]
    r = post("/sim/customer/batch", {"channel_id": chs[b % 10], "actions": actions})
    ids += [x["external_userid"] for x in r["results"] if x["errcode"] == 0]
open(out, "w").write("\n".join(ids) + "\n")
PY
overflows() { curl -sf "$URL/metrics" | awk '/^kfsim_queue_overflows_total/ {print $2 + 0}'; }
BEFORE=$(overflows)
SEND=$(KF=$BOT IDS=$WORK/ids.txt measure -s "$HERE/send_msg.lua" "$URL")
echo "$SEND overflowed=$(($(overflows) - BEFORE))"
awk -v t="$TRIVIAL_RPS" -v m="$(field sustained_msgs_per_s <<<"$ONE_SUSTAINED")" -v s="$(field req_per_s <<<"$SEND")" \
  'BEGIN {printf "RESULT ratio customer_message=%.3f send_msg=%.3f (of the trivial server'"'"'s requests/s)\n", m / t, s / t}'

echo "# service counters"
curl -sf "$URL/metrics" | grep -E '^kfsim_(customer_messages|messages_routed|servicer_messages|api_messages|sessions_started|sessions_ended|sessions_rejected|queue_overflows)_total|^kfsim_queue_length'
echo "# service peak memory"
grep -E '^VmHWM' "/proc/$SERVER/status" || true
