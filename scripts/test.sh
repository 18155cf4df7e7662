#!/usr/bin/env bash
# Runs netcluster's whole test suite: unit, integration and binary tests of
# every crate, including the multi-host tests in network namespaces (these
# need root, iproute2 and nftables; without them they say why and skip,
# unless NETCLUSTER_REQUIRE_NETNS=1, as in CI, where they fail), then the
# Windows build under Wine (scripts/wine-test.sh, same rule for wine64 and
# mingw-w64).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test --workspace"
cargo test --workspace

# The Windows build under Wine (needs wine64 and mingw-w64; skips with the
# reason without them, unless NETCLUSTER_REQUIRE_NETNS=1).
echo "== Windows build under Wine (scripts/wine-test.sh)"
scripts/wine-test.sh
