#!/usr/bin/env bash
# Instructions per message of the netcluster client library against the
# raw-protocol client (issue 15), counted by callgrind: unlike wall-clock
# figures, instruction counts repeat on a loaded machine.
#
# Starts a release ncserver in a temporary directory, then for each case
# runs the profiled role twice (N1 and N2 messages) under
#   valgrind --tool=callgrind
# with an unprofiled raw-client partner, and prints
#   (Ir(N2) - Ir(N1)) / (N2 - N1)
# so that start-up, connection and runtime set-up cancel out. With
# STRACE=1 it also counts system calls per message the same way
# (strace -c -f, total calls, differenced).
#
# Usage: bench/callgrind.sh [case...]
#   cases: pub-lib-16 pub-raw-16 pub-lib-256 pub-raw-256
#          sub-lib-16 sub-raw-16 sub-lib-256 sub-raw-256
#          ping-lib ping-raw   (pinger per round trip, raw ponger)
#          pong-lib pong-raw   (ponger per round trip, raw pinger)
#   N1=20000 N2=60000 (messages; round trips use a tenth)
#   KEEP=1 keeps the callgrind files (callgrind_annotate them).
set -euo pipefail
cd "$(dirname "$0")/.."
NCSERVER=${NCSERVER:-target/release/ncserver}
NCBENCH=${NCBENCH:-target/release/ncbench}
N1=${N1:-20000}
N2=${N2:-60000}
CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(pub-lib-16 pub-raw-16 sub-lib-16 sub-raw-16
  pub-lib-256 pub-raw-256 sub-lib-256 sub-raw-256 ping-lib ping-raw pong-lib pong-raw)
command -v valgrind >/dev/null || { echo "callgrind.sh: needs valgrind (apt-get install valgrind)" >&2; exit 2; }
[ -x "$NCSERVER" ] && [ -x "$NCBENCH" ] ||
  { echo "callgrind.sh: build first: cargo build --release --bin ncserver --bin ncbench" >&2; exit 2; }

TMP=$(mktemp -d /tmp/nccallgrind.XXXXXX)
NC_PID=
cleanup() {
  [ -n "$NC_PID" ] && kill "$NC_PID" 2>/dev/null && wait "$NC_PID" 2>/dev/null
  [ "${KEEP:-0}" = 1 ] && echo "callgrind files kept in $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT
mkdir -p "$TMP/nc"
# blockms at its maximum: a subscriber slowed down 50× by valgrind must
# hold the publisher back, not get disconnected.
cat >"$TMP/nc.json" <<EOF
{ "socketdir": "$TMP/nc", "channels": { "bench": { "blockms": 600000 } } }
EOF
"$NCSERVER" --log warn "$TMP/nc.json" 2>"$TMP/ncserver.log" &
NC_PID=$!
"$NCBENCH" wait-for --unix "$TMP/nc/netcluster-bench"
AT=$TMP/nc

# ready FILE: waits (bounded) for READY in a role's output file.
. bench/lib.sh

# Runs "$@" under the profiler named by $TOOL, prints its count.
profiled() {
  local out=$1; shift
  if [ "$TOOL" = strace ]; then
    strace -f -c -o "$out" "$@"
  else
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" 2>>"$TMP/valgrind.log"
  fi
}

count_of() {
  if [ "$TOOL" = strace ]; then
    awk '/^-+ -+/{sep++} sep==2 && $NF=="total"{print $(NF-2); exit}' "$1"
  else
    grep -E '^(summary|totals):' "$1" | head -1 | awk '{print $2}'
  fi
}

# One run of a case with n messages; prints the profiled role's count.
run() {
  local case=$1 n=$2 out=$TMP/$TOOL.$1.$2
  local kind=${case%%-*} rest=${case#*-}
  local sys=${rest%%-*} size=${rest#*-}
  [ "$sys" = lib ] && sys=nc || sys=nc-raw
  case $kind in
    pub)
      "$NCBENCH" sub --system nc-raw --at "$AT" --count "$n" --size "$size" --timeout-s 600 >"$TMP/partner" &
      local p=$!
      ready "$TMP/partner"
      profiled "$out" "$NCBENCH" pub --system "$sys" --at "$AT" --count "$n" --size "$size" >/dev/null
      wait $p ;;
    sub)
      profiled "$out" "$NCBENCH" sub --system "$sys" --at "$AT" --count "$n" --size "$size" --timeout-s 600 >"$TMP/role" &
      local p=$!
      ready "$TMP/role"
      "$NCBENCH" pub --system nc-raw --at "$AT" --count "$n" --size "$size" >/dev/null
      wait $p ;;
    ping)
      "$NCBENCH" pong --system nc-raw --at "$AT" --count "$n" --size 16 >"$TMP/partner" &
      local p=$!
      ready "$TMP/partner"
      profiled "$out" "$NCBENCH" ping --system "$sys" --at "$AT" --count "$n" --warmup 0 --size 16 --timeout-s 600 >/dev/null
      wait $p ;;
    pong)
      profiled "$out" "$NCBENCH" pong --system "$sys" --at "$AT" --count "$n" --size 16 >"$TMP/role" &
      local p=$!
      ready "$TMP/role"
      "$NCBENCH" ping --system nc-raw --at "$AT" --count "$n" --warmup 0 --size 16 --timeout-s 600 >/dev/null
      wait $p ;;
    *) echo "callgrind.sh: unknown case $case" >&2; return 2 ;;
  esac
  count_of "$out"
}

TOOLS=(callgrind)
[ "${STRACE:-0}" = 1 ] && TOOLS+=(strace)
for TOOL in "${TOOLS[@]}"; do
  unit=instructions; [ "$TOOL" = strace ] && unit=syscalls
  for c in "${CASES[@]}"; do
    n1=$N1 n2=$N2
    case $c in ping-* | pong-*) n1=$((N1 / 10)) n2=$((N2 / 10)); c=${c}-16 ;; esac
    a=$(run "$c" "$n1")
    b=$(run "$c" "$n2")
    awk -v c="${c%-16}" -v a="$a" -v b="$b" -v n1="$n1" -v n2="$n2" -v u="$unit" \
      'BEGIN { printf "%-12s %10.4g %s/message  (%d at %d, %d at %d)\n", c, (b - a) / (n2 - n1), u, a, n1, b, n2 }'
  done
done
