#!/usr/bin/env bash
# Instructions (callgrind) and heap allocations (DHAT) per bridged 64 B
# message in each daemon of the NATS bridge row (issue 14): unlike
# wall-clock and CPU-time figures, both repeat on a loaded machine.
#
# Starts a nats-server and two ncserver daemons configured as in
# `ncbench nats-bridge` (channel `bench` with `propagatetonats`), one of
# them (A: publishing side, B: receiving side) under valgrind, runs a
# `bridge-sub` client on B and a `pub` client on A with N1 then N2
# messages (a fresh pair each time), stops the daemons with SIGTERM and
# prints (count(N2) - count(N1)) / (N2 - N1), so that start-up, connection
# and shutdown cancel out.
#
# Usage: bench/natscallgrind.sh [A|B ...]   (default: A B)
#   TOOL=callgrind (default) or dhat; N1=10000 N2=40000; SIZE=64 (bytes);
#   KEEP=1 keeps the output files (callgrind_annotate them);
#   DHAT_JSON=FILE keeps DHAT's allocation sites (dh_view.html).
set -euo pipefail
cd "$(dirname "$0")/.."
NCSERVER=${NCSERVER:-target/release/ncserver}
NCBENCH=${NCBENCH:-target/release/ncbench}
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
TOOL=${TOOL:-callgrind}
N1=${N1:-10000}
N2=${N2:-40000}
SIDES=("$@")
[ ${#SIDES[@]} -gt 0 ] || SIDES=(A B)
TMP=$(mktemp -d /tmp/ncnatscg.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "${KEEP:-0}" = 1 ] && echo "files kept in $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT
PORT=$("$NCBENCH" free-port)
"$NATS_SERVER" -a 127.0.0.1 -p "$PORT" >"$TMP/nats.log" 2>&1 &
PIDS+=($!)
"$NCBENCH" wait-for --tcp "127.0.0.1:$PORT"
for i in 0 1; do
  mkdir -p "$TMP/host$i"
  cat >"$TMP/host$i.json" <<JSON
{ "nodename": "bridge$i", "socketdir": "$TMP/host$i", "queuebytes": "2GiB",
  "nats": { "servers": ["nats://127.0.0.1:$PORT"], "prefix": "ncbench" },
  "channels": { "bench": { "propagatetonats": true } } }
JSON
done

# ready FILE: waits (bounded) for READY in a role's output file.
. bench/lib.sh

count_of() {
  if [ "$TOOL" = dhat ]; then
    # "Total:     123 bytes in 45 blocks"
    grep -E 'Total: ' "$1" | head -1 | sed -E 's/.* in ([0-9,]+) blocks.*/\1/' | tr -d ,
  else
    grep -E '^(summary|totals):' "$1" | head -1 | awk '{print $2}'
  fi
}

# One pair with daemon $1 profiled and $2 messages; prints its count.
run() {
  local side=$1 n=$2 out=$TMP/$TOOL.$1.$2 d=() i
  for i in 0 1; do
    local prof=()
    if { [ "$i" = 0 ] && [ "$side" = A ]; } || { [ "$i" = 1 ] && [ "$side" = B ]; }; then
      if [ "$TOOL" = dhat ]; then
        prof=(valgrind --tool=dhat --dhat-out-file="${DHAT_JSON:-/dev/null}" --log-file="$out")
      else
        prof=(valgrind --tool=callgrind --callgrind-out-file="$out")
      fi
    fi
    "${prof[@]}" "$NCSERVER" --log warn "$TMP/host$i.json" 2>>"$TMP/daemon$i.log" &
    d+=($!)
  done
  for i in 0 1; do "$NCBENCH" wait-for --unix "$TMP/host$i/netcluster-bench" --timeout-s 120; done
  # Both daemons must be subscribed on NATS before the first message:
  # valgrind slows the connection down.
  sleep "${SETTLE:-4}"
  "$NCBENCH" bridge-sub --at "$TMP/host1" --count "$n" --size "${SIZE:-64}" --timeout-s 600 >"$TMP/sub" &
  local s=$!
  ready "$TMP/sub"
  "$NCBENCH" pub --system nc --at "$TMP/host0" --subject bench --count "$n" --size "${SIZE:-64}" >/dev/null
  wait $s
  grep -q "\"count\":$n[,}]" "$TMP/sub" || { echo "natscallgrind.sh: not all $n delivered: $(tail -1 "$TMP/sub")" >&2; }
  kill -TERM "${d[@]}"
  wait "${d[@]}" || true
  count_of "$out"
}

unit=instructions; [ "$TOOL" = dhat ] && unit=allocations
for side in "${SIDES[@]}"; do
  a=$(run "$side" "$N1")
  b=$(run "$side" "$N2")
  awk -v c="daemon $side" -v a="$a" -v b="$b" -v n1="$N1" -v n2="$N2" -v u="$unit" \
    'BEGIN { printf "%-10s %10.4g %s/message  (%d at %d, %d at %d)\n", c, (b - a) / (n2 - n1), u, a, n1, b, n2 }'
done
