#!/usr/bin/env python3
"""Summarise xindao-bench JSON results: issue 17's goals marked met or not (goals.py), markdown tables (min /
median / max over runs, xindao / peer ratios measured in the same run) and an SVG plot of latency versus offered
load (1:1 scenario). RAW_DIR/one-worker/fanout.json, when there, is the fan-out with the server on one worker.

usage: python3 bench/report.py [RAW_DIR] [OUT_DIR] [BEFORE_RAW_DIR]
       (defaults: bench/results/local/raw, and OUT_DIR the directory that holds RAW_DIR)

With BEFORE_RAW_DIR (e.g. bench/results/baseline/raw), the plot also shows xindao's p50/p99 from that run (grey),
for a before/after view.
"""

import json
import os
import statistics
import sys

import goals
from goals import NAMES, table

RAW = sys.argv[1] if len(sys.argv) > 1 else "bench/results/local/raw"
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.dirname(os.path.normpath(RAW))
BEFORE = sys.argv[3] if len(sys.argv) > 3 else None
TARGETS = ["xindao", "socketio", "socketio-sqlite"]


def load(name):
    path = os.path.join(RAW, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def mmm(values, fmt="{:.0f}"):
    """min / median / max of a list, as 'median (min–max)'."""
    n_none = sum(1 for v in values if v is None)
    values = [v for v in values if v is not None]
    if not values:
        return "saturated" if n_none else "—"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def ratio(num, den, fmt="{:.2f}"):
    """Median over runs of the per-run ratio num/den (lists aligned by run)."""
    rs = [a / b for a, b in zip(num, den) if a is not None and b]
    return mmm(rs, fmt + "×") if rs else "—"


def by_target(doc):
    out = {t: [] for t in TARGETS}
    for r in doc["runs"]:
        out.setdefault(r["target"], []).append(r["result"])
    return out


def runs_note(doc):
    n = max(r["run"] for r in doc["runs"]) if doc["runs"] else 0
    return f"{n} run(s); figures are median (min–max) over runs; command: `{doc['command']}`"


def connections(doc):
    bt = by_target(doc)
    rows = []
    metrics = [
        ("server RSS per idle connection (slope, bytes)", lambda r: r["rss_slope_bytes_per_conn"], "{:.0f}"),
        ("connections held at the end", lambda r: r["steps"][-1]["n"], "{:.0f}"),
        ("server RSS at the end (MiB)", lambda r: r["steps"][-1]["rss_kib"] / 1024, "{:.1f}"),
        ("connect rate, mean over steps (upgrades/s)",
         lambda r: statistics.mean(s["connect_rate_per_s"] for s in r["steps"][1:]), "{:.0f}"),
        ("server CPU per connect (µs)",
         lambda r: statistics.mean(s["server_cpu_us_per_connect"] for s in r["steps"][1:]), "{:.0f}"),
        ("connect p99 (ms, worst worker)",
         lambda r: max(s["connect_p99_ms_max_worker"] for s in r["steps"][1:]), "{:.1f}"),
        ("failed connects", lambda r: r["failed"], "{:.0f}"),
        ("listen-queue overflows (system-wide)",
         lambda r: sum(s.get("listen_overflows", 0) for s in r["steps"][1:]), "{:.0f}"),
    ]
    for name, f, fmt in metrics:
        xs = [f(r) for r in bt.get("xindao", [])]
        ps = [f(r) for r in bt.get("socketio", [])]
        rows.append([name, mmm(xs, fmt), mmm(ps, fmt), ratio(xs, ps)])
    steps = []
    for t in TARGETS:
        for r in bt.get(t, [])[:1]:
            for s in r["steps"]:
                steps.append([t, s["n"], s["rss_kib"], f"{s.get('connect_rate_per_s', 0):.0f}",
                              f"{s.get('server_cpu_us_per_connect', 0):.0f}"])
    return (
        "### connections\n\n" + runs_note(doc) + "\n\n"
        + table(["metric", "xindao", "Socket.IO", "xindao / Socket.IO"], rows)
        + "\n\nRSS at each checkpoint (first run):\n\n"
        + table(["server", "N", "RSS KiB", "connects/s", "CPU µs/connect"], steps)
    )


def fanout(doc):
    bt = by_target(doc)
    peers = [t for t in ("socketio", "mosquitto") if bt.get(t)]
    keys = []
    for t in ["xindao"] + peers:
        for r in bt.get(t, []):
            for s in r["sizes"]:
                k = (s["k"], s["rate_per_room"])
                if k not in keys:
                    keys.append(k)

    def pick(t, k, rate, f):
        out = []
        for r in bt.get(t, []):
            for s in r["sizes"]:
                if (s["k"], s["rate_per_room"]) == (k, rate):
                    try:
                        out.append(f(s))
                    except KeyError:  # a figure that older runs did not record
                        pass
        return out

    metrics = [
        ("deliveries/s", lambda s: s["deliveries_per_s"], "{:.0f}"),
        ("deliveries per server CPU-s", lambda s: s["deliveries_per_server_cpu_s"], "{:.0f}"),
        ("server CPU %", lambda s: s.get("server_cpu_pct", 0), "{:.0f}"),
        ("generator run-queue wait s", lambda s: s.get("generator_runq_wait_s"), "{:.1f}"),
        ("latency p50 ms", lambda s: s["latency"]["p50_ms"], "{:.1f}"),
        ("latency p99 ms", lambda s: s["latency"]["p99_ms"], "{:.1f}"),
        ("latency p999 ms", lambda s: s["latency"]["p999_ms"], "{:.1f}"),
        ("lost", lambda s: s["lost"] if s.get("drained", True) else None, "{:.0f}"),
        ("bytes per delivery", lambda s: s["bytes_per_delivery"], "{:.0f}"),
    ]
    rate_of, per_cpu, p99, lost, size = (metrics[i][1] for i in (0, 1, 5, 7, 8))
    compact = []
    rows = []
    for k, rate in keys:
        offered = []
        for t in ["xindao"] + peers:
            offered = offered or pick(t, k, rate, lambda s: s["offered_deliveries_per_s"])
        off = f"{offered[0]:.0f}" if offered else "—"
        for label, f, fmt in metrics:
            xs = pick("xindao", k, rate, f)
            row = [k, f"{rate:g}", off, label, mmm(xs, fmt)]
            for t in peers:
                ps = pick(t, k, rate, f)
                row += [mmm(ps, fmt), ratio(xs, ps)]
            rows.append(row)
        g = lambda t, f, fmt: mmm(pick(t, k, rate, f), fmt)
        row = [k, f"{rate:g}", off] + [g(t, rate_of, "{:.0f}") for t in ["xindao"] + peers]
        row += [g("xindao", per_cpu, "{:.0f}")]
        for t in peers:
            row += [g(t, per_cpu, "{:.0f}"), ratio(pick("xindao", k, rate, per_cpu), pick(t, k, rate, per_cpu))]
        row += [g(t, p99, "{:.0f}") for t in ["xindao"] + peers]
        row += [" / ".join(g(t, lost, "{:.0f}") for t in ["xindao"] + peers)]
        row += [" / ".join(g(t, size, "{:.0f}") for t in ["xindao"] + peers)]
        compact.append(row)
    header = ["K", "msg/s per room", "offered deliveries/s"]
    header += [f"{NAMES[t]} deliveries/s" for t in ["xindao"] + peers]
    header += ["xindao deliveries / server CPU-s"]
    for t in peers:
        header += [f"{NAMES[t]} deliveries / server CPU-s", f"xindao / {NAMES[t]} (per CPU-s)"]
    header += [f"{NAMES[t]} p99 ms" for t in ["xindao"] + peers]
    header += ["lost (" + " / ".join(NAMES[t] for t in ["xindao"] + peers) + ")"]
    header += ["bytes per delivery (" + " / ".join(NAMES[t] for t in ["xindao"] + peers) + ")"]
    all_header = ["K", "msg/s per room", "offered deliveries/s", "metric", "xindao"]
    for t in peers:
        all_header += [NAMES[t], f"xindao / {NAMES[t]}"]
    return ("### fanout\n\n" + runs_note(doc) + "\n\n" + table(header, compact)
            + "\n\nAll metrics:\n\n" + table(all_header, rows))


def direct_points(doc):
    """{target: {offered: [step per run]}}"""
    pts = {}
    for r in doc["runs"]:
        for s in r["result"]["steps"]:
            pts.setdefault(r["target"], {}).setdefault(s["offered_per_s"], []).append(s)
    return pts


def direct(doc):
    pts = direct_points(doc)
    loads = sorted({l for t in pts.values() for l in t})
    rows = []
    for load in loads:
        for t in TARGETS:
            steps = pts.get(t, {}).get(load, [])
            if not steps:
                continue
            rows.append([
                f"{load:.0f}", t, f"{len(steps)}",
                mmm([s["committed_per_s"] for s in steps]),
                mmm([s["latency"]["p50_ms"] for s in steps], "{:.2f}"),
                mmm([s["latency"]["p99_ms"] for s in steps], "{:.2f}"),
                mmm([s["latency"]["p999_ms"] for s in steps], "{:.2f}"),
                mmm([s["ack_latency"]["p99_ms"] for s in steps], "{:.2f}"),
                sum(s["lost"] for s in steps), sum(s["dups"] for s in steps),
                sum(s["errors"] for s in steps),
                mmm([s["server_cpu_pct"] for s in steps]),
                mmm([s["generator_cpu_pct"] for s in steps]),
                sum(1 for s in steps if s["saturated"]),
            ])
    best = {}
    for t in TARGETS:
        per_run = {}
        for r in doc["runs"]:
            if r["target"] != t:
                continue
            ok = [s["committed_per_s"] for s in r["result"]["steps"] if s["lost"] == 0 and s["dups"] == 0]
            per_run[r["run"]] = max(ok) if ok else 0
        best[t] = per_run
    peers = [t for t in TARGETS[1:] if best.get(t)]
    cells = ["highest committed msg/s with zero loss (any latency)", mmm(list(best["xindao"].values()))]
    for t in peers:
        common = sorted(set(best["xindao"]) & set(best[t]))
        cells += [mmm(list(best[t].values())),
                  ratio([best["xindao"][i] for i in common], [best[t][i] for i in common])]
    header = ["", "xindao"]
    for t in peers:
        header += [NAMES[t], f"xindao / {NAMES[t]}"]
    summary = table(header, [cells])
    return ("### direct (1:1)\n\n" + runs_note(doc) + "\n\n" + summary + "\n\n" + table(
        ["offered msg/s", "server", "runs", "committed msg/s", "p50 ms", "p99 ms", "p999 ms", "ack p99 ms",
         "lost", "dups", "errors", "server CPU %", "generator CPU %", "saturated runs"], rows))


def direct_closed(doc):
    bt = by_target(doc)
    base = [x["acked_per_s"] for x in bt.get("xindao", [])]
    base_rtt = [x["rtt"]["p50_ms"] for x in bt.get("xindao", [])]
    rows = []
    for t, xs in bt.items():
        if not xs:
            continue
        acked = [x["acked_per_s"] for x in xs]
        rtt = [x["rtt"]["p50_ms"] for x in xs]
        rows.append([NAMES.get(t, t), mmm(acked), mmm([x["acked_per_server_cpu_s"] for x in xs]),
                     mmm(rtt, "{:.2f}"), mmm([x["rtt"]["p99_ms"] for x in xs], "{:.2f}"),
                     mmm([x["delivery"]["p50_ms"] for x in xs], "{:.2f}"),
                     "—" if t == "xindao" else ratio(base, acked),
                     "—" if t == "xindao" else ratio(base_rtt, rtt),
                     sum(x["dups"] + x["gaps"] + x["errors"] + x["closed_by_server"] for x in xs)])
    return ("### direct-closed (1:1, closed loop: one message in flight per connection)\n\n" + runs_note(doc)
            + "\n\n" + table(["server", "acked msg/s", "acked per server CPU-s", "round trip p50 ms",
                               "round trip p99 ms", "peer receives p50 ms", "xindao / peer msg/s",
                               "xindao / peer p50", "dups+gaps+errors"], rows))


def join_storm(doc):
    rows = []
    for r in doc["runs"]:
        x = r["result"]
        rows.append([r["run"], x["n"], x["joined"], x["failed"], f"{x['all_joined_ms']:.0f}",
                     x["pushes_queued"], f"{x['pushes_per_join']:.2f}", x["member_pushes_received"],
                     x["members_changed_received"], f"{x['server_cpu_s']:.2f}"])
    return "### join-storm (N live connections join one room at once; xindao only)\n\n" + runs_note(doc) + "\n\n" + table(
        ["run", "clients", "joined", "failed", "all joined ms", "pushes queued", "pushes per join",
         "member pushes received", "members_changed received", "server CPU s"], rows)


def storm(doc):
    rows = []
    for r in doc["runs"]:
        x = r["result"]
        rows.append([r["target"], r["run"], x["n"], x["rooms"], x["missed"], f"{x['all_back_ms']:.0f}",
                     f"{x['all_caught_up_ms']:.0f}", f"{x['caught_up']['p50_ms']:.0f}",
                     f"{x['caught_up']['p99_ms']:.0f}", x["failed"], x["connect_retries"],
                     f"{x['messages_resynced']}/{x['messages_expected']}", f"{x['server_cpu_s']:.2f}"])
    return "### reconnect-storm\n\n" + runs_note(doc) + "\n\n" + table(
        ["server", "run", "clients", "rooms", "missed per room", "all back ms", "all caught up ms",
         "p50 ms", "p99 ms", "failed", "retries", "messages resynced", "server CPU s"], rows)


def send_floor(doc):
    modes = {}
    rows = []
    for r in doc["runs"]:
        for m in r["result"]["modes"]:
            modes.setdefault(m["interval_ms"], []).append(m)
            rows.append([r["run"], m["interval_ms"], m["sockets"], m["frame_bytes"], m["sends"],
                         f"{m['sender_cpu_s']:.3f}", f"{m['us_per_send']:.2f}", f"{m['sends_per_cpu_s']:.0f}",
                         f"{m['wall_s'] / m['rounds'] * 1000:.1f}", f"{m['bytes_received']}/{m['bytes_expected']}"])
    text = ("### send-floor (no server: one thread on the server's core writes one frame per socket)\n\n"
            + runs_note(doc) + "\n\n" + table(
                ["run", "ms between rounds", "sockets", "frame bytes", "sends", "sender CPU s", "µs per send",
                 "sends per CPU-s", "ms per round (all sockets)", "bytes received"], rows))
    for interval, ms in sorted(modes.items()):
        text += (f"\n\nFloor, {interval} ms between rounds: **{mmm([m['sends_per_cpu_s'] for m in ms])} sends per "
                 f"CPU-second** ({mmm([m['us_per_send'] for m in ms], '{:.2f}')} µs each).")
    fan = load("fanout")
    if fan is not None:
        best = {}
        for r in fan["runs"]:
            if r["target"] != "xindao":
                continue
            for sz in r["result"]["sizes"]:
                best.setdefault((sz["k"], sz["rate_per_room"]), []).append(sz["deliveries_per_server_cpu_s"])
        floors = {i: statistics.median(m["sends_per_cpu_s"] for m in ms) for i, ms in modes.items()}
        shares = [f"K={k} @{rate:g}/s: " + " / ".join(f"{statistics.median(v) / f:.0%}" for _, f in sorted(floors.items()))
                  for (k, rate), v in best.items()]
        text += (" xindao's fan-out deliveries per server CPU-second as a share of the floors ("
                 + " / ".join(f"{i} ms" for i in sorted(floors)) + "): " + "; ".join(shares) + ".")
    return text


def plot(doc, path, before=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = direct_points(doc)
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = {"xindao": "tab:red", "socketio": "tab:blue", "socketio-sqlite": "tab:green"}
    names = {"xindao": "xindao (SQLite, ack = committed)", "socketio": "Socket.IO 4 (in memory)",
             "socketio-sqlite": "Socket.IO 4 + SQLite (ack = committed)"}
    for t in TARGETS:
        if t not in pts:
            continue
        loads = sorted(pts[t])
        for q, style in [("p50_ms", "--"), ("p99_ms", "-")]:
            med = [statistics.median(s["latency"][q] for s in pts[t][l]) for l in loads]
            lo = [min(s["latency"][q] for s in pts[t][l]) for l in loads]
            hi = [max(s["latency"][q] for s in pts[t][l]) for l in loads]
            ax.errorbar(loads, med, yerr=[[m - a for m, a in zip(med, lo)], [b - m for m, b in zip(med, hi)]],
                        fmt="o" + style, color=colors[t], capsize=3, label=f"{names[t]} {q[:-3]}")
    if before is not None:
        bpts = direct_points(before).get("xindao", {})
        loads = sorted(bpts)
        for q, style in [("p50_ms", ":"), ("p99_ms", "-.")]:
            med = [statistics.median(s["latency"][q] for s in bpts[l]) for l in loads]
            ax.plot(loads, med, "x" + style, color="tab:gray", label=f"xindao, earlier run {q[:-3]} (median)")
    ax.set_xlabel("offered load (messages/s, open loop)")
    ax.set_ylabel("send → peer receive latency (ms, log)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("1:1 chat: latency vs offered load (median, min–max over runs)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="svg")


def main():
    os.makedirs(OUT, exist_ok=True)
    parts = []
    machine = None
    for name, fn in [("connections", connections), ("fanout", fanout), ("direct", direct),
                     ("direct-closed", direct_closed), ("reconnect-storm", storm), ("join-storm", join_storm), ("send-floor", send_floor)]:
        doc = load(name)
        if doc is None:
            continue
        machine = machine or doc.get("machine")
        parts.append(fn(doc))
        if name == "direct":
            svg = os.path.join(OUT, "latency_vs_load.svg")
            before = None
            if BEFORE and os.path.exists(os.path.join(BEFORE, "direct.json")):
                with open(os.path.join(BEFORE, "direct.json")) as f:
                    before = json.load(f)
            try:
                plot(doc, svg, before)
                parts.append(f"![latency vs offered load]({os.path.basename(svg)})")
            except ImportError:  # run.sh installs matplotlib; without it the tables still come out
                print("report.py: no matplotlib, no latency_vs_load.svg", file=sys.stderr)
    head = "## Results\n\n"
    if machine:
        head += ("Machine: {cpu}, {cpus} CPUs (online {online_cpus}), {mem}, Linux {kernel}, "
                 "open-file limit {nofile_limit}\n\n").format(**machine).replace("MemTotal:", "RAM").replace("  ", "")
    text = goals.section(load) + "\n\n" + head + "\n\n".join(parts) + "\n"
    with open(os.path.join(OUT, "summary.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
