"""Topology files (lab/topologies/*.yml): which machines a lab has.

    description: free text
    release: bookworm            # default image of the machines
    machines:
      - name: api1               # ^[a-z][a-z0-9]{0,11}$
        groups: [api]
        release: trixie          # optional, overrides the default
        vars: {key: value}       # optional host vars for the inventory

Validation is strict (unknown keys, duplicate keys or names, bad names) and
every message says which file and which machine is wrong.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .names import RELEASES, check_group_name, check_host_name
from .paths import TOPOLOGY_DIR
from .util import LabError

TOP_KEYS = {"description", "release", "machines"}
MACHINE_KEYS = {"name", "groups", "release", "vars"}
# Addresses .10 to .254 of the lab's /24.
MAX_MACHINES = 245


@dataclass(frozen=True)
class Machine:
    name: str
    groups: tuple[str, ...]
    release: str
    vars: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Topology:
    name: str          # what the user typed, or the file's stem
    path: Path
    description: str
    release: str
    machines: tuple[Machine, ...]

    @property
    def releases(self) -> list[str]:
        return sorted({m.release for m in self.machines})

    @property
    def digest(self) -> str:
        """Hash of the machines' definition: tells whether a running lab matches."""
        data = [[m.name, list(m.groups), m.release, m.vars] for m in self.machines]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys instead of keeping the last."""


def _no_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def available(topology_dir: Path = TOPOLOGY_DIR) -> list[str]:
    return sorted(p.stem for p in topology_dir.glob("*.yml"))


def resolve(name_or_path: str, topology_dir: Path = TOPOLOGY_DIR) -> Path:
    """A bare name means lab/topologies/NAME.yml; anything with a '/' or .yml is a path."""
    if "/" in name_or_path or name_or_path.endswith((".yml", ".yaml")):
        path = Path(name_or_path).expanduser().resolve()
        if not path.is_file():
            raise LabError(f"topology file {name_or_path} not found")
        return path
    path = topology_dir / f"{name_or_path}.yml"
    if not path.is_file():
        names = ", ".join(available(topology_dir)) or "(none)"
        raise LabError(f"unknown topology {name_or_path!r}; available: {names} "
                       f"(in {topology_dir}), or give a path to a .yml file")
    return path


def load(name_or_path: str, topology_dir: Path = TOPOLOGY_DIR) -> Topology:
    path = resolve(name_or_path, topology_dir)
    try:
        data = yaml.load(path.read_text(), Loader=_StrictLoader)
    except yaml.YAMLError as err:
        raise LabError(f"{path}: invalid YAML: {' '.join(str(err).split())}") from None
    name = path.stem if path.parent == topology_dir.resolve() else str(path)
    return parse(data, name=name, path=path)


def parse(data, name: str, path: Path) -> Topology:
    """Validate the loaded YAML DATA of a topology file; raise LabError naming the problem."""
    where = str(path)
    if not isinstance(data, dict):
        raise LabError(f"{where}: expected a mapping with 'machines:', got {type(data).__name__}")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise LabError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                       f"(allowed: {', '.join(sorted(TOP_KEYS))})")
    release = data.get("release", "bookworm")
    _check_release(release, where)
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise LabError(f"{where}: description must be text")
    raw = data.get("machines")
    if not isinstance(raw, list) or not raw:
        raise LabError(f"{where}: 'machines' must be a non-empty list")
    if len(raw) > MAX_MACHINES:
        raise LabError(f"{where}: {len(raw)} machines; at most {MAX_MACHINES} fit in the lab's /24")
    machines = []
    seen = set()
    for index, item in enumerate(raw):
        machine = _parse_machine(item, f"{where}: machines[{index}]", release)
        if machine.name in seen:
            raise LabError(f"{where}: machines[{index}]: duplicate machine name {machine.name!r}")
        seen.add(machine.name)
        machines.append(machine)
    clash = sorted({g for m in machines for g in m.groups} & seen)
    if clash:
        raise LabError(f"{where}: group(s) {', '.join(clash)} have the name of a machine; "
                       "Ansible cannot tell them apart")
    return Topology(name, path, description, release, tuple(machines))


def _check_release(release, where: str) -> None:
    if release not in RELEASES:
        raise LabError(f"{where}: release {release!r} is not one of {', '.join(RELEASES)}")


def _parse_machine(item, where: str, default_release: str) -> Machine:
    if not isinstance(item, dict):
        raise LabError(f"{where}: expected a mapping like {{name: api1, groups: [api]}}")
    name = item.get("name")
    if isinstance(name, str):
        where = f"{where} ({name})"
    unknown = set(item) - MACHINE_KEYS
    if unknown:
        raise LabError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                       f"(allowed: {', '.join(sorted(MACHINE_KEYS))})")
    reason = check_host_name(name)
    if reason:
        raise LabError(f"{where}: {reason}")
    groups = item.get("groups", [])
    if not isinstance(groups, list):
        raise LabError(f"{where}: groups must be a list")
    for group in groups:
        reason = check_group_name(group)
        if reason:
            raise LabError(f"{where}: {reason}")
    release = item.get("release", default_release)
    _check_release(release, where)
    host_vars = item.get("vars", {}) or {}
    if not isinstance(host_vars, dict) or not all(isinstance(k, str) for k in host_vars):
        raise LabError(f"{where}: vars must be a mapping of names to values")
    return Machine(name, tuple(dict.fromkeys(groups)), release, dict(host_vars))
