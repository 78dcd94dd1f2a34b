#!/usr/bin/env bash
# Benchmark (not a test): our bandwidth plugin against Debian's Go bandwidth (/usr/lib/cni), the
# plugin it replaces. Each iteration: fresh container netns + veth pair (not timed), bandwidth ADD
# shaping both directions (root tbf on the host veth; ifb + ingress qdisc + u32/mirred redirect +
# tbf on the ifb), then DEL (removes the ifb). Both run in the same invocation, alternating, so
# machine load hits both alike. Release build of ours.
#   usage: netns-tests/bench/bandwidth.sh [ITERATIONS=100]
# The figures of the last run are in README.md, section "Benchmarks".
set -euo pipefail
# shellcheck source=lib.sh
here="$(cd "$(dirname "$0")" && pwd)"; source "$here/lib.sh"
N="${1:-100}"
[ -x /usr/lib/cni/bandwidth ] || { apt-get update -qq && apt-get install -y -qq containernetworking-plugins >/dev/null; }
OURS="$(our_bin_dir)"; GO=/usr/lib/cni
W="$(mktemp -d)"; H="bench-bw-$$"
cleanup() { for n in $(ip netns list | awk '{print $1}' | grep "^$H" || true); do ip netns del "$n"; done; rm -rf "$W"; }
trap cleanup EXIT
ip netns add "$H"; ip -n "$H" link set lo up

cat > "$W/loop.sh" <<'L'
set -euo pipefail
source "$1/lib.sh"; N=$2; W=$3; OURS=$4; GO=$5; H=$6
export CNI_IFNAME=eth0 CNI_PATH=/nonexistent
for i in $(seq 0 "$N"); do
  for impl in ours go; do
    if [ $impl = ours ]; then p="$OURS/bandwidth"; else p="$GO/bandwidth"; fi
    ns="$H-$impl-$i"; veth="bw${impl:0:1}$i"; ip netns add "$ns"
    ip link add "$veth" mtu 1440 type veth peer name eth0 netns "$ns"
    ip link set "$veth" up; ip -n "$ns" link set eth0 up
    c="$W/conf.json"
    printf '%s' "{\"cniVersion\":\"0.4.0\",\"name\":\"bench\",\"type\":\"bandwidth\",
      \"runtimeConfig\":{\"bandwidth\":{\"ingressRate\":10000000,\"ingressBurst\":200000,
                                       \"egressRate\":16000000,\"egressBurst\":200000}},
      \"prevResult\":{\"cniVersion\":\"0.4.0\",\"interfaces\":[{\"name\":\"$veth\"},
        {\"name\":\"eth0\",\"sandbox\":\"/run/netns/$ns\"}],
        \"ips\":[{\"version\":\"4\",\"address\":\"10.97.0.2/32\",\"interface\":1}],\"dns\":{}}}" > "$c"
    export CNI_CONTAINERID="b$impl$i" CNI_NETNS="/run/netns/$ns"
    t0=$EPOCHREALTIME; CNI_COMMAND=ADD "$p" < "$c" > /dev/null; t1=$EPOCHREALTIME
    CNI_COMMAND=DEL "$p" < "$c"; t2=$EPOCHREALTIME
    ip link del "$veth"; ip netns del "$ns"
    [ "$i" -eq 0 ] && continue   # warm-up
    ms $t0 $t1 >> "$W/$impl.add"; ms $t1 $t2 >> "$W/$impl.del"; ms $t0 $t2 >> "$W/$impl.both"
  done
done
L
ip netns exec "$H" bash "$W/loop.sh" "$here" "$N" "$W" "$OURS" "$GO" "$H" 2>"$W/stderr" || { cat "$W/stderr" >&2; exit 1; }
echo "bandwidth ADD/DEL, ingress+egress shaping (ours vs Go, /usr/lib/cni), $N iterations each"
for op in add del both; do
  stats "ours  ${op/both/ADD+DEL}" "$W/ours.$op"; stats "go    ${op/both/ADD+DEL}" "$W/go.$op"
  echo "      ratio go/ours (median): $(ratio "$(median "$W/go.$op")" "$(median "$W/ours.$op")")x"
done
