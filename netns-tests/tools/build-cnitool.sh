#!/usr/bin/env bash
# Builds the upstream `cnitool` (libcni's reference CNI client) offline from Debian packages and
# caches it; the netns-tests' cnitool conformance tests exec it. Prints the binary's path.
#   Go toolchain:  golang-go
#   libcni:        golang-github-appc-cni-dev (a GOPATH tree under /usr/share/gocode)
#   cnitool.go:    the Debian *source* package golang-github-appc-cni (the -dev package does not
#                  ship cnitool/), fetched with `apt-get source --download-only`, which needs a
#                  deb-src entry: derived from the machine's own Debian entry when missing.
# No Go module proxy, no git. Needs root (apt). The binary is cached in $CNITOOL_CACHE
# (default /var/cache/cni-suite) together with a stamp of the libcni package version, so later
# runs are instant until that package changes.
# Usage: build-cnitool.sh            -> prints the cached binary's path
#        CNITOOL_FORCE=1 build-cnitool.sh   rebuilds
set -euo pipefail

CACHE="${CNITOOL_CACHE:-/var/cache/cni-suite}"
OUT="$CACHE/cnitool"
STAMP="$CACHE/cnitool.stamp"
export DEBIAN_FRONTEND=noninteractive

log() { echo "build-cnitool: $*" >&2; }
[ "$(id -u)" -eq 0 ] || { log "needs root (installs Debian packages)"; exit 1; }

libcni_version() { dpkg-query -W -f='${Version}' golang-github-appc-cni-dev 2>/dev/null || true; }

if [ -z "${CNITOOL_FORCE:-}" ] && [ -x "$OUT" ] && [ -f "$STAMP" ] \
  && [ "$(cat "$STAMP")" = "libcni $(libcni_version)" ]; then
  echo "$OUT"
  exit 0
fi

# The machine's Debian archive entry, turned into a deb-src entry (deb822 or one-line format).
add_deb_src() {
  local dst
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    dst=/etc/apt/sources.list.d/cni-suite-debian-src.sources
    # First stanza (paragraph) whose URIs is the main archive (not -security), Types -> deb-src.
    awk 'BEGIN { RS = ""; ORS = "\n\n" }
         /URIs:[^\n]*\/debian[[:space:]\/]*(\n|$)/ && !done { sub(/Types:[^\n]*/, "Types: deb-src"); print; done = 1 }' \
      /etc/apt/sources.list.d/debian.sources > "$dst"
  else
    dst=/etc/apt/sources.list.d/cni-suite-debian-src.list
    grep -hE '^deb[[:space:]]' /etc/apt/sources.list 2>/dev/null | grep -v -- '-security' \
      | sed 's/^deb[[:space:]]/deb-src /' > "$dst"
  fi
  if [ ! -s "$dst" ]; then
    rm -f "$dst"
    log "no Debian archive entry found in /etc/apt to derive a deb-src entry from"
    exit 1
  fi
  log "added $dst"
}

have_deb_src() {
  grep -rqsE '^(Types:.*deb-src|deb-src[[:space:]])' /etc/apt/sources.list /etc/apt/sources.list.d/
}

need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/github.com/containernetworking/cni/libcni ] || need+=(golang-github-appc-cni-dev)
command -v xz >/dev/null 2>&1 || need+=(xz-utils)

updated=
if ! have_deb_src; then
  add_deb_src
  apt-get update -qq
  updated=1
fi
if [ ${#need[@]} -gt 0 ]; then
  [ -n "$updated" ] || { apt-get update -qq; updated=1; }
  log "installing ${need[*]}"
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
# --download-only: only the .dsc/.orig/.debian files (no dpkg-dev, no unpacking of everything).
if ! apt-get source --download-only -qq golang-github-appc-cni >/dev/null 2>&1; then
  [ -n "$updated" ] || apt-get update -qq
  apt-get source --download-only -qq golang-github-appc-cni >/dev/null
fi
origs=(golang-github-appc-cni_*.orig.tar.*)
ORIG="${origs[0]}"
tar xf "$ORIG" --wildcards '*/cnitool/cnitool.go'
SRC="$(ls -d ./*/cnitool)"

mkdir -p "$CACHE"
# Build to a temp name and rename: a test exec'ing the cached binary never sees a partial file.
( cd "$SRC" && GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS='' CGO_ENABLED=0 \
    GOCACHE="$WORK/gocache" go build -trimpath -o "$OUT.tmp" . )
mv -f "$OUT.tmp" "$OUT"
echo "libcni $(libcni_version)" > "$STAMP"
log "built $OUT ($(go version | awk '{print $3}'), libcni $(libcni_version))"
echo "$OUT"
