"""`tools/lab up`: image, network, machines, inventory, in that order.

Everything is checked before the first change. The state file is written
before the bridge, mounts or machines exist, so `down` can always undo a
half-finished `up`. On a lab that already runs, `up` only restarts machines
that died, re-creates topology machines taken out with `tools/lab remove`,
keeps machines added with `tools/lab add`, and rewrites the inventories.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from . import hostsysctl, image, inventory, machines, network, procs, state, topology
from .names import bridge_name, check_lab_name
from .paths import lab_dir
from .util import LabError, Stopwatch, require_program, require_root, run


def preflight() -> None:
    """Host checks of `up`, before anything changes."""
    require_root()
    require_program("systemd-nspawn", "apt-get install systemd-container")
    require_program("iptables", "apt-get install iptables")
    for prog, pkg in (("ip", "iproute2"), ("mount", "mount"), ("ssh", "openssh-client"),
                      ("ssh-keygen", "openssh-client")):
        require_program(prog, f"apt-get install {pkg}")


def up(name: str, topology_arg: str, extra_inventory: str | None) -> int:
    total = Stopwatch()
    preflight()
    reason = check_lab_name(name)
    if reason:
        raise LabError(reason)
    topo = topology.load(topology_arg)
    inv_path = _check_inventory_path(extra_inventory, name)
    existing = state.load(name)
    _check_existing(name, topo, existing)
    network.check_bridge_free(existing["bridge"] if existing else bridge_name(name), name)
    # Machines added with --release may use a release the topology does not.
    in_lab = {m["release"] for m in (existing or {}).get("machines", [])}
    images = ensure_images({*topo.releases, *in_lab}, existing)
    if existing:
        st = _reconcile(existing, images, topo)
    else:
        st = _create(name, topo, images)
    print(f"inventory: {' and '.join(write_inventories(st, inv_path))}")
    print(f"lab {name} up in {total.seconds():.1f} s", flush=True)
    return 0


def ensure_images(releases, existing: dict | None) -> dict[str, Path]:
    """The image of each of RELEASES, by release: the one the lab's machines use,
    else the cached one, built if missing. Prints one line per release."""
    images = _images_in_use(existing)
    needed = [r for r in releases if r not in images]
    if any(not image.cached(r) for r in needed):
        require_program("mmdebstrap", "apt-get install mmdebstrap")
    for release in sorted(releases):
        if release in images:
            print(f"image {release}: cached ({images[release].name.split('-', 1)[1]})")
        else:
            images[release], report = image.ensure(release)
            print(report, flush=True)
    return images


def _images_in_use(existing: dict | None) -> dict[str, Path]:
    """Images a running lab's machines were made from, by release.

    An existing lab keeps its images even if the recipe changed since: its
    machines' upper layers belong to them. Only a release whose image is gone
    is built (again) for it.
    """
    found = {}
    for m in (existing or {}).get("machines", []):
        if Path(m["image"]).is_dir():
            found.setdefault(m["release"], Path(m["image"]))
    return found


def _check_inventory_path(path: str | None, name: str) -> Path | None:
    if not path:
        return None
    p = Path(path).expanduser().resolve()
    if not p.parent.is_dir():
        raise LabError(f"--inventory {path}: directory {p.parent} does not exist")
    if p.is_dir():
        raise LabError(f"--inventory {path} is a directory; give a file name")
    if p.exists() and not inventory.written_by_lab(p, name):
        # Someone else's file: never overwrite it silently.
        raise LabError(f"--inventory {path} exists and was not written by tools/lab for "
                       f"lab {name}; remove it or choose another path")
    return p


def _check_existing(name: str, topo, existing: dict | None) -> None:
    if existing is None:
        if lab_dir(name).exists():
            raise LabError(f"lab {name} has a directory but no state (an interrupted up?); "
                           f"run 'tools/lab down --name {name}' first")
        return
    if existing.get("corrupt") or "topology_path" not in existing:
        raise LabError(f"lab {name} has an unreadable state file; "
                       f"run 'tools/lab down --name {name}' first")
    if existing["topology_path"] != str(topo.path):
        raise LabError(f"lab {name} already exists with topology {existing['topology']}; "
                       f"run 'tools/lab down --name {name}' first or choose another --name")
    if existing["topology_digest"] != topo.digest:
        raise LabError(f"lab {name} was made from an older version of topology "
                       f"{existing['topology']}; run 'tools/lab down --name {name}' first")


def _create(name: str, topo, images: dict) -> dict:
    with state.global_lock():
        if state.load(name) is not None:  # another `up` of the same name won the race
            raise LabError(f"lab {name} was created meanwhile by another tools/lab up")
        taken = [s["subnet"] for s in state.all_states() if s.get("subnet")]
        subnet = str(network.pick_subnet(taken, network.host_routes()))
        st = {
            "name": name, "topology": topo.name, "topology_path": str(topo.path),
            "topology_digest": topo.digest, "subnet": subnet, "bridge": bridge_name(name),
            "gateway": network.gateway(subnet), "status": "creating",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "inventories": [],
            "machines": [
                state.machine_entry(name, m.name, m.groups, m.release, m.vars,
                                    network.machine_address(subnet, i), str(images[m.release]))
                for i, m in enumerate(topo.machines)],
        }
        state.save(st)  # from here on, `down` knows what to undo
        _make_key(name)
        _network(st)
    _boot(st, st["machines"])
    st["status"] = "up"
    state.save(st)
    return st


def _reconcile(st: dict, images: dict, topo) -> dict:
    """Lab exists: restart machines that are not running, leave the others alone.

    Machines added with `tools/lab add` are part of the lab like the others;
    topology machines taken out with `tools/lab remove` come back, each on
    the lowest free address.
    """
    dead = [m for m in st["machines"] if not procs.is_machine(m.get("pid"), m["rootfs"])]
    missing = [m for m in topo.machines if m.name not in {x["name"] for x in st["machines"]}]
    # A machine found by /proc scan (pid lost in a crash) counts as running.
    running = procs.nspawn_under(lab_dir(st["name"]))
    for m in list(dead):
        pid = next((p for p, root in running.items() if root == m["rootfs"]), None)
        if pid:
            m["pid"] = pid
            dead.remove(m)
    with state.global_lock():
        if not state.key_path(st["name"]).exists():
            _make_key(st["name"])
        _network(st)  # idempotent: puts back a bridge or rule that went missing
    for m in dead:
        if not Path(m["image"]).is_dir():  # its image is gone: the current one will do
            m["image"] = str(images[m["release"]])
    addresses = network.free_addresses(st["subnet"], [m["address"] for m in st["machines"]],
                                       len(missing))
    back = [state.machine_entry(st["name"], m.name, m.groups, m.release, m.vars, address,
                                str(images[m.release])) for m, address in zip(missing, addresses)]
    others = [m for m in st["machines"] if m not in dead]  # running, booted before
    st["machines"] += back
    if dead or back:
        state.save(st)  # before booting: `down` must know the re-created machines
        _boot(st, dead + back)
    if back:  # restarted machines got the whole list already
        updated = machines.refresh_lab_hosts(st, others)
        print(f"/etc/hosts: updated on {updated} of {len(others)} other machine(s)", flush=True)
    if st.get("status") != "up":
        # The `up` that created the lab was interrupted: the machines it left
        # running may still be booting, so wait for them as well.
        machines.wait_ready(others, str(state.key_path(st["name"])), time.monotonic())
    st["status"] = "up"
    state.save(st)
    print(f"machines running: {len(st['machines'])} ({len(dead)} restarted"
          + (f", re-created: {', '.join(m['name'] for m in back)}" if back else "") + ")",
          flush=True)
    return st


def _make_key(name: str) -> None:
    key = state.key_path(name)
    key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"recete-lab:{name}",
             "-f", str(key)])
    os.chmod(key, 0o600)


def _network(st: dict) -> None:
    network.ensure_bridge(st["bridge"], st["name"], st["subnet"])
    network.add_nat(st["name"], st["subnet"], st["bridge"])
    hostsysctl.apply()


def _boot(st: dict, to_boot: list[dict]) -> None:
    """Prepare and start TO_BOOT, then wait until each answers ssh; prints timings."""
    dns = machines.host_nameservers(Path("/etc/resolv.conf").read_text())
    if not dns and Path("/run/systemd/resolve/resolv.conf").exists():
        # The host uses a local stub (127.0.0.53): give machines its upstream servers.
        dns = machines.host_nameservers(Path("/run/systemd/resolve/resolv.conf").read_text())
    hosts = [(m["name"], m["address"]) for m in st["machines"]]
    public_key = state.key_path(st["name"]).with_suffix(".pub").read_text()
    start = time.monotonic()
    for m in to_boot:
        machines.prepare(m, m["image"], st["gateway"], st["subnet"], dns, hosts, public_key)
        m["pid"] = machines.launch(m, st["bridge"])
        state.save(st)  # record each PID as soon as it exists
    booted, ready = machines.wait_ready(to_boot, str(state.key_path(st["name"])), start)
    print(f"machines booted: {len(to_boot)} in {booted:.1f} s", flush=True)
    print(f"ssh ready: {len(to_boot)} in {ready:.1f} s", flush=True)


def write_inventories(st: dict, extra: Path | None = None) -> list[str]:
    """Write the lab's inventory, EXTRA (recorded for `down`) and every extra
    inventory recorded before; returns the paths written.

    A recorded file that someone replaced with their own is left alone.
    """
    name = st["name"]
    text = inventory.render(st, str(state.key_path(name)))
    inventory.write(state.inventory_path(name), text)
    written = [str(state.inventory_path(name))]
    if extra and str(extra) not in st["inventories"]:
        st["inventories"].append(str(extra))
        state.save(st)
    for path in map(Path, st["inventories"]):
        if path == extra or inventory.written_by_lab(path, name) \
                or (not path.exists() and path.parent.is_dir()):
            inventory.write(path, text)
            written.append(str(path))
        else:
            print(f"inventory {path}: left alone (no longer written by tools/lab for lab {name})")
    return written
