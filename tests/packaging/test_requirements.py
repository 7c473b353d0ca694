"""requirements.yml lists every collection we call, agrees with galaxy.yml, and
is met by the collections the `ansible` package installed (what the tests ran)."""
import json
import re
from pathlib import Path

import ansible_collections
import pytest
import yaml
from ansible.galaxy.dependency_resolution.versioning import meets_requirements

REPO = Path(__file__).resolve().parents[2]
OURS_OR_CORE = {"ansible.builtin", "recete.stack"}
# A task's module key, or a filter/test/lookup after `|`, `is` or `lookup(`.
FQCN = re.compile(r"(?:^\s*-?\s*|\|\s*|\bis\s+|lookup\(\s*['\"])([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+\b", re.M)


def _requirements():
    data = yaml.safe_load((REPO / "requirements.yml").read_text())
    return {c["name"]: c["version"] for c in data["collections"]}


def _used_collections():
    used = set()
    for top in ("roles", "playbooks"):
        for path in (REPO / top).rglob("*.yml"):
            used.update(FQCN.findall(path.read_text()))
    # net.core.somaxconn and the like are sysctl keys, not collections.
    return {c for c in used - OURS_OR_CORE if c.split(".")[0] in ("ansible", "community")}


def test_every_collection_used_is_required():
    missing = _used_collections() - set(_requirements())
    assert not missing, f"add to requirements.yml and galaxy.yml dependencies: {sorted(missing)}"


def test_requirements_match_galaxy_dependencies():
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert _requirements() == galaxy["dependencies"]


@pytest.mark.parametrize("name", sorted(_requirements()))
def test_installed_collection_meets_the_range(name):
    """The installed `ansible` package ships a version inside our range."""
    namespace, coll = name.split(".")
    roots = [Path(p) for p in ansible_collections.__path__]
    manifests = [r / namespace / coll / "MANIFEST.json" for r in roots if (r / namespace / coll / "MANIFEST.json").is_file()]
    assert manifests, f"{name} is not installed (tools/setup installs the ansible package)"
    version = json.loads(manifests[0].read_text())["collection_info"]["version"]
    assert meets_requirements(version, _requirements()[name]), f"{name} {version} is outside {_requirements()[name]}"
