#!/usr/bin/env bash
# Every performance figure of the README and docs/performance.md, measured again: each benchmark
# script is run ROUNDS times in turn (sim with its SimPy anchor, the same
# in instructions (siminstr: a slow hour does not move it), the sweep,
# the driver with its wrk anchor, the service under wrk with its
# trivial-server anchor, the live engine at 6 000 and at 20 000 messages/s,
# callbacks, the middleware benchmark, the service's memory per held
# session, `kfsim merge` of 100 shards), and every RESULT figure is reported
# as the median and range over the rounds, with the commit, the date and how
# noisy the machine was while it ran. The 30-minute soak (benches/soak) is
# its own script: one run is the measurement.
#
#   bash benches/all.sh                           # 5 rounds of everything (about an hour and three quarters)
#   ROUNDS=3 BENCHES="sim wrk" bash benches/all.sh
#
# Writes benches/results/DATE-COMMIT.md (the tables docs/performance.md pastes) and
# the raw RESULT lines beside it (DATE-COMMIT-2, -3... for a later run of the
# same commit the same day). A figure measured while the machine was not
# quiet is marked: the CPUs more than 10 % busy in the 3 s before a
# benchmark started (something else ran; the load average is printed too,
# but it lags a minute behind and the previous benchmark always raises it),
# CPU steal above 2 % (a noisy neighbour on the host), an anchor whose own
# spread over the rounds exceeds 15 %, or a slow machine. Some hours this
# machine runs at half its speed or less with none of the CPUs busy and no
# steal (wrk got 57 000 req/s from the trivial server where it gets 190 000,
# SimPy a third of its usual rate): so before each benchmark a fixed
# single-core workload (benches/calibrate.py) is timed, and its median, like
# each anchor's, is compared with the best median in the earlier files of
# benches/results. Below 80 % of its best the machine is slow, and a figure
# without an anchor (or a ratio to an anchor that slowed more than the code
# measured) is not to be trusted.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
BENCHES=${BENCHES:-sim siminstr sweep driver wrk live live20k callbacks middleware held merge}
COMMIT=$(git describe --always --dirty)
DATE=$(date -u +%Y-%m-%d)
OUT=benches/results/$DATE-$COMMIT
# a second run of the same commit on the same day must not overwrite the first
n=1
while [ -e "$OUT.md" ] || [ -e "$OUT.raw" ]; do
  n=$((n + 1))
  OUT=benches/results/$DATE-$COMMIT-$n
done
mkdir -p benches/results
RAW=$OUT.raw
: >"$RAW"

# steal, busy (neither idle nor iowait) and total jiffies of all CPUs so far
cpu_jiffies() { awk '$1 == "cpu" {t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t - $5 - $6, t}' /proc/stat; }
# percent of the CPUs busy over the next 3 s, with nothing of ours running
busy_pct() {
  local b0 b1 t0 t1 _
  read -r _ b0 t0 < <(cpu_jiffies)
  sleep 3
  read -r _ b1 t1 < <(cpu_jiffies)
  awk -v a="$b0" -v b="$b1" -v s="$t0" -v e="$t1" 'BEGIN {printf "%.1f", 100 * (b - a) / (e - s)}'
}

cargo build --release --quiet
for round in $(seq 1 "$ROUNDS"); do
  for bench in $BENCHES; do
    busy=$(busy_pct)
    load=$(cut -d' ' -f1 /proc/loadavg)
    calib=$(taskset -c 1 python3 benches/calibrate.py)
    read -r steal0 _ total0 < <(cpu_jiffies)
    echo "# round $round/$ROUNDS: $bench (busy $busy %, load $load, calibration $calib/s)" >&2
    if ! out=$(ROUNDS=1 bash "benches/$bench/run.sh" 2>&1); then
      echo "$out" | tail -20 >&2
      echo "benches/$bench/run.sh failed in round $round" >&2
      exit 1
    fi
    read -r steal1 _ total1 < <(cpu_jiffies)
    steal=$(awk -v a="$steal0" -v b="$steal1" -v s="$total0" -v e="$total1" 'BEGIN {printf "%.2f", 100 * (b - a) / (e - s)}')
    grep '^RESULT' <<<"$out" | sed "s/^RESULT /$bench $round /" >>"$RAW"
    echo "$bench $round noise busy_pct=$busy load=$load steal_pct=$steal calib_per_s=$calib" >>"$RAW"
  done
done

python3 - "$RAW" "$COMMIT" "$DATE" "$ROUNDS" <<'PY' | tee "$OUT.md"
import glob, os, re, statistics, sys
from collections import OrderedDict, defaultdict

raw, commit, date, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
# tokens that name what was measured rather than measure it
LABELS = {"path", "batch", "scenario", "mode", "life", "name", "in_flight", "rate", "state"}
# each anchor, and what it measures: the driver's and the service's wrk
# runs are the same (wrk, one thread, 64 connections, on core 1 against the
# trivial server on core 0), so each is set against the best of both
ANCHORS = {
    ("sim", "simpy", "customers_per_s"): "SimPy on M/M/44",
    ("wrk", "path=trivial", "req_per_s"): "wrk on the trivial server",
    ("driver", "wrk", "requests/s"): "wrk on the trivial server",
}
# a median below this share of its best in benches/results: a slow machine
SLOW = 0.8


def parse(path):
    """RESULT figures by (bench, label, key), and the noise rows by bench."""
    values = OrderedDict()
    noise = defaultdict(list)
    for line in open(path):
        if len(line.split()) < 2:
            continue
        bench, rnd, *tokens = line.split()
        if tokens and tokens[0] == "noise":
            kv = dict(t.split("=", 1) for t in tokens[1:])
            calib = float(kv["calib_per_s"]) if "calib_per_s" in kv else None
            noise[bench].append((float(kv["busy_pct"]), float(kv["load"]), float(kv["steal_pct"]), calib))
            continue
        label = []
        figures = []
        for t in tokens:
            k, eq, v = t.partition("=")
            v = v.rstrip("%,)")
            if eq and k not in LABELS and k != "round" and re.fullmatch(r"-?[0-9.]+(e-?[0-9]+)?", v):
                figures.append((k, float(v)))
            elif eq and k == "round":
                continue
            elif not eq and not label and t.isidentifier():
                label.append(t)
            elif eq and k in LABELS:
                label.append(t)
        for k, v in figures:
            values.setdefault((bench, " ".join(label), k), []).append(v)
    return values, noise


values, noise = parse(raw)
# the best median of each anchor and of the calibration in the earlier files
best_anchor = {}
best_calib = 0.0
for other in glob.glob(os.path.join(os.path.dirname(raw), "*.raw")):
    if os.path.samefile(other, raw):
        continue
    try:
        v, n = parse(other)
    except (ValueError, KeyError, OSError) as e:
        # a stray or hand-made file must not cost the run its summary
        print(f"(not read for the best medians: {other}: {e!r})", file=sys.stderr)
        continue
    for key in ANCHORS.keys() & v.keys():
        kind = ANCHORS[key]
        best_anchor[kind] = max(best_anchor.get(kind, 0.0), statistics.median(v[key]))
    calibs = [r[3] for rows in n.values() for r in rows if r[3] is not None]
    if calibs:
        best_calib = max(best_calib, statistics.median(calibs))


def fmt(x):
    if abs(x) >= 1000:
        return f"{x:,.0f}".replace(",", " ")
    return f"{x:.3g}"


print(f"Measured by `bash benches/all.sh` at commit {commit} on {date}, {rounds} rounds; "
      "median (min–max) over the rounds.\n")
print("| benchmark | what | figure | median (range) | n |")
print("|---|---|---|---|---|")
spread = {}
for (bench, label, key), xs in values.items():
    med = statistics.median(xs)
    print(f"| {bench} | {label} | {key} | {fmt(med)} ({fmt(min(xs))}–{fmt(max(xs))}) | {len(xs)} |")
    if (bench, label, key) in ANCHORS and min(xs) > 0:
        best = best_anchor.get(ANCHORS[(bench, label, key)])
        spread[(bench, label, key)] = (max(xs) / min(xs) - 1, med / best if best else None)
print()
print("Machine speed: the calibration's median (benches/calibrate.py, one core) and each anchor's, "
      "as a share of the best median in the earlier files of benches/results; below "
      f"{SLOW:.0%} the machine is slow.\n")
print("| benchmark | CPUs busy before, % (max) | load at start (max) | CPU steal % (max) | calibration /s (share of best) "
      "| anchor spread (share of best) | to be trusted |")
print("|---|---|---|---|---|---|---|")
for bench, rows in noise.items():
    busy = max(r[0] for r in rows)
    load = max(r[1] for r in rows)
    steal = max(r[2] for r in rows)
    calibs = [r[3] for r in rows if r[3] is not None]
    anchor = [v for (b, _, _), v in spread.items() if b == bench]
    reasons = []
    if busy > 10.0:
        reasons.append("machine not idle")
    if steal > 2.0:
        reasons.append("CPU steal")
    if anchor and anchor[0][0] > 0.15:
        reasons.append("anchor unsteady")
    c = "—"
    if calibs:
        med = statistics.median(calibs)
        share = med / best_calib if best_calib else None
        c = fmt(med) + (f" ({share:.0%})" if share else " (first)")
        if share and share < SLOW:
            reasons.append("machine slow")
    a = "—"
    if anchor:
        sp, share = anchor[0]
        a = f"{sp:.0%}" + (f" ({share:.0%})" if share else "")
        if share and share < SLOW:
            reasons.append("anchor slow")
    print(f"| {bench} | {busy:.1f} | {load:.2f} | {steal:.2f} | {c} | {a} | {'yes' if not reasons else 'NO: ' + ', '.join(reasons)} |")
PY
echo "written: $OUT.md ($RAW)" >&2
