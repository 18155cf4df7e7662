#!/usr/bin/env bash
# Builds the Debian package target/debian/netcluster_<version>_amd64.deb:
# ncserver and ncclient (release build), the systemd unit, a commented
# /etc/netcluster/config.json (a conffile), README and METRICS docs, and the
# maintainer scripts that create the system user and group netcluster. The
# package's metadata is [package.metadata.deb] in crates/server/Cargo.toml;
# its files are in packaging/. Needs cargo-deb (`cargo install cargo-deb`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "error: cargo-deb is missing: cargo install cargo-deb" >&2
  exit 1
fi
cargo build --release -p netcluster-server -p netcluster-cli --bin ncserver --bin ncclient
# Stripped: the release profile keeps line tables for profiling, the
# package need not.
cargo deb -p netcluster-server --no-build --strip --output target/debian/
version=$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"name":"netcluster-server","version":"\([^"]*\)".*/\1/p')
deb=target/debian/netcluster_${version}_amd64.deb
test -f "$deb" || { echo "error: $deb was not built" >&2; exit 1; }
echo "$deb"
