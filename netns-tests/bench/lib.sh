# shellcheck shell=bash
# Shared helpers for the benchmark scripts (sourced). Timings come from bash's EPOCHREALTIME
# around direct plugin execs inside a private host namespace (no `ip netns exec` per call).

# ms START END -> milliseconds with 3 decimals
ms() { local a=${1/./} b=${2/./}; printf '%d.%03d\n' $(( (10#$b - 10#$a) / 1000 )) $(( (10#$b - 10#$a) % 1000 )); }

# stats LABEL FILE -> "LABEL n= median= p90= min= max=" ; prints the median on fd 3 too
stats() {
  sort -g "$2" | awk -v l="$1" '{a[NR]=$1} END {
    printf "%-34s n=%-4d median=%8.2fms p90=%8.2fms min=%8.2fms max=%8.2fms\n", l, NR, a[int((NR+1)/2)], a[int(NR*0.9+0.5)], a[1], a[NR] }'
}

median() { sort -g "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# The release binaries of this workspace.
our_bin_dir() {
  local top; top="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  (cd "$top" && cargo build --release --bins -q >&2)
  echo "$(cd "$top" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release"
}
