#!/usr/bin/env bash
# Runs netcluster's whole test suite: unit, integration and binary tests of
# every crate, including the multi-host tests in network namespaces (these
# need root, iproute2 and nftables; without them they say why and skip,
# unless NETCLUSTER_REQUIRE_NETNS=1, as in CI, where they fail).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test --workspace"
cargo test --workspace
