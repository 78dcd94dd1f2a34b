#!/usr/bin/env bash
# Benchmark (not a test): calico + host-local (ours) against Debian's ptp + host-local (Go), the
# closest upstream equivalent of Calico's veth + /32 dataplane. Each iteration: fresh container
# netns, ADD, DEL. Both run in the same invocation, alternating, so machine load hits both alike.
#   usage: netns-tests/bench/calico.sh [ITERATIONS=100]
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
source "$1/lib.sh"; N=$2; W=$3; OURS=$4; GO=$5; H=$6
export CNI_IFNAME=eth0
for i in $(seq 0 "$N"); do
  for impl in ours go; do
    if [ $impl = ours ]; then p="$OURS/calico"; c="$W/calico.json"; path="$OURS"; else p="$GO/ptp"; c="$W/ptp.json"; path="$GO"; fi
    ns="$H-$impl-$i"; ip netns add "$ns"
    export CNI_CONTAINERID="b$impl$i" CNI_NETNS="/run/netns/$ns" CNI_PATH="$path"
    t0=$EPOCHREALTIME; CNI_COMMAND=ADD "$p" < "$c" > /dev/null; t1=$EPOCHREALTIME
    CNI_COMMAND=DEL "$p" < "$c"; t2=$EPOCHREALTIME
    ip netns del "$ns"
    [ "$i" -eq 0 ] && continue   # warm-up
    ms $t0 $t1 >> "$W/$impl.add"; ms $t1 $t2 >> "$W/$impl.del"; ms $t0 $t2 >> "$W/$impl.both"
  done
done
L
ip netns exec "$H" bash "$W/loop.sh" "$here" "$N" "$W" "$OURS" "$GO" "$H"
echo "calico+host-local (ours) vs ptp+host-local (Go, /usr/lib/cni), $N iterations each"
for op in add del both; do
  stats "ours  ${op/both/ADD+DEL}" "$W/ours.$op"; stats "go    ${op/both/ADD+DEL}" "$W/go.$op"
  echo "      ratio go/ours (median): $(ratio "$(median "$W/go.$op")" "$(median "$W/ours.$op")")x"
done
