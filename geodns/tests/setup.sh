#!/usr/bin/env bash
# Installs the DNS tools geodns's slow tests use; does nothing when they are all there.
#   kdig      DoT (+tls) and DoH (+https) queries   (knot-dnsutils)
#   dig, delv EDNS/ECS queries, DNSSEC validation    (bind9-dnsutils)
#   unbound   a real validating resolver with ECS    (unbound)
set -euo pipefail
want=(knot-dnsutils bind9-dnsutils unbound curl)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
echo "geodns/tests/setup.sh: installing ${missing[*]}" >&2
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
$SUDO apt-get update -qq
# policy-rc.d 101: the packaged unbound must not start itself; tests run their own.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
