#!/usr/bin/env bash
# The simulator's and SimPy's work per M/M/44 session counted in machine
# instructions (valgrind's cachegrind) instead of timed. A slow hour on this
# machine slows SimPy more than the simulator (the fifty-fifth
# block of docs/performance.md: SimPy at 22 % of its best, the ratio to it at 99.5 where
# quiet hours had about 60); instructions do not move with the hour, so this
# ratio of work is the one figure of the simulator's speed that two hours
# can compare. It is a proxy, not issue 18's target (a ratio of wall times):
# an instruction of an interpreter and one of compiled code do not cost the
# same time.
#
#   bash benches/siminstr/run.sh
#   SESSIONS=1000000 CUSTOMERS=20000 bash benches/siminstr/run.sh
#
# Each program runs twice, N and 2N sessions, and the difference is
# divided by N: start-up (loading, parsing, imports) cancels out.
# Prints `RESULT siminstr ...` lines: instructions per session of
# bench-mmc (with the metrics, and of the engine alone), SimPy's per
# customer, and `ratio_simpy=` (SimPy's ÷ the simulator's).
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/common.sh

SESSIONS=${SESSIONS:-400000}
CUSTOMERS=${CUSTOMERS:-10000}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install -y valgrind" >&2; exit 2; }

cargo build --release --quiet
PY=$(simpy_python)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Instructions of the largest process a command ran (`kfsim bench` simulates
# each scenario in a child process, to measure its memory alone); the
# command's standard output is left in $WORK/out.
instructions() {
  rm -f "$WORK"/cg.*
  valgrind --tool=cachegrind --cache-sim=no --trace-children=yes \
    --cachegrind-out-file="$WORK/cg.%p" "$@" >"$WORK/out" 2>/dev/null
  cat "$WORK"/cg.* | awk '/^summary:/ {print $2}' | sort -n | tail -1
}
# Sessions `kfsim bench` simulated (about the number asked for).
simulated() { awk '$1 == "bench-mmc" {print $2}' "$WORK/out"; }

per_session() {
  local a na b nb
  a=$(instructions "$TARGET_DIR/release/kfsim" bench "$@" scenarios/bench-mmc.toml --sessions "$SESSIONS")
  na=$(simulated)
  b=$(instructions "$TARGET_DIR/release/kfsim" bench "$@" scenarios/bench-mmc.toml --sessions $((2 * SESSIONS)))
  nb=$(simulated)
  awk -v a="$a" -v b="$b" -v na="$na" -v nb="$nb" 'BEGIN {printf "%.0f", (b - a) / (nb - na)}'
}

kfsim=$(per_session)
engine=$(per_session --engine-only)
a=$(instructions "$PY" benches/sim/simpy_mmc.py --customers "$CUSTOMERS")
b=$(instructions "$PY" benches/sim/simpy_mmc.py --customers $((2 * CUSTOMERS)))
simpy=$(awk -v a="$a" -v b="$b" -v n="$CUSTOMERS" 'BEGIN {printf "%.0f", (b - a) / n}')
echo "RESULT siminstr scenario=bench-mmc instructions_per_session=$kfsim"
echo "RESULT siminstr scenario=bench-mmc engine_only_instructions_per_session=$engine"
echo "RESULT siminstr name=simpy instructions_per_customer=$simpy"
awk -v s="$simpy" -v k="$kfsim" 'BEGIN {printf "RESULT siminstr ratio_simpy=%.1f (SimPy'"'"'s instructions per customer ÷ the simulator'"'"'s per session)\n", s / k}'
