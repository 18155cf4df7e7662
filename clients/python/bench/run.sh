#!/usr/bin/env bash
# The Python clients' benchmark (bench.py), one run: this package against
# redis-py (asyncio) with redis-server and nats-py with nats-server. Creates
# a virtual environment with redis, nats-py and this package, and either
# uses the brokers it is given (bench/run.sh passes its own) or starts
# ncserver (target/release, built if missing), nats-server and
# redis-server under a temporary directory and stops them by PID.
#
#   clients/python/bench/run.sh [--doc docs/PERFORMANCE.md] [--scale tiny]
#   clients/python/bench/run.sh --nc-dir D --nats nats://127.0.0.1:P --redis-socket S [--doc F]
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PY=${PYTHON:-python3}
log() { echo "clients/python/bench/run.sh: $*" >&2; }

NC_DIR= NATS= REDIS= EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --nc-dir) NC_DIR=$2; shift 2 ;;
    --nats) NATS=$2; shift 2 ;;
    --redis-socket) REDIS=$2; shift 2 ;;
    *) EXTRA+=("$1"); shift ;;
  esac
done

TMP=$(mktemp -d /tmp/ncpybench.XXXXXX)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

VENV=${VENV:-$TMP/venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check redis nats-py
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$HERE/.."

wait_for() { # path-or-port, what
  local i
  for i in $(seq 1 300); do
    if [ -S "$1" ] || { [[ "$1" =~ ^[0-9]+$ ]] && (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }; then return 0; fi
    sleep 0.1
  done
  log "$2 did not come up"; exit 1
}

if [ -z "$NC_DIR" ]; then
  export PATH=$PATH:/usr/sbin
  for b in nats-server redis-server; do
    command -v "$b" >/dev/null || { log "$b is missing (apt-get install nats-server redis-server)"; exit 1; }
  done
  NCSERVER=${NCSERVER:-$ROOT/target/release/ncserver}
  [ -x "$NCSERVER" ] || (cd "$ROOT" && cargo build --release --quiet --bin ncserver)
  NC_DIR=$TMP/nc; mkdir -p "$NC_DIR"
  printf '{"socketdir": "%s", "channels": {"bench": {}}}\n' "$NC_DIR" >"$TMP/nc.json"
  "$NCSERVER" --log warn "$TMP/nc.json" 2>"$TMP/ncserver.log" & PIDS+=($!)
  PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  nats-server -a 127.0.0.1 -p "$PORT" >"$TMP/nats.log" 2>&1 & PIDS+=($!)
  NATS=nats://127.0.0.1:$PORT
  REDIS=$TMP/redis.sock
  redis-server --port 0 --unixsocket "$REDIS" --unixsocketperm 700 --save '' --appendonly no \
    --dir "$TMP" --logfile "$TMP/redis.log" --client-output-buffer-limit 'pubsub 0 0 0' & PIDS+=($!)
  wait_for "$NC_DIR/netcluster-bench" ncserver
  wait_for "$PORT" nats-server
  wait_for "$REDIS" redis-server
fi

log "netcluster at $NC_DIR, NATS at $NATS, Redis at $REDIS"
timeout --kill-after=10 "${NCPYBENCH_TIMEOUT:-900}" "$VENV/bin/python" "$HERE/bench.py" suite \
  --nc-dir "$NC_DIR" --nats "$NATS" --redis-socket "$REDIS" "${EXTRA[@]}"
