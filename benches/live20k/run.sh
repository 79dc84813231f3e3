#!/usr/bin/env bash
# Issue 18's live target, as a benchmark of its own for benches/all.sh:
# benches/live/run.sh on benches/live/20k.toml — 20 000 customer messages/s,
# each answered, with 500 000 sessions in flight, the driver and the
# reference service as two processes, each one's CPU time and peak memory
# printed. About 6 minutes a round; the two processes need about 2.2 GB.
#
#   bash benches/live20k/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SCENARIO=benches/live/20k.toml exec bash benches/live/run.sh
