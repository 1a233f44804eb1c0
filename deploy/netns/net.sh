# Network-namespace topology of the multi-region simulation; sourced by sim.sh.
#
#   host netns (one per machine of the CDN)      router netns "${SIM}wan"
#   ${SIM}core    10.77.0.2  origin, shield, geodns ─┐
#   ${SIM}eu-edge 10.77.1.2  edge eu-west           ─┤ veth, one /24 per host
#   ${SIM}eu-cli  10.77.11.2 player in eu-west      ─┤       │
#   ${SIM}us-edge 10.77.2.2 ... ap-cli 10.77.13.2   ─┘   policy routing: every forwarded
#                                                        packet goes through the TUN "dly0",
#                                                        where delayd.py holds it for the
#                                                        one-way delay of its region pair.
# Bandwidth: tbf on each client's access link (CLIENT_RATE), on its router-side veth
# (download direction) and its own side (upload).
set -euo pipefail

SIM="${SIM:-dcsim-}"
NETNS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# name  index  region
HOSTS=(
  "core 0 core"
  "eu-edge 1 eu-west"   "eu-cli 11 eu-west"
  "us-edge 2 us-west"   "us-cli 12 us-west"
  "ap-edge 3 ap-east"   "ap-cli 13 ap-east"
)
# One-way delays in ms between regions (RTT is twice this); same region: LOCAL_MS.
# The core (origin + shield) sits in us-east.
LOCAL_MS="${LOCAL_MS:-2}"
DELAYS='{"eu-west>us-west": 70, "eu-west>ap-east": 100, "us-west>ap-east": 60,
         "core>eu-west": 40, "core>us-west": 35, "core>ap-east": 80}'
CLIENT_RATE="${CLIENT_RATE:-50mbit}"
PIDS=()

host_ip() { echo "10.77.$1.2"; }
ns() { echo "${SIM}$1"; }
in_ns() { local n="$1"; shift; ip netns exec "$(ns "$n")" "$@"; }

net_up() {
  local wan; wan="$(ns wan)"
  ip netns add "$wan"
  ip -n "$wan" link set lo up
  ip netns exec "$wan" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$wan" sysctl -qw net.ipv4.conf.all.rp_filter=0
  ip netns exec "$wan" sysctl -qw net.ipv4.conf.default.rp_filter=0
  local regions="{" sep=""
  for h in "${HOSTS[@]}"; do
    read -r name idx region <<<"$h"
    local n; n="$(ns "$name")"
    ip netns add "$n"
    ip -n "$n" link set lo up
    ip link add "w$idx" netns "$wan" type veth peer name eth0 netns "$n"
    ip -n "$wan" addr add "10.77.$idx.1/24" dev "w$idx"
    ip -n "$wan" link set "w$idx" up
    ip -n "$n" addr add "$(host_ip "$idx")/24" dev eth0
    ip -n "$n" link set eth0 up
    ip -n "$n" route add default via "10.77.$idx.1"
    if [[ "$name" == *-cli ]]; then
      ip netns exec "$wan" tc qdisc add dev "w$idx" root tbf rate "$CLIENT_RATE" burst 64kb latency 50ms
      ip netns exec "$n" tc qdisc add dev eth0 root tbf rate "$CLIENT_RATE" burst 64kb latency 50ms
    fi
    regions+="$sep\"10.77.$idx.0/24\": \"$region\""; sep=", "
  done
  regions+="}"
  cat >"$WORK/delayd.json" <<JSON
{"tun": "dly0", "regions": $regions, "delay_ms": $DELAYS, "default_ms": $LOCAL_MS}
JSON
  ip netns exec "$wan" python3 "$NETNS_DIR/delayd.py" "$WORK/delayd.json" >"$WORK/delayd.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 50); do ip -n "$wan" link show dly0 >/dev/null 2>&1 && break; sleep 0.1; done
  ip -n "$wan" link show dly0 >/dev/null 2>&1 || { cat "$WORK/delayd.log" >&2; return 1; }
  ip -n "$wan" link set dly0 up
  ip netns exec "$wan" sysctl -qw net.ipv4.conf.dly0.rp_filter=0
  # Packets coming back out of the delay line are routed normally; everything else that the
  # router forwards enters the delay line first.
  ip -n "$wan" route add default dev dly0 table 100
  ip -n "$wan" rule add iif dly0 lookup main pref 100
  ip -n "$wan" rule add iif lo lookup main pref 101
  ip -n "$wan" rule add lookup 100 pref 200
}

net_down() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  # Anything still running inside our namespaces (a player mid-run, say) is ours: stop it
  # before the namespaces go, so nothing outlives the simulation.
  local n left
  for h in "${HOSTS[@]}" "wan 0 -"; do
    read -r name _ _ <<<"$h"
    n="$(ns "$name")"
    left=$(ip netns pids "$n" 2>/dev/null || true)
    [[ -z "$left" ]] || kill $left 2>/dev/null || true
  done
  sleep 0.2
  for h in "${HOSTS[@]}" "wan 0 -"; do
    read -r name _ _ <<<"$h"
    n="$(ns "$name")"
    left=$(ip netns pids "$n" 2>/dev/null || true)
    [[ -z "$left" ]] || kill -s KILL $left 2>/dev/null || true
    ip netns del "$n" 2>/dev/null || true
  done
}
