#!/usr/bin/env bash
# The demo (README command 1), for a fresh Debian 12 machine as root:
#   bash netns-tests/demo.sh [--ipam calico-ipam|host-local|auto]
# Installs what it needs (Debian packages; Rust via rustup when cargo is missing or too old),
# builds the plugins and the demo driver, then runs Calico's real conflist chain (calico +
# calico-ipam on the embedded local store, portmap, bandwidth) for two pods in private network
# namespaces and prints what each step did, the traffic, the shaping, DEL, and proof that
# nothing is left (see netns-tests/src/bin/cni-demo.rs).
# Nothing outlives the run: the namespaces belong to the demo process (they vanish with it,
# even if it is killed), and every file it writes is under one temp dir removed by the trap.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "the demo creates network namespaces: run it as root" >&2; exit 1; }

say() { printf '\n\033[1m### %s\033[0m\n' "$*"; }

# --- packages: tools the demo shows (ip, tc, nft, curl, ping, sqlite3) and a C toolchain
# (the local store bundles SQLite).
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have ip || need+=(iproute2)
have nft || need+=(nftables)
have iptables || need+=(iptables)
have curl || need+=(curl ca-certificates)
have ping || need+=(iputils-ping)
have sqlite3 || need+=(sqlite3)
have cc || need+=(gcc libc6-dev)
have protoc || need+=(protobuf-compiler libprotobuf-dev)
if [ ${#need[@]} -gt 0 ]; then
  say "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- Rust: the workspace needs a recent stable toolchain (Debian 12's rustc is too old).
# shellcheck source=/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
want="$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n1)"
rust_ok() {
  have cargo || return 1
  local have_v; have_v="$(rustc --version | awk '{print $2}')"
  [ "$(printf '%s\n%s\n' "$want" "$have_v" | sort -V | head -n1)" = "$want" ]
}
if ! rust_ok; then
  if have rustup; then
    say "updating the Rust toolchain (need >= $want)"
    rustup toolchain install stable --profile minimal && rustup default stable
  else
    say "installing Rust with rustup (need >= $want)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
  fi
fi

say "building the plugins and the demo driver (cargo build)"
cargo build --bins -p bin-calico -p bin-calico-ipam -p bin-host-local -p bin-portmap \
  -p bin-bandwidth -p bin-loopback -p netns-tests
TARGET="$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"

WORK="$(mktemp -d /tmp/cni-demo.XXXXXX)"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
say "running the demo (all state under $WORK and in namespaces owned by the demo process)"
TMPDIR="$WORK" CNI_BIN_DIR="$TARGET/debug" "$TARGET/debug/cni-demo" "$@"
