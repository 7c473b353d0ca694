"""Small helpers shared by every module: errors, commands, timing, locks."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path


class LabError(Exception):
    """A problem the user can fix; printed as one `lab: ...` line, exit code 2."""


def run(argv: list[str], *, check: bool = True, capture: bool = True,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command given as a list (never a shell string).

    With check=True a non-zero exit becomes a LabError naming the command and
    its stderr, so callers do not each format failures differently.
    """
    try:
        proc = subprocess.run(argv, text=True, input=input,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None)
    except FileNotFoundError:
        raise LabError(f"{argv[0]} not found (is PATH complete?)") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip().splitlines()
        last = detail[-1] if detail else f"exit code {proc.returncode}"
        raise LabError(f"{' '.join(argv[:4])}{' ...' if len(argv) > 4 else ''} failed: {last}")
    return proc


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("must run as root: it creates bridges, mounts and machines")


def require_program(name: str, hint: str) -> str:
    path = shutil.which(name)
    if not path:
        raise LabError(f"{name} not found: {hint}")
    return path


class Stopwatch:
    """Seconds since creation, for the figures `up` and `image` print."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def seconds(self) -> float:
        return time.monotonic() - self.start


@contextmanager
def file_lock(path: Path, blocking: bool = True):
    """Exclusive flock on PATH (created if needed), released on exit; yields
    whether it was acquired (always True when BLOCKING).

    Used so two concurrent `up`s neither build the same image twice nor pick
    the same subnet.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
