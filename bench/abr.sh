#!/usr/bin/env bash
# ABR algorithms head to head: mean linear QoE (Yin et al.: bitrate Mbit/s − |Δbitrate| −
# 4.3 × rebuffer s, summed per session) over sabre's 4G traces with Big Buck Bunny, for every
# algorithm, simulated by `dashcdn player simulate --batch`. Prints the table and our best
# algorithm's QoE as a ratio to BOLA-E's and dynamic's (the dash.js defaults), with their
# rebuffering side by side: the target is a ratio above 1 with no more rebuffering.
#   bench/abr.sh [TRACE_DIR] [MOVIE]
source "$(dirname "$0")/common.sh"
DATA="$ROOT/player/data/abr"
TRACES="${1:-$DATA/traces-4g}"
MOVIE="${2:-$DATA/bbb.json}"

start=$(date +%s.%N)
"$DASHCDN" -q player simulate --movie "$MOVIE" --batch "$TRACES" | tee "$OUT/abr-table.txt"
"$DASHCDN" -q player simulate --movie "$MOVIE" --batch "$TRACES" --json > "$OUT/abr.json"
end=$(date +%s.%N)
sessions=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(x["traces"] for x in r))' "$OUT/abr.json")
echo "simulated $sessions sessions (twice) in $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}') s"

python3 - "$OUT/abr.json" <<'PY'
import json, sys
rows = {r["abr"]: r for r in json.load(open(sys.argv[1]))}
ours = [k for k in rows if k not in ("bolae", "dynamic", "bola", "throughput", "mpc-paper")]
best = max(ours, key=lambda k: rows[k]["qoe_lin"])
b = rows[best]
for peer in ("bolae", "dynamic"):
    p = rows[peer]
    print(f"{best} vs {peer}: QoE {b['qoe_lin']:.2f} / {p['qoe_lin']:.2f} = ratio {b['qoe_lin']/p['qoe_lin']:.3f}; "
          f"rebuffer {b['rebuffer_s']:.3f} s vs {p['rebuffer_s']:.3f} s "
          f"({'no more' if b['rebuffer_s'] <= p['rebuffer_s'] else 'MORE'} rebuffering)")
PY
