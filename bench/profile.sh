#!/usr/bin/env bash
# Where netcluster's time goes, as described in docs/PERFORMANCE.md
# ("Where the time goes"). Repeats the measurements behind it, for
# netcluster and (for comparison) Redis:
#   1. CPU per message of daemon, publisher and subscriber in 1->1 runs;
#   2. context switches per round trip and the daemon's syscalls per
#      message in the one-CPU ping-pong (perf stat, strace -c);
#   3. top functions of daemon, subscriber and publisher in a 1->1 16 B run
#      (perf record, cpu-clock: this VM has no hardware counters).
# Needs root; installs linux-perf and strace with apt if missing. About a
# minute. Run bench/run.sh once first (it builds and installs the peers).
# Output: stdout, and the raw data under $OUT (default /tmp/ncprofile).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/ncprofile}
N=${NCPROFILE_COUNT:-8000000}
RTT=${NCPROFILE_RTT:-20000}

missing=()
command -v perf >/dev/null 2>&1 || missing+=(linux-perf)
command -v strace >/dev/null 2>&1 || missing+=(strace)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cargo build --release --quiet --bin ncserver --bin ncbench
B=$ROOT/target/release/ncbench

rm -rf "$OUT"; mkdir -p "$OUT/nc"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
printf '{ "socketdir": "%s", "channels": { "bench": {} } }\n' "$OUT/nc" >"$OUT/nc.json"
"$ROOT/target/release/ncserver" --log warn "$OUT/nc.json" 2>"$OUT/ncserver.log" &
NC=$!; PIDS+=("$NC")
redis-server --port 0 --unixsocket "$OUT/redis.sock" --save '' --appendonly no \
  --dir "$OUT" --logfile "$OUT/redis.log" --client-output-buffer-limit 'pubsub 0 0 0' &
RD=$!; PIDS+=("$RD")
"$B" wait-for --unix "$OUT/nc/netcluster-bench"
"$B" wait-for --unix "$OUT/redis.sock"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

echo "== 1. CPU per message, 1->1, $N messages (ns)"
printf '%-6s %-5s %10s %10s %10s %10s\n' broker size daemon publisher subscriber 'M msg/s'
for sys in nc redis; do
  at=$OUT/nc; pid=$NC; [ $sys = redis ] && at=$OUT/redis.sock && pid=$RD
  for size in 16 256; do
    TIMEFORMAT='%U %S'
    { time "$B" sub --system $sys --at "$at" --count "$N" --size $size >"$OUT/sub.out"; } 2>"$OUT/sub.time" &
    sub=$!
    until grep -q READY "$OUT/sub.out" 2>/dev/null; do sleep 0.05; done
    t0=$(ticks $pid)
    { time "$B" pub --system $sys --at "$at" --count "$N" --size $size >"$OUT/pub.out"; } 2>"$OUT/pub.time"
    wait $sub
    t1=$(ticks $pid)
    start=$(sed 's/.*"start_ns":\([0-9]*\).*/\1/' "$OUT/pub.out")
    last=$(grep RESULT "$OUT/sub.out" | sed 's/.*"last_ns":\([0-9]*\).*/\1/')
    awk -v d=$((t1 - t0)) -v hz="$hz" -v n="$N" -v s="$start" -v l="$last" \
      -v p="$(cat "$OUT/pub.time")" -v q="$(cat "$OUT/sub.time")" -v sys=$sys -v size=$size 'BEGIN {
        split(p, a, " "); split(q, b, " ");
        printf "%-6s %-5s %10.0f %10.0f %10.0f %10.2f\n", sys, size, d / hz * 1e9 / n,
          (a[1] + a[2]) * 1e9 / n, (b[1] + b[2]) * 1e9 / n, n / ((l - s) / 1e9) / 1e6 }'
  done
done

echo
echo "== 2. Ping-pong on CPU 0, $RTT round trips"
# One ping-pong on CPU 0; "$@" is prefixed to the pinger (perf stat).
pingpong() {
  local sys=$1 at=$2; shift 2
  "$B" pong --system $sys --at "$at" --count $((RTT + 1000)) --size 16 --cpu 0 >"$OUT/pong.out" &
  local pong=$!
  until grep -q READY "$OUT/pong.out" 2>/dev/null; do sleep 0.05; done
  "$@" "$B" ping --system $sys --at "$at" --count $RTT --warmup 1000 --size 16 --cpu 0 >"$OUT/ping_$sys.out"
  wait $pong
}
for sys in nc redis; do
  at=$OUT/nc; pid=$NC; [ $sys = redis ] && at=$OUT/redis.sock && pid=$RD
  saved=$(taskset -p "$pid" | awk '{print $NF}')
  taskset -a -p -c 0 "$pid" >/dev/null
  pingpong $sys "$at" perf stat -e context-switches -C 0 -x, -o "$OUT/cs_$sys.txt" --
  p50=$(sed 's/.*"p50_ns":\([0-9]*\).*/\1/' "$OUT/ping_$sys.out")
  strace -c -f -p "$pid" -o "$OUT/strace_$sys.txt" &
  st=$!
  sleep 0.5
  pingpong $sys "$at"
  kill -INT $st; wait $st 2>/dev/null || true
  taskset -a -p "$saved" "$pid" >/dev/null
  cs=$(grep context-switches "$OUT/cs_$sys.txt" | cut -d, -f1)
  echo "$sys: p50 $((p50 / 1000)) us; $(awk -v c="$cs" -v n=$((RTT + 1000)) 'BEGIN { printf "%.1f", c / n }') context switches per round trip on CPU 0"
  echo "$sys: daemon syscalls over $((2 * (RTT + 1000))) messages (under strace):"
  sed -n '3,8p' "$OUT/strace_$sys.txt" | awk '{ if (NF == 6) print "   ", $6, $4, "calls,", $5, "errors"; else print "   ", $5, $4, "calls" }'
done

echo
echo "== 3. Top functions, 1->1 16 B, $N messages (perf, cpu-clock)"
"$B" sub --system nc --at "$OUT/nc" --count "$N" --size 16 >"$OUT/sub.out" &
sub=$!
until grep -q READY "$OUT/sub.out" 2>/dev/null; do sleep 0.05; done
perf record -q -e cpu-clock -F 2000 -g -p "$NC" -o "$OUT/daemon.data" 2>/dev/null &
rec=$!
perf record -q -e cpu-clock -F 2000 -g -p "$sub" -o "$OUT/subscriber.data" 2>/dev/null &
rec2=$!
sleep 0.3
perf record -q -e cpu-clock -F 2000 -g -o "$OUT/publisher.data" -- \
  "$B" pub --system nc --at "$OUT/nc" --count "$N" --size 16 >/dev/null 2>&1
wait $sub
kill -INT $rec $rec2 2>/dev/null || true
wait $rec $rec2 2>/dev/null || true
for who in daemon subscriber publisher; do
  echo "-- $who (self time)"
  perf report -i "$OUT/$who.data" --no-children --sort sym --stdio -g none 2>/dev/null \
    | grep -v '^#' | grep -v '^$' | head -12
done
echo
echo "raw data in $OUT (perf report -i $OUT/daemon.data --call-graph ... for call chains;"
echo "record with --call-graph dwarf for full stacks)"
