#!/usr/bin/env python3
"""Summarises a container simulation run (deploy/compose/sim.sh): results.json, chart.svg, a table.

usage: report.py OUT_DIR REGION...   (reads OUT_DIR/raw/{steady,failover}-REGION.{json,dig},
                                      steady-origin.json, rtt.json, isolation.json, timings.json)

The rows have the schema of deploy/netns/report.py (phase, region, edge, dns_ms, startup_s,
avg_bitrate_kbps, rebuffer_s, segments, summary) plus rtt_core_ms, the measured round trip
from the region's edge to the core through the wan router. With `--clients N` (N > 1) the
player's summary is min/median/max: a row's figures are the medians and `spread` keeps all.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "netns"))
from report import chart  # noqa: E402  one chart for both simulations

EDGES = {"10.78.1.10": "eu-west", "10.78.2.10": "us-west", "10.78.3.10": "ap-east"}
FIGURES = ("startup_s", "avg_bitrate_kbps", "rebuffer_s", "segments")


def load(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def dig_answer(path):
    text = open(path).read()
    ips = re.findall(r"\sIN\s+A\s+(\d+\.\d+\.\d+\.\d+)", text)
    ms = re.search(r"Query time: (\d+) msec", text)
    return ips, int(ms.group(1)) if ms else None


def row(raw, phase, region, rtt):
    base = os.path.join(raw, f"{phase}-{region}")
    summary = load(base + ".json")
    if summary is None:
        return None
    ips, dns_ms = dig_answer(base + ".dig")
    r = {"phase": phase, "region": region, "edge": ",".join(EDGES.get(ip, ip) for ip in ips),
         "dns_ms": dns_ms}
    if "sessions" in summary:  # --clients N: every figure is a spread
        r["clients"] = summary["sessions"] + summary.get("failed", 0)
        r["failed"] = summary.get("failed", 0)
        for k in FIGURES:
            r[k] = summary[k]["median"]
        r["spread"] = {k: {s: summary[k][s] for s in ("min", "median", "max")} for k in FIGURES}
    else:
        r["clients"], r["failed"] = 1, 0
        for k in FIGURES:
            r[k] = summary.get(k)
    r["served_by"] = summary.get("edges", {})
    # The RTT of the edge that served the row: after failover, another region's edge.
    edge = r["edge"] if r["edge"] in rtt else region
    r["rtt_core_ms"] = rtt.get(edge, {}).get("rtt_core_ms")
    r["configured_rtt_core_ms"] = rtt.get(edge, {}).get("configured_rtt_ms")
    r["summary"] = summary
    return r


def fmt(r, k, digits):
    if "spread" not in r:
        return f"{r[k] or 0:.{digits}f}"
    s = r["spread"][k]
    return f"{s['min']:.{digits}f}/{s['median']:.{digits}f}/{s['max']:.{digits}f}"


def main():
    out, regions = sys.argv[1], sys.argv[2:]
    raw = os.path.join(out, "raw")
    rtt = load(os.path.join(raw, "rtt.json"), {})
    rows = [r for p in ("steady", "failover") for g in regions if (r := row(raw, p, g, rtt))]
    origin = load(os.path.join(raw, "steady-origin.json"))
    many = any("spread" in r for r in rows)
    w = 17 if many else 7
    hdr = (f"{'phase':9} {'region':8} {'edge':8} {'rtt core':>8} {'dns ms':>6} {'startup s':>{w+2}} "
           f"{'kbps':>{w}} {'rebuf s':>{w}}")
    print(hdr + ("   (min/median/max of N clients)" if many else ""))
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['phase']:9} {r['region']:8} {r['edge']:8} {r['rtt_core_ms'] or 0:>8.1f} "
              f"{r['dns_ms'] or 0:>6} {fmt(r, 'startup_s', 2):>{w+2}} {fmt(r, 'avg_bitrate_kbps', 0):>{w}} "
              f"{fmt(r, 'rebuffer_s', 2):>{w}}")
    print(f"origin: {origin['origin_requests']} requests {origin.get('by_route', {})} for "
          f"{origin['objects']} objects (three regions through one shield)")
    isolation = load(os.path.join(raw, "isolation.json"), {})
    if isolation:
        print(f"isolation: from eu-west's network, own edge HTTP {isolation['own_edge_http']}, "
              f"us-west's edge HTTP {isolation['us-west_edge_http']} (0: unreachable)")
    timings = load(os.path.join(raw, "timings.json"), {})
    if timings:
        print("seconds: " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    results = {"rows": rows, "origin": origin, "isolation": isolation, "timings_s": timings}
    mem = os.path.join(raw, "memory.txt")
    if os.path.exists(mem):
        results["container_memory"] = open(mem).read().split()
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    chart(rows, os.path.join(out, "chart.svg"))
    print(f"results: {os.path.join(out, 'results.json')}, chart: {os.path.join(out, 'chart.svg')}")


if __name__ == "__main__":
    main()
