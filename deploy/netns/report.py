#!/usr/bin/env python3
"""Summarises a netns simulation run: one row per region, results.json and chart.svg.

usage: report.py OUT_DIR REGION...   (reads OUT_DIR/{steady,failover}-REGION.{json,dig})
"""
import json
import os
import re
import sys

EDGES = {"10.77.1.2": "eu-west", "10.77.2.2": "us-west", "10.77.3.2": "ap-east"}


def dig_answer(path):
    text = open(path).read()
    ips = re.findall(r"\sIN\s+A\s+(\d+\.\d+\.\d+\.\d+)", text)
    ms = re.search(r"Query time: (\d+) msec", text)
    return ips, int(ms.group(1)) if ms else None


def row(out, phase, region):
    base = os.path.join(out, f"{phase}-{region}")
    if not os.path.exists(base + ".json"):
        return None
    summary = json.load(open(base + ".json"))
    ips, dns_ms = dig_answer(base + ".dig")
    return {
        "phase": phase,
        "region": region,
        "edge": ",".join(EDGES.get(ip, ip) for ip in ips),
        "dns_ms": dns_ms,
        "startup_s": summary.get("startup_s"),
        "avg_bitrate_kbps": summary.get("avg_bitrate_kbps"),
        "rebuffer_s": summary.get("rebuffer_s"),
        "segments": summary.get("segments"),
        "summary": summary,
    }


def chart(rows, path):
    """Three small bar charts side by side: startup, bitrate, rebuffering per region."""
    metrics = [("startup_s", "startup (s)"), ("avg_bitrate_kbps", "avg bitrate (kbps)"),
               ("rebuffer_s", "rebuffering (s)")]
    w, h, pad = 300, 220, 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w*len(metrics)}" height="{h+40}" '
             'font-family="sans-serif" font-size="11">']
    colors = ["#2b6cb0", "#c05621", "#2f855a", "#6b46c1"]
    for i, (key, title) in enumerate(metrics):
        x0 = i * w
        vals = [float(r[key] or 0) for r in rows]
        top = max(vals + [1e-9]) * 1.15
        parts.append(f'<text x="{x0 + w/2}" y="16" text-anchor="middle" font-weight="bold">{title}</text>')
        bw = (w - 2 * pad) / max(1, len(rows))
        for j, (r, v) in enumerate(zip(rows, vals)):
            bh = (h - 40) * v / top
            x = x0 + pad + j * bw
            y = h - bh
            parts.append(f'<rect x="{x+4:.1f}" y="{y:.1f}" width="{bw-8:.1f}" height="{bh:.1f}" '
                         f'fill="{colors[j % len(colors)]}"/>')
            shown = f"{v:.0f}" if v >= 100 else f"{v:.2f}"
            parts.append(f'<text x="{x+bw/2:.1f}" y="{y-4:.1f}" text-anchor="middle">{shown}</text>')
            parts.append(f'<text x="{x+bw/2:.1f}" y="{h+14}" text-anchor="middle" '
                         f'font-size="9">{r["region"]}</text>')
            if r["phase"] == "failover":
                parts.append(f'<text x="{x+bw/2:.1f}" y="{h+25}" text-anchor="middle" '
                             f'font-size="9">(failover)</text>')
        parts.append(f'<line x1="{x0+pad}" y1="{h}" x2="{x0+w-pad}" y2="{h}" stroke="#333"/>')
    parts.append("</svg>")
    open(path, "w").write("\n".join(parts))


def main():
    out, regions = sys.argv[1], sys.argv[2:]
    rows = [r for p in ("steady", "failover") for g in regions if (r := row(out, p, g))]
    origin = json.load(open(os.path.join(out, "steady-origin.json")))
    hdr = f"{'phase':9} {'region':8} {'edge':10} {'dns ms':>6} {'startup s':>9} {'kbps':>7} {'rebuf s':>7}"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['phase']:9} {r['region']:8} {r['edge']:10} {r['dns_ms'] or 0:>6} "
              f"{r['startup_s'] or 0:>9.2f} {r['avg_bitrate_kbps'] or 0:>7.0f} {r['rebuffer_s'] or 0:>7.2f}")
    print(f"origin: {origin['origin_requests']} requests for {origin['objects']} objects "
          f"(three regions through one shield)")
    json.dump({"rows": rows, "origin": origin}, open(os.path.join(out, "results.json"), "w"), indent=1)
    chart(rows, os.path.join(out, "chart.svg"))
    print(f"results: {os.path.join(out, 'results.json')}, chart: {os.path.join(out, 'chart.svg')}")


if __name__ == "__main__":
    main()
