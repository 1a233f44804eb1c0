#!/usr/bin/env bash
# Cold-start stampede: N viewers (default 100) ask for one cold 2 MB segment at the same
# instant, behind a rate-limited origin (user-space, bench/edge/slow_origin.py, 4 MB/s per
# connection so one transfer takes ~0.5 s). For dashcdn edge, nginx (proxy_cache_lock on)
# and Varnish: origin requests, p50/p99 time to first byte and to last byte; then the same
# with the first viewer hanging up after 50 ms.
#   bench/stampede.sh            RUNS=3 N=100 RATE=4000000 bench/stampede.sh
source "$(dirname "$0")/common.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
RUNS="${RUNS:-3}"; N="${N:-100}"; SIZE=2000000; RATE="${RATE:-4000000}"

workdir stampede

OPORT=$(free_port); EPORT=$(free_port); NPORT=$(free_port); VPORT=$(free_port)
python3 "$HERE/edge/slow_origin.py" "$OPORT" "$SIZE" "$RATE" & PIDS+=($!)
"$DASHCDN" -q edge --upstream "http://127.0.0.1:$OPORT" --listen "127.0.0.1:$EPORT" \
  --pop stampede --cache-size 1GiB --no-access-log & PIDS+=($!)

mkdir -p "$W/nginx/cache"
cat > "$W/nginx/nginx.conf" <<NGINX
worker_processes 1;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $W/nginx; proxy_temp_path $W/nginx/tmp; fastcgi_temp_path $W/nginx;
  uwsgi_temp_path $W/nginx; scgi_temp_path $W/nginx;
  proxy_cache_path $W/nginx/cache levels=1:2 keys_zone=edge:10m max_size=1g use_temp_path=off;
  server {
    listen 127.0.0.1:$NPORT;
    location / {
      proxy_pass http://127.0.0.1:$OPORT;
      proxy_cache edge;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 30s;
      proxy_cache_lock_age 30s;
    }
  }
}
NGINX
nginx -c "$W/nginx/nginx.conf" -g 'daemon off;' & PIDS+=($!)

cat > "$W/default.vcl" <<VCL
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$OPORT"; }
VCL
varnishd -F -n "$W/varnish" -a "127.0.0.1:$VPORT" -f "$W/default.vcl" -s malloc,256M -T none \
  >"$W/varnish.log" 2>&1 & PIDS+=($!)

wait_port "$OPORT"; wait_port "$EPORT"; wait_port "$NPORT"; wait_port "$VPORT"
count() { curl -s "http://127.0.0.1:$OPORT/count$1"; }

printf '%-12s %-7s %-3s | %6s %4s %5s | %9s %9s | %9s %9s\n' variant server run \
  origin ok short "TTFB p50" "p99 ms" "TTLB p50" "p99 ms"
for variant in all first-aborts; do
  abort=0; [[ $variant == first-aborts ]] && abort=50
  for run in $(seq 1 "$RUNS"); do
    for s in ours:$EPORT nginx:$NPORT varnish:$VPORT; do
      name=${s%%:*}; port=${s#*:}
      path="/vod/stampede/$name-$variant-$run-$$.m4s"   # a cold object every time
      c0=$(count "$path")
      read -r ok short t50 t99 l50 l99 <<<"$(python3 "$HERE/edge/viewers.py" 127.0.0.1 "$port" "$path" "$N" "$abort")"
      sleep 0.5  # let a fill the aborting viewer started finish before counting
      c1=$(count "$path")
      printf '%-12s %-7s %-3s | %6s %4s %5s | %9s %9s | %9s %9s\n' "$variant" "$name" "$run" \
        "$((c1 - c0))" "$ok" "$short" "$t50" "$t99" "$l50" "$l99"
    done
  done
done
