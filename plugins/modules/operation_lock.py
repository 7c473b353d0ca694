#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: operation_lock
short_description: Take, release or inspect the lock that keeps two stack operations apart
version_added: 0.2.0
description:
  - One lock per stack, so that two rolling changes (site, scale, deploy, rollback) never run at the
    same time. Modelled on Kamal's lock.
  - Taking the lock is an atomic C(mkdir) of O(path) (mode C(0700)), followed by a C(details.json)
    file inside it (mode C(0600)) naming the holder, the command, the O(reason), the start time (UTC)
    and the token. Only one of many concurrent runs can create the directory.
  - When another run holds the lock, the module waits up to O(wait) seconds, then fails with a message
    naming the holder, since when, the command and the reason, and saying how to release a lock a dead
    run left behind.
  - A lock directory without readable details (a run that died between the C(mkdir) and writing the
    details) is reported as held by V(unknown) since the directory's modification time.
author: recete.stack maintainers (@recete)
extends_documentation_fragment:
  - recete.stack.action_group.operation_group
attributes:
  check_mode:
    support: full
    description:
      - Reports what taking or releasing would do and changes nothing.
      - Still fails when another run holds the lock, so a check run learns that the real run would fail.
  diff_mode:
    support: none
    description: The lock's details are returned in RV(lock) instead.
options:
  path:
    description:
      - The lock directory. Its parent is created (mode C(0755)) when missing.
      - Files are owned by the user the module runs as; use C(become) so that is root.
    type: path
    default: /var/lib/recete/lock
  state:
    description:
      - V(acquired) takes the lock, waiting up to O(wait) seconds for another holder to release it.
      - V(released) gives it back; only when O(token) matches the holder's, or O(force=true).
      - V(status) only reads it.
    type: str
    choices: [acquired, released, status]
    default: acquired
  holder:
    description: Who takes the lock, for example V(root@controller). Required with O(state=acquired).
    type: str
  command:
    description: What the holder runs, for example V(deploy.yml -e app_version=1.1.0).
    type: str
    default: ''
  reason:
    description:
      - Why, in the holder's words, for example V(release 1.1.0). Stored as C(message) in the details.
      - Named O(reason) because Ansible keeps C(message) for itself.
    type: str
    default: ''
  wait:
    description: Seconds to wait for another holder to release the lock; V(0) fails at once.
    type: float
    default: 0
  poll:
    description: Seconds between two looks at the lock while waiting.
    type: float
    default: 2
  token:
    description:
      - An id the play generates once per run, for example from C(lookup('ansible.builtin.password', '/dev/null')).
      - Taking the lock again with the same token is no change; releasing needs the same token, so a run
        never releases a lock another run holds.
    type: str
  force:
    description: With O(state=released), release whatever lock is held, whoever holds it (a lock a dead run left).
    type: bool
    default: false
notes:
  - The lock lives on one host (the first load balancer in our playbooks); every controller must use the same one.
  - Release a lock a dead run left with C(ansible-playbook playbooks/lock.yml -e lock_action=release).
seealso:
  - module: recete.stack.audit_log
'''

EXAMPLES = r'''
- name: Take the operation lock, waiting up to 5 minutes for another run
  recete.stack.operation_lock:
    holder: "{{ lookup('ansible.builtin.env', 'USER') }}@{{ lookup('ansible.builtin.pipe', 'hostname') }}"
    command: deploy.yml -e app_version={{ app_version }}
    reason: release {{ app_version }}
    token: "{{ operation_token }}"
    wait: 300
  register: lock

- name: Give the lock back at the end of the run
  recete.stack.operation_lock:
    state: released
    token: "{{ operation_token }}"

- name: Who holds the lock?
  recete.stack.operation_lock:
    state: status
  register: lock_status

- name: Release a lock a dead run left behind
  recete.stack.operation_lock:
    state: released
    force: true
'''

RETURN = r'''
path:
  description: The lock directory.
  returned: always
  type: str
  sample: /var/lib/recete/lock
held:
  description: Whether the lock is held after the task (as it would be, in check mode).
  returned: always
  type: bool
  sample: true
lock:
  description:
    - The lock's details. With O(state=acquired) the lock now held (ours, or the same-token one already
      held); with O(state=released) the lock released; with O(state=status) the lock held.
    - V(null) when there is no lock.
  returned: always
  type: dict
  sample: {"holder": "root@controller", "command": "deploy.yml -e app_version=1.1.0", "message": "",
           "started": "2026-11-28T10:00:00Z", "token": "3f9c1a2b"}
  contains:
    holder:
      description: Who took the lock; V(unknown) for a lock directory without readable details.
      type: str
    command:
      description: What the holder runs.
      type: str
    message:
      description: The holder's O(reason).
      type: str
    started:
      description: When the lock was taken, ISO-8601 UTC.
      type: str
    token:
      description: The holder's token.
      type: str
details:
  description: With O(state=status), the same as RV(lock), as C(kamal lock status) shows it.
  returned: when O(state=status)
  type: dict
  sample: {"holder": "unknown", "command": "", "message": "lock directory without readable details",
           "started": "2026-11-28T09:12:44Z", "token": ""}
waited_s:
  description: Seconds spent waiting for another holder.
  returned: always
  type: float
  sample: 12.5
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.recete.stack.plugins.module_utils import _oplock


def run(module):
    """Do what the parameters ask and return the result, or raise _oplock.LockError."""
    p = module.params
    if p["state"] == "status":
        held, details = _oplock.read_status(p["path"])
        return {"changed": False, "held": held, "lock": details, "details": details, "waited_s": 0.0}
    if p["state"] == "released":
        result = _oplock.release(p["path"], token=p["token"], force=p["force"], check_mode=module.check_mode)
        result["waited_s"] = 0.0
        return result
    return _oplock.acquire(p["path"], p["holder"], command=p["command"], message=p["reason"],
                           token=p["token"], wait=p["wait"], poll=p["poll"], check_mode=module.check_mode)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/var/lib/recete/lock"),
            state=dict(type="str", choices=["acquired", "released", "status"], default="acquired"),
            holder=dict(type="str"),
            command=dict(type="str", default=""),
            reason=dict(type="str", default=""),
            wait=dict(type="float", default=0),
            poll=dict(type="float", default=2),
            # An id that tells runs apart, not a secret: showing it helps find the run.
            token=dict(type="str", no_log=False),
            force=dict(type="bool", default=False),
        ),
        required_if=[("state", "acquired", ("holder",))],
        supports_check_mode=True,
    )
    p = module.params
    problems = []
    if p["wait"] < 0:
        problems.append("wait must not be negative")
    if p["poll"] <= 0:
        problems.append("poll must be above 0")
    if p["state"] == "released" and not p["token"] and not p["force"]:
        problems.append("releasing needs the token the lock was taken with, or force=true for a lock a dead run left")
    if problems:
        module.fail_json(msg="; ".join(problems), path=p["path"])

    try:
        result = run(module)
    except _oplock.LockHeld as exc:
        module.fail_json(msg=str(exc), path=p["path"], held=True, lock=exc.details, waited_s=exc.waited_s)
    except _oplock.LockError as exc:
        module.fail_json(msg=str(exc), path=p["path"], lock=exc.details)
    result["path"] = p["path"]
    module.exit_json(**result)


if __name__ == "__main__":
    main()
