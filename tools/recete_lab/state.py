"""Lab state: /var/lib/recete-lab/<name>/state.json and the files beside it.

state.json is written before the first change on the host and updated as
`up` goes, so `down` can undo a half-created lab. Layout of a lab directory:

    state.json             topology, subnet, bridge, machines (pid, address, paths;
                           "added": true on those `tools/lab add` put in)
    ssh/id_ed25519         the lab's login key (0600)
    inventory.yml          Ansible inventory
    machines/<host>/{upper,work,rootfs}   overlay layers and mount point
    logs/<host>.log        console output of the machine
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .names import LAB_NAME, machine_name
from .paths import lab_dir, state_root
from .util import file_lock


def global_lock():
    """Serialises changes to the set of labs (subnets, bridges, ip_forward)."""
    return file_lock(state_root() / ".lock")


def state_file(name: str) -> Path:
    return lab_dir(name) / "state.json"


def load(name: str) -> dict | None:
    """The lab's state, None if it has none; a corrupt file gives a minimal state."""
    path = state_file(name)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        # Crash while writing: keep what the name tells us so down still works.
        return {"name": name, "corrupt": True, "machines": []}


def save(state: dict) -> None:
    path = state_file(state["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)  # atomic: never a half-written state.json


def lab_names() -> list[str]:
    """Names of every lab with a directory under the state root."""
    root = state_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and LAB_NAME.match(p.name))


def all_states() -> list[dict]:
    return [s for s in (load(n) for n in lab_names()) if s is not None]


def machine_paths(name: str, host: str) -> dict[str, str]:
    base = lab_dir(name)
    m = base / "machines" / host
    return {"upper": str(m / "upper"), "work": str(m / "work"),
            "rootfs": str(m / "rootfs"), "log": str(base / "logs" / f"{host}.log")}


def machine_entry(name: str, host: str, groups, release: str, host_vars: dict, address: str,
                  image: str, added: bool = False) -> dict:
    """The state record of machine HOST of lab NAME (not yet booted: no PID).

    ADDED marks a machine that `tools/lab add` put in the lab beside its topology.
    """
    entry = {"name": host, "groups": list(groups), "release": release, "vars": dict(host_vars),
             "address": address, "image": image, "machine": machine_name(name, host), "pid": None,
             **machine_paths(name, host)}
    if added:
        entry["added"] = True
    return entry


def key_path(name: str) -> Path:
    return lab_dir(name) / "ssh" / "id_ed25519"


def inventory_path(name: str) -> Path:
    return lab_dir(name) / "inventory.yml"


def images_in_use() -> set[str]:
    """Images referenced by any lab, running or not (a dead machine can be restarted)."""
    return {m["image"] for s in all_states() for m in s.get("machines", []) if m.get("image")}
