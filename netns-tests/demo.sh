#!/usr/bin/env bash
# The demo (README command 1): builds the suite and wires a pod in network namespaces of its own,
# printing what each step did. Everything it creates is removed at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "the demo creates network namespaces: run it as root" >&2; exit 1; }
command -v ip >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null; }

echo "== building the plugins"
cargo build --release --bins -q
BIN="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release"

POD="demo-pod-$$"
cleanup() { ip netns del "$POD" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$POD"

run() { # verb plugin config
  echo "\$ CNI_COMMAND=$1 $2 < config"
  printf '%s' "$3" | CNI_COMMAND="$1" CNI_CONTAINERID=demo-ctr CNI_NETNS="/run/netns/$POD" \
    CNI_IFNAME=lo CNI_PATH="$BIN" "$BIN/$2" && echo "  -> exit 0"
}
LO='{"cniVersion":"1.0.0","name":"demo","type":"loopback"}'

echo; echo "== pod namespace before ADD:"; ip -n "$POD" -br addr show lo
echo; echo "== loopback ADD"; run ADD loopback "$LO"
echo; echo "== pod namespace after ADD:"; ip -n "$POD" -br addr show lo
echo; echo "== loopback CHECK"; run CHECK loopback "$LO"
echo; echo "== loopback DEL"; run DEL loopback "$LO"
echo; echo "== pod namespace after DEL:"; ip -n "$POD" -br addr show lo
cleanup; trap - EXIT
echo; echo "== namespaces removed; nothing left behind"
