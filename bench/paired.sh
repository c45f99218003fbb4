#!/usr/bin/env bash
# Paired comparison of two xindao binaries on the scenarios that decide a hot-path change: fan-out and 1:1.
#
#   bench/paired.sh OLD_BINARY NEW_BINARY            # RUNS=3 by default
#   MODES=default bench/paired.sh OLD NEW                        # one runtime only (default or pinned)
#   OLD_BENCH=path/to/old/xindao-bench bench/paired.sh OLD NEW   # when the old server predates flags the
#                                                                # current harness passes (build it at OLD's commit)
#
# For every run, each binary in turn (alternated, so drift hits both alike), in two modes: the default runtime
# as users run it (all cores, server and generator unpinned) and the server pinned to core 0 (generator on
# core 1). Raw JSON goes to $OUT/{old,new}-{default,pinned}/; bench/paired.py prints the paired table.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD="${1:?old binary}"
NEW="${2:?new binary}"
RUNS="${RUNS:-3}"
OUT="${OUT:-bench/results/local/paired}"
NICE="${NICE:-}"
PRIO=()
if [ -n "$NICE" ]; then PRIO=(nice -n "$NICE"); fi
cargo build --release -p xindao-bench

scenarios() { # bin dir server_cpu gen_cpu harness
  local bench=("${PRIO[@]}" "$5" --targets xindao --xindao-bin "$1" --out "$2"
    --server-cpu "$3" --gen-cpu "$4")
  "${bench[@]}" fanout --sizes 100,1000,10000 --total 10000 --rates 2,10 --secs 5 --drain-secs 10
  "${bench[@]}" direct --pairs 1000 --loads 2500,10000,15000,20000,30000 --step-secs 4
}

for run in $(seq 1 "$RUNS"); do
  for mode in ${MODES:-default pinned}; do
    if [ "$mode" = default ]; then cpus=("" ""); else cpus=(0 1); fi
    for side in old new; do
      bin="$OLD"; harness="${OLD_BENCH:-./target/release/xindao-bench}"
      if [ "$side" = new ]; then bin="$NEW"; harness="${NEW_BENCH:-./target/release/xindao-bench}"; fi
      dir="$OUT/$side-$mode/run$run"
      mkdir -p "$dir"
      echo "== run $run, $mode runtime, $side ($bin)"
      scenarios "$bin" "$dir" "${cpus[0]}" "${cpus[1]}" "$harness"
    done
  done
done
python3 bench/paired.py "$OUT"
