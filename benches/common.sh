# Shared by the benchmark scripts (sourced, not run).

# Wait up to 10 s for URL to answer; otherwise print LOG and exit 3.
wait_until_up() {
  local url=$1 log=$2
  for _ in $(seq 1 100); do
    curl -sf "$url" >/dev/null && return 0
    sleep 0.1
  done
  cat "$log"
  echo "$url did not come up" >&2
  exit 3
}

# SimPy in a throwaway venv under the cargo target folder (made the first
# time); prints its python's path.
simpy_python() {
  local venv=${CARGO_TARGET_DIR:-target}/bench-venv
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import simpy' 2>/dev/null; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet simpy >&2
  fi
  echo "$venv/bin/python"
}
