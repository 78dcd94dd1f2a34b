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

line() { printf "%-28s p50=%7sms p99=%7sms\n" "$1" "$(pct "$2" 50)" "$(pct "$2" 99)"; }

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
