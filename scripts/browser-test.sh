#!/usr/bin/env bash
# The dashboard in a real browser: runs crates/server/tests/browser/ (Node's
# test runner driving Debian's headless chromium over the DevTools pipe)
# against target/debug/ncserver, with real clients from clients/node.
# Needs node 18+ and chromium; without them it says why and skips, unless
# NETCLUSTER_REQUIRE_NETNS=1 (CI), where that is an error. Screenshots go
# to target/browser/; NETCLUSTER_UPDATE_SCREENSHOT=1 also refreshes
# docs/dashboard.png. Bounded in time (each test has a timeout).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=""
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
[ "$node_major" -ge 18 ] || missing="$missing node>=18"
if [ -n "${CHROMIUM:-}" ]; then
  [ -x "$CHROMIUM" ] || missing="$missing chromium(CHROMIUM=$CHROMIUM)"
else
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="$missing chromium"
fi
if [ -n "$missing" ]; then
  if [ "${NETCLUSTER_REQUIRE_NETNS:-0}" = 1 ]; then
    echo "error: the dashboard's browser test needs:$missing (apt install chromium nodejs); NETCLUSTER_REQUIRE_NETNS=1 requires every test" >&2
    exit 1
  fi
  echo "skipping the dashboard's browser test: missing$missing (apt install chromium)"
  exit 0
fi

cargo build -q --bin ncserver
node --test crates/server/tests/browser/
