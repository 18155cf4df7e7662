#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a set time and prints how many
# inputs each one ran. Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
# (default: 60 seconds, every target). Needs a nightly toolchain and
# cargo-fuzz (`cargo install cargo-fuzz`).
#
# Each target starts from its seed corpus in fuzz/corpus/TARGET (read only)
# and keeps what it finds in fuzz/target/corpus/TARGET (not committed), so
# runs build on each other. A crash stops that target, leaves the input in
# fuzz/artifacts/TARGET, and makes the script exit non-zero at the end.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build >/dev/null 2>&1 || cargo +nightly fuzz build

failed=0
results=()
for t in "${targets[@]}"; do
  work="target/corpus/$t"
  mkdir -p "$work" "corpus/$t"
  log="target/fuzz-$t.log"
  echo "== $t: ${secs}s"
  status=ok
  # New inputs go to the first corpus directory, so the seeds stay as they are.
  if ! cargo +nightly fuzz run "$t" "$work" "corpus/$t" -- \
      -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    status="FAILED (see fuzz/$log and fuzz/artifacts/$t)"
    failed=1
  fi
  # (A target that crashed may not have printed these.)
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
  results+=("$(printf '%-16s %12s %8s %9s  %s' "$t" "${runs:-?}" "${took:-$secs}" "${cov:-?}" "$status")")
done

echo
printf '%-16s %12s %8s %9s  %s\n' target runs seconds coverage result
printf '%s\n' "${results[@]}"
exit "$failed"
