#!/usr/bin/env bash
# Cache-hit throughput and latency: dashcdn edge vs nginx proxy_cache vs Varnish, all in
# front of the same dashcdn origin, on loopback.
#   bench/edge.sh [SLICE]           (default 4s; each server gets ROUNDS=3 slices per cell)
#   ROUNDS=5 CONCS="10 100" SIZES="1k 2m" LOGS="off on" CORE_CACHE=0 CORE_LOAD=1 bench/edge.sh
# LOGS: "off" = access logs off; "on" = each server writes its access log to a file the way
# an operator would run it: ours with --access-log FILE (its own writer thread; stderr
# redirected to a file on a build without the flag), nginx `access_log FILE combined
# buffer=64k flush=1s`, Varnish with `varnishncsa -w FILE` (its CPU counted with
# varnishd's, pinned to the same core). Both modes run side by side (six caches).
# Fairness: each cache is pinned to one core (taskset) with one worker (our tokio runtime
# sees one CPU and starts one worker; nginx worker_processes 1; Varnish's thread pools are
# confined to the same core), wrk and the origin run on the other core, access logs as LOGS,
# every object warmed and checked to be a hit before measuring, and the origin's request
# count is checked unchanged across the measured runs. The servers take turns in short
# slices, in rotating order, so load from elsewhere on a shared machine hits all alike.
# Reported per size and concurrency:
#   req/s        at full speed (wrk -t1 closed loop), total requests / total time;
#   p99 ms       at full speed (median over the slices) -- when a server answers faster
#                than one wrk thread can ask (wrk% near 100), this is wrk's own scheduling
#                delay on the shared core more than the server's latency;
#   p99@load     at the same offered load for all three (each connection pauses after each
#                answer: <= 10 000 req/s of 1 KB, <= 200 req/s of 2 MB), median of slices;
#   CPU-ms/req   of the cache process(es) over all full-speed slices;
#   wrk%         CPU of the wrk process (of one core) at full speed, median;
#   RSS KB/obj   RSS growth per cached object;
# and R = ours / best peer (for p99 and CPU-ms, R = best peer / ours, so R >= 1 always
# means "we are at least as good").
# A/B of ours: OURS_B_ENV="VAR=VALUE ..." adds a fourth cache to the logs-off slices, ours
# started with that environment ("ours-B", printed beside the others, not in R), e.g.
#   OURS_B_ENV=MIMALLOC_PURGE_DELAY=1000 LOGS=off bench/edge.sh 3s
source "$(dirname "$0")/common.sh"
DUR="${1:-4s}"   # per slice; each server gets ROUNDS slices per cell and mode
ROUNDS="${ROUNDS:-3}"
CONCS="${CONCS:-10 100}"
SIZES="${SIZES:-1k 2m}"
LOGS="${LOGS:-off on}"
CORE_CACHE="${CORE_CACHE:-0}"
CORE_LOAD="${CORE_LOAD:-1}"
N_SMALL=200   # distinct 1 KB objects
N_BIG=20      # distinct 2 MB objects

workdir edge-bench

# --- library: synthetic segments (bytes do not matter to a cache) -------------------
mkdir -p "$W/lib/small/v0" "$W/lib/big/v0"
head -c 1000 /dev/urandom > "$W/lib/small/v0/1.m4s"
head -c 2000000 /dev/urandom > "$W/lib/big/v0/1.m4s"
for n in $(seq 2 $N_SMALL); do ln "$W/lib/small/v0/1.m4s" "$W/lib/small/v0/$n.m4s"; done
for n in $(seq 2 $N_BIG); do ln "$W/lib/big/v0/1.m4s" "$W/lib/big/v0/$n.m4s"; done

OPORT=$(free_port); EPORT=$(free_port); NPORT=$(free_port); VPORT=$(free_port)
ELPORT=$(free_port); NLPORT=$(free_port); VLPORT=$(free_port)
taskset -c "$CORE_LOAD" "$DASHCDN" -q origin serve --library "$W/lib" --listen "127.0.0.1:$OPORT" &
PIDS+=($!)

# --- ours ------------------------------------------------------------------------------
taskset -c "$CORE_CACHE" "$DASHCDN" -q edge --upstream "http://127.0.0.1:$OPORT" \
  --listen "127.0.0.1:$EPORT" --pop bench --cache-size 1GiB --no-access-log &
EPID=$!; PIDS+=($EPID)
if [[ -n "${OURS_B_ENV:-}" ]]; then
  EBPORT=$(free_port)
  env $OURS_B_ENV taskset -c "$CORE_CACHE" "$DASHCDN" -q edge --upstream "http://127.0.0.1:$OPORT" \
    --listen "127.0.0.1:$EBPORT" --pop bench --cache-size 1GiB --no-access-log &
  EBPID=$!; PIDS+=($EBPID)
fi
# ... and with its access log to a file.
if "$DASHCDN" edge --help | grep -q -- '--access-log'; then
  taskset -c "$CORE_CACHE" "$DASHCDN" -q edge --upstream "http://127.0.0.1:$OPORT" \
    --listen "127.0.0.1:$ELPORT" --pop bench --cache-size 1GiB --access-log "$W/ours-access.log" &
else
  taskset -c "$CORE_CACHE" "$DASHCDN" edge --upstream "http://127.0.0.1:$OPORT" \
    --listen "127.0.0.1:$ELPORT" --pop bench --cache-size 1GiB 2>"$W/ours-access.log" &
fi
ELPID=$!; PIDS+=($ELPID)

# --- nginx proxy_cache: the cache on tmpfs-like /tmp, keys in shared memory ------------
# nginx_conf DIR PORT ACCESS_LOG_DIRECTIVE
nginx_conf() { local d=$1 port=$2 log=$3
mkdir -p "$d/cache"
cat > "$d/nginx.conf" <<NGINX
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log;
events { worker_connections 4096; }
http {
  $log
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000;
  client_body_temp_path $d; proxy_temp_path $d/tmp; fastcgi_temp_path $d;
  uwsgi_temp_path $d; scgi_temp_path $d;
  proxy_cache_path $d/cache levels=1:2 keys_zone=edge:50m max_size=1g inactive=1d use_temp_path=off;
  upstream origin { server 127.0.0.1:$OPORT; keepalive 32; }
  server {
    listen 127.0.0.1:$port;
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
}
nginx_conf "$W/nginx" "$NPORT" "access_log off;"
taskset -c "$CORE_CACHE" nginx -c "$W/nginx/nginx.conf" -g 'daemon off;' &
NPID=$!; PIDS+=($NPID)
nginx_conf "$W/nginx-log" "$NLPORT" "access_log $W/nginx-log/access.log combined buffer=64k flush=1s;"
taskset -c "$CORE_CACHE" nginx -c "$W/nginx-log/nginx.conf" -g 'daemon off;' &
NLPID=$!; PIDS+=($NLPID)

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
taskset -c "$CORE_CACHE" varnishd -F -n "$W/varnish-log" -a "127.0.0.1:$VLPORT" -f "$W/default.vcl" \
  -s malloc,1G -T none -p thread_pools=1 >"$W/varnish-log.log" 2>&1 &
VLPID=$!; PIDS+=($VLPID)

wait_port "$OPORT"; wait_port "$EPORT"; [[ -z "${OURS_B_ENV:-}" ]] || wait_port "$EBPORT"; wait_port "$NPORT" || { cat "$W/nginx/error.log" >&2; exit 1; }
wait_port "$VPORT" || { cat "$W/varnish.log" >&2; exit 1; }
wait_port "$ELPORT"; wait_port "$NLPORT" || { cat "$W/nginx-log/error.log" >&2; exit 1; }
wait_port "$VLPORT" || { cat "$W/varnish-log.log" >&2; exit 1; }
# Varnish logs through a separate reader of its shared-memory log.
taskset -c "$CORE_CACHE" varnishncsa -n "$W/varnish-log" -w "$W/varnish-access.log" &
NCSAPID=$!; PIDS+=($NCSAPID)

# --- helpers -----------------------------------------------------------------------------
# All processes of a server (the pid and its descendants), for CPU and RSS.
# A server's pid may be "PID+PID" (varnishd + varnishncsa).
tree() { local p c; for p in ${1//+/ }; do echo "$p"; for c in $(pgrep -P "$p"); do tree "$c"; done; done; }
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

# wrk lua: each request a random object of the set; the paced variant also waits
# $2 ms after each answer before the connection's next request (wrk's delay() hook).
lua() { { echo "paths = {"; paths "$1" | sed 's|.*|"&",|'; echo "}";
  echo 'request = function() return wrk.format("GET", paths[math.random(#paths)]) end'
  if [[ -n "${2:-}" ]]; then echo "delay = function() return $2 end"; fi; } > "$W/$1${2:+-paced}.lua"; }

to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }

# wrk1 NAME PORT PID LUA CONC → "requests seconds p99ms cpu_ticks wrk_cpu%" for one slice.
wrk1() { local name=$1 port=$2 pid=$3 script=$4 conc=$5
  local c0; c0=$(cpu_ticks "$pid")
  local out; out=$( { TIMEFORMAT=%P; time taskset -c "$CORE_LOAD" wrk -t1 -c"$conc" -d"$DUR" --latency \
    -s "$script" "http://127.0.0.1:$port" 2>&1; } 2>&1 )
  local c1; c1=$(cpu_ticks "$pid")
  if echo "$out" | grep -q "Non-2xx"; then echo "$name: non-2xx answers" >&2; echo "$out" >&2; exit 1; fi
  local reqs; reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  local secs; secs=$(echo "$out" | awk '/requests in/ {sub(/,/, "", $4); print $4}')
  local p99; p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
  local wcpu; wcpu=$(echo "$out" | tail -1)
  echo "$reqs $(to_ms "$secs") $p99 $((c1 - c0)) $wcpu"
}

median() { sort -g | awk '{v[NR] = $1} END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The servers take turns in short slices, ROUNDS times, the order rotating each round, so
# a burst of load from elsewhere on the machine hits all of them alike rather than
# whichever one happened to be measured then.
# name:port:pid per LOGS mode.
declare -A MODE_SERVERS=(
  [off]="ours:$EPORT:$EPID nginx:$NPORT:$NPID varnish:$VPORT:$VPID"
  [on]="ours+log:$ELPORT:$ELPID nginx+log:$NLPORT:$NLPID varnish+log:$VLPORT:$VLPID+$NCSAPID"
)
[[ -z "${OURS_B_ENV:-}" ]] || MODE_SERVERS[off]+=" ours-B:$EBPORT:$EBPID"
ALL_SERVERS=(); for m in $LOGS; do ALL_SERVERS+=(${MODE_SERVERS[$m]}); done
# cell SIZE CONC MODE (sat|paced) → fills RPS P99 CPU WCPU per server
cell() { local size=$1 conc=$2 mode=$3 script
  if [[ $mode == sat ]]; then script="$W/$size.lua"; else script="$W/$size-paced.lua"; fi
  declare -gA REQS SECS TICKS P99S WCPUS
  local s; for s in "${SERVERS[@]}"; do local n=${s%%:*}; REQS[$n]=0; SECS[$n]=0; TICKS[$n]=0; P99S[$n]=""; WCPUS[$n]=""; done
  local r i
  for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < ${#SERVERS[@]}; i++)); do
      IFS=: read -r n port pid <<<"${SERVERS[$(( (i + r) % ${#SERVERS[@]} ))]}"
      read -r q t p c w <<<"$(wrk1 "$n" "$port" "$pid" "$script" "$conc")"
      [[ -n "$w" ]] || { echo "$n: wrk run failed" >&2; exit 1; }
      REQS[$n]=$((REQS[$n] + q)); TICKS[$n]=$((TICKS[$n] + c))
      SECS[$n]=$(awk -v a="${SECS[$n]}" -v b="$t" 'BEGIN { print a + b / 1000 }')
      P99S[$n]+="$p "; WCPUS[$n]+="$w "
    done
  done
  for s in "${SERVERS[@]}"; do local n=${s%%:*}
    RPS[$n]=$(awk -v q="${REQS[$n]}" -v t="${SECS[$n]}" 'BEGIN { printf "%.1f", q / t }')
    P99[$n]=$(printf '%s\n' ${P99S[$n]} | median)
    CPU[$n]=$(awk -v t="${TICKS[$n]}" -v hz="$HZ" -v n="${REQS[$n]}" 'BEGIN { printf "%.4f", t * 1000 / hz / n }')
    WCPU[$n]=$(printf '%s\n' ${WCPUS[$n]} | median)
  done
}

declare -A RSS0
for s in "${ALL_SERVERS[@]}"; do RSS0[${s%%:*}]=$(rss_kb "${s##*:}"); done

printf '%-5s %5s | %-11s %10s %9s %9s %10s %6s %10s\n' size conc server "req/s" "p99 ms" "p99@load" "CPU-ms/req" "wrk%" "RSS KB/obj"
for size in $SIZES; do
  nobj=$([[ $size == 1k ]] && echo $N_SMALL || echo $N_BIG)
  for s in "${ALL_SERVERS[@]}"; do IFS=: read -r n port pid <<<"$s"; warm "$port" "$size"; done
  declare -A RSSOBJ
  for s in "${ALL_SERVERS[@]}"; do
    IFS=: read -r n port pid <<<"$s"; RSSOBJ[$n]=$(( ($(rss_kb "$pid") - RSS0[$n]) / nobj ))
  done
  before=$(origin_requests)
  for conc in $CONCS; do
    # Equal offered load for the latency comparison: each connection waits PACE ms after
    # an answer, i.e. at most conc*1000/PACE req/s (10 000/s of 1 KB, 200/s of 2 MB),
    # below what every server sustains here, so wrk itself is never the bottleneck.
    if [[ $size == 1k ]]; then pace=$((conc / 10)); else pace=$((conc * 5)); fi
    lua "$size"; lua "$size" "$pace"
    for mode in $LOGS; do
    SERVERS=(${MODE_SERVERS[$mode]})
    NAMES=(); for s in "${SERVERS[@]}"; do NAMES+=("${s%%:*}"); done
    declare -A RPS P99 CPU WCPU
    cell "$size" "$conc" paced
    declare -A LP99; for n in "${NAMES[@]}"; do LP99[$n]=${P99[$n]}; done
    cell "$size" "$conc" sat
    for n in "${NAMES[@]}"; do
      printf '%-5s %5s | %-11s %10s %9s %9s %10s %6s %10s\n' "$size" "$conc" "$n" "${RPS[$n]}" "${P99[$n]}" \
        "${LP99[$n]}" "${CPU[$n]}" "${WCPU[$n]}" "${RSSOBJ[$n]}"
    done
    o=${NAMES[0]} ng=${NAMES[1]} va=${NAMES[2]}
    best_rps=$(printf '%s\n' "${RPS[$ng]}" "${RPS[$va]}" | sort -g | tail -1)
    best_p99=$(printf '%s\n' "${P99[$ng]}" "${P99[$va]}" | sort -g | head -1)
    best_lp99=$(printf '%s\n' "${LP99[$ng]}" "${LP99[$va]}" | sort -g | head -1)
    best_cpu=$(printf '%s\n' "${CPU[$ng]}" "${CPU[$va]}" | sort -g | head -1)
    echo "R $size c=$conc logs $mode: req/s $(ratio "${RPS[$o]}" "$best_rps")  p99@load $(ratio "$best_lp99" "${LP99[$o]}")  p99@max $(ratio "$best_p99" "${P99[$o]}")  CPU/req $(ratio "$best_cpu" "${CPU[$o]}")"
    done
  done
  best_rss=$(printf '%s\n' "${RSSOBJ[nginx]:-}" "${RSSOBJ[varnish]:-}" "${RSSOBJ[nginx+log]:-}" "${RSSOBJ[varnish+log]:-}" | grep . | sort -g | head -1)
  ours_rss=${RSSOBJ[ours]:-${RSSOBJ[ours+log]}}
  echo "R $size RSS/object: ours ${ours_rss} KB, best peer ${best_rss} KB (nginx keeps bodies in files: page cache, not RSS)"
  after=$(origin_requests)
  [[ "$before" == "$after" ]] || { echo "origin saw $((after - before)) requests during the measured runs" >&2; exit 1; }
  echo "origin requests unchanged during the measured runs ($after)"
done
if [[ " $LOGS " == *" on "* ]]; then
  for f in ours-access.log nginx-log/access.log varnish-access.log; do
    echo "access log $f: $(wc -l < "$W/$f" 2>/dev/null || echo 0) lines"
  done
fi
