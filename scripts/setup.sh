#!/usr/bin/env bash
# Installs what dashcdn needs on a fresh Debian machine; does nothing when it is all there.
#   ffmpeg/ffprobe   transcoding and probing (tests decode with it too)
#   xmllint          MPD schema validation in tests (libxml2-utils)
#   wrk, nginx       only for `bench/` (pass --bench)
set -euo pipefail

want=(ffmpeg libxml2-utils)
if [[ "${1:-}" == "--bench" ]]; then want+=(wrk nginx-light hyperfine); fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup" >&2; exit 1; }
