#!/usr/bin/env bash
# Scale benchmark of the live engine: scenarios/bench-live.toml (1000
# arrivals/s, 5 messages each, about 105 000 sessions in flight, 5000
# customer messages/s each answered) driven against the reference service
# running as its own process, so that the driver's and the service's
# memory and CPU are measured separately (`/usr/bin/time -v` of each).
#
#   bash benches/live/run.sh                # about 4 minutes
#   SCENARIO=scenarios/x.toml bash benches/live/run.sh
#   SCENARIO=benches/live/20k.toml bash benches/live/run.sh   # issue 18: 20 000 msgs/s, 500 000 in flight
#   DRIVER=/tmp/kfsim-old bash benches/live/run.sh   # another build's driver
#
# Prints RESULT lines: the load carried (messages and replies per second
# of the measured window, sessions in flight), end-to-end accounting, the
# driver's lag, HTTP errors, and peak memory / CPU time of each process.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/common.sh

PORT=${PORT:-18091}
SCENARIO=${SCENARIO:-scenarios/bench-live.toml}
ADDR=127.0.0.1:$PORT
WORK=$(mktemp -d)
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install -y time" >&2; exit 2; }

cargo build --release --quiet
DRIVER=${DRIVER:-target/release/kfsim}
/usr/bin/time -v -o "$WORK/service.time" target/release/kfsim serve --addr "$ADDR" --scenario "$SCENARIO" \
  >"$WORK/serve.log" 2>&1 &
SERVER=$!
# $SERVER is /usr/bin/time: the signal goes to the service, its child, so
# that time outlives it and writes its figures.
stop_service() { pkill -TERM -P "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
trap 'stop_service; rm -rf "$WORK"' EXIT
wait_until_up "http://$ADDR/healthz" "$WORK/serve.log"

/usr/bin/time -v -o "$WORK/driver.time" "$DRIVER" run "$SCENARIO" --engine live \
  --target "http://$ADDR" -q --no-gates --out "$WORK/report" || true
stop_service

python3 - "$WORK" <<'PY'
import json, re, sys
work = sys.argv[1]
s = json.load(open(f"{work}/report/summary.json"))
def timev(name):
    text = open(f"{work}/{name}.time").read()
    get = lambda k: re.search(re.escape(k) + r": (.*)", text).group(1)
    cpu = float(get("User time (seconds)")) + float(get("System time (seconds)"))
    return int(get("Maximum resident set size (kbytes)")) / 1024, cpu
live, m, run = s["live"], s["messages"], s["run"]
print(f"RESULT load messages/s={live['messages_per_s']:.0f} replies/s={live['replies_per_s']:.0f} "
      f"peak_in_flight={run['peak_in_flight']} wall_s={live['wall_s']:.0f}")
print(f"RESULT delivery sent={m['sent']} delivered={m['delivered']} lost={m['lost']} "
      f"duplicated={m['duplicated']} reordered={m['reordered']}")
d = s["delivery_ms"]
print(f"RESULT latency to_agent_p99_ms={d['to_agent']['p99']} to_customer_p99_ms={d['to_customer']['p99']} "
      f"late_actions={s['late_actions']} lag_p99_ms={s['lag_ms']['p99']}")
print(f"RESULT give_up {live['gave_up']} open_at_end={live['open_at_end']} shed={live['shed']} "
      f"missed_customers={live['missed']['customers']} missed_servicers={live['missed']['servicers']}")
# the driver's own lag: a driver short of CPU measures itself, not the target
print(f"RESULT driver_lag saturated={live['saturated']} wakeup_lag_p99_ms={live['driver_lag_ms']['p99']}")
errors = {k: v["errors_by_kind"] for k, v in s["http"].items() if v["errors"]}
print(f"RESULT http calls={sum(v['count'] for v in s['http'].values())} errors={errors or 0}")
# what the calls were: a change in the driver's CPU usually shows here first
print("RESULT http_by_endpoint " + " ".join(f"{k.replace('/', '_')}={v['count']}" for k, v in sorted(s["http"].items())))
for name in ("driver", "service"):
    rss, cpu = timev(name)
    print(f"RESULT {name} peak_rss_mb={rss:.0f} cpu_s={cpu:.1f}")
PY
