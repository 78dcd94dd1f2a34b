#!/usr/bin/env bash
# Benchmark (not a test): calico-ipam assign + release latency, one process per operation as a
# runtime runs it, on the embedded local store and on 1- and 3-member etcd clusters started here
# (loopback, free ports, temp dirs, all inside a private netns; killed on exit).
#   Sequential: N pods ADD one after another (the store fills up to N allocations), then N DELs.
#   Burst: B parallel ADDs on one node, with the host lock (Calico's flock) on and off: wall time
#   of the burst and per-process latency, to decide whether the lock is worth it.
#   usage: netns-tests/bench/ipam.sh [PODS=1000] [BURST=50]
# The figures of the last run, and why the host lock stays on, are in README.md, section
# "Benchmarks".
set -euo pipefail
# shellcheck source=lib.sh
here="$(cd "$(dirname "$0")" && pwd)"; source "$here/lib.sh"
N="${1:-1000}"; B="${2:-50}"
top="$(cd "$here/../.." && pwd)"
(cd "$top" && cargo build --release -q -p bin-calico-ipam >&2)
TARGET="$(cd "$top" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
BIN="$TARGET/release/calico-ipam"
command -v etcd >/dev/null || { echo "needs etcd (Debian etcd-server)" >&2; exit 1; }

W="$(mktemp -d)"; H="bench-ipam-$$"
cleanup() {
  local p
  local pids=()
  [ -f "$W/pids" ] && mapfile -t pids < "$W/pids"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  ip netns del "$H" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
ip netns add "$H"; ip -n "$H" link set lo up

cat > "$W/loop.sh" <<'L'
set -euo pipefail
source "$1/lib.sh"; N=$2; B=$3; W=$4; BIN=$5
export CNI_IFNAME=eth0 CNI_PATH=/nonexistent CNI_NETNS=/proc/1/ns/net

# pct FILE P -> the P-th percentile (nearest rank)
pct() { sort -g "$1" | awk -v p="$2" '{a[NR]=$1} END {i=int(NR*p/100+0.999); if (i<1) i=1; printf "%.2f", a[i]}'; }
line() { printf "%-28s p50=%7sms p99=%7sms\n" "$1" "$(pct "$2" 50)" "$(pct "$2" 99)"; }

# Ports below the kernel's ephemeral range (32768+), so client connections cannot hold them;
# the caller records each one in USED so a run never hands out a port twice.
USED=" "
free_port() {
  local p
  while :; do
    p=$(( 20000 + RANDOM % 12000 ))
    [[ $USED == *" $p "* ]] && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    echo "$p"; return
  done
}

# start_etcd NAME MEMBERS -> endpoints csv in $EPS (every member healthy, or exit)
start_etcd() {
  local name=$1 n=$2 i cluster="" cports=() pports=() p ok
  EPS=""
  cports=(); pports=()
  for i in $(seq 0 $((n-1))); do p=$(free_port); USED+="$p "; cports+=("$p"); p=$(free_port); USED+="$p "; pports+=("$p"); done
  for i in $(seq 0 $((n-1))); do cluster+="${cluster:+,}$name$i=http://127.0.0.1:${pports[$i]}"; done
  for i in $(seq 0 $((n-1))); do
    etcd --name "$name$i" --data-dir "$W/$name$i" \
      --listen-client-urls "http://127.0.0.1:${cports[$i]}" --advertise-client-urls "http://127.0.0.1:${cports[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${pports[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${pports[$i]}" \
      --initial-cluster "$cluster" --initial-cluster-token "$name" >"$W/$name$i.log" 2>&1 &
    echo $! >> "$W/pids"
    EPS+="${EPS:+,}http://127.0.0.1:${cports[$i]}"
  done
  for _ in $(seq 100); do
    ok=1
    for p in "${cports[@]}"; do
      ETCDCTL_API=3 etcdctl --endpoints "http://127.0.0.1:$p" --command-timeout=1s endpoint health >/dev/null 2>&1 || ok=0
    done
    [ $ok = 1 ] && break
    sleep 0.2
  done
  [ $ok = 1 ] || { echo "etcd $name did not start:" >&2; tail -n 3 "$W/$name"*.log >&2; exit 1; }
  ETCDCTL_API=3 etcdctl --endpoints "$EPS" put /calico/resources/v3/projectcalico.org/ippools/default-ipv4-ippool \
    '{"kind":"IPPool","apiVersion":"projectcalico.org/v3","metadata":{"name":"default-ipv4-ippool"},"spec":{"cidr":"10.244.0.0/16","blockSize":26,"ipipMode":"Never","vxlanMode":"Never","natOutgoing":true,"nodeSelector":"all()"}}' >/dev/null
}

# conf STORE-JSON LOCK NODE
conf() { echo "{\"cniVersion\":\"1.0.0\",\"name\":\"bench\",\"type\":\"calico\",$1,\"nodename\":\"$3\",\"log_level\":\"error\",\"ipam_lock_file\":\"$W/$3.lock\",\"ipam\":{\"type\":\"calico-ipam\",\"host_lock\":$2}}"; }

sequential() {  # LABEL STORE-JSON
  local c i t0 t1; c="$(conf "$2" true seq-node)"
  rm -f "$W/add" "$W/del"
  CNI_COMMAND=ADD CNI_CONTAINERID=warmup "$BIN" <<<"$c" >/dev/null
  CNI_COMMAND=DEL CNI_CONTAINERID=warmup "$BIN" <<<"$c"
  for i in $(seq 1 "$N"); do
    t0=$EPOCHREALTIME; CNI_COMMAND=ADD CNI_CONTAINERID="p$i" "$BIN" <<<"$c" >/dev/null; t1=$EPOCHREALTIME
    ms $t0 $t1 >> "$W/add"
  done
  for i in $(seq 1 "$N"); do
    t0=$EPOCHREALTIME; CNI_COMMAND=DEL CNI_CONTAINERID="p$i" "$BIN" <<<"$c"; t1=$EPOCHREALTIME
    ms $t0 $t1 >> "$W/del"
  done
  paste "$W/add" "$W/del" | awk '{printf "%.3f\n", $1 + $2}' > "$W/both"
  line "$1 ADD" "$W/add"; line "$1 DEL" "$W/del"; line "$1 ADD+DEL" "$W/both"
}

one() {  # CONF CID OUT -> latency of one ADD appended to OUT (fails loudly)
  local t0 t1; t0=$EPOCHREALTIME
  CNI_COMMAND=ADD CNI_CONTAINERID="$2" "$BIN" <<<"$1" >/dev/null || echo "ADD $2 FAILED" >&2
  t1=$EPOCHREALTIME; ms $t0 $t1 >> "$3"
}

burst() {  # LABEL STORE-JSON LOCK
  local c i t0 t1 node="burst-$3-$RANDOM" pids=(); c="$(conf "$2" "$3" "$node")"
  rm -f "$W/burst"
  t0=$EPOCHREALTIME
  # Wait for these jobs only: the etcd members are background children of this shell too.
  for i in $(seq 1 "$B"); do one "$c" "$node-$i" "$W/burst" & pids+=($!); done
  wait "${pids[@]}"; t1=$EPOCHREALTIME
  printf "%-28s wall=%7sms per-ADD p50=%7sms p99=%7sms\n" "$1 lock=$3" "$(ms $t0 $t1)" "$(pct "$W/burst" 50)" "$(pct "$W/burst" 99)"
  pids=()
  for i in $(seq 1 "$B"); do CNI_COMMAND=DEL CNI_CONTAINERID="$node-$i" "$BIN" <<<"$c" & pids+=($!); done
  wait "${pids[@]}"
}

local_json="\"datastore_type\":\"local\",\"datastore_path\":\"$W/local/ipam.db\""
echo "== sequential: $N pods, one calico-ipam process per ADD / DEL"
sequential "local" "$local_json"
start_etcd one 1; e1="$EPS"; e1_json="\"datastore_type\":\"etcdv3\",\"etcd_endpoints\":\"$e1\""
sequential "etcd 1 member" "$e1_json"
start_etcd three 3; e3="$EPS"; e3_json="\"datastore_type\":\"etcdv3\",\"etcd_endpoints\":\"$e3\""
sequential "etcd 3 members" "$e3_json"
echo "== burst: $B parallel ADDs on one node (fresh node: includes claiming its first block)"
for round in 1 2 3; do   # alternating, so machine load hits both settings alike
  for lock in true false; do
    burst "local" "$local_json" $lock
    burst "etcd 1 member" "$e1_json" $lock
    burst "etcd 3 members" "$e3_json" $lock
  done
done
L
ip netns exec "$H" bash "$W/loop.sh" "$here" "$N" "$B" "$W" "$BIN"
