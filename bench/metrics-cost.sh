#!/usr/bin/env bash
# What the histograms of /metrics cost (issue 21: under 2%): the same fan-out and 1:1 runs with
# detailed_metrics on (the default) and off, alternated RUNS times on fresh servers; prints deliveries and
# committed messages per server CPU-second for both.
#
#   bench/metrics-cost.sh            # RUNS=3
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
OUT="${OUT:-bench/results/local/metrics-cost}"
cargo build --release -p xindao -p xindao-bench
for run in $(seq 1 "$RUNS"); do
  for mode in on off; do
    dir="$OUT/$mode/run$run"
    mkdir -p "$dir"
    args=()
    if [ "$mode" = off ]; then args=("--xindao-arg=--detailed-metrics=false"); fi
    ./target/release/xindao-bench --targets xindao --out "$dir" "${args[@]}" \
      fanout --sizes 1000 --total 10000 --rates 2,10 --secs 5 --drain-secs 10 > "$dir/fanout.log" 2>&1
    ./target/release/xindao-bench --targets xindao --out "$dir" "${args[@]}" \
      direct --pairs 1000 --loads 5000,10000 --step-secs 4 > "$dir/direct.log" 2>&1
  done
done
python3 - "$OUT" "$RUNS" <<'PY'
import json, sys, statistics
out, runs = sys.argv[1], int(sys.argv[2])
def figures(mode, run):
    d = f"{out}/{mode}/run{run}"
    fan = json.load(open(f"{d}/fanout.json"))["runs"][0]["result"]["sizes"]
    direct = json.load(open(f"{d}/direct.json"))["runs"][0]["result"]["steps"]
    f = {f"fan-out K={s['k']} at {s['rate_per_room']:g}/s: deliveries per CPU-s": s["deliveries_per_server_cpu_s"] for s in fan}
    f.update({f"1:1 at {s['offered_per_s']:.0f}/s: committed per CPU-s": s["committed_per_server_cpu_s"] for s in direct})
    return f
rows = {}
for run in range(1, runs + 1):
    on, off = figures("on", run), figures("off", run)
    for k in on:
        if k in off:
            rows.setdefault(k, []).append((on[k], off[k]))
print("| point | on (median) | off (median) | on / off, paired (median) |")
print("|---|---|---|---|")
for k, pairs in rows.items():
    ratios = [a / b for a, b in pairs if b]
    print(f"| {k} | {statistics.median(a for a, _ in pairs):,.0f} | {statistics.median(b for _, b in pairs):,.0f} | "
          f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f}) |")
PY
