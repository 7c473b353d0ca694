"""The lab's Ansible inventory (YAML).

Every host appears in its topology groups and in lab_<release>, each time
with its full host vars, so a reader of any single group (Molecule's create
playbook does this) finds ansible_host there.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"


def header(lab: str) -> str:
    return (f"# Ansible inventory of lab {lab}, written by tools/lab up; "
            "tools/lab down removes it.\n")


def build(state: dict, key_file: str) -> dict:
    """Inventory data for the lab described by STATE (pure)."""
    children: dict[str, dict] = {}
    for m in state["machines"]:
        host_vars = {"ansible_host": m["address"], **m.get("vars", {})}
        for group in [*m["groups"], f"lab_{m['release']}"]:
            children.setdefault(group, {"hosts": {}})["hosts"][m["name"]] = dict(host_vars)
    return {"all": {
        "vars": {
            "ansible_user": "ops",
            "ansible_ssh_private_key_file": key_file,
            "ansible_ssh_common_args": SSH_COMMON_ARGS,
            "ansible_python_interpreter": "/usr/bin/python3",
            "recete_lab_name": state["name"],
        },
        "children": children,
    }}


def render(state: dict, key_file: str) -> str:
    return header(state["name"]) + yaml.safe_dump(build(state, key_file), sort_keys=False,
                                                  default_flow_style=False)


def write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def written_by_lab(path: Path, lab: str) -> bool:
    """True if PATH is an inventory this tool wrote for LAB (safe to delete on down)."""
    try:
        with open(path) as f:
            return f.readline() == header(lab)
    except OSError:
        return False
