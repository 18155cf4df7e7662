#!/usr/bin/env bash
# netcluster side by side with NATS and Redis, in one run on this machine
# (issue 4). Installs the peers with apt if missing, builds release, starts
# ncserver, nats-server and redis-server under a temporary directory
# (netcluster and Redis on Unix sockets there, NATS on a free loopback
# port), runs `ncbench suite`, stops the brokers by PID, and writes
#   docs/bench/latest.json, docs/bench/latest.md, docs/bench/chart.svg
# and the generated section of docs/PERFORMANCE.md. Prints the table.
# Then, with python3 3.9+, the Python clients' benchmark on the same
# brokers (clients/python/bench/run.sh; its own section of PERFORMANCE.md).
#
# Bounded in time: every workload has a fixed message count and each role
# process a deadline (ncbench), and the whole suite runs under `timeout`.
#
# The multicast rows run two more ncserver daemons in two network
# namespaces (needs root, iproute2 and nftables; installed with apt if
# missing, skipped with a message when not root).
#
# The NATS bridge rows (issue 14) start two more ncserver daemons on
# loopback, bridged through the same nats-server (crates/bench/src/natsbridge.rs).
#
# Usage: bench/run.sh            (as root on a fresh checkout)
#   NCBENCH_SCALE=tiny bench/run.sh   a quick check of the harness
#   NCBENCH_REPS=N                    repetitions of each throughput run
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

SUITE_TIMEOUT=${NCBENCH_TIMEOUT:-1200}
SCALE=${NCBENCH_SCALE:-full}

log() { echo "run.sh: $*" >&2; }

# --- peers -----------------------------------------------------------------
missing=()
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "$(id -u)" = 0 ]; then
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v nft >/dev/null 2>&1 || missing+=(nftables)
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} with apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d keeps the package from starting its own system-wide daemon.
  had_policy=0; [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  [ $had_policy = 1 ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
fi
export PATH=$PATH:/usr/sbin

# --- build -----------------------------------------------------------------
log "building release (ncserver, ncbench)"
cargo build --release --quiet --bin ncserver --bin ncbench
NCSERVER=$ROOT/target/release/ncserver
NCBENCH=$ROOT/target/release/ncbench

# --- brokers ---------------------------------------------------------------
# 1000 idle clients need 1000+ descriptors in each broker.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
TMP=$(mktemp -d /tmp/ncbench.XXXXXX)
PIDS=()
# The multicast rows create two network namespaces named after this
# prefix (and remove them); if the suite is killed, cleanup removes them.
export NCBENCH_NETNS_PREFIX="ncbench$$"
cleanup() {
  local pid ns
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  for ns in "${NCBENCH_NETNS_PREFIX}a" "${NCBENCH_NETNS_PREFIX}b"; do
    if ip netns list 2>/dev/null | grep -q "^$ns\b"; then
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$TMP/nc"
cat >"$TMP/nc.json" <<EOF
// ncbench: one channel for every workload, sockets in the temp dir.
{
  "socketdir": "$TMP/nc",
  "startcontrol": true,
  "channels": { "bench": {} }
}
EOF
"$NCSERVER" --log warn "$TMP/nc.json" 2>"$TMP/ncserver.log" &
NC_PID=$!; PIDS+=("$NC_PID")

NATS_PORT=$("$NCBENCH" free-port)
nats-server -a 127.0.0.1 -p "$NATS_PORT" >"$TMP/nats.log" 2>&1 &
NATS_PID=$!; PIDS+=("$NATS_PID")

# Pub/sub output limits off: a subscriber that falls behind is buffered
# (lossless), as netcluster's default, instead of disconnected.
redis-server --port 0 --unixsocket "$TMP/redis.sock" --unixsocketperm 700 \
  --save '' --appendonly no --dir "$TMP" --logfile "$TMP/redis.log" \
  --client-output-buffer-limit 'pubsub 0 0 0' &
REDIS_PID=$!; PIDS+=("$REDIS_PID")

"$NCBENCH" wait-for --unix "$TMP/nc/netcluster-bench"
"$NCBENCH" wait-for --tcp "127.0.0.1:$NATS_PORT"
"$NCBENCH" wait-for --unix "$TMP/redis.sock"
log "brokers up: ncserver $NC_PID, nats-server $NATS_PID (port $NATS_PORT), redis-server $REDIS_PID"

# --- suite -----------------------------------------------------------------
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- crates 2>/dev/null)" ]; then COMMIT="$COMMIT+changes"; fi
args=(suite --scale "$SCALE"
  --nc-dir "$TMP/nc" --nc-pid "$NC_PID"
  --nats-addr "127.0.0.1:$NATS_PORT" --nats-pid "$NATS_PID"
  --redis-socket "$TMP/redis.sock" --redis-pid "$REDIS_PID"
  --commit "$COMMIT" --ncserver "$NCSERVER")
[ -n "${NCBENCH_REPS:-}" ] && args+=(--reps "$NCBENCH_REPS")
if [ "$SCALE" = full ]; then
  args+=(--out-dir "$ROOT/docs/bench" --doc "$ROOT/docs/PERFORMANCE.md")
else
  args+=(--out-dir "$TMP/report")
fi
timeout --kill-after=10 "$SUITE_TIMEOUT" "$NCBENCH" "${args[@]}"

# --- Python clients (clients/python/bench) ---------------------------------
# The Python package against redis-py and nats-py, on the same brokers.
if python3 -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
  log "Python clients: netcluster vs redis-py (asyncio) and nats-py"
  py_args=(--nc-dir "$TMP/nc" --nats "nats://127.0.0.1:$NATS_PORT" --redis-socket "$TMP/redis.sock")
  if [ "$SCALE" = full ]; then py_args+=(--doc "$ROOT/docs/PERFORMANCE.md"); else py_args+=(--scale tiny); fi
  "$ROOT/clients/python/bench/run.sh" "${py_args[@]}"
else
  log "skipping the Python clients' benchmark: it needs python3 3.9 or later"
fi

for pid in "$NC_PID" "$NATS_PID" "$REDIS_PID"; do
  kill -0 "$pid" 2>/dev/null || { log "broker $pid died during the run"; exit 1; }
done
log "done"
