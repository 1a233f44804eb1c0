#!/usr/bin/env bash
# Player overhead: 100 clients streaming one presentation from our origin on loopback, in
# real time, in one `dashcdn player --clients 100` process. Reports CPU time per downloaded
# segment (user+sys of the whole process / segments) and peak memory (max RSS), next to curl
# fetching the same segments (100 curl processes, one keep-alive connection each) as the
# floor any HTTP client pays.
#   bench/player.sh [CLIENTS] [CLIP_SECONDS]
source "$(dirname "$0")/common.sh"
CLIENTS="${1:-100}"; SECS="${2:-40}"
DEMO="$OUT/player-demo"
if [[ ! -f "$DEMO/library/demo/manifest.mpd" ]]; then
  "$DASHCDN" -q demo --dir "$DEMO" --seconds "$SECS" --no-serve >/dev/null
fi
PORT=$(free_port)
"$DASHCDN" -q origin serve --library "$DEMO/library" --listen "127.0.0.1:$PORT" & OPID=$!
trap 'kill $OPID 2>/dev/null' EXIT
wait_port "$PORT"
URL="http://127.0.0.1:$PORT/vod/demo/manifest.mpd"

for run in 1 2; do
  /usr/bin/time -f "%U %S %M" -o "$OUT/player-time.txt" \
    "$DASHCDN" -q player "$URL" --clients "$CLIENTS" --json > "$OUT/player-agg.json"
  read -r U S RSS < "$OUT/player-time.txt"
  # Video segments per session (median) × clients, plus the audio that followed them.
  SEGS=$(python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); print(int(a["segments"]["median"]))' "$OUT/player-agg.json")
  AUDIO=$(ls "$DEMO/library/demo" | grep -v -E '^(manifest.mpd|asset.json)$' | while read -r d; do [[ -d "$DEMO/library/demo/$d" ]] && grep -q audio <<<"$d" && ls "$DEMO/library/demo/$d" | grep -c m4s; done | head -1)
  TOTAL=$(( (SEGS + ${AUDIO:-0}) * CLIENTS ))
  OURS=$(awk -v u="$U" -v s="$S" -v n="$TOTAL" 'BEGIN { printf "%.3f", (u + s) * 1000 / n }')

  # The same number of segments with curl: each client fetches the top video rung and the
  # audio, all on one connection.
  TOP=$(ls -d "$DEMO"/library/demo/*/ | xargs -n1 basename | grep -v audio | sort -t p -k1 -n | tail -1)
  : > "$OUT/curl-urls.txt"
  for n in $(seq 1 "$SEGS"); do echo "url = \"http://127.0.0.1:$PORT/vod/demo/$TOP/$n.m4s\"" >> "$OUT/curl-urls.txt"; echo "output = \"/dev/null\"" >> "$OUT/curl-urls.txt"; done
  AUD=$(ls -d "$DEMO"/library/demo/*/ | xargs -n1 basename | grep audio | head -1)
  if [[ -n "$AUD" ]]; then for n in $(seq 1 "${AUDIO:-0}"); do echo "url = \"http://127.0.0.1:$PORT/vod/demo/$AUD/$n.m4s\"" >> "$OUT/curl-urls.txt"; echo "output = \"/dev/null\"" >> "$OUT/curl-urls.txt"; done; fi
  /usr/bin/time -f "%U %S %M" -o "$OUT/curl-time.txt" \
    bash -c "seq $CLIENTS | xargs -P $CLIENTS -I{} curl -s -K '$OUT/curl-urls.txt'"
  read -r CU CS CRSS < "$OUT/curl-time.txt"
  CURL=$(awk -v u="$CU" -v s="$CS" -v n="$TOTAL" 'BEGIN { printf "%.3f", (u + s) * 1000 / n }')

  echo "run $run: $CLIENTS clients, $TOTAL segments"
  echo "  dashcdn player: ${OURS} ms CPU/segment, peak RSS $((RSS / 1024)) MB (one process)"
  echo "  curl:           ${CURL} ms CPU/segment, peak RSS $((CRSS / 1024)) MB (largest of $CLIENTS processes)"
  echo "  ratio player/curl CPU per segment: $(ratio "$OURS" "$CURL")"
done
