#!/usr/bin/env bash
# Trigger evaluator benchmark: one `Engine::evaluate` tick of 10,000 triggers
# over 1,000 series (100 hosts x 10 counters, 10 minutes at 10 s). Target:
# under 50 ms per tick. Release build (the first one takes a while).
#
#     bench/rules.sh            (extra arguments go to criterion)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --locked --bench rules -- "$@"
