#!/usr/bin/env bash
# Benchmark (not a test): portmap ADD and DEL, ours (iptables and nftables backends) against
# Debian's Go portmap (/usr/lib/cni/portmap, containernetworking-plugins 1.1.1, iptables only), side
# by side in one run, with 0 / 1,000 / 10,000 existing mappings on the node plus 30,000 foreign
# (kube-proxy-like) nat rules in every cell. One TCP mapping, snat, Calico-style /32 prevResult.
# Last: one pod with 100 / 1,000 / 10,000 mappings (nftables over netlink, no ip6 table):
# 2026-12-07, release build, load ~9: ADD 7.6 / 35 / 355 ms, DEL 16 / 49 / 378 ms.
# Prints medians and ratios. Everything happens in private namespaces (`pmb-<pid>-*`), removed on
# exit; the machine's own netns is never touched.
#
#   usage (root): netns-tests/bench/portmap.sh [OUR_ITERATIONS=15] [GO_ITERATIONS=3]
#   env: PORTMAP_BIN=<our binary> (default: release build of bin-portmap), GO_PORTMAP=<path>
#   (Go's ADD takes tens of seconds at 10,000 mappings, hence fewer iterations for it.)
# "kernel alone" is crates/nf-tables/examples/commit_cost: one nf_tables transaction creating a
# chain plus a jump to it in CNI-HOSTPORT-DNAT, and one deleting both, in the cell's namespace.
# The figures of the last run, and what they mean, are in README.md, section "Benchmarks".
set -euo pipefail
# shellcheck source=lib.sh
here="$(cd "$(dirname "$0")" && pwd)"; source "$here/lib.sh"
N="${1:-15}"; GO_N="${2:-3}"
FOREIGN=30000
SIZES=(0 1000 10000)
[ "$(id -u)" = 0 ] || { echo "run as root (creates network namespaces)" >&2; exit 1; }
GO="${GO_PORTMAP:-/usr/lib/cni/portmap}"
[ -x "$GO" ] || { apt-get update -qq && apt-get install -y -qq containernetworking-plugins >/dev/null; }
if [ -z "${PORTMAP_BIN:-}" ]; then
  # Only our package: a workspace-wide release build is not needed for this benchmark.
  top="$(cd "$here/../.." && pwd)"
  # Two builds: `--example` would restrict the first one's targets to the example.
  (cd "$top" && cargo build --release -q -p bin-portmap >&2 &&
    cargo build --release -q -p nf-tables --example commit_cost >&2)
  PORTMAP_BIN="$(cd "$top" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/portmap"
fi
OURS="$PORTMAP_BIN"
# Kernel-only cost of one iptables-style change (see the header); optional.
PROBE="${COMMIT_COST_BIN:-$(dirname "$PORTMAP_BIN")/examples/commit_cost}"
[ -x "$OURS" ] || { echo "our portmap not found: $OURS" >&2; exit 1; }

W="$(mktemp -d)"; P="pmb-$$"
cleanup() { for n in $(ip netns list | awk '{print $1}' | grep "^$P" || true); do ip netns del "$n"; done; rm -rf "$W"; }
trap cleanup EXIT
ip netns add "$P-ctr"   # an existing CNI_NETNS for ADD (portmap never enters it)

# 30,000 kube-proxy-like DNAT rules in 1,000 service chains, reachable like kube-proxy's: from
# PREROUTING and OUTPUT through KUBE-SERVICES (one rule per service), so the kernel's work over
# the whole reachable rule set is part of every cell, as on a real node.
awk -v n="$FOREIGN" 'BEGIN {
  print "*nat"; print ":KUBE-SERVICES - [0:0]"
  for (s = 0; s < 1000; s++) printf ":KUBE-SVC-%05d - [0:0]\n", s
  print "-A PREROUTING -j KUBE-SERVICES"; print "-A OUTPUT -j KUBE-SERVICES"
  for (s = 0; s < 1000; s++)
    printf "-A KUBE-SERVICES -d 10.96.%d.%d/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-%05d\n", int(s / 256), s % 256, s
  for (i = 0; i < n; i++)
    printf "-A KUBE-SVC-%05d -d 10.96.%d.%d/32 -p tcp -m tcp --dport %d -j DNAT --to-destination 10.100.%d.%d:80\n",
      i % 1000, int(i / 256) % 256, i % 256, 1000 + i % 60000, int(i / 256) % 256, i % 256
  print "COMMIT" }' > "$W/foreign.rules"

# N existing mappings as either plugin leaves them with iptables (chains, entry and pod rules).
iptables_fill() {
  awk -v n="$1" 'BEGIN {
    print "*nat"
    print ":CNI-HOSTPORT-DNAT - [0:0]"; print ":CNI-HOSTPORT-SETMARK - [0:0]"; print ":CNI-HOSTPORT-MASQ - [0:0]"
    for (i = 0; i < n; i++) printf ":CNI-DN-fill%016d - [0:0]\n", i
    print "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"
    print "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"
    print "-I POSTROUTING 1 -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ"
    print "-A CNI-HOSTPORT-SETMARK -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark 0x2000/0x2000"
    print "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE"
    for (i = 0; i < n; i++) {
      c = sprintf("CNI-DN-fill%016d", i); p = 20000 + i; ip = sprintf("10.245.%d.%d", int(i / 256) % 256, i % 256)
      printf "-A CNI-HOSTPORT-DNAT -m comment --comment \"dnat name: \\\"bench\\\" id: \\\"fill%d\\\"\" -m multiport -p tcp --destination-ports %d -j %s\n", i, p, c
      printf "-A %s -p tcp --dport %d -s %s/32 -j CNI-HOSTPORT-SETMARK\n", c, p, ip
      printf "-A %s -p tcp --dport %d -s 127.0.0.1 -j CNI-HOSTPORT-SETMARK\n", c, p
      printf "-A %s -p tcp --dport %d -j DNAT --to-destination %s:80\n", c, p, ip
    }
    print "COMMIT" }'
}

# N existing mappings in our nftables layout (owner, DNAT and masquerade elements).
nft_fill() {
  awk -v n="$1" 'BEGIN {
    for (i = 0; i < n; i++) {
      p = 20000 + i; ip = sprintf("10.245.%d.%d", int(i / 256) % 256, i % 256)
      printf "add element ip cni_hostport hostport_owner { \"f%014d\" . 0.0.0.0 . tcp . %d }\n", i, p
      printf "add element ip cni_hostport hostport_dnat { tcp . %d : %s . 80 }\n", p, ip
      printf "add element ip cni_hostport hostport_masq { tcp . %d }\n", p
    } }'
}

prev='{"cniVersion":"1.0.0","interfaces":[{"name":"bench0"},{"name":"eth0","sandbox":"/var/run/netns/x"}],"ips":[{"address":"10.244.0.5/32","interface":1}],"dns":{}}'
config() { # $1 backend ("" = plugin default), $2 with prevResult (1/0)
  local b=""; [ -n "$1" ] && b="\"backend\":\"$1\","
  local p=""; [ "$2" = 1 ] && p=",\"prevResult\":$prev"
  printf '{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"portmap","snat":true,%s"capabilities":{"portMappings":true},"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}%s}' "$b" "$p"
}

# Runs inside a cell's host netns: ADD then DEL for fresh container IDs, timed with lib.sh's ms.
cat > "$W/loop.sh" <<'L'
set -euo pipefail
source "$1/lib.sh"; bin=$2; n=$3; addconf=$4; delconf=$5; out=$6
export CNI_NETNS=$7 CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni
for i in $(seq 0 "$n"); do
  export CNI_CONTAINERID="bench-$RANDOM-$i"
  t0=$EPOCHREALTIME; CNI_COMMAND=ADD "$bin" < "$addconf" > /dev/null; t1=$EPOCHREALTIME
  CNI_COMMAND=DEL "$bin" < "$delconf" > /dev/null; t2=$EPOCHREALTIME
  [ "$i" -eq 0 ] && continue   # warm-up
  ms "$t0" "$t1" >> "$out.add"; ms "$t1" "$t2" >> "$out.del"
done
L

declare -A ADD DEL KADD KDEL
cell() { # $1 label, $2 binary, $3 backend for the config, $4 fill kind (iptables|nft), $5 N, $6 iterations
  local label=$1 bin=$2 backend=$3 kind=$4 n=$5 iters=$6 ns="$P-host"
  ip netns del "$ns" 2>/dev/null || true
  ip netns add "$ns"
  ip netns exec "$ns" sh -c 'ip link set lo up; ip link add bench0 type veth peer name bench1;
    ip link set bench0 up; ip link set bench1 up; ip route add 10.244.0.0/16 dev bench0'
  ip netns exec "$ns" iptables-restore --noflush < "$W/foreign.rules"
  config "$backend" 1 > "$W/add.json"; config "$backend" 0 > "$W/del.json"
  if [ "$kind" = iptables ]; then
    iptables_fill "$n" | ip netns exec "$ns" iptables-restore --noflush
  else
    # One real ADD+DEL creates the tables, then the elements are bulk-loaded.
    local e=(CNI_CONTAINERID=seed CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni)
    ip netns exec "$ns" env "${e[@]}" CNI_COMMAND=ADD CNI_NETNS="/run/netns/$P-ctr" "$bin" < "$W/add.json" > /dev/null
    ip netns exec "$ns" env "${e[@]}" CNI_COMMAND=DEL CNI_NETNS= "$bin" < "$W/del.json" > /dev/null
    nft_fill "$n" | ip netns exec "$ns" nft -f -
  fi
  local out="$W/$label-$n"
  if [ "$label" = ours-ipt ] && [ -x "$PROBE" ]; then
    read -r "KADD[$n]" "KDEL[$n]" < <(ip netns exec "$ns" "$PROBE" nat CNI-HOSTPORT-DNAT 15)
  fi
  ip netns exec "$ns" bash "$W/loop.sh" "$here" "$bin" "$iters" "$W/add.json" "$W/del.json" "$out" "/run/netns/$P-ctr"
  ADD[$label,$n]=$(median "$out.add"); DEL[$label,$n]=$(median "$out.del")
  printf '  %-14s N=%-6s ADD %9.1f ms   DEL %9.1f ms\n' "$label" "$n" "${ADD[$label,$n]}" "${DEL[$label,$n]}"
  ip netns del "$ns"
}

echo "portmap: ADD+DEL pairs per cell: ours $N, go $GO_N (medians, after 1 warm-up); $FOREIGN foreign nat rules in every cell"
echo "  $(iptables --version), $(nft --version), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  ours: $OURS"
echo "  go:   $GO"
for n in "${SIZES[@]}"; do
  cell go "$GO" "" iptables "$n" "$GO_N"
  cell ours-ipt "$OURS" iptables iptables "$n" "$N"
  cell ours-nft "$OURS" nftables nft "$n" "$N"
done

echo
printf '%-8s | %-30s | %-30s | %s\n' "mappings" "ADD ms: go / ours-ipt / ours-nft" "DEL ms: go / ours-ipt / ours-nft" "go÷ours ADD, DEL (ipt | nft)"
for n in "${SIZES[@]}"; do
  printf '%-8s | %8.1f / %8.1f / %8.1f | %8.1f / %8.1f / %8.1f | %sx %sx | %sx %sx\n' "$n" \
    "${ADD[go,$n]}" "${ADD[ours-ipt,$n]}" "${ADD[ours-nft,$n]}" \
    "${DEL[go,$n]}" "${DEL[ours-ipt,$n]}" "${DEL[ours-nft,$n]}" \
    "$(ratio "${ADD[go,$n]}" "${ADD[ours-ipt,$n]}")" "$(ratio "${DEL[go,$n]}" "${DEL[ours-ipt,$n]}")" \
    "$(ratio "${ADD[go,$n]}" "${ADD[ours-nft,$n]}")" "$(ratio "${DEL[go,$n]}" "${DEL[ours-nft,$n]}")"
done
if [ -n "${KADD[0]:-}" ]; then
  echo
  echo "kernel alone, one transaction adding (deleting) a chain and a jump to it in CNI-HOSTPORT-DNAT:"
  for n in "${SIZES[@]}"; do printf '  %-8s add %8.2f ms   del %8.2f ms\n' "$n" "${KADD[$n]}" "${KDEL[$n]}"; done
fi
echo
echo "growth from 0 to 10,000 existing mappings (goal for ours: <= 1.2x); load average now $(cut -d' ' -f1-3 /proc/loadavg)"
for l in go ours-ipt ours-nft; do
  printf '  %-9s ADD %sx  DEL %sx\n' "$l" "$(ratio "${ADD[$l,10000]}" "${ADD[$l,0]}")" "$(ratio "${DEL[$l,10000]}" "${DEL[$l,0]}")"
done

# One pod with many mappings (nftables, IPv4 pod on a node without an ip6 table): DEL is one
# transaction whatever the count. (Before: ten missing-table errors attributed per nft run, then
# one nft run per mapping: 2.4 s at 100, 13 s at 300, > 60 s at 1,000, unbounded at 10,000.)
many_conf() { # $1 mappings, $2 with prevResult (1/0)
  local p=""; [ "$2" = 1 ] && p=",\"prevResult\":$prev"
  awk -v n="$1" -v p="$p" 'BEGIN {
    printf "{\"cniVersion\":\"1.0.0\",\"name\":\"k8s-pod-network\",\"type\":\"portmap\",\"snat\":true,\"backend\":\"nftables\",\"capabilities\":{\"portMappings\":true},\"runtimeConfig\":{\"portMappings\":["
    for (i = 0; i < n; i++) printf "%s{\"hostPort\":%d,\"containerPort\":80,\"protocol\":\"tcp\"}", (i ? "," : ""), 30000 + i
    printf "]}%s}", p }'
}
echo
echo "one pod with many mappings, nftables, no ip6 table on the node (3 ADD+DEL pairs, medians):"
for m in 100 1000 10000; do
  ns="$P-many"; ip netns add "$ns"
  ip netns exec "$ns" sh -c 'ip link set lo up; ip link add bench0 type veth peer name bench1;
    ip link set bench0 up; ip link set bench1 up; ip route add 10.244.0.0/16 dev bench0'
  many_conf "$m" 1 > "$W/many-add.json"; many_conf "$m" 0 > "$W/many-del.json"
  rm -f "$W/many.add" "$W/many.del"
  ip netns exec "$ns" bash "$W/loop.sh" "$here" "$OURS" 3 "$W/many-add.json" "$W/many-del.json" "$W/many" "/run/netns/$P-ctr"
  printf '  %-6s mappings: ADD %8.1f ms   DEL %8.1f ms\n' "$m" "$(median "$W/many.add")" "$(median "$W/many.del")"
  ip netns del "$ns"
done
