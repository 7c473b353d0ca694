#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: sentinel_info
short_description: Ask one Redis Sentinel who the master is and whether failover is possible
version_added: 0.1.0
description:
  - Connects to one Redis Sentinel and reports what it knows about one monitored master
    (C(SENTINEL MASTER), C(SENTINEL REPLICAS), C(SENTINEL SENTINELS)) together with the
    result of C(SENTINEL CKQUORUM).
  - With O(require_quorum=true) it fails when a failover could not happen right now, so a play
    can use it as a health gate before disruptive work.
  - Read-only; never reports a change.
  - Runs on the target and needs the C(redis) Python library there (Debian package C(python3-redis)).
author: recete.stack maintainers (@recete)
requirements:
  - redis (Python library) >= 3.4
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to diff.
extends_documentation_fragment:
  - recete.stack.action_group.sentinel_group
  - recete.stack.sentinel
options:
  require_quorum:
    description:
      - Fail unless the master is monitored, known, not flagged down (C(s_down), C(o_down),
        C(disconnected)), no failover is in progress, and C(SENTINEL CKQUORUM) says the
        quorum and the majority needed to authorise a failover are reachable.
      - With V(false) the same facts are returned and RV(problems) lists what is wrong.
    type: bool
    default: true
  fail_on_unreachable:
    description:
      - With V(false), a Sentinel that does not answer, or answers without any password set
        (not configured yet, for example the package's default), is reported with
        RV(reachable=false) instead of failing. Use it to probe for an existing deployment.
      - A wrong password fails in any case.
    type: bool
    default: true
notes:
  - The addresses are the ones Sentinel uses (IP addresses unless Sentinel runs with
    C(resolve-hostnames yes)).
seealso:
  - module: recete.stack.sentinel_monitor
  - name: Redis Sentinel documentation
    description: The Sentinel API, flags and quorum.
    link: https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/
'''

EXAMPLES = r'''
- name: Find the current master and check that a failover could happen
  recete.stack.sentinel_info:
    master_name: recete
    password: "{{ redis_sentinel_password }}"
  register: sentinel

- name: Show it
  ansible.builtin.debug:
    msg: "master {{ sentinel.master.address }}, {{ sentinel.replicas | length }} replicas"

- name: Probe every Sentinel without failing when none runs yet (first deployment)
  recete.stack.sentinel_info:
    host: "{{ item }}"
    master_name: recete
    password: "{{ redis_sentinel_password }}"
    require_quorum: false
    fail_on_unreachable: false
  loop: [10.0.0.5, 10.0.0.6, 10.0.0.7]
  register: probe
'''

RETURN = r'''
reachable:
  description: Whether the Sentinel answered (always true unless O(fail_on_unreachable=false)).
  returned: always
  type: bool
  sample: true
unreachable_reason:
  description: Why the Sentinel was treated as absent (V(unreachable) or V(unconfigured)).
  returned: when RV(reachable) is false
  type: str
  sample: unreachable
monitored:
  description: Whether the Sentinel monitors O(master_name).
  returned: always
  type: bool
  sample: true
master:
  description: The master as this Sentinel sees it.
  returned: when RV(monitored) is true
  type: dict
  contains:
    name:
      description: The master name.
      type: str
      sample: recete
    ip:
      description: Address of the current master.
      type: str
      sample: 10.213.0.15
    port:
      description: Port of the current master.
      type: int
      sample: 6379
    address:
      description: C(ip:port) of the current master.
      type: str
      sample: "10.213.0.15:6379"
    flags:
      description: Sentinel's flags for the master (V(master), V(s_down), V(o_down), ...).
      type: list
      elements: str
      sample: [master]
    runid:
      description: Run id of the Redis process.
      type: str
    role_reported:
      description: Role the instance itself reports.
      type: str
      sample: master
    num_replicas:
      description: Replicas this Sentinel knows.
      type: int
      sample: 2
    num_other_sentinels:
      description: Other Sentinels this Sentinel knows.
      type: int
      sample: 2
    quorum:
      description: Configured quorum.
      type: int
      sample: 2
    down_after_milliseconds:
      description: Configured C(down-after-milliseconds).
      type: int
      sample: 5000
    failover_timeout:
      description: Configured C(failover-timeout).
      type: int
      sample: 30000
    parallel_syncs:
      description: Configured C(parallel-syncs).
      type: int
      sample: 1
    config_epoch:
      description: Configuration epoch (raised by every failover).
      type: int
      sample: 1
    last_ok_ping_reply_ms:
      description: Milliseconds since the last valid reply to Sentinel's PING.
      type: int
      sample: 120
replicas:
  description: The replicas of the master this Sentinel knows.
  returned: when RV(monitored) is true
  type: list
  elements: dict
  contains:
    ip:
      description: Address of the replica.
      type: str
    port:
      description: Port of the replica.
      type: int
    address:
      description: C(ip:port) of the replica.
      type: str
    flags:
      description: Sentinel's flags for the replica (V(slave), V(s_down), ...).
      type: list
      elements: str
    master_host:
      description: Master the replica reports it replicates from.
      type: str
    master_port:
      description: Port of that master.
      type: int
    master_link_status:
      description: Replication link as the replica reports it (V(ok) or V(err)).
      type: str
    replica_priority:
      description: The replica's C(replica-priority) (0 never promoted).
      type: int
    repl_offset:
      description: Replication offset the replica reports.
      type: int
    runid:
      description: Run id of the replica.
      type: str
    last_ok_ping_reply_ms:
      description: Milliseconds since the last valid reply to Sentinel's PING.
      type: int
sentinels:
  description: The other Sentinels this Sentinel knows (itself excluded).
  returned: when RV(monitored) is true
  type: list
  elements: dict
  contains:
    ip:
      description: Address of the Sentinel.
      type: str
    port:
      description: Port of the Sentinel.
      type: int
    address:
      description: C(ip:port) of the Sentinel.
      type: str
    flags:
      description: Flags (V(sentinel), V(s_down), ...).
      type: list
      elements: str
    runid:
      description: The Sentinel's id.
      type: str
    last_ok_ping_reply_ms:
      description: Milliseconds since its last valid reply.
      type: int
num_other_sentinels:
  description: Number of other Sentinels known.
  returned: when RV(monitored) is true
  type: int
  sample: 2
quorum:
  description: The configured quorum.
  returned: when RV(monitored) is true
  type: int
  sample: 2
ckquorum:
  description: Result of C(SENTINEL CKQUORUM).
  returned: when RV(monitored) is true
  type: dict
  contains:
    ok:
      description: Whether the quorum and the failover majority are reachable.
      type: bool
      sample: true
    message:
      description: Sentinel's own words.
      type: str
      sample: OK 3 usable Sentinels. Quorum and failover authorization can be reached
problems:
  description: What stands in the way of a failover right now (empty when healthy).
  returned: always
  type: list
  elements: str
  sample: []
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.recete.stack.plugins.module_utils._redis_common import (
    HAS_REDIS,
    REDIS_IMPORT_ERROR,
    SentinelError,
    call,
    connect,
    describe_error,
    instance_is_down,
    is_no_such_master,
    parse_master,
    parse_replica,
    parse_sentinel,
    sentinel_argument_spec,
)


def parse_ckquorum(reply_or_error):
    """SENTINEL CKQUORUM answers +OK ... or an error (-NOQUORUM ...)."""
    message = str(reply_or_error or '').strip()
    return dict(ok=message.upper().startswith('OK'), message=message)


def find_problems(master_name, master, ckquorum):
    """Why a failover could not happen now; empty when it could."""
    if master is None:
        return ['this Sentinel does not monitor a master named %s' % master_name]
    problems = []
    if not master.get('ip') or master.get('ip') in ('0.0.0.0', '?'):
        problems.append('the master of %s is unknown to this Sentinel' % master_name)
    if instance_is_down(master):
        problems.append('the master %s is flagged %s by this Sentinel' % (
            master['address'], ','.join(f for f in master['flags'] if f != 'master')))
    if 'failover_in_progress' in master.get('flags', []) or 'promoted' in master.get('flags', []):
        problems.append('a failover of %s is in progress' % master_name)
    if ckquorum is not None and not ckquorum['ok']:
        problems.append('SENTINEL CKQUORUM %s: %s' % (master_name, ckquorum['message']))
    return problems


def gather(client, master_name):
    """Everything one Sentinel knows about master_name (raises SentinelError)."""
    try:
        master = parse_master(call(client, 'SENTINEL', 'MASTER', master_name))
    except SentinelError as exc:
        if is_no_such_master(exc.message):
            return dict(monitored=False)
        raise
    try:
        replica_replies = call(client, 'SENTINEL', 'REPLICAS', master_name)
    except SentinelError as exc:
        if exc.kind != 'error':
            raise
        # Sentinel before 5.0 only knows the old name of the subcommand.
        replica_replies = call(client, 'SENTINEL', 'SLAVES', master_name)
    replicas = [parse_replica(r) for r in replica_replies]
    sentinels = [parse_sentinel(s) for s in call(client, 'SENTINEL', 'SENTINELS', master_name)]
    try:
        ckquorum = parse_ckquorum(call(client, 'SENTINEL', 'CKQUORUM', master_name))
    except SentinelError as exc:
        if exc.kind != 'error':
            raise
        ckquorum = parse_ckquorum(exc.message)
    return dict(
        monitored=True,
        master=master,
        replicas=replicas,
        sentinels=sentinels,
        num_other_sentinels=master['num_other_sentinels'],
        quorum=master['quorum'],
        ckquorum=ckquorum,
    )


def main():
    argument_spec = sentinel_argument_spec()
    argument_spec.update(
        require_quorum=dict(type='bool', default=True),
        fail_on_unreachable=dict(type='bool', default=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib('redis (Debian: python3-redis)'), exception=REDIS_IMPORT_ERROR)

    params = module.params
    master_name = params['master_name']
    try:
        client = connect(params)
        info = gather(client, master_name)
    except SentinelError as exc:
        if not params['fail_on_unreachable'] and exc.kind in ('unreachable', 'unconfigured'):
            module.exit_json(changed=False, reachable=False, unreachable_reason=exc.kind, monitored=False,
                             problems=[describe_error(exc.kind, params['host'], params['port'], exc.message)])
        module.fail_json(msg=describe_error(exc.kind, params['host'], params['port'], exc.message),
                         reachable=exc.kind not in ('unreachable', 'unconfigured'), error_kind=exc.kind)

    problems = find_problems(master_name, info.get('master'), info.get('ckquorum'))
    result = dict(changed=False, reachable=True, problems=problems, **info)
    if params['require_quorum'] and problems:
        result['msg'] = ('Sentinel %s:%s reports that a failover of %s could not happen now: %s. Check that the '
                         'Redis servers and a majority of the Sentinels run and reach each other '
                         '(systemctl status redis-server redis-sentinel; SENTINEL MASTER %s)'
                         % (params['host'], params['port'], master_name, '; '.join(problems), master_name))
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
