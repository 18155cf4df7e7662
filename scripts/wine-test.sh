#!/usr/bin/env bash
# Windows tests under Wine: builds the Windows binaries
# (x86_64-pc-windows-gnu), then runs on Wine (1) the named-pipe transport,
# client library and ncclient tests of the Windows build, (2) ncserver.exe
# with several channels, checked with ncclient.exe: emit/listen across a
# propagation rule, every control function, bad configs, a second daemon,
# many concurrent clients, Ctrl-C and the default config locations, (3) the
# Windows service (install, start, stop, uninstall) and (4) UDP multicast
# between two daemons in two Wine prefixes.
#
# Needs wine64 and mingw-w64 (apt-get install wine64 mingw-w64) and the
# Rust target (rustup target add x86_64-pc-windows-gnu). Without them it
# says why and skips, unless NETCLUSTER_REQUIRE_NETNS=1 (CI), where it
# fails. Every Wine command is bounded by `timeout`; the Wine prefixes live
# in a temporary directory and their wineservers are killed at the end.
# KEEP=1 keeps that directory (logs, prefixes) for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=x86_64-pc-windows-gnu

skip() {
  if [ "${NETCLUSTER_REQUIRE_NETNS:-0}" = 1 ]; then
    echo "wine-test: FAILED: $1 (required: NETCLUSTER_REQUIRE_NETNS=1)" >&2
    exit 1
  fi
  echo "wine-test: skipped: $1"
  exit 0
}

first_executable() {
  local c
  for c in "$@"; do
    if [ -n "$c" ] && [ -x "$c" ]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

# Debian's wine64 package keeps its binaries in /usr/lib/wine.
WINE=$(first_executable "${WINE:-}" "$(command -v wine64 || true)" /usr/lib/wine/wine64) ||
  skip "wine64 is not installed (apt-get install wine64)"
WINESERVER=$(first_executable "${WINESERVER:-}" "$(dirname "$WINE")/wineserver" \
  "$(command -v wineserver || true)" /usr/lib/wine/wineserver) ||
  skip "wineserver is not installed (apt-get install wine64)"
command -v x86_64-w64-mingw32-gcc >/dev/null ||
  skip "mingw-w64 is not installed (apt-get install mingw-w64)"
if ! ls "$(rustc --print sysroot)/lib/rustlib/$TARGET/lib/"libstd-* >/dev/null 2>&1; then
  skip "the Rust target $TARGET is not installed (rustup target add $TARGET)"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/netcluster-wine.XXXXXX")
PREFIX=$WORK/prefix
PREFIX2=$WORK/prefix2
export WINEPREFIX=$PREFIX WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "$PREFIX" "$PREFIX2"; do
    if [ -d "$p" ]; then
      WINEPREFIX=$p timeout 30 "$WINESERVER" -k 2>/dev/null || true
    fi
  done
  if [ "${KEEP:-0}" = 1 ]; then
    echo "wine-test: kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

PASSED=0
FAILED=0
ok() {
  PASSED=$((PASSED + 1))
  echo "ok   $1"
}
fail() {
  FAILED=$((FAILED + 1))
  echo "FAIL $1" >&2
  if [ -n "${2:-}" ] && [ -f "$2" ]; then
    sed 's/^/     | /' "$2" | tail -n 30 >&2
  fi
}
# expect NAME FILE PATTERN...: every fixed-string PATTERN is in FILE.
expect() {
  local name=$1 file=$2 pat
  shift 2
  for pat in "$@"; do
    if ! grep -qF -- "$pat" "$file"; then
      fail "$name (missing: $pat)" "$file"
      return 0
    fi
  done
  ok "$name"
}
# status_is NAME WANT GOT FILE
status_is() {
  if [ "$3" = "$2" ]; then ok "$1"; else fail "$1 (exit status $3, expected $2)" "$4"; fi
}

echo "== wine: building the ProcessPrng shim and the Windows binaries"
x86_64-w64-mingw32-gcc -shared -O2 -o "$WORK/bcryptprimitives.dll" \
  tests/wine/processprng_shim.c -ladvapi32
cargo build --target "$TARGET" --bin ncserver --bin ncclient
TEST_PACKAGES=(-p netcluster-local -p netcluster -p netcluster-cli)
cargo test --target "$TARGET" --no-run "${TEST_PACKAGES[@]}"
OUT=${CARGO_TARGET_DIR:-$ROOT/target}/$TARGET/debug
mkdir -p "$WORK/bin"
cp "$OUT/ncserver.exe" "$OUT/ncclient.exe" "$WORK/bin/"

echo "== wine: creating the Wine prefixes"
timeout 300 "$WINE" wineboot --init >"$WORK/wineboot.log" 2>&1 || {
  cat "$WORK/wineboot.log" >&2
  exit 1
}
timeout 120 "$WINESERVER" -w
# Rust's std needs ProcessPrng (bcryptprimitives.dll), which Wine 8 lacks.
cp "$WORK/bcryptprimitives.dll" "$PREFIX/drive_c/windows/system32/"
cp -a "$PREFIX" "$PREFIX2"
# Keep the wineserver (and with it services) up between commands.
"$WINESERVER" -p600

cd "$WORK"
ncc() { timeout 60 "$WINE" bin/ncclient.exe "$@"; }
# start_server LOG ARGS...: starts ncserver.exe in the background; SERVER is its pid.
start_server() {
  local log=$1
  shift
  timeout 600 "$WINE" bin/ncserver.exe "$@" >"$log" 2>&1 &
  SERVER=$!
  PIDS+=("$SERVER")
}
# wait_ready LOG: until the daemon answers status() (60 s at most).
wait_ready() {
  local i
  for i in $(seq 1 120); do
    if ncc -c 'status()' >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$SERVER" 2>/dev/null; then break; fi
    sleep 0.5
  done
  echo "ncserver.exe did not come up:" >&2
  cat "$1" >&2
  return 1
}
# stop_server: Ctrl-C (Wine turns SIGINT into a console Ctrl-C event);
# returns the daemon's exit status.
stop_server() {
  local st=0
  kill -INT "$SERVER" 2>/dev/null || true
  wait "$SERVER" || st=$?
  return "$st"
}
# clients_on CHANNEL: the number of clients showchannel() reports.
clients_on() {
  ncc -c 'showchannel()' | tr -d ' \n' |
    grep -o "\"channel\":\"$1\",\"clients\":[0-9]*" | grep -o '[0-9]*$' || echo 0
}
# wait_clients CHANNEL N: until at least N clients are on CHANNEL (60 s at most).
wait_clients() {
  local i
  for i in $(seq 1 120); do
    if [ "$(clients_on "$1")" -ge "$2" ]; then return 0; fi
    sleep 0.5
  done
  return 1
}

echo "== wine: transport, client library and ncclient tests of the Windows build"
# Pipe names are global to a Wine prefix (the socket directory plays no
# part on Windows), so the tests' daemons run one at a time. Skipped: four
# tests that look at socket files or Unix paths, one that expects an empty
# socket dir to hold no daemon (pipe names are machine-wide: the running
# test daemon answers) and the quick start's shell idiom (needs sh).
# Also skipped: write_path's restart while a subscriber has stopped reading
# (the blocked subscriber keeps its end of the old pipe instance open, so
# the in-process restart finds the pipe name still in use and refuses it;
# a known limit on Windows, described in the README's Windows section).
if (cd "$ROOT" && CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$WINE" timeout 900 \
  cargo test --target "$TARGET" "${TEST_PACKAGES[@]}" --no-fail-fast -- --test-threads=1 \
  --skip reload_adds_removes_and_changes_channels_keeping_other_clients \
  --skip bad_reload_is_refused_and_the_old_config_stays \
  --skip reload_paths_become_absolute \
  --skip a_missing_channel_or_daemon_is_status_2_naming_the_socket \
  --skip errors_speak_ncclient \
  --skip quick_start_emit_after_the_listening_line_always_arrives \
  --skip a_break_while_a_write_is_cut_is_reported_and_the_next_connection_starts_clean) >"$WORK/cargo-test.log" 2>&1; then
  ok "cargo test of netcluster-local, netcluster, netcluster-cli under Wine ($(grep -c '^test .* ok$' "$WORK/cargo-test.log") tests)"
else
  fail "cargo test of netcluster-local, netcluster, netcluster-cli under Wine" "$WORK/cargo-test.log"
fi

echo "== wine: ncserver.exe and ncclient.exe"
cat >cfg.json <<'EOF'
{
  // Several channels: A's messages also reach B and every "log." channel.
  "channels": {
    "control": {},
    "A": { "propagatetochannels": ["^B$", "^log\\."] },
    "B": {},
    "log.app": { "dumptoconsole": true },
    "quiet": {}
  }
}
EOF
start_server server.log cfg.json
wait_ready server.log

ncc -c 'status()' >out.txt 2>&1 || true
expect "status()" out.txt '"channels": 5' '"config": "cfg.json"'
ncc -c 'showconfig()' >out.txt 2>&1 || true
expect "showconfig()" out.txt '"log.app"' '"quiet"' '"^log\\."'
ncc -c 'showchannel()' >out.txt 2>&1 || true
expect "showchannel() names the pipes" out.txt '"socket": "\\\\.\\pipe\\netcluster-A"' \
  '"socket": "\\\\.\\pipe\\netcluster-log.app"'

# emit/listen across the propagation rule.
ncc listen B --count 3 >b.out 2>b.err &
PIDS+=($!)
LB=$!
ncc listen log.app greet --count 3 >log.out 2>log.err &
PIDS+=($!)
LL=$!
ncc listen quiet --timeout 20 >quiet.out 2>quiet.err &
PIDS+=($!)
LQ=$!
wait_clients B 1 && wait_clients log.app 1 && wait_clients quiet 1
ncc emit A greet '{"n":1}' >emit.out 2>&1 || fail "emit A greet" emit.out
printf '2\n3\n' | ncc emit A greet >emit.out 2>&1 || fail "emit A greet (stdin lines)" emit.out
wait "$LB" || true
wait "$LL" || true
expect "emit on A reaches a listener on B" b.out \
  '{"channel":"A","event":"greet","data":{"n":1},' '"data":2,' '"data":3,'
expect "emit on A reaches a listener on log.app (regex rule)" log.out \
  '{"channel":"A","event":"greet","data":{"n":1},' '"data":3,'
if [ "$(wc -l <b.out)" = 3 ]; then ok "B got exactly 3 messages"; else fail "B got $(wc -l <b.out) messages" b.out; fi
ncc emit quiet ping 1 >/dev/null 2>&1 || true
ncc emit log.app note '"dumped"' >/dev/null 2>&1 || true
ncc -c 'showchannel("quiet")' >out.txt 2>&1 || true
QID=$(tr -d ' \n' <out.txt | grep -o '"id":[0-9]*' | head -n 1 | grep -o '[0-9]*' || true)
expect "showchannel(\"quiet\")" out.txt '"name": "ncclient listen"' '"channel": "quiet"'
if [ -n "$QID" ]; then
  ncc -c "showclient(\"quiet\", $QID)" >out.txt 2>&1 || true
  expect "showclient(\"quiet\", $QID)" out.txt "\"id\": $QID" '"subscriptions"' '"pid"'
else
  fail "showclient: no client id in showchannel(\"quiet\")" out.txt
fi
kill "$LQ" 2>/dev/null || true
wait "$LQ" 2>/dev/null || true
expect "the quiet channel got only its own message" quiet.out '"channel":"quiet","event":"ping"'

# The piped REPL.
printf 'help()\nshowchannel("B")\nstatus()\n' | ncc >repl.out 2>&1 && st=0 || st=$?
status_is "piped REPL exits 0" 0 "$st" repl.out
expect "piped REPL answers each line" repl.out 'showclient' '"channels": 5'

# reloadconfig: add a channel, remove one; then a bad file is refused.
cat >cfg2.json <<'EOF'
{ "channels": { "A": { "propagatetochannels": "^B$" }, "B": {}, "log.app": {}, "added": {} } }
EOF
ncc -c 'reloadconfig("cfg2.json")' >out.txt 2>&1 || true
expect "reloadconfig adds and removes channels" out.txt '"added": [' '"added"' '"removed": [' '"quiet"'
ncc emit added hello 1 >out.txt 2>&1 && st=0 || st=$?
status_is "the added channel is served" 0 "$st" out.txt
ncc emit quiet hello 1 >out.txt 2>&1 && st=0 || st=$?
status_is "the removed channel is gone (exit 2)" 2 "$st" out.txt
expect "a missing channel names its pipe" out.txt 'no channel "quiet"' '\\.\pipe\netcluster-quiet'
cat >bad.json <<'EOF'
{
  "channels": {
    "A": { "propagatetochanels": true }
  }
}
EOF
ncc -c 'reloaconfig("bad.json")' >out.txt 2>&1 && st=0 || st=$?
expect "a bad reload is refused with file:line:column" out.txt \
  'bad.json:3:12: channels.<channel>.<key>: unknown key' 'did you mean "propagatetochannels"'
if [ "$st" != 0 ]; then ok "a refused reload exits non-zero ($st)"; else fail "a refused reload exited 0" out.txt; fi

# Bad configs and a second daemon.
timeout 60 "$WINE" bin/ncserver.exe --check bad.json >out.txt 2>&1 && st=0 || st=$?
status_is "ncserver --check bad.json exits 2" 2 "$st" out.txt
expect "ncserver --check names file:line:column and the key" out.txt \
  'bad.json:3:12: channels.A.propagatetochanels: unknown key; did you mean "propagatetochannels"?'
timeout 60 "$WINE" bin/ncserver.exe --check cfg.json >out.txt 2>&1 && st=0 || st=$?
status_is "ncserver --check cfg.json exits 0" 0 "$st" out.txt
timeout 60 "$WINE" bin/ncserver.exe bad.json >out.txt 2>&1 && st=0 || st=$?
status_is "ncserver with a bad config exits 2" 2 "$st" out.txt
timeout 60 "$WINE" bin/ncserver.exe cfg.json >out.txt 2>&1 && st=0 || st=$?
status_is "a second daemon on the same channels exits 2" 2 "$st" out.txt
expect "a second daemon is told the pipe is in use" out.txt \
  'another ncserver is already serving channel' '\\.\pipe\netcluster-'

# Many concurrent clients: 20 listeners and 10 emitters connected at once.
# Their processes start a quarter second apart: a Wine process start is
# heavy, and 30 at once on a small machine can hold a client back longer
# than the daemon's 200 ms wait for a native hello (it then takes the
# client for a seed client). The connection bursts themselves are tested
# in-process by the transport tests above (64 clients at once).
LISTENERS=20
EMITTERS=10
PER=5
TOTAL=$((EMITTERS * PER))
LPIDS=()
for i in $(seq 1 $LISTENERS); do
  ncc listen B burst --count $TOTAL >"many.$i.out" 2>"many.$i.err" &
  LPIDS+=($!)
  PIDS+=($!)
  sleep 0.25
done
if wait_clients B $LISTENERS; then ok "$LISTENERS listeners connected at once"; else fail "$LISTENERS listeners did not all connect"; fi
EPIDS=()
for e in $(seq 1 $EMITTERS); do
  seq 1 $PER | sed "s/^/\"e$e-/; s/\$/\"/" | ncc emit A burst >"emit.$e.out" 2>&1 &
  EPIDS+=($!)
  sleep 0.25
done
bad=0
for p in "${EPIDS[@]}"; do wait "$p" || bad=$((bad + 1)); done
if [ $bad = 0 ]; then ok "$EMITTERS concurrent emitters succeeded"; else fail "$bad of $EMITTERS emitters failed" emit.1.out; fi
for p in "${LPIDS[@]}"; do wait "$p" || true; done
short=0
disorder=0
for i in $(seq 1 $LISTENERS); do
  [ "$(grep -c '"event":"burst"' "many.$i.out" || true)" = $TOTAL ] || short=$((short + 1))
  for e in $(seq 1 $EMITTERS); do
    # Each emitter's messages arrive in the order sent.
    got=$(grep -o "\"e$e-[0-9]*\"" "many.$i.out" | tr -d '"' | sed "s/^e$e-//" | tr '\n' ' ' || true)
    [ "$got" = "$(seq 1 $PER | tr '\n' ' ')" ] || disorder=$((disorder + 1))
  done
done
if [ $short = 0 ]; then ok "every listener got all $TOTAL messages"; else fail "$short listeners missed messages" many.1.out; fi
if [ $disorder = 0 ]; then ok "every sender's messages arrived in order"; else fail "$disorder sender/listener pairs out of order" many.1.out; fi

# Ctrl-C stops the daemon gracefully.
stop_server && st=0 || st=$?
status_is "Ctrl-C: ncserver.exe exits 0" 0 "$st" server.log
expect "Ctrl-C: the daemon stops gracefully" server.log 'signal received, stopping' 'closing listeners'
expect "dumptoconsole logs log.app's own messages" server.log '[log.app] note from'

# Default config locations: beside the executable, then %ProgramData%.
cp cfg.json bin/config.json
start_server beside.log
wait_ready beside.log && ncc -c 'status()' >out.txt 2>&1 || true
stop_server || true
expect "config.json beside ncserver.exe is found" beside.log 'using config' 'bin\config.json'
rm bin/config.json
mkdir -p "$PREFIX/drive_c/ProgramData/netcluster"
cp cfg.json "$PREFIX/drive_c/ProgramData/netcluster/config.json"
start_server programdata.log
wait_ready programdata.log || true
stop_server || true
expect "then %ProgramData%\\netcluster\\config.json" programdata.log \
  'using config C:\ProgramData\netcluster\config.json'
rm "$PREFIX/drive_c/ProgramData/netcluster/config.json"

echo "== wine: the Windows service"
SVCLOG=$PREFIX/drive_c/ProgramData/netcluster/ncserver.log
timeout 60 "$WINE" bin/ncserver.exe --install-service cfg2.json >svc.out 2>&1 && st=0 || st=$?
status_is "ncserver --install-service exits 0" 0 "$st" svc.out
expect "the service is installed" svc.out 'installed the service "netcluster"'
timeout 60 "$WINE" bin/ncserver.exe --install-service cfg2.json >svc.out 2>&1 && st=0 || st=$?
status_is "installing twice exits 2" 2 "$st" svc.out
expect "installing twice says so" svc.out 'already installed'
timeout 60 "$WINE" sc start netcluster >svc.out 2>&1 || true
SERVER=0
up=0
for i in $(seq 1 60); do
  if ncc -c 'status()' >out.txt 2>&1; then
    up=1
    break
  fi
  sleep 0.5
done
if [ $up = 1 ]; then ok "the service serves the channels"; else fail "the service did not start" "$SVCLOG"; fi
expect "the service runs with the installed config" out.txt 'cfg2.json' '"channels": 5'
timeout 60 "$WINE" sc query netcluster >svc.out 2>&1 || true
expect "sc query: RUNNING" svc.out 'RUNNING'
timeout 60 "$WINE" bin/ncserver.exe --uninstall-service >svc.out 2>&1 && st=0 || st=$?
status_is "ncserver --uninstall-service exits 0" 0 "$st" svc.out
expect "the service is stopped and removed" svc.out 'stopped the service' 'removed the service'
expect "the service stopped gracefully" "$SVCLOG" 'stop requested, stopping' 'closing listeners' 'service netcluster stopped'
ncc -c 'status()' >out.txt 2>&1 && st=0 || st=$?
status_is "no daemon after uninstalling (exit 2)" 2 "$st" out.txt
timeout 60 "$WINE" bin/ncserver.exe --uninstall-service >svc.out 2>&1 && st=0 || st=$?
status_is "uninstalling twice exits 2" 2 "$st" svc.out

echo "== wine: UDP multicast between two daemons (two Wine prefixes)"
PORT=$((20000 + RANDOM % 20000))
cat >net.json <<EOF
{
  "connecttonet": true, "addr": "239.255.77.99", "port": $PORT,
  "interface": "127.0.0.1", "loopback": true,
  "channels": { "control": {}, "A": { "propagatetonet": true } }
}
EOF
WINEPREFIX=$PREFIX2 "$WINESERVER" -p600
start_server net1.log net.json
SERVER1=$SERVER
wait_ready net1.log
WINEPREFIX=$PREFIX2 start_server net2.log net.json
SERVER2=$SERVER
up=0
for i in $(seq 1 120); do
  if WINEPREFIX=$PREFIX2 ncc -c 'showpeers()' >peers.txt 2>&1 && grep -q '"node"' peers.txt &&
    ncc -c 'showpeers()' >peers1.txt 2>&1 && grep -q '"addr": "127.0.0.1' peers1.txt; then
    up=1
    break
  fi
  sleep 0.5
done
if [ $up = 1 ]; then ok "the two daemons see each other (showpeers)"; else fail "the daemons do not see each other" net2.log; fi
WINEPREFIX=$PREFIX2 ncc listen A --count 1 --timeout 60 >net.out 2>net.err &
NL=$!
PIDS+=($NL)
WINEPREFIX=$PREFIX2 wait_clients A 1 || true
ncc emit A hello '"over the network"' >out.txt 2>&1 || fail "emit on the first daemon" out.txt
wait "$NL" || true
expect "a message crosses from one daemon to the other" net.out \
  '{"channel":"A","event":"hello","data":"over the network"'
SERVER=$SERVER2
WINEPREFIX=$PREFIX2 stop_server || true
SERVER=$SERVER1
stop_server || true

echo "wine-test: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
