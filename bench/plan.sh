#!/usr/bin/env bash
# Benchmark: `validate` and `plan` of a generated repo with 5,000 config
# objects and 1,000 nodes. Not a test; results go to docs/benchmarks.md.
#
# Usage: bench/plan.sh [SCALER_BINARY]     (default: target/release/scaler)
#   runs = 5 per measurement; prints the median and the max RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-${CARGO_TARGET_DIR:-target}/release/scaler}
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 2; }
DIR=$(mktemp -d /tmp/scaler-bench.XXXXXX)
trap '"$BIN" destroy --auto-approve "$DIR" >/dev/null 2>&1 || true; rm -rf "$DIR"' EXIT
python3 bench/gen_repo.py "$DIR" --objects 5000 --nodes 1000

measure() { # label, command...
  python3 - "$@" <<'PY'
import resource, statistics, subprocess, sys, time
label, cmd = sys.argv[1], sys.argv[2:]
runs = []
for _ in range(5):
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    runs.append(time.perf_counter() - t)
    if r.returncode not in (0, 2):
        sys.exit(f"{label}: exit {r.returncode}: {r.stderr.decode()[-2000:]}")
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"| {label} | {statistics.median(runs)*1000:.0f} ms | {min(runs)*1000:.0f} ms | {max(runs)*1000:.0f} ms | {rss:.0f} MB |")
PY
}

echo "| measurement | median | min | max | max RSS |"
echo "|---|---|---|---|---|"
measure "validate, 5,000 objects" "$BIN" validate "$DIR"
measure "plan, empty state (5,000 objects + 1,000 nodes to add)" "$BIN" plan "$DIR"
start=$(date +%s.%N)
"$BIN" apply --auto-approve -q "$DIR" >/dev/null
end=$(date +%s.%N)
echo "| apply: record 5,000 objects, launch 1,000 local nodes (once) | $(python3 -c "print(f'{($end-$start)*1000:.0f} ms')") | | | |"
measure "plan, 1,000 live nodes recorded, no changes" "$BIN" plan --detailed-exitcode "$DIR"
