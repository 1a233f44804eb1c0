#!/usr/bin/env bash
# What sendfile(2) would save on 2 MB cache hits (issue 12): the same 2 MB body served by
# hyper from a `Bytes` (as the edge does) and by sendfile from a memfd on a raw socket
# (edge/examples/sendfile_2mb.rs), each pinned to one core with one worker, wrk on the
# other core, in alternating slices (order rotating each round).
#   bench/edge-sendfile.sh [SLICE]                 (default 3s)
#   ROUNDS=4 CONC=100 CORE_CACHE=0 CORE_LOAD=1 bench/edge-sendfile.sh 3s
# Reported per mode: req/s (total requests / total time) and CPU-ms per request of the
# server process, and R = hyper CPU-ms/req ÷ sendfile CPU-ms/req (> 1: sendfile cheaper).
source "$(dirname "$0")/common.sh"
DUR="${1:-3s}"
ROUNDS="${ROUNDS:-4}"
CONC="${CONC:-100}"
CORE_CACHE="${CORE_CACHE:-0}"
CORE_LOAD="${CORE_LOAD:-1}"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p dashcdn-edge --example sendfile_2mb
EX="$ROOT/target/release/examples/sendfile_2mb"

workdir edge-sendfile
declare -A PORT PID REQS SECS TICKS
for mode in hyper sendfile; do
  PORT[$mode]=$(free_port)
  taskset -c "$CORE_CACHE" "$EX" "$mode" "127.0.0.1:${PORT[$mode]}" &
  PID[$mode]=$!; PIDS+=($!)
  wait_port "${PORT[$mode]}"
  # Same body both ways.
  curl -s "http://127.0.0.1:${PORT[$mode]}/x" | sha256sum | cut -c1-16 > "$W/$mode.sum"
  REQS[$mode]=0; SECS[$mode]=0; TICKS[$mode]=0
done
cmp -s "$W/hyper.sum" "$W/sendfile.sum" || { echo "the two modes send different bodies" >&2; exit 1; }
HZ=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

modes=(hyper sendfile)
for ((r = 0; r < ROUNDS; r++)); do
  for ((i = 0; i < 2; i++)); do
    m=${modes[$(( (i + r) % 2 ))]}
    c0=$(ticks "${PID[$m]}")
    out=$(taskset -c "$CORE_LOAD" wrk -t1 -c"$CONC" -d"$DUR" "http://127.0.0.1:${PORT[$m]}/x" 2>&1)
    c1=$(ticks "${PID[$m]}")
    if echo "$out" | grep -q "Non-2xx"; then echo "$m: non-2xx answers" >&2; exit 1; fi
    q=$(echo "$out" | awk '/requests in/ {print $1}')
    t=$(echo "$out" | awk '/requests in/ {sub(/s,/, "", $4); print $4}')
    REQS[$m]=$((REQS[$m] + q)); TICKS[$m]=$((TICKS[$m] + c1 - c0))
    SECS[$m]=$(awk -v a="${SECS[$m]}" -v b="$t" 'BEGIN { print a + b }')
  done
done
printf '%-9s %10s %12s\n' mode "req/s" "CPU-ms/req"
declare -A CPU
for m in hyper sendfile; do
  CPU[$m]=$(awk -v t="${TICKS[$m]}" -v hz="$HZ" -v n="${REQS[$m]}" 'BEGIN { printf "%.4f", t * 1000 / hz / n }')
  printf '%-9s %10s %12s\n' "$m" "$(awk -v q="${REQS[$m]}" -v t="${SECS[$m]}" 'BEGIN { printf "%.1f", q / t }')" "${CPU[$m]}"
done
echo "R CPU/req (hyper / sendfile): $(ratio "${CPU[hyper]}" "${CPU[sendfile]}")"
