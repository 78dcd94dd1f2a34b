#!/usr/bin/env bash
# Benchmark (not a test): a burst of B pods on one node. B parallel full-chain ADDs (calico with
# calico-ipam, then portmap with one TCP mapping and snat, then bandwidth shaping both ways),
# each pod in its own netns, then B parallel DELs in reverse. Once on a 3-member etcd cluster
# started here on loopback (calico's WorkloadEndpoints and calico-ipam's blocks both in etcd) and
# once on the embedded local store. Everything runs inside a private netns; etcd is killed on exit.
# The chain is run as a runtime runs it: one exec per plugin, prevResult spliced in.
#   usage: netns-tests/bench/burst.sh [PODS=100] [ROUNDS=1]
#   PORTMAP_BACKEND=nftables|iptables sets portmap's backend (default: its own choice).
# Prints the wall time of each burst, per-pod chain latency p50/p99, CPU per pod, and the same
# burst of the kernel's own link work alone (`ip` only) for comparison. The figures of the last
# run are in README.md, section "Benchmarks".
set -euo pipefail
# shellcheck source=lib.sh
here="$(cd "$(dirname "$0")" && pwd)"; source "$here/lib.sh"
B="${1:-100}"; ROUNDS="${2:-1}"
command -v etcd >/dev/null || { echo "needs etcd (Debian etcd-server)" >&2; exit 1; }
OURS="$(our_bin_dir)"

W="$(mktemp -d)"; H="bench-burst-$$"
cleanup() {
  local p n
  local pids=()
  [ -f "$W/pids" ] && mapfile -t pids < "$W/pids"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for n in $(ip netns list | awk '{print $1}' | grep "^$H" || true); do ip netns del "$n"; done
  rm -rf "$W"
}
trap cleanup EXIT
ip netns add "$H"; ip -n "$H" link set lo up; ip netns exec "$H" sysctl -qw net.ipv4.ip_forward=1

cat > "$W/loop.sh" <<'L'
set -euo pipefail
source "$1/lib.sh"; B=$2; W=$3; OURS=$4; H=$5; ROUNDS=$6
export CNI_IFNAME=eth0 CNI_PATH="$OURS"

# conf STORE-JSON NODE -> the three plugin configs in $W/NODE.{calico,portmap,bandwidth}.json
conf() {
  local head="\"cniVersion\":\"1.0.0\",\"name\":\"burst\""
  echo "{$head,\"type\":\"calico\",$1,\"nodename\":\"$2\",\"nodename_file_optional\":true,\"mtu\":1440,\"log_level\":\"error\",\"log_file_path\":\"$W/cni.log\",\"ipam_lock_file\":\"$W/$2.lock\",\"ipam\":{\"type\":\"calico-ipam\"}}" > "$W/$2.calico.json"
  echo "{$head,\"type\":\"portmap\",\"snat\":true,${PORTMAP_BACKEND:+\"backend\":\"$PORTMAP_BACKEND\",}\"capabilities\":{\"portMappings\":true}}" > "$W/$2.portmap.json"
  echo "{$head,\"type\":\"bandwidth\",\"capabilities\":{\"bandwidth\":true}}" > "$W/$2.bandwidth.json"
}

# with_prev BASE-JSON RUNTIME-JSON PREV-FILE OUT (bash string ops: jq would cost more than a plugin)
with_prev() {
  local prev; IFS= read -r -d '' prev < "$3" || true
  printf '%s,"runtimeConfig":%s,"prevResult":%s}' "${1%\}}" "$2" "$prev" > "$4"
}

# pod NODE I -> ADD of the whole chain for pod I, latency appended to $W/add (fails loudly)
pod_add() {
  local n=$1 i=$2 d="$W/$1/$2" t0 t1 ok=1
  export CNI_CONTAINERID="$n-$i" CNI_NETNS="/run/netns/$H-$n-$i"
  t0=$EPOCHREALTIME
  CNI_COMMAND=ADD "$OURS/calico" < "$W/$n.calico.json" > "$d.r1" 2>> "$W/log" || ok=0
  if [ $ok = 1 ]; then
    with_prev "$(<"$W/$n.portmap.json")" "{\"portMappings\":[{\"hostPort\":$((10000 + i)),\"containerPort\":80,\"protocol\":\"tcp\"}]}" "$d.r1" "$d.pm"
    CNI_COMMAND=ADD "$OURS/portmap" < "$d.pm" > "$d.r2" 2>> "$W/log" || ok=0
  fi
  if [ $ok = 1 ]; then
    with_prev "$(<"$W/$n.bandwidth.json")" '{"bandwidth":{"ingressRate":8000000,"ingressBurst":80000,"egressRate":4000000,"egressBurst":40000}}' "$d.r2" "$d.bw"
    CNI_COMMAND=ADD "$OURS/bandwidth" < "$d.bw" > /dev/null 2>> "$W/log" || ok=0
  fi
  t1=$EPOCHREALTIME
  [ $ok = 1 ] || { echo "ADD $n-$i FAILED" >&2; tail -n 3 "$W/log" >&2; }
  ms $t0 $t1 >> "$W/add"
}

pod_del() {
  local n=$1 i=$2 d="$W/$1/$2" t0 t1 ok=1
  export CNI_CONTAINERID="$n-$i" CNI_NETNS="/run/netns/$H-$n-$i"
  t0=$EPOCHREALTIME
  CNI_COMMAND=DEL "$OURS/bandwidth" < "$d.bw" || ok=0
  CNI_COMMAND=DEL "$OURS/portmap" < "$d.pm" || ok=0
  CNI_COMMAND=DEL "$OURS/calico" < "$W/$n.calico.json" || ok=0
  t1=$EPOCHREALTIME
  [ $ok = 1 ] || echo "DEL $n-$i FAILED" >&2
  ms $t0 $t1 >> "$W/del"
}

# CPU (user+sys, ms) used so far by this shell's reaped children, grandchildren included: the
# plugins and the bash around them, not etcd (its members are reaped only at exit). Unlike wall
# time it does not depend on what else the machine runs, and CPU per pod x pods / cores is a
# floor under the burst's wall time.
child_cpu_ms() { awk -v hz="$(getconf CLK_TCK)" '{print int(($16 + $17) * 1000 / hz)}' "/proc/$$/stat"; }

burst() {  # LABEL STORE-JSON
  local i t0 t1 t2 c0 c1 c2 node="n$RANDOM" pids=() ips
  conf "$2" "$node"; mkdir -p "$W/$node"; rm -f "$W/add" "$W/del"
  for i in $(seq 1 "$B"); do ip netns add "$H-$node-$i"; done   # not timed
  c0=$(child_cpu_ms); t0=$EPOCHREALTIME
  # Wait for these jobs only: the etcd members are background children of this shell too.
  for i in $(seq 1 "$B"); do pod_add "$node" "$i" & pids+=($!); done
  wait "${pids[@]}"; t1=$EPOCHREALTIME; c1=$(child_cpu_ms)
  # Every pod got an address of its own (no duplicates handed out under contention).
  ips=$(cat "$W/$node"/*.r1 | grep -o '"address": *"[0-9./]*"' | sort | uniq -d | wc -l)
  [ "$ips" = 0 ] || echo "DUPLICATE ADDRESSES in $1" >&2
  pids=()
  for i in $(seq 1 "$B"); do pod_del "$node" "$i" & pids+=($!); done
  wait "${pids[@]}"; t2=$EPOCHREALTIME; c2=$(child_cpu_ms)
  printf "%-18s ADD burst wall=%8sms per-pod p50=%7sms p99=%7sms cpu/pod=%5.1fms\n" "$1" "$(ms $t0 $t1)" "$(pct "$W/add" 50)" "$(pct "$W/add" 99)" "$(ratio $((c1 - c0)) "$B")"
  printf "%-18s DEL burst wall=%8sms per-pod p50=%7sms p99=%7sms cpu/pod=%5.1fms\n" "$1" "$(ms $t1 $t2)" "$(pct "$W/del" 50)" "$(pct "$W/del" 99)" "$(ratio $((c2 - c1)) "$B")"
  for i in $(seq 1 "$B"); do ip netns del "$H-$node-$i"; done
}

# The kernel's share of the same burst: per pod, what the chain asks of it that is serialised on
# the host: a veth pair with one end in the pod's netns and an ifb (bandwidth's ingress device),
# under RTNL, and one nf_tables set element (the smallest change portmap makes), under the
# netns' nf_tables commit mutex; created, then deleted, by `ip`/`nft` execs in parallel as the
# plugins run. A link deletion waits for an RCU grace period under RTNL, and a process that
# deleted an nf_tables object waits for one at exit while holding the commit mutex, so 100 DELs
# queue behind each other there: a floor no plugin change lowers.
kernel_burst() {
  local i t0 t1 t2 pids=()
  for i in $(seq 1 "$B"); do ip netns add "$H-k-$i"; done   # not timed
  nft add table ip bench_kernel; nft add set ip bench_kernel ports '{ type inet_service; }'
  t0=$EPOCHREALTIME
  for i in $(seq 1 "$B"); do
    { ip link add "kh$i" type veth peer name eth0 netns "$H-k-$i" && ip link add "kb$i" type ifb &&
      nft add element ip bench_kernel ports "{ $((10000 + i)) }"; } & pids+=($!)
  done
  wait "${pids[@]}"; t1=$EPOCHREALTIME; pids=()
  for i in $(seq 1 "$B"); do
    { ip link del "kb$i"; nft delete element ip bench_kernel ports "{ $((10000 + i)) }"; ip link del "kh$i"; } & pids+=($!)
  done
  wait "${pids[@]}"; t2=$EPOCHREALTIME
  printf "%-18s ADD burst wall=%8sms (veth pair + ifb + one nft element per pod)\n" "kernel alone" "$(ms $t0 $t1)"
  printf "%-18s DEL burst wall=%8sms\n" "kernel alone" "$(ms $t1 $t2)"
  nft delete table ip bench_kernel
  for i in $(seq 1 "$B"); do ip netns del "$H-k-$i"; done
}

start_etcd three 3
# calico's ADD waits for a ready datastore (calico-node / `calicoctl datastore init` writes this).
ETCDCTL_API=3 etcdctl --endpoints "$EPS" put /calico/resources/v3/projectcalico.org/clusterinformations/default \
  '{"kind":"ClusterInformation","apiVersion":"projectcalico.org/v3","metadata":{"name":"default"},"spec":{"datastoreReady":true}}' >/dev/null
etcd_json="\"datastore_type\":\"etcdv3\",\"etcd_endpoints\":\"$EPS\""
local_json="\"datastore_type\":\"local\",\"datastore_path\":\"$W/local.db\""
echo "== $B parallel full-chain ADDs (calico+calico-ipam, portmap, bandwidth), then $B parallel DELs"
for _ in $(seq 1 "$ROUNDS"); do   # alternating, so machine load hits both stores alike
  burst "etcd 3 members" "$etcd_json"
  burst "local" "$local_json"
  kernel_burst
done
L
PORTMAP_BACKEND="${PORTMAP_BACKEND:-}" ip netns exec "$H" bash "$W/loop.sh" "$here" "$B" "$W" "$OURS" "$H" "$ROUNDS"
