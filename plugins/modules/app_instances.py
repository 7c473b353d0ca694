#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: app_instances
short_description: Report the instances of an app template unit on a host, with the release each runs
version_added: 0.2.0
description:
  - Lists the instances of the systemd template unit O(unit) (V(recete-api) for C(recete-api@3000.service)
    and its siblings) that are loaded or enabled, with their state, main PID, start time and the release
    each one runs.
  - The release of an instance is the directory its process runs from; for a stopped instance, the one its
    drop-in C(<unit>@<slot>.service.d/release.conf) pins.
  - An instance is C(stale) when it runs but started before its configuration last changed (the template
    unit, its drop-ins, or a file in O(watch) such as the environment file).
  - Read-only; never reports a change. The rolling-change planner (C(recete.stack.rollout_plan)) reads this.
  - Also returns, as facts, what a plan needs of the host (the address and interface of its default IPv4 route,
    its logical processors and memory), named as M(ansible.builtin.setup) names them. That is one call per host
    instead of a read and two fact gatherings; with C(delegate_facts) they land on the host read.
author: recete.stack maintainers (@recete)
extends_documentation_fragment:
  - recete.stack.action_group.app_group
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to diff.
options:
  unit:
    description: Name of the template unit without C(@.service), for example V(recete-api).
    type: str
    required: true
  watch:
    description: Files whose change after an instance's start makes it stale (the environment file).
    type: list
    elements: path
    default: []
  link:
    description: The host's release link (V(/opt/recete/current)); its target's name is returned as RV(release).
    type: path
notes:
  - Only instances whose name is a number (a port or an index) are reported.
seealso:
  - module: community.general.systemd_info
  - module: ansible.builtin.systemd_service
'''

EXAMPLES = r'''
- name: Read what API instances run on the host
  recete.stack.app_instances:
    unit: recete-api
    watch: [/etc/recete/app.env]
    link: /opt/recete/current
  register: api_instances

- name: Show the release of each running instance
  ansible.builtin.debug:
    msg: "{{ api_instances.instances | selectattr('running') | map(attribute='release') | list }}"
'''

RETURN = r'''
unit_installed:
  description: Whether the template unit file exists (the tier was deployed on the host).
  returned: always
  type: bool
  sample: true
deployed:
  description: Whether an instance of the unit was ever started here by the rollout engine (a release drop-in exists).
  returned: always
  type: bool
  sample: true
release:
  description: Name of the release the link points at; V(null) without a link.
  returned: always
  type: str
  sample: 1.1.0
instances:
  description: One entry per instance, by slot.
  returned: always
  type: list
  elements: dict
  sample:
    - slot: 3001
      unit: recete-api@3001.service
      active_state: active
      sub_state: running
      enabled: true
      running: true
      current: true
      pid: 4242
      started: 1795833600.5
      restarts: 0
      release_dir: /opt/recete/releases/1.1.0
      release: 1.1.0
      stale: false
      stale_reasons: []
current_slots:
  description: Slots of the instances that belong to what runs (enabled or running).
  returned: always
  type: list
  elements: int
  sample: [3000, 3001]
running_slots:
  description: Slots of the running instances.
  returned: always
  type: list
  elements: int
  sample: [3000, 3001]
stale_slots:
  description: Slots of the running instances whose configuration changed after their start.
  returned: always
  type: list
  elements: int
  sample: []
ansible_facts:
  description: The host's facts a plan needs, each left out when it cannot be read.
  returned: always
  type: dict
  contains:
    default_ipv4:
      description: The default IPv4 route's source address and interface (from C(ip -4 route get)).
      returned: when the host has a default IPv4 route
      type: dict
      sample: {address: 10.0.0.11, interface: eth0}
    processor_vcpus:
      description: Logical processors.
      returned: success
      type: int
      sample: 2
    memtotal_mb:
      description: Total memory in MiB.
      returned: success
      type: int
      sample: 3936
'''

import glob
import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.recete.stack.plugins.module_utils._app_instances import (
    UNIT_DIR,
    config_mtime_of,
    describe,
    host_facts,
    monotonic_offset,
    parse_show,
    release_name,
)

PROPERTIES = ["Id", "ActiveState", "SubState", "UnitFileState", "MainPID", "ExecMainStartTimestampMonotonic", "NRestarts"]


def systemctl_show(module, names):
    """`systemctl show` of the units or patterns in names (a pattern matches loaded units only)."""
    rc, out, err = module.run_command(
        ["systemctl", "show", "--no-pager", "--property=" + ",".join(PROPERTIES), "--"] + names)
    if rc != 0:
        module.fail_json(msg="systemctl show failed: %s" % err.strip(), rc=rc)
    return parse_show(out)


def unit_names(module, unit):
    """Loaded instances, and enabled ones (systemd unloads a stopped instance even when it is enabled)."""
    loaded = [u["Id"] for u in systemctl_show(module, [unit + "@*.service"])]
    enabled = [os.path.basename(p) for p in glob.glob(os.path.join(UNIT_DIR, "*.wants", unit + "@*.service"))]
    return sorted(set(loaded) | set(enabled))


def read_cwd(pid):
    try:
        return os.readlink("/proc/%d/cwd" % pid)
    except OSError:
        return None


def read_text(path):
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError):
        return ""


def route_text(module):
    # The address ansible.builtin.setup reports as default_ipv4: the source of the route to a public address.
    ip = module.get_bin_path("ip")
    if not ip:
        return ""
    rc, out, dummy = module.run_command([ip, "-4", "route", "get", "8.8.8.8"])
    return out if rc == 0 else ""


def main():
    module = AnsibleModule(
        argument_spec=dict(
            unit=dict(type="str", required=True),
            watch=dict(type="list", elements="path", default=[]),
            link=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    unit = module.params["unit"]
    link = module.params["link"]
    link_dir = os.path.realpath(link) if link and os.path.lexists(link) else None
    config_mtime = config_mtime_of(unit, module.params["watch"])
    offset = monotonic_offset()
    names = unit_names(module, unit)
    instances = [describe(unit, props, config_mtime, link_dir, offset, read_cwd)
                 for props in (systemctl_show(module, names) if names else [])
                 if props["Id"][len(unit) + 1:-len(".service")].isdigit()]
    instances.sort(key=lambda i: i["slot"])
    module.exit_json(
        changed=False,
        unit_installed=os.path.exists(os.path.join(UNIT_DIR, unit + "@.service")),
        # Any instance ever started by the engine left its release drop-in: the tier was
        # deployed, so "no instance" is a count someone chose (workers scaled to 0).
        deployed=bool(glob.glob(os.path.join(UNIT_DIR, unit + "@*.service.d", "release.conf"))),
        release=release_name(link_dir),
        instances=instances,
        current_slots=[i["slot"] for i in instances if i["current"]],
        running_slots=[i["slot"] for i in instances if i["running"]],
        stale_slots=[i["slot"] for i in instances if i["stale"]],
        ansible_facts=host_facts(route_text(module), read_text("/proc/meminfo"), read_text("/proc/cpuinfo")),
    )


if __name__ == "__main__":
    main()
