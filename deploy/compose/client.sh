#!/bin/sh
# A viewer in one region (deploy/compose.yaml): waits until geodns answers for the stream's
# name, the edge it names is healthy and the origin has packaged its clip, then plays it
# with `dashcdn player` through geodns and keeps what it saw in /out (when mounted):
#   /out/PHASE-REGION.dig    geodns's answer (edge chosen, query time)
#   /out/PHASE-REGION.json   the player's QoE summary (N > 1: min/median/max)
#   /out/PHASE-REGION.jsonl  one line per downloaded segment
#   client.sh REGION   (env: PHASE=steady, DASHCDN_CLIENTS=1, GEODNS=10.78.0.53,
#                       ORIGIN=10.78.0.10:8080, WAIT_S=600)
set -eu
region="$1"
phase="${PHASE:-steady}"
clients="${DASHCDN_CLIENTS:-1}"
geodns="${GEODNS:-10.78.0.53}"
origin="${ORIGIN:-10.78.0.10:8080}"
name=video.netcinema.test
url="http://$name:8080/vod/${ASSET:-demo}/manifest.mpd"
out=/out; [ -d "$out" ] || out=$(mktemp -d)
base="$out/$phase-$region"

deadline=$(($(date +%s) + ${WAIT_S:-600}))
waiting() { # waiting WHAT: sleep a little, or give up at the deadline
  [ "$(date +%s)" -lt "$deadline" ] || { echo "client.sh: gave up waiting for $1" >&2; exit 1; }
  sleep 0.5
}
until edge=$(dig +short +tries=1 +time=1 "@$geodns" "$name" A | grep -E '^[0-9.]+$' | head -n1) \
  && [ -n "$edge" ]; do waiting "geodns at $geodns"; done
until curl -fsS -o /dev/null --max-time 2 "http://$edge:8080/_edge/healthz"; do waiting "edge $edge"; done
until curl -fsS -o /dev/null --max-time 2 "http://$origin/healthz"; do waiting "origin at $origin"; done

dig +tries=1 +time=2 "@$geodns" "$name" A >"$base.dig"
echo "client.sh: $region ($phase): geodns sends $name to $edge; playing $url with $clients client(s)" >&2
dashcdn -q player "$url" --dns "$geodns:53" --clients "$clients" --no-progress --json \
  --log "$base.jsonl" >"$base.json.part" 2>"$base.err" || { cat "$base.err" >&2; exit 1; }
mv "$base.json.part" "$base.json"
cat "$base.json"
