"""The host firewall's rules derived from the inventory, and the settings refused on the controller."""
import pytest

from ansible_collections.recete.stack.plugins.module_utils._firewall import host_rules, nft_statements, settings_problems

GROUPS = {"all": ["lb1", "api1", "redis1", "pg1"], "lb": ["lb1"], "api": ["api1"], "redis": ["redis1"],
          "postgres": ["pg1"], "backup": []}
ADDRESSES = {"lb1": "10.0.0.10", "api1": "10.0.0.12", "redis1": "10.0.0.16", "pg1": "10.0.0.19"}
SERVICES = [
    {"name": "redis", "on_groups": ["redis"], "ports": [6379], "from_groups": ["api", "redis", "backup"]},
    {"name": "api", "on_groups": ["api"], "ports": ["3000-3063"], "from_groups": ["lb"]},
    {"name": "vrrp", "on_groups": ["lb"], "proto": "vrrp", "from_groups": ["lb"]},
    {"name": "https", "on_groups": ["lb"], "ports": [443], "from_networks": ["0.0.0.0/0", "::/0"]},
    {"name": "ssh", "on_groups": ["all"], "ports": [22], "from_networks": ["192.0.2.0/24", "2001:db8::/32"]},
    {"name": "trusted", "on_groups": ["all"], "proto": "any", "from_networks": ["198.51.100.7"]},
]


def test_a_host_gets_only_the_services_it_runs_from_their_sources():
    rules = nft_statements(SERVICES, "redis1", GROUPS, ADDRESSES)
    assert rules == [
        'ip saddr { 10.0.0.12, 10.0.0.16 } tcp dport { 6379 } accept comment "redis"',
        'ip saddr { 192.0.2.0/24 } tcp dport { 22 } accept comment "ssh"',
        'ip6 saddr { 2001:db8::/32 } tcp dport { 22 } accept comment "ssh"',
        'ip saddr { 198.51.100.7 } accept comment "trusted"',
    ]


def test_the_load_balancer_admits_everyone_on_https_and_its_peers_on_vrrp():
    rules = nft_statements(SERVICES, "lb1", GROUPS, ADDRESSES)
    assert 'ip saddr { 10.0.0.10 } meta l4proto 112 accept comment "vrrp"' in rules
    assert 'meta nfproto ipv4 tcp dport { 443 } accept comment "https"' in rules
    assert 'meta nfproto ipv6 tcp dport { 443 } accept comment "https"' in rules
    assert not any("6379" in r or "3000" in r for r in rules)


def test_a_service_nobody_may_reach_gets_no_rule():
    only_backup = [{"name": "redis", "on_groups": ["redis"], "ports": [6379], "from_groups": ["backup"]}]
    assert host_rules(only_backup, "redis1", GROUPS, ADDRESSES) == []


def test_the_rules_do_not_depend_on_inventory_order():
    shuffled = dict(GROUPS, redis=["redis1"], api=["api1"], all=list(reversed(GROUPS["all"])))
    swapped = [dict(SERVICES[0], from_groups=["backup", "redis", "api"])] + SERVICES[1:]
    assert nft_statements(swapped, "redis1", shuffled, ADDRESSES) == nft_statements(SERVICES, "redis1", GROUPS, ADDRESSES)


@pytest.mark.parametrize("service,message", [
    ({"name": "x", "on_groups": ["redis"], "ports": [70000], "from_groups": ["api"]}, "outside 1-65535"),
    ({"name": "x", "on_groups": ["redis"], "ports": ["9-3"], "from_groups": ["api"]}, "outside 1-65535"),
    ({"name": "x", "on_groups": ["redis"], "ports": ["abc"], "from_groups": ["api"]}, "not a number or range"),
    ({"name": "x", "on_groups": ["redis"], "ports": [], "from_groups": ["api"]}, "no ports"),
    ({"name": "x", "on_groups": ["redis"], "proto": "sctp", "ports": [1], "from_groups": ["api"]}, "proto must be"),
])
def test_a_bad_service_is_refused_by_name(service, message):
    with pytest.raises(ValueError, match=message):
        host_rules([service], "redis1", GROUPS, ADDRESSES)


def test_a_source_host_without_an_address_is_refused_rather_than_left_out():
    with pytest.raises(ValueError, match="host api1 .group api. has no known address"):
        host_rules(SERVICES[:1], "redis1", GROUPS, dict(ADDRESSES, api1=None))


def test_good_settings_pass():
    assert settings_problems({"firewall_ssh_networks": ["192.0.2.0/24", "2001:db8::1"],
                              "firewall_trusted_networks": [], "firewall_lb_client_networks": ["0.0.0.0/0"],
                              "firewall_instance_port_span": 64, "firewall_extra_services": [SERVICES[0]]}) == []


@pytest.mark.parametrize("settings,message", [
    ({"firewall_ssh_networks": ["192.0.2.0/33"]}, "firewall_ssh_networks: '192.0.2.0/33' is not an IP network"),
    ({"firewall_trusted_networks": "10.0.0.0/8"}, "firewall_trusted_networks must be a list"),
    ({"firewall_lb_client_networks": ["any"]}, "firewall_lb_client_networks: 'any' is not an IP network"),
    ({"firewall_instance_port_span": 0}, "firewall_instance_port_span must be a number from 1 to 1024"),
    ({"firewall_instance_port_span": "lots"}, "firewall_instance_port_span must be a number from 1 to 1024"),
    ({"firewall_extra_services": [{"name": "x", "ports": [1]}]}, "needs a name and on_groups"),
    ({"firewall_extra_services": [{"name": "x", "on_groups": ["a"], "proto": "gre"}]}, "x: proto must be one of"),
    ({"firewall_extra_services": [{"name": "x", "on_groups": ["a"], "ports": [0]}]}, "x: port 0 is outside"),
    ({"firewall_extra_services": [{"name": "x", "on_groups": ["a"], "ports": [1], "from_networks": ["10.1"]}]},
     "x: '10.1' is not an IP network"),
])
def test_bad_settings_are_refused_with_what_to_fix(settings, message):
    problems = settings_problems(settings)
    assert any(message in p for p in problems), problems
