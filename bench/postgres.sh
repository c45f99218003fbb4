#!/usr/bin/env bash
# One xindao node on the PostgreSQL store (instead of the embedded SQLite), through the same direct and fanout
# scenarios as bench/run.sh: xindao-bench starts the release server itself (pinned to core 0, generator on
# core 1) with --store pointing at a fresh database, created before each scenario and dropped after it (and on
# exit). PostgreSQL's own processes are not pinned: they share the machine's cores with server and generator.
# Needs the machine's PostgreSQL (127.0.0.1:5432, user postgres, trust).
#
#   bench/postgres.sh          # writes bench/results/postgres/{direct,fanout}.json and the server logs
#   RUNS=3 bench/postgres.sh   # repetitions of each scenario (they share that scenario's database)
#
# DIRECT_ARGS / FANOUT_ARGS replace the scenario arguments (e.g. for a quick check).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-1}"
OUT="${OUT:-bench/results/postgres}"
SERVER_CPU="${SERVER_CPU:-0}"
GEN_CPU="${GEN_CPU:-1}"
DIRECT_ARGS="${DIRECT_ARGS:---pairs 1000 --loads 1000,2500,4000,5500,7000,8500,10000,12500,15000 --step-secs 4}"
FANOUT_ARGS="${FANOUT_ARGS:---sizes 100,1000,10000 --total 10000 --rates 2,10 --secs 5 --drain-secs 10}"
PG="postgres://postgres@127.0.0.1:5432"
DB=""

mkdir -p "$OUT"
cargo build --release -p xindao -p xindao-bench

drop_db() {
  if [ -n "$DB" ]; then
    psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null || true
    DB=""
  fi
}
trap drop_db EXIT

run() {
  local scenario="$1"
  shift
  DB="xindao_bench_pg_$$_${scenario}"
  psql "$PG/postgres" -qc "CREATE DATABASE $DB" >/dev/null
  ./target/release/xindao-bench --runs "$RUNS" --out "$OUT" --server-cpu "$SERVER_CPU" --gen-cpu "$GEN_CPU" \
    --targets xindao --xindao-arg="--store=$PG/$DB" "$scenario" "$@"
  drop_db
}

# shellcheck disable=SC2086 # the argument lists are meant to be split into words
run direct $DIRECT_ARGS
# shellcheck disable=SC2086
run fanout $FANOUT_ARGS
