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

WEB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The argument check, version, staging dir and packing every release shares.
# shellcheck source=../../scripts/release.sh
. "$WEB_DIR/../scripts/release.sh"
release_begin "${BASH_SOURCE[0]}" 2,12 "$WEB_DIR" recete-web "$@"
BUILD="$STAGE/build"
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

release_pack
