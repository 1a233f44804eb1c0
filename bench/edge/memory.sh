#!/usr/bin/env bash
# Peak RSS vs cache size over distinct objects: dashcdn edge vs Varnish `-s malloc` of the
# same size, both in front of the same dashcdn origin (issue 12's memory table).
#   bench/edge/memory.sh [SLICE]          (default 10s per cell)
#   CACHE_MB=64 CONCS="8 64 256 1024" OBJECTS=600 OBJ_KB=1000 bench/edge/memory.sh
# Each cell starts the cache fresh, runs wrk (random object of OBJECTS distinct ~1 MB ones,
# so most requests are fills and the cache churns) at CONC connections for SLICE, samples
# the RSS of the cache's whole process tree every 100 ms, and reports the peak, the RSS
# 2 s after the load stops, and the documented bound 1.25 × cache + 64 MiB (docs/edge.md).
source "$(dirname "$0")/../common.sh"
DUR="${1:-10s}"
CACHE_MB="${CACHE_MB:-64}"
CONCS="${CONCS:-8 64 256 1024}"
OBJECTS="${OBJECTS:-600}"
OBJ_KB="${OBJ_KB:-1000}"
CORE_CACHE="${CORE_CACHE:-0}"
CORE_LOAD="${CORE_LOAD:-1}"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

workdir edge-memory
mkdir -p "$W/lib/m/v0"
head -c $((OBJ_KB * 1000)) /dev/urandom > "$W/lib/m/v0/1.m4s"
for n in $(seq 2 "$OBJECTS"); do ln "$W/lib/m/v0/1.m4s" "$W/lib/m/v0/$n.m4s"; done
{ echo "paths = {"; seq 1 "$OBJECTS" | sed 's|.*|"/vod/m/v0/&.m4s",|'; echo "}"
  echo 'request = function() return wrk.format("GET", paths[math.random(#paths)]) end'; } > "$W/m.lua"
cat > "$W/default.vcl" <<VCL
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "OPORT"; }
VCL

OPORT=$(free_port)
sed -i "s/OPORT/$OPORT/" "$W/default.vcl"
taskset -c "$CORE_LOAD" "$DASHCDN" -q origin serve --library "$W/lib" --listen "127.0.0.1:$OPORT" &
PIDS+=($!)
wait_port "$OPORT"

tree() { local p c; for p in ${1//+/ }; do echo "$p"; for c in $(pgrep -P "$p"); do tree "$c"; done; done; }
rss_mb() { local t=0 p; for p in $(tree "$1"); do
  t=$((t + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0))); done; echo $((t / 1024)); }

# start NAME PORT → CPID, the cache's pid (its output to files: never to a caller's pipe)
start() { local name=$1 port=$2
  case $name in
    ours) taskset -c "$CORE_CACHE" "$DASHCDN" -q edge --upstream "http://127.0.0.1:$OPORT" \
            --listen "127.0.0.1:$port" --pop bench --cache-size "${CACHE_MB}MiB" --no-access-log >"$W/ours-$port.log" 2>&1 &;;
    varnish) taskset -c "$CORE_CACHE" varnishd -F -n "$W/varnish-$port" -a "127.0.0.1:$port" \
            -f "$W/default.vcl" -s "malloc,${CACHE_MB}M" -T none -p thread_pools=1 \
            >"$W/varnish-$port.log" 2>&1 &;;
  esac
  CPID=$!; PIDS+=("$CPID")
}

# cell NAME CONC → PEAK and AFTER (MiB)
cell() { local name=$1 conc=$2 port pid peak=0 r
  port=$(free_port); start "$name" "$port"; pid=$CPID
  wait_port "$port" >/dev/null
  taskset -c "$CORE_LOAD" wrk -t1 -c"$conc" -d"$DUR" -s "$W/m.lua" "http://127.0.0.1:$port" >"$W/wrk-$name-$conc.txt" 2>&1 &
  local wpid=$!
  while kill -0 "$wpid" 2>/dev/null; do
    r=$(rss_mb "$pid"); ((r > peak)) && peak=$r; sleep 0.1
  done
  wait "$wpid" || true
  sleep 2
  local after; after=$(rss_mb "$pid")
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  PEAK=$peak; AFTER=$after
}

bound=$(awk -v c="$CACHE_MB" 'BEGIN { printf "%d", 1.25 * c + 64 }')
echo "cache ${CACHE_MB} MiB, ${OBJECTS} distinct objects of ${OBJ_KB} KB, ${DUR} per cell; bound 1.25 x cache + 64 = ${bound} MiB"
printf '%6s | %14s %14s | %14s %14s | %8s\n' conc "ours peak MiB" "ours after" "varnish peak" "varnish after" "R peak"
for conc in $CONCS; do
  cell ours "$conc"; op=$PEAK oa=$AFTER
  cell varnish "$conc"; vp=$PEAK va=$AFTER
  printf '%6s | %14s %14s | %14s %14s | %8s\n' "$conc" "$op" "$oa" "$vp" "$va" "$(ratio "$vp" "$op")"
done
echo "R peak = varnish peak / ours peak (>= 1: ours uses no more); ours within bound if peak <= ${bound}"
