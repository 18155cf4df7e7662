#!/usr/bin/env bash
# Runs netcluster's whole test suite: unit, integration and binary tests of
# every crate, including the multi-host tests in network namespaces (these
# need root, iproute2 and nftables; without them they say why and skip,
# unless NETCLUSTER_REQUIRE_NETNS=1, as in CI, where they fail), then the
# Node.js client's tests (skipped likewise without node 18+), the
# dashboard in headless chromium (likewise without chromium), then the
# Windows build under Wine (scripts/wine-test.sh, same rule for wine64 and
# mingw-w64).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test --workspace"
cargo test --workspace

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

# The dashboard in headless chromium (needs chromium and node 18+; skips
# with the reason without them, unless NETCLUSTER_REQUIRE_NETNS=1).
echo "== dashboard in a browser (scripts/browser-test.sh)"
scripts/browser-test.sh

# The Windows build under Wine (needs wine64 and mingw-w64; skips with the
# reason without them, unless NETCLUSTER_REQUIRE_NETNS=1).
echo "== Windows build under Wine (scripts/wine-test.sh)"
scripts/wine-test.sh
