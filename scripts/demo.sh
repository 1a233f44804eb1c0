#!/usr/bin/env bash
# The main job: installs what is missing, builds, packages a generated clip and serves it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo run --release --quiet -- demo "$@"
