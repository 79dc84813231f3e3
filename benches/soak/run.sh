#!/usr/bin/env bash
# Soak benchmark (issue 17): the live quickstart looped against one
# `kfsim serve` for SOAK_MINUTES of wall time (default 30), with a token
# life of 5 minutes (each run outlives tokens; a run of a minute meets
# about one renewal in five) and one restart of the service halfway,
# between two runs. It prints figures, it asserts nothing:
#
# - memory: the service's RSS sampled every 10 s, first / middle / last
#   of each service life, and each driver run's peak RSS;
# - loss: per run, messages sent, delivered, lost, given up on, shed, HTTP
#   errors by kind, and sessions busy at the start;
# - reconciliation: per service life, the customer messages the drivers
#   counted as sent against the service's kfsim_customer_messages_total
#   (equal when nothing was given up on), and channels that expired.
#
#   bash benches/soak/run.sh                         # 30 minutes, release build
#   SOAK_MINUTES=3 KFSIM=target/debug/kfsim bash benches/soak/run.sh
#
# A restart in the middle of a run is not what this measures: the new
# service knows neither the driver's token (renewed on 40014) nor its
# channels (not reopened: the rest of that run is refused).
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/common.sh

MINUTES=${SOAK_MINUTES:-30}
PORT=${PORT:-18092}
SCENARIO=${SCENARIO:-scenarios/quickstart.toml}
ADDR=127.0.0.1:$PORT
WORK=$(mktemp -d)
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install -y time" >&2; exit 2; }
if [ -z "${KFSIM:-}" ]; then
  cargo build --release --quiet
  KFSIM=target/release/kfsim
fi

SERVICE=""
SAMPLER=""
start_service() {
  local life=$1
  "$KFSIM" serve --addr "$ADDR" --scenario "$SCENARIO" --token-ttl 5m >"$WORK/serve-$life.log" 2>&1 &
  SERVICE=$!
  wait_until_up "http://$ADDR/healthz" "$WORK/serve-$life.log"
  ( while kill -0 "$SERVICE" 2>/dev/null; do
      ps -o rss= -p "$SERVICE" >>"$WORK/rss-$life" 2>/dev/null || true
      sleep 10
    done ) &
  SAMPLER=$!
}
stop_service() {
  local life=$1
  curl -sf "http://$ADDR/metrics" >"$WORK/metrics-$life" || true
  ps -o rss= -p "$SERVICE" >>"$WORK/rss-$life" 2>/dev/null || true
  kill -TERM "$SERVICE" 2>/dev/null || true
  wait "$SERVICE" 2>/dev/null || true
  kill "$SAMPLER" 2>/dev/null || true
  wait "$SAMPLER" 2>/dev/null || true
  SERVICE=""
}
trap '[ -n "$SERVICE" ] && stop_service last; rm -rf "$WORK"' EXIT

START=$(date +%s)
END=$((START + MINUTES * 60))
HALF=$((START + MINUTES * 30))
life=1
restarted=0
start_service $life
n=0
while [ "$(date +%s)" -lt "$END" ]; do
  if [ $restarted = 0 ] && [ "$(date +%s)" -ge "$HALF" ]; then
    stop_service $life
    life=2
    restarted=1
    start_service $life
  fi
  n=$((n + 1))
  /usr/bin/time -v -o "$WORK/run-$n.time" "$KFSIM" run "$SCENARIO" --engine live --target "http://$ADDR" \
    -q --no-gates --out "$WORK/run-$n" 2>"$WORK/run-$n.err" || true
  echo "$life" >"$WORK/run-$n.life"
done
stop_service $life

python3 - "$WORK" "$n" "$life" <<'PY'
import json, os, re, sys
work, runs, lives = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def metric(life, name):
    try:
        text = open(f"{work}/metrics-{life}").read()
    except OSError:
        return None
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None

sent = {l: 0 for l in range(1, lives + 1)}
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
    live, m, c = s["live"], s["messages"], s["sessions"]
    errors = {k: v["errors_by_kind"] for k, v in s["http"].items() if v["errors"]}
    sent[life] += m["sent"]
    print(f"RESULT run {i} life={life} wall_s={live['wall_s']:.0f} driver_peak_rss_mb={rss:.0f} "
          f"offered={c['offered']} answered={c['answered']} sent={m['sent']} delivered={m['delivered']} "
          f"lost={m['lost']} gave_up={live['gave_up']} shed={live.get('shed')} "
          f"busy_at_start={live.get('busy_at_start')} gettoken={s['http'].get('gettoken', {}).get('count')} "
          f"errors={errors or 0}")
for life in range(1, lives + 1):
    try:
        rss = [int(x) / 1024 for x in open(f"{work}/rss-{life}").read().split()]
    except OSError:
        rss = []
    if rss:
        mid = rss[len(rss) // 2]
        print(f"RESULT service life={life} rss_mb first={rss[0]:.0f} middle={mid:.0f} last={rss[-1]:.0f} "
              f"max={max(rss):.0f} samples={len(rss)}")
    print(f"RESULT reconcile life={life} driver_sent={sent[life]} "
          f"service_customer_messages={metric(life, 'kfsim_customer_messages_total')} "
          f"channels_expired={metric(life, 'kfsim_channels_expired_total')}")
PY
