#!/usr/bin/env bash
# The multi-region CDN simulation in containers (root): the twin of deploy/netns/sim.sh on
# deploy/compose.yaml, run by podman + podman-compose (no Docker, no image registry).
#
#   deploy/compose/sim.sh [--out DIR] [--clients N] [--seconds S] [--dashcdn BIN] [--no-failover]
#
# 1. set-up (deploy/compose/setup.sh; a no-op once done): podman, podman-compose, base image
# 2. the dashcdn image from the host-built release binary (Dockerfile target `prebuilt`)
# 3. the topology: wan router (delayd), origin (packages an S-second clip), shield, geodns,
#    an edge and a client container per region; each client plays through geodns
#    (--clients N: N sessions in each region's client; the table shows min/median/max)
# 4. measured: each edge's RTT to the core through the wan router; origin requests
#    for the objects it has; that a container on eu-west's network cannot reach
#    us-west's edge directly (region isolation)
# 5. failover: eu-west's edge container is killed; once geodns drops it, eu-west's viewer
#    is replayed and must be sent to another region
# 6. DIR/results.json (the netns schema + rtt_core_ms per row), DIR/chart.svg, a table
# Everything (containers, networks, volumes) is removed on exit, also on Ctrl-C; images stay.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

OUT="" CLIENTS=1 CLIP_S=10 DASHCDN="" FAILOVER=1
while (($#)); do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --clients) CLIENTS="$2"; shift 2 ;;
    --seconds) CLIP_S="$2"; shift 2 ;;
    --dashcdn) DASHCDN="$2"; shift 2 ;;
    --no-failover) FAILOVER=0; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "sim: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "sim: rootful containers need root; run as root (or sudo)" >&2; exit 1; }
[[ "$CLIENTS" =~ ^[1-9][0-9]*$ ]] || { echo "sim: --clients needs a positive number, not '$CLIENTS'" >&2; exit 2; }

log() { echo "sim: $(date +%T) $*" >&2; }
T0=$(date +%s.%N)
TIMINGS="" # "step": seconds, ... in order
mark() { TIMINGS+="${TIMINGS:+, }\"$1\": $(python3 -c "print(round($(date +%s.%N) - $T0, 1))")"; T0=$(date +%s.%N); }

WORK="$(mktemp -d /tmp/dashcdn-csim.XXXXXX)"
OUT="${OUT:-$WORK/out}"
mkdir -p "$OUT"; OUT="$(cd "$OUT" && pwd)"
RAW="$OUT/raw"; rm -rf "$RAW"; mkdir -p "$RAW"
PROJECT="${SIM_PROJECT:-dashcdn-sim}"
IMAGE="localhost/dashcdn:sim"
REGIONS=(eu-west us-west ap-east)
declare -A NET_IDX=([core]=0 [eu-west]=1 [us-west]=2 [ap-east]=3)

# --- 1. set-up -----------------------------------------------------------------------------
log "set-up (deploy/compose/setup.sh)"
eval "$("$HERE/setup.sh")"
export DASHCDN_IMAGE="$IMAGE" DASHCDN_RESULTS="$RAW" DASHCDN_CLIENTS="$CLIENTS" DASHCDN_CLIP_SECONDS="$CLIP_S"
export RUST_LOG="${RUST_LOG:-info}"
compose() { podman-compose --project-name "$PROJECT" -f "$ROOT/deploy/compose.yaml" "$@"; }
mark setup

ours() { podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}'; }
teardown() {
  compose down -v -t 2 >>"$WORK/compose.log" 2>&1 || true
  local c n v
  for c in $(ours); do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
  for n in $(podman network ls --format '{{.Name}}' | grep "^${PROJECT}_" || true); do
    podman network rm -f "$n" >/dev/null 2>&1 || true
  done
  for v in $(podman volume ls --format '{{.Name}}' | grep "^${PROJECT}_" || true); do
    podman volume rm -f "$v" >/dev/null 2>&1 || true
  done
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  log "tearing down (containers, networks, volumes; images kept)"
  teardown
  local left; left="$(ours; podman network ls --format '{{.Name}}' | grep "^${PROJECT}_" || true)"
  [[ -z "$left" ]] || { echo "sim: still there after teardown: $left" >&2; rc=1; }
  [[ -n "${KEEP_WORK:-}" ]] || rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "sim: interrupted" >&2; exit 130' INT TERM
teardown # what an earlier, killed run may have left

# --- 2. the image --------------------------------------------------------------------------
if [[ -z "$DASHCDN" ]]; then
  log "cargo build --release"
  cargo build --release --quiet --bin dashcdn --manifest-path "$ROOT/Cargo.toml"
  target=$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  DASHCDN="$target/release/dashcdn"
fi
mark release_build
ctx="$WORK/ctx"; mkdir -p "$ctx/deploy/netns"
cp -r "$ROOT/deploy/compose" "$ctx/deploy/compose"
cp "$ROOT/deploy/netns/delayd.py" "$ctx/deploy/netns/"
cp "$DASHCDN" "$ctx/dashcdn"
old_image=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
log "podman build $IMAGE (target prebuilt, offline)"
podman build --quiet --pull=never --network=none --target prebuilt \
  --build-arg BASE=localhost/dashcdn-base:bookworm --build-arg DASHCDN_BIN=dashcdn \
  -f "$ROOT/deploy/Dockerfile" -t "$IMAGE" "$ctx" >"$WORK/build.log" 2>&1 \
  || { cat "$WORK/build.log" >&2; exit 1; }
if [[ -n "$old_image" && "$old_image" != "$(podman image inspect --format '{{.Id}}' "$IMAGE")" ]]; then
  podman rmi "$old_image" >/dev/null 2>&1 || true # the previous run's image, now untagged
fi
mark image_build

# --- 3. up ---------------------------------------------------------------------------------
# The networks, made before compose (podman-compose uses networks that exist): `internal`, so
# netavark adds no MASQUERADE rule. Its rule masquerades everything from a subnet to another
# subnet, and with br_netfilter it also catches the packets the wan router forwards across
# bridges, so every edge would appear to the core as the host's bridge address. Docker's rule
# skips traffic that stays on its bridge (`! -o bridge`), so the compose file keeps plain bridges.
for r in core "${REGIONS[@]}"; do
  podman network create --internal -o isolate=true --subnet "10.78.${NET_IDX[$r]}.0/24" \
    --label "io.podman.compose.project=$PROJECT" "${PROJECT}_$r" >/dev/null
done
log "up: wan, origin (packaging a ${CLIP_S}s clip), shield, geodns, 3 edges, 3 clients ($CLIENTS each)"
compose up -d >>"$WORK/compose.log" 2>&1 || { cat "$WORK/compose.log" >&2; exit 1; }
cname() { # the container of a compose service
  podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n1
}
in_svc() { local s="$1"; shift; podman exec "$(cname "$s")" "$@"; }
mark up

clients=(); for r in "${REGIONS[@]}"; do clients+=("$(cname "client-$r")"); done
log "steady: waiting for the players (${clients[*]})"
codes=$(timeout 900 podman wait "${clients[@]}") || { log "players did not finish in 900 s"; exit 1; }
i=0; fail=0
for code in $codes; do
  if [[ "$code" != 0 ]]; then
    log "${clients[$i]} exited $code:"; podman logs --tail 20 "${clients[$i]}" >&2 || true; fail=1
  fi
  i=$((i + 1))
done
((fail == 0)) || { log "origin log:"; podman logs --tail 20 "$(cname origin)" >&2 || true; exit 1; }
mark steady

# --- 4. measurements -----------------------------------------------------------------------
origin_metrics() { in_svc wan curl -fsS --max-time 5 http://10.78.0.10:8080/metrics; }
origin_metrics >"$RAW/origin.metrics"
objects=$(in_svc origin sh -c 'find /data/library/demo -name "*.m4s" -o -name init.mp4 -o -name manifest.mpd | wc -l')
python3 - "$RAW/origin.metrics" "$objects" >"$RAW/steady-origin.json" <<'PY'
import json, re, sys
by = {}
for line in open(sys.argv[1]):
    m = re.match(r'dashcdn_origin_http_requests_total\{route="(\w+)",status="\d+"\} (\d+)', line)
    if m and m.group(1) in ("segment", "init", "manifest"):
        by[m.group(1)] = by.get(m.group(1), 0) + int(m.group(2))
print(json.dumps({"objects": int(sys.argv[2]), "origin_requests": sum(by.values()), "by_route": by}))
PY

rtt_ms() { # rtt_ms SERVICE URL: median of 5 TCP handshakes (one round trip each), ms
  in_svc "$1" sh -c 'for i in 1 2 3 4 5; do curl -s -o /dev/null --max-time 5 -w "%{time_connect}\n" "$0"; done' "$2" |
    sort -n | awk '{ a[NR] = $1 } END { printf "%.1f", a[int((NR + 1) / 2)] * 1000 }'
}
echo "{" >"$RAW/rtt.json"; sep=""
for r in "${REGIONS[@]}"; do
  ms=$(rtt_ms "edge-$r" "http://10.78.0.20:8080/_edge/healthz")
  want=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1]))['delay_ms']; print(2 * d.get('core>$r', d.get('$r>core', 0)))" "$HERE/delayd.json")
  log "RTT $r edge → core: $ms ms (configured $want ms)"
  if python3 -c "import sys; sys.exit(0 if $ms >= 0.5 * $want else 1)"; then :; else
    echo "sim: NO WAN DELAY: $r's edge reaches the core in $ms ms, the delay line should make it $want ms" \
      "(is the wan router up? see 'podman logs $(cname wan)')" >&2
    exit 1
  fi
  echo "$sep\"$r\": {\"rtt_core_ms\": $ms, \"configured_rtt_ms\": $want}" >>"$RAW/rtt.json"; sep=","
done
echo "}" >>"$RAW/rtt.json"

# A container on eu-west's network that routes everything to the host instead of the wan
# router: its own edge answers, us-west's edge must not (the host does not forward between
# region networks, so the delay line is the only way between regions).
log "isolation: from eu-west's network straight to us-west's edge"
net="${PROJECT}_eu-west"
podman network exists "$net" || { log "no network $net"; exit 1; }
podman run --rm --name "${PROJECT}_probe" --label "io.podman.compose.project=$PROJECT" \
  --network "$net" --ip 10.78.1.200 --cap-add NET_ADMIN --entrypoint /bin/sh "$IMAGE" -c '
    ip route replace default via 10.78.1.1  # try the host, as a container on a plain network would
    own=$(curl -s -o /dev/null -w "%{http_code}" --max-time 3 http://10.78.1.10:8080/_edge/healthz)
    other=$(curl -s -o /dev/null -w "%{http_code}" --max-time 3 http://10.78.2.10:8080/_edge/healthz)
    echo "{\"from\": \"eu-west\", \"own_edge_http\": $((${own:-0} + 0)), \"us-west_edge_http\": $((${other:-0} + 0))}"' \
  >"$RAW/isolation.json"
cat "$RAW/isolation.json" >&2
mark measure

# --- 5. failover ---------------------------------------------------------------------------
if ((FAILOVER)); then
  log "failover: killing eu-west's edge; geodns must send eu-west's viewer elsewhere"
  podman kill "$(cname edge-eu-west)" >/dev/null
  for _ in $(seq 300); do
    ans=$(in_svc wan dig +short +tries=1 +time=1 -b 10.78.1.2 @10.78.0.53 a1105.kingcdn.test A || true)
    [[ -n "$ans" && "$ans" != *10.78.1.10* ]] && break
    sleep 0.1
  done
  log "geodns now answers eu-west with: ${ans//$'\n'/ }"
  podman run --rm --name "${PROJECT}_failover-eu-west" --label "io.podman.compose.project=$PROJECT" \
    --network "$net" --ip 10.78.1.101 --cap-add NET_ADMIN -v "$RAW:/out" \
    -e PHASE=failover -e DASHCDN_CLIENTS="$CLIENTS" -e RUST_LOG=warn \
    --entrypoint /opt/dashcdn/deploy/compose/wan.sh "$IMAGE" /opt/dashcdn/deploy/compose/client.sh eu-west \
    >"$WORK/failover.log" 2>&1 || { cat "$WORK/failover.log" >&2; log "the failover player failed"; exit 1; }
  mark failover
fi

# --- 6. report -----------------------------------------------------------------------------
stats=$(podman stats --no-stream --format '{{.Name}}={{.MemUsage}}' $(ours) 2>/dev/null | awk '{ print $1 }' | tr '\n' ' ' || true)
T0=$(date +%s.%N); teardown; mark teardown
echo "{$TIMINGS}" >"$RAW/timings.json"
echo "$stats" >"$RAW/memory.txt"
python3 "$HERE/report.py" "$OUT" "${REGIONS[@]}"
