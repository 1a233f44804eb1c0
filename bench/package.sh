#!/usr/bin/env bash
# Packaging speed: our CMAF segmenter + MPD writer vs `ffmpeg -c copy -f dash`, on the same
# already-encoded renditions (ffmpeg only copies, so both sides do segmenting work only).
#   bench/package.sh [SECONDS]     (default 120 s of 1080p/720p/360p + AAC)
source "$(dirname "$0")/common.sh"
SECS="${1:-120}"
SRC="$OUT/encoded-$SECS"
if [[ ! -f "$SRC/audio.mp4" ]]; then
  mkdir -p "$SRC"
  echo "encoding $SECS s of test renditions once (cached in $SRC)..." >&2
  ffmpeg -v error -nostdin -y -f lavfi -t "$SECS" -i "testsrc2=size=1920x1080:rate=25" -f lavfi -t "$SECS" -i "sine=frequency=440:sample_rate=48000" \
    -filter_complex "[0:v]split=3[a][b][c];[b]scale=1280:720[b2];[c]scale=640:360[c2]" \
    -map "[a]" -c:v libx264 -preset ultrafast -b:v 5000k -g 100 -keyint_min 100 -sc_threshold 0 -an "$SRC/1080p.mp4" \
    -map "[b2]" -c:v libx264 -preset ultrafast -b:v 3000k -g 100 -keyint_min 100 -sc_threshold 0 -an "$SRC/720p.mp4" \
    -map "[c2]" -c:v libx264 -preset ultrafast -b:v 800k -g 100 -keyint_min 100 -sc_threshold 0 -an "$SRC/360p.mp4" \
    -map 1:a -c:a aac -b:a 128k -vn "$SRC/audio.mp4"
fi
LIB="$OUT/lib-package"; FF="$OUT/ffmpeg-dash"
rm -rf "$LIB" "$FF"; mkdir -p "$LIB" "$FF"
INPUTS=("$SRC/1080p.mp4" "$SRC/720p.mp4" "$SRC/360p.mp4" "$SRC/audio.mp4")
# Each run starts from empty output folders, so neither side pays for deleting the last one.
hyperfine --warmup 1 --runs "${RUNS:-5}" --export-json "$OUT/package.json" \
  --prepare "rm -rf $LIB/bench $FF; mkdir -p $FF; sync" \
  -n dashcdn "$DASHCDN -q origin segment --asset bench --library $LIB --segment-duration 4 ${INPUTS[*]}" \
  -n "ffmpeg -f dash" "ffmpeg -v error -nostdin -y -i $SRC/1080p.mp4 -i $SRC/720p.mp4 -i $SRC/360p.mp4 -i $SRC/audio.mp4 -map 0:v -map 1:v -map 2:v -map 3:a -c copy -f dash -seg_duration 4 -use_template 1 -use_timeline 1 $FF/manifest.mpd" >&2
ours=$(python3 -c "import json;r=json.load(open('$OUT/package.json'))['results'];print(r[0]['mean'])")
peer=$(python3 -c "import json;r=json.load(open('$OUT/package.json'))['results'];print(r[1]['mean'])")
echo "packaging $SECS s x 4 renditions: dashcdn ${ours}s, ffmpeg -f dash ${peer}s"
echo "speed ratio (ffmpeg time / dashcdn time, >1 means dashcdn is faster): $(ratio "$peer" "$ours")"
