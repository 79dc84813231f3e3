#!/usr/bin/env bash
# A KF middleware load-tested by kfsim, at increasing arrival rates:
# `kfsim run --middleware` plays WeCom (API-managed account, an encrypted
# kf_msg_or_event callback per log entry), the customers (one message per
# session) and the agents (scenarios/bench-middleware.toml), in one
# process; examples/trivial_middleware.rs syncs, answers each new session as
# a bot and hands it to the pool. Each rate gets a fresh kfsim and
# middleware, so that every count starts at zero.
#
#   bash benches/middleware/run.sh                     # 5 rates, about 5 minutes
#   RATES="1000 3000" MODE=pool bash benches/middleware/run.sh
#   MW_ARGS="--concurrency 1024" KEEP=1 NO_BUILD=1 bash benches/middleware/run.sh
#
# For each rate: customer messages/s the driver achieved over the measured
# window; whether every message is accounted for (the driver's
# messages.sent = the customer messages kfsim's WeCom saw the middleware
# hold = the origin-3 entries the middleware synced; entries synced as the
# middleware counts = as kfsim counts; every session handed off (and, in
# bot mode, answered by the bot) exactly once; the middleware's API calls =
# kfsim's middleware.api; no errcode, nothing unacted; every message reached
# an agent); first-response p99; and CPU seconds and peak RSS of kfsim (its
# WeCom and its driver) and of the middleware (`/usr/bin/time -v`). The last line, `RESULT`, is the highest rate that
# was accounted for, achieved (≥ 95 % of the rate) and answered in time
# (first-response p99 ≤ 2 s, agent's 100 ms included).
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/common.sh

RATES=${RATES:-"500 1000 2000 4000 8000"}
MODE=${MODE:-bot}
PORT=${PORT:-18095}
SCENARIO=${SCENARIO:-scenarios/bench-middleware.toml}
ADDR=127.0.0.1:$PORT
# Honour CARGO_TARGET_DIR if the caller set one, as cargo does.
BIN=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install -y time" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is missing" >&2; exit 2; }

# NO_BUILD=1 runs the binaries already built
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet --bin kfsim --example trivial_middleware

MW=''
# $1 is /usr/bin/time: the signal goes to its child, so that time outlives
# it and writes its figures.
stop() {
  [ -n "$1" ] || return 0
  pkill -TERM -P "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
# KEEP=1 keeps the logs and reports of every rate
trap 'stop "$MW"; if [ -n "${KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi' EXIT

echo "commit $(git rev-parse --short HEAD) · $(date -u +%Y-%m-%dT%H:%MZ) · $(nproc) cores · load $(cut -d' ' -f1-3 /proc/loadavg) · mode $MODE"
printf '%8s %10s %-10s %8s %11s %10s %8s %10s %8s\n' \
  rate msgs/s accounted fr_p99 kfsim_cpu_s kfsim_rss mw_cpu_s mw_rss callbacks
best=0
for rate in $RATES; do
  dir=$WORK/$rate
  mkdir -p "$dir"
  /usr/bin/time -v -o "$dir/mw.time" "$BIN/examples/trivial_middleware" --port 0 \
    --api "http://$ADDR" --mode "$MODE" ${MW_ARGS:-} >"$dir/mw.log" 2>&1 &
  MW=$!
  for _ in $(seq 1 100); do
    grep -q '^listening on ' "$dir/mw.log" && break
    sleep 0.1
  done
  mw_port=$(sed -n 's/^listening on //p' "$dir/mw.log")
  [ -n "$mw_port" ] || { cat "$dir/mw.log"; echo "the middleware did not start" >&2; exit 3; }
  /usr/bin/time -v -o "$dir/service.time" "$BIN/kfsim" run "$SCENARIO" --engine live \
    --middleware "http://127.0.0.1:$mw_port/kf/callback" --listen "$ADDR" --set "entry.app.rate=$rate/s" \
    -q --no-gates --out "$dir/report" >"$dir/run.log" 2>&1 || true
  curl -sf "http://127.0.0.1:$mw_port/stats" >"$dir/stats.json"
  stop "$MW"
  MW=''
  if python3 - "$dir" "$rate" "$MODE" <<'PY'; then best=$rate; fi
import json, re, sys
d, rate, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = json.load(open(f"{d}/report/summary.json"))
mw = json.load(open(f"{d}/stats.json"))
k = s["middleware"]
def calls(ep):
    return k["api"].get(ep, {}).get("count", 0)
def ok(ep):
    e = k["api"].get(ep, {})
    return e.get("count", 0) - e.get("errors", 0)
def timev(name):
    text = open(f"{d}/{name}.time").read()
    get = lambda k: re.search(re.escape(k) + r": (.*)", text).group(1)
    cpu = float(get("User time (seconds)")) + float(get("System time (seconds)"))
    return cpu, int(get("Maximum resident set size (kbytes)")) / 1024
msgs = s["messages"]
sent = msgs.get("sent", 0)
started = k["routed_ms"]["count"]
problems = []
def check(what, good):
    if not good:
        problems.append(what)
check(f"sent {sent} != kfsim {k['customer_messages']} != synced {mw['customer_messages']}",
      sent == k["customer_messages"] == mw["customer_messages"])
check(f"synced {mw['synced']} != kfsim {k['synced']}", mw["synced"] == k["synced"])
check(f"handed_off {mw['handed_off']} != kfsim {ok('kf/service_state/trans')} != sessions {started}",
      mw["handed_off"] == ok("kf/service_state/trans") == started == sent)
if mode == "bot":
    check(f"bot_replies {mw['bot_replies']} != kfsim {ok('kf/send_msg')}",
          mw["bot_replies"] == ok("kf/send_msg") == started)
check(f"api calls {mw['api_calls']} != kfsim {k['api']}",
      all(mw["api_calls"].get(ep, 0) == calls(ep if ep == "gettoken" else "kf/" + ep)
          for ep in ("gettoken", "sync_msg", "send_msg", "service_state/trans", "service_state/get")))
check(f"unacted {k['unacted']} owed at the end {k['owed_at_end']}", k["unacted"] == 0 and k["owed_at_end"] == 0)
check(f"errors {mw['errors']} transport {mw['transport_errors']}",
      not mw["errors"] and not mw["transport_errors"])
check(f"delivered {msgs.get('delivered')} lost {msgs.get('lost')} unfinished {s['sessions']['unfinished']}",
      msgs.get("delivered") == sent and msgs.get("lost") == 0 and s["sessions"]["unfinished"] == 0)
achieved = s["live"]["messages_per_s"]
p99 = s["latency_ms"]["first_response"]["p99"] or 0
kcpu, krss = timev("service")
mcpu, mrss = timev("mw")
accounted = "yes" if not problems else "NO"
print(f"{rate:8d} {achieved:10.0f} {accounted:<10} {p99 / 1000:7.2f}s {kcpu:11.1f} {krss:8.0f}MB "
      f"{mcpu:8.1f} {mrss:8.0f}MB {mw['callbacks']:9d}")
print(f"RESULT middleware rate={rate} carried_msgs_per_s={achieved:.0f} accounted={int(not problems)} "
      f"first_response_p99_s={p99 / 1000:.2f} kfsim_cpu_s={kcpu:.1f} kfsim_rss_mb={krss:.0f} "
      f"mw_cpu_s={mcpu:.1f} mw_rss_mb={mrss:.0f}")
for p in problems:
    print(f"         {p}")
if achieved < 0.95 * rate:
    print(f"         achieved {achieved:.0f}/s of {rate}/s")
sys.exit(0 if not problems and achieved >= 0.95 * rate and p99 <= 2000 else 1)
PY
done
echo "RESULT middleware mode=$MODE max_rate_all_answered=$best/s"
