"""The host firewall (role recete.stack.firewall), as a port scan sees it.

From an address outside every group and outside the trusted range - a second
address on the lab's bridge, on the lab's host, removed after the test - every
TCP port that any host listens on is tried: only the load balancers' HTTP and
HTTPS answer. From an app host, Redis, Sentinel and PgBouncer answer;
PostgreSQL, Patroni and etcd do not. A rule set that would lock the
controller out is refused before it is written.
"""
import ipaddress
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
import socket

import pytest
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
sys.path.insert(0, os.path.join(PROJECT, "tests", "support"))
from lab_run import Playbooks, lab_host  # noqa: E402  (tests/support helper)

HOSTS = RUNNER.get_hosts("all")
LB_PORTS = {80, 443}
# .239 of the lab's /24: below the floating address (.250), above the machines tools/lab numbers from .10.
OUTSIDER_HOST_PART = 239


def address(name):
    return RUNNER.get_variables(name)["ansible_host"]


def on(name):
    return lab_host(INVENTORY, name)


def listening_ports(name):
    """TCP ports the host listens on at an address other hosts can reach (not loopback)."""
    ports = set()
    for line in on(name).check_output("ss -Htln").splitlines():
        local = line.split()[3]
        host, _, port = local.rpartition(":")
        host = host.strip("[]").split("%")[0]
        if host not in ("*", "0.0.0.0", "::") and ipaddress.ip_address(host).is_loopback:
            continue
        ports.add(int(port))
    return ports


@pytest.fixture(name="outsider", scope="module")
def fixture_outsider():
    """A source address on the lab's bridge that is in no group and not trusted; removed afterwards."""
    lab_net = ipaddress.ip_network(address(HOSTS[0]) + "/24", strict=False)
    outsider = str(lab_net.network_address + OUTSIDER_HOST_PART)
    assert outsider not in [address(h) for h in HOSTS]
    links = json.loads(subprocess.check_output(["ip", "-j", "-4", "addr", "show"], text=True))
    bridge = next(link["ifname"] for link in links for a in link.get("addr_info", [])
                  if ipaddress.ip_address(a["local"]) in lab_net)
    subprocess.run(["ip", "addr", "add", outsider + "/32", "dev", bridge], check=True)
    try:
        yield outsider
    finally:
        subprocess.run(["ip", "addr", "del", outsider + "/32", "dev", bridge], check=True)


def answers(source, target, port, timeout=1.5):
    """True when a TCP connection from source to target:port is accepted."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.bind((source, 0))
        try:
            sock.connect((target, port))
            return True
        except OSError:
            return False


def test_from_outside_only_the_load_balancers_http_and_https_answer(outsider):
    scan = {name: listening_ports(name) for name in HOSTS}
    # The scan covers every tier's service, so a host that listened on nothing could not pass it.
    for group, port in [("redis", 6379), ("sentinel", 26379), ("pgbouncer", 6432), ("postgres", 5432),
                        ("postgres", 8008), ("etcd", 2379), ("api", 3000), ("monitoring", 9090), ("all", 22),
                        ("all", 9100)]:
        for name in RUNNER.get_hosts(group):
            assert port in scan[name], f"{name} does not listen on {port}: {sorted(scan[name])}"
    probes = [(name, port) for name, ports in scan.items() for port in sorted(ports)]
    with ThreadPoolExecutor(max_workers=64) as pool:
        results = list(pool.map(lambda probe: answers(outsider, address(probe[0]), probe[1]), probes))
    answered = sorted(probe for probe, ok in zip(probes, results) if ok)
    expected = sorted((name, port) for name in RUNNER.get_hosts("lb") for port in LB_PORTS)
    print(f"\nfirewall scan from {outsider}: {len(probes)} listening ports on {len(HOSTS)} hosts, answered: {answered}")
    assert answered == expected


@pytest.mark.parametrize("group,port,reachable", [
    ("redis", 6379, True),
    ("sentinel", 26379, True),
    ("pgbouncer", 6432, True),
    ("postgres", 5432, False),
    ("postgres", 8008, False),
    ("etcd", 2379, False),
    ("lb", 9113, False),
])
def test_from_an_app_host_the_app_tiers_answer_and_the_database_does_not(group, port, reachable):
    app = on(RUNNER.get_hosts("api")[0])
    for name in RUNNER.get_hosts(group):
        probe = app.run(f"timeout 2 bash -c '</dev/tcp/{address(name)}/{port}'")
        assert (probe.rc == 0) == reachable, f"{name}:{port} from the app host: rc {probe.rc}"


def test_rules_that_would_lock_the_controller_out_are_refused_unwritten():
    target = RUNNER.get_hosts("redis")[0]
    before = on(target).check_output("nft list ruleset")
    out = Playbooks(INVENTORY, PROJECT)(
        "playbooks/firewall.yml", "--limit", target,
        "-e", json.dumps({"firewall_ssh_networks": ["192.0.2.0/24"], "firewall_trusted_networks": []}),
        expect_rc=2)
    assert "would lock it out" in out and "Nothing was changed" in out
    assert on(target).check_output("nft list ruleset") == before
