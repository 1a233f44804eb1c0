#!/usr/bin/env bash
# The default ABR (`robust`) against sabre's algorithms in both of sabre's modes, on the
# HELD-OUT trace set (docs/player-abr.md has the protocol):
#   1. `dashcdn player lab` — every algorithm (ours and our faithful ports of sabre's) on
#      every family (3g, 4g, fcc) × movie (bbb.json 10 rungs, bbb4k.json 6 rungs): mean
#      linear QoE, bitrate, rebuffer s, switches, per-trace wins of the default, CPU per
#      session-minute;
#   2. sabre itself (fetched at run time into the work folder, never committed) on the same
#      traces, every algorithm with and without -ao, and the default's gain over the best
#      of them, computed from sabre's own output; and, session by session, how many of our
#      port's sessions give sabre's played bitrate, switching and rebuffering (to 1e-6).
#   bench/abr.sh [SEED] [COUNT]      (SEED 2 = the test set; 1 = the training set)
# SABRE_PY=path/to/sabre.py uses a local copy instead of fetching.
# Families outside the trace model, for a sanity check: bench/abr_unseen.py (docs/player-abr.md).
source "$(dirname "$0")/common.sh"
SEED="${1:-2}"
COUNT="${2:-40}"
DATA="$ROOT/player/data/abr"
workdir abr

start=$(date +%s.%N)
"$DASHCDN" -q player lab --seed "$SEED" --count "$COUNT" | tee "$OUT/abr-lab.txt"
"$DASHCDN" -q player lab --seed "$SEED" --count "$COUNT" --json > "$OUT/abr-lab.json"
end=$(date +%s.%N)
echo "lab: two runs in $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}') s"

for fam in 3g 4g fcc; do
  "$DASHCDN" -q player traces --family "$fam" --seed "$SEED" --count "$COUNT" --out "$W/traces/$fam"
done

SABRE="${SABRE_PY:-}"
if [ -z "$SABRE" ]; then
  SABRE="$W/sabre.py"
  if ! curl -fsSL --max-time 30 -o "$SABRE" \
      https://raw.githubusercontent.com/UMass-LIDS/sabre/master/src/sabre.py; then
    echo "sabre could not be fetched (no network?): the side-by-side with sabre itself is skipped;"
    echo "the lab table above uses our ports, whose exactness the player's tests check."
    exit 0
  fi
fi

python3 - "$SABRE" "$W/traces" "$DATA" "$OUT/abr-lab.json" "$DASHCDN" <<'PY' | tee "$OUT/abr-sabre.txt"
import json, os, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
sabre, traces, data, lab, dashcdn = sys.argv[1:6]
rows = json.load(open(lab))
algos = [("bola", False), ("bolae", False), ("throughput", False), ("dynamic", False),
         ("bola", True), ("bolae", True), ("dynamic", True)]

def run(movie, trace, algo, ao):
    cmd = [sys.executable, sabre, "-m", f"{data}/{movie}", "-n", trace, "-a", algo]
    if ao:
        cmd.append("-ao")
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    kv = dict(l.split(": ", 1) for l in out.splitlines() if ": " in l)
    bitrate, change = float(kv["total played bitrate"]), float(kv["total bitrate change"])
    rebuf = float(kv["total rebuffer"])
    # Session by session against our port: played bitrate, switching and rebuffering.
    cmd = [dashcdn, "-q", "player", "simulate", "--movie", f"{data}/{movie}", "--trace", trace,
           "--abr", algo, "--json"] + (["--ao"] if ao else [])
    port = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    pairs = [(bitrate, port["avg_bitrate_kbps"] * port["segments"]),
             (change, port["switch_magnitude_kbps"]), (rebuf, port["rebuffer_s"])]
    same = all(abs(a - b) <= 1e-6 * max(1.0, abs(a)) for a, b in pairs)
    return bitrate / 1000 - change / 1000 - 4.3 * rebuf, rebuf, same

for fam in ("3g", "4g", "fcc"):
    files = sorted(os.listdir(f"{traces}/{fam}"))
    for movie in ("bbb.json", "bbb4k.json"):
        ours = {r["abr"]: r for r in rows if r["family"] == fam and r["movie"] == movie}
        print(f"\n{fam} × {movie} ({len(files)} traces), sabre itself vs our port")
        best = None
        for algo, ao in algos:
            with ThreadPoolExecutor(2) as ex:
                res = list(ex.map(lambda f: run(movie, f"{traces}/{fam}/{f}", algo, ao), files))
            q = sum(r[0] for r in res) / len(res)
            rb = sum(r[1] for r in res) / len(res)
            same = sum(r[2] for r in res)
            name = algo + ("-ao" if ao else "")
            port = ours[name]["qoe_lin"]
            print(f"  {name:<12} sabre QoE {q:9.1f} rebuf {rb:7.2f} s   port QoE {port:9.1f}  ({(port - q) / abs(q) * 100 if q else 0:+.2f}%)  sessions identical {same}/{len(res)}")
            if best is None or q > best[1]:
                best = (name, q, rb)
        d = ours["robust"]
        print(f"  robust vs sabre's best ({best[0]}): QoE {d['qoe_lin']:.1f} / {best[1]:.1f} "
              f"= {(d['qoe_lin'] - best[1]) / abs(best[1]) * 100:+.1f}%, rebuffer {d['rebuffer_s']:.2f} s vs {best[2]:.2f} s")
PY
