#!/usr/bin/env bash
# install-chdb.sh [CACHE_DIR]
#
# Fetches the chDB library (ClickHouse as a shared library) from the npm
# package @chdb/lib-linux-x64-gnu at a pinned version with `npm pack`,
# verifies the tarball's sha512 against the pinned dist.integrity (which
# the registry must also report), and unpacks libchdb.so into
# CACHE_DIR/<version>/ (default ./.cache/chdb).
#
# The version is pinned on purpose: 26.7.3-stable.1 contains the server
# code (TCP/HTTP listeners) that the embedded server needs; 26.5.x (the
# npm "latest" tag) does not.
#
# CACHE_DIR/libchdb.so is a symlink to the version's library.
#
# Idempotent: a second run checks the recorded integrity and the unpacked
# library and returns at once.
set -euo pipefail

PKG="@chdb/lib-linux-x64-gnu"
VERSION="26.7.3-stable.1"
# dist.integrity of that version, pinned: the registry must agree with it.
INTEGRITY="sha512-XP97mMqnc5tZpKQywR8N7cLTsHNiTmHr30pC5mzo3jWmukjKn2IBa60c2B/gWUNcuFjOMjWoorQICCqBVj5wpw=="
CACHE_DIR="${1:-./.cache/chdb}"
DEST="$CACHE_DIR/$VERSION"
LIB="$DEST/libchdb.so"
STAMP="$DEST/.integrity"

log() { printf 'install-chdb: %s\n' "$*" >&2; }

# CACHE_DIR/libchdb.so points at the pinned version's library, so a
# stable path (the Makefile's IOTPIPE_CHDB_LIB) finds it.
link() { ln -sfn "$VERSION/libchdb.so" "$CACHE_DIR/libchdb.so"; }

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) log "unsupported platform $(uname -s)-$(uname -m): only linux x86_64 (glibc) is packaged"; exit 1 ;;
esac

mkdir -p "$DEST"

if [[ -s "$LIB" && "$(cat "$STAMP" 2>/dev/null)" == "$INTEGRITY" ]]; then
  link
  log "libchdb.so $VERSION already present at $LIB (integrity $(cut -c1-24 "$STAMP")...)"
  echo "$LIB"
  exit 0
fi

command -v npm >/dev/null || { log "npm is required (apt-get install npm, or install Node.js)"; exit 1; }

log "asking the registry for the integrity of $PKG@$VERSION"
want="$(npm view "$PKG@$VERSION" dist.integrity 2>/dev/null || true)"
if [[ -z "$want" ]]; then
  log "registry did not answer; using the pinned integrity"
  want="$INTEGRITY"
elif [[ "$want" != "$INTEGRITY" ]]; then
  log "the registry's integrity '$want' differs from the pinned '$INTEGRITY'; refusing"
  exit 1
fi

tgz="$(ls "$DEST"/*.tgz 2>/dev/null | head -n1 || true)"
if [[ -z "$tgz" ]]; then
  log "downloading $PKG@$VERSION with npm pack into $DEST (large, about a few hundred MB)"
  (cd "$DEST" && npm pack --silent "$PKG@$VERSION" >/dev/null)
  tgz="$(ls "$DEST"/*.tgz | head -n1)"
else
  log "reusing downloaded tarball $tgz"
fi

log "verifying sha512 of $(basename "$tgz")"
# node comes with npm, so it is there; it hashes without loading the file at once.
got="sha512-$(node -e '
  const h = require("crypto").createHash("sha512");
  require("fs").createReadStream(process.argv[1]).on("data", d => h.update(d)).on("end", () => console.log(h.digest("base64")));
' "$tgz")"
if [[ "$got" != "$want" ]]; then
  log "integrity mismatch: got $got, want $want; removing the tarball, run again"
  rm -f "$tgz"
  exit 1
fi

log "unpacking libchdb.so"
tmp="$(mktemp -d "$DEST/unpack.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
tar -xzf "$tgz" -C "$tmp"
so="$(find "$tmp" -name 'libchdb.so' -type f | head -n1)"
if [[ -z "$so" ]]; then
  log "libchdb.so not found in $tgz"
  exit 1
fi
# Keep the C header beside the library for reference.
hdr="$(find "$tmp" -name 'chdb.h' -type f | head -n1)"
[[ -n "$hdr" ]] && cp "$hdr" "$DEST/chdb.h"
mv "$so" "$LIB.tmp"
mv "$LIB.tmp" "$LIB"
printf '%s\n' "$want" > "$STAMP"
rm -f "$tgz"
link
log "done: $LIB ($(du -h "$LIB" | cut -f1))"
echo "$LIB"
