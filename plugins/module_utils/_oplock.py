# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure part of recete.stack.operation_lock: one lock per stack, taken
by an atomic mkdir and described by a details file inside it (as Kamal does).

No Ansible imports: the unit tests call these functions on a temporary
directory, with a real or fake clock and sleep.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import errno
import json
import os
import shutil
import time

DETAILS_FILE = "details.json"
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
RELEASE_HINT = "ansible-playbook playbooks/lock.yml -e lock_action=release"
STATUS_HINT = "ansible-playbook playbooks/lock.yml"
# A lock directory this young without details is most likely being taken
# right now (mkdir done, details not yet written): look again rather than
# report it as held by "unknown".
SETTLE_S = 2.0


class LockError(Exception):
    """The lock could not be read, taken or released; the message says why."""

    def __init__(self, msg, details=None):
        super(LockError, self).__init__(msg)
        self.details = details


class LockHeld(LockError):
    """Someone else holds the lock (after waiting, if asked to wait)."""

    def __init__(self, msg, details, waited_s):
        super(LockHeld, self).__init__(msg, details)
        self.waited_s = waited_s


def iso_utc(epoch):
    """Seconds since the epoch as ISO-8601 UTC, to the second."""
    return time.strftime(ISO_FORMAT, time.gmtime(epoch))


def make_details(holder, command, message, token, epoch):
    """The details file of a new lock. No pid: the lock lives on a remote host,
    where the controller's pid means nothing."""
    return {
        "holder": holder or "",
        "command": command or "",
        "message": message or "",
        "started": iso_utc(epoch),
        "token": token or "",
    }


def _unknown_details(path):
    # A crash between mkdir and writing the details leaves a bare directory;
    # its mtime is the best answer to "since when".
    try:
        started = iso_utc(os.stat(path).st_mtime)
    except OSError:
        started = ""
    return {"holder": "unknown", "command": "", "token": "", "started": started,
            "message": "lock directory without readable details (a run that died while taking the lock?)"}


def read_status(path):
    """Return (held, details) without changing anything.

    details is None when the lock is free, and the "unknown" holder when the
    directory exists but its details file is missing or unreadable.
    """
    if not os.path.lexists(path):
        return False, None
    if not os.path.isdir(path) or os.path.islink(path):
        raise LockError("%s exists but is not a directory; it cannot be the operation lock, "
                        "remove it by hand after checking what it is" % path)
    try:
        with open(os.path.join(path, DETAILS_FILE), "rb") as handle:
            details = json.loads(handle.read().decode("utf-8"))
    except (IOError, OSError, ValueError):
        if not os.path.isdir(path):  # released while we were reading
            return False, None
        return True, _unknown_details(path)
    if not isinstance(details, dict):
        return True, _unknown_details(path)
    return True, details


def _write_details(path, details):
    # Write beside the final name and rename, so a reader never sees half a file.
    final = os.path.join(path, DETAILS_FILE)
    tmp = final + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, json.dumps(details, ensure_ascii=False).encode("utf-8") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o600)  # whatever the umask
    os.rename(tmp, final)


def try_take(path, details):
    """One atomic attempt: mkdir, then write the details.

    Returns True when this call took the lock, False when the directory
    already existed. The parent directory is created when missing.
    """
    parent = os.path.dirname(os.path.abspath(path))
    try:
        # exist_ok: runs racing for the lock also race to create its parent.
        os.makedirs(parent, 0o755, exist_ok=True)
    except OSError as exc:
        raise LockError("cannot create %s, the lock's parent directory: %s" % (parent, exc))
    try:
        os.mkdir(path, 0o700)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            return False
        raise LockError("cannot create the lock directory %s: %s" % (path, exc))
    try:
        os.chmod(path, 0o700)
        _write_details(path, details)
    except (IOError, OSError) as exc:
        # Do not leave a lock with no details behind for others to wonder about.
        shutil.rmtree(path, ignore_errors=True)
        raise LockError("took the lock %s but could not write its details, so gave it back: %s" % (path, exc))
    return True


def _age(started, now):
    try:
        then = calendar.timegm(time.strptime(started, ISO_FORMAT))
    except (TypeError, ValueError):
        return ""
    seconds = max(0, int(now - then))
    if seconds < 120:
        return "%d s ago" % seconds
    if seconds < 7200:
        return "%d min ago" % (seconds // 60)
    return "%.1f h ago" % (seconds / 3600.0)


def describe(details, now=None):
    """One line saying who holds the lock, since when, running what, and why."""
    now = time.time() if now is None else now
    text = "held by %s since %s" % (details.get("holder") or "unknown", details.get("started") or "an unknown time")
    age = _age(details.get("started"), now)
    if age:
        text += " (%s)" % age
    if details.get("command"):
        text += ", running '%s'" % details["command"]
    if details.get("message"):
        text += ": %s" % details["message"]
    return text


def held_message(path, details, waited_s, now=None):
    """The failure message when someone else holds the lock: what, and what to do."""
    waited = " after waiting %.0f s" % waited_s if waited_s >= 0.5 else ""
    return ("The operation lock %s is %s%s. Another site/scale/deploy/rollback run is in progress: "
            "wait for it to finish, or see who holds the lock with `%s`. If that run is dead, release the "
            "lock with `%s`." % (path, describe(details, now), waited, STATUS_HINT, RELEASE_HINT))


def _being_taken(path, details, now):
    if details.get("holder") != "unknown":
        return False
    try:
        return now - os.stat(path).st_mtime < SETTLE_S
    except OSError:
        return False


def acquire(path, holder, command="", message="", token="", wait=0.0, poll=2.0,
            check_mode=False, clock=time.time, sleep=time.sleep):
    """Take the lock, waiting up to `wait` seconds (polling every `poll`) while another run holds it.

    Returns a dict: changed, held (True), lock (the details), waited_s.
    Holding the lock already under the same non-empty token is no change.
    In check mode nothing is written, but a lock held by another run still
    raises LockHeld: the check run should learn that the real one would fail.
    """
    start = clock()
    mine = make_details(holder, command, message, token, start)
    slept = False
    while True:
        held, current = read_status(path)
        waited = round(clock() - start, 3) if slept else 0.0
        if held and token and current.get("token") == token:
            return {"changed": False, "held": True, "lock": current, "waited_s": waited}
        if not held:
            if check_mode:
                return {"changed": True, "held": True, "lock": mine, "waited_s": waited}
            mine["started"] = iso_utc(clock())
            if try_take(path, mine):
                return {"changed": True, "held": True, "lock": mine, "waited_s": waited}
            continue  # lost the race to another run: look at who won
        if _being_taken(path, current, clock()):
            sleep(0.02)
            slept = True
            continue
        remaining = wait - (clock() - start)
        if remaining <= 0:
            raise LockHeld(held_message(path, current, waited, clock()), current, waited)
        sleep(min(poll, remaining))
        slept = True


def release(path, token="", force=False, check_mode=False):
    """Release the lock when `token` matches the holder's (or `force`).

    Returns a dict: changed, held (False), lock (the details released, None
    when it was free). A lock held under another token raises LockError naming
    the holder; a free lock is no change.
    """
    held, current = read_status(path)
    if not held:
        return {"changed": False, "held": False, "lock": None}
    if not force and (not token or current.get("token") != token):
        raise LockError("The operation lock %s is %s, under another token: not releasing it. If that run is "
                        "dead, release the lock with `%s`." % (path, describe(current), RELEASE_HINT), current)
    if not check_mode:
        # Rename first so the lock disappears in one step; a new run's mkdir
        # then never meets a half-removed directory.
        doomed = "%s.released.%d.%d" % (path, os.getpid(), int(time.time() * 1000))
        try:
            os.rename(path, doomed)
        except OSError as exc:
            if exc.errno == errno.ENOENT:  # released by someone else meanwhile
                return {"changed": False, "held": False, "lock": None}
            raise LockError("cannot release the lock %s: %s" % (path, exc), current)
        shutil.rmtree(doomed, ignore_errors=True)
    return {"changed": True, "held": False, "lock": current}
