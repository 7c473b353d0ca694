"""The host facts recete.stack.app_instances returns with its report (module_utils/_app_instances.py)."""
from ansible_collections.recete.stack.plugins.module_utils._app_instances import (
    count_processors,
    host_facts,
    parse_meminfo_mb,
    parse_route_get,
)

ROUTE = "8.8.8.8 via 10.213.0.1 dev host0 src 10.213.0.12 uid 0 \n    cache \n"
MEMINFO = "MemTotal:       24589732 kB\nMemFree:         1234 kB\n"
CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n"


def test_default_route_gives_address_and_interface():
    assert parse_route_get(ROUTE) == {"address": "10.213.0.12", "interface": "host0"}


def test_a_directly_connected_route_has_no_via():
    assert parse_route_get("8.8.8.8 dev eth0 src 192.0.2.7 uid 0\n") == {"address": "192.0.2.7", "interface": "eth0"}


def test_no_route_gives_nothing():
    assert parse_route_get("") is None
    assert parse_route_get("RTNETLINK answers: Network is unreachable") is None


def test_memory_in_mib_and_processors_counted():
    assert parse_meminfo_mb(MEMINFO) == 24013
    assert count_processors(CPUINFO) == 2
    assert parse_meminfo_mb("") is None


def test_facts_leave_out_what_could_not_be_read():
    assert host_facts(ROUTE, MEMINFO, CPUINFO) == {
        "default_ipv4": {"address": "10.213.0.12", "interface": "host0"}, "memtotal_mb": 24013, "processor_vcpus": 2}
    facts = host_facts("", "", "")
    assert "default_ipv4" not in facts and "memtotal_mb" not in facts
    assert facts["processor_vcpus"] >= 1   # os.cpu_count() when /proc/cpuinfo lists none
