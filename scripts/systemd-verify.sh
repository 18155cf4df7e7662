#!/usr/bin/env bash
# Checks packaging/systemd/ncserver.service with `systemd-analyze verify`,
# which also wants ExecStart's binary to exist: a copy of the unit whose
# ExecStart points at the freshly built target/debug/ncserver is verified in
# a temporary directory. Any warning counts as a failure (systemd-analyze
# itself exits 0 on unknown keys and bad values). Without systemd-analyze
# (apt package `systemd`) it says so and skips, unless
# NETCLUSTER_REQUIRE_NETNS=1 (CI), where that is an error.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "${NETCLUSTER_REQUIRE_NETNS:-0}" = 1 ]; then
    echo "error: systemd-analyze not found (apt install systemd); NETCLUSTER_REQUIRE_NETNS=1 requires every test" >&2
    exit 1
  fi
  echo "skipping the unit check: systemd-analyze not found (apt install systemd)"
  exit 0
fi

cargo build -q --bin ncserver
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|^ExecStart=/usr/bin/ncserver|ExecStart=$PWD/target/debug/ncserver|" \
  packaging/systemd/ncserver.service > "$tmp/ncserver.service"
grep -q "^ExecStart=$PWD/target/debug/ncserver " "$tmp/ncserver.service"
if ! out=$(systemd-analyze verify "$tmp/ncserver.service" 2>&1) || [ -n "$out" ]; then
  echo "error: systemd-analyze verify packaging/systemd/ncserver.service:" >&2
  echo "$out" >&2
  exit 1
fi
echo "packaging/systemd/ncserver.service: systemd-analyze verify ok"
