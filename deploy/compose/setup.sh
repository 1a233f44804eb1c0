#!/usr/bin/env bash
# Installs what deploy/compose/sim.sh needs on a Debian machine (root); does nothing that is
# already done, so it is cheap to call before every run.
#   - Debian packages: podman with runc (crun fails on this hybrid-cgroup kernel), conmon,
#     netavark + aardvark-dns, CNI plugins, catatonit, mmdebstrap (the base image), uidmap
#   - a private containers.conf (runc, cgroupfs, file events, ulimits this sandbox allows);
#     nothing in /etc/containers is changed: sim.sh points CONTAINERS_CONF at it
#   - podman-compose from PyPI in a venv
#   - the base image localhost/dashcdn-base:bookworm: a Debian rootfs made by mmdebstrap with
#     everything the dashcdn image needs at run time (ffmpeg, iproute2, dig, curl, python3 for
#     delayd), imported into podman once; no image registry is ever contacted
# Cache: $DASHCDN_CACHE (default /var/cache/dashcdn). Prints `export` lines for sim.sh.
set -euo pipefail

CACHE="${DASHCDN_CACHE:-/var/cache/dashcdn}"
BASE_IMAGE="localhost/dashcdn-base:bookworm"
BASE_PACKAGES="ca-certificates,iproute2,iputils-ping,curl,ffmpeg,python3,bind9-dnsutils,procps"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
log() { echo "setup: $*" >&2; }

[[ $(id -u) -eq 0 ]] || { echo "setup: containers here run rootful; run as root (or sudo)" >&2; exit 1; }
mkdir -p "$CACHE"

want=(podman runc conmon netavark aardvark-dns containernetworking-plugins catatonit mmdebstrap uidmap iptables)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=900 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# containers.conf: crun fails with "cgroups in hybrid mode not supported", podman's default
# ulimits fail with "setrlimit: Operation not permitted" above this sandbox's hard limit.
hard=$(ulimit -Hn)
conf="$CACHE/containers.conf"
new=$(cat <<CONF
[containers]
default_ulimits = ["nofile=$hard:$hard", "nproc=32768:32768"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_backend = "netavark"
CONF
)
[[ -f "$conf" && "$(cat "$conf")" == "$new" ]] || { echo "$new" >"$conf"; log "wrote $conf"; }
export CONTAINERS_CONF="$conf"

# podman-compose in a venv (Debian bookworm's is 1.0.3, too old for this file).
venv="$CACHE/venv"
if [[ ! -x "$venv/bin/podman-compose" ]]; then
  log "installing podman-compose in $venv"
  py=python3
  if ! "$py" -m venv --help >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq python3-venv >/dev/null; py=/usr/bin/python3
  fi
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q "podman-compose==1.*"
fi

# The base image, built once: a rebuild only when the package list changes.
stamp="$CACHE/base.packages"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$BASE_PACKAGES" ]] || ! podman image exists "$BASE_IMAGE"; then
  log "building $BASE_IMAGE with mmdebstrap from $MIRROR (once)"
  tar="$CACHE/rootfs.tar"
  mmdebstrap --quiet --variant=apt --include="$BASE_PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    bookworm "$tar" "$MIRROR"
  podman import --quiet "$tar" "$BASE_IMAGE" >/dev/null
  rm -f "$tar"
  echo "$BASE_PACKAGES" >"$stamp"
fi

echo "export CONTAINERS_CONF=$conf"
echo "export PATH=$venv/bin:\$PATH"
