#!/usr/bin/env bash
# The main job: installs what is missing, builds, then runs the whole CDN on loopback
# (origin + watch page, shield, three regional edges, geodns); flags pass to `dashcdn demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo run --release --quiet -- demo "$@"
