"""Playbooks driven on the controller only: inventories whose hosts are in
TEST-NET-1 (192.0.2.0/24, RFC 5737), never contacted."""
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TEST_NET_INVENTORY = {
    "all": {
        "vars": {"ansible_user": "nobody"},
        "children": {
            "lb": {"hosts": {"lb1": {"ansible_host": "192.0.2.10"}}},
            "api": {"hosts": {"api1": {"ansible_host": "192.0.2.11"}, "api2": {"ansible_host": "192.0.2.12"}}},
            "worker": {"hosts": {"worker1": {"ansible_host": "192.0.2.21"}}},
        },
    }
}


@pytest.fixture
def private_data_dir(tmp_path):
    """ansible-runner's layout: inventory/ and env/ here, the project is the checkout."""
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text(yaml.safe_dump(TEST_NET_INVENTORY))
    return tmp_path
