#!/usr/bin/env bash
# Idle connections across a cluster: NODES xindao nodes (all pinned to core 0) sharing a fresh PostgreSQL
# database and a Redis bus, N authenticated idle WebSockets from xindao-bench (pinned to core 1) spread
# round-robin over the nodes. One process may hold at most 20,000 open files here, so one node tops out near
# 19,900 connections and the generator uses one worker process per 10,000 client sockets; N/NODES must stay
# below --max-connections (19,900). Reports total and per-node server RSS at 5 checkpoints, RSS per connection
# (least-squares slope of the total) and the nodes' CPU-seconds. Needs the machine's PostgreSQL
# (127.0.0.1:5432, user postgres, trust) and Redis (127.0.0.1:6379).
#
#   bench/cluster-connections.sh                 # 6 nodes, 100,000 connections
#   NODES=3 N=3000 bench/cluster-connections.sh  # a quick check
#
# Writes $OUT/connections.json (default bench/results/cluster-connections/) and $OUT/nodes.txt (node commands).
set -euo pipefail
cd "$(dirname "$0")/.."
NODES="${NODES:-6}"
N="${N:-100000}"
RATE="${RATE:-20000}"    # target connect rate, all workers together
STEPS="${STEPS:-5}"
POOL="${POOL:-8}"        # PostgreSQL connections per node: NODES x POOL must stay below max_connections (100)
MAX_CONN=19900
OUT="${OUT:-bench/results/cluster-connections}"
DB="xindao_bench_$$"
PG="postgres://postgres@127.0.0.1:5432"

per_node=$(( (N + NODES - 1) / NODES ))
if [ "$per_node" -gt "$MAX_CONN" ]; then
  echo "N=$N over NODES=$NODES is $per_node connections per node, above --max-connections $MAX_CONN" >&2
  exit 1
fi
mkdir -p "$OUT"
cargo build --release -p xindao -p xindao-bench

psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for _ in $(seq 100); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null || true
  rm -f "$OUT/tokens-xindao.txt"
  rm -rf "$work"
}
trap cleanup EXIT

# Every node of one cluster shares this secret (bus envelopes are HMAC-sealed with it).
export XINDAO_CLUSTER_SECRET="${XINDAO_CLUSTER_SECRET:-$(head -c 32 /dev/urandom | base64)}"
urls=()
: > "$OUT/nodes.txt"
for i in $(seq "$NODES"); do
  node="n$i"
  cmd=(taskset -c 0 ./target/release/xindao serve --listen 127.0.0.1:0 --data-dir "$work/$node"
    --store "$PG/$DB" --postgres-pool-size "$POOL"
    --bus redis://127.0.0.1:6379 --bus-channel "xindao-bench-$$" --node-id "$node"
    --dev-login true --max-connections "$MAX_CONN" --max-connections-per-user 100
    --max-connections-per-ip 1000000 --admin-listen "" --room-adds-per-min 1000000 --lookups-per-min 1000000
    --login-per-ip-per-minute 1000000 --login-per-second 1000000
    --rate-per-sec 1000000 --rate-burst 1000000 --log warn)
  echo "${cmd[*]}" >> "$OUT/nodes.txt"
  "${cmd[@]}" > "$work/$node.out" 2> "$work/$node.err" &
  pids+=($!)
  for _ in $(seq 200); do grep -q listening "$work/$node.out" && break; sleep 0.1; done
  url="$(sed -n 's/^listening //p' "$work/$node.out")"
  if [ -z "$url" ]; then
    echo "node $node did not start:" >&2
    cat "$work/$node.err" >&2
    exit 1
  fi
  urls+=("$url")
done
url=$(IFS=,; echo "${urls[*]}")
pid_list=$(IFS=,; echo "${pids[*]}")
echo "nodes: $url (pids $pid_list); $N connections, ~$per_node per node; open-file limit $(ulimit -n)"

./target/release/xindao-bench --runs 1 --out "$OUT" --gen-cpu 1 --targets xindao \
  --url "$url" --server-pid "$pid_list" \
  connections --n "$N" --steps "$STEPS" --rate "$RATE"

for i in "${!pids[@]}"; do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then echo "node n$((i + 1)) died:" >&2; cat "$work/n$((i + 1)).err" >&2; fi
  if [ -s "$work/n$((i + 1)).err" ]; then
    echo "--- node n$((i + 1)) stderr (last 5 lines):"
    tail -5 "$work/n$((i + 1)).err"
  fi
done
