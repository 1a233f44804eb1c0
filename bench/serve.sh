#!/usr/bin/env bash
# Segment serving throughput: dashcdn origin vs nginx on the same files, same machine,
# one after the other, each with the same wrk load (loopback only).
#   bench/serve.sh [DURATION]      (default 10s per run; 2 MB segment and the MPD)
# Then hostile clients (IDLE=2000 idle keep-alives + SLOW=300 readers that take no byte of
# a 2 MB segment): each server's RSS while they are connected, and a viewer's 2 MB meanwhile.
source "$(dirname "$0")/common.sh"
DUR="${1:-10s}"; CONNS="${CONNS:-32}"
LIB="$OUT/lib-serve"
rm -rf "$LIB"; mkdir -p "$LIB/bench/720p"
# A 2 MB segment (4 s at 4 Mbit/s), an init segment and a real MPD written by our packager.
head -c 2097152 /dev/urandom > "$LIB/bench/720p/1.m4s"
head -c 900 /dev/urandom > "$LIB/bench/720p/init.mp4"
if [[ ! -f "$OUT/lib-package/bench/manifest.mpd" ]]; then
  "$DASHCDN" demo --dir "$OUT/demo" --seconds 12 --no-serve >/dev/null
  cp "$OUT/demo/library/demo/manifest.mpd" "$LIB/bench/manifest.mpd"
else
  cp "$OUT/lib-package/bench/manifest.mpd" "$LIB/bench/manifest.mpd"
fi

OPORT=$(free_port)
"$DASHCDN" -q origin serve --library "$LIB" --listen "127.0.0.1:$OPORT" & OPID=$!
NPORT=$(free_port)
NGX="$OUT/nginx"; mkdir -p "$NGX"
cat > "$NGX/nginx.conf" <<NGINX
worker_processes 2;
pid $NGX/nginx.pid;
error_log $NGX/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on; tcp_nopush on;
  types { application/dash+xml mpd; video/mp4 mp4 m4s; }
  client_body_temp_path $NGX; proxy_temp_path $NGX; fastcgi_temp_path $NGX; uwsgi_temp_path $NGX; scgi_temp_path $NGX;
  server {
    listen 127.0.0.1:$NPORT;
    location /vod/ {
      alias $LIB/;
      add_header Cache-Control "public, max-age=31536000, immutable";
      add_header Access-Control-Allow-Origin "*";
      etag on;
    }
  }
}
NGINX
nginx -c "$NGX/nginx.conf" -g 'daemon off;' & NPID=$!
trap 'kill $OPID $NPID 2>/dev/null; wait 2>/dev/null' EXIT
wait_port "$OPORT"; wait_port "$NPORT"

# wrk's requests/s and transfer/s (bytes), from its summary.
measure() {
  local out; out=$(wrk -t2 -c"$CONNS" -d"$DUR" "$1")
  echo "$out" >&2
  local rps; rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  local errs; errs=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  [[ -z "$errs" ]] || { echo "non-2xx responses from $1" >&2; exit 1; }
  echo "$rps"
}
for what in "720p/1.m4s" "manifest.mpd"; do
  o=$(measure "http://127.0.0.1:$OPORT/vod/bench/$what")
  n=$(measure "http://127.0.0.1:$NPORT/vod/bench/$what")
  echo "$what: dashcdn $o req/s, nginx $n req/s, ratio dashcdn/nginx $(ratio "$o" "$n")"
done

# Hostile clients: many idle keep-alive connections and slow readers that take no byte of a
# 2 MB segment. What each server holds (RSS, nginx: master + workers) while they are
# connected, and how long a normal viewer's request takes meanwhile.
IDLE="${IDLE:-2000}"; SLOW="${SLOW:-300}"
cat > "$OUT/hostile.py" <<'PY'
import socket, sys, time
port, idle, slow, pids = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
def rss_mib():
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total / 1024
def get(path, rcvbuf=None, read=True):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    if read:
        s.recv(65536)
    return s
before = rss_mib()
held = [get("/vod/bench/manifest.mpd") for _ in range(idle)]
held += [get("/vod/bench/720p/1.m4s", rcvbuf=4096, read=False) for _ in range(slow)]
time.sleep(2)
during = rss_mib()
t = time.monotonic()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"GET /vod/bench/720p/1.m4s HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
got = 0
while True:
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    got += len(chunk)
viewer_ms = (time.monotonic() - t) * 1000
print(f"{before:.0f} {during:.0f} {viewer_ms:.0f} {got}")
PY
NPIDS="$NPID $(pgrep -P "$NPID" | tr '\n' ' ')"
read -r ob od ov og < <(python3 "$OUT/hostile.py" "$OPORT" "$IDLE" "$SLOW" "$OPID")
read -r nb nd nv ng < <(python3 "$OUT/hostile.py" "$NPORT" "$IDLE" "$SLOW" $NPIDS)
echo "hostile ($IDLE idle keep-alives + $SLOW stalled readers of 2 MB): RSS dashcdn ${ob}→${od} MiB, nginx ${nb}→${nd} MiB; a viewer's 2 MB meanwhile: dashcdn ${ov} ms (${og} bytes), nginx ${nv} ms (${ng} bytes); RSS ratio dashcdn/nginx $(ratio "$od" "$nd")"
