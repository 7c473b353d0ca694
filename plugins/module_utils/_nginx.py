# -*- coding: utf-8 -*-
# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared by the recete.stack nginx modules: upstream rendering and the
inspection of nginx's master and worker processes.

Private to this collection (the leading underscore): no compatibility promise.
Everything here is pure (or reads only files under a given /proc root) and is
unit-tested without nginx.

Open-source nginx has no runtime API for upstream membership: a change is a
new configuration file, ``nginx -t`` and a reload. A reload makes the master
start a new generation of worker processes with the new configuration and
ask the previous generation to finish their in-flight requests and exit
(bounded by ``worker_shutdown_timeout``). So "the reload took effect" means
worker PIDs that were not there before, and "drained" means every worker of
the previous generation has exited.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import os
import re
import time

BALANCING = ('least_conn', 'round_robin', 'ip_hash')
STATES = ('active', 'down')

_NAME = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$')
_HOSTNAME = re.compile(r'^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$')
_SYNTAX = re.compile(r'[\s;{}#\'"$\\]')
_UNIX_PATH = re.compile(r'^/[A-Za-z0-9_./@+-]+$')
# Process titles nginx gives its children (ngx_setproctitle).
_WORKER_TITLE = 'nginx: worker process'
_SHUTTING_DOWN_SUFFIX = 'is shutting down'


class UpstreamError(ValueError):
    """Input the module refuses, with a message that says what to change."""


def check_name(name):
    """An upstream name nginx accepts and a reader recognises (letters, digits, _ . -)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise UpstreamError(
            "name must be 1-64 characters of letters, digits, '_', '.', '-' (not starting with '.' or '-'), got %r"
            % (name,))
    return name


def parse_address(address):
    """Split 'host:port' into (kind, host, port).

    kind is 'ipv4', 'ipv6', 'name' or 'unix'. IPv6 addresses are written in
    brackets ('[fd00::5]:3000'); a unix socket is 'unix:/run/app.sock' (port
    None). Anything else, including characters that would end or extend an
    nginx directive (spaces, ';', '{', '}', '#', quotes), is refused.
    """
    if not isinstance(address, str) or not address.strip():
        raise UpstreamError('server address must be a non-empty string such as "10.0.0.5:3000", got %r' % (address,))
    address = address.strip()
    if _SYNTAX.search(address):
        raise UpstreamError('server address %r contains spaces or characters of nginx syntax (; { } # quotes $ \\); '
                            'give one "host:port"' % address)
    if address.startswith('unix:'):
        path = address[len('unix:'):]
        if not _UNIX_PATH.match(path):
            raise UpstreamError('server address %r: a unix socket must be "unix:/absolute/path"' % address)
        return ('unix', path, None)
    if address.startswith('['):
        host, sep, port = address[1:].partition(']:')
        if not sep:
            raise UpstreamError('server address %r: write an IPv6 address as "[fd00::5]:3000"' % address)
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise UpstreamError('server address %r: %r is not an IPv6 address' % (address, host))
        kind = 'ipv6'
    else:
        host, sep, port = address.rpartition(':')
        if not sep or not host:
            raise UpstreamError('server address %r needs a port: "host:port", such as "10.0.0.5:3000"' % address)
        if ':' in host:
            raise UpstreamError('server address %r: write an IPv6 address in brackets, as "[fd00::5]:3000"' % address)
        try:
            host = str(ipaddress.IPv4Address(host))
            kind = 'ipv4'
        except ValueError:
            if not _HOSTNAME.match(host) or re.match(r'^[0-9.]+$', host):
                raise UpstreamError('server address %r: %r is neither an IPv4 address nor a host name' % (address, host))
            kind = 'name'
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UpstreamError('server address %r: the port must be a number from 1 to 65535' % address)
    return (kind, host, int(port))


def format_address(parsed):
    """The canonical text of a parsed address (as nginx and $upstream_addr write it)."""
    kind, host, port = parsed
    if kind == 'unix':
        return 'unix:%s' % host
    if kind == 'ipv6':
        return '[%s]:%d' % (host, port)
    return '%s:%d' % (host, port)


def address_sort_key(parsed):
    """Sort IPv4 numerically, then IPv6, then names, then unix sockets."""
    kind, host, port = parsed
    if kind == 'ipv4':
        return (0, int(ipaddress.IPv4Address(host)), '', port)
    if kind == 'ipv6':
        return (1, int(ipaddress.IPv6Address(host)), '', port)
    if kind == 'name':
        return (2, 0, host.lower(), port)
    return (3, 0, host, 0)


def _whole(value, what, minimum):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UpstreamError('%s must be a whole number of at least %d, got %r' % (what, minimum, value))
    return value


def normalize_servers(servers, max_fails=None, fail_timeout=None):
    """Check the servers and return them in canonical form and order.

    Each entry is a dict with address (required), state (active|down,
    default active), weight, max_fails and fail_timeout (seconds). The
    module-wide max_fails / fail_timeout fill in what an entry leaves unset.
    The result is sorted by address, so the order the caller built the list
    in never changes the file (and never causes a reload).
    """
    if not servers:
        raise UpstreamError('servers is empty: an upstream needs at least one server')
    seen = {}
    result = []
    for index, server in enumerate(servers):
        if not isinstance(server, dict):
            raise UpstreamError('servers[%d] must be a dict with at least an address, got %r' % (index, server))
        unknown = sorted(set(server) - set(('address', 'state', 'weight', 'max_fails', 'fail_timeout')))
        if unknown:
            raise UpstreamError('servers[%d] has unknown keys: %s (allowed: address, state, weight, max_fails, fail_timeout)'
                                % (index, ', '.join(unknown)))
        parsed = parse_address(server.get('address'))
        address = format_address(parsed)
        if address in seen:
            raise UpstreamError('server %s is listed twice (servers[%d] and servers[%d])' % (address, seen[address], index))
        seen[address] = index
        state = server.get('state') or 'active'
        if state not in STATES:
            raise UpstreamError('server %s: state must be one of %s, got %r' % (address, ', '.join(STATES), state))
        entry_max_fails = server.get('max_fails')
        entry_fail_timeout = server.get('fail_timeout')
        entry = dict(
            address=address,
            state=state,
            weight=_whole(server.get('weight'), 'server %s: weight' % address, 1),
            max_fails=_whole(max_fails if entry_max_fails is None else entry_max_fails, 'server %s: max_fails' % address, 0),
            fail_timeout=_whole(fail_timeout if entry_fail_timeout is None else entry_fail_timeout,
                                'server %s: fail_timeout' % address, 0),
        )
        result.append((address_sort_key(parsed), entry))
    result.sort(key=lambda pair: pair[0])
    servers = [pair[1] for pair in result]
    if not any(s['state'] == 'active' for s in servers):
        raise UpstreamError('every server is down: nginx would answer 502 to every request. Keep at least one server '
                            'active (mark a server down only to drain it while others serve)')
    return servers


def server_line(server):
    """One 'server ...;' directive."""
    parts = ['server', server['address']]
    if server.get('weight') is not None:
        parts.append('weight=%d' % server['weight'])
    if server.get('max_fails') is not None:
        parts.append('max_fails=%d' % server['max_fails'])
    if server.get('fail_timeout') is not None:
        parts.append('fail_timeout=%ds' % server['fail_timeout'])
    if server.get('state') == 'down':
        parts.append('down')
    return ' '.join(parts) + ';'


def render_upstream(name, servers, balancing='least_conn', keepalive=32, keepalive_timeout=None, header=None):
    """The text of a file holding one upstream block.

    servers must come from normalize_servers. The balancing method precedes
    keepalive, as nginx requires. keepalive=0 disables the connection cache.
    """
    check_name(name)
    if balancing not in BALANCING:
        raise UpstreamError('balancing must be one of %s, got %r' % (', '.join(BALANCING), balancing))
    _whole(keepalive, 'keepalive', 0)
    _whole(keepalive_timeout, 'keepalive_timeout', 1)
    lines = []
    for text in (header or '').splitlines():
        lines.append(('# ' + text).rstrip())
    lines.append('upstream %s {' % name)
    if balancing != 'round_robin':
        lines.append('    %s;' % balancing)
    for server in servers:
        lines.append('    ' + server_line(server))
    if keepalive:
        lines.append('    keepalive %d;' % keepalive)
        if keepalive_timeout:
            lines.append('    keepalive_timeout %ds;' % keepalive_timeout)
    lines.append('}')
    return '\n'.join(lines) + '\n'


# --- nginx's processes ---------------------------------------------------------

def read_pid_file(path):
    """The PID in nginx's pid file, or None when it is missing or not a number."""
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except (IOError, OSError):
        return None
    return int(text) if text.isdigit() else None


def _read(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except (IOError, OSError):
        return None


def process_title(pid, proc='/proc'):
    """The title of a process (nginx rewrites its argv), or None if it is gone."""
    raw = _read(os.path.join(proc, str(pid), 'cmdline'))
    if raw is None:
        return None
    return raw.replace(b'\0', b' ').decode('utf-8', 'replace').strip()


def parent_pid(pid, proc='/proc'):
    """The parent PID from /proc/PID/stat (the name field may hold spaces and ')')."""
    raw = _read(os.path.join(proc, str(pid), 'stat'))
    if raw is None:
        return None
    fields = raw.decode('utf-8', 'replace').rpartition(')')[2].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return None


def master_pid(pid_file, proc='/proc'):
    """The PID of the running nginx master, or None when nginx does not run."""
    pid = read_pid_file(pid_file)
    if pid is None:
        return None
    title = process_title(pid, proc)
    if not title or not title.startswith('nginx: master process'):
        return None
    return pid


def worker_processes(master, proc='/proc'):
    """{pid: title} of the master's worker processes (both generations)."""
    workers = {}
    if master is None:
        return workers
    try:
        entries = os.listdir(proc)
    except OSError:
        return workers
    for entry in entries:
        if not entry.isdigit():
            continue
        pid = int(entry)
        if parent_pid(pid, proc) != master:
            continue
        title = process_title(pid, proc)
        if title and title.startswith(_WORKER_TITLE):
            workers[pid] = title
    return workers


def shutting_down(workers):
    """PIDs of workers of an earlier generation that are still finishing requests."""
    return sorted(pid for pid, title in workers.items() if title.endswith(_SHUTTING_DOWN_SUFFIX))


def compare_generations(before, current):
    """Split the current worker PIDs against those before a reload.

    Returns new (started by the reload: proof that it took effect) and
    remaining (of the previous generation, still finishing requests).
    """
    before, current = set(before), set(current)
    return dict(new=sorted(current - before), remaining=sorted(current & before))


def process_start_time(pid, proc='/proc', now=None, boottime=None, ticks=None):
    """Wall-clock time a process started, or None if it is gone.

    /proc/PID/stat gives the start in clock ticks after boot (CLOCK_BOOTTIME,
    which also holds inside containers and time namespaces); it is turned
    into wall-clock time with the current clocks. Precise to a tick (10 ms).
    """
    raw = _read(os.path.join(proc, str(pid), 'stat'))
    if raw is None:
        return None
    fields = raw.decode('utf-8', 'replace').rpartition(')')[2].split()
    try:
        start_ticks = int(fields[19])
    except (IndexError, ValueError):
        return None
    now = time.time() if now is None else now
    boottime = time.clock_gettime(time.CLOCK_BOOTTIME) if boottime is None else boottime
    ticks = os.sysconf('SC_CLK_TCK') if ticks is None else ticks
    return now - (boottime - float(start_ticks) / ticks)


def written_after_workers(file_mtime, start_times, margin=1.0):
    """Whether a file was written after the newest worker started (nginx has not loaded it).

    start_times of the current workers (None for a vanished one is ignored).
    The margin covers the tick precision and a reload issued right after a
    write: only a file clearly newer than every worker counts.
    """
    starts = [t for t in start_times if t is not None]
    if file_mtime is None or not starts:
        return False
    return file_mtime > max(starts) + margin
