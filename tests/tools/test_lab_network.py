"""Subnet choice and iptables rule bookkeeping of the lab's network."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from recete_lab import network  # noqa: E402
from recete_lab.util import LabError  # noqa: E402


def test_first_subnet_when_nothing_is_used():
    assert str(network.pick_subnet([], ["192.0.2.0/24"])) == "10.213.0.0/24"


def test_skips_subnets_of_other_labs():
    taken = ["10.213.0.0/24", "10.213.1.0/24", "10.213.3.0/24"]
    assert str(network.pick_subnet(taken, [])) == "10.213.2.0/24"


def test_skips_subnets_overlapping_host_routes():
    # A wider host route (a VPN's 10.213.0.0/23) blocks both /24s inside it.
    assert str(network.pick_subnet([], ["10.213.0.0/23"])) == "10.213.2.0/24"
    assert str(network.pick_subnet([], ["10.213.0.7/32"])) == "10.213.1.0/24"


def test_a_route_covering_the_whole_pool_leaves_nothing():
    with pytest.raises(LabError, match="no free /24"):
        network.pick_subnet([], ["10.0.0.0/8"])


def test_route_destinations_from_ip_json():
    routes = json.dumps([{"dst": "default", "gateway": "192.0.2.1"},
                         {"dst": "192.0.2.0/24", "dev": "eth0"},
                         {"dst": "10.213.4.1", "type": "local"}])
    assert network.route_destinations(routes) == ["192.0.2.0/24", "10.213.4.1/32"]


def test_addresses():
    assert network.gateway("10.213.5.0/24") == "10.213.5.1"
    assert network.machine_address("10.213.5.0/24", 0) == "10.213.5.10"
    assert network.machine_address("10.213.5.0/24", 244) == "10.213.5.254"
    with pytest.raises(LabError):
        network.machine_address("10.213.5.0/24", 245)


def test_nat_rules_carry_the_lab_comment():
    rules = network.nat_rules("t1", "10.213.0.0/24", "rlab-t1")
    assert [(t, c) for t, c, _ in rules] == [("nat", "POSTROUTING"), ("filter", "FORWARD"),
                                              ("filter", "FORWARD")]
    for _, _, spec in rules:
        assert spec[spec.index("--comment") + 1] == "recete-lab:t1"
    assert rules[0][2][:5] == ["-s", "10.213.0.0/24", "!", "-o", "rlab-t1"]


IPTABLES_S = """-P POSTROUTING ACCEPT
-A POSTROUTING -s 10.213.0.0/24 ! -o rlab-t1 -m comment --comment "recete-lab:t1" -j MASQUERADE
-A POSTROUTING -s 10.213.1.0/24 ! -o rlab-t10 -m comment --comment "recete-lab:t10" -j MASQUERADE
-A POSTROUTING -s 172.17.0.0/16 -m comment --comment "docker" -j MASQUERADE
-A POSTROUTING -o eth0 -j MASQUERADE
"""


def test_tagged_rules_match_the_exact_lab():
    rules = network.tagged_rules(IPTABLES_S, "t1")
    assert len(rules) == 1
    assert rules[0][:3] == ["-A", "POSTROUTING", "-s"]
    assert "rlab-t1" in rules[0]


def test_tagged_rules_of_any_lab():
    assert len(network.tagged_rules(IPTABLES_S)) == 2
    assert network.tagged_rules(IPTABLES_S, "t2") == []


def test_bridge_owner_from_alias():
    assert network.bridge_owner({"ifname": "rlab-t1", "ifalias": "recete-lab:t1"}) == "t1"
    assert network.bridge_owner({"ifname": "rlab-t1"}) is None
    assert network.bridge_owner({"ifname": "br0", "ifalias": "uplink"}) is None
