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

usage() { sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; }
# Options are not taken: refuse anything that looks like one (e.g. an
# Ansible inventory scan running every executable with --list) before
# touching the filesystem.
if [[ $# -gt 1 || "${1:-}" == -* ]]; then
  usage
  exit 2
fi

APP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUTDIR="${1:-$APP_DIR/dist}"

PKG_VERSION="$(node -p 'require(process.argv[1]).version' "$APP_DIR/package.json")"
VERSION="${APP_VERSION:-$PKG_VERSION}"
# The version becomes a file and directory name: keep it to a safe alphabet.
if [[ ! "$VERSION" =~ ^[0-9A-Za-z][0-9A-Za-z.+_-]*$ ]]; then
  echo "build-release: invalid version '$VERSION' (allowed: [0-9A-Za-z.+_-])" >&2
  exit 2
fi
NAME="recete-app-$VERSION"

mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
STAGE="$(mktemp -d "${TMPDIR:-/tmp}/recete-release.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
ROOT="$STAGE/$NAME"
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

# Reproducible archive: sorted names, fixed mtime/owner/mode, no gzip
# timestamp, so the same inputs give the same checksum.
TARBALL="$OUTDIR/$NAME.tar.gz"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
  --mode='u+rwX,go+rX,go-w' --format=gnu \
  -C "$STAGE" -cf - "$NAME" | gzip -n -9 > "$TARBALL.tmp"
mv "$TARBALL.tmp" "$TARBALL"
(cd "$OUTDIR" && sha256sum "$NAME.tar.gz" > "$NAME.tar.gz.sha256")

echo "build-release: $(du -h "$TARBALL" | cut -f1) $(cut -d' ' -f1 "$TARBALL.sha256")" >&2
echo "$TARBALL"
