#!/usr/bin/env bash
# Build the web app's release artifact on the controller:
#   OUTDIR/recete-web-<version>.tar.gz  (top-level dir recete-web-<version>/)
#   OUTDIR/recete-web-<version>.tar.gz.sha256
# The hosts then only unpack it and run `node server.js` in it (Next.js
# standalone output): no npm, no build and no registry access on them, and
# every host serves the same build (same asset hashes and build id).
#
# Usage: scripts/build-release.sh [OUTDIR]      (default: examples/web/dist)
#   APP_VERSION=1.1.0 scripts/build-release.sh  builds a second version from
#                                               the same source (rolling deploy tests)
# Prints the artifact's path on stdout (progress goes to stderr).
set -euo pipefail

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }
# Options are not taken: refuse anything that looks like one (e.g. an
# Ansible inventory scan running every executable with --list) before
# touching the filesystem.
if [[ $# -gt 1 || "${1:-}" == -* ]]; then
  usage
  exit 2
fi

WEB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUTDIR="${1:-$WEB_DIR/dist}"

PKG_VERSION="$(node -p 'require(process.argv[1]).version' "$WEB_DIR/package.json")"
VERSION="${APP_VERSION:-$PKG_VERSION}"
# The version becomes a file and directory name: keep it to a safe alphabet.
if [[ ! "$VERSION" =~ ^[0-9A-Za-z][0-9A-Za-z.+_-]*$ ]]; then
  echo "build-release: invalid version '$VERSION' (allowed: [0-9A-Za-z.+_-])" >&2
  exit 2
fi
NAME="recete-web-$VERSION"

mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/recete-web-release.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
BUILD="$STAGE/build"
ROOT="$STAGE/$NAME"
mkdir -p "$BUILD"

# Build in a copy of the sources, never in the working tree: no node_modules
# or .next of a developer's (nor a `next dev` cache) ends up in a release.
for f in app pages lib styles public middleware.js instrumentation.js next.config.mjs package.json package-lock.json; do
  cp -R "$WEB_DIR/$f" "$BUILD/$f"
done

# All the locked dependencies, optional ones included: `next build` needs
# @next/swc-linux-x64-gnu (its compiler). sharp comes along (an optional
# dependency of next) but is left out of the standalone trace
# (next.config.mjs), so no native add-on reaches the artifact.
# --ignore-scripts: none of them needs an install script for the build.
echo "build-release: npm ci in $BUILD" >&2
(cd "$BUILD" && npm ci --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error >&2)

echo "build-release: next build ($VERSION)" >&2
(cd "$BUILD" && APP_VERSION="$VERSION" NEXT_TELEMETRY_DISABLED=1 node node_modules/next/dist/bin/next build >&2)

# The layout Next.js documents for standalone output: the traced server,
# then .next/static and public/ beside it (server.js serves both).
cp -R "$BUILD/.next/standalone" "$ROOT"
cp -R "$BUILD/.next/static" "$ROOT/.next/static"
cp -R "$BUILD/public" "$ROOT/public"
cp "$BUILD/package-lock.json" "$ROOT/"
printf '%s\n' "$VERSION" > "$ROOT/VERSION"
# No native add-on may slip in through the trace: the artifact must run on
# any host's CPU and libc, as the API's does.
if native="$(find "$ROOT" -name '*.node' -print -quit)" && [[ -n "$native" ]]; then
  echo "build-release: native add-on in the artifact: ${native#"$STAGE/"}" >&2
  exit 1
fi

# Reproducible archive metadata: sorted names, fixed mtime/owner/mode, no
# gzip timestamp. (The contents are not reproducible: every `next build`
# draws a new build id and preview/encryption keys.)
TARBALL="$OUTDIR/$NAME.tar.gz"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
  --mode='u+rwX,go+rX,go-w' --format=gnu \
  -C "$STAGE" -cf - "$NAME" | gzip -n -9 > "$TARBALL.tmp"
mv "$TARBALL.tmp" "$TARBALL"
(cd "$OUTDIR" && sha256sum "$NAME.tar.gz" > "$NAME.tar.gz.sha256")

echo "build-release: $(du -h "$TARBALL" | cut -f1) $(cut -d' ' -f1 "$TARBALL.sha256")" >&2
echo "$TARBALL"
