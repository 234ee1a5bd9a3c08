#!/usr/bin/env bash
# The test command: installs what the tests need (when missing), then runs
# every test and clippy. Works from a clean clone:
#
#     scripts/test.sh
#
# Debian/Ubuntu: missing tools are installed with apt-get (via sudo unless
# root). Elsewhere, install them yourself: sshd (OpenSSH server), ssh,
# ssh-keygen, git, python3, sudo, script (util-linux), snmpd and snmptrap (net-snmp),
# redis-server, a JDK with Jolokia and Jetty jars, and moto[server] (pip).
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
# a real Jolokia agent: Jolokia's servlet in embedded Jetty, on the JDK
command -v javac >/dev/null || missing+=(default-jdk-headless)
[ -f /usr/share/java/jolokia-core.jar ] || missing+=(libjolokia-core-java)
[ -f /usr/share/java/jetty9-server.jar ] || missing+=(libjetty9-java)
[ -f /usr/share/java/servlet-api-3.1.jar ] || missing+=(libservlet3.1-java)
# the sudo test logs in as a user that sudo asks a password of
[ -x /usr/bin/sudo ] || missing+=(sudo)
# `script` drives the prompt test through a pseudo-terminal
command -v script >/dev/null || missing+=(bsdutils)

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

# moto_server (AWS API emulator) for the SNS action tests; pip, since Debian
# does not package it. Debian's Python refuses plain pip installs (PEP 668),
# hence the --user --break-system-packages fallback.
if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
    echo "==> installing moto[server] (pip)" >&2
    if ! python3 -m pip --version >/dev/null 2>&1; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip
    fi
    python3 -m pip install --quiet 'moto[server]' 2>/dev/null \
        || python3 -m pip install --quiet --user --break-system-packages 'moto[server]'
fi

# sshd needs its privilege separation directory (it lives on a tmpfs).
[ -d /run/sshd ] || as_root mkdir -p /run/sshd

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
