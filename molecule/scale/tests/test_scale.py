"""scale.yml on the lab: every step checked on the hosts and in nginx.

The tests run in order (pytest keeps file order): each one scales the stack
with the real playbook, then reads what runs (systemd units on the app hosts)
and what the load balancer routes to (the upstream block nginx loaded).
"""
import os
import re
import subprocess
import sys

import pytest
import yaml
import testinfra

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
PLAYBOOK = os.path.join(PROJECT, "playbooks", "scale.yml")
API_HOSTS = ["api1", "api2"]
WORKER_HOSTS = ["worker1", "worker2"]
sys.path.insert(0, os.path.join(PROJECT, "tests", "support"))
from prometheus import Prometheus  # noqa: E402

SCRAPE = 5  # prometheus_scrape_interval of the lab


def prometheus():
    mon = on("mon1").ansible("setup", "gather_subset=network")["ansible_facts"]["ansible_default_ipv4"]["address"]
    return Prometheus(mon)


def prometheus_started(prom):
    return prom.value('process_start_time_seconds{job="prometheus"}')


def scraped_up(prom, job, count):
    """Seconds until Prometheus scrapes `count` targets of `job`, all up (None if not within 3 intervals)."""
    _, waited = prom.wait(lambda: len([t for t in prom.targets(job) if t["health"] == "up"]) == count
                          and len(prom.targets(job)) == count, timeout=3 * SCRAPE, interval=0.25)
    return waited if len([t for t in prom.targets(job) if t["health"] == "up"]) == count else None


def on(name):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}", sudo=True)


def scale(*extra, check=False, expect_rc=0):
    cmd = ["ansible-playbook", "-i", INVENTORY, PLAYBOOK, *extra] + (["--check"] if check else [])
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT, timeout=900)
    assert run.returncode == expect_rc, f"rc={run.returncode}\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    # Ansible prints failures on stderr: the tests read both.
    return run.stdout + "\n" + run.stderr


def running(unit, hosts):
    """{host: sorted instance numbers} of the running units."""
    found = {}
    for name in hosts:
        out = on(name).check_output(f"systemctl list-units '{unit}@*' --state=running --no-legend --plain")
        found[name] = sorted(int(m) for m in re.findall(rf"{unit}@(\d+)\.service", out))
    return found


def upstream():
    """(active, down) server addresses of the upstream loaded by the nginx that holds it.

    With nginx_lb_router_enabled that is the router nginx (its own config),
    else nginx itself.
    """
    router = "/etc/nginx/recete/router.conf"
    config = on("lb1").check_output(f"if [ -e {router} ]; then nginx -c {router} -T; else nginx -T; fi 2>/dev/null")
    block = re.search(r"upstream recete_api \{(.*?)\}", config, re.S).group(1)
    servers = re.findall(r"^\s*server\s+(\S+)([^;]*);", block, re.M)
    return sorted(a for a, opts in servers if "down" not in opts), sorted(a for a, opts in servers if "down" in opts)


def addresses():
    return {name: on(name).ansible("setup", "gather_subset=network")["ansible_facts"]["ansible_default_ipv4"]["address"]
            for name in API_HOSTS}


def assert_api(expected):
    units = running("recete-api", API_HOSTS)
    assert sum(len(v) for v in units.values()) == expected, units
    counts = [len(v) for v in units.values()]
    assert max(counts) - min(counts) <= 1, f"unbalanced: {units}"
    addr = addresses()
    active, down = upstream()
    assert down == []
    assert active == sorted(f"{addr[h]}:{port}" for h, ports in units.items() for port in ports)


def nginx_workers():
    """Worker PIDs of the nginx that membership changes reload: the router nginx when it runs, else nginx."""
    return sorted(on("lb1").check_output(
        "pgrep -P $(if [ -s /run/recete-router/nginx.pid ]; then cat /run/recete-router/nginx.pid; "
        "else cat /run/nginx.pid; fi)").split())


def test_start_from_two_api_instances():
    scale("-e", "api_replicas=2", "-e", "worker_replicas=2")
    assert_api(2)
    assert sum(len(v) for v in running("recete-worker", WORKER_HOSTS).values()) == 2


def test_check_mode_prints_the_plan_and_changes_nothing():
    workers = nginx_workers()
    out = scale("-e", "api_replicas=5", check=True)
    assert "api: 2 -> 5 instance(s)" in out and "check mode: nothing changes" in out
    assert_api(2)
    assert nginx_workers() == workers


def test_scale_out_to_five():
    prom = prometheus()
    started = prometheus_started(prom)
    out = scale("-e", "api_replicas=5")
    assert_api(5)
    # Prometheus follows: 5 API targets scraped up within two scrape intervals
    # of the playbook's end (the file_sd change is read at once, the first
    # scrape of a new target comes within an interval, and the scrape itself
    # takes time on a busy host: 5.04 s was seen), with no restart of Prometheus.
    waited = scraped_up(prom, "recete_api", 5)
    assert waited is not None and waited <= 2 * SCRAPE, f"5 API targets up after {waited} s (interval {SCRAPE} s)"
    print(f"5 API targets scraped up {waited:.1f} s after scale.yml ended")
    assert prometheus_started(prom) == started, "Prometheus restarted"
    # the summary, in order: before -> after per host with each instance's
    # release, the phases with their times, the readiness gates' latencies
    assert re.search(r"api api1: 3000 \(1\.0\.0\) -> 3000 \(1\.0\.0\), 3001 \(1\.0\.0\), 3002 \(1\.0\.0\)", out), out[-3000:]
    assert "api api2: 3000 (1.0.0) -> 3000 (1.0.0), 3001 (1.0.0)" in out, out[-3000:]
    assert re.search(r"phases: plan [\d.]+ s, api [\d.]+ s, total [\d.]+ s", out), out[-3000:]
    assert "readiness gates:" in out and "ready after" in out


def test_same_numbers_again_change_nothing_and_do_not_reload():
    workers = nginx_workers()
    out = scale("-e", "api_replicas=5")
    assert re.search(r"lb1\s*:\s*ok=\d+\s+changed=0", out), out[-3000:]
    assert nginx_workers() == workers
    assert_api(5)


def test_scale_in_to_two():
    scale("-e", "api_replicas=2")
    assert_api(2)


@pytest.mark.parametrize("count", [4, 1])
def test_workers(count):
    scale("-e", f"worker_replicas={count}")
    assert sum(len(v) for v in running("recete-worker", WORKER_HOSTS).values()) == count
    assert scraped_up(prometheus(), "recete_worker", count) is not None
    assert_api(2)


@pytest.mark.parametrize("value,reason", [
    ("-1", "api_replicas must be at least 1"),
    ("0", "api_replicas must be at least 1"),
    ("abc", "api_replicas must be a whole number"),
    ("1.5", "api_replicas must be a whole number"),
    ("", "api_replicas must be a whole number, got an empty value"),
    ("99", "api_replicas=99 exceeds the capacity of the hosts"),
])
def test_bad_api_replicas_are_refused_with_nothing_changed(value, reason):
    workers = nginx_workers()
    before = running("recete-api", API_HOSTS)
    out = scale("-e", f"api_replicas={value}", expect_rc=2)
    assert reason in " ".join(out.split()), out[-3000:]
    assert running("recete-api", API_HOSTS) == before
    assert nginx_workers() == workers


def test_a_failed_readiness_gate_rolls_back_then_a_rerun_completes():
    # From the two instances test_scale_in_to_two left (test_workers keeps them).
    assert_api(2)
    # The next instance goes to api1:3001 (balanced, earlier host first). A
    # process squatting on that port answers /ready with 404: the new instance
    # cannot bind and its gate sees the squatter.
    api1 = on("api1")
    api1.run_expect([0], "systemd-run --unit=recete-test-squatter --property=WorkingDirectory=/tmp "
                         "python3 -m http.server 3001 --bind 0.0.0.0")
    try:
        # A gate shorter than the default 60 s: the squatter's 404 never turns into a ready answer.
        out = scale("-e", "api_replicas=3", "-e", "api_ready_timeout=20", expect_rc=2)
        assert "api1:3001" in out and "404" in out, out[-4000:]
        assert "Rolled back" in out
        assert_api(2)
    finally:
        api1.run("systemctl stop recete-test-squatter")
    scale("-e", "api_replicas=3")
    assert_api(3)


@pytest.mark.parametrize("group", ["api", "lb"])
def test_an_inventory_without_the_group_is_refused(tmp_path, group):
    with open(INVENTORY, encoding="utf-8") as handle:
        inventory = yaml.safe_load(handle)
    # Molecule writes groups at the top level and under all.children.
    inventory.pop(group, None)
    inventory["all"].get("children", {}).pop(group, None)
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    workers = nginx_workers()
    run = subprocess.run(["ansible-playbook", "-i", str(path), PLAYBOOK, "-e", "api_replicas=3"],
                         capture_output=True, text=True, cwd=PROJECT, timeout=300)
    out = " ".join((run.stdout + run.stderr).split())
    assert run.returncode == 2, out[-2000:]
    assert "needs an inventory with hosts in groups 'api' and 'lb'" in out, out[-2000:]
    assert nginx_workers() == workers
