#!/usr/bin/env bash
# Cache-hit throughput and latency: dashcdn edge vs nginx proxy_cache vs Varnish, all in
# front of the same dashcdn origin, on loopback.
#   bench/edge.sh [DURATION]        (default 10s per run)
#   CONCS="10 100" SIZES="1k 2m" CORE_CACHE=0 CORE_LOAD=1 bench/edge.sh
# Fairness: each cache is pinned to one core (taskset) with one worker (our tokio runtime
# sees one CPU and starts one worker; nginx worker_processes 1; Varnish's thread pools are
# confined to the same core), wrk and the origin run on the other core, access logs off,
# every object warmed and checked to be a hit before measuring, and the origin's request
# count is checked unchanged across the measured runs.
# Reported per size and concurrency: req/s, p99 latency, CPU-ms per request of the cache
# process(es) and RSS growth per cached object, and R = ours / best peer (for p99 and
# CPU-ms, R = best peer / ours, so R >= 1 always means "we are at least as good").
source "$(dirname "$0")/common.sh"
DUR="${1:-10s}"
CONCS="${CONCS:-10 100}"
SIZES="${SIZES:-1k 2m}"
CORE_CACHE="${CORE_CACHE:-0}"
CORE_LOAD="${CORE_LOAD:-1}"
N_SMALL=200   # distinct 1 KB objects
N_BIG=20      # distinct 2 MB objects

W="$(mktemp -d /tmp/dashcdn-edge-bench.XXXXXX)"; chmod 755 "$W"  # varnishd drops privileges and must read the VCL
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

# --- library: synthetic segments (bytes do not matter to a cache) -------------------
mkdir -p "$W/lib/small/v0" "$W/lib/big/v0"
head -c 1000 /dev/urandom > "$W/lib/small/v0/1.m4s"
head -c 2000000 /dev/urandom > "$W/lib/big/v0/1.m4s"
for n in $(seq 2 $N_SMALL); do ln "$W/lib/small/v0/1.m4s" "$W/lib/small/v0/$n.m4s"; done
for n in $(seq 2 $N_BIG); do ln "$W/lib/big/v0/1.m4s" "$W/lib/big/v0/$n.m4s"; done

OPORT=$(free_port); EPORT=$(free_port); NPORT=$(free_port); VPORT=$(free_port)
taskset -c "$CORE_LOAD" "$DASHCDN" -q origin serve --library "$W/lib" --listen "127.0.0.1:$OPORT" &
PIDS+=($!)

# --- ours ------------------------------------------------------------------------------
taskset -c "$CORE_CACHE" "$DASHCDN" -q edge --upstream "http://127.0.0.1:$OPORT" \
  --listen "127.0.0.1:$EPORT" --pop bench --cache-size 1GiB --no-access-log &
EPID=$!; PIDS+=($EPID)

# --- nginx proxy_cache: the cache on tmpfs-like /tmp, keys in shared memory ------------
mkdir -p "$W/nginx/cache"
cat > "$W/nginx/nginx.conf" <<NGINX
worker_processes 1;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000;
  client_body_temp_path $W/nginx; proxy_temp_path $W/nginx/tmp; fastcgi_temp_path $W/nginx;
  uwsgi_temp_path $W/nginx; scgi_temp_path $W/nginx;
  proxy_cache_path $W/nginx/cache levels=1:2 keys_zone=edge:50m max_size=1g inactive=1d use_temp_path=off;
  upstream origin { server 127.0.0.1:$OPORT; keepalive 32; }
  server {
    listen 127.0.0.1:$NPORT;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache edge;
      proxy_cache_lock on;
      proxy_cache_key \$uri\$is_args\$args;
      add_header X-Cache \$upstream_cache_status;
    }
  }
}
NGINX
taskset -c "$CORE_CACHE" nginx -c "$W/nginx/nginx.conf" -g 'daemon off;' &
NPID=$!; PIDS+=($NPID)

# --- Varnish: malloc storage, foreground, its own workdir, loopback port only ---------
cat > "$W/default.vcl" <<VCL
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$OPORT"; }
sub vcl_deliver {
  if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; }
}
VCL
taskset -c "$CORE_CACHE" varnishd -F -n "$W/varnish" -a "127.0.0.1:$VPORT" -f "$W/default.vcl" \
  -s malloc,1G -T none -p thread_pools=1 >"$W/varnish.log" 2>&1 &
VPID=$!; PIDS+=($VPID)

wait_port "$OPORT"; wait_port "$EPORT"; wait_port "$NPORT" || { cat "$W/nginx/error.log" >&2; exit 1; }
wait_port "$VPORT" || { cat "$W/varnish.log" >&2; exit 1; }

# --- helpers -----------------------------------------------------------------------------
# All processes of a server (the pid and its descendants), for CPU and RSS.
tree() { local p=$1; echo "$p"; for c in $(pgrep -P "$p"); do tree "$c"; done; }
cpu_ticks() { local t=0; for p in $(tree "$1"); do
  t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done; echo "$t"; }
rss_kb() { local t=0; for p in $(tree "$1"); do
  t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo "$t"; }
HZ=$(getconf CLK_TCK)
origin_requests() { curl -s "http://127.0.0.1:$OPORT/metrics" |
  awk '/^dashcdn_origin_http_requests_total\{route="segment"/ {s += $NF} END {print s + 0}'; }
paths() { case $1 in 1k) seq 1 $N_SMALL | sed 's|^|/vod/small/v0/|; s|$|.m4s|';;
                     2m) seq 1 $N_BIG | sed 's|^|/vod/big/v0/|; s|$|.m4s|';; esac; }

# Warm every object and check the second answer is a hit.
warm() { local port=$1 size=$2 p
  for p in $(paths "$size"); do
    curl -s -o /dev/null "http://127.0.0.1:$port$p"
    curl -s -o /dev/null "http://127.0.0.1:$port$p"
    local x; x=$(curl -s -D - -o /dev/null "http://127.0.0.1:$port$p" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache" {print $2}')
    [[ "$x" == "HIT" ]] || { echo "port $port $p: X-Cache '$x' after warming" >&2; exit 1; }
  done; }

# wrk lua: each request a random object of the set.
lua() { { echo "paths = {"; paths "$1" | sed 's|.*|"&",|'; echo "}";
  echo 'request = function() return wrk.format("GET", paths[math.random(#paths)]) end'; } > "$W/$1.lua"; }

to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }

# run NAME PORT PID SIZE CONC → "rps p99ms cpu_ms_per_req"
run() { local name=$1 port=$2 pid=$3 size=$4 conc=$5
  local c0; c0=$(cpu_ticks "$pid")
  local out; out=$(taskset -c "$CORE_LOAD" wrk -t1 -c"$conc" -d"$DUR" --latency -s "$W/$size.lua" "http://127.0.0.1:$port")
  local c1; c1=$(cpu_ticks "$pid")
  if echo "$out" | grep -q "Non-2xx"; then echo "$name: non-2xx answers" >&2; echo "$out" >&2; exit 1; fi
  local rps; rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  local p99; p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  local cpu; cpu=$(awk -v t=$((c1 - c0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.4f", t * 1000 / hz / n }')
  echo "$rps $p99 $cpu"
}

declare -A RSS0
for s in ours:$EPID nginx:$NPID varnish:$VPID; do RSS0[${s%%:*}]=$(rss_kb "${s#*:}"); done

printf '%-5s %5s | %-9s %10s %9s %10s %12s\n' size conc server "req/s" "p99 ms" "CPU-ms/req" "RSS KB/obj"
for size in $SIZES; do
  lua "$size"
  nobj=$([[ $size == 1k ]] && echo $N_SMALL || echo $N_BIG)
  for s in ours:$EPORT nginx:$NPORT varnish:$VPORT; do warm "${s#*:}" "$size"; done
  declare -A RSSOBJ
  for s in ours:$EPID nginx:$NPID varnish:$VPID; do
    n=${s%%:*}; RSSOBJ[$n]=$(( ($(rss_kb "${s#*:}") - RSS0[$n]) / nobj ))
  done
  before=$(origin_requests)
  for conc in $CONCS; do
    declare -A RPS P99 CPU
    for s in ours:$EPORT:$EPID nginx:$NPORT:$NPID varnish:$VPORT:$VPID; do
      IFS=: read -r n port pid <<<"$s"
      read -r RPS[$n] P99[$n] CPU[$n] <<<"$(run "$n" "$port" "$pid" "$size" "$conc")"
      printf '%-5s %5s | %-9s %10s %9s %10s %12s\n' "$size" "$conc" "$n" "${RPS[$n]}" "${P99[$n]}" "${CPU[$n]}" "${RSSOBJ[$n]}"
    done
    best_rps=$(printf '%s\n' "${RPS[nginx]}" "${RPS[varnish]}" | sort -g | tail -1)
    best_p99=$(printf '%s\n' "${P99[nginx]}" "${P99[varnish]}" | sort -g | head -1)
    best_cpu=$(printf '%s\n' "${CPU[nginx]}" "${CPU[varnish]}" | sort -g | head -1)
    echo "R $size c=$conc: req/s $(ratio "${RPS[ours]}" "$best_rps")  p99 $(ratio "$best_p99" "${P99[ours]}")  CPU/req $(ratio "$best_cpu" "${CPU[ours]}")"
  done
  best_rss=$(printf '%s\n' "${RSSOBJ[nginx]}" "${RSSOBJ[varnish]}" | sort -g | head -1)
  echo "R $size RSS/object: ours ${RSSOBJ[ours]} KB, best peer ${best_rss} KB (nginx keeps bodies in files: page cache, not RSS)"
  after=$(origin_requests)
  [[ "$before" == "$after" ]] || { echo "origin saw $((after - before)) requests during the measured runs" >&2; exit 1; }
  echo "origin requests unchanged during the measured runs ($after)"
done
