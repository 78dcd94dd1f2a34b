#!/usr/bin/env bash
# Benchmark (not a test): calico + host-local (ours) against Debian's ptp + host-local (Go), the
# closest upstream equivalent of Calico's veth + /32 dataplane. Each iteration: fresh container
# netns, ADD, DEL. Both run in the same invocation, alternating, so machine load hits both alike.
# A third row times the kernel alone: `ip link del` of the same kind of veth pair (the floor
# for any DEL; includes one exec of `ip`).
#   usage: netns-tests/bench/calico.sh [ITERATIONS=100]
#   BASELINE_DIR=<dir of saved release binaries>: also runs ours from there ("base"), for a
#   before/after comparison in one run.
# The figures of the last run are in README.md, section "Benchmarks".
set -euo pipefail
# shellcheck source=lib.sh
here="$(cd "$(dirname "$0")" && pwd)"; source "$here/lib.sh"
N="${1:-100}"
[ -x /usr/lib/cni/ptp ] || { apt-get update -qq && apt-get install -y -qq containernetworking-plugins >/dev/null; }
OURS="$(our_bin_dir)"; GO=/usr/lib/cni
W="$(mktemp -d)"; H="bench-calico-$$"
cleanup() { for n in $(ip netns list | awk '{print $1}' | grep "^$H" || true); do ip netns del "$n"; done; rm -rf "$W"; }
trap cleanup EXIT
ip netns add "$H"; ip -n "$H" link set lo up; ip netns exec "$H" sysctl -qw net.ipv4.ip_forward=1

cat > "$W/calico.json" <<J
{"cniVersion":"1.0.0","name":"bench","type":"calico","datastore_type":"local","nodename":"bench","mtu":1500,
 "log_level":"error","log_file_path":"$W/cni.log",
 "ipam":{"type":"host-local","ranges":[[{"subnet":"10.98.0.0/16"}]],"dataDir":"$W/ipam-ours"}}
J
cat > "$W/ptp.json" <<J
{"cniVersion":"1.0.0","name":"bench","type":"ptp","ipMasq":false,"mtu":1500,
 "ipam":{"type":"host-local","ranges":[[{"subnet":"10.99.0.0/16"}]],"dataDir":"$W/ipam-go"}}
J
cat > "$W/loop.sh" <<'L'
set -euo pipefail
source "$1/lib.sh"; N=$2; W=$3; OURS=$4; GO=$5; H=$6; BASE=$7
export CNI_IFNAME=eth0
IMPLS="ours go kernel"; [ -n "$BASE" ] && IMPLS="base $IMPLS"
for i in $(seq 0 "$N"); do
  for impl in $IMPLS; do
    ns="$H-$impl-$i"; ip netns add "$ns"
    if [ $impl = kernel ]; then
      t0=$EPOCHREALTIME; ip link add "k$i" type veth peer name eth0 netns "$ns"; t1=$EPOCHREALTIME
      ip -n "$ns" link del eth0; t2=$EPOCHREALTIME
      ip netns del "$ns"
      [ "$i" -eq 0 ] && continue
      ms $t0 $t1 >> "$W/$impl.add"; ms $t1 $t2 >> "$W/$impl.del"; ms $t0 $t2 >> "$W/$impl.both"
      continue
    fi
    case $impl in
      ours) p="$OURS/calico"; c="$W/calico.json"; path="$OURS";;
      base) p="$BASE/calico"; c="$W/calico.json"; path="$BASE";;
      go) p="$GO/ptp"; c="$W/ptp.json"; path="$GO";;
    esac
    export CNI_CONTAINERID="b$impl$i" CNI_NETNS="/run/netns/$ns" CNI_PATH="$path"
    t0=$EPOCHREALTIME; CNI_COMMAND=ADD "$p" < "$c" > /dev/null; t1=$EPOCHREALTIME
    CNI_COMMAND=DEL "$p" < "$c"; t2=$EPOCHREALTIME
    ip netns del "$ns"
    [ "$i" -eq 0 ] && continue   # warm-up
    ms $t0 $t1 >> "$W/$impl.add"; ms $t1 $t2 >> "$W/$impl.del"; ms $t0 $t2 >> "$W/$impl.both"
  done
done
L
ip netns exec "$H" bash "$W/loop.sh" "$here" "$N" "$W" "$OURS" "$GO" "$H" "${BASELINE_DIR:-}"
echo "calico+host-local (ours) vs ptp+host-local (Go, /usr/lib/cni), $N iterations each"
echo "(kernel: ip link add / del of a veth pair alone)"
for op in add del both; do
  [ -n "${BASELINE_DIR:-}" ] && stats "base  ${op/both/ADD+DEL}" "$W/base.$op"
  stats "ours  ${op/both/ADD+DEL}" "$W/ours.$op"; stats "go    ${op/both/ADD+DEL}" "$W/go.$op"
  stats "kernel ${op/both/ADD+DEL}" "$W/kernel.$op"
  echo "      ratio go/ours (median): $(ratio "$(median "$W/go.$op")" "$(median "$W/ours.$op")")x"
done
