#!/usr/bin/env bash
# CPU of one live channel (testsrc, the default 3 rungs + Opus, 2 s segments, 0.5 s chunks):
# dashcdn's origin (its segmenter + HTTP, one viewer pulling every rung's segment in
# progress) beside its ffmpeg encoder, and ffmpeg's own LL-DASH muxer (`-f dash -ldash 1
# -streaming 1`) doing the same ladder into files. Same machine, one after the other.
#   bench/live.sh [SECONDS]      (default 30 per run)
# Prints: segmenter share of the encode (target < 5%) and ours/theirs total CPU.
source "$(dirname "$0")/common.sh"
SECS="${1:-30}"
workdir live
TICK=$(getconf CLK_TCK)

# cpu PID → user+system seconds so far
cpu() { awk -v t="$TICK" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }

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
