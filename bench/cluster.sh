#!/usr/bin/env bash
# Two xindao nodes sharing PostgreSQL and a Redis bus (both on core 0), driven by xindao-bench on core 1:
# the fanout and direct scenarios with connections spread round-robin over the nodes, so every 1:1 pair and
# every room spans both nodes. Needs the machine's PostgreSQL (127.0.0.1:5432, trust) and Redis (6379).
#
#   bench/cluster.sh        # writes bench/results/cluster/*.json and prints both nodes' CPU-seconds
#
# OUT sets the results directory; DIRECT_ARGS / FANOUT_ARGS replace the scenario arguments.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/results/cluster}"
DIRECT_ARGS="${DIRECT_ARGS:---pairs 500 --loads 500,1000,2000,3000,4000 --step-secs 4}"
FANOUT_ARGS="${FANOUT_ARGS:---sizes 100,1000 --total 2000 --rates 2,10 --secs 5 --drain-secs 10}"
DB="xindao_bench_$$"
PG="postgres://postgres@127.0.0.1:5432"
mkdir -p "$OUT"
cargo build --release -p xindao -p xindao-bench

psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Every node of one cluster shares this secret (bus envelopes are HMAC-sealed with it).
export XINDAO_CLUSTER_SECRET="${XINDAO_CLUSTER_SECRET:-$(head -c 32 /dev/urandom | base64)}"
urls=()
for node in a b; do
  taskset -c 0 ./target/release/xindao serve --listen 127.0.0.1:0 --data-dir "$work/$node" \
    --store "$PG/$DB" --bus redis://127.0.0.1:6379 --bus-channel "xindao-bench-$$" --node-id "$node" \
    --dev-login true --max-connections 19900 --max-connections-per-user 100 \
    --max-connections-per-ip 1000000 --admin-listen "" --room-adds-per-min 1000000 --lookups-per-min 1000000 \
    --login-per-ip-per-minute 1000000 --login-per-second 1000000 \
    --rate-per-sec 1000000 --rate-burst 1000000 --log warn > "$work/$node.out" 2> "$work/$node.err" &
  pids+=($!)
  for _ in $(seq 100); do grep -q listening "$work/$node.out" && break; sleep 0.1; done
  urls+=("$(sed -n 's/^listening //p' "$work/$node.out")")
done
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
start=("$(cpu "${pids[0]}")" "$(cpu "${pids[1]}")")
url=$(IFS=,; echo "${urls[*]}")
pid_list=$(IFS=,; echo "${pids[*]}")
# --server-pid: the tables' server CPU (and RSS) figures are sums over both nodes.
BENCH=(./target/release/xindao-bench --runs 1 --out "$OUT" --gen-cpu 1 --targets xindao --url "$url"
       --server-pid "$pid_list")
# shellcheck disable=SC2086 # the scenario arguments are word lists
"${BENCH[@]}" fanout $FANOUT_ARGS
# shellcheck disable=SC2086
"${BENCH[@]}" direct $DIRECT_ARGS
end=("$(cpu "${pids[0]}")" "$(cpu "${pids[1]}")")
echo "node a CPU-seconds: $(echo "${end[0]} - ${start[0]}" | bc)  node b CPU-seconds: $(echo "${end[1]} - ${start[1]}" | bc)"
