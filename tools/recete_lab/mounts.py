"""Mounts: the per-machine overlayfs roots, and safe removal of directories
that may still have something mounted inside (a crashed `up` or mmdebstrap)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from .util import LabError, run

MOUNTINFO = Path("/proc/self/mountinfo")


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo (octal).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[str]:
    """Mount points listed in a /proc/self/mountinfo text, in file order."""
    points = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(_unescape(fields[4]))
    return points


def mounts_under(directory: Path, text: str | None = None) -> list[str]:
    """Mount points at or below DIRECTORY, deepest first (the unmount order)."""
    if text is None:
        text = MOUNTINFO.read_text()
    base = str(directory).rstrip("/")
    found = [p for p in parse_mountinfo(text) if p == base or p.startswith(base + "/")]
    # Deepest first; among equal paths (stacked mounts) the last mounted first.
    order = {p: i for i, p in enumerate(found)}
    return sorted(set(found), key=lambda p: (p.count("/"), order[p]), reverse=True)


def is_mounted(path: Path) -> bool:
    return str(path) in parse_mountinfo(MOUNTINFO.read_text())


def mount_overlay(lower: Path, upper: Path, work: Path, target: Path) -> None:
    for p in (lower, upper, work, target):
        if any(c in str(p) for c in ",:"):  # would break the option string
            raise LabError(f"path {p} contains ',' or ':' which overlayfs options cannot carry")
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    run(["mount", "-t", "overlay", "overlay", "-o", opts, str(target)])


def unmount_all_under(directory: Path) -> list[str]:
    """Unmount everything at or below DIRECTORY, deepest first; returns what was unmounted."""
    done = []
    # A path can carry stacked mounts; loop until mountinfo shows none left.
    for _ in range(10):
        points = mounts_under(directory)
        if not points:
            return done
        for point in points:
            if run(["umount", point], check=False).returncode != 0:
                # Still busy (a process inside it): detach it now, the kernel
                # frees it when the last user goes away.
                run(["umount", "--lazy", point])
            done.append(point)
    raise LabError(f"could not unmount everything under {directory}: {mounts_under(directory)}")


def remove_tree(directory: Path) -> None:
    """rm -rf DIRECTORY, but only after nothing is mounted inside it.

    Deleting through a leftover bind mount of /dev or /proc (mmdebstrap's) or
    a still-mounted overlay would delete what lies beneath, so unmount first
    and refuse if anything remains.
    """
    if not directory.exists():
        return
    unmount_all_under(directory)
    left = mounts_under(directory)
    if left:
        raise LabError(f"refusing to delete {directory}: still mounted: {', '.join(left)}")
    shutil.rmtree(directory)


def overlay_lowerdirs(text: str | None = None) -> list[str]:
    """lowerdir= paths of every mounted overlay (images still in use)."""
    if text is None:
        text = MOUNTINFO.read_text()
    found = []
    for line in text.splitlines():
        if " - overlay " not in line:
            continue
        super_opts = line.split(" - ", 1)[1].split()[-1]
        for opt in super_opts.split(","):
            if opt.startswith("lowerdir="):
                found.extend(_unescape(opt[len("lowerdir="):]).split(":"))
    return found
