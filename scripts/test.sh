#!/usr/bin/env bash
# Runs netcluster's whole test suite: unit, integration and binary tests of
# every crate, including the multi-host tests in network namespaces (these
# need root, iproute2 and nftables; without them they say why and skip,
# unless NETCLUSTER_REQUIRE_NETNS=1, as in CI, where they fail), then the
# Node.js client's tests (skipped likewise without node 18+), the Python
# client's (clients/python/run-tests.sh; skipped without python3 3.9+), the
# dashboard in headless chromium (likewise without chromium), then the
# Windows build under Wine (scripts/wine-test.sh, same rule for wine64 and
# mingw-w64).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test --workspace"
# Multi-host tests that skip record why here (cargo hides a passing test's
# output); it is printed after the run.
skip_log="$PWD/target/netns-skipped.txt"
rm -f "$skip_log"
cargo test --workspace
if [ -s "$skip_log" ]; then
  echo "NOTE: $(wc -l < "$skip_log") multi-host test(s) passed without running (they need root and iproute2):"
  sed 's/^/  /' "$skip_log"
fi

# The systemd unit (packaging/systemd), checked by systemd-analyze verify.
echo "== systemd-analyze verify (scripts/systemd-verify.sh)"
scripts/systemd-verify.sh

# /metrics under a real Prometheus (Debian's prometheus package).
echo "== Prometheus scraping ncserver (scripts/prometheus-test.sh)"
scripts/prometheus-test.sh

# The Node.js client (clients/node) and the seed's legacy wire format, tested
# with Node's built-in runner against target/debug/ncserver and ncclient,
# which the cargo tests above have just built.
echo "== node --test clients/node/test/"
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -ge 18 ]; then
  node --test clients/node/test/
elif [ "${NETCLUSTER_REQUIRE_NETNS:-0}" = 1 ]; then
  echo "error: the Node.js client's tests need node 18 or later (found: $(node --version 2>/dev/null || echo none)); NETCLUSTER_REQUIRE_NETNS=1 requires every test" >&2
  exit 1
else
  echo "skipping the Node.js client's tests: they need node 18 or later (found: $(node --version 2>/dev/null || echo none))"
fi

# The Python client (clients/python): mypy --strict and pytest in a fresh
# virtual environment, against target/debug/ncserver (needs python3 3.9+
# with venv and pip, and network access for pip to fetch pytest and mypy).
echo "== Python client (clients/python/run-tests.sh)"
py_ok=$(python3 -c 'import sys; print(int(sys.version_info >= (3, 9)))' 2>/dev/null || echo 0)
if [ "$py_ok" = 1 ]; then
  clients/python/run-tests.sh
elif [ "${NETCLUSTER_REQUIRE_NETNS:-0}" = 1 ]; then
  echo "error: the Python client's tests need python3 3.9 or later (found: $(python3 --version 2>&1 || echo none)); NETCLUSTER_REQUIRE_NETNS=1 requires every test" >&2
  exit 1
else
  echo "skipping the Python client's tests: they need python3 3.9 or later (found: $(python3 --version 2>&1 || echo none))"
fi

# The dashboard in headless chromium (needs chromium and node 18+; skips
# with the reason without them, unless NETCLUSTER_REQUIRE_NETNS=1).
echo "== dashboard in a browser (scripts/browser-test.sh)"
scripts/browser-test.sh

# The Windows build under Wine (needs wine64 and mingw-w64; skips with the
# reason without them, unless NETCLUSTER_REQUIRE_NETNS=1).
echo "== Windows build under Wine (scripts/wine-test.sh)"
scripts/wine-test.sh
