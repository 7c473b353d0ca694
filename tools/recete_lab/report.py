"""`tools/lab list`, `leftovers` and `ssh`: read-only views of the labs."""
from __future__ import annotations

import os

from . import cgroups, hostsysctl, machines, mounts, network, procs, state
from .names import check_lab_name
from .paths import images_dir, state_root
from .util import LabError, require_root


def list_labs() -> int:
    require_root()
    states = state.all_states()
    if not states:
        print("no labs")
        return 0
    for st in states:
        if st.get("corrupt") or "subnet" not in st:
            print(f"lab {st['name']}: unreadable or incomplete state "
                  f"(run tools/lab down --name {st['name']})")
            continue
        up = [m for m in st["machines"] if procs.is_machine(m.get("pid"), m["rootfs"])]
        print(f"lab {st['name']}  topology {st['topology']}  subnet {st['subnet']}  "
              f"bridge {st['bridge']}  {len(up)}/{len(st['machines'])} running")
        width = max(len(m["name"]) for m in st["machines"])
        for m in st["machines"]:
            status = "running" if m in up else "stopped"
            groups = ",".join([*m["groups"], f"lab_{m['release']}"])
            print(f"  {m['name']:<{width}}  {m['address']:<13}  {status:<7}  {groups}")
    return 0


def leftovers() -> int:
    """Everything any lab left on the host; exit 1 if anything."""
    require_root()
    found = []
    for pid, root in sorted(procs.nspawn_under(state_root()).items()):
        found.append(f"process: systemd-nspawn pid {pid} on {root}")
    for ifname, owner in network.lab_bridges():
        found.append(f"interface: {ifname}" + (f" (lab {owner})" if owner else ""))
    for table, rule in network.list_tagged():
        found.append(f"iptables -t {table}: {' '.join(rule)}")
    for base in (state_root(), images_dir()):
        for point in mounts.mounts_under(base):
            found.append(f"mount: {point}")
    for stale in sorted(images_dir().glob(".build-*")):
        if stale.is_dir():
            found.append(f"unfinished image build: {stale}")
    for name in state.lab_names():
        found.append(f"lab directory: {state_root() / name}")
    for path in cgroups.leftovers():
        found.append(f"cgroup: {path}")
    for key, value in sorted(hostsysctl.changed().items()):
        found.append(f"sysctl {key.replace('/', '.')} changed by the tool (was {value}; "
                     f"saved in {hostsysctl.saved_file()})")
    if not found:
        print("no lab leftovers")
        return 0
    print("\n".join(found))
    return 1


def ssh(host: str, name: str, command: list[str]) -> int:
    require_root()
    reason = check_lab_name(name)
    if reason:
        raise LabError(reason)
    st = state.load(name)
    if not st or "machines" not in st or st.get("corrupt"):
        raise LabError(f"no lab named {name} (see tools/lab list)")
    m = next((m for m in st["machines"] if m["name"] == host), None)
    if m is None:
        names = ", ".join(x["name"] for x in st["machines"])
        raise LabError(f"lab {name} has no machine {host!r}; it has: {names}")
    os.execvp("ssh", machines.ssh_argv(str(state.key_path(name)), m["address"], command))
