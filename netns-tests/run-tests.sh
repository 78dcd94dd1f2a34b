#!/usr/bin/env bash
# The full test run (README command 2, and what CI runs). Installs what it needs on a fresh
# Debian 12 machine (as root), then: format check, clippy, build every binary, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_cmd ip || need+=(iproute2)
have_cmd iptables || need+=(iptables)
have_cmd nft || need+=(nftables)
have_cmd conntrack || need+=(conntrack)
have_cmd etcd || need+=(etcd-server)
have_cmd etcdctl || need+=(etcd-client)
have_cmd protoc || need+=(protobuf-compiler libprotobuf-dev)
[ -d /usr/include/google/protobuf ] || need+=(libprotobuf-dev)
have_cmd busybox || need+=(busybox-static)
have_cmd ping || need+=(iputils-ping)
have_cmd curl || need+=(curl)
have_cmd jq || need+=(jq)
have_cmd openssl || need+=(openssl)
[ -x /usr/lib/cni/portmap ] || need+=(containernetworking-plugins)
have_cmd sqlite3 || need+=(sqlite3)
have_cmd go || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/containernetworking/cni/libcni ] || need+=(golang-github-appc-cni-dev)
have_cmd xz || need+=(xz-utils)
have_cmd podman || need+=(podman)
have_cmd buildah || need+=(buildah)
have_cmd kubectl || need+=(kubernetes-client)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "the test suite creates network namespaces and must run as root" >&2
  exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build (all plugin binaries, used by the netns tests)"
cargo build --workspace --bins
echo "== static binaries for the image test (dev profile, crt-static; README \"Deploy\")"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --target x86_64-unknown-linux-gnu \
  -p bin-calico -p bin-calico-ipam -p bin-portmap -p bin-bandwidth -p bin-host-local -p bin-loopback -p bin-install-cni
echo "== cnitool (libcni's reference client, built offline from Debian packages; cached)"
netns-tests/tools/build-cnitool.sh
echo "== cargo test"
cargo test --workspace -- --test-threads="${TEST_THREADS:-2}"
