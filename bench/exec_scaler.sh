#!/bin/bash
# bench/exec_scaler.sh INVENTORY PAR KEY [CMD=uptime] -- `scaler exec` as a bench runner: turns the
# inventory (host:port lines, as written by sshd_fleet.sh) into a config repo next to it (a Project
# with the key and a known_hosts made from the fleet's host key, and a Target `fleet`), runs
# `scaler exec fleet --forks PAR -- CMD` and prints one JSON line {tool,total,ok,seconds}.
# SCALER: the binary (default: target/release/scaler of this checkout, or $CARGO_TARGET_DIR's).
set -euo pipefail
inv=$1; par=$2; key=$3; cmd=${4:-uptime}
here=$(cd "$(dirname "$0")" && pwd)
SCALER=${SCALER:-${CARGO_TARGET_DIR:-$here/../target}/release/scaler}
d=$(cd "$(dirname "$inv")" && pwd); repo=$d/scaler-repo
mkdir -p "$repo"
hostpub=$(cut -d' ' -f1,2 "$d/hostkey.pub")
printf 'kind: Project\nname: bench\ndefaults:\n  ssh: { user: %s, key: %s, known_hosts: known_hosts }\n' \
  "${SSH_USER:-fleetbench}" "$key" > "$repo/scaler.yaml"
{ printf 'kind: Target\nname: fleet\nhosts:\n'; sed 's/.*/  - "&"/' "$inv"; } > "$repo/fleet.yaml"
awk -v k="$hostpub" -F: '{ print "[" $1 "]:" $2 " " k }' "$inv" > "$repo/known_hosts"
t0=$(date +%s.%N)
"$SCALER" exec fleet --dir "$repo" --forks "$par" --json -- "$cmd" > "$repo/out.json" || true
t1=$(date +%s.%N)
python3 - "$repo/out.json" "$t0" "$t1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ok = sum(1 for h in r["hosts"] if h["status"] in ("ok", "changed") and h["exit_code"] == 0)
print(json.dumps(dict(tool="scaler_exec", total=len(r["hosts"]), ok=ok, seconds=round(float(sys.argv[3]) - float(sys.argv[2]), 3))))
PY
