# -*- coding: utf-8 -*-
# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared by the recete.stack Sentinel modules: connection options, the
connection helper, error classification and the parsing of Sentinel replies.

Private to this collection (the leading underscore): no compatibility promise.
Everything except ``connect`` is pure and unit-tested without a server.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

REDIS_IMPORT_ERROR = None
try:
    import redis
except ImportError:
    HAS_REDIS = False
    REDIS_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_REDIS = True


def sentinel_argument_spec():
    """Options every Sentinel module takes (documented in doc_fragments/sentinel.py)."""
    return dict(
        host=dict(type='str', default='127.0.0.1'),
        port=dict(type='int', default=26379),
        username=dict(type='str'),
        password=dict(type='str', no_log=True),
        master_name=dict(type='str', required=True),
        timeout=dict(type='float', default=5.0),
        tls=dict(type='bool', default=False),
        ca_file=dict(type='path'),
    )


class SentinelError(Exception):
    """A failure talking to Sentinel, with its kind.

    kind is one of:
      unreachable  - nothing answers at host:port (refused, timeout, reset)
      unconfigured - a Sentinel answers but has no password set: not one this
                     collection configured yet (e.g. the package's default)
      auth         - the password (or user) is wrong
      error        - any other error reply
    """

    def __init__(self, kind, message):
        super(SentinelError, self).__init__(message)
        self.kind = kind
        self.message = message


_UNCONFIGURED_MARKERS = (
    'without any password configured',
    'no password is set',
)
_AUTH_MARKERS = ('wrongpass', 'invalid password', 'invalid username-password', 'noauth', 'authentication')


def classify_error(exc):
    """Map a redis-py exception to a SentinelError kind (see SentinelError)."""
    message = str(exc) or exc.__class__.__name__
    lowered = message.lower()
    names = [cls.__name__ for cls in type(exc).__mro__]
    if any(marker in lowered for marker in _UNCONFIGURED_MARKERS):
        return 'unconfigured'
    if 'AuthenticationError' in names or any(marker in lowered for marker in _AUTH_MARKERS):
        return 'auth'
    if 'ConnectionError' in names or 'TimeoutError' in names or isinstance(exc, (OSError, IOError)):
        return 'unreachable'
    return 'error'


def describe_error(kind, host, port, message):
    """A message that says what went wrong and what to do about it."""
    where = '%s:%s' % (host, port)
    if kind == 'unreachable':
        return ('could not connect to Sentinel at %s (%s): check that redis-sentinel runs there '
                '(systemctl status redis-sentinel) and listens on that address and port' % (where, message))
    if kind == 'unconfigured':
        return ('the Sentinel at %s has no password configured (%s): it is not a Sentinel set up by '
                'the recete.stack.redis role; run the role, or point host/port at the right Sentinel'
                % (where, message))
    if kind == 'auth':
        return ('authentication to the Sentinel at %s failed (%s): check the password option '
                '(redis_sentinel_password in the role) against requirepass in its sentinel.conf' % (where, message))
    return 'the Sentinel at %s answered with an error: %s' % (where, message)


def tls_options(params):
    """redis-py's keyword arguments for TLS: the server's certificate checked against ca_file, and its name."""
    if not params.get('tls'):
        return {}
    return dict(ssl=True, ssl_ca_certs=params.get('ca_file'), ssl_cert_reqs='required', ssl_check_hostname=True)


def connect(params):
    """A redis-py client for the Sentinel in params, checked with PING.

    Raises SentinelError. Replies are decoded to str.
    """
    client = redis.Redis(
        host=params['host'],
        port=params['port'],
        username=params.get('username') or None,
        password=params.get('password') or None,
        socket_timeout=params['timeout'],
        socket_connect_timeout=params['timeout'],
        decode_responses=True,
        **tls_options(params)
    )
    try:
        client.ping()
    except Exception as exc:  # redis-py raises several unrelated classes here
        raise SentinelError(classify_error(exc), str(exc))
    return client


def call(client, *args):
    """Run one command and return the raw reply; errors become SentinelError.

    Commands are sent as separate words ('SENTINEL', 'MASTER', name) so that
    redis-py applies no reply callback of its own: the parsing below is the
    same whatever redis-py version runs on the target.
    """
    try:
        return client.execute_command(*args)
    except Exception as exc:
        raise SentinelError(classify_error(exc), str(exc))


def is_no_such_master(message):
    """True when Sentinel says it does not monitor the master name."""
    return 'no such master' in (message or '').lower()


def pairs_to_dict(reply):
    """['k1', 'v1', 'k2', 'v2'] -> {'k1': 'v1', 'k2': 'v2'} (RESP2 replies).

    A reply that already is a dict (RESP3) is returned as a copy.
    """
    if isinstance(reply, dict):
        return dict(reply)
    items = list(reply or [])
    if len(items) % 2:
        raise ValueError('a key/value reply must have an even number of items, got %d' % len(items))
    return dict(zip(items[0::2], items[1::2]))


def split_flags(flags):
    """'master,s_down' -> ['master', 's_down']."""
    if isinstance(flags, (list, tuple)):
        return [str(f) for f in flags]
    return [f for f in str(flags or '').split(',') if f]


def _int(value, default=None):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def parse_master(reply):
    """Normalise a SENTINEL MASTER reply."""
    raw = pairs_to_dict(reply)
    port = _int(raw.get('port'))
    return dict(
        name=raw.get('name'),
        ip=raw.get('ip'),
        port=port,
        address='%s:%s' % (raw.get('ip'), port),
        flags=split_flags(raw.get('flags')),
        runid=raw.get('runid') or None,
        role_reported=raw.get('role-reported'),
        num_replicas=_int(raw.get('num-slaves'), 0),
        num_other_sentinels=_int(raw.get('num-other-sentinels'), 0),
        quorum=_int(raw.get('quorum')),
        down_after_milliseconds=_int(raw.get('down-after-milliseconds')),
        failover_timeout=_int(raw.get('failover-timeout')),
        parallel_syncs=_int(raw.get('parallel-syncs')),
        config_epoch=_int(raw.get('config-epoch')),
        last_ok_ping_reply_ms=_int(raw.get('last-ok-ping-reply')),
    )


def parse_replica(reply):
    """Normalise one entry of a SENTINEL REPLICAS reply."""
    raw = pairs_to_dict(reply)
    port = _int(raw.get('port'))
    return dict(
        ip=raw.get('ip'),
        port=port,
        address='%s:%s' % (raw.get('ip'), port),
        flags=split_flags(raw.get('flags')),
        runid=raw.get('runid') or None,
        master_host=raw.get('master-host'),
        master_port=_int(raw.get('master-port')),
        master_link_status=raw.get('master-link-status'),
        replica_priority=_int(raw.get('slave-priority', raw.get('replica-priority'))),
        repl_offset=_int(raw.get('slave-repl-offset', raw.get('replica-repl-offset'))),
        last_ok_ping_reply_ms=_int(raw.get('last-ok-ping-reply')),
    )


def parse_sentinel(reply):
    """Normalise one entry of a SENTINEL SENTINELS reply."""
    raw = pairs_to_dict(reply)
    port = _int(raw.get('port'))
    return dict(
        ip=raw.get('ip'),
        port=port,
        address='%s:%s' % (raw.get('ip'), port),
        flags=split_flags(raw.get('flags')),
        runid=raw.get('runid') or None,
        last_ok_ping_reply_ms=_int(raw.get('last-ok-ping-reply')),
    )


DOWN_FLAGS = ('s_down', 'o_down', 'disconnected')


def instance_is_down(instance):
    """True when Sentinel flags the instance as down or unreachable."""
    return any(flag in instance.get('flags', []) for flag in DOWN_FLAGS)


def split_config_args(line):
    """Split a redis.conf / sentinel.conf line like Redis' sdssplitargs.

    Handles "double quoted" strings with backslash escapes (\\n, \\t, \\",
    \\\\, \\xHH) and 'single quoted' strings (only \\' escaped). Raises
    ValueError on unbalanced quotes, as Redis refuses such a line.
    """
    args = []
    i, n = 0, len(line)
    escapes = {'n': '\n', 'r': '\r', 't': '\t', 'b': '\b', 'a': '\a'}
    while True:
        while i < n and line[i].isspace():
            i += 1
        if i >= n:
            return args
        current = []
        if line[i] == '"':
            i += 1
            while True:
                if i >= n:
                    raise ValueError('unbalanced double quotes in: %s' % line)
                ch = line[i]
                if ch == '\\' and i + 3 < n and line[i + 1] == 'x' and _is_hex(line[i + 2:i + 4]):
                    current.append(chr(int(line[i + 2:i + 4], 16)))
                    i += 4
                elif ch == '\\' and i + 1 < n:
                    current.append(escapes.get(line[i + 1], line[i + 1]))
                    i += 2
                elif ch == '"':
                    i += 1
                    if i < n and not line[i].isspace():
                        raise ValueError('closing quote must be followed by a space in: %s' % line)
                    break
                else:
                    current.append(ch)
                    i += 1
        elif line[i] == "'":
            i += 1
            while True:
                if i >= n:
                    raise ValueError('unbalanced single quotes in: %s' % line)
                ch = line[i]
                if ch == '\\' and i + 1 < n and line[i + 1] == "'":
                    current.append("'")
                    i += 2
                elif ch == "'":
                    i += 1
                    if i < n and not line[i].isspace():
                        raise ValueError('closing quote must be followed by a space in: %s' % line)
                    break
                else:
                    current.append(ch)
                    i += 1
        else:
            while i < n and not line[i].isspace():
                current.append(line[i])
                i += 1
        args.append(''.join(current))


def _is_hex(text):
    return len(text) == 2 and all(c in '0123456789abcdefABCDEF' for c in text)


def read_sentinel_auth(text, master_name):
    """auth-user / auth-pass of master_name in a sentinel.conf text.

    Sentinel does not report them over its protocol (SENTINEL MASTER leaves
    them out), but writes them to its own config file on every change.
    Returns {'auth_user': str or None, 'auth_pass': str or None}; the last
    occurrence wins, as when Sentinel loads the file.
    """
    found = {'auth_user': None, 'auth_pass': None}
    for raw_line in (text or '').splitlines():
        line = raw_line.strip()
        if not line or line.startswith('#'):
            continue
        try:
            args = split_config_args(line)
        except ValueError:
            continue
        if len(args) == 4 and args[0].lower() == 'sentinel' and args[2] == master_name:
            option = args[1].lower()
            if option == 'auth-user':
                found['auth_user'] = args[3]
            elif option == 'auth-pass':
                found['auth_pass'] = args[3]
    return found
