#!/bin/sh
# Entrypoint of every container of deploy/compose.yaml (needs cap_add: NET_ADMIN).
#
#   wan.sh CMD...               route the other regions (10.78.0.0/16) via the wan router's
#                               address on this container's network (10.78.R.2), then exec CMD
#   wan.sh router DELAYD.json   be the wan router: start delayd (a TUN delay line) and send
#                               every forwarded packet through it (policy routing), as the
#                               router namespace of deploy/netns/net.sh does
set -eu
SIM_NET=10.78.
ROUTER_HOST=2

if [ "${1:-}" = "router" ]; then
  conf="$2"
  tun=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tun"])' "$conf")
  python3 /opt/dashcdn/deploy/netns/delayd.py "$conf" &
  delayd=$!
  trap 'kill $delayd 2>/dev/null' TERM INT
  i=0
  until ip link show "$tun" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 50 ] || { echo "wan.sh: delayd made no $tun" >&2; exit 1; }
    kill -0 $delayd 2>/dev/null || { echo "wan.sh: delayd exited" >&2; exit 1; }
    sleep 0.1
  done
  ip link set "$tun" up
  # Packets coming back out of the delay line are routed normally; everything else that
  # the router forwards (never its own traffic: iif lo) enters the delay line first.
  ip route add default dev "$tun" table 100
  ip rule add iif "$tun" lookup main pref 100
  ip rule add iif lo lookup main pref 101
  ip rule add lookup 100 pref 200
  echo "wan.sh: routing $(ip -o -4 addr show | awk -v p="$SIM_NET" 'index($4, p) == 1 { printf "%s ", $4 }')through $tun"
  wait $delayd
  exit $?
fi

[ "${1:-}" = "--" ] && shift
addr=$(ip -o -4 addr show | awk -v p="$SIM_NET" 'index($4, p) == 1 { split($4, a, "/"); print a[1]; exit }')
if [ -n "$addr" ]; then
  router="${addr%.*}.$ROUTER_HOST"
  ip route replace "${SIM_NET}0.0/16" via "$router" \
    || { echo "wan.sh: cannot route the other regions via $router (cap_add: NET_ADMIN?)" >&2; exit 1; }
fi
exec "$@"
