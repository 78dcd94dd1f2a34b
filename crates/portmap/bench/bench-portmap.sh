#!/usr/bin/env bash
# Benchmark (not a test): portmap ADD and DEL, ours (iptables and nftables backends) against
# Debian's Go portmap (iptables only), with 0 / 1,000 / 10,000 existing mappings on the node and
# 30,000 foreign nat rules (kube-proxy-like) in every cell. Prints medians and ratios.
#
# Usage (root): crates/portmap/bench/bench-portmap.sh [OUR_PORTMAP] [GO_PORTMAP] [ITERATIONS]
#   OUR_PORTMAP  default: release build of bins/portmap (built if missing)
#   GO_PORTMAP   default: /usr/lib/cni/portmap (Debian containernetworking-plugins)
#   ITERATIONS   ADD+DEL pairs per cell, default 7 (one extra untimed warm-up)
# Each cell runs in a fresh private netns; the machine's real netns is never touched.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
ours=${1:-}
go=${2:-/usr/lib/cni/portmap}
iters=${3:-7}
foreign=30000
sizes=(0 1000 10000)

[ "$(id -u)" = 0 ] || { echo "run as root (creates network namespaces)" >&2; exit 1; }
if [ -z "$ours" ]; then
    ours=${CARGO_TARGET_DIR:-$repo/target}/release/portmap
    (cd "$repo" && cargo build --release -q -p bin-portmap)
fi
[ -x "$ours" ] || { echo "our portmap not found: $ours" >&2; exit 1; }
[ -x "$go" ] || { echo "Go portmap not found: $go (apt-get install containernetworking-plugins)" >&2; exit 1; }

work=$(mktemp -d)
ns=pmbench$$
cleanup() { ip netns del "$ns" 2>/dev/null || true; ip netns del "${ns}c" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ip netns add "${ns}c"   # an existing CNI_NETNS for ADD (the plugins never enter it)

# 30,000 kube-proxy-like DNAT rules in 1,000 service chains.
awk -v n="$foreign" 'BEGIN {
    print "*nat"; print ":KUBE-SERVICES - [0:0]"
    for (s = 0; s < 1000; s++) printf ":KUBE-SVC-%05d - [0:0]\n", s
    print "-A PREROUTING -j KUBE-SERVICES"; print "-A OUTPUT -j KUBE-SERVICES"
    for (i = 0; i < n; i++)
        printf "-A KUBE-SVC-%05d -d 10.96.%d.%d/32 -p tcp -m tcp --dport %d -j DNAT --to-destination 10.100.%d.%d:80\n",
            i % 1000, int(i / 256) % 256, i % 256, 1000 + i % 60000, int(i / 256) % 256, i % 256
    print "COMMIT" }' > "$work/foreign.rules"

# N existing upstream-shaped iptables mappings (what either plugin leaves per container).
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

# N existing mappings in our nftables layout (elements only; the tables exist after one ADD).
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

# Runs inside the bench netns: times ADD then DEL for fresh container IDs; prints "add_us del_us".
cat > "$work/loop.sh" <<'EOF'
set -eu
bin=$1; iters=$2; addconf=$3; delconf=$4
export CNI_NETNS=$5 CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni
for i in $(seq 0 "$iters"); do
    export CNI_CONTAINERID=bench$RANDOM$i
    t0=$EPOCHREALTIME
    CNI_COMMAND=ADD "$bin" < "$addconf" > /dev/null
    t1=$EPOCHREALTIME
    CNI_COMMAND=DEL "$bin" < "$delconf" > /dev/null
    t2=$EPOCHREALTIME
    # first pair is a warm-up
    [ "$i" -gt 0 ] && echo "$(( (${t1/./} - ${t0/./}) )) $(( (${t2/./} - ${t1/./}) ))"
done
EOF

div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2) / 1000}'; }

declare -A ADD DEL
run_cell() { # $1 label, $2 binary, $3 backend for config, $4 fill kind (iptables|nft), $5 N
    local label=$1 bin=$2 backend=$3 kind=$4 n=$5
    ip netns del "$ns" 2>/dev/null || true
    ip netns add "$ns"
    ip netns exec "$ns" sh -c 'ip link set lo up; ip link add bench0 type veth peer name bench1;
        ip link set bench0 up; ip link set bench1 up; ip route add 10.244.0.0/16 dev bench0'
    ip netns exec "$ns" iptables-restore --noflush < "$work/foreign.rules"
    config "$backend" 1 > "$work/add.json"
    config "$backend" 0 > "$work/del.json"
    if [ "$kind" = iptables ]; then
        iptables_fill "$n" | ip netns exec "$ns" iptables-restore --noflush
    else
        # One real ADD+DEL creates the tables, then the elements are bulk-loaded.
        ip netns exec "$ns" env CNI_COMMAND=ADD CNI_CONTAINERID=seed CNI_NETNS=/var/run/netns/${ns}c CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni "$bin" < "$work/add.json" > /dev/null
        ip netns exec "$ns" env CNI_COMMAND=DEL CNI_CONTAINERID=seed CNI_NETNS= CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni "$bin" < "$work/del.json" > /dev/null
        nft_fill "$n" | ip netns exec "$ns" nft -f -
    fi
    ip netns exec "$ns" bash "$work/loop.sh" "$bin" "$iters" "$work/add.json" "$work/del.json" "/var/run/netns/${ns}c" > "$work/times"
    ADD[$label,$n]=$(cut -d' ' -f1 < "$work/times" | median)
    DEL[$label,$n]=$(cut -d' ' -f2 < "$work/times" | median)
    printf '  %-14s N=%-6s ADD %8.1f ms   DEL %8.1f ms\n' "$label" "$n" "${ADD[$label,$n]}" "${DEL[$label,$n]}"
}

echo "portmap benchmark: $iters ADD+DEL pairs per cell (median), $foreign foreign nat rules, $(iptables --version)"
echo "  ours: $ours"
echo "  go:   $go"
for n in "${sizes[@]}"; do
    run_cell go-iptables "$go" "" iptables "$n"
    run_cell ours-iptables "$ours" iptables iptables "$n"
    run_cell ours-nftables "$ours" nftables nft "$n"
done

echo
printf '%-8s | %-27s | %-27s | %-27s\n' "" "ADD ms (go / ipt / nft)" "DEL ms (go / ipt / nft)" "go÷ours ADD, DEL (ipt; nft)"
for n in "${sizes[@]}"; do
    printf 'N=%-6s | %7.1f / %7.1f / %7.1f | %7.1f / %7.1f / %7.1f | %5.1fx %5.1fx ; %5.1fx %5.1fx\n' "$n" \
        "${ADD[go-iptables,$n]}" "${ADD[ours-iptables,$n]}" "${ADD[ours-nftables,$n]}" \
        "${DEL[go-iptables,$n]}" "${DEL[ours-iptables,$n]}" "${DEL[ours-nftables,$n]}" \
        "$(div "${ADD[go-iptables,$n]}" "${ADD[ours-iptables,$n]}")" \
        "$(div "${DEL[go-iptables,$n]}" "${DEL[ours-iptables,$n]}")" \
        "$(div "${ADD[go-iptables,$n]}" "${ADD[ours-nftables,$n]}")" \
        "$(div "${DEL[go-iptables,$n]}" "${DEL[ours-nftables,$n]}")"
done
echo
echo "growth of ours from N=0 to N=10000 (target <= 1.2x):"
for l in ours-iptables ours-nftables; do
    printf '  %-14s ADD %4.2fx  DEL %4.2fx\n' "$l" \
        "$(div "${ADD[$l,10000]}" "${ADD[$l,0]}")" "$(div "${DEL[$l,10000]}" "${DEL[$l,0]}")"
done
