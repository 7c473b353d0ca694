# Sourced by examples/app/scripts/build-release.sh and examples/web/scripts/build-release.sh:
# what every release artifact build does the same way. Not run on its own.
#
#   release_begin SCRIPT USAGE_LINES SOURCE_DIR PREFIX [ARG]
#       Refuses options and extra arguments (an Ansible inventory scan runs every
#       executable with --list) before touching the filesystem, printing lines
#       USAGE_LINES (a sed range) of SCRIPT. Then sets VERSION (APP_VERSION, else
#       package.json's), NAME (PREFIX-VERSION), OUTDIR (ARG, else SOURCE_DIR/dist),
#       STAGE (a temp dir removed on exit) and ROOT (STAGE/NAME, not created).
#   release_pack
#       STAGE/NAME into OUTDIR/NAME.tar.gz with its .sha256, reproducible archive
#       metadata; prints the tarball's path on stdout (the scripts' contract).

release_begin() {
  local script=$1 usage_lines=$2 source_dir=$3 prefix=$4
  shift 4
  if [[ $# -gt 1 || "${1:-}" == -* ]]; then
    sed -n "${usage_lines}p" "$script" | sed 's/^# \{0,1\}//' >&2
    exit 2
  fi
  OUTDIR="${1:-$source_dir/dist}"
  local pkg_version
  pkg_version="$(node -p 'require(process.argv[1]).version' "$source_dir/package.json")"
  VERSION="${APP_VERSION:-$pkg_version}"
  # The version becomes a file and directory name: keep it to a safe alphabet.
  if [[ ! "$VERSION" =~ ^[0-9A-Za-z][0-9A-Za-z.+_-]*$ ]]; then
    echo "build-release: invalid version '$VERSION' (allowed: [0-9A-Za-z.+_-])" >&2
    exit 2
  fi
  NAME="$prefix-$VERSION"
  mkdir -p "$OUTDIR"
  OUTDIR="$(cd "$OUTDIR" && pwd)"
  STAGE="$(mktemp -d "${TMPDIR:-/tmp}/$prefix-release.XXXXXX")"
  trap 'rm -rf "$STAGE"' EXIT
  ROOT="$STAGE/$NAME"
}

release_pack() {
  # Sorted names, fixed mtime/owner/mode, no gzip timestamp: the same files
  # give the same checksum.
  TARBALL="$OUTDIR/$NAME.tar.gz"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
    --mode='u+rwX,go+rX,go-w' --format=gnu \
    -C "$STAGE" -cf - "$NAME" | gzip -n -9 > "$TARBALL.tmp"
  mv "$TARBALL.tmp" "$TARBALL"
  (cd "$OUTDIR" && sha256sum "$NAME.tar.gz" > "$NAME.tar.gz.sha256")
  echo "build-release: $(du -h "$TARBALL" | cut -f1) $(cut -d' ' -f1 "$TARBALL.sha256")" >&2
  echo "$TARBALL"
}
