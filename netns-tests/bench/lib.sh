# shellcheck shell=bash
# Shared helpers for the benchmark scripts (sourced). Timings come from bash's EPOCHREALTIME
# around direct plugin execs inside a private host namespace (no `ip netns exec` per call).

# ms START END -> milliseconds with 3 decimals
ms() { local a=${1/./} b=${2/./}; printf '%d.%03d\n' $(( (10#$b - 10#$a) / 1000 )) $(( (10#$b - 10#$a) % 1000 )); }

# stats LABEL FILE -> "LABEL n= median= p90= min= max=" ; prints the median on fd 3 too
stats() {
  sort -g "$2" | awk -v l="$1" '{a[NR]=$1} END {
    printf "%-34s n=%-4d median=%8.2fms p90=%8.2fms min=%8.2fms max=%8.2fms\n", l, NR, a[int((NR+1)/2)], a[int(NR*0.9+0.5)], a[1], a[NR] }'
}

# pct FILE P -> the P-th percentile (nearest rank)
pct() { sort -g "$1" | awk -v p="$2" '{a[NR]=$1} END {i=int(NR*p/100+0.999); if (i<1) i=1; printf "%.2f", a[i]}'; }

median() { sort -g "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# The release plugins of this workspace as the image ships them: static (glibc static-pie,
# deploy/image/build.sh's build), which start in about half the CPU time of the dynamically
# linked build (no ld.so symbol binding; README "Lean binaries"). BENCH_DYNAMIC=1 measures the
# plain `cargo build --release` instead; BENCH_BIN_DIR overrides both (a saved build to compare).
our_bin_dir() {
  [ -n "${BENCH_BIN_DIR:-}" ] && { echo "$BENCH_BIN_DIR"; return; }
  local top td; top="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  td="$(cd "$top" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
  if [ -n "${BENCH_DYNAMIC:-}" ]; then
    (cd "$top" && cargo build --release --bins -q >&2)
    echo "$td/release"
    return
  fi
  local pkgs=() b
  for b in calico calico-ipam portmap bandwidth host-local loopback; do pkgs+=(-p "bin-$b"); done
  (cd "$top" && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --target x86_64-unknown-linux-gnu "${pkgs[@]}" -q >&2)
  echo "$td/x86_64-unknown-linux-gnu/release"
}

# --- etcd on loopback (callers keep a work dir in $W; member pids go to $W/pids) ---

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
