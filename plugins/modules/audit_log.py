#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: audit_log
short_description: Append one operation to the stack's audit log, or read its last entries
version_added: 0.2.0
description:
  - The audit log is a JSON-lines file, one line per operation (site, scale, deploy, rollback), as Kamal
    keeps one on every server.
  - O(state=present) appends exactly one line for O(entry), with a C(time) (ISO-8601 UTC) added first when
    the entry has none. Keys keep the order given; text is written as UTF-8, not escaped.
  - The line is written with C(O_APPEND) and a single C(write()), so runs writing at the same time never
    interleave their lines.
  - O(state=read) returns the last O(last) entries, oldest first, skipping lines that are not JSON objects
    (for example a line cut short by a full disk) and counting them.
author: recete.stack maintainers (@recete)
extends_documentation_fragment:
  - recete.stack.action_group.operation_group
attributes:
  check_mode:
    support: full
    description: With O(state=present) reports the entry it would append and writes nothing.
  diff_mode:
    support: none
    description: An append adds one line; RV(entry) shows it.
options:
  path:
    description:
      - The log file. Its directory is created with mode C(0750) and the file with mode C(0640) when missing.
      - Both are owned by the user the module runs as; use C(become) so that is root.
    type: path
    default: /var/log/recete/operations.jsonl
  state:
    description: V(present) appends one entry; V(read) returns the last ones.
    type: str
    choices: [present, read]
    default: present
  entry:
    description:
      - The operation to record, required with O(state=present).
      - Any keys may be used. The readable summary in RV(lines) shows these when present, in this order.
      - C(time), C(who), C(command) (or C(operation)), C(result), C(release_before) and C(release_after).
      - 'Instance counts: C(counts_before) and C(counts_after) (numbers, or mappings such as V({"api": 2, "worker": 1})),
        and any other pair named C(NAME_before) and C(NAME_after), such as C(api_before) and C(api_after).'
      - C(rolled_back) (a boolean), then C(message), C(failure) and C(error).
    type: dict
  last:
    description: With O(state=read), how many entries to return.
    type: int
    default: 20
notes:
  - Every append is a change (C(changed=true)), since the log grows by one line each time.
seealso:
  - module: recete.stack.operation_lock
'''

EXAMPLES = r'''
- name: Record the deploy
  recete.stack.audit_log:
    entry:
      who: root@controller
      command: deploy.yml -e app_version=1.1.0
      operation: deploy
      result: ok
      release_before: 1.0.0
      release_after: 1.1.0
      counts_before: {api: 2, worker: 1}
      counts_after: {api: 2, worker: 1}
      rolled_back: false

- name: Read the last ten operations
  recete.stack.audit_log:
    state: read
    last: 10
  register: audit

- name: Print them
  ansible.builtin.debug:
    msg: "{{ audit.lines }}"
'''

RETURN = r'''
path:
  description: The log file.
  returned: always
  type: str
  sample: /var/log/recete/operations.jsonl
entry:
  description: The entry as appended (or as it would be, in check mode), C(time) included.
  returned: when O(state=present)
  type: dict
  sample: {"time": "2026-11-28T10:04:31Z", "who": "root@controller", "command": "deploy.yml -e app_version=1.1.0",
           "result": "ok"}
entries:
  description: The last O(last) entries, oldest first.
  returned: when O(state=read)
  type: list
  elements: dict
  sample: [{"time": "2026-11-28T10:04:31Z", "who": "root@controller", "result": "ok"}]
lines:
  description: One readable line per entry of RV(entries), in the same order.
  returned: when O(state=read)
  type: list
  elements: str
  sample: ["2026-11-28T10:04:31Z | root@controller | deploy.yml -e app_version=1.1.0 | ok | release 1.0.0→1.1.0
           | counts api 2→2, worker 1→1 | not rolled back"]
skipped:
  description: Lines among those read that were not JSON objects and were left out.
  returned: when O(state=read)
  type: int
  sample: 0
exists:
  description: Whether the log file exists; a missing file reads as no entries.
  returned: when O(state=read)
  type: bool
  sample: true
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.recete.stack.plugins.module_utils import _audit


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/var/log/recete/operations.jsonl"),
            state=dict(type="str", choices=["present", "read"], default="present"),
            entry=dict(type="dict"),
            last=dict(type="int", default=20),
        ),
        required_if=[("state", "present", ("entry",))],
        supports_check_mode=True,
    )
    p = module.params
    try:
        if p["state"] == "read":
            if p["last"] < 1:
                module.fail_json(msg="last must be at least 1, got %d" % p["last"], path=p["path"])
            entries, skipped = _audit.read_last(p["path"], p["last"])
            module.exit_json(changed=False, path=p["path"], entries=entries, skipped=skipped,
                             lines=[_audit.summary(e) for e in entries], exists=os.path.exists(p["path"]))
        entry = _audit.stamped(p["entry"])
        _audit.to_line(entry)  # refuse an entry JSON cannot hold, in check mode too
        if not module.check_mode:
            _audit.append(p["path"], entry)
    except _audit.AuditError as exc:
        module.fail_json(msg=str(exc), path=p["path"])
    module.exit_json(changed=True, path=p["path"], entry=entry)


if __name__ == "__main__":
    main()
