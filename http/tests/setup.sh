#!/bin/sh
# Installs what the TLS/ACME tests and bench/tls.sh need, from Debian: pebble (ACME test
# CA), curl (HTTPS client with --cacert/--resolve), nghttp2-client (h2load), nginx-light
# (benchmark peer), openssl (RSA keys). Idempotent; quiet when everything is there.
set -eu
need=""
command -v pebble >/dev/null 2>&1 || need="$need pebble"
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v h2load >/dev/null 2>&1 || need="$need nghttp2-client"
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need="$need nginx-light"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
[ -z "$need" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "http/tests/setup.sh: missing$need; run as root or: apt-get install$need" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $need >/dev/null
# nginx-light starts a service on port 80 on install; the benchmark runs its own.
systemctl disable --now nginx >/dev/null 2>&1 || service nginx stop >/dev/null 2>&1 || true
