# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure part of recete.stack.audit_log: an append-only JSON-lines file,
one line per operation, and a readable one-line summary of an entry.

No Ansible imports: the unit tests append from many processes into a
temporary directory and read the result back.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import time

ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
DIR_MODE = 0o750
FILE_MODE = 0o640


class AuditError(Exception):
    """The log could not be written or read; the message says why."""


def stamped(entry, epoch=None):
    """A copy of `entry` with `time` (ISO-8601 UTC) first, unless it has one already."""
    if "time" in entry:
        return dict(entry)
    out = {"time": time.strftime(ISO_FORMAT, time.gmtime(time.time() if epoch is None else epoch))}
    out.update(entry)
    return out


def to_line(entry):
    """One JSON line: keys in the order given, UTF-8 as is. json.dumps escapes
    newlines inside strings, so an entry can never span two lines."""
    try:
        text = json.dumps(entry, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise AuditError("the audit entry cannot be written as JSON: %s" % exc)
    return text.encode("utf-8") + b"\n"


def _ensure_parent(path):
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        # exist_ok: concurrent writers race to create it.
        os.makedirs(parent, DIR_MODE, exist_ok=True)
        os.chmod(parent, DIR_MODE)  # whatever the umask


def append(path, entry):
    """Append exactly one line for `entry` and return the entry as written.

    O_APPEND plus a single write() puts the whole line at the end of the file
    in one step, so concurrent writers (two controllers, or one per server)
    never interleave their lines.
    """
    line = to_line(entry)
    try:
        _ensure_parent(path)
        created = not os.path.exists(path)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        try:
            if created:
                os.fchmod(fd, FILE_MODE)
            written = os.write(fd, line)
        finally:
            os.close(fd)
    except (IOError, OSError) as exc:
        raise AuditError("cannot append to the audit log %s: %s" % (path, exc))
    if written != len(line):
        raise AuditError("short write to the audit log %s (%d of %d bytes; disk full?): its last line is cut"
                         % (path, written, len(line)))
    return entry


def parse_line(raw):
    """The entry on one line (bytes), or None when it is not a JSON object."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_last(path, last):
    """Return (entries, skipped): the last `last` entries in file order, and how
    many lines among those looked at did not parse (a cut line, hand edits).
    A missing file is an empty log."""
    if last < 1:
        raise AuditError("last must be at least 1, got %r" % (last,))
    try:
        with open(path, "rb") as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError) as exc:
        if not os.path.exists(path):
            return [], 0
        raise AuditError("cannot read the audit log %s: %s" % (path, exc))
    entries, skipped = [], 0
    for raw in reversed(lines):
        if not raw.strip():
            continue
        entry = parse_line(raw)
        if entry is None:
            skipped += 1
            continue
        entries.append(entry)
        if len(entries) == last:
            break
    entries.reverse()
    return entries, skipped


def _pair(before, after):
    """'before→after' of two values; for dicts of counts one pair per key."""
    if isinstance(before, dict) or isinstance(after, dict):
        before = before if isinstance(before, dict) else {}
        after = after if isinstance(after, dict) else {}
        keys = list(before) + [k for k in after if k not in before]
        return ", ".join("%s %s" % (k, _pair(before.get(k), after.get(k))) for k in keys)
    return "%s→%s" % (_show(before), _show(after))


def _show(value):
    return "-" if value is None or value == "" else str(value)


def _truthy(value):
    # Entries built by templating may carry "false" or "no" as text.
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)


def summary(entry):
    """One readable line: time | who | command | result | release | counts | rolled back | why.

    Parts an entry does not carry are left out, so entries written by older or
    different operations still print.
    """
    parts = [str(entry.get("time") or "?"), str(entry.get("who") or "?"),
             str(entry.get("command") or entry.get("operation") or "?")]
    if entry.get("result") not in (None, ""):
        parts.append(str(entry["result"]))
    if entry.get("release_before") is not None or entry.get("release_after") is not None:
        parts.append("release " + _pair(entry.get("release_before"), entry.get("release_after")))
    counts = _counts(entry)
    if counts:
        parts.append("counts " + counts)
    if "rolled_back" in entry:
        parts.append("rolled back" if _truthy(entry["rolled_back"]) else "not rolled back")
    parts.extend(str(entry[key]) for key in ("message", "failure", "error") if entry.get(key))
    return " | ".join(parts)


def _counts(entry):
    """Instance counts before→after, from counts_before/counts_after (numbers or
    mappings) and from any other NAME_before/NAME_after pair, such as api_before."""
    pairs = []
    if entry.get("counts_before") is not None or entry.get("counts_after") is not None:
        pairs.append(_pair(entry.get("counts_before"), entry.get("counts_after")))
    for key in entry:
        name = key[:-len("_before")]
        if key.endswith("_before") and name not in ("release", "counts") and name + "_after" in entry:
            pairs.append("%s %s" % (name, _pair(entry[key], entry[name + "_after"])))
    return ", ".join(pairs)
