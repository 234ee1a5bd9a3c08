#!/usr/bin/env bash
# Time-series store benchmarks: generates the shared realistic data set
# (300 series x 10,000 samples: counters, 2-decimal gauges, near-constant
# gauges; ../shared/bench/tsdb/gen_samples.py) and runs `cargo bench --bench tsdb`.
#
#     bench/tsdb.sh            (SERIES=300 SAMPLES=10000 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
gen="${GEN_SAMPLES:-../shared/bench/tsdb/gen_samples.py}"
out="${SCALER_BENCH_SAMPLES:-/tmp/scaler-bench-samples.jsonl}"
python3 "$gen" --series "${SERIES:-300}" --samples "${SAMPLES:-10000}" --format vmjson > "$out"
SCALER_BENCH_SAMPLES="$out" cargo bench --bench tsdb "$@"
