#!/usr/bin/env bash
# The Python client's checks: creates a virtual environment (python3 -m venv),
# installs pytest, mypy and this package into it (pip install ., as a user
# would), runs `mypy --strict` on the package's sources and pytest against
# the real ncserver ($NCSERVER, default target/debug/ncserver, built with
# cargo if missing).
#
#   clients/python/run-tests.sh              # from anywhere
#   VENV=/tmp/v clients/python/run-tests.sh  # another venv location (default: a fresh temp dir)
#   clients/python/run-tests.sh -k reconnect # extra arguments go to pytest
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-python3}

if [ -z "${VENV:-}" ]; then
  VENV=$(mktemp -d /tmp/netcluster-py.XXXXXX)
  trap 'rm -rf "$VENV"' EXIT
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PY" -m venv "$VENV" 2>"$VENV.err"; then
    cat "$VENV.err" >&2; rm -f "$VENV.err"
    echo "error: '$PY -m venv' failed; on Debian/Ubuntu install the python3-venv package" >&2
    exit 1
  fi
  rm -f "$VENV.err"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check pytest mypy
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$HERE"

export NCSERVER=${NCSERVER:-$ROOT/target/debug/ncserver}
if [ ! -x "$NCSERVER" ]; then
  echo "building $NCSERVER"
  (cd "$ROOT" && cargo build --quiet --bin ncserver)
fi

echo "== mypy --strict (clients/python/src)"
(cd "$HERE" && "$VENV/bin/python" -m mypy --strict src/netcluster)

echo "== pytest (clients/python/tests, against $NCSERVER)"
# -p no:cacheprovider: leave no .pytest_cache in the tree. The tests import
# the installed package, not src/.
cd "$HERE/tests"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$HERE" -c "$HERE/pyproject.toml" "$@" .
