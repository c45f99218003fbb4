#!/usr/bin/env bash
# Runs the whole test suite: formatting and lints, the Rust tests (unit + integration against a real server),
# the JS SDK tests, the unmodified Wafer client SDKs (tests/wafer) and the browser end-to-end test (all
# against the real binary).
# Needs: Rust (cargo), Node >= 20 with npm, and Chromium at /usr/bin/chromium (Debian: apt-get install chromium).
# moto_server (pip install 'moto[server]') for the S3 media tests, which are skipped without it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "no import circles between the server's modules (scripts/import_graph.py)"
python3 scripts/import_graph.py crates/xindao/src > /dev/null || python3 scripts/import_graph.py crates/xindao/src

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo doc (rustdoc warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

step "cargo build (the binary the JS tests drive)"
cargo build --workspace --bins
export XINDAO_BIN="$PWD/target/debug/xindao"

step "nginx for the probe's nginx test (optional: the test prints SKIPPED without it)"
if [ ! -x /usr/sbin/nginx ] && ! command -v nginx >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y nginx-light >/dev/null 2>&1 \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y nginx >/dev/null 2>&1 \
      || echo "nginx could not be installed"
  fi
fi

step "cargo test"
cargo test --workspace

step "JS SDK tests (sdk/js)"
(cd sdk/js && npm ci --no-audit --no-fund && npm test)

step "Wafer client SDKs against standalone Wafer mode (tests/wafer)"
(cd tests/wafer && npm ci --no-audit --no-fund && npm test)

step "browser end-to-end test (e2e)"
if [ ! -x /usr/bin/chromium ]; then
  echo "ERROR: /usr/bin/chromium is missing; install it with: apt-get install -y chromium" >&2
  exit 1
fi
(cd e2e && npm ci --no-audit --no-fund && npm test)

step "all tests passed"
