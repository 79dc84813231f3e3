#!/usr/bin/env bash
# The simulator's speed, side by side with SimPy on the same M/M/44 model in
# the same run: kfsim (bench-mmc, then bench-chat) and SimPy take turns on
# one core each round, so a slow minute slows both — though not equally:
# in a slow hour SimPy slows more than the simulator and the ratio rises
# (benches/all.sh judges the hour by SimPy's rate against its best).
#
#   bash benches/sim/run.sh                 # 1 round, 5 million sessions
#   ROUNDS=3 SESSIONS=10000000 bash benches/sim/run.sh
#
# SimPy is installed into a throwaway venv under the cargo target folder.
# Prints RESULT lines: sessions/s per scenario (with the metrics, and of
# the engine alone: `kfsim bench --engine-only`), SimPy's customers/s, and
# `RESULT sim ratio_simpy=` (bench-mmc ÷ SimPy) for each round.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/common.sh

ROUNDS=${ROUNDS:-1}
SESSIONS=${SESSIONS:-5000000}
CUSTOMERS=${CUSTOMERS:-500000}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
command -v taskset >/dev/null || { echo "taskset is missing (util-linux)" >&2; exit 2; }

cargo build --release --quiet
PY=$(simpy_python)
echo "# SimPy $("$PY" -c 'import simpy; print(simpy.__version__)'), $("$PY" --version)"

rate() { awk -v s="$2" '$1 == s {print $4}' <<<"$1"; }
for round in $(seq 1 "$ROUNDS"); do
  out=$(taskset -c 1 "$TARGET_DIR/release/kfsim" bench scenarios/bench-mmc.toml scenarios/bench-chat.toml --sessions "$SESSIONS")
  mmc=$(rate "$out" bench-mmc)
  chat=$(rate "$out" bench-chat)
  echo "RESULT sim scenario=bench-mmc sessions_per_s=$mmc"
  echo "RESULT sim scenario=bench-chat sessions_per_s=$chat"
  # the engine alone (no metrics): what the metrics cost is the difference
  out=$(taskset -c 1 "$TARGET_DIR/release/kfsim" bench --engine-only scenarios/bench-mmc.toml scenarios/bench-chat.toml --sessions "$SESSIONS")
  echo "RESULT sim scenario=bench-mmc engine_only_sessions_per_s=$(rate "$out" bench-mmc)"
  echo "RESULT sim scenario=bench-chat engine_only_sessions_per_s=$(rate "$out" bench-chat)"
  simpy=$(taskset -c 1 "$PY" benches/sim/simpy_mmc.py --customers "$CUSTOMERS")
  echo "$simpy"
  per_s=$(sed -n 's/.*customers_per_s=\([0-9]*\).*/\1/p' <<<"$simpy")
  awk -v a="$mmc" -v b="$per_s" -v r="$round" 'BEGIN {printf "RESULT sim round=%d ratio_simpy=%.1f\n", r, a / b}'
done
