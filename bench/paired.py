#!/usr/bin/env python3
"""Prints the paired table of bench/paired.sh: per mode and scenario point, old vs new, the median over runs of
the per-run ratio new/old (runs were alternated, so each ratio compares neighbours in time)."""
import glob, json, os, statistics, sys

OUT = sys.argv[1] if len(sys.argv) > 1 else "bench/results/local/paired"

def points(path):
    """{point name: (figure, loss)} of one run directory."""
    found = {}
    fan = os.path.join(path, "fanout.json")
    if os.path.exists(fan):
        for run in json.load(open(fan))["runs"]:
            for s in run["result"]["sizes"]:
                key = f"fan-out room {s['k']} at {s['rate_per_room']:g}/s: deliveries per server CPU-s"
                found[key] = (s["deliveries_per_server_cpu_s"], s["lost"] + s["gaps"] + s["dups"])
    direct = os.path.join(path, "direct.json")
    if os.path.exists(direct):
        for run in json.load(open(direct))["runs"]:
            steps = run["result"]["steps"]
            for s in steps:
                key = f"1:1 offered {s['offered_per_s']:.0f}/s: committed msg/s"
                found[key] = (s["committed_per_s"], s["lost"] + s["gaps"] + s["dups"])
                key = f"1:1 offered {s['offered_per_s']:.0f}/s: p99 ms"
                found[key] = (s["latency"]["p99_ms"], 0)
            found["1:1 ceiling: committed msg/s"] = (max(s["committed_per_s"] for s in steps), 0)
    return found

for mode in ("default", "pinned"):
    runs = sorted(glob.glob(os.path.join(OUT, f"old-{mode}", "run*")))
    if not runs:
        continue
    print(f"\n### {mode} runtime ({len(runs)} paired runs)\n")
    print("| point | old (median) | new (median) | new/old (median of paired ratios) | loss+gaps+dups |")
    print("|---|---|---|---|---|")
    table = {}
    for old_dir in runs:
        new_dir = old_dir.replace(f"old-{mode}", f"new-{mode}")
        old, new = points(old_dir), points(new_dir)
        for key in old:
            if key in new:
                table.setdefault(key, []).append((old[key], new[key]))
    for key, pairs in table.items():
        olds = [o[0] for o, _ in pairs]
        news = [n[0] for _, n in pairs]
        ratios = [n / o for o, n in zip(olds, news) if o]
        loss = sum(o[1] + n[1] for o, n in pairs)
        print(f"| {key} | {statistics.median(olds):,.1f} | {statistics.median(news):,.1f} | "
              f"{statistics.median(ratios):.3f} | {loss} |")
