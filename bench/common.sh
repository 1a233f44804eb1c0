# Shared by the bench scripts: build once, find tools, print a ratio.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${BENCH_OUT:-$ROOT/bench/out}"
mkdir -p "$OUT"
"$ROOT/scripts/setup.sh" --bench
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
DASHCDN="$ROOT/target/release/dashcdn"

# ratio A B → A/B with two decimals
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# A free loopback TCP port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listening on 127.0.0.1:$1" >&2; return 1
}

# workdir NAME → a fresh folder in $W, readable by daemons that drop privileges (varnishd
# reads its VCL there), removed on exit after every PID in PIDS is stopped.
PIDS=()
workdir() {
  W="$(mktemp -d "/tmp/dashcdn-$1.XXXXXX")"; chmod 755 "$W"
  trap bench_cleanup EXIT
}
bench_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
