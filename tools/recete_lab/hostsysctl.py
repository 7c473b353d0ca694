"""Kernel settings of the host that the labs need, and putting them back.

The tool raises them on `up` and records the values it found; the `down`
of the last lab restores those values, so a host without labs is as the
tool found it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .paths import state_root

PROC_SYS = Path("/proc/sys")

# key under /proc/sys: ("exact" | "min", value)
SETTINGS = {
    # Machines reach Debian's mirror through the host (NAT).
    "net/ipv4/ip_forward": ("exact", 1),
    # Each machine's systemd and services hold inotify instances, and all
    # machines run as the host's root (no user namespaces), so they share
    # root's quota: the default of 128 runs out at about ten machines, and the
    # next ones boot without sshd ("Failed to create inotify object: Too many
    # open files").
    "fs/inotify/max_user_instances": ("min", 8192),
    "fs/inotify/max_user_watches": ("min", 524288),
}


def saved_file() -> Path:
    """Original values of the settings the tool changed; exists while they are changed."""
    return state_root() / ".host-sysctl-saved.json"


def legacy_marker() -> Path:
    # Written by earlier versions of the tool when they turned ip_forward on.
    return state_root() / ".ip_forward-enabled-by-lab"


def wanted(mode: str, value: int, current: int) -> int:
    return value if mode == "exact" else max(current, value)


def _read(key: str) -> int:
    return int((PROC_SYS / key).read_text().split()[0])


def _write(key: str, value: int) -> None:
    (PROC_SYS / key).write_text(f"{value}\n")


def _load() -> dict:
    try:
        return json.loads(saved_file().read_text())
    except (OSError, ValueError):
        return {}


def apply() -> None:
    """Raise the settings; call with the global lock held."""
    saved = _load()
    for key, (mode, value) in SETTINGS.items():
        current = _read(key)
        target = wanted(mode, value, current)
        if current != target:
            saved.setdefault(key, current)  # keep the first original, not our own value
            _write(key, target)
    if saved:
        saved_file().parent.mkdir(parents=True, exist_ok=True)
        tmp = saved_file().with_suffix(".tmp")
        tmp.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, saved_file())


def restore() -> list[str]:
    """Put back what apply() changed; call when no lab remains. Returns 'key=value' done."""
    done = []
    saved = _load()
    if legacy_marker().exists():
        saved.setdefault("net/ipv4/ip_forward", 0)
    for key, value in saved.items():
        _write(key, value)
        done.append(f"{key.replace('/', '.')}={value}")
    for path in (saved_file(), legacy_marker()):
        if path.exists():
            path.unlink()
    return done


def changed() -> dict:
    """What is still changed (for `leftovers`)."""
    saved = _load()
    if legacy_marker().exists():
        saved.setdefault("net/ipv4/ip_forward", 0)
    return saved
