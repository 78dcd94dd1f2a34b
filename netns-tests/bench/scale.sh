#!/usr/bin/env bash
# Benchmark (not a test): Calico block IPAM as the cluster grows, on a 3-member etcd, the
# embedded SQLite store and the Kubernetes test API server (all started here on loopback and
# removed on exit). For each size the cluster is grown to that many nodes with PODS pods each,
# then PROBE new nodes do a first ADD (the block claim), PODS steady ADDs and random DEL churn.
# Prints a table per store, the ratios of the largest size to the smallest (the goals: first
# ADD within 1.5x, steady ADD p99 within 1.2x), and renders scale.png beside this script.
# Every run also checks that no address was handed out twice. Figures: README "Scale".
# etcd compacts its history every 5 minutes as in production (kube-apiserver compacts its etcd
# that often; etcd itself never does by default, so a bench cluster's MVCC history and bbolt
# file would only grow): SCALE_ETCD_ARGS="" runs etcd with its defaults instead, other etcd
# flags go there too. SCALE_SEQUENTIAL=1 makes the allocator write handle and block separately
# (as before one commit per ADD; the Kubernetes store always does). etcd's own figures (db size,
# keys, heap, GC, commit times) are printed to stderr after each size.
#   usage: netns-tests/bench/scale.sh [SIZES=10,100,1000,5000] [PODS=20] [PROBE=40] [STORES="etcd local kdd"]
#   SCALE_OUT=<file of a saved run's output> prints the ratios and renders the plot from it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"; source "$here/lib.sh"
SIZES="${1:-10,100,1000,5000}"; PODS="${2:-20}"; PROBE="${3:-40}"; STORES="${4:-etcd local kdd}"
top="$(cd "$here/../.." && pwd)"
out="$(mktemp)"; trap 'rm -f "$out"' EXIT
if [ -n "${SCALE_OUT:-}" ]; then
  # Tables and plot from a saved run's output (what this script printed before).
  grep -v '^#' "$SCALE_OUT" > "$out"
  STORES="$(awk '{print $1}' "$out" | uniq | tr '\n' ' ')"
else
  (cd "$top" && cargo build --profile scale-bench -q -p netns-tests --bin ipam-scale >&2)
  TARGET="$(cd "$top" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
  BIN="$TARGET/scale-bench/ipam-scale"
  command -v etcd >/dev/null || { echo "needs etcd (Debian etcd-server)" >&2; exit 1; }
  for s in $STORES; do
    "$BIN" "$s" --sizes "$SIZES" --pods "$PODS" --probe "$PROBE" | tee -a "$out"
  done
fi

echo
echo "ratios, largest size / smallest (first ADD p50 and p99; steady ADD p99; requests per first ADD):"
awk '!/^#/ { if (!($1 in lo)) lo[$1] = $0; hi[$1] = $0 }
  END { for (s in lo) { split(lo[s], a, " "); split(hi[s], b, " ");
    printf "  %-6s %5s -> %5s nodes: first p50 %.2fx  p99 %.2fx  steady p99 %.2fx  requests %.1f -> %.1f\n",
      s, a[2], b[2], b[3] / a[3], b[4] / a[4], b[8] / a[8], a[5], b[5] } }' "$out"

# The plot is part of the bench's output: install its renderer like the test command installs
# its tools (as root on Debian); without root, say how and stop after the tables.
if ! command -v gnuplot >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing gnuplot-nox to render scale.png" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null 2>&1 ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null; }
  else
    echo "(no gnuplot: apt-get install gnuplot-nox to render scale.png)" >&2
    exit 0
  fi
fi
for s in $STORES; do grep "^$s " "$out" > "$out.$s" || true; done
plots=""
for s in $STORES; do
  plots+="${plots:+, }'$out.$s' using 2:3 with linespoints title '$s first ADD p50', '$out.$s' using 2:8 with linespoints dashtype 2 title '$s steady ADD p99'"
done
gnuplot <<G
set terminal pngcairo size 900,520 noenhanced
set output '$here/scale.png'
set title 'calico-ipam ADD latency vs cluster size ($(date -u +%F), $(nproc) cores)'
set logscale x
set xlabel 'nodes in the cluster'
set ylabel 'ms'
set key outside right
set grid
plot $plots
G
rm -f "$out".*
echo "wrote $here/scale.png"
