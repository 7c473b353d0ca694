"""Topology files: the shipped ones load, and each kind of mistake is named."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from recete_lab import topology  # noqa: E402
from recete_lab.util import LabError  # noqa: E402

HERE = Path("/x/t.yml")


def parse(data):
    return topology.parse(data, name="t", path=HERE)


def test_default_topology_has_the_whole_stack():
    topo = topology.load("default")
    names = [m.name for m in topo.machines]
    assert names == ["lb1", "lb2", "api1", "api2", "worker1", "worker2", "redis1", "redis2",
                     "redis3", "pg1", "pg2", "pg3", "pgbouncer1", "pgbouncer2", "mon1"]
    by_name = {m.name: m for m in topo.machines}
    assert by_name["mon1"].groups == ("monitoring", "backup")
    assert by_name["redis2"].groups == ("redis", "sentinel")
    assert by_name["pg1"].vars == {"postgresql_member_role": "primary"}
    assert by_name["pg2"].vars == {"postgresql_member_role": "replica"}
    assert topo.releases == ["bookworm"]


def test_common_topology_covers_both_releases():
    topo = topology.load("common")
    assert {m.name: m.release for m in topo.machines} == {"deb12": "bookworm", "deb13": "trixie"}
    assert all(m.groups == ("common",) for m in topo.machines)


def test_machine_release_defaults_to_topology_release():
    topo = parse({"release": "trixie", "machines": [{"name": "a1"}]})
    assert topo.machines[0].release == "trixie"
    assert topo.machines[0].groups == ()


@pytest.mark.parametrize("data, message", [
    ({"machines": [{"name": "a1"}], "extra": 1}, "unknown key(s) extra"),
    ({"machines": []}, "non-empty list"),
    ({"release": "buster", "machines": [{"name": "a1"}]}, "release 'buster'"),
    ({"machines": [{"name": "a1"}, {"name": "a1"}]}, "duplicate machine name 'a1'"),
    ({"machines": [{"name": "Api1"}]}, "invalid machine name 'Api1'"),
    ({"machines": [{"name": "abcdefghijklm"}]}, "invalid machine name"),
    ({"machines": [{"name": "a1", "group": ["x"]}]}, "machines[0] (a1): unknown key(s) group"),
    ({"machines": [{"name": "a1", "groups": "api"}]}, "groups must be a list"),
    ({"machines": [{"name": "a1", "groups": ["all"]}]}, "invalid group name 'all'"),
    ({"machines": [{"name": "a1", "groups": ["lab_x"]}]}, "invalid group name 'lab_x'"),
    ({"machines": [{"name": "a1", "groups": ["a1"]}]}, "have the name of a machine"),
    ({"machines": [{"name": "a1", "release": "sid"}]}, "release 'sid'"),
    ({"machines": [{"name": "a1", "vars": ["x"]}]}, "vars must be a mapping"),
    (["a1"], "expected a mapping"),
])
def test_invalid_topologies_say_what_and_where(data, message):
    with pytest.raises(LabError) as err:
        parse(data)
    assert message in str(err.value)
    assert str(HERE) in str(err.value)


def test_too_many_machines():
    data = {"machines": [{"name": f"m{i}"} for i in range(topology.MAX_MACHINES + 1)]}
    with pytest.raises(LabError, match="at most 245"):
        parse(data)


def test_unknown_topology_lists_available(tmp_path):
    (tmp_path / "one.yml").write_text("machines: [{name: a1}]\n")
    (tmp_path / "two.yml").write_text("machines: [{name: a1}]\n")
    with pytest.raises(LabError, match="available: one, two"):
        topology.load("three", topology_dir=tmp_path)


def test_duplicate_yaml_keys_are_rejected(tmp_path):
    path = tmp_path / "dup.yml"
    path.write_text("release: bookworm\nrelease: trixie\nmachines: [{name: a1}]\n")
    with pytest.raises(LabError, match="duplicate key 'release'"):
        topology.load(str(path), topology_dir=tmp_path)


def test_path_topology_is_named_by_path(tmp_path):
    path = tmp_path / "mine.yml"
    path.write_text("machines: [{name: a1, groups: [g]}]\n")
    topo = topology.load(str(path), topology_dir=tmp_path / "elsewhere")
    assert topo.name == str(path)


def test_digest_changes_with_the_machines():
    a = parse({"machines": [{"name": "a1", "groups": ["g"]}]})
    b = parse({"machines": [{"name": "a1", "groups": ["h"]}]})
    c = parse({"description": "same machines", "machines": [{"name": "a1", "groups": ["g"]}]})
    assert a.digest != b.digest
    assert a.digest == c.digest
