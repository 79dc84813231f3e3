#!/usr/bin/env bash
# What kf_msg_or_event callbacks cost the reference service on one core:
# customer messages per second without callbacks, then with an encrypted,
# signed callback per logged message (up to --in-flight out at once, the
# rest coalesced, as `kfsim serve` does by default), and the callbacks
# delivered per second. ROUNDS runs of each setting (3 unless said);
# prints every RESULT line and the median ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --example callback_bench
echo "commit $(git rev-parse --short HEAD) · $(date -u +%Y-%m-%dT%H:%MZ) · load $(cut -d' ' -f1-3 /proc/loadavg)"
for in_flight in 64 100000; do
  ratios=()
  for _ in $(seq 1 "${ROUNDS:-3}"); do
    line=$(./target/release/examples/callback_bench --duration "${DURATION:-10}" --in-flight "$in_flight" | grep '^RESULT')
    echo "RESULT callbacks in_flight=$in_flight ${line#RESULT callbacks }"
    ratios+=("$(sed -E 's/.*ratio=([0-9.]+).*/\1/' <<<"$line")")
  done
  median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
  echo "in_flight=$in_flight median ratio (with callbacks / without) = $median (range $(printf '%s\n' "${ratios[@]}" | sort -n | head -1)–$(printf '%s\n' "${ratios[@]}" | sort -n | tail -1))"
done
