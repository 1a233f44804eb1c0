#!/usr/bin/env bash
# Live benchmarks, one mode per run:
#   bench/live.sh [cpu] [SECONDS]         CPU of one channel, ours vs ffmpeg's dash muxer (default 30 s)
#   bench/live.sh latency [SECONDS] [ROUNDS]
#                                         dash.js live latency through shield + edge, ours vs
#                                         ffmpeg -f dash -ldash 1 -streaming 1 (default 60 s, 2 rounds, interleaved)
#   bench/live.sh viewers [N] [SECONDS]   N `dashcdn player` viewers (one process) on one edge:
#                                         origin requests per segment, edge CPU per viewer-segment (default 200, 30 s)
#
# cpu: dashcdn's origin (its segmenter + HTTP, one viewer pulling every rung's segment in
# progress) beside its ffmpeg encoder, and ffmpeg's own LL-DASH muxer (`-f dash -ldash 1
# -streaming 1`) doing the same ladder into files. Same machine, one after the other.
# Prints: segmenter share of the encode (target < 5%) and ours/theirs total CPU.
source "$(dirname "$0")/common.sh"
MODE=cpu
case "${1:-}" in cpu|latency|viewers) MODE="$1"; shift ;; esac
workdir live
TICK=$(getconf CLK_TCK)

# cpu PID → user+system seconds so far
cpu() { awk -v t="$TICK" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }

# The same 3 rungs + Opus as the origin's default live ladder, 2 s segments of 0.5 s
# chunks, keyframes on segment boundaries: ffmpeg's dash muxer gets exactly our encode.
FF_LADDER=(-re -f lavfi -i testsrc2=size=640x360:rate=25 -re -f lavfi -i sine=frequency=440:sample_rate=48000
  -filter_complex "[0:v]fps=25,setsar=1,split=3[s0][s1][s2];[s0]scale=640:360[v0];[s1]scale=426:240[v1];[s2]scale=256:144[v2]"
  -map '[v0]' -map '[v1]' -map '[v2]' -map 1:a
  -c:v libx264 -preset ultrafast -tune zerolatency -g 50 -keyint_min 50 -sc_threshold 0
  -force_key_frames 'expr:gte(t,n_forced*2)' -pix_fmt yuv420p
  -b:v:0 800k -b:v:1 400k -b:v:2 150k -c:a libopus -b:a 64k -ac 2 -ar 48000 -frame_duration 20
  -f dash -ldash 1 -streaming 1 -seg_duration 2 -frag_type duration -frag_duration 0.5
  -use_template 1 -use_timeline 0 -window_size 60 -adaptation_sets "id=0,streams=v id=1,streams=a")

# edges UPSTREAM_PORT → starts a shield on it and an edge on the shield; sets EDGE_PORT.
edges() {
  local sp; sp=$(free_port); EDGE_PORT=$(free_port)
  "$DASHCDN" -q edge --upstream "http://127.0.0.1:$1" --listen "127.0.0.1:$sp" --pop shield --no-access-log &
  PIDS+=($!); LAST_EDGES=($!)
  wait_port "$sp"
  "$DASHCDN" -q edge --parent "http://127.0.0.1:$sp" --listen "127.0.0.1:$EDGE_PORT" --pop edge --no-access-log &
  PIDS+=($!); LAST_EDGES+=($!)
  wait_port "$EDGE_PORT"
}

stop() { local p; for p in "$@"; do kill "$p" 2>/dev/null || true; done; for p in "$@"; do wait "$p" 2>/dev/null || true; done; }

# dashjs BASE MPD_PATH LABEL SECONDS → runs the watch page's dash.js (player/web/live-test.mjs),
# appends "LABEL median p95" to $W/latency.txt
dashjs() {
  local out="$W/$3-$RANDOM"
  node "$ROOT/player/web/live-test.mjs" "$1" "$2" "$out" --seconds="$4" --max-latency=99 > "$out.txt" 2>&1 || true
  local line; line=$(grep '^latency' "$out.txt" || echo "latency median=nan p95=nan")
  local waits; waits=$(grep -o 'no waiting events after start ([0-9]*' "$out.txt" | grep -o '[0-9]*$' || echo "?")
  echo "  $3: $line waiting=$waits"
  grep '^not ok' "$out.txt" | sed 's/^/    /' || true
  echo "$3 $(sed -E 's/.*median=([0-9.na]+) p95=([0-9.na]+).*/\1 \2/' <<<"$line")" >> "$W/latency.txt"
}

if [[ "$MODE" == latency ]]; then
  SECS="${1:-60}"; ROUNDS="${2:-2}"
  echo "live latency, dash.js (watch page, headless Chromium) through shield + edge, ${SECS}s per run, $ROUNDS rounds; load: $(uptime | sed 's/.*load/load/')"
  for round in $(seq "$ROUNDS"); do
    # ours: origin live channel (the default ladder) → shield → edge
    OP=$(free_port); mkdir -p "$W/lib-$round"
    "$DASHCDN" -q origin serve --library "$W/lib-$round" --listen "127.0.0.1:$OP" --live b=testsrc &
    OPID=$!; PIDS+=("$OPID"); wait_port "$OP"
    edges "$OP"; E=("${LAST_EDGES[@]}")
    dashjs "http://127.0.0.1:$EDGE_PORT" /live/b/manifest.mpd ours "$SECS"
    stop "${E[@]}" "$OPID"
    # theirs: ffmpeg's LL-DASH muxer PUTting to bench/live-relay.mjs (which streams the
    # segment in progress chunked) → shield → edge. The relay passes the watch page and
    # /time through to a dashcdn origin without channels, so both runs use the same page.
    FP=$(free_port); RP=$(free_port); mkdir -p "$W/empty"
    "$DASHCDN" -q origin serve --library "$W/empty" --listen "127.0.0.1:$FP" & FPID=$!; PIDS+=("$FPID"); wait_port "$FP"
    node "$ROOT/bench/live-relay.mjs" "$RP" "http://127.0.0.1:$FP" 2>/dev/null & RPID=$!; PIDS+=("$RPID"); wait_port "$RP"
    ffmpeg -hide_banner -loglevel error -nostdin "${FF_LADDER[@]}" -dash_segment_type mp4 \
      -target_latency 1.5 -min_playback_rate 0.96 -max_playback_rate 1.04 -utc_timing_url /time \
      -method PUT -http_persistent 1 "http://127.0.0.1:$RP/ff/manifest.mpd" & DPID=$!; PIDS+=("$DPID")
    for _ in $(seq 100); do curl -fs "http://127.0.0.1:$RP/ff/manifest.mpd" >/dev/null && break; sleep 0.1; done
    sleep 4
    edges "$RP"; E=("${LAST_EDGES[@]}")
    dashjs "http://127.0.0.1:$EDGE_PORT" /ff/manifest.mpd ffmpeg-ldash "$SECS"
    stop "${E[@]}" "$DPID" "$RPID" "$FPID"
  done
  awk '{ n[$1]++; m[$1] += $2; p[$1] += $3 } END {
    for (k in n) printf "%s: mean of medians %.3f s, mean p95 %.3f s over %d runs\n", k, m[k]/n[k], p[k]/n[k], n[k];
    if (n["ours"] && n["ffmpeg-ldash"]) printf "ours / ffmpeg-ldash median latency = %.2f (target <= 1, ours <= 2.0 s)\n", (m["ours"]/n["ours"]) / (m["ffmpeg-ldash"]/n["ffmpeg-ldash"]) }' "$W/latency.txt"
  echo "load after: $(uptime | sed 's/.*load/load/')"
  exit 0
fi

if [[ "$MODE" == viewers ]]; then
  N="${1:-200}"; SECS="${2:-30}"
  # One video rung + audio, so every viewer is on the same two tracks: with coalescing the
  # origin sees one request per segment per track, whatever the number of viewers.
  printf '[[live]]\nname = "b"\ninput = "testsrc"\nladder = "360p:800k"\n' > "$W/origin.toml"
  OP=$(free_port); EP=$(free_port); mkdir -p "$W/lib"
  "$DASHCDN" -q origin serve --config "$W/origin.toml" --library "$W/lib" --listen "127.0.0.1:$OP" &
  OPID=$!; PIDS+=("$OPID"); wait_port "$OP"
  "$DASHCDN" -q edge --upstream "http://127.0.0.1:$OP" --listen "127.0.0.1:$EP" --no-access-log &
  EPID=$!; PIDS+=("$EPID"); wait_port "$EP"
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$EP/live/b/manifest.mpd" >/dev/null && break; sleep 0.1; done
  segreq() { curl -fs "http://127.0.0.1:$OP/metrics" | awk '/^dashcdn_origin_http_requests_total\{route="segment"/ { s += $2 } END { print s + 0 }'; }
  r0=$(segreq); e0=$(cpu "$EPID"); t0=$(date +%s.%N)
  "$DASHCDN" -q player "http://127.0.0.1:$EP/live/b/manifest.mpd" --clients "$N" --live-seconds "$SECS" --json > "$W/players.json" 2> "$W/players.err" || true
  r1=$(segreq); e1=$(cpu "$EPID"); t1=$(date +%s.%N)
  stop "$EPID" "$OPID"
  awk -v r0="$r0" -v r1="$r1" -v e0="$e0" -v e1="$e1" -v t0="$t0" -v t1="$t1" -v n="$N" 'BEGIN {
    segs = (t1 - t0) / 2; req = r1 - r0; cpu = e1 - e0;
    printf "one edge, %d live viewers (dashcdn player --clients %d), %.1f s ≈ %.1f segments of 2 tracks\n", n, n, t1 - t0, segs;
    printf "origin segment requests: %d = %.2f per segment per track (target 1)\n", req, req / (segs * 2);
    printf "edge CPU: %.2f s = %.1f µs per viewer-segment (%d viewers × 2 tracks × %.1f segments)\n", cpu, 1e6 * cpu / (n * 2 * segs), n, segs }'
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("players:", {k: d[k] for k in d if "latency" in k or k in ("clients","stalls","rebuffer_s")})' "$W/players.json" 2>/dev/null || head -c 600 "$W/players.json"
  grep -v '^$' "$W/players.err" | head -5 || true
  echo "load: $(uptime | sed 's/.*load/load/')"
  exit 0
fi

SECS="${1:-30}"

# --- ours -------------------------------------------------------------------------------
PORT=$(free_port)
mkdir -p "$W/lib"
"$DASHCDN" -q origin serve --library "$W/lib" --listen "127.0.0.1:$PORT" --live b=testsrc &
OPID=$!; PIDS+=("$OPID")
wait_port "$PORT"
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$PORT/live/b/manifest.mpd" >/dev/null && break; sleep 0.1
done
FPID=$(pgrep -P "$OPID" ffmpeg | head -1)
# One viewer: every rung's segment in progress, as it is produced.
( while true; do
    ast=$(curl -fs "http://127.0.0.1:$PORT/live/b/manifest.mpd" | grep -o 'availabilityStartTime="[^"]*"' | cut -d'"' -f2)
    n=$(python3 -c "import datetime,time; a=datetime.datetime.fromisoformat('${ast}'.replace('Z','+00:00')).timestamp(); print(int((time.time()-a)//2))" 2>/dev/null)
    for r in v0 v1 v2 a0; do curl -fs -o /dev/null "http://127.0.0.1:$PORT/live/b/$r/$n.m4s" & done
    wait
  done ) & VPID=$!; PIDS+=("$VPID")
o0=$(cpu "$OPID"); f0=$(cpu "$FPID")
sleep "$SECS"
o1=$(cpu "$OPID"); f1=$(cpu "$FPID")
kill "$VPID" 2>/dev/null || true
kill "$OPID"; wait "$OPID" 2>/dev/null || true
ORIGIN=$(awk -v a="$o0" -v b="$o1" 'BEGIN { printf "%.2f", b - a }')
ENCODE=$(awk -v a="$f0" -v b="$f1" 'BEGIN { printf "%.2f", b - a }')

# --- ffmpeg's dash muxer, same ladder -------------------------------------------------------
mkdir -p "$W/ffdash"
ffmpeg -hide_banner -loglevel error -nostdin \
  -re -f lavfi -i testsrc2=size=640x360:rate=25 -re -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -filter_complex "[0:v]fps=25,setsar=1,split=3[s0][s1][s2];[s0]scale=640:360[v0];[s1]scale=426:240[v1];[s2]scale=256:144[v2]" \
  -map '[v0]' -map '[v1]' -map '[v2]' -map 1:a \
  -c:v libx264 -preset ultrafast -tune zerolatency -g 50 -keyint_min 50 -sc_threshold 0 \
  -force_key_frames 'expr:gte(t,n_forced*2)' -pix_fmt yuv420p \
  -b:v:0 800k -b:v:1 400k -b:v:2 150k -c:a libopus -b:a 64k -ac 2 -ar 48000 -frame_duration 20 \
  -f dash -ldash 1 -streaming 1 -seg_duration 2 -frag_type duration -frag_duration 0.5 \
  -use_template 1 -use_timeline 0 -window_size 60 -adaptation_sets "id=0,streams=v id=1,streams=a" \
  "$W/ffdash/manifest.mpd" &
DPID=$!; PIDS+=("$DPID")
sleep 2
d0=$(cpu "$DPID"); sleep "$SECS"; d1=$(cpu "$DPID")
kill "$DPID"; wait "$DPID" 2>/dev/null || true
THEIRS=$(awk -v a="$d0" -v b="$d1" 'BEGIN { printf "%.2f", b - a }')

OURS=$(awk -v a="$ORIGIN" -v b="$ENCODE" 'BEGIN { printf "%.2f", a + b }')
echo "live channel, ${SECS}s, CPU seconds:"
echo "  ours:   ffmpeg encode $ENCODE + origin (segmenter, MPD, one viewer) $ORIGIN = $OURS"
echo "  ffmpeg -f dash -ldash 1 (encode + its muxer): $THEIRS"
echo "segmenter+server / encode = $(awk -v a="$ORIGIN" -v b="$ENCODE" 'BEGIN { printf "%.1f%%", 100 * a / b }') (target < 5%)"
echo "ours / ffmpeg-dash total = $(ratio "$OURS" "$THEIRS")"
