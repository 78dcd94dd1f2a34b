#!/usr/bin/env bash
# Builds the OCI image that replaces Calico's calico/cni: no base image (FROM scratch), the
# suite's static binaries under /opt/cni/bin (calico, calico-ipam, portmap, bandwidth,
# host-local, loopback, and install-cni as `install`), PATH=/opt/cni/bin, working dir
# /opt/cni/bin, CMD ["/opt/cni/bin/install"] — the layout Calico's manifests call. Needs
# buildah (Debian: apt-get install buildah); no registry, no daemon. Writes an OCI archive.
#
#   usage: deploy/image/build.sh [OUT.tar]        (default <target dir>/calico-cni-rs.oci.tar)
#   env:   PROFILE=release (default) | dev        cargo profile of the static build
#          BIN_DIR=DIR                            use static binaries already in DIR (no cargo)
#          TAG=calico-cni-rs:<version>            name:tag recorded in the archive
# The build: RUSTFLAGS="-C target-feature=+crt-static" cargo build --target x86_64-unknown-linux-gnu
# (glibc static-pie, see README "Lean binaries"). Every binary is checked to be static.
set -euo pipefail
top="$(cd "$(dirname "$0")/../.." && pwd)"
TRIPLE=x86_64-unknown-linux-gnu
PROFILE="${PROFILE:-release}"
PLUGINS="calico calico-ipam portmap bandwidth host-local loopback"
command -v buildah >/dev/null || { echo "build.sh: buildah not found (apt-get install buildah)" >&2; exit 1; }

TD="${CARGO_TARGET_DIR:-$top/target}"
case "$TD" in /*) ;; *) TD="$top/$TD";; esac
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -1)"
TAG="${TAG:-calico-cni-rs:$VERSION}"
OUT="${1:-$TD/calico-cni-rs.oci.tar}"

if [ -z "${BIN_DIR:-}" ]; then
  pkgs=(); for b in $PLUGINS install-cni; do pkgs+=(-p "bin-$b"); done
  (cd "$top" && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --profile "$PROFILE" --target "$TRIPLE" "${pkgs[@]}" >&2)
  dir=$PROFILE; [ "$PROFILE" = dev ] && dir=debug
  BIN_DIR="$TD/$TRIPLE/$dir"
fi

stage="$(mktemp -d)"; ctr=""
cleanup() { [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1; rm -rf "$stage"; }
trap cleanup EXIT
mkdir -p "$stage/opt/cni/bin" "$stage/licenses"
for b in $PLUGINS install-cni; do
  src="$BIN_DIR/$b"
  [ -x "$src" ] || { echo "build.sh: $src missing" >&2; exit 1; }
  # A scratch image has no libc: anything dynamic would fail to start on the node.
  case "$(ldd "$src" 2>&1)" in
    *"statically linked"*|*"not a dynamic executable"*) ;;
    *) echo "build.sh: $src is dynamically linked; build with crt-static (see above)" >&2; exit 1;;
  esac
  dst="$b"; [ "$b" = install-cni ] && dst=install
  install -m 0755 "$src" "$stage/opt/cni/bin/$dst"
done
install -m 0644 "$top/LICENSE" "$stage/licenses/LICENSE"

ctr="$(buildah from scratch)"
buildah copy --quiet "$ctr" "$stage/" / >/dev/null
buildah config \
  --env PATH=/opt/cni/bin \
  --workingdir /opt/cni/bin \
  --cmd '["/opt/cni/bin/install"]' \
  --label org.opencontainers.image.title="calico-cni-rs" \
  --label org.opencontainers.image.description="Drop-in replacement for calico/cni: CNI plugins and installer, in Rust" \
  --label org.opencontainers.image.version="$VERSION" \
  --label org.opencontainers.image.licenses="Apache-2.0" \
  "$ctr"
mkdir -p "$(dirname "$OUT")"; rm -f "$OUT"
buildah commit --quiet --format oci --rm "$ctr" "oci-archive:$OUT:$TAG" >/dev/null
ctr=""
echo "$OUT"
