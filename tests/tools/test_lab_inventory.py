"""The Ansible inventory the lab writes."""
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from recete_lab import inventory  # noqa: E402

STATE = {
    "name": "t1",
    "machines": [
        {"name": "api1", "groups": ["api"], "release": "bookworm", "vars": {},
         "address": "10.213.0.10"},
        {"name": "pg1", "groups": ["postgres"], "release": "bookworm",
         "vars": {"postgresql_member_role": "primary"}, "address": "10.213.0.11"},
        {"name": "deb13", "groups": ["common", "api"], "release": "trixie", "vars": {},
         "address": "10.213.0.12"},
    ],
}
KEY = "/var/lib/recete-lab/t1/ssh/id_ed25519"


def test_connection_vars():
    data = inventory.build(STATE, KEY)["all"]["vars"]
    assert data == {
        "ansible_user": "ops",
        "ansible_ssh_private_key_file": KEY,
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
                                   " -o LogLevel=ERROR",
        "ansible_python_interpreter": "/usr/bin/python3",
        "recete_lab_name": "t1",
    }


def test_groups_from_topology_and_release():
    children = inventory.build(STATE, KEY)["all"]["children"]
    assert set(children) == {"api", "postgres", "common", "lab_bookworm", "lab_trixie"}
    assert list(children["api"]["hosts"]) == ["api1", "deb13"]
    assert list(children["lab_bookworm"]["hosts"]) == ["api1", "pg1"]
    assert list(children["lab_trixie"]["hosts"]) == ["deb13"]


def test_every_group_entry_carries_the_host_vars():
    children = inventory.build(STATE, KEY)["all"]["children"]
    assert children["postgres"]["hosts"]["pg1"] == {"ansible_host": "10.213.0.11",
                                                     "postgresql_member_role": "primary"}
    assert children["lab_bookworm"]["hosts"]["pg1"]["postgresql_member_role"] == "primary"
    assert children["common"]["hosts"]["deb13"] == {"ansible_host": "10.213.0.12"}


def test_rendered_yaml_round_trips_and_is_recognised(tmp_path):
    text = inventory.render(STATE, KEY)
    assert yaml.safe_load(text) == inventory.build(STATE, KEY)
    path = tmp_path / "inv.yml"
    inventory.write(path, text)
    assert inventory.written_by_lab(path, "t1")
    assert not inventory.written_by_lab(path, "t2")
    other = tmp_path / "mine.yml"
    other.write_text("all: {}\n")
    assert not inventory.written_by_lab(other, "t1")
