#!/usr/bin/env bash
# Merge benchmark: the time and peak memory of `kfsim merge` over SHARDS
# shard folders of a one-hour live run.
#
#   bash benches/merge/run.sh              # about a minute after the build
#   SHARDS=1000 bash benches/merge/run.sh
#
# One real shard folder is made: scenarios/live-check.toml (one hour of
# scenario time, M/M/34, 30 arrivals/min) run live at ×120 against `kfsim
# serve` as shard 0/1. It is then copied SHARDS times, each copy renamed
# shard I/SHARDS: the copies are the size and shape of real shards (every
# histogram, the series of the whole hour, all 34 agents), which is what
# merging costs; running SHARDS live processes on one machine would only
# measure the machine. The merge reads, checks and merges them and writes
# the whole report (summary, series, histograms, charts, report.html).
#
# Prints RESULT lines: the shard folder's size, the merge's wall time and
# peak memory (`/usr/bin/time -v`).
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/common.sh

SHARDS=${SHARDS:-100}
PORT=${PORT:-18093}
ADDR=127.0.0.1:$PORT
WORK=$(mktemp -d)
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install -y time" >&2; exit 2; }

cargo build --release --quiet
BIN=${CARGO_TARGET_DIR:-target}/release/kfsim
"$BIN" serve --addr "$ADDR" --scenario scenarios/live-check.toml >"$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT
wait_until_up "http://$ADDR/healthz" "$WORK/serve.log"
"$BIN" run scenarios/live-check.toml --engine live --target "http://$ADDR" \
  -q --no-gates --out "$WORK/one" || true
kill "$SERVER"

python3 - "$WORK" "$SHARDS" <<'PY'
import json, os, sys
work, n = sys.argv[1], int(sys.argv[2])
shard = json.load(open(os.path.join(work, "one", "shard.json")))
for i in range(n):
    d = os.path.join(work, "shards", f"shard-{i}")
    os.makedirs(d)
    shard["shard"] = {"index": i, "count": n}
    with open(os.path.join(d, "shard.json"), "w") as f:
        json.dump(shard, f)
print(f"RESULT shard_json_bytes={os.path.getsize(os.path.join(work, 'one', 'shard.json'))}")
PY

/usr/bin/time -v -o "$WORK/merge.time" "$BIN" merge "$WORK"/shards/shard-* \
  --out "$WORK/merged" --quiet --no-gates
python3 - "$WORK" "$SHARDS" <<'PY'
import json, re, sys
work, n = sys.argv[1], int(sys.argv[2])
t = open(f"{work}/merge.time").read()
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", t).group(1)
parts = [float(x) for x in wall.split(":")]
secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
cpu = sum(float(re.search(rf"{k} time \(seconds\): (\S+)", t).group(1)) for k in ("User", "System"))
one = json.load(open(f"{work}/one/summary.json"))
merged = json.load(open(f"{work}/merged/summary.json"))
assert merged["sessions"]["offered"] == n * one["sessions"]["offered"], "the merge added every shard"
print(f"RESULT shards={n} merge_wall_s={secs:.2f} merge_cpu_s={cpu:.2f} peak_rss_mb={rss / 1024:.0f}")
print(f"RESULT offered_per_shard={one['sessions']['offered']} merged_offered={merged['sessions']['offered']}")
PY
