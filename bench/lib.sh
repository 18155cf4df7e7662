# Shell helpers shared by the profiling scripts in bench/ (sourced, not run).

# Waits (bounded: 60 s) for READY in a role's output file $1.
ready() {
  for _ in $(seq 600); do
    grep -q READY "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$(basename "$0"): no READY in $1" >&2
  return 1
}
