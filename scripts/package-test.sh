#!/usr/bin/env bash
# Tests the Debian package as root on a Debian machine: builds it
# (scripts/package.sh), installs it with dpkg -i, checks the user and group
# netcluster, the conffile and the unit, starts the installed ncserver as
# user netcluster without systemd (sockets in a directory like the unit's
# RuntimeDirectory), checks that a user in group netcluster can emit and
# listen through it and that a user outside the group cannot, stops it,
# removes the package with dpkg -r and checks that no process is left.
# Without root or dpkg it says why and skips, unless
# NETCLUSTER_REQUIRE_NETNS=1 (CI), where that is an error. Bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  if [ "${NETCLUSTER_REQUIRE_NETNS:-0}" = 1 ]; then
    echo "error: package test: $*; NETCLUSTER_REQUIRE_NETNS=1 requires every test" >&2
    exit 1
  fi
  echo "skipping the package test: $*"
  exit 0
}
[ "$(id -u)" = 0 ] || skip "it needs root (dpkg -i)"
command -v dpkg >/dev/null 2>&1 || skip "dpkg not found (not Debian)"
command -v adduser >/dev/null 2>&1 || skip "adduser not found (apt install adduser)"
command -v setpriv >/dev/null 2>&1 || skip "setpriv not found (util-linux)"
cargo deb --version >/dev/null 2>&1 || skip "cargo-deb not found (cargo install cargo-deb)"
if dpkg -s netcluster >/dev/null 2>&1; then
  skip "a netcluster package is already installed here; not touching it"
fi

deb=$(scripts/package.sh | tail -n 1)
echo "== package: $deb"
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Architecture\|Depends\):/  &/p'

members=nc-pkgtest-member
outsider=nc-pkgtest-outsider
tmp=$(mktemp -d)
daemon=""
cleanup() {
  [ -n "$daemon" ] && kill "$daemon" 2>/dev/null || true
  pkill -u "$members" 2>/dev/null || true
  pkill -u "$outsider" 2>/dev/null || true
  userdel "$members" 2>/dev/null || true
  userdel "$outsider" 2>/dev/null || true
  dpkg -P netcluster >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "error: package test: $*" >&2
  for f in "$tmp"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }; done
  exit 1
}
wait_for() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.2
  done
}

echo "== dpkg -i"
dpkg -i "$deb"
getent passwd netcluster >/dev/null || fail "no user netcluster"
getent group netcluster >/dev/null || fail "no group netcluster"
[ "$(id -gn netcluster)" = netcluster ] || fail "netcluster's group is $(id -gn netcluster)"
dpkg-query -W -f='${Conffiles}\n' netcluster | grep -q "/etc/netcluster/config.json" ||
  fail "/etc/netcluster/config.json is not a conffile"
for f in /usr/bin/ncserver /usr/bin/ncclient /lib/systemd/system/ncserver.service /etc/profile.d/netcluster.sh; do
  [ -e "$f" ] || fail "$f not installed"
done
# Login shells' clients look where the packaged daemon's sockets are.
[ "$(env -u NETCLUSTER_SOCKET_DIR sh -c '. /etc/profile.d/netcluster.sh; echo "$NETCLUSTER_SOCKET_DIR"')" = /run/netcluster ] ||
  fail "/etc/profile.d/netcluster.sh does not point clients at /run/netcluster"
/usr/bin/ncserver --version
setpriv --reuid=netcluster --regid=netcluster --init-groups \
  /usr/bin/ncserver --check /etc/netcluster/config.json || fail "user netcluster cannot use the default config"

echo "== ncserver as user netcluster, without systemd"
useradd --no-create-home --groups netcluster "$members"
useradd --no-create-home "$outsider"
sock=$tmp/run
install -d -o netcluster -g netcluster -m 0750 "$sock"
chmod 0711 "$tmp"
export NETCLUSTER_SOCKET_DIR=$sock
setpriv --reuid=netcluster --regid=netcluster --init-groups \
  /usr/bin/ncserver /etc/netcluster/config.json 2> "$tmp/ncserver.log" &
daemon=$!
wait_for 20 grep -q "ncserver serving" "$tmp/ncserver.log" || fail "ncserver did not start"
[ "$(ps -o user= -p "$daemon")" = netcluster ] || fail "ncserver does not run as netcluster"

as_member() { setpriv --reuid="$members" --regid="$(id -g "$members")" --init-groups "$@"; }
as_member /usr/bin/ncclient listen B tick --count 3 > "$tmp/listen.out" 2> "$tmp/listen.log" &
listener=$!
wait_for 20 test -s "$tmp/listen.log" || fail "a member of netcluster could not listen"
printf '1\n2\n3\n' | as_member /usr/bin/ncclient emit A tick || fail "a member of netcluster could not emit"
wait_for 20 test ! -d "/proc/$listener" || fail "the listener did not get 3 messages"
wait "$listener" || fail "ncclient listen failed"
[ "$(wc -l < "$tmp/listen.out")" = 3 ] || fail "listened: $(cat "$tmp/listen.out")"
# Emitted on A, propagated to B: the message names its channel of origin.
grep -q '"channel":"A","event":"tick","data":1' "$tmp/listen.out" || fail "listened: $(cat "$tmp/listen.out")"
echo "ok: a member of group netcluster emits on A and listens on B"

if setpriv --reuid="$outsider" --regid="$(id -g "$outsider")" --init-groups \
  /usr/bin/ncclient emit A tick 1 2> "$tmp/outsider.log"; then
  fail "a user outside group netcluster could emit"
fi
echo "ok: a user outside the group is refused ($(head -n 1 "$tmp/outsider.log"))"

echo "== stop, dpkg -r"
kill -TERM "$daemon"
wait_for 15 test ! -d "/proc/$daemon" || fail "ncserver did not stop on SIGTERM"
wait "$daemon" || fail "ncserver exited with an error"
daemon=""
dpkg -r netcluster
[ ! -e /usr/bin/ncserver ] || fail "/usr/bin/ncserver left after dpkg -r"
if pgrep -u netcluster >/dev/null || pgrep -f '^/usr/bin/ncserver' >/dev/null; then
  pgrep -a -u netcluster >&2 || true
  fail "processes left after dpkg -r"
fi
echo "package-test: ok"
