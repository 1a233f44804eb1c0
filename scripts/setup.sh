#!/usr/bin/env bash
# Installs what dashcdn needs on a fresh Debian machine; does nothing when it is all there.
#   ffmpeg/ffprobe     transcoding and probing (tests decode with it too)
#   xmllint            MPD schema validation in tests (libxml2-utils)
#   dig, delv          DNS tests against geodns, DNSSEC validation (bind9-dnsutils)
#   kdig, unbound      DoT/DoH tests (knot-dnsutils), a real validating resolver (unbound)
#   chromium, node     the dash.js browser test (playwright-core drives Debian's chromium; npm comes with nodejs)
#   iproute2           network namespaces for the multi-region simulation
#   docker-compose     `docker-compose config` checks deploy/compose.yaml (no Docker engine needed)
#   --bench adds the peers the benchmarks compare against: wrk, nginx, hyperfine, varnish,
#   dnsperf, gdnsd, PowerDNS with its geoip backend.
set -euo pipefail
cd "$(dirname "$0")/.."

want=(ffmpeg libxml2-utils bind9-dnsutils knot-dnsutils unbound chromium nodejs iproute2 docker-compose curl)
if [[ "${1:-}" == "--bench" ]]; then
  want+=(wrk nginx-light hyperfine varnish dnsperf gdnsd pdns-server pdns-backend-geoip knot knot-module-geoip dnsdist nghttp2-client)
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  # policy-rc.d 101: packaged daemons (varnish, gdnsd, pdns) must not start themselves;
  # the benchmarks start them on loopback ports of their own.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm packages of the watch page (dash.js) and of the browser test (playwright-core),
# installed from the lock file; no browser download ever (Debian's chromium is used).
if [[ -f player/web/package.json ]]; then
  if [[ ! -d player/web/node_modules ]] || [[ player/web/package-lock.json -nt player/web/node_modules ]]; then
    echo "setup: npm install in player/web" >&2
    (cd player/web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    touch player/web/node_modules
  fi
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup" >&2; exit 1; }
