#!/bin/sh
# Container entrypoint wrapper: adds WAN delay with netem on the interface that reaches a
# given subnet, then runs dashcdn.   wan.sh SUBNET_PREFIX DELAY_MS -- dashcdn ARGS...
# e.g. wan.sh 10.78.0. 40 -- dashcdn edge ...   (needs cap_add: NET_ADMIN)
set -eu
prefix="$1"; delay="$2"; shift 2; [ "$1" = "--" ] && shift
dev=$(ip -o -4 addr show | awk -v p="$prefix" 'index($4, p) == 1 { print $2; exit }')
if [ -n "$dev" ] && [ "$delay" != "0" ]; then
  tc qdisc replace dev "$dev" root netem delay "${delay}ms" \
    || echo "wan.sh: netem unavailable on $dev; running without WAN delay" >&2
fi
exec "$@"
