"""`tools/lab down`: undo everything `up` did, in reverse, even half-done.

Nothing here trusts state.json alone: machines are found by scanning /proc
for nspawn processes rooted in the lab directory, mounts from mountinfo,
rules by their comment, the bridge by its alias. So a lab whose `up`
crashed at any point, or whose state file is gone, still comes down.
"""
from __future__ import annotations

from pathlib import Path

from . import cgroups, hostsysctl, inventory, mounts, network, procs, state
from .names import bridge_name, check_lab_name
from .paths import lab_dir
from .util import LabError, Stopwatch, require_program, require_root


def down(name: str) -> int:
    watch = Stopwatch()
    require_root()
    reason = check_lab_name(name)
    if reason:
        raise LabError(reason)
    # All tools first: a down that stops half-way is worse than one that does not start.
    for prog, pkg in (("iptables", "iptables"), ("ip", "iproute2"), ("umount", "mount")):
        require_program(prog, f"apt-get install {pkg}")
    done: list[str] = []
    with state.global_lock():
        st = state.load(name) or {"name": name, "machines": []}
        directory = lab_dir(name)

        done += stop_under(directory, _machine_names(st, name))

        removed = network.delete_nat(name)
        if removed:
            done.append(f"removed {removed} iptables rule(s)")

        bridge = st.get("bridge") or bridge_name(name)
        info = network.link_info(bridge)
        if info and network.bridge_owner(info) == name:
            network.delete_bridge(bridge)
            done.append(f"deleted bridge {bridge}")
        elif info:
            print(f"lab {name}: leaving interface {bridge} alone: not made by this lab")

        for path in st.get("inventories", []):
            if inventory.written_by_lab(Path(path), name):
                Path(path).unlink()
                done.append(f"deleted {path}")

        if directory.exists():
            mounts.remove_tree(directory)
            done.append(f"deleted {directory}")

        if not state.lab_names():
            restored = hostsysctl.restore()
            if restored:
                done.append("restored " + ", ".join(restored))
            cgroups.remove_root_if_empty()

    if done:
        print(f"lab {name} down in {watch.seconds():.1f} s: {', '.join(done)}")
    else:
        print(f"lab {name}: nothing to remove")
    return 0


def stop_under(directory: Path, machine_names) -> list[str]:
    """Stop every machine whose root lies under DIRECTORY (found in /proc, not
    trusted from state.json), remove the cgroups of MACHINE_NAMES and unmount
    everything under DIRECTORY. Used for a whole lab by `down` and for one
    machine's directory by `remove`; returns what was done, for the report."""
    done = []
    running = procs.nspawn_under(directory)
    if running:
        killed = procs.stop(running)
        done.append(f"stopped {len(running)} machine(s)"
                    + (f" ({len(killed)} killed after timeout)" if killed else ""))
    for machine in machine_names:
        cgroups.remove(machine)
    unmounted = mounts.unmount_all_under(directory)
    if unmounted:
        done.append(f"unmounted {len(unmounted)}")
    return done


def _machine_names(st: dict, name: str) -> set[str]:
    """nspawn machine names of the lab: from the state, and from cgroups left behind."""
    found = {m["machine"] for m in st.get("machines", []) if m.get("machine")}
    for path in cgroups.leftovers():
        if Path(path).name.startswith(f"{name}-"):
            found.add(Path(path).name)
    return found
