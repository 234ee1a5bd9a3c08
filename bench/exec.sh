#!/bin/bash
# bench/exec.sh OUT.jsonl [RUNS=3] [KS="50 200"] [PAR=50] -- `uptime` on K loopback sshd hosts: scaler
# (release build) side by side with the peers of the shared SSH matrix (OpenSSH xargs, pssh, parallel-ssh,
# Fabric ThreadingGroup, Ansible ad-hoc, the handshake floor), in the same run.
# First: /work/shared/bench/setup.sh (as root; idempotent) and `cargo build --release`.
# Then: python3 $SHARED/summarize.py OUT.jsonl  -> the markdown table in docs/benchmarks.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SHARED=${SHARED:-/work/shared/bench}
out=$1; runs=${2:-3}; ks=${3:-"50 200"}; par=${4:-50}
export SCALER=${SCALER:-${CARGO_TARGET_DIR:-$here/../target}/release/scaler}
[ -x "$SCALER" ] || { echo "no scaler binary at $SCALER: cargo build --release" >&2; exit 1; }
export EXTRA="m \"scaler exec --forks $par\" -- \"$here/exec_scaler.sh\" \"\$inv\" \"$par\" \"\$key\" uptime"
exec "$SHARED/ssh/run_matrix.sh" "$out" "$runs" "$ks" "$par"
