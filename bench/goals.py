"""The "Goals of issue 17" section at the top of report.py's summary.md: one row per goal and point, with its
figure, the ratio measured in the same run, the bar, and met / not met / not measured. Apart from report.py,
which tabulates every scenario, because these rows judge: the bars and the rules for applying them live here.

A goal is judged on the median over runs of per-run figures (ratios are taken within a run first).
"""

import re
import statistics

NAMES = {"xindao": "xindao", "socketio": "Socket.IO", "socketio-sqlite": "Socket.IO + SQLite", "mosquitto": "Mosquitto"}


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def fmt_runs(vals, fmt="{:.0f}"):
    """'median (run 1 / run 2 / ...)' of {run: value}; '—' when empty."""
    vs = [vals[i] for i in sorted(vals)]
    if not vs:
        return "—"
    med = fmt.format(statistics.median(vs))
    return med if len(vs) == 1 else f"{med} ({' / '.join(fmt.format(v) for v in vs)})"


def pair(num, den):
    """{run: num/den} for the runs both have."""
    return {i: num[i] / den[i] for i in num if i in den and den[i]}


def verdict(vals, ok):
    """'met' / 'not met' on the median of {run: value}, with how many runs pass when they disagree."""
    if not vals:
        return "not measured"
    n_ok = sum(1 for v in vals.values() if ok(v))
    text = "met" if ok(statistics.median(vals.values())) else "not met"
    return text if n_ok in (0, len(vals)) else f"{text} ({n_ok} of {len(vals)} runs)"


def fan_runs(doc, target, k, rate, key):
    """{run: size[key]} of one fan-out point of one server."""
    out = {}
    for r in (doc or {}).get("runs", []):
        for s in r["result"]["sizes"] if r["target"] == target else []:
            if (s["k"], s["rate_per_room"]) == (k, rate) and key in s:
                out[r["run"]] = s[key]
    return out


def missing(goal, what, bar):
    return [goal, what, "—", "—", bar, "not measured"]


def goal_headline(fan):
    if fan is None:
        return [missing("1. headline", "default runtime, CPU-normalised beside the peers", "by construction")]
    pinned = re.search(r"--server-cpu[ =]\d", fan["command"]) is not None
    how = "server pinned (PINNED run: the secondary table)" if pinned else "default runtime, unpinned"
    return [["1. headline", "every figure per server CPU-second, beside the peers in the same run", how, "—",
             "by construction", "not met (pinned run)" if pinned else "met (by construction)"]]


BIG_ROOMS = [(k, rate) for k in (1000, 5000, 10000) for rate in (2, 10)]


def goal_big_rooms(fan, floor):
    if fan is None:
        return [missing("2. big rooms", "K = 1,000 / 5,000 / 10,000", "≤ 0.6× CPU, ≥ 80% of floor, 0 lost")]
    floors = {}  # {interval_ms: {run: sends per CPU-s}}
    for r in (floor or {}).get("runs", []):
        for m in r["result"]["modes"]:
            floors.setdefault(m["interval_ms"], {})[r["run"]] = m["sends_per_cpu_s"]
    rows, lost_all = [], {}
    for k, rate in BIG_ROOMS:
        x = fan_runs(fan, "xindao", k, rate, "deliveries_per_server_cpu_s")
        if not x:
            rows.append(missing("2. big rooms", f"K = {k:,} at {rate}/s", "—"))
            continue
        point = f"K = {k:,} at {rate} msg/s"
        vs = pair(x, fan_runs(fan, "socketio", k, rate, "deliveries_per_server_cpu_s"))
        rows.append(["2. big rooms", point + ": deliveries per server CPU-s, xindao / Socket.IO", fmt_runs(x),
                     fmt_runs(vs, "{:.2f}×"), "≥ 1.67× (CPU per delivery ≤ 0.6×)", verdict(vs, lambda v: v >= 1 / 0.6)])
        shares = {i: pair(x, f) for i, f in sorted(floors.items())}
        judged = 500 if rate <= 2 else 0
        both = "; ".join(f"{i} ms: {fmt_runs(v, '{:.0%}')}" for i, v in shares.items()) or "no send-floor run"
        rows.append(["2. big rooms", point + f": share of the send floor ({judged} ms between rounds judged)",
                     both, fmt_runs(shares.get(judged, {}), "{:.0%}"), "≥ 80%",
                     verdict(shares.get(judged, {}), lambda v: v >= 0.8)])
        for run, lost in fan_runs(fan, "xindao", k, rate, "lost").items():
            drained = fan_runs(fan, "xindao", k, rate, "drained").get(run, True)
            lost_all[f"{point}, run {run}"] = lost if drained else float("inf")
    bad = {p: v for p, v in lost_all.items() if v}
    figure = "0 in every run" if not bad else "; ".join(f"{p}: {'undrained' if v == float('inf') else v}"
                                                         for p, v in bad.items())
    rows.append(["2. big rooms", "messages lost by xindao at these points", figure, "—", "0",
                 "not measured" if not lost_all else "not met" if bad else "met"])
    return rows


def goal_membership(js):
    if js is None:
        return [missing("3. membership", "10,000 live clients join one room", "≤ 50 pushes per join, coalesced")]
    runs = {r["run"]: r["result"] for r in js["runs"]}
    per_join = {i: x["pushes_per_join"] for i, x in runs.items()}
    coalesced = all(x["members_changed_received"] > 0 for x in runs.values())
    n = ", ".join(f"{x['n']:,}" for x in list(runs.values())[:1])
    figure = (f"all joined after {fmt_runs({i: x['all_joined_ms'] for i, x in runs.items()})} ms; "
              f"{fmt_runs(per_join, '{:.1f}')} pushes per join; members_changed "
              f"{'received' if coalesced else 'NOT received'}")
    ok = verdict(per_join, lambda v: v <= 50)
    return [["3. membership", f"join-storm: {n} live clients join one room", figure, "—",
             "≤ 50 pushes per join (O(1)), member events coalesced",
             ok if coalesced or ok == "not met" else "not met (no members_changed)"]]


def goal_frames(fan):
    if fan is None or not any("bytes_per_delivery" in s for r in fan["runs"] for s in r["result"]["sizes"]):
        return [missing("4. lean frames", "bytes per push", "reported")]
    per = {}  # {target: {run: mean bytes over the run's points}}
    for r in fan["runs"]:
        bs = [s["bytes_per_delivery"] for s in r["result"]["sizes"] if s.get("bytes_per_delivery")]
        if bs:
            per.setdefault(r["target"], {})[r["run"]] = statistics.mean(bs)
    figure = "; ".join(f"{NAMES[t]} {fmt_runs(v)} B" for t, v in per.items())
    vs = pair(per.get("xindao", {}), per.get("socketio", {}))
    return [["4. lean frames", "bytes per fan-out push (mean over sizes and rates)", figure,
             fmt_runs(vs, "{:.2f}×") + " of Socket.IO", "none (reported)", "reported"]]


def goal_closed(closed):
    if closed is None:
        return [missing("5. 1:1 closed loop", "100 pairs", "≥ 1.0× msg/s, ≤ 1.1× p50")]
    bt = {t: {r["run"]: r["result"] for r in closed["runs"] if r["target"] == t} for t in ("xindao", "socketio")}
    rows = []
    for what, f, fmt, bar, ok in [
        ("acked msg/s, xindao / Socket.IO (in memory)", lambda x: x["acked_per_s"], "{:.0f}", "≥ 1.0×",
         lambda v: v >= 1.0),
        ("round trip p50 ms, xindao / Socket.IO", lambda x: x["rtt"]["p50_ms"], "{:.2f}", "≤ 1.1×",
         lambda v: v <= 1.1)]:
        x = {i: f(v) for i, v in bt["xindao"].items()}
        vs = pair(x, {i: f(v) for i, v in bt["socketio"].items()})
        rows.append(["5. 1:1 closed loop", what, fmt_runs(x, fmt), fmt_runs(vs, "{:.2f}×"), bar,
                     verdict(vs, ok) if vs else "not measured"])
    return rows


def goal_open(direct):
    if direct is None:
        return [missing("5. 1:1 open loop", "p99 at 15,000 msg/s; ceiling", "≤ 10 ms; ≥ 30,000")]
    p99, ceil = {}, {}
    for r in direct["runs"]:
        steps = r["result"]["steps"]
        at = [s["latency"]["p99_ms"] for s in steps if s["offered_per_s"] == 15000]
        p99.setdefault(r["target"], {})[r["run"]] = at[0] if at else float("inf")
        ok = [s["committed_per_s"] for s in steps if not s["saturated"]]
        ceil.setdefault(r["target"], {})[r["run"]] = max(ok) if ok else 0
    x99, xc = p99.get("xindao", {}), ceil.get("xindao", {})
    return [
        ["5. 1:1 open loop", "p99 ms at 15,000 msg/s offered (inf: the sweep stopped below)", fmt_runs(x99, "{:.1f}"),
         fmt_runs(pair(x99, p99.get("socketio", {})), "{:.2f}×") + " of Socket.IO", "≤ 10 ms",
         verdict(x99, lambda v: v <= 10)],
        ["5. 1:1 open loop", "ceiling: highest committed msg/s of an unsaturated step", fmt_runs(xc),
         fmt_runs(pair(xc, ceil.get("socketio", {})), "{:.2f}×") + " of Socket.IO", "≥ 30,000",
         verdict(xc, lambda v: v >= 30000)]]


def goal_cores(fan, one):
    if fan is None or one is None:
        return [missing("6. scaling with cores", "fan-out, server on 1 vs 2 workers", "2 / 1 ≥ 0.95×")]
    rows, workers = [], one.get("tokio_worker_threads") or "?"
    keys = sorted({(s["k"], s["rate_per_room"]) for r in one["runs"] for s in r["result"]["sizes"]})
    for k, rate in keys:
        w1 = fan_runs(one, "xindao", k, rate, "deliveries_per_server_cpu_s")
        w2 = fan_runs(fan, "xindao", k, rate, "deliveries_per_server_cpu_s")
        vs = pair(w2, w1)
        rows.append(["6. scaling with cores", f"K = {k:,} at {rate:g} msg/s: deliveries per server CPU-s, "
                     f"default (all cores) / TOKIO_WORKER_THREADS={workers}", f"{fmt_runs(w2)} vs {fmt_runs(w1)}",
                     fmt_runs(vs, "{:.2f}×"), "≥ 0.95× (not falling, 5% noise)", verdict(vs, lambda v: v >= 0.95)])
    return rows


def section(load):
    """The markdown section; `load(name)` gives a scenario's JSON from the raw directory, or None."""
    fan, floor = load("fanout"), load("send-floor")
    rows = (goal_headline(fan) + goal_big_rooms(fan, floor) + goal_membership(load("join-storm"))
            + goal_frames(fan) + goal_closed(load("direct-closed")) + goal_open(load("direct"))
            + goal_cores(fan, load("one-worker/fanout")))
    return ("## Goals of issue 17\n\nFigures are the median over runs (each run's value in brackets); ratios are "
            "taken within a run (same run, fresh servers) and then the median; a goal is met when the median meets "
            "its bar. Send floor: a 2 msg/s point is judged against the floor with 500 ms between rounds, a 10 "
            "msg/s point against the back-to-back (0 ms) floor; both shares are shown. The fan-out payload is a "
            "`custom` message whose content is `{\"t\": µs since the generator started, \"k\": n}` (~20-25 B), "
            "not a 64 B text; bytes are the WebSocket text payload (xindao, Socket.IO) or the whole MQTT PUBLISH "
            "packet (Mosquitto).\n\n"
            + table(["goal", "point", "figure", "same-run ratio", "bar", "verdict"], rows))

