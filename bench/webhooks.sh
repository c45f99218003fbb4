#!/usr/bin/env bash
# Webhook delivery under 1:1 load (issue 18): the same open-loop 1:1 run with and without a webhook endpoint
# (every `message.created` goes through the outbox, committed with the message, then POSTed to a local
# receiver), alternated RUNS times on fresh servers. Prints, per run, the chat figures of both (committed
# msg/s, p99) and the receiver's view (POSTs, events, unique events, repeats, lag from commit to arrival
# p50/p99/max).
#
#   bench/webhooks.sh                 # RUNS=2, LOADS=2500,5000
#   NICE=-10 RUNS=3 bench/webhooks.sh # server and generator at a higher priority (a machine shared with others)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-2}"
LOADS="${LOADS:-2500,5000}"
OUT="${OUT:-bench/results/local/webhooks}"
NICE="${NICE:-}"
PRIO=()
if [ -n "$NICE" ]; then PRIO=(nice -n "$NICE"); fi
cargo build --release -p xindao -p xindao-bench
mkdir -p "$OUT"
node bench/webhook-receiver.mjs > "$OUT/receiver.port" &
RECEIVER=$!
trap 'kill $RECEIVER 2>/dev/null' EXIT
for _ in $(seq 50); do grep -q listening "$OUT/receiver.port" 2>/dev/null && break; sleep 0.1; done
PORT=$(awk '{print $2}' "$OUT/receiver.port")
HOOKS="[{\"name\":\"bench\",\"url\":\"http://127.0.0.1:$PORT/\",\"secret\":\"bench-secret-0123456789\",\"events\":[\"message.created\"]}]"
for run in $(seq 1 "$RUNS"); do
  for mode in plain webhooks; do
    args=()
    if [ "$mode" = webhooks ]; then
      args=("--xindao-arg=--webhooks=$HOOKS")
      curl -s "http://127.0.0.1:$PORT/reset" > /dev/null
    fi
    echo "== run $run: $mode"
    "${PRIO[@]}" ./target/release/xindao-bench --targets xindao --out "$OUT/$mode-run$run" "${args[@]}" \
      direct --pairs 1000 --loads "$LOADS" --step-secs 8 | grep '^|'
    if [ "$mode" = webhooks ]; then
      sleep 3 # deliveries still in flight after the last step
      echo "receiver: $(curl -s "http://127.0.0.1:$PORT/stats")"
    fi
  done
done
