#!/usr/bin/env bash
# The test command: installs what is missing, then runs both tiers of the workspace's tests.
#
#   scripts/test.sh            both tiers (what CI runs)
#   scripts/test.sh --fast     the fast tier only: plain `cargo test` (unit + in-process tests)
#   scripts/test.sh --slow     the slow tier only: tests marked #[ignore = "slow: …"] (browser,
#                              RSS, demo, netns, containers, real resolvers, ACME, long transcodes)
# Extra arguments after the tier flag go to `cargo test` (e.g. a test-name filter).
set -euo pipefail
cd "$(dirname "$0")/.."

tier=both
case "${1:-}" in
  --fast) tier=fast; shift ;;
  --slow) tier=slow; shift ;;
esac

scripts/setup.sh
if [[ $tier != fast ]]; then
  # Servers and tools only the slow tier needs (unbound, pebble, podman, …): each part's
  # installer is idempotent and quiet when everything is there.
  for s in geodns/tests/setup.sh http/tests/setup.sh deploy/compose/setup.sh; do
    if [[ -x $s ]]; then "$s"; fi
  done
fi

secs() { echo $(( $(date +%s) - $1 )); }

t0=$(date +%s)
cargo test --workspace --all-targets --no-run --quiet "$@"
echo "test.sh: build took $(secs "$t0") s" >&2

if [[ $tier != slow ]]; then
  t0=$(date +%s)
  cargo test --workspace --all-targets --no-fail-fast "$@"
  echo "test.sh: fast tier (cargo test) took $(secs "$t0") s" >&2
fi
if [[ $tier != fast ]]; then
  t0=$(date +%s)
  cargo test --workspace --all-targets --no-fail-fast "$@" -- --ignored
  echo "test.sh: slow tier (cargo test -- --ignored) took $(secs "$t0") s" >&2
fi
