# -*- coding: utf-8 -*-
# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure part of recete.stack.nginx_access_watch: parsing the load
balancer's access log (log_format recete_lb), counting the answers of the
watched upstreams, judging a canary, and following the log file from a byte
offset through truncation and rotation.

Private to this collection (the leading underscore): no compatibility promise.
No Ansible imports besides the collection's own module_utils; the follow loop
gets its clock and sleep as functions, so the unit tests drive it with fakes.

The format, from roles/nginx_lb/templates/nginx.conf.j2::

    $remote_addr [$time_local] "$request" $status $body_bytes_sent
    upstream_addr=$upstream_addr upstream_status=$upstream_status
    upstream_response_time=$upstream_response_time request_time=$request_time
    "$http_user_agent" "$http_x_forwarded_for"

$upstream_addr and $upstream_status list one entry per attempt, separated by
", "; after an internal redirect the groups of attempts are separated by
" : ". Both are "-" when no upstream was used.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re

from ansible_collections.recete.stack.plugins.module_utils._nginx import (
    UpstreamError, format_address, parse_address)

# How many raw error lines a result carries.
MAX_SAMPLES = 5
# Bytes read from the log at a time.
CHUNK_BYTES = 1024 * 1024
# Seconds between two looks at the log while following it.
POLL_INTERVAL = 0.5


# The request, status and bytes are anchored by " upstream_addr=" and the user agent by the last
# quoted field, so a stray unescaped quote (escape=none) does not break a line.
LINE = re.compile(
    r'^(?P<remote_addr>\S+) \[(?P<time_local>[^\]]+)\] "(?P<request>.*?)"'
    r' (?P<status>\d{3}) (?P<body_bytes_sent>\d+|-)'
    r' upstream_addr=(?P<upstream_addr>\S.*?) upstream_status=(?P<upstream_status>\S.*?)'
    r' upstream_response_time=(?P<upstream_response_time>\S.*?) request_time=(?P<request_time>[0-9.]+|-)'
    r' "(?P<http_user_agent>.*)" "(?P<http_x_forwarded_for>[^"]*)"$'
)

# Attempts within a group are separated by ", ", groups (internal redirects) by " : ".
_ATTEMPT_SEPARATOR = re.compile(r', | : ')


class AccessLogError(Exception):
    """A problem the user must fix (bad options, unreadable log)."""


def normalize_upstreams(upstreams):
    """Check the watched "address:port" entries and write them as $upstream_addr does.

    nginx logs the address it connected to, never a host name, and writes IPv6
    in brackets in its canonical short form; so names are refused and IPv6
    addresses are canonicalised ("[FD00:0::5]:3000" -> "[fd00::5]:3000").
    Unix sockets ("unix:/run/app.sock") are accepted as written.
    """
    normalized = []
    for entry in upstreams or []:
        try:
            parsed = parse_address(entry)
        except UpstreamError as exc:
            raise AccessLogError("upstreams: %s" % exc)
        if parsed[0] == 'name':
            raise AccessLogError(
                'upstreams: %r is a host name, but nginx logs the address it connected to; give the IP and port '
                'as in $upstream_addr, such as "10.0.0.5:3000"' % (entry,))
        address = format_address(parsed)
        if address not in normalized:
            normalized.append(address)
    return normalized


def split_attempts(value):
    """The entries of $upstream_addr or $upstream_status, one per attempt, as written ("-" included)."""
    if value is None or not value.strip():
        return []
    return [part.strip() for part in _ATTEMPT_SEPARATOR.split(value.strip())]


def parse_line(line):
    """Parse one log line into a dict of its fields, or None when it is not in the recete_lb format.

    The result has the named fields of LINE plus 'attempts': a list of
    (address, upstream_status) pairs in order, where the status is None when
    nginx logged fewer statuses than addresses.
    """
    match = LINE.match(line.rstrip('\r\n'))
    if not match:
        return None
    fields = match.groupdict()
    addresses = split_attempts(fields['upstream_addr'])
    statuses = split_attempts(fields['upstream_status'])
    # "-" for the address: no upstream was used (nginx answered itself, or the request was refused).
    fields['attempts'] = [(address, statuses[index] if index < len(statuses) else None)
                          for index, address in enumerate(addresses) if address != '-']
    return fields


def is_5xx(status):
    return status is not None and len(status) == 3 and status.startswith('5') and status.isdigit()


def attempt_failed(upstream_status, final_status):
    """An attempt failed when its upstream answered 5xx, or it logged no status and the client got a 5xx."""
    if upstream_status is None or upstream_status == '-':
        return is_5xx(final_status)
    return is_5xx(upstream_status)


class Tally(object):
    """Counts of the attempts that went to the watched upstreams."""

    def __init__(self, upstreams):
        self.upstreams = frozenset(upstreams)
        self.lines = 0
        self.skipped = 0
        self.requests = 0
        self.errors = 0
        self.by_status = {}
        self.samples = []

    def add(self, line):
        """Count one log line (text, with or without its newline)."""
        self.lines += 1
        fields = parse_line(line)
        if fields is None:
            self.skipped += 1
            return
        failed = False
        for address, status in fields['attempts']:
            if address not in self.upstreams:
                continue
            self.requests += 1
            key = status if status is not None else '-'
            self.by_status[key] = self.by_status.get(key, 0) + 1
            if attempt_failed(status, fields['status']):
                self.errors += 1
                failed = True
        if failed and len(self.samples) < MAX_SAMPLES:
            self.samples.append(line.rstrip('\r\n'))

    @property
    def error_rate(self):
        return float(self.errors) / self.requests if self.requests else 0.0

    def result(self):
        return {
            'lines': self.lines,
            'skipped': self.skipped,
            'requests': self.requests,
            'errors': self.errors,
            'error_rate': round(self.error_rate, 4),
            'by_status': dict(self.by_status),
            'samples': list(self.samples),
        }


def judge(tally, max_error_rate, min_requests):
    """Return (failed_canary, reasons): the rate is above the threshold, or too few requests were seen."""
    reasons = []
    if tally.requests and tally.error_rate > max_error_rate:
        reasons.append('%d of %d requests answered 5xx (%.1f %% > %.1f %%)' % (
            tally.errors, tally.requests, tally.error_rate * 100, max_error_rate * 100))
    if tally.requests < min_requests:
        reasons.append('only %d request(s) reached it, at least %d are needed (%d answered 5xx)' % (
            tally.requests, min_requests, tally.errors))
    return bool(reasons), reasons


def failure_message(upstreams, reasons, seconds, offset):
    """One line naming the canary, what went wrong, and the window watched."""
    if seconds > 0:
        window = 'in %g s' % seconds
    else:
        window = 'since byte offset %d' % offset
    return 'canary %s: %s %s' % (', '.join(upstreams), '; '.join(reasons), window)


def end_offset(path):
    """The current size of the log: the offset a later call starts reading from."""
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise AccessLogError('cannot read the access log %s: %s' % (path, exc.strerror or exc))


class _Open(object):
    """One open log file and how far it has been read (always at a line boundary)."""

    def __init__(self, handle, position):
        self.handle = handle
        self.position = position
        stat = os.fstat(handle.fileno())
        self.identity = (stat.st_dev, stat.st_ino)

    def read_lines(self, add):
        """Pass every complete new line to add(); a line still being written stays for later."""
        self.handle.seek(self.position)
        pending = b''
        while True:
            chunk = self.handle.read(CHUNK_BYTES)
            if not chunk:
                break
            pending += chunk
            complete, newline, pending = pending.rpartition(b'\n')
            if not newline:
                pending = complete + pending
                continue
            for raw in complete.split(b'\n'):
                add(raw.decode('utf-8', 'replace'))
            self.position += len(complete) + 1

    def close(self):
        self.handle.close()


class Follower(object):
    """Reads a log from a byte offset, following truncation and rotation.

    - The file is shorter than the offset (rotated or truncated since the
      offset was taken): reading starts again at 0 and `rotated` is set.
    - While following, another file appears at the path (logrotate's
      rename-and-create): the old file is read to its end on every later look
      too, since nginx writes to it until it reopens its logs, and the new
      file is read from 0.
    - The file shrinks under us (copytruncate): reading starts again at 0.

    `offset` is always the position in the file currently at the path, at a
    line boundary, so a later call continues from there.
    """

    def __init__(self, path, offset, add):
        self.path = path
        self.add = add
        self.rotated = False
        self._old = []
        try:
            handle = open(path, 'rb')
        except (IOError, OSError) as exc:
            raise AccessLogError('cannot read the access log %s: %s' % (path, exc.strerror or exc))
        size = os.fstat(handle.fileno()).st_size
        if size < offset:
            offset = 0
            self.rotated = True
        self._current = _Open(handle, offset)

    @property
    def offset(self):
        return self._current.position

    def poll(self):
        """Read whatever complete lines are new, switching files when the log was rotated."""
        for old in self._old:
            old.read_lines(self.add)
        self._current.read_lines(self.add)
        try:
            stat = os.stat(self.path)
        except OSError:
            return  # between a rename and the create: look again next time
        if (stat.st_dev, stat.st_ino) != self._current.identity:
            try:
                handle = open(self.path, 'rb')
            except (IOError, OSError):
                return
            self._old.append(self._current)
            self._current = _Open(handle, 0)
            self.rotated = True
            self._current.read_lines(self.add)
        elif stat.st_size < self._current.position:
            self._current.position = 0
            self.rotated = True
            self._current.read_lines(self.add)

    def close(self):
        for opened in self._old + [self._current]:
            opened.close()
        self._old = []


def watch(path, offset, seconds, upstreams, clock, sleep, interval=POLL_INTERVAL):
    """Count the watched upstreams' answers in the log from `offset`, following it for `seconds`.

    Reads once at once, then every `interval` seconds until `seconds` have
    gone by, with a last read at the end. Returns (tally, result) where
    result holds the figures the module reports besides the judgement.
    """
    tally = Tally(upstreams)
    follower = Follower(path, offset, tally.add)
    try:
        deadline = clock() + seconds
        follower.poll()
        while True:
            left = deadline - clock()
            if left <= 0:
                break
            sleep(min(interval, left))
            follower.poll()
    finally:
        follower.close()
    result = tally.result()
    result.update(offset=follower.offset, rotated=follower.rotated)
    return tally, result
