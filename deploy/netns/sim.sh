#!/usr/bin/env bash
# The multi-region CDN simulation on Linux network namespaces (needs root):
#   origin + shield + geodns in a core region, an edge and a player host in each of
#   eu-west, us-west and ap-east; WAN delay from delayd.py (user-space, no netem needed),
#   client access links shaped with tbf.
#
#   deploy/netns/sim.sh [--dashcdn BIN] [--library DIR --asset NAME] [--seconds S]
#                       [--out DIR] [--no-failover]
#
# Each client resolves video.netcinema.test through geodns from its own region and plays
# the asset; the run prints a table per region (edge chosen, DNS answer time, startup,
# average bitrate, rebuffering, origin requests) and writes results.json + chart.svg to --out.
# Then the failover scenario: eu-west's edge dies, geodns drops it after its health checks,
# and the eu-west client is sent to the next-nearest healthy edge.
# Everything is torn down on exit, also on Ctrl-C.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

DASHCDN="" LIBRARY="" ASSET="sim" SECONDS_CLIP=20 OUT="" FAILOVER=1
while (($#)); do
  case "$1" in
    --dashcdn) DASHCDN="$2"; shift 2 ;;
    --library) LIBRARY="$2"; shift 2 ;;
    --asset) ASSET="$2"; shift 2 ;;
    --seconds) SECONDS_CLIP="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --no-failover) FAILOVER=0; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "sim: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "sim: network namespaces need root; run as root (or sudo)" >&2; exit 1; }
if [[ -z "$DASHCDN" ]]; then
  cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
  DASHCDN="$ROOT/target/release/dashcdn"
fi
WORK="$(mktemp -d /tmp/dashcdn-sim.XXXXXX)"
OUT="${OUT:-$WORK/out}"
mkdir -p "$OUT"
SIM="${SIM:-dcs$$-}"
source "$HERE/net.sh"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  net_down
  [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "sim: interrupted, tearing down" >&2; exit 130' INT TERM

log() { echo "sim: $*" >&2; }

# --- media ---------------------------------------------------------------------------------
if [[ -z "$LIBRARY" ]]; then
  LIBRARY="$WORK/library"
  log "packaging a ${SECONDS_CLIP}s clip"
  "$DASHCDN" -q demo --no-serve --dir "$WORK/demo" --seconds "$SECONDS_CLIP" >/dev/null
  mkdir -p "$LIBRARY" && mv "$WORK/demo/library/demo" "$LIBRARY/$ASSET"
fi
[[ -f "$LIBRARY/$ASSET/manifest.mpd" ]] || { echo "sim: no $LIBRARY/$ASSET/manifest.mpd" >&2; exit 1; }
OBJECTS=$(find "$LIBRARY/$ASSET" -name '*.m4s' -o -name 'init.mp4' -o -name manifest.mpd | wc -l)

# --- network -------------------------------------------------------------------------------
net_up
CORE=10.77.0.2
declare -A EDGE_IP=([eu-west]=10.77.1.2 [us-west]=10.77.2.2 [ap-east]=10.77.3.2)
declare -A EDGE_NS=([eu-west]=eu-edge [us-west]=us-edge [ap-east]=ap-edge)
declare -A CLI_NS=([eu-west]=eu-cli [us-west]=us-cli [ap-east]=ap-cli)
REGIONS=(eu-west us-west ap-east)

declare -A PID # server name → pid
start() { # start NAME NS CMD... : background a server in a namespace, log to $WORK/NAME.log
  local name="$1" n="$2"; shift 2
  # A plain command (not a function) so $! is the server itself: `ip netns exec` execs it.
  ip netns exec "$(ns "$n")" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  PID[$name]=$!
}
wait_http() { # wait_http NS URL
  for _ in $(seq 100); do
    in_ns "$1" curl -fsS -o /dev/null --max-time 1 "$2" 2>/dev/null && return 0
    sleep 0.1
  done
  log "nothing answers $2"; return 1
}

sed -e "s/@CORE@/$CORE/g" "$HERE/geodns.toml.in" >"$WORK/geodns.toml"
start origin core "$DASHCDN" origin serve --library "$LIBRARY" --listen "$CORE:8081"
wait_http core "http://$CORE:8081/healthz"
start shield core "$DASHCDN" edge --pop shield --listen "$CORE:8080" --upstream "http://$CORE:8081" --cache-size 512MiB
for r in "${REGIONS[@]}"; do
  start "edge-$r" "${EDGE_NS[$r]}" "$DASHCDN" edge --pop "$r" --listen "${EDGE_IP[$r]}:8080" \
    --parent "http://$CORE:8080" --upstream "http://$CORE:8081" --cache-size 256MiB
done
start geodns core "$DASHCDN" geodns --config "$WORK/geodns.toml" --listen "$CORE:53" --metrics "$CORE:9153"
wait_http core "http://$CORE:8080/_edge/healthz"
for r in "${REGIONS[@]}"; do wait_http "${EDGE_NS[$r]}" "http://${EDGE_IP[$r]}:8080/_edge/healthz"; done
wait_http core "http://$CORE:9153/metrics"
sleep 2 # first health probes

origin_requests() { # media requests the origin has answered so far
  in_ns core curl -fsS "http://$CORE:8081/metrics" |
    awk '/^dashcdn_origin_http_requests_total/ && /route="(segment|init|manifest)"/ { s += $NF } END { print s + 0 }'
}

MPD_URL="http://video.netcinema.test:8080/vod/$ASSET/manifest.mpd"
play_region() { # play_region REGION PHASE
  local r="$1" phase="$2" n="${CLI_NS[$1]}"
  local q; q=$(in_ns "$n" dig +tries=1 +time=2 "@$CORE" video.netcinema.test A)
  echo "$q" >"$OUT/$phase-$r.dig"
  in_ns "$n" "$DASHCDN" -q player "$MPD_URL" --dns "$CORE:53" --json --log "$OUT/$phase-$r.jsonl" \
    >"$OUT/$phase-$r.json" 2>"$OUT/$phase-$r.err" || { log "player in $r failed:"; cat "$OUT/$phase-$r.err" >&2; return 1; }
}

log "phase 1: a player in every region"
before=$(origin_requests)
pids=()
for r in "${REGIONS[@]}"; do play_region "$r" steady & pids+=($!); done
fail=0; for p in "${pids[@]}"; do wait "$p" || fail=1; done
((fail == 0)) || { log "a player failed"; exit 1; }
after=$(origin_requests)
echo "{\"objects\": $OBJECTS, \"origin_requests\": $((after - before))}" >"$OUT/steady-origin.json"

if ((FAILOVER)); then
  log "phase 2: eu-west's edge dies; geodns must send eu-west's viewer elsewhere"
  kill "${PID[edge-eu-west]}"; wait "${PID[edge-eu-west]}" 2>/dev/null || true
  # geodns drops it after fall × (interval + timeout) = 3 s (geodns.toml.in); wait for that.
  for _ in $(seq 150); do
    ans=$(in_ns eu-cli dig +short +tries=1 +time=1 "@$CORE" a1105.kingcdn.test A || true)
    [[ -n "$ans" && "$ans" != *"${EDGE_IP[eu-west]}"* ]] && break
    sleep 0.1
  done
  play_region eu-west failover
fi

python3 "$HERE/report.py" "$OUT" "${REGIONS[@]}"
