#!/usr/bin/env bash
# Builds the Debian package calico-cni-rs_<version>_amd64.deb with dpkg-deb from a staging dir:
# the plugins in /opt/cni/bin (calico, calico-ipam, portmap, bandwidth, host-local, loopback),
# calicoctl in /usr/bin, the docs and an example conflist for the embedded store in
# /usr/share/doc/calico-cni-rs. No maintainer scripts, no services: nothing starts by itself.
# (dpkg-deb rather than cargo-deb: see README "Deploy".)
#
#   usage: deploy/deb/build.sh [OUT_DIR]          (default <target dir>)
#   env:   PROFILE=release (default) | dev        cargo profile of the static build
#          BIN_DIR=DIR                            use binaries already in DIR (no cargo)
#          COMPRESS=xz (default) | gzip | none    dpkg-deb -Z (tests pack large debug builds: none)
# The binaries are the static ones the image uses (glibc static-pie; README "Lean binaries"),
# so the package does not depend on the host's libc version.
set -euo pipefail
top="$(cd "$(dirname "$0")/../.." && pwd)"
TRIPLE=x86_64-unknown-linux-gnu
PROFILE="${PROFILE:-release}"
PLUGINS="calico calico-ipam portmap bandwidth host-local loopback"
TD="${CARGO_TARGET_DIR:-$top/target}"
case "$TD" in /*) ;; *) TD="$top/$TD";; esac
OUT_DIR="${1:-$TD}"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -1)"
PKG=calico-cni-rs
DEB="$OUT_DIR/${PKG}_${VERSION}_amd64.deb"

if [ -z "${BIN_DIR:-}" ]; then
  pkgs=(); for b in $PLUGINS calicoctl; do pkgs+=(-p "bin-$b"); done
  (cd "$top" && RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --profile "$PROFILE" --target "$TRIPLE" "${pkgs[@]}" >&2)
  dir=$PROFILE; [ "$PROFILE" = dev ] && dir=debug
  BIN_DIR="$TD/$TRIPLE/$dir"
fi

stage="$(mktemp -d)"; trap 'rm -rf "$stage"' EXIT
root="$stage/$PKG"; doc="$root/usr/share/doc/$PKG"
mkdir -p "$root/DEBIAN" "$root/opt/cni/bin" "$root/usr/bin" "$doc/examples"
for b in $PLUGINS; do install -m 0755 "$BIN_DIR/$b" "$root/opt/cni/bin/$b"; done
install -m 0755 "$BIN_DIR/calicoctl" "$root/usr/bin/calicoctl"
install -m 0644 "$top/deploy/deb/calico-local.conflist" "$doc/examples/calico-local.conflist"
install -m 0644 "$top/README.md" "$doc/README.md"
{ echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: $PKG"; echo; echo "Files: *"; echo "License: Apache-2.0"
  echo " On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0."; } > "$doc/copyright"
chmod 0644 "$doc/copyright"

size_kib=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CTRL
Package: $PKG
Version: $VERSION
Architecture: amd64
Maintainer: calico-cni-rs maintainers <calico-cni-rs@localhost>
Installed-Size: $size_kib
Section: net
Priority: optional
Description: Calico CNI plugins and calicoctl, in Rust
 Drop-in replacements for Calico's CNI binaries (calico, calico-ipam) and the
 portmap, bandwidth, host-local and loopback plugins, installed in /opt/cni/bin,
 plus calicoctl. An example network config for the embedded IPAM store is in
 /usr/share/doc/$PKG/examples. Nothing is configured or started on install.
CTRL
(cd "$root" && find opt usr -type f -print0 | sort -z | xargs -0 md5sum > DEBIAN/md5sums)
mkdir -p "$OUT_DIR"
dpkg-deb --root-owner-group -Z"${COMPRESS:-xz}" --build "$root" "$DEB" >/dev/null
echo "$DEB"
