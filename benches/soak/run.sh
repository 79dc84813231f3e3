#!/usr/bin/env bash
# Soak benchmark (issue 17): a live day (scenarios/bench-soak.toml, the
# quickstart before it gained a bot and a transfer) looped against one
# `kfsim serve` for SOAK_MINUTES of wall time (default 30), with a token
# life of 5 minutes (the runs outlive tokens: the service hands a driver
# the token it has, with what is left of its life) and one restart of the
# service halfway, in the middle of a run (SIGTERM, a deploy: the service
# finishes the requests it has and logs its totals; a new one starts on
# the same port; the driver notices its channels are gone and reopens
# them). It prints figures and a verdict per check; it asserts nothing
# (exit 0 whatever it measures):
#
# - memory over time: every 10 s the RSS of the service and of the driver
#   run in progress, one line a minute; per service life the growth from
#   its middle third to its last third (flat: a plateau once the logs and
#   queues reach their bounds), and each driver run's peak RSS;
# - loss: per run, messages sent, delivered, lost, given up on, shed,
#   reconnects and what they lost, HTTP errors by kind, gettoken calls;
# - reconciliation with the service: per service life, the customer
#   messages the driver runs counted as sent (a run spanning the restart
#   split by `live.reconnects.sent_since`) against the service's own total
#   (`kfsim serve: stopped customer_messages=…`); over both lives, sessions
#   the drivers started against sessions the services started, and
#   messages agents saw against messages the services routed to them
#   (the restart's lost messages between the two). A SCENARIO with a bot
#   or transfers is soaked all the same, but those two totals are not
#   compared: a bot ends sessions no servicer sees, and a transfer starts
#   a session anew.
#
#   bash benches/soak/run.sh                         # 30 minutes, release build
#   SOAK_MINUTES=4 KFSIM=target/debug/kfsim bash benches/soak/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/common.sh

MINUTES=${SOAK_MINUTES:-30}
PORT=${PORT:-18092}
SCENARIO=${SCENARIO:-scenarios/bench-soak.toml}
TTL=${TOKEN_TTL:-5m}
ADDR=127.0.0.1:$PORT
WORK=$(mktemp -d)
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install -y time" >&2; exit 2; }
if [ -z "${KFSIM:-}" ]; then
  cargo build --release --quiet --bin kfsim
  KFSIM=${CARGO_TARGET_DIR:-target}/release/kfsim
fi

SERVICE=""
SAMPLER=""
RUN=""
start_service() {
  local life=$1
  "$KFSIM" serve --addr "$ADDR" --scenario "$SCENARIO" --token-ttl "$TTL" >"$WORK/serve-$life.log" 2>&1 &
  SERVICE=$!
  echo "$SERVICE" >"$WORK/service.pid"
  echo "$life" >"$WORK/life"
  wait_until_up "http://$ADDR/healthz" "$WORK/serve-$life.log"
}
# SIGTERM: the service finishes what it has in hand and logs its totals
stop_service() {
  local life=$1
  curl -sf "http://$ADDR/metrics" >"$WORK/metrics-$life" || true
  kill -TERM "$SERVICE" 2>/dev/null || true
  wait "$SERVICE" 2>/dev/null || true
  SERVICE=""
}
rss_kb() { ps -o rss= -p "$1" 2>/dev/null | tr -d ' ' || true; }
# every 10 s: seconds since the start, service life, service RSS, driver RSS (kB)
sample() {
  while :; do
    local s d tp
    s=$(rss_kb "$(cat "$WORK/service.pid" 2>/dev/null)")
    # the driver is /usr/bin/time's child
    tp=$(cat "$WORK/driver.pid" 2>/dev/null || true)
    d=""
    [ -n "$tp" ] && d=$(rss_kb "$(pgrep -P "$tp" | head -1)")
    echo "$(( $(date +%s) - START )) $(cat "$WORK/life") ${s:-0} ${d:-0}" >>"$WORK/samples"
    sleep 10
  done
}
cleanup() {
  if [ -n "$RUN" ]; then kill "$RUN" 2>/dev/null || true; fi
  if [ -n "$SAMPLER" ]; then kill "$SAMPLER" 2>/dev/null || true; fi
  if [ -n "$SERVICE" ]; then stop_service last; fi
  # KEEP=1 keeps the logs, samples and every run's report
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

echo "commit $(git rev-parse --short HEAD) · $(date -u +%Y-%m-%dT%H:%MZ) · $(nproc) cores · load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "soak: $SCENARIO looped for $MINUTES min against kfsim serve --token-ttl $TTL, restarted once halfway"
START=$(date +%s)
END=$((START + MINUTES * 60))
HALF=$((START + MINUTES * 30))
life=1
restarted=0
start_service $life
sample &
SAMPLER=$!
n=0
while [ "$(date +%s)" -lt "$END" ]; do
  n=$((n + 1))
  echo "$life" >"$WORK/run-$n.life"
  began=$(date +%s)
  /usr/bin/time -v -o "$WORK/run-$n.time" "$KFSIM" run "$SCENARIO" --engine live --target "http://$ADDR" \
    -q --no-gates --out "$WORK/run-$n" 2>"$WORK/run-$n.err" &
  RUN=$!
  echo "$RUN" >"$WORK/driver.pid"
  while kill -0 "$RUN" 2>/dev/null; do
    # the restart: halfway, 20 to 40 s into a run (a bench-soak run sends
    # for about a minute), else into the next one
    into=$(( $(date +%s) - began ))
    if [ $restarted = 0 ] && [ "$(date +%s)" -ge "$HALF" ] && [ $into -ge 20 ] && [ $into -le 40 ]; then
      stop_service $life
      life=2
      restarted=1
      start_service $life
      echo "$n" >"$WORK/restarted-in"
    fi
    sleep 1
  done
  wait "$RUN" || true
  RUN=""
  rm -f "$WORK/driver.pid"
done
kill "$SAMPLER" 2>/dev/null || true
SAMPLER=""
stop_service $life

# A bot answers sessions no servicer sees, and a transfer starts a session
# anew in another account: the totals below reconcile neither.
MIXED=0
if grep -qE '^[[:space:]]*(\[account\.bot\]|bot[[:space:]]*=|transfer[[:space:]]*=)' "$SCENARIO"; then MIXED=1; fi

python3 - "$WORK" "$n" "$life" "$MIXED" <<'PY'
import json, os, re, sys
work, runs, lives, mixed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
spanning = int(open(f"{work}/restarted-in").read()) if os.path.exists(f"{work}/restarted-in") else None

def stopped(life):
    """The service's totals from its last log line."""
    for line in reversed(open(f"{work}/serve-{life}.log").read().splitlines()):
        if "kfsim serve: stopped" in line:
            return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    return None

def verdict(good):
    return "ok" if good else "MISMATCH"

# memory over time
samples = [tuple(int(x) for x in l.split()) for l in open(f"{work}/samples") if len(l.split()) == 4]
print("RESULT memory (RSS MB, last sample of each minute): minute life service driver")
by_minute = {}
for t, life, s, d in samples:
    by_minute[t // 60] = (life, s, d)
for minute, (life, s, d) in sorted(by_minute.items()):
    print(f"  {minute:3d} {life} {s / 1024:7.1f} {d / 1024:7.1f}")
for life in range(1, lives + 1):
    rss = [s / 1024 for t, l, s, d in samples if l == life and s > 0]
    if len(rss) < 3:
        continue
    k = len(rss) // 3
    mid, last = max(rss[k:2 * k]), max(rss[2 * k:])
    print(f"RESULT service life={life} rss_mb first={rss[0]:.0f} max_middle_third={mid:.0f} "
          f"max_last_third={last:.0f} growth_mb={last - mid:+.1f} samples={len(rss)}")

# every run
sent = {l: 0 for l in range(1, lives + 1)}
totals = dict(sessions=0, delivered=0, lost=0, reconnect_lost=0, gave_up=0, shed=0)
peaks = []
for i in range(1, runs + 1):
    life = int(open(f"{work}/run-{i}.life").read())
    try:
        s = json.load(open(f"{work}/run-{i}/summary.json"))
    except OSError:
        err = open(f"{work}/run-{i}.err").read().strip().splitlines()
        print(f"RESULT run {i} life={life} no report: {err[-1] if err else '?'}")
        continue
    t = open(f"{work}/run-{i}.time").read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024
    peaks.append(rss)
    live, m, c = s["live"], s["messages"], s["sessions"]
    r = live.get("reconnects", {})
    errors = {k: v["errors_by_kind"] for k, v in s["http"].items() if v["errors"]}
    if i == spanning and r.get("count", 0) > 0:
        sent[1] += m["sent"] - r["sent_since"]
        sent[2] += r["sent_since"]
    else:
        sent[life] += m["sent"]
    gave_up = sum(live["gave_up"].values())
    totals["sessions"] += s["run"]["sessions_total"]
    totals["delivered"] += m["delivered"]
    totals["lost"] += m["lost"]
    totals["reconnect_lost"] += r.get("messages_lost", 0)
    totals["gave_up"] += gave_up
    totals["shed"] += live["shed"]
    print(f"RESULT run {i} life={life}{'→2' if i == spanning else ''} wall_s={live['wall_s']:.0f} "
          f"driver_peak_rss_mb={rss:.0f} offered={c['offered']} answered={c['answered']} "
          f"unfinished={c['unfinished']} sent={m['sent']} delivered={m['delivered']} lost={m['lost']} "
          f"gave_up={gave_up} shed={live['shed']} busy_at_start={live['busy_at_start']} "
          f"reconnects={r.get('count')} held={r.get('held')} waiting={r.get('waiting')} "
          f"messages_lost={r.get('messages_lost')} gettoken={s['http'].get('gettoken', {}).get('count')} "
          f"errors={errors or 0}")
if peaks:
    print(f"RESULT driver peak_rss_mb first={peaks[0]:.0f} min={min(peaks):.0f} max={max(peaks):.0f} "
          f"last={peaks[-1]:.0f} runs={len(peaks)}")

# reconciliation with the services
print(f"RESULT loss lost={totals['lost']} of_which_restart={totals['reconnect_lost']} "
      f"gave_up={totals['gave_up']} shed={totals['shed']} "
      f"{verdict(totals['lost'] == totals['reconnect_lost'] and totals['gave_up'] == 0 and totals['shed'] == 0)}")
svc = {l: stopped(l) for l in range(1, lives + 1)}
for life in range(1, lives + 1):
    st = svc[life] or {}
    print(f"RESULT reconcile life={life} driver_sent={sent[life]} "
          f"service_customer_messages={st.get('customer_messages')} channels_expired={st.get('channels_expired')} "
          f"{verdict(sent[life] == st.get('customer_messages') and st.get('channels_expired') == 0)}")
started = sum((svc[l] or {}).get("sessions_started", 0) for l in svc)
routed = sum((svc[l] or {}).get("routed", 0) for l in svc)
if mixed:
    print(f"RESULT reconcile sessions driver={totals['sessions']} services_started={started} "
          f"delivered={totals['delivered']} services_routed={routed} not compared: the scenario has a bot "
          f"or transfers (sessions a bot ends reach no servicer; a transfer starts a session anew)")
else:
    print(f"RESULT reconcile sessions driver={totals['sessions']} services_started={started} "
          f"{verdict(totals['sessions'] == started)}")
    print(f"RESULT reconcile delivered={totals['delivered']} services_routed={routed} "
          f"restart_lost={totals['reconnect_lost']} "
          f"{verdict(totals['delivered'] <= routed <= totals['delivered'] + totals['reconnect_lost'])}")
PY
