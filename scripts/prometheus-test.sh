#!/usr/bin/env bash
# ncserver's /metrics under a real Prometheus: starts target/debug/ncserver
# with the HTTP endpoint on loopback and Debian's `prometheus` scraping it
# every second, makes traffic with ncclient, and checks through
# Prometheus's query API (/api/v1/query) that the netcluster_ counters have
# the expected values; `promtool check metrics` must accept /metrics.
# Needs prometheus (with promtool) and curl; without them it says why and
# skips, unless NETCLUSTER_REQUIRE_NETNS=1 (CI), where that is an error.
# Bounded in time; everything it starts is stopped and its files removed.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=""
for tool in prometheus promtool curl; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  if [ "${NETCLUSTER_REQUIRE_NETNS:-0}" = 1 ]; then
    echo "error: the Prometheus test needs:$missing (apt install prometheus curl); NETCLUSTER_REQUIRE_NETNS=1 requires every test" >&2
    exit 1
  fi
  echo "skipping the Prometheus test: missing$missing (apt install prometheus curl)"
  exit 0
fi

cargo build -q --bin ncserver --bin ncclient
bin=$PWD/target/debug
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "error: prometheus-test: $*" >&2
  for f in "$tmp"/*.log; do echo "--- $f" >&2; tail -n 30 "$f" >&2; done
  exit 1
}

# Waits up to $1 seconds for the command in the remaining arguments.
wait_for() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.2
  done
}

# A free loopback port for Prometheus's own web server: the first one from
# 19090 on that nobody answers on.
free_port() {
  local p
  for p in $(seq 19090 19190); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  return 1
}

mkdir "$tmp/sock"
export NETCLUSTER_SOCKET_DIR=$tmp/sock
cat > "$tmp/config.json" <<'JSON'
{
  "http": { "listen": "127.0.0.1:0" },
  "channels": { "A": { "propagatetochannels": "^B$" }, "B": {} }
}
JSON
"$bin/ncserver" "$tmp/config.json" 2> "$tmp/ncserver.log" &
pids+=($!)
wait_for 20 grep -q "HTTP endpoint listening" "$tmp/ncserver.log" || fail "ncserver did not start its HTTP endpoint"
target=$(sed -n 's/.*HTTP endpoint listening.*addr=\([0-9.:]*\).*/\1/p' "$tmp/ncserver.log" | tail -n 1)
[ -n "$target" ] || fail "no HTTP address in the log"

echo "== promtool check metrics on http://$target/metrics"
curl -fsS "http://$target/metrics" > "$tmp/metrics.txt"
promtool check metrics < "$tmp/metrics.txt" || fail "promtool check metrics refused /metrics"

port=$(free_port) || fail "no free port for Prometheus"
cat > "$tmp/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: netcluster
    static_configs:
      - targets: ["$target"]
YAML
promtool check config "$tmp/prometheus.yml" >/dev/null
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address="127.0.0.1:$port" > "$tmp/prometheus.log" 2>&1 &
pids+=($!)
api="http://127.0.0.1:$port/api/v1"
wait_for 60 curl -fs -o /dev/null "http://127.0.0.1:$port/-/ready" || fail "Prometheus did not get ready"

# Traffic: a listener on B, ten messages emitted on A (propagated to B).
"$bin/ncclient" listen B tick > "$tmp/listen.out" 2> "$tmp/listen.log" &
pids+=($!)
wait_for 20 test -s "$tmp/listen.log" || fail "ncclient listen did not subscribe"
seq 10 | "$bin/ncclient" emit A tick
received() { test "$(wc -l < "$tmp/listen.out")" -ge 10; }
wait_for 20 received || fail "the listener got $(wc -l < "$tmp/listen.out") of 10 messages"

# The value Prometheus has for a query, or nothing.
query() {
  curl -fsS -G "$api/query" --data-urlencode "query=$1" |
    sed -n 's/.*"value":\[[0-9.e+]*,"\([^"]*\)"\].*/\1/p'
}
has() { test "$(query "$1")" = "$2"; }
expect() {
  local q=$1 want=$2
  if ! wait_for 60 has "$q" "$want"; then
    fail "Prometheus says $q = '$(query "$q")', expected $want"
  fi
  echo "ok: $q = $want"
}

echo "== checking values through Prometheus's query API ($api/query)"
expect 'up{job="netcluster"}' 1
expect 'netcluster_channel_messages_received_total{channel="A"}' 10
expect 'netcluster_channel_messages_delivered_total{channel="B"}' 10
expect 'netcluster_channel_clients{channel="B"}' 1
expect 'netcluster_channel_disconnects_total{channel="A",cause="left"}' 1
expect 'netcluster_channel_slow_consumer_drops_total{channel="B"}' 0
expect 'netcluster_net_connected' 0
expect 'count(netcluster_build_info)' 1
expect 'netcluster_open_fds > bool 5' 1
expect 'netcluster_resident_memory_bytes > bool 100000' 1
echo "prometheus-test: ok"
