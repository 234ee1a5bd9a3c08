#!/usr/bin/env bash
# The test command: installs what the tests need (when missing), then runs
# every test and clippy. Works from a clean clone:
#
#     scripts/test.sh
#
# Debian/Ubuntu: missing tools are installed with apt-get (via sudo unless
# root). Elsewhere, install them yourself: sshd (OpenSSH server), ssh,
# ssh-keygen, git, python3, sudo, script (util-linux), snmpd and snmptrap (net-snmp),
# redis-server, PostgreSQL (initdb, pg_ctl, psql), a JDK with Jolokia and Jetty
# jars, Prometheus (prometheus, promtool), Node.js + npm, Chromium
# (/usr/bin/chromium), moto[server] and schemathesis (pip).
#
# PostgreSQL: the tests use SCALER_TEST_PG_URL when set, else the machine's
# server at 127.0.0.1:5432 (user postgres, trust auth) when it answers, else a
# server of their own that this script starts (initdb + pg_ctl in
# /tmp/scaler-test-pg-UID, as a non-root user, on a free port) and leaves
# running for the next run (stop it with `pg_ctl -D /tmp/scaler-test-pg-UID/data stop`).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

# A PostgreSQL program: on PATH, or in Debian's versioned directory.
pg_bin() {
    command -v "$1" 2>/dev/null && return
    ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1 | grep .
}

# missing packages, judged by a file each provides
missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
{ command -v ssh >/dev/null && command -v ssh-keygen >/dev/null; } || missing+=(openssh-client)
command -v git >/dev/null || missing+=(git)
command -v python3 >/dev/null || missing+=(python3)
[ -x /usr/sbin/snmpd ] || missing+=(snmpd)
# snmptrap/snmpinform send real traps to the trap receiver
command -v snmptrap >/dev/null || missing+=(snmp)
command -v redis-server >/dev/null || missing+=(redis-server)
{ pg_bin initdb && pg_bin pg_ctl && pg_bin psql; } >/dev/null || missing+=(postgresql)
# a real Jolokia agent: Jolokia's servlet in embedded Jetty, on the JDK
command -v javac >/dev/null || missing+=(default-jdk-headless)
[ -f /usr/share/java/jolokia-core.jar ] || missing+=(libjolokia-core-java)
[ -f /usr/share/java/jetty9-server.jar ] || missing+=(libjetty9-java)
[ -f /usr/share/java/servlet-api-3.1.jar ] || missing+=(libservlet3.1-java)
# the sudo test logs in as a user that sudo asks a password of
[ -x /usr/bin/sudo ] || missing+=(sudo)
# Puppet: new nodes are provisioned with `puppet apply` in the provision tests
command -v puppet >/dev/null || missing+=(puppet-agent)
# `script` drives the prompt test through a pseudo-terminal
command -v script >/dev/null || missing+=(bsdutils)
# promtool lints /metrics and a real Prometheus scrapes the daemon
{ command -v promtool >/dev/null && command -v prometheus >/dev/null; } || missing+=(prometheus)
# the web UI: build.rs runs `npm ci` in ui/; tests/ui.rs drives Debian's
# Chromium with playwright-core (which never downloads a browser)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ -x /usr/bin/chromium ] || missing+=(chromium)

if [ "${#missing[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "==> installing: ${missing[*]}" >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        echo "error: missing ${missing[*]} and no apt-get; install them and re-run" >&2
        exit 1
    fi
fi

# Python tools from PyPI, since Debian does not package them. Debian's Python
# refuses plain pip installs (PEP 668), hence the --user
# --break-system-packages fallback.
pip_install() {
    echo "==> installing $1 (pip)" >&2
    if ! python3 -m pip --version >/dev/null 2>&1; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip
    fi
    python3 -m pip install --quiet "$1" 2>/dev/null \
        || python3 -m pip install --quiet --user --break-system-packages "$1"
}

# moto_server (AWS API emulator) for the SNS action tests.
python3 -c 'import moto.server' >/dev/null 2>&1 || pip_install 'moto[server]'

# schemathesis fuzzes the daemon's API from its OpenAPI document (pinned, so a
# new release cannot turn CI red on its own).
SCHEMATHESIS_VERSION=4.32.5
[ "$(python3 -m schemathesis.cli --version 2>/dev/null | awk '{print $NF}')" = "$SCHEMATHESIS_VERSION" ] \
    || pip_install "schemathesis==$SCHEMATHESIS_VERSION"

# sshd needs its privilege separation directory (it lives on a tmpfs).
[ -d /run/sshd ] || as_root mkdir -p /run/sshd

# PostgreSQL for the state store tests (tests/harness/pg.rs).
pg_answers() {
    PGCONNECT_TIMEOUT=3 "$(pg_bin psql)" -X -w -Atq -d "$1" -c 'select 1' >/dev/null 2>&1
}

start_test_pg() {
    local dir="/tmp/scaler-test-pg-$(id -u)" user port url
    url_at() { echo "postgres://postgres@127.0.0.1:$1/postgres"; }
    # ours from an earlier run, still running
    if [ -f "$dir/port" ] && pg_answers "$(url_at "$(cat "$dir/port")")"; then
        SCALER_TEST_PG_URL="$(url_at "$(cat "$dir/port")")"
        return
    fi
    # PostgreSQL refuses to run as root
    user="$(id -un)"
    if [ "$(id -u)" -eq 0 ]; then
        user=nobody
        id -u postgres >/dev/null 2>&1 && user=postgres
    fi
    as_pg_user() {
        if [ "$(id -u)" -eq 0 ]; then (cd "$dir" && runuser -u "$user" -- "$@"); else (cd "$dir" && "$@"); fi
    }
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown "$user" "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        echo "==> creating a test PostgreSQL in $dir/data" >&2
        as_pg_user rm -rf "$dir/data"
        as_pg_user "$(pg_bin initdb)" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    # ours, running but not answering at the recorded port: restart it
    if as_pg_user "$(pg_bin pg_ctl)" -D "$dir/data" status >/dev/null 2>&1; then
        as_pg_user "$(pg_bin pg_ctl)" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    echo "==> starting the test PostgreSQL on 127.0.0.1:$port" >&2
    # (a pid file left by a killed server of ours is ignored by pg_ctl)
    as_pg_user "$(pg_bin pg_ctl)" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null \
        || { tail -n 20 "$dir/server.log" >&2; exit 1; }
    echo "$port" >"$dir/port"
    SCALER_TEST_PG_URL="$(url_at "$port")"
}

if [ -n "${SCALER_TEST_PG_URL:-}" ]; then
    pg_answers "$SCALER_TEST_PG_URL" || echo "warning: SCALER_TEST_PG_URL does not answer; the PostgreSQL tests will fail" >&2
elif pg_answers "postgres://postgres@127.0.0.1:5432/postgres"; then
    SCALER_TEST_PG_URL="postgres://postgres@127.0.0.1:5432/postgres"
else
    start_test_pg
fi
export SCALER_TEST_PG_URL
echo "==> PostgreSQL for the tests: $SCALER_TEST_PG_URL" >&2

if [ ! -f Cargo.lock ]; then
    echo "==> generating Cargo.lock" >&2
    cargo generate-lockfile
fi

echo "==> cargo test" >&2
cargo test --locked --all-targets

if cargo clippy --version >/dev/null 2>&1; then
    echo "==> cargo clippy" >&2
    cargo clippy --all-targets --locked -- -D warnings
else
    echo "==> clippy not installed; skipping lints (rustup component add clippy)" >&2
fi
