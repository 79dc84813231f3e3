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
