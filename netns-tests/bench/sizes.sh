#!/usr/bin/env bash
# Lean binaries (not a test): builds the suite as statically linked x86_64 release binaries and
# prints, per binary, its size, its linkage, and the peak RSS and wall time of one exec, next to
# Debian's Go plugins in /usr/lib/cni.
#
# The static build (documented command; no musl target is needed, glibc's static-pie works):
#   RUSTFLAGS="-C target-feature=+crt-static" \
#     cargo build --release --target x86_64-unknown-linux-gnu --bins
#   -> target/x86_64-unknown-linux-gnu/release/<bin>; `file` says "static-pie linked",
#      `ldd` says "statically linked". --target matters: with it, RUSTFLAGS skips build
#      scripts and proc-macros (which must stay dynamic). The release profile (root
#      Cargo.toml) is opt-level "s", lto, codegen-units 1, panic abort, strip.
#   Caveat: a static glibc binary that resolves host names through NSS (getaddrinfo) needs the
#   same glibc's NSS modules at run time; plugins only resolve API/etcd server names, and the
#   "files"/"dns" modules are present on every glibc host.
#
# Measured per exec (median of RUNS): VERSION (start-up cost of every plugin); loopback ADD and
# DEL in a private namespace; calico + host-local ADD and DEL (Go peer: ptp + host-local), run
# in a private host namespace. Peak RSS is the process's max resident set (GNU time %M) and,
# for ADD/DEL, includes the delegated IPAM child.
#   usage: netns-tests/bench/sizes.sh [RUNS=20]      (root; SKIP_BUILD=1 measures what exists)
# The figures of the last run are in README.md, section "Lean binaries".
set -euo pipefail
# shellcheck source=lib.sh
here="$(cd "$(dirname "$0")" && pwd)"; top="$(cd "$here/../.." && pwd)"; source "$here/lib.sh"
RUNS="${1:-20}"
TRIPLE=x86_64-unknown-linux-gnu
GO=/usr/lib/cni
PLUGINS="calico calico-ipam bandwidth host-local loopback portmap"
TOOLS="calicoctl install-cni"
[ "$(id -u)" = 0 ] || { echo "sizes.sh: needs root (network namespaces)" >&2; exit 1; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
[ -x "$GO/loopback" ] || { apt-get update -qq && apt-get install -y -qq containernetworking-plugins >/dev/null; }

TD="${CARGO_TARGET_DIR:-$(cd "$top" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}"
OURS="$TD/$TRIPLE/release"
if [ -z "${SKIP_BUILD:-}" ]; then
  # One package at a time so a binary that does not build yet does not hide the others.
  for b in $PLUGINS $TOOLS; do
    (cd "$top" && RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build -q --release --target "$TRIPLE" -p "bin-$b" >&2) || echo "sizes.sh: bin-$b did not build" >&2
  done
fi

W="$(mktemp -d)"; H="sizes-$$"
cleanup() { for n in $(ip netns list | awk '{print $1}' | grep "^$H" || true); do ip netns del "$n"; done; rm -rf "$W"; }
trap cleanup EXIT

linkage() { case "$(file -b "$1")" in *static-pie*|*"statically linked"*) echo static;; *) echo dynamic;; esac; }
size_kib() { [ -x "$1" ] && echo "$(( $(stat -c %s "$1") / 1024 ))" || echo -; }

# run_n LABEL STDIN CMD... -> "medianRSSkB medianMs" (or "- -" if any run fails)
run_n() {
  local label=$1 in=$2; shift 2; : > "$W/rss"; : > "$W/ms"
  for _ in $(seq "$RUNS"); do
    local t0=$EPOCHREALTIME
    if ! /usr/bin/time -f %M -o "$W/t" "$@" < "$in" > "$W/out" 2>&1; then
      echo "sizes.sh: $label failed: $(head -c 300 "$W/out")" >&2; echo "- -"; return; fi
    local t1=$EPOCHREALTIME
    tail -1 "$W/t" >> "$W/rss"; ms "$t0" "$t1" >> "$W/ms"
  done
  echo "$(median "$W/rss") $(median "$W/ms")"
}

# add_del LABEL DIR PLUGIN CONF IFNAME -> "addRSS addMs delRSS delMs"; a fresh netns per run.
add_del() {
  local label=$1 dir=$2 p=$3 conf=$4 ifn=$5 i; : > "$W/ar"; : > "$W/am"; : > "$W/dr"; : > "$W/dm"
  [ -x "$dir/$p" ] || { echo "- - - -"; return; }
  for i in $(seq "$RUNS"); do
    local ns="$H-c$i" t0 t1 t2; ip netns add "$ns"
    export CNI_CONTAINERID="sz$i$p" CNI_NETNS="/run/netns/$ns" CNI_IFNAME="$ifn" CNI_PATH="$dir"
    t0=$EPOCHREALTIME
    if ! CNI_COMMAND=ADD /usr/bin/time -f %M -o "$W/t1" "$dir/$p" < "$conf" > "$W/out" 2>&1; then
      echo "sizes.sh: $label ADD failed: $(head -c 300 "$W/out")" >&2; ip netns del "$ns"; echo "- - - -"; return; fi
    t1=$EPOCHREALTIME
    CNI_COMMAND=DEL /usr/bin/time -f %M -o "$W/t2" "$dir/$p" < "$conf" > "$W/out" 2>&1 \
      || { echo "sizes.sh: $label DEL failed: $(head -c 300 "$W/out")" >&2; }
    t2=$EPOCHREALTIME
    ip netns del "$ns"
    tail -1 "$W/t1" >> "$W/ar"; ms "$t0" "$t1" >> "$W/am"; tail -1 "$W/t2" >> "$W/dr"; ms "$t1" "$t2" >> "$W/dm"
  done
  echo "$(median "$W/ar") $(median "$W/am") $(median "$W/dr") $(median "$W/dm")"
}

: > "$W/empty"
echo "Static release build ($TRIPLE, crt-static) vs Debian's Go plugins ($GO); medians of $RUNS execs."
echo "Sizes in KiB, peak RSS in KiB, times in ms."
echo
printf '| %-12s | %-8s | %9s | %9s | %12s | %12s | %11s | %11s |\n' binary linkage "size ours" "size Go" "VERSION RSS" "RSS Go" "VERSION ms" "ms Go"
printf '|%s|\n' "--------------|----------|-----------|-----------|--------------|--------------|-------------|-------------"
for b in $PLUGINS $TOOLS; do
  o="$OURS/$b"; g="$GO/$b"; link=-; ours="- -"; go="- -"
  if [ -x "$o" ]; then
    link=$(linkage "$o")
    case " $TOOLS " in
      *" $b "*) ours=$(run_n "$b --help" "$W/empty" "$o" --help);;
      *) ours=$(CNI_COMMAND=VERSION run_n "$b VERSION" "$W/empty" "$o");;
    esac
  fi
  [ -x "$g" ] && go=$(CNI_COMMAND=VERSION run_n "Go $b VERSION" "$W/empty" "$g")
  read -r ro mo <<< "$ours"; read -r rg mg <<< "$go"
  printf '| %-12s | %-8s | %9s | %9s | %12s | %12s | %11s | %11s |\n' "$b" "$link" "$(size_kib "$o")" "$(size_kib "$g")" "$ro" "$rg" "$mo" "$mg"
done
echo "(calicoctl and install-cni: --help instead of VERSION; no Go peer.)"
echo

# ADD/DEL in a private host namespace (calico creates its host-side veth in the current netns).
ip netns add "$H"; ip -n "$H" link set lo up
cat > "$W/lo.json" <<J
{"cniVersion":"1.0.0","name":"lo","type":"loopback"}
J
cat > "$W/calico.json" <<J
{"cniVersion":"1.0.0","name":"sizes","type":"calico","datastore_type":"local","nodename":"sizes","mtu":1500,
 "log_level":"error","log_file_path":"$W/cni.log",
 "ipam":{"type":"host-local","ranges":[[{"subnet":"10.98.0.0/16"}]],"dataDir":"$W/ipam-ours"}}
J
cat > "$W/ptp.json" <<J
{"cniVersion":"1.0.0","name":"sizes","type":"ptp","ipMasq":false,"mtu":1500,
 "ipam":{"type":"host-local","ranges":[[{"subnet":"10.99.0.0/16"}]],"dataDir":"$W/ipam-go"}}
J
# Functions and state are needed inside the namespace: export and run through bash.
export -f add_del ms median; export W H RUNS
inns() { ip netns exec "$H" bash -c "$*"; }
printf '| %-28s | %10s | %8s | %10s | %8s |\n' "ADD/DEL (ours vs Go)" "ADD RSS" "ADD ms" "DEL RSS" "DEL ms"
printf '|%s|\n' "------------------------------|------------|----------|------------|---------"
row() { local r; r=$(inns add_del "'$1'" "'$2'" "'$3'" "'$4'" "'$5'"); read -r a b c d <<< "$r"
        printf '| %-28s | %10s | %8s | %10s | %8s |\n' "$1" "$a" "$b" "$c" "$d"; }
row "loopback (ours)" "$OURS" loopback "$W/lo.json" lo
row "loopback (Go)" "$GO" loopback "$W/lo.json" lo
row "calico+host-local (ours)" "$OURS" calico "$W/calico.json" eth0
row "ptp+host-local (Go)" "$GO" ptp "$W/ptp.json" eth0
