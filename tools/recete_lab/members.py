"""`tools/lab add` and `tools/lab remove`: machines joining and leaving a running lab.

An added machine is like one from the topology file (same image, the lab's
bridge, key and /etc/hosts) and is marked `"added": true` in state.json.
It takes the lowest address of the lab's /24 that no existing machine has.
Any machine can be removed, one from the topology as well; `tools/lab up`
brings topology machines back and keeps added ones. `down` removes both.

Every argument and the lab itself are checked before the first change. The
running machines' /etc/hosts are updated as machines come and go; both
commands rewrite every inventory the lab writes. Two `add`/`remove` runs on
the same lab wait for each other (a lock file in the lab's directory).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from . import machines, network, state
from .down import stop_under
from .mounts import remove_tree
from .names import RELEASES, VAR_NAME, check_group_name, check_host_name, check_lab_name
from .paths import lab_dir
from .up import _boot, ensure_images, preflight, write_inventories
from .util import LabError, Stopwatch, file_lock, require_program, require_root


# --- arguments and plans (pure) ------------------------------------------------

def parse_vars(items: list[str] | None) -> dict[str, str]:
    """Host vars from `--var key=value` arguments (values stay strings, as with `-e`)."""
    found: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not VAR_NAME.match(key):
            raise LabError(f"--var {item!r}: expected key=value with a variable name as key "
                           "(letters, digits, '_'; not starting with a digit)")
        if key in found:
            raise LabError(f"--var {key} given twice")
        found[key] = value
    return found


def parse_groups(items: list[str] | None) -> list[str]:
    """Groups from `--groups` arguments, each possibly comma-separated; in order, no repeats."""
    groups = [g.strip() for item in items or [] for g in item.split(",") if g.strip()]
    if not groups:
        raise LabError("give at least one inventory group with --groups (e.g. --groups api)")
    for group in groups:
        reason = check_group_name(group)
        if reason:
            raise LabError(reason)
    return list(dict.fromkeys(groups))


def default_release(st: dict) -> str:
    """The release most of the lab's machines run; on a tie the older one."""
    count = Counter(m["release"] for m in st["machines"])
    return max(count, key=lambda r: (count[r], -RELEASES.index(r)))


def check_lab(name: str, st: dict | None) -> dict:
    """ST if it is the state of a lab that is up, else the LabError saying what to do."""
    reason = check_lab_name(name)
    if reason:
        raise LabError(reason)
    if st is None:
        raise LabError(f"no lab named {name} (see tools/lab list; tools/lab up creates one)")
    if st.get("corrupt") or "subnet" not in st:
        raise LabError(f"lab {name} has an unreadable or incomplete state; "
                       f"run 'tools/lab down --name {name}' first")
    if st.get("status") != "up" or not st.get("machines"):
        raise LabError(f"lab {name} is not up (an interrupted up?); run '{_up_command(st)}' first")
    return st


def plan_add(st: dict, hosts: list[str], groups: list[str], host_vars: dict, release: str,
             image: str) -> list[dict]:
    """State records of the machines HOSTS would be when added to the lab of ST."""
    if not hosts:
        raise LabError("give the new machine's name with --machine")
    have = [m["name"] for m in st["machines"]]
    for host in hosts:
        reason = check_host_name(host)
        if reason:
            raise LabError(reason)
        if host in have:
            raise LabError(f"lab {st['name']} already has a machine {host}; "
                           "remove it first or choose another name")
    repeated = sorted(h for h, n in Counter(hosts).items() if n > 1)
    if repeated:
        raise LabError(f"--machine {', '.join(repeated)} given more than once")
    lab_groups = {g for m in st["machines"] for g in m["groups"]} | set(groups)
    clash = sorted(lab_groups & {*have, *hosts})
    if clash:
        raise LabError(f"{', '.join(clash)} would be both a group and a machine of lab "
                       f"{st['name']}; Ansible cannot tell them apart")
    addresses = network.free_addresses(st["subnet"], [m["address"] for m in st["machines"]],
                                       len(hosts))
    return [state.machine_entry(st["name"], host, groups, release, host_vars, address, image,
                                added=True) for host, address in zip(hosts, addresses)]


def pick_removed(st: dict, hosts: list[str]) -> list[dict]:
    """The machines of ST named HOSTS; unknown names and emptying the lab are refused."""
    if not hosts:
        raise LabError("give the machine to remove with --machine")
    by_name = {m["name"]: m for m in st["machines"]}
    unknown = [h for h in hosts if h not in by_name]
    if unknown:
        raise LabError(f"lab {st['name']} has no machine {', '.join(unknown)}; "
                       f"it has: {', '.join(by_name)}")
    chosen = [by_name[h] for h in dict.fromkeys(hosts)]
    if len(chosen) == len(by_name):
        raise LabError(f"that would remove every machine of lab {st['name']}; "
                       f"use 'tools/lab down --name {st['name']}' instead")
    return chosen


def _up_command(st: dict) -> str:
    return f"tools/lab up --name {st['name']} --topology {st.get('topology', 'TOPOLOGY')}"


def _describe(entries: list[dict]) -> str:
    return ", ".join(f"{m['name']} ({m['address']})" for m in entries)


# --- commands --------------------------------------------------------------------

def _lock(name: str):
    return file_lock(lab_dir(name) / ".members.lock")


def _running_lab(name: str) -> dict:
    st = check_lab(name, state.load(name))
    info = network.link_info(st["bridge"])
    if not info or network.bridge_owner(info) != name:
        raise LabError(f"lab {name} has lost its bridge {st['bridge']} (host rebooted?); "
                       f"run '{_up_command(st)}' first")
    return st


def add(name: str, hosts: list[str], group_args: list[str], var_args: list[str] | None,
        release: str | None) -> int:
    watch = Stopwatch()
    preflight()
    groups = parse_groups(group_args)
    host_vars = parse_vars(var_args)
    st = _running_lab(name)
    release = release or default_release(st)
    plan_add(st, hosts, groups, host_vars, release, "")  # every check before the image
    images = ensure_images({release}, st)
    with _lock(name):
        st = _running_lab(name)  # fresh: another add or remove may have run meanwhile
        new = plan_add(st, hosts, groups, host_vars, release, str(images[release]))
        st["machines"] += new
        state.save(st)  # from here on, `down` and `remove` know the new machines
        try:
            _boot(st, new)
        except LabError as err:
            names = " ".join(f"--machine {m['name']}" for m in new)
            raise LabError(f"{err}; 'tools/lab remove --name {name} {names}' undoes the add, "
                           f"'{_up_command(st)}' retries") from None
        state.save(st)
        _refresh_hosts(st, [m for m in st["machines"] if m not in new], set())
        print(f"inventory: {' and '.join(write_inventories(st))}")
    print(f"lab {name}: added {_describe(new)} in {watch.seconds():.1f} s", flush=True)
    return 0


def remove(name: str, hosts: list[str]) -> int:
    watch = Stopwatch()
    require_root()
    for prog, pkg in (("umount", "mount"), ("ip", "iproute2")):
        require_program(prog, f"apt-get install {pkg}")
    pick_removed(_running_lab(name), hosts)
    with _lock(name):
        st = _running_lab(name)
        gone = pick_removed(st, hosts)
        for m in gone:
            directory = Path(m["rootfs"]).parent
            done = stop_under(directory, [m["machine"]])
            if directory.exists():
                remove_tree(directory)
                done.append(f"deleted {directory}")
            Path(m["log"]).unlink(missing_ok=True)
            st["machines"] = [x for x in st["machines"] if x["name"] != m["name"]]
            state.save(st)  # one machine at a time: a failure leaves the rest listed
            print(f"{m['name']}: {', '.join(done) or 'nothing left to stop'}", flush=True)
        _refresh_hosts(st, st["machines"], {m["name"] for m in gone})
        print(f"inventory: {' and '.join(write_inventories(st))}")
    print(f"lab {name}: removed {_describe(gone)} in {watch.seconds():.1f} s", flush=True)
    return 0


def _refresh_hosts(st: dict, targets: list[dict], gone: set[str]) -> None:
    updated = machines.refresh_lab_hosts(st, targets, gone)
    print(f"/etc/hosts: updated on {updated} of {len(targets)} other machine(s)", flush=True)
