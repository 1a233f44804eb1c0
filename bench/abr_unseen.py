#!/usr/bin/env python3
"""Trace families the ABR lab's trace model does not contain, for a sanity check of the
default ABR on networks nobody tuned on (docs/player-abr.md, "Sanity check").

  bench/abr_unseen.py OUT_DIR [COUNT] [SEED]

writes OUT_DIR/walk/*.json and OUT_DIR/hsdpa/*.json (sabre network JSON, 1 s periods,
600 s):
- walk: not a Markov chain of states: log-bandwidth is a mean-reverting AR(1) walk
  (coefficient 0.95, step sigma 0.25) around a per-trace level, log-uniform 0.5-15 Mbit/s,
  with handover gaps (bandwidth ~0 for 1-3 s, 0.3 %/s); latency 20-120 ms.
- hsdpa: a 3G chain with other parameters than the lab's: good 1 000 kbit/s (sigma 0.5),
  fade 250 (sigma 0.6), outage 0-30; mean stay 15 / 10 / 8 s; per-trace scale 0.4-3.0;
  latency 60-400 ms.
"""
import json, math, os, random, sys

out = sys.argv[1]
count = int(sys.argv[2]) if len(sys.argv) > 2 else 40
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 7
PERIODS = 600


def write(fam, i, periods):
    d = os.path.join(out, fam)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"{fam}{i:03}.json"), "w") as f:
        json.dump([{"duration_ms": 1000, "bandwidth_kbps": round(b, 3), "latency_ms": round(l, 3)}
                   for b, l in periods], f)


def walk(rng):
    level = math.exp(rng.uniform(math.log(500), math.log(15000)))
    lat = rng.uniform(20, 120)
    x, gap, res = 0.0, 0, []
    for _ in range(PERIODS):
        x = 0.95 * x + 0.25 * rng.gauss(0, 1)
        if gap == 0 and rng.random() < 0.003:
            gap = rng.randint(1, 3)
        if gap > 0:
            gap -= 1
            bw = rng.uniform(0, 20)
        else:
            bw = level * math.exp(x)
        res.append((bw, lat * math.exp(0.2 * rng.gauss(0, 1))))
    return res


def hsdpa(rng):
    scale = rng.uniform(0.4, 3.0)
    lat = rng.uniform(60, 400)
    s, res = "good", []
    stay = {"good": 15, "fade": 10, "outage": 8}
    for _ in range(PERIODS):
        if s == "good":
            bw = 1000 * scale * math.exp(0.5 * rng.gauss(0, 1))
        elif s == "fade":
            bw = 250 * scale * math.exp(0.6 * rng.gauss(0, 1))
        else:
            bw = rng.uniform(0, 30)
        if rng.random() < 1 / stay[s]:
            s = {"good": "fade" if rng.random() < 0.7 else "outage",
                 "fade": "good" if rng.random() < 0.6 else "outage",
                 "outage": "fade"}[s]
        res.append((bw, lat * math.exp(0.2 * rng.gauss(0, 1))))
    return res


rng = random.Random(seed)
for i in range(count):
    write("walk", i, walk(rng))
for i in range(count):
    write("hsdpa", i, hsdpa(rng))
