#!/usr/bin/env bash
# GitOps latency of `scaler daemon` (issue 11): the time from a change to
# the daemon running the new revision (the log line `running revision X`,
# right before its plan/apply starts), RUNS times per mode, median printed:
#   webhook    git push to a bare repo, then a signed POST /hooks/git (poll 1h)
#   polling    git push to a bare repo, no webhook (poll 1s)
#   directory  a file of the watched config directory rewritten
# Each change edits a trigger's threshold (no node is launched: this measures
# the source, not the provider). Uses curl and openssl for the webhook.
#
#     cargo build && bench/gitops_latency.sh [RUNS=20]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
bin=$(realpath "${SCALER:-${CARGO_TARGET_DIR:-target}/debug/scaler}")
secret=bench-secret-$$
work=$(mktemp -d /tmp/scaler-gitops-bench.XXXX)
trap 'for p in $(cat "$work/pids" 2>/dev/null); do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@x.invalid GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@x.invalid
g() { git -c init.defaultBranch=main -c commit.gpgsign=false "$@"; }
now_ms() { date +%s%3N; }
trigger() { printf 'kind: Counter\nname: queue\nsource: { push: {} }\n---\nkind: Trigger\nname: t\nwhen: last(queue) > %s\nfor: 1h\nthen:\n  - notify: { webhook: { url: "http://127.0.0.1:9/x" } }\n' "$1"; }
# Waits (at most 30 s) until FILE holds NEEDLE at least N times.
wait_count() {
  local file=$1 needle=$2 n=$3 end=$(( $(now_ms) + 30000 ))
  while [ "$(grep -cF -- "$needle" "$file" || true)" -lt "$n" ]; do
    [ "$(now_ms)" -lt "$end" ] || { echo "timed out waiting for '$needle' x$n in $file" >&2; tail -20 "$file" >&2; exit 1; }
    sleep 0.005
  done
}
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }
base=$(( 20000 + $$ % 5000 ))

# A daemon on DIR (its log in DIR/daemon.log) listening on PORT; waits until
# it listens. Its pid is in $daemon.
start() {
  local dir=$1
  port=$2
  (cd "$dir" && SCALER_LOG=info exec "$bin" daemon . --listen "127.0.0.1:$port" --no-collect >/dev/null 2>daemon.log) &
  daemon=$!
  echo "$daemon" >> "$work/pids"
  local end=$(( $(now_ms) + 30000 ))
  until curl -s -o /dev/null "http://127.0.0.1:$port/healthz"; do
    [ "$(now_ms)" -lt "$end" ] || { echo "daemon did not start" >&2; cat "$dir/daemon.log" >&2; exit 1; }
    sleep 0.02
  done
}

# MODE (webhook|polling): the latency of each of RUNS pushes, one per line.
git_runs() {
  local mode=$1 tree=$work/$mode-tree bare=$work/$mode.git dir=$work/$mode-daemon
  mkdir -p "$tree" "$dir"
  g init -q --bare "$bare"; g init -q "$tree"
  printf 'kind: Project\nname: b\n' > "$tree/scaler.yaml"; trigger 0 > "$tree/t.yaml"
  g -C "$tree" add -A; g -C "$tree" commit -qm 0; g -C "$tree" push -q "$bare" main
  local poll=1h hook=""
  if [ "$mode" = polling ]; then poll=1s; else hook=", webhook_secret: { env: BENCH_SECRET }"; fi
  printf 'kind: Project\nname: b\ndaemon:\n  auto_apply: true\n  source: { git: "file://%s", poll: %s%s }\n' "$bare" "$poll" "$hook" > "$dir/scaler.yaml"
  BENCH_SECRET=$secret start "$dir" "$2"
  wait_count "$dir/daemon.log" "running revision" 1
  for i in $(seq 1 "$runs"); do
    trigger "$i" > "$tree/t.yaml"; g -C "$tree" commit -qam "$i"; g -C "$tree" push -q "$bare" main
    local c; c=$(g -C "$tree" rev-parse HEAD)
    local t0; t0=$(now_ms)
    if [ "$mode" = webhook ]; then
      local body sig
      body=$(printf '{"ref":"refs/heads/main","after":"%s"}' "$c")
      sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" -r | cut -d' ' -f1)
      curl -sf -o /dev/null -X POST -H "X-Signature: sha256=$sig" -H "X-Delivery-Id: $c" --data "$body" "http://127.0.0.1:$port/hooks/git"
    fi
    wait_count "$dir/daemon.log" "running revision ${c:0:12}" 1
    echo $(( $(now_ms) - t0 ))
  done
  kill "$daemon"; wait "$daemon" 2>/dev/null || true
}

dir_runs() {
  local dir=$work/directory
  mkdir -p "$dir"
  printf 'kind: Project\nname: b\n' > "$dir/scaler.yaml"; trigger 0 > "$dir/t.yaml"
  start "$dir" "$1"
  wait_count "$dir/daemon.log" "has the objects that run" 1
  for i in $(seq 1 "$runs"); do
    local t0; t0=$(now_ms)
    # Written aside (a hidden file is no config) and renamed: one event, one revision.
    trigger "$i" > "$dir/.t.yaml.tmp"; mv "$dir/.t.yaml.tmp" "$dir/t.yaml"
    wait_count "$dir/daemon.log" "running revision" "$i"
    echo $(( $(now_ms) - t0 ))
  done
  kill "$daemon"; wait "$daemon" 2>/dev/null || true
}

echo "binary: $bin; runs: $runs; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(date -u +%Y-%m-%dT%H:%MZ)"
n=0
for mode in webhook polling directory; do
  n=$((n + 1))
  if [ "$mode" = directory ]; then v=$(dir_runs $((base + n))); else v=$(git_runs "$mode" $((base + n))); fi
  printf '%-10s median %5s ms  min %5s ms  max %5s ms  (n=%s)\n' "$mode" "$(echo "$v" | median)" "$(echo "$v" | sort -n | head -1)" "$(echo "$v" | sort -n | tail -1)" "$(echo "$v" | wc -l)"
done
