"""A cgroup per machine.

With --keep-unit, systemd-nspawn uses the cgroup it was started in as the
container's root and creates `payload/` and `supervisor/` inside it. On a
host without systemd every process sits in the root cgroup, so two machines
would share (and fight over) the same `payload/`. Each machine's nspawn is
therefore started inside its own cgroup, recete-lab/<lab>-<host>, in the
hierarchies systemd uses (cgroup v1 name=systemd and/or cgroup2).
"""
from __future__ import annotations

import os
from pathlib import Path

from .mounts import MOUNTINFO, _unescape

ROOT = "recete-lab"


def hierarchies(text: str | None = None) -> list[Path]:
    """Mount points of the cgroup2 hierarchy and the v1 name=systemd one."""
    if text is None:
        text = MOUNTINFO.read_text()
    found = []
    for line in text.splitlines():
        pre, _, post = line.partition(" - ")
        fields, post_fields = pre.split(), post.split()
        if len(fields) < 5 or len(post_fields) < 3:
            continue
        fstype, super_opts = post_fields[0], post_fields[2]
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in super_opts.split(",")):
            found.append(Path(_unescape(fields[4])))
    return found


def machine_cgroups(machine: str) -> list[Path]:
    return [h / ROOT / machine for h in hierarchies()]


def prepare(machine: str) -> list[Path]:
    dirs = machine_cgroups(machine)
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def enter(dirs: list[Path]) -> None:
    """Move the calling process into DIRS (run in the child just before exec)."""
    pid = str(os.getpid())
    for d in dirs:
        (d / "cgroup.procs").write_text(pid)


def remove(machine: str) -> None:
    """rmdir the machine's cgroups, deepest first (they must be empty)."""
    for top in machine_cgroups(machine):
        _rmdir_tree(top)


def _rmdir_tree(top: Path) -> None:
    if not top.is_dir():
        return
    for dirpath, dirnames, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass  # still has processes: reported by `leftovers`


def leftovers() -> list[str]:
    """Machine cgroups still present under any hierarchy."""
    found = []
    for h in hierarchies():
        top = h / ROOT
        if top.is_dir():
            found += [str(p) for p in sorted(top.iterdir()) if p.is_dir()]
    return found


def remove_root_if_empty() -> None:
    for h in hierarchies():
        try:
            os.rmdir(h / ROOT)
        except OSError:
            pass
