"""Finding and stopping the machines' systemd-nspawn processes via /proc.

A PID from state.json is only trusted after /proc/PID/cmdline shows it is
still systemd-nspawn on that machine's root directory (PIDs get reused).
Processes are also found by scanning /proc, so a lab whose state.json was
never written (crash during `up`) can still be stopped.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def alive(pid: int) -> bool:
    """True if PID exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def nspawn_root(argv: list[str]) -> str | None:
    """The -D/--directory of a systemd-nspawn command line, None if ARGV is not nspawn."""
    if not argv or os.path.basename(argv[0]) != "systemd-nspawn":
        return None
    for i, arg in enumerate(argv):
        if arg in ("-D", "--directory") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--directory="):
            return arg.split("=", 1)[1]
    return None


def is_machine(pid: int | None, rootfs: str) -> bool:
    return bool(pid) and alive(pid) and nspawn_root(cmdline(pid)) == rootfs


def nspawn_under(directory: Path) -> dict[int, str]:
    """{pid: rootfs} of every live systemd-nspawn whose root lies under DIRECTORY."""
    base = str(directory).rstrip("/") + "/"
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            pid = int(entry)
            root = nspawn_root(cmdline(pid))
            if root and root.startswith(base) and alive(pid):
                found[pid] = root
    return found


def children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def stop(machines: dict[int, str], timeout: float = 15.0) -> list[int]:
    """Power machines off: SIGTERM to nspawn (it asks the container's systemd to
    shut down cleanly), then SIGKILL what is left after TIMEOUT. Returns PIDs
    that had to be killed.

    SIGKILL goes to the container's init as well: killed alone, nspawn would
    leave the container running, re-parented to PID 1.
    """
    for pid, root in machines.items():
        if nspawn_root(cmdline(pid)) == root:
            _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in machines):
        time.sleep(0.1)
    killed = []
    for pid, root in machines.items():
        if alive(pid) and nspawn_root(cmdline(pid)) == root:
            for child in children(pid):
                _signal(child, signal.SIGKILL)
            _signal(pid, signal.SIGKILL)
            killed.append(pid)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in killed):
        time.sleep(0.1)
    return killed


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
