#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: sentinel_monitor
short_description: Make one Redis Sentinel monitor a master with the given settings, at run time
version_added: 0.1.0
description:
  - Reads what one Sentinel currently has for O(master_name) (C(SENTINEL MASTER)) and applies only
    the settings that differ, one C(SENTINEL SET) each. Sentinel persists them in its own
    configuration file, which it rewrites constantly, so that file is never templated again after
    the first start.
  - Issues C(SENTINEL MONITOR) only when the Sentinel does not monitor O(master_name) at all, using
    O(master_host) and O(master_port). A master that is monitored is never moved; after a failover
    Sentinel knows the current master better than any inventory.
  - In check mode it reports what it would change without writing. With C(--diff) it returns the
    settings before and after, passwords hidden.
  - Runs on the target and needs the C(redis) Python library there (Debian package C(python3-redis)).
author: recete.stack maintainers (@recete)
requirements:
  - redis (Python library) >= 3.4
attributes:
  check_mode:
    support: full
    description: Computes and reports the changes without issuing any write command.
  diff_mode:
    support: full
    description: Returns the monitored settings before and after (passwords hidden).
extends_documentation_fragment:
  - recete.stack.action_group.sentinel_group
  - recete.stack.sentinel
options:
  master_host:
    description:
      - Address of the master, used only when the Sentinel does not monitor O(master_name) yet.
      - Required in that case.
    type: str
  master_port:
    description: Port of the master, used only with O(master_host).
    type: int
    default: 6379
  quorum:
    description:
      - Number of Sentinels that must agree the master is down before a failover starts.
      - Required when the master is not monitored yet. Unset leaves the current value.
    type: int
  down_after_milliseconds:
    description: Milliseconds without a valid reply before an instance is considered down. Unset leaves it.
    type: int
  failover_timeout:
    description:
      - Milliseconds for the stages of a failover; a failed failover of the same master is retried
        after twice this time. Unset leaves it.
    type: int
  parallel_syncs:
    description: Replicas reconfigured to the new master at the same time after a failover. Unset leaves it.
    type: int
  auth_user:
    description:
      - ACL user the Sentinel logs in with on the Redis servers (C(sentinel auth-user)).
        An empty string removes it. Unset leaves it.
    type: str
  auth_pass:
    description:
      - Password the Sentinel logs in with on the Redis servers (C(sentinel auth-pass)).
        An empty string removes it. Unset leaves it.
    type: str
  config_file:
    description:
      - The Sentinel's own configuration file, read (never written) to learn the current
        O(auth_user) and O(auth_pass). Sentinel does not report them over its protocol but writes
        them to this file after every change.
      - Reading it needs privileges (C(become)). Without it O(update_password) decides.
    type: path
  update_password:
    description:
      - What to do with O(auth_user) and O(auth_pass) when their current values cannot be read
        (no O(config_file)).
      - V(on_create) sets them only together with a new C(SENTINEL MONITOR).
      - V(always) sets them on every run, which then always reports a change.
    type: str
    choices: [on_create, always]
    default: on_create
notes:
  - Each Sentinel keeps its own settings, so run the module against every Sentinel (for example on
    each Sentinel host with the default O(host)).
  - Password changes need the matching ACL user on the Redis servers first; see the
    recete.stack.redis role's README for the rotation order.
seealso:
  - module: recete.stack.sentinel_info
  - name: Sentinel runtime reconfiguration
    description: SENTINEL SET and the options it accepts.
    link: https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/#sentinel-api
'''

EXAMPLES = r'''
- name: Keep the local Sentinel's settings for the recete master
  recete.stack.sentinel_monitor:
    password: "{{ redis_sentinel_password }}"
    master_name: recete
    master_host: "{{ initial_master_address }}"
    quorum: 2
    down_after_milliseconds: 5000
    failover_timeout: 30000
    parallel_syncs: 1
    auth_user: sentinel
    auth_pass: "{{ redis_sentinel_auth_password }}"
    config_file: /etc/redis/sentinel.conf
  become: true

- name: What would change (check mode, with a diff)
  recete.stack.sentinel_monitor:
    password: "{{ redis_sentinel_password }}"
    master_name: recete
    down_after_milliseconds: 3000
  check_mode: true
  diff: true
  register: plan
'''

RETURN = r'''
created:
  description: Whether C(SENTINEL MONITOR) was issued (or would be, in check mode).
  returned: always
  type: bool
  sample: false
master:
  description: C(ip:port) of the master the Sentinel monitors (after the change).
  returned: always
  type: str
  sample: "10.213.0.15:6379"
changes:
  description: One entry per setting that differs; passwords are hidden.
  returned: always
  type: list
  elements: dict
  contains:
    option:
      description: Module option name.
      type: str
      sample: down_after_milliseconds
    before:
      description: Current value (V(null) when unknown or unset).
      type: raw
      sample: 30000
    after:
      description: Value applied.
      type: raw
      sample: 5000
commands:
  description: The Sentinel commands issued (or that would be, in check mode); passwords hidden.
  returned: always
  type: list
  elements: str
  sample: ["SENTINEL SET recete down-after-milliseconds 5000"]
settings:
  description: The managed settings after the run (passwords hidden, V(null) when unknown).
  returned: always
  type: dict
  sample: {quorum: 2, down_after_milliseconds: 5000, failover_timeout: 30000, parallel_syncs: 1,
           auth_user: sentinel, auth_pass: "********"}
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.recete.stack.plugins.module_utils._redis_common import (
    HAS_REDIS,
    REDIS_IMPORT_ERROR,
    SentinelError,
    call,
    connect,
    describe_error,
    is_no_such_master,
    parse_master,
    read_sentinel_auth,
    sentinel_argument_spec,
)

HIDDEN = '********'


class _Unknown(object):
    """Marks a current value Sentinel does not tell."""

    def __repr__(self):
        return 'UNKNOWN'


UNKNOWN = _Unknown()

# (module option, Sentinel keyword, type, secret)
SETTINGS = (
    ('quorum', 'quorum', int, False),
    ('down_after_milliseconds', 'down-after-milliseconds', int, False),
    ('failover_timeout', 'failover-timeout', int, False),
    ('parallel_syncs', 'parallel-syncs', int, False),
    ('auth_user', 'auth-user', str, False),
    ('auth_pass', 'auth-pass', str, True),
)
AUTH_OPTIONS = ('auth_user', 'auth_pass')
POSITIVE_OPTIONS = ('quorum', 'down_after_milliseconds', 'failover_timeout', 'parallel_syncs')


def _normalise(kind, value):
    if value is None:
        return '' if kind is str else None
    return kind(value)


def current_settings(master, auth=None):
    """The managed settings as the Sentinel has them now.

    master is a parse_master() dict; auth the read_sentinel_auth() result, or
    None when the config file was not read (the auth values are then UNKNOWN).
    """
    current = dict(
        quorum=master.get('quorum'),
        down_after_milliseconds=master.get('down_after_milliseconds'),
        failover_timeout=master.get('failover_timeout'),
        parallel_syncs=master.get('parallel_syncs'),
    )
    for option in AUTH_OPTIONS:
        current[option] = UNKNOWN if auth is None else (auth.get(option) or '')
    return current


def plan_changes(current, desired, update_password='on_create'):
    """The settings to SENTINEL SET, in a stable order.

    current: option -> value (UNKNOWN when Sentinel does not tell);
    desired: option -> value, None meaning "leave it". A value whose current
    one is UNKNOWN is set only with update_password='always'.
    Returns [{'option', 'keyword', 'before', 'after', 'secret'}].
    """
    changes = []
    for option, keyword, kind, secret in SETTINGS:
        want = desired.get(option)
        if want is None:
            continue
        have = current.get(option, UNKNOWN)
        if have is UNKNOWN:
            if update_password != 'always':
                continue
            before = None
        else:
            if _normalise(kind, have) == _normalise(kind, want):
                continue
            before = have
        changes.append(dict(option=option, keyword=keyword, before=before, after=kind(want), secret=secret))
    return changes


def plan_monitor(master_name, master_host, master_port, desired):
    """Changes for a master the Sentinel does not monitor: MONITOR, then a SET
    for every other desired setting (whatever Sentinel's defaults are)."""
    command = ['SENTINEL', 'MONITOR', master_name, master_host, str(master_port), str(desired['quorum'])]
    changes = []
    for option, keyword, kind, secret in SETTINGS:
        want = desired.get(option)
        if option == 'quorum' or want is None:
            continue
        changes.append(dict(option=option, keyword=keyword, before=None, after=kind(want), secret=secret))
    return command, changes


def _shown(value, secret):
    if value is UNKNOWN or value is None:
        return None
    if secret and value != '':
        return HIDDEN
    return value


def public_change(change):
    """A change without secrets, for the module result."""
    return dict(option=change['option'],
                before=_shown(change['before'], change['secret']),
                after=_shown(change['after'], change['secret']))


def set_command(master_name, change):
    return ['SENTINEL', 'SET', master_name, change['keyword'], str(change['after'])]


def shown_command(command, secret):
    words = list(command)
    if secret:
        words[-1] = HIDDEN
    return ' '.join(words)


def render(master_name, settings, master_address=None, changed=()):
    """Settings as sentinel.conf-like lines for the diff.

    Passwords are hidden; those named in changed are marked so that a
    password change still shows in the diff.
    """
    lines = []
    if master_address:
        lines.append('sentinel monitor %s %s' % (master_name, master_address.replace(':', ' ')))
    for option, keyword, _kind, secret in SETTINGS:
        value = settings.get(option, UNKNOWN)
        if value is UNKNOWN:
            shown = '(unknown)'
        elif value is None or value == '':
            continue
        else:
            shown = value
            if secret:
                shown = HIDDEN + (' (changed)' if option in changed else '')
        lines.append('sentinel %s %s %s' % (keyword, master_name, shown))
    return '\n'.join(lines) + '\n' if lines else ''


def apply_changes(settings, changes):
    after = dict(settings)
    for change in changes:
        after[change['option']] = change['after']
    return after


def public_settings(settings):
    return dict((option, _shown(settings.get(option, UNKNOWN), secret)) for option, _k, _t, secret in SETTINGS)


def read_auth(module, path, master_name):
    try:
        with open(path) as handle:
            text = handle.read()
    except (IOError, OSError) as exc:
        module.fail_json(msg='cannot read config_file %s (%s): it is readable only by root and the redis user, '
                             'so run the task with become, or leave config_file unset and choose update_password'
                             % (path, exc))
    return read_sentinel_auth(text, master_name)


def main():
    argument_spec = sentinel_argument_spec()
    argument_spec.update(
        master_host=dict(type='str'),
        master_port=dict(type='int', default=6379),
        quorum=dict(type='int'),
        down_after_milliseconds=dict(type='int'),
        failover_timeout=dict(type='int'),
        parallel_syncs=dict(type='int'),
        auth_user=dict(type='str'),
        auth_pass=dict(type='str', no_log=True),
        config_file=dict(type='path'),
        update_password=dict(type='str', choices=['on_create', 'always'], default='on_create', no_log=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib('redis (Debian: python3-redis)'), exception=REDIS_IMPORT_ERROR)

    params = module.params
    name = params['master_name']
    for option in POSITIVE_OPTIONS:
        if params[option] is not None and params[option] < 1:
            module.fail_json(msg='%s must be a positive integer (got %s)' % (option, params[option]))
    if not 1 <= params['master_port'] <= 65535:
        module.fail_json(msg='master_port must be between 1 and 65535 (got %s)' % params['master_port'])
    desired = dict((option, params[option]) for option, _k, _t, _s in SETTINGS)

    try:
        client = connect(params)
        try:
            master = parse_master(call(client, 'SENTINEL', 'MASTER', name))
        except SentinelError as exc:
            if not is_no_such_master(exc.message):
                raise
            master = None
    except SentinelError as exc:
        module.fail_json(msg=describe_error(exc.kind, params['host'], params['port'], exc.message))

    commands = []
    if master is None:
        if not params['master_host'] or params['quorum'] is None:
            module.fail_json(msg='Sentinel %s:%s does not monitor %s yet: give master_host (the current master) '
                                 'and quorum so that it can start monitoring it' % (params['host'], params['port'], name))
        monitor, changes = plan_monitor(name, params['master_host'], params['master_port'], desired)
        commands.append((monitor, False))
        master_address = '%s:%s' % (params['master_host'], params['master_port'])
        before = {}
        before_text = ''
    else:
        auth = read_auth(module, params['config_file'], name) if params['config_file'] else None
        before = current_settings(master, auth)
        changes = plan_changes(before, desired, params['update_password'])
        master_address = master['address']
        before_text = render(name, before, master_address)
    commands.extend((set_command(name, change), change['secret']) for change in changes)

    if commands and not module.check_mode:
        for command, _secret in commands:
            try:
                call(client, *command)
            except SentinelError as exc:
                module.fail_json(msg='Sentinel %s:%s refused "%s": %s' % (
                    params['host'], params['port'], shown_command(command, _secret), exc.message),
                    commands=[shown_command(c, s) for c, s in commands])

    after = apply_changes(before if master is not None else dict(
        (option, '' if option in AUTH_OPTIONS else None) for option, _k, _t, _s in SETTINGS), changes)
    if master is None:
        after['quorum'] = params['quorum']
    result = dict(
        changed=bool(commands),
        created=master is None,
        master=master_address,
        changes=[public_change(c) for c in changes],
        commands=[shown_command(c, s) for c, s in commands],
        settings=public_settings(after),
    )
    if module._diff:
        result['diff'] = dict(
            before_header='sentinel %s:%s, master %s (before)' % (params['host'], params['port'], name),
            after_header='sentinel %s:%s, master %s (after)' % (params['host'], params['port'], name),
            before=before_text,
            after=render(name, after, master_address, changed=[c['option'] for c in changes]),
        )
    module.exit_json(**result)


if __name__ == '__main__':
    main()
