#!/usr/bin/env bash
# Benchmark (not a test): the full chain a runtime runs, through the upstream `cnitool` (libcni):
# ours = calico (veth, /32, local store) + IPAM + portmap (one TCP mapping, snat; default
# iptables backend, and nftables in "ours-nft") + bandwidth (both directions); Go peer = Debian's ptp + host-local + portmap + bandwidth (/usr/lib/cni), the
# closest upstream chain. Each iteration: fresh netns, `cnitool add`, `cnitool del`, timed around
# the cnitool process (so libcni's own start and its result cache are in both). The
# implementations alternate so machine load hits them alike.
#   usage: netns-tests/bench/chain.sh [ITERATIONS=50]
#   BASELINE_DIR=<dir of saved release binaries>: also runs ours from there (base-*), for a
#   before/after comparison in one run.
# cnitool is built by netns-tests/tools/build-cnitool.sh (cached). The figures of the last run are
# in README.md, section "Benchmarks".
set -euo pipefail
# shellcheck source=lib.sh
here="$(cd "$(dirname "$0")" && pwd)"; source "$here/lib.sh"
N="${1:-50}"
[ -x /usr/lib/cni/ptp ] || { apt-get update -qq && apt-get install -y -qq containernetworking-plugins >/dev/null; }
CNITOOL="${CNITOOL:-$("$here/../tools/build-cnitool.sh")}"
OURS="$(our_bin_dir)"; GO=/usr/lib/cni
W="$(mktemp -d)"; H="bench-chain-$$"
cleanup() { for n in $(ip netns list | awk '{print $1}' | grep "^$H" || true); do ip netns del "$n"; done; rm -rf "$W"; }
trap cleanup EXIT
ip netns add "$H"; ip -n "$H" link set lo up; ip netns exec "$H" sysctl -qw net.ipv4.ip_forward=1

IMPLS="ours-hl ours-ci ours-nft go"; [ -n "${BASELINE_DIR:-}" ] && IMPLS="base-hl base-ci $IMPLS"
mkdir -p "$W/ours-hl" "$W/ours-ci" "$W/ours-nft" "$W/go"
tail_plugins='{"type":"portmap","snat":true,"capabilities":{"portMappings":true}},
  {"type":"bandwidth","capabilities":{"bandwidth":true}}'
calico='"type":"calico","datastore_type":"local","datastore_path":"'$W'/calico.db","nodename":"bench",
  "mtu":1440,"log_level":"error","log_file_path":"'$W'/cni.log","ipam_lock_file":"'$W'/ipam.lock"'
cat > "$W/ours-hl/net.conflist" <<J
{"cniVersion":"1.0.0","name":"bench-hl-$$","plugins":[{$calico,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.97.0.0/16"}]],"dataDir":"$W/hl-ours"}},
  $tail_plugins]}
J
cat > "$W/ours-ci/net.conflist" <<J
{"cniVersion":"1.0.0","name":"bench-ci-$$","plugins":[{$calico,"ipam":{"type":"calico-ipam"}},
  $tail_plugins]}
J
# The same with portmap's nftables backend (no iptables execs).
cat > "$W/ours-nft/net.conflist" <<J
{"cniVersion":"1.0.0","name":"bench-nft-$$","plugins":[{$calico,"ipam":{"type":"calico-ipam"}},
  {"type":"portmap","snat":true,"backend":"nftables","capabilities":{"portMappings":true}},
  {"type":"bandwidth","capabilities":{"bandwidth":true}}]}
J
cat > "$W/go/net.conflist" <<J
{"cniVersion":"1.0.0","name":"bench-go-$$","plugins":[{"type":"ptp","ipMasq":false,"mtu":1440,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.99.0.0/16"}]],"dataDir":"$W/hl-go"}},
  $tail_plugins]}
J

cp -r "$W/ours-hl" "$W/base-hl"; cp -r "$W/ours-ci" "$W/base-ci"

cat > "$W/loop.sh" <<'L'
set -euo pipefail
source "$1/lib.sh"; N=$2; W=$3; OURS=$4; GO=$5; H=$6; CNITOOL=$7; PID=$8; IMPLS=$9; BASE=${10}
export CAP_ARGS='{"portMappings":[{"hostPort":18080,"containerPort":80,"protocol":"tcp"}],
  "bandwidth":{"ingressRate":8000000,"ingressBurst":80000,"egressRate":4000000,"egressBurst":40000}}'
for i in $(seq 0 "$N"); do
  for impl in $IMPLS; do
    case $impl in
      ours-hl) net="bench-hl-$PID"; path="$OURS";;
      ours-ci) net="bench-ci-$PID"; path="$OURS";;
      ours-nft) net="bench-nft-$PID"; path="$OURS";;
      base-hl) net="bench-hl-$PID"; path="$BASE";;
      base-ci) net="bench-ci-$PID"; path="$BASE";;
      go) net="bench-go-$PID"; path="$GO";;
    esac
    ns="$H-$impl-$i"; ip netns add "$ns"
    export NETCONFPATH="$W/$impl" CNI_PATH="$path"
    t0=$EPOCHREALTIME; "$CNITOOL" add "$net" "/run/netns/$ns" > /dev/null 2>> "$W/log" || { tail -n 5 "$W/log" >&2; exit 1; }; t1=$EPOCHREALTIME
    "$CNITOOL" del "$net" "/run/netns/$ns" 2>> "$W/log" || { tail -n 5 "$W/log" >&2; exit 1; }; t2=$EPOCHREALTIME
    ip netns del "$ns"
    [ "$i" -eq 0 ] && continue   # warm-up
    ms $t0 $t1 >> "$W/$impl.add"; ms $t1 $t2 >> "$W/$impl.del"; ms $t0 $t2 >> "$W/$impl.both"
  done
done
L
ip netns exec "$H" bash "$W/loop.sh" "$here" "$N" "$W" "$OURS" "$GO" "$H" "$CNITOOL" "$$" "$IMPLS" "${BASELINE_DIR:-}"
echo "cnitool add/del, full chain: ours calico+{host-local,calico-ipam(local)}+portmap+bandwidth"
echo "vs Go ptp+host-local+portmap+bandwidth (/usr/lib/cni), $N iterations each"
for op in add del both; do
  for impl in $IMPLS; do stats "$impl ${op/both/ADD+DEL}" "$W/$impl.$op"; done
  echo "      ratio go/ours-hl (median): $(ratio "$(median "$W/go.$op")" "$(median "$W/ours-hl.$op")")x" \
    " go/ours-ci: $(ratio "$(median "$W/go.$op")" "$(median "$W/ours-ci.$op")")x"
done
