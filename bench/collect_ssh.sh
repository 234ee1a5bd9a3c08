#!/usr/bin/env bash
# Collection benchmark: one `ssh` counter (10 s interval) on K loopback sshd
# hosts (../shared/bench/ssh/sshd_fleet.sh), `scaler collect` running for
# SECS seconds under /usr/bin/time -v (CPU, max RSS). Prints samples, failures
# and rounds. Needs root (the fleet's login user) and a release build:
#
#     cargo build --release && bench/collect_ssh.sh [K=200] [SECS=60]
set -euo pipefail
cd "$(dirname "$0")/.."
k=${1:-200}; secs=${2:-60}; base=${BASE_PORT:-23000}
bin=${SCALER:-${CARGO_TARGET_DIR:-target}/release/scaler}
fleet=$(mktemp -d /tmp/scaler-collect-fleet.XXXX); repo=$(mktemp -d /tmp/scaler-collect-repo.XXXX)
chmod 755 "$fleet"
trap '../shared/bench/ssh/sshd_fleet.sh down "$fleet" >/dev/null; rm -rf "$repo" "$fleet"' EXIT
../shared/bench/ssh/sshd_fleet.sh up "$fleet" "$k" "$base" >&2
hosts=$(sed 's/.*/"&"/' "$fleet/inventory.txt" | paste -sd, -)
cat > "$repo/scaler.yaml" <<YAML
kind: Project
name: bench
defaults:
  ssh: { user: $(cat "$fleet/user"), key: $fleet/id_ed25519, known_hosts: known_hosts, host_key_policy: accept-new }
---
kind: Target
name: fleet
hosts: [$hosts]
---
kind: Counter
name: load1
source: { ssh: { command: "cut -d' ' -f1 /proc/loadavg" } }
targets: [fleet]
interval: 10s
timeout: 5s
YAML
: > "$repo/known_hosts"
out="$repo/samples.jsonl"
/usr/bin/time -v -o "$repo/time.txt" timeout -s INT "$secs" "$bin" collect --json --concurrency 256 "$repo" > "$out" || true
samples=$(grep -c '"value":[0-9]' "$out" || true); failures=$(grep -c '"error"' "$out" || true)
cpu_user=$(awk -F': ' '/User time/ {print $2}' "$repo/time.txt"); cpu_sys=$(awk -F': ' '/System time/ {print $2}' "$repo/time.txt")
rss=$(awk -F': ' '/Maximum resident/ {print $2}' "$repo/time.txt")
echo "{\"hosts\": $k, \"seconds\": $secs, \"samples\": $samples, \"failures\": $failures, \"cpu_user_s\": $cpu_user, \"cpu_sys_s\": $cpu_sys, \"max_rss_kb\": $rss}"
