#!/usr/bin/env bash
# Benchmark: `scaler survey` side by side with the peers of ../shared/bench/http, in one run,
# against the fake fleet (../shared/bench/fleet) with 1,000 and 10,000 endpoints, clean and faulty
# (10% slow past the timeout, 5% refusing). Not a test; results go to docs/benchmarks.md.
#
# Usage: bench/survey.sh [OUT.jsonl] [RUNS=3] [NS="1000 10000"]
#   SCALER_BIN   scaler release binary (default: $CARGO_TARGET_DIR/release/scaler, else target/release/scaler)
#   BENCH        the shared bench dir (default: ../shared/bench next to the repo, else /work/shared/bench)
#   BENCH_NICE   nice value for the fleet and the clients (default -10: run as root)
#   BASE_PORT    first fleet port (default 10000: 20000.. collides with services such as rabbitmq on 25672)
#   SKIP_SLOW=1  leave out the slowest baselines (cs_threads f=1 at 10,000; faulty cs_threads f=10)
# Prints a markdown table of medians (bench/summarize.py) at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
out=${1:-/tmp/perf/survey-$(date +%Y%m%d-%H%M%S).jsonl}; runs=${2:-3}; ns=${3:-"1000 10000"}
BENCH=${BENCH:-$repo/../shared/bench}; [ -d "$BENCH" ] || BENCH=/work/shared/bench
BIN=${SCALER_BIN:-${CARGO_TARGET_DIR:-target}/release/scaler}
[ -x "$BIN" ] || { echo "build first: cargo build --release ($BIN missing)" >&2; exit 2; }
PY=${PY:-/tmp/perf/venv/bin/python}
[ -x "$PY" ] && [ -x "$BENCH/fleet/target/release/fleet" ] || "$BENCH/setup.sh"
export BENCH_NICE=${BENCH_NICE:--10}
H=$BENCH/http; work=${WORK:-/tmp/perf/survey-fleet}; so=$(mktemp -d /tmp/survey-out.XXXX)
trap '"$H/fleet_down.sh" "$work" >/dev/null 2>&1; rm -rf "$so"' EXIT
m() { # label runs -- cmd...
  local lab=$1 n_runs=$2; shift 2
  "$PY" "$BENCH/measure.py" -o "$out" -l "$phase N=$n $lab" -n "$n_runs" --quiet "${BENCH_QUIET:-3}" \
    --nice "$BENCH_NICE" --watch "$work/fleet.pid" "$@" >/dev/null
}
scaler() { # label qos runs
  m "scaler survey $1" "$3" -- "$BIN" survey -i "$inv" -o "$so" --qos "$2" --json
}
echo "machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(date -u +%FT%TZ)"
echo "results: $out"
for n in $ns; do
  # --- clean: every endpoint answers 200 ---
  phase=clean; "$H/fleet_up.sh" "$work" "$n" --base-port "${BASE_PORT:-10000}" >/dev/null || exit 1; inv=$work/inventory.txt
  scaler "" 100 "$runs"
  if [ "$n" -le 1000 ] || [ -z "${SKIP_SLOW:-}" ]; then m "cs_threads f=1" 1 -- "$PY" "$H/cs_threads.py" -i "$inv" -f 1 -t 1 -r 3; fi
  for f in 10 100; do m "cs_threads f=$f" "$runs" -- "$PY" "$H/cs_threads.py" -i "$inv" -f $f -t 1 -r 3; done
  for c in 100 1000; do m "aiohttp c=$c" "$runs" -- "$PY" "$H/aio_fanout.py" -i "$inv" -c $c -t 1 -r 3; done
  m "curl --parallel p=100" "$runs" -- "$H/curl_parallel.sh" "$inv" 100 1 3
  scaler "(again, after the peers)" 100 "$runs"
  [ "$n" -le 1000 ] && m "wrk floor (1 endpoint, -c50, 5 s)" 1 -- "$H/wrk_floor.sh" "$(head -1 "$inv")" 5 50
  "$H/fleet_down.sh" "$work" >/dev/null
  # a 2-thread fleet, so the server is less of a limit for the native client
  phase=clean-fleet-threads=2; "$H/fleet_up.sh" "$work" "$n" --base-port "${BASE_PORT:-10000}" --threads 2 >/dev/null || exit 1
  scaler "" 100 "$runs"
  m "aiohttp c=1000" "$runs" -- "$PY" "$H/aio_fanout.py" -i "$inv" -c 1000 -t 1 -r 3
  "$H/fleet_down.sh" "$work" >/dev/null
  # --- faulty: 10% slow (5 s, past the 1 s timeout), 5% connection refused ---
  phase=faulty; "$H/fleet_up.sh" "$work" "$n" --base-port "${BASE_PORT:-10000}" --slow 0.10 --refused 0.05 --slow-ms 5000 >/dev/null || exit 1
  scaler "" 80 "$runs"
  if [ "$n" -le 1000 ] && [ -z "${SKIP_SLOW:-}" ]; then m "cs_threads f=10" 1 -- "$PY" "$H/cs_threads.py" -i "$inv" -f 10 -t 1 -r 3; fi
  m "cs_threads f=100" 1 -- "$PY" "$H/cs_threads.py" -i "$inv" -f 100 -t 1 -r 3
  m "aiohttp c=1000" "$runs" -- "$PY" "$H/aio_fanout.py" -i "$inv" -c 1000 -t 1 -r 3
  # curl retries timeouts with 1+2+4 s backoff: only the small fleet stays bounded
  [ "$n" -le 1000 ] && m "curl --parallel p=100" 1 -- "$H/curl_parallel.sh" "$inv" 100 1 3
  "$H/fleet_down.sh" "$work" >/dev/null
  # --- 5% slow only: the wall-time target (timeout x attempts + 0.5 s) ---
  phase=slow5; "$H/fleet_up.sh" "$work" "$n" --base-port "${BASE_PORT:-10000}" --slow 0.05 --slow-ms 5000 >/dev/null || exit 1
  scaler "" 90 "$runs"
  "$H/fleet_down.sh" "$work" >/dev/null
done
"$PY" "$BENCH/summarize.py" "$out"
