#!/usr/bin/env bash
# Benchmark (not a test): our portmap's steady ADD and DEL with nothing else on the node: a private
# namespace with no foreign rules and no other mappings, the shared chains/tables created by one
# ADD+DEL first. One TCP mapping, snat, Calico-style /32 prevResult, both backends. Issue #16's
# goal is ADD and DEL <= 3 ms median here; README.md ("Benchmarks") has the last figures.
#
#   usage (root): netns-tests/bench/portmap-bare.sh [ITERATIONS=40]
#   env: PORTMAP_BIN=<our binary> (default: release build of bin-portmap)
set -euo pipefail
# shellcheck source=lib.sh
here="$(cd "$(dirname "$0")" && pwd)"; source "$here/lib.sh"
N="${1:-40}"
[ "$(id -u)" = 0 ] || { echo "run as root (creates network namespaces)" >&2; exit 1; }
if [ -z "${PORTMAP_BIN:-}" ]; then
  top="$(cd "$here/../.." && pwd)"
  (cd "$top" && cargo build --release -q -p bin-portmap >&2)
  PORTMAP_BIN="$(cd "$top" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/portmap"
fi
[ -x "$PORTMAP_BIN" ] || { echo "our portmap not found: $PORTMAP_BIN" >&2; exit 1; }

W="$(mktemp -d)"; P="pmbare-$$"
cleanup() { for n in $(ip netns list | awk '{print $1}' | grep "^$P" || true); do ip netns del "$n"; done; rm -rf "$W"; }
trap cleanup EXIT
ip netns add "$P-ctr"   # an existing CNI_NETNS for ADD (portmap never enters it)
prev='{"cniVersion":"1.0.0","interfaces":[{"name":"bench0"},{"name":"eth0","sandbox":"/var/run/netns/x"}],"ips":[{"address":"10.244.0.5/32","interface":1}],"dns":{}}'
config() { # $1 backend, $2 with prevResult (1/0)
  local p=""; [ "$2" = 1 ] && p=",\"prevResult\":$prev"
  printf '{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"portmap","snat":true,"backend":"%s","runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}%s}' "$1" "$p"
}

echo "portmap alone: $N ADD+DEL pairs per backend (medians, after 2 warm-ups), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  ours: $PORTMAP_BIN"
for backend in iptables nftables; do
  ns="$P-host"; ip netns add "$ns"
  ip netns exec "$ns" sh -c 'ip link set lo up; ip link add bench0 type veth peer name bench1;
    ip link set bench0 up; ip link set bench1 up; ip route add 10.244.0.0/16 dev bench0'
  config "$backend" 1 > "$W/add.json"; config "$backend" 0 > "$W/del.json"
  rm -f "$W/t.add" "$W/t.del"
  ip netns exec "$ns" bash -s "$here" "$PORTMAP_BIN" "$N" "$W" "/run/netns/$P-ctr" <<'L'
set -euo pipefail
source "$1/lib.sh"; bin=$2; n=$3; w=$4
export CNI_NETNS=$5 CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni
# The node's first ADD creates the shared chains (iptables) or tables (nftables).
CNI_CONTAINERID=seed CNI_COMMAND=ADD "$bin" < "$w/add.json" > /dev/null
CNI_CONTAINERID=seed CNI_COMMAND=DEL "$bin" < "$w/del.json" > /dev/null
for i in $(seq -1 "$n"); do
  export CNI_CONTAINERID="bare-$i"
  t0=$EPOCHREALTIME; CNI_COMMAND=ADD "$bin" < "$w/add.json" > /dev/null; t1=$EPOCHREALTIME
  CNI_COMMAND=DEL "$bin" < "$w/del.json" > /dev/null; t2=$EPOCHREALTIME
  [ "$i" -lt 1 ] && continue   # warm-up
  ms "$t0" "$t1" >> "$w/t.add"; ms "$t1" "$t2" >> "$w/t.del"
done
L
  printf '  %-9s ADD %7.2f ms   DEL %7.2f ms\n' "$backend" "$(median "$W/t.add")" "$(median "$W/t.del")"
  ip netns del "$ns"
done
