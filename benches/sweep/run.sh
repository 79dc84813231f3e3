#!/usr/bin/env bash
# A capacity sweep's wall time and memory: 40 agent counts × 5 replications
# of a one-hour scenario at 10 000 sessions/h (200 simulated runs, 2 million
# sessions) on every core, its report included.
#
#   bash benches/sweep/run.sh               # 1 round
#   ROUNDS=5 bash benches/sweep/run.sh
#
# Prints `RESULT sweep wall_s= peak_rss_mb= cpu_s=` per round.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install -y time" >&2; exit 2; }

cargo build --release --quiet
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for _ in $(seq 1 "${ROUNDS:-1}"); do
  /usr/bin/time -f '%e %M %U %S' -o "$WORK/time" target/release/kfsim sweep scenarios/bench-sweep.toml \
    --vary agents.kf.count=680..758:2 --replications 5 --out "$WORK/out" >/dev/null
  read -r wall rss user sys <"$WORK/time"
  awk -v w="$wall" -v r="$rss" -v u="$user" -v s="$sys" \
    'BEGIN {printf "RESULT sweep wall_s=%.2f peak_rss_mb=%.0f cpu_s=%.2f\n", w, r / 1024, u + s}'
done
