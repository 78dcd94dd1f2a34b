#!/usr/bin/env bash
# The full test run (README command 2, and what CI runs). Installs what it needs on a fresh
# Debian 12 machine (as root), then: format check, clippy, docs, shellcheck, rust-version check,
# build every binary, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "the test suite creates network namespaces and must run as root" >&2
  exit 1
fi

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
have_cmd shellcheck || need+=(shellcheck)
have_cmd podman || need+=(podman)
have_cmd buildah || need+=(buildah)
have_cmd kubectl || need+=(kubernetes-client)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Cargo.toml's rust-version must not promise a compiler older than a dependency needs.
rust_version_check() {
  local ours need host
  norm() { if [[ $1 =~ ^[0-9]+\.[0-9]+$ ]]; then echo "$1.0"; else echo "$1"; fi; }
  ours="$(norm "$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)")"
  host="$(rustc -vV | sed -n 's/^host: //p')"
  need="$(cargo metadata --format-version 1 --filter-platform "$host" | jq -r '
    [.resolve.nodes[].id] as $used
    | [.packages[] | select(.source != null and .rust_version != null)
       | select(.id as $id | $used | index($id)) | .rust_version]
    | max_by(split(".") | map(tonumber)) // "1.0"')"
  need="$(norm "$need")"
  if [ "$(printf '%s\n%s\n' "$need" "$ours" | sort -V | tail -n1)" != "$ours" ]; then
    echo "rust-version $ours in Cargo.toml is below $need, which a dependency requires" >&2
    return 1
  fi
  echo "rust-version $ours (dependencies need at most $need)"
}

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo doc (warnings such as broken intra-doc links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
echo "== shellcheck (every shell script of the repository)"
mapfile -t scripts < <(find . \( -name target -o -name .git \) -prune -o -type f \
  \( -name '*.sh' -o -path ./.ci/run \) -print)
shellcheck -x "${scripts[@]}"
echo "== rust-version in Cargo.toml is at least every dependency's"
rust_version_check
echo "== cargo build (all plugin binaries, used by the netns tests)"
cargo build --workspace --bins
echo "== static binaries for the image test (dev profile, crt-static; README \"Deploy\")"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --target x86_64-unknown-linux-gnu \
  -p bin-calico -p bin-calico-ipam -p bin-portmap -p bin-bandwidth -p bin-host-local -p bin-loopback -p bin-install-cni
echo "== cnitool (libcni's reference client, built offline from Debian packages; cached)"
netns-tests/tools/build-cnitool.sh
echo "== cargo test"
cargo test --workspace -- --test-threads="${TEST_THREADS:-2}"
