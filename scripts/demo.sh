#!/usr/bin/env bash
# The main job: installs what is missing, builds, links the binary as `dashcdn` on PATH,
# then runs the whole CDN on loopback (origin + watch page, shield, three regional edges,
# geodns); flags pass to `dashcdn demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet
bin="$(pwd)/${CARGO_TARGET_DIR:-target}/release/dashcdn"
# The demo prints `dashcdn …` lines to copy; make that name work. /usr/local/bin when we may
# write there (root), else ~/.cargo/bin (on PATH wherever rustup installed Rust).
if [[ -w /usr/local/bin ]]; then link=/usr/local/bin/dashcdn; else link="$HOME/.cargo/bin/dashcdn"; fi
if [[ "$(readlink -f "$link" 2>/dev/null)" != "$(readlink -f "$bin")" ]]; then
  mkdir -p "$(dirname "$link")"
  ln -sf "$bin" "$link"
  echo "demo.sh: linked $link -> $bin" >&2
fi
exec "$bin" demo "$@"
