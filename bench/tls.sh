#!/usr/bin/env bash
# HTTPS: dashcdn's TLS layer (rustls + hyper, http/examples/https_bench.rs: the same
# serve_tls, limits and config as origin and edge, bodies from memory like cache hits)
# vs nginx serving the same bytes, same ECDSA P-256 certificate, TLS 1.3 with
# TLS_AES_128_GCM_SHA256 and X25519 on both.
#   bench/tls.sh [SECONDS]          (default 5 per measurement)
#   CORE_SERVER=0 CORE_LOAD=1 bench/tls.sh 10
#   OURS_BIN=/path/to/https_bench bench/tls.sh 5   (an A/B run against another build)
# Each server is pinned to one core with one worker (our tokio runtime sees one CPU;
# nginx worker_processes 1); the load generators run on the other core.
# Reported, with R = ours / nginx for rates and nginx / ours for costs (R >= 1: we are at
# least as good):
#   handshakes   full TLS 1.3 handshakes (openssl s_time -new): per second, and server
#                CPU µs per handshake — the client may be the bottleneck at one core, so
#                the CPU cost is the fair figure ("handshakes/s per core" = 1e6 / µs);
#   1k keep-alive  h2load --h1, 10 connections: req/s and server CPU µs/req;
#   2m keep-alive  h2load --h1, 4 connections: server CPU µs/req;
#   h2 x100      one HTTP/2 connection with 100 concurrent streams vs 100 HTTP/1.1
#                connections (h2load -m 100 -c 1 vs --h1 -c 100): req/s and p99 ms.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DUR="${1:-5}"
CORE_SERVER="${CORE_SERVER:-0}"
CORE_LOAD="${CORE_LOAD:-1}"
sh "$ROOT/http/tests/setup.sh"
if [[ -z "${OURS_BIN:-}" ]]; then
  cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p dashcdn-http --example https_bench
  OURS_BIN="$ROOT/target/release/examples/https_bench"
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listening on 127.0.0.1:$1" >&2; return 1; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }
HZ=$(getconf CLK_TCK)
# CPU of a server: the pid and its descendants (nginx's worker is the master's child).
tree() { local p=$1; echo "$p"; for c in $(pgrep -P "$p"); do tree "$c"; done; }
cpu_ticks() { local t=0 p; for p in $(tree "$1"); do
  t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }

W="$(mktemp -d /tmp/dashcdn-tls-bench.XXXXXX)"; chmod 755 "$W"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
mkdir -p "$W/www"; head -c 1000 /dev/zero | tr '\0' x > "$W/www/1k"; head -c 2000000 /dev/zero | tr '\0' y > "$W/www/2m"

OPORT=$(free_port); NPORT=$(free_port)
taskset -c "$CORE_SERVER" "$OURS_BIN" "127.0.0.1:$OPORT" "$W/cert.pem" "$W/key.pem" &
OPID=$!; PIDS+=($OPID)
cat > "$W/nginx.conf" <<NGINX
worker_processes 1;
pid $W/nginx.pid;
error_log $W/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000;
  open_file_cache max=100;
  client_body_temp_path $W; proxy_temp_path $W; fastcgi_temp_path $W; uwsgi_temp_path $W; scgi_temp_path $W;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache off; ssl_session_tickets off;
  http2_max_concurrent_streams 128;
  server {
    listen 127.0.0.1:$NPORT ssl http2;
    ssl_certificate $W/cert.pem; ssl_certificate_key $W/key.pem;
    root $W/www;
  }
}
NGINX
taskset -c "$CORE_SERVER" "$NGINX" -c "$W/nginx.conf" -g 'daemon off;' &
NPID=$!; PIDS+=($NPID)
wait_port "$OPORT"; wait_port "$NPORT" || { cat "$W/error.log" >&2; exit 1; }
for p in $OPORT $NPORT; do
  curl -sf --cacert "$W/cert.pem" -o /dev/null "https://localhost:$p/1k" || { echo "port $p does not serve /1k" >&2; exit 1; }
done

# measure PID CMD... → "<seconds of server CPU>"; CMD's output is in $W/out
measure() { local pid=$1; shift; local t0; t0=$(cpu_ticks "$pid")
  taskset -c "$CORE_LOAD" "$@" > "$W/out" 2>&1 || { cat "$W/out" >&2; return 1; }
  awk -v a="$t0" -v b="$(cpu_ticks "$pid")" -v hz="$HZ" 'BEGIN { printf "%.3f", (b - a) / hz }'; }

h2load_rate() { awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($i ~ /req\/s/) { gsub(",", "", $(i-1)); print $(i-1) } }' "$W/out"; }
h2load_done() { awk '/^requests:/ { print $8 }' "$W/out"; }
p99_ms() { sort -n -k3 "$1" | awk '{ a[NR] = $3 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.2f", a[i] / 1000 }'; }

printf '%-16s %14s %14s %8s\n' "measure" "dashcdn" "nginx" "R"
row() { printf '%-16s %14s %14s %8s\n' "$1" "$2" "$3" "$4"; }

# --- full handshakes ---------------------------------------------------------------------
declare -A HS_RATE HS_US
for who in ours nginx; do
  if [[ $who == ours ]]; then pid=$OPID; port=$OPORT; else pid=$NPID; port=$NPORT; fi
  cpu=$(measure "$pid" openssl s_time -connect "127.0.0.1:$port" -new -time "$DUR" -tls1_3 \
        -ciphersuites TLS_AES_128_GCM_SHA256)
  n=$(awk '/connections in .* real seconds/ { print $1; exit }' "$W/out")
  secs=$(awk '/connections in .* real seconds/ { print $4; exit }' "$W/out")
  HS_RATE[$who]=$(awk -v n="$n" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
  HS_US[$who]=$(awk -v c="$cpu" -v n="$n" 'BEGIN { printf "%.1f", c * 1e6 / n }')
done
row "handshakes/s" "${HS_RATE[ours]}" "${HS_RATE[nginx]}" "$(ratio "${HS_RATE[ours]}" "${HS_RATE[nginx]}")"
row "CPU µs/handshake" "${HS_US[ours]}" "${HS_US[nginx]}" "$(ratio "${HS_US[nginx]}" "${HS_US[ours]}")"

# --- keep-alive hits -----------------------------------------------------------------------
declare -A RATE US
for size in 1k 2m; do
  for who in ours nginx; do
    if [[ $who == ours ]]; then pid=$OPID; port=$OPORT; else pid=$NPID; port=$NPORT; fi
    if [[ $size == 1k ]]; then conns=10; else conns=4; fi
    cpu=$(measure "$pid" h2load --h1 -t 1 -c "$conns" -D "$DUR" "https://127.0.0.1:$port/$size")
    RATE[$who]=$(h2load_rate); done_n=$(h2load_done)
    US[$who]=$(awk -v c="$cpu" -v n="$done_n" 'BEGIN { printf "%.1f", c * 1e6 / n }')
  done
  row "$size req/s" "${RATE[ours]}" "${RATE[nginx]}" "$(ratio "${RATE[ours]}" "${RATE[nginx]}")"
  row "$size CPU µs/req" "${US[ours]}" "${US[nginx]}" "$(ratio "${US[nginx]}" "${US[ours]}")"
done

# --- HTTP/2 x100 streams vs 100 HTTP/1.1 connections ----------------------------------------
for mode in h2x100 h1x100; do
  declare -A MR MP
  for who in ours nginx; do
    if [[ $who == ours ]]; then pid=$OPID; port=$OPORT; else pid=$NPID; port=$NPORT; fi
    if [[ $mode == h2x100 ]]; then flags=(-c 1 -m 100); else flags=(--h1 -c 100); fi
    measure "$pid" h2load -t 1 "${flags[@]}" -D "$DUR" --log-file "$W/lat" "https://127.0.0.1:$port/1k" >/dev/null
    MR[$who]=$(h2load_rate); MP[$who]=$(p99_ms "$W/lat")
  done
  row "$mode req/s" "${MR[ours]}" "${MR[nginx]}" "$(ratio "${MR[ours]}" "${MR[nginx]}")"
  row "$mode p99 ms" "${MP[ours]}" "${MP[nginx]}" "$(ratio "${MP[nginx]}" "${MP[ours]}")"
done
