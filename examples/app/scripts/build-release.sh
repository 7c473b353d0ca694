#!/usr/bin/env bash
# Build the release artifact on the controller:
#   OUTDIR/recete-app-<version>.tar.gz  (top-level dir recete-app-<version>/)
#   OUTDIR/recete-app-<version>.tar.gz.sha256
# The hosts then only unpack it and run `node src/server.js`: no npm and no
# registry access needed on them, and every host runs byte-identical code.
#
# Usage: scripts/build-release.sh [OUTDIR]      (default: examples/app/dist)
#   APP_VERSION=1.1.0 scripts/build-release.sh  builds a second version from
#                                               the same source (rolling deploy tests)
# Prints the artifact's path on stdout (progress goes to stderr).
set -euo pipefail

APP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The argument check, version, staging dir and packing every release shares.
# shellcheck source=../../scripts/release.sh
. "$APP_DIR/../scripts/release.sh"
release_begin "${BASH_SOURCE[0]}" 2,11 "$APP_DIR" recete-app "$@"
mkdir -p "$ROOT"

# Only what runs in production: no tests, scripts, README or dev tooling.
cp -R "$APP_DIR/src" "$ROOT/src"
cp "$APP_DIR/package.json" "$APP_DIR/package-lock.json" "$ROOT/"
printf '%s\n' "$VERSION" > "$ROOT/VERSION"

# Exactly the locked production dependencies. --omit=optional and
# --ignore-scripts keep native add-ons out (msgpackr falls back to pure JS),
# so one artifact runs on any Node >= 18 / CPU of the hosts. The npm cache
# makes this fast after the first build; --prefer-offline avoids needless
# registry round-trips for what is cached.
echo "build-release: npm ci in $ROOT" >&2
(cd "$ROOT" && npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund \
  --prefer-offline --loglevel=error >&2)

release_pack
