#!/usr/bin/env bash
# Reproduce the whole xindao vs Socket.IO (and Mosquitto, for fan-out) comparison with one command:
#
#   bench/run.sh                 # the headline: every server as users run it (default runtime, all cores,
#                                # server and load generator unpinned); RUNS=2 by default, RUNS=1 for a quick pass
#   PINNED=1 bench/run.sh        # the secondary table: server pinned to core 0, load generator to core 1
#
# Builds the release binaries, installs the Socket.IO peer (npm ci), runs the scenarios against every server (a
# fresh server for every scenario and run) and the kernel's floor for one send (no server), then writes
# summary.md and latency_vs_load.svg beside the raw directory. Raw JSON (and server logs) go to $OUT,
# bench/results/local/raw/ (or local-pinned/raw/ with PINNED=1) by default; git ignores every run but
# bench/results/baseline/, the one that docs/performance.md quotes. Every load goes to 127.0.0.0/8 only.
# Takes ~11 minutes per run on a 2-core machine, plus the build: RUNS=2 took 27 minutes (issue 17 asks for ~30).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-2}"
if [ -n "${PINNED:-}" ]; then
  OUT="${OUT:-bench/results/local-pinned/raw}"
  SERVER_CPU="${SERVER_CPU:-0}"
  GEN_CPU="${GEN_CPU:-1}"
else
  OUT="${OUT:-bench/results/local/raw}"
  SERVER_CPU="${SERVER_CPU:-}"
  GEN_CPU="${GEN_CPU:-}"
fi
# NICE=-10 runs server and generator at a higher scheduling priority, for a machine shared with other work
# (taskset pins the cores but does not reserve them). Empty: normal priority.
NICE="${NICE:-}"

cargo build --release -p xindao -p xindao-bench
(cd bench/peers/socketio && npm ci --no-audit --no-fund --loglevel=error)
python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install --quiet matplotlib

mkdir -p "$OUT"
PRIO=()
if [ -n "$NICE" ]; then PRIO=(nice -n "$NICE"); fi
BENCH=("${PRIO[@]}" ./target/release/xindao-bench --runs "$RUNS" --out "$OUT" --server-cpu "$SERVER_CPU" --gen-cpu "$GEN_CPU")

# 1. idle connections up to the single-process limit (20,000 open files): RSS per connection, upgrade rate
"${BENCH[@]}" --targets xindao,socketio connections --n 19800 --steps 5 --rate 20000
# 2. rooms of 100, 1,000, 5,000 and 10,000 members (10,000 members connected in all), 2 and 10 messages/s per room;
#    Mosquitto (MQTT topics, nothing persisted) too where it is installed
FANOUT_TARGETS=xindao,socketio
if [ -x "${MOSQUITTO:-/usr/sbin/mosquitto}" ]; then
  FANOUT_TARGETS=xindao,socketio,mosquitto
else
  echo "run.sh: no mosquitto binary at ${MOSQUITTO:-/usr/sbin/mosquitto} (apt-get install mosquitto): fan-out without it" >&2
fi
"${BENCH[@]}" --mosquitto-bin "${MOSQUITTO:-/usr/sbin/mosquitto}" --targets "$FANOUT_TARGETS" fanout --sizes 100,1000,5000,10000 --total 10000 --rates 2,10 --secs 5 --drain-secs 10
# 2b. scaling with cores: xindao alone, its server on ONE tokio worker (the server inherits TOKIO_WORKER_THREADS;
#     the generator's runtime is single-threaded anyway), for report.py to pair with step 2's default runtime
#     run by run. Its own directory: the file is fanout.json too.
TOKIO_WORKER_THREADS=1 "${PRIO[@]}" ./target/release/xindao-bench --runs "$RUNS" --out "$OUT/one-worker" \
  --server-cpu "$SERVER_CPU" --gen-cpu "$GEN_CPU" --targets xindao \
  fanout --sizes 1000,10000 --total 10000 --rates 2,10 --secs 5 --drain-secs 10
# 3. 1,000 pairs chatting 1:1, open-loop sweep of offered load up to saturation; the peer twice: in memory, and
#    persisting to SQLite with group commit (the scenario is "with persistence on"); the loads reach past 30,000
#    (issue 17's ceiling) and the sweep stops at each server's first saturated step
"${BENCH[@]}" --targets xindao,socketio,socketio-sqlite direct --pairs 1000 --loads 1000,2500,4000,5500,7000,8500,10000,12500,15000,20000,25000,30000,35000,40000,50000 --step-secs 4
# 3b. 100 pairs 1:1 in closed loop (one message in flight per connection): acked msg/s and round trip, the
#     figures a chat user feels; the peer in memory and persisting
"${BENCH[@]}" --targets xindao,socketio,socketio-sqlite direct-closed --pairs 100 --secs 8
# 4. 10,000 clients drop and reconnect at once, each resyncs 30 missed messages (xindao only: Socket.IO has no sync)
"${BENCH[@]}" --targets xindao reconnect-storm --n 10000 --rooms 100 --missed 30
# 4b. 10,000 connected clients join one room at once over their live connections (xindao only): time until all
#     joined and the pushes it cost (member events are coalesced above big_room_members)
"${BENCH[@]}" --targets xindao join-storm --n 10000
# 5. no server: the kernel's cost of one loopback send from the server's core, the ceiling for fan-out
#    deliveries per CPU-second with one write per delivery
"${BENCH[@]}" send-floor --n 9000 --rounds 20 --interval-ms 0,500 --send-cpu "$SERVER_CPU"

# The report goes beside the raw directory: bench/results/NAME for OUT=bench/results/NAME/raw (so a named run
# never overwrites another run's summary).
python3 bench/report.py "$OUT" "$(dirname "$OUT")"
