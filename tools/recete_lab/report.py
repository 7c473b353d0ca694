"""`tools/lab list`, `leftovers` and `ssh`: read-only views of the labs."""
from __future__ import annotations

import os
from pathlib import Path

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
            print(f"  {m['name']:<{width}}  {m['address']:<13}  {status:<7}  {groups}"
                  + ("  (added)" if m.get("added") else ""))
    return 0


def leftovers(names: list[str] | None = None) -> int:
    """What labs left on the host; exit 1 if anything.

    With names, only what those labs left (plus host-wide changes once no lab
    at all remains), so a test run can prove its own cleanup while a demo lab
    keeps running beside it.
    """
    require_root()
    found = []  # (owning lab or None for host-wide, description)
    root = state_root()
    for pid, rootfs in sorted(procs.nspawn_under(root).items()):
        found.append((_lab_of_path(rootfs), f"process: systemd-nspawn pid {pid} on {rootfs}"))
    for ifname, owner in network.lab_bridges():
        found.append((owner, f"interface: {ifname}" + (f" (lab {owner})" if owner else "")))
    for table, rule in network.list_tagged():
        found.append((_lab_of_rule(rule), f"iptables -t {table}: {' '.join(rule)}"))
    for base in (root, images_dir()):
        for point in mounts.mounts_under(base):
            found.append((_lab_of_path(point), f"mount: {point}"))
    for stale in sorted(images_dir().glob(".build-*")):
        if stale.is_dir():
            found.append((None, f"unfinished image build: {stale}"))
    for name in state.lab_names():
        found.append((name, f"lab directory: {root / name}"))
    for path in cgroups.leftovers():
        found.append((_lab_of_cgroup(path), f"cgroup: {path}"))
    for key, value in sorted(hostsysctl.changed().items()):
        found.append((None, f"sysctl {key.replace('/', '.')} changed by the tool (was {value}; "
                            f"saved in {hostsysctl.saved_file()})"))
    if names:
        others_remain = any(owner and owner not in names for owner, _ in found)
        found = [(owner, text) for owner, text in found
                 if owner in names or (owner is None and not others_remain)]
    if not found:
        print("no lab leftovers" + (f" of {', '.join(names)}" if names else ""))
        return 0
    print("\n".join(text for _, text in found))
    return 1


def _lab_of_path(path: str) -> str | None:
    """The lab owning a path under the state root (its first component)."""
    base = str(state_root()).rstrip("/") + "/"
    return path[len(base):].split("/", 1)[0] if path.startswith(base) else None


def _lab_of_rule(rule: list[str]) -> str | None:
    for word in rule:
        word = word.strip('"')
        if word.startswith("recete-lab:"):
            return word.split(":", 1)[1]
    return None


def _lab_of_cgroup(path: str) -> str | None:
    """Machine cgroups are named <lab>-<host>; lab names have no '-'."""
    return Path(path).name.split("-", 1)[0]


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
