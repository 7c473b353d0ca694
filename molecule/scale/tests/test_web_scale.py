"""scale.yml -e web_replicas on the lab: the web tier 2 -> 4 -> 2 under open-loop page and asset loads.

Runs after test_scale.py (file order) on the stack the scenario left: one web instance per web
host. Each step runs while tests/support/web_lab.py's WebLoad sends page loads (/, /items/:id,
rendered from the API) and loads of the assets the pages name through the load balancer, counting
every non-2xx answer and broken connection as failed and never resending: 0 failed. Seconds of
load per step, not minutes.
"""
import os
import sys

import pytest
import testinfra
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
sys.path.insert(0, os.path.join(PROJECT, "tests", "support"))
from lab_run import Playbooks  # noqa: E402
from lab_settings import private_address  # noqa: E402
from prometheus import Prometheus  # noqa: E402
from web_lab import WebLoad, assert_web_serving, web_instances  # noqa: E402

HOSTS = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("web")
SCRAPE = 5  # prometheus_scrape_interval of the lab
playbook = Playbooks(INVENTORY, PROJECT)


def scraped_web_instances(count):
    """True once Prometheus scrapes exactly `count` web instances, all up, within 3 scrape intervals
    (the engine rewrote its target file at the end of the run); else the targets' healths."""
    prom = Prometheus(private_address(testinfra.get_host(f"ansible://mon1?ansible_inventory={INVENTORY}")))
    healths, _ = prom.wait(lambda: [t["health"] for t in prom.targets("recete_web")] == ["up"] * count,
                           timeout=3 * SCRAPE, interval=0.25)
    return True if healths else [t["health"] for t in prom.targets("recete_web")]


def release():
    return {r for ports in web_instances(INVENTORY, HOSTS).values() for r in ports.values()}.pop()


def test_the_web_tier_starts_with_one_instance_per_host():
    assert_web_serving(INVENTORY, HOSTS, release(), len(HOSTS))


@pytest.mark.parametrize("count", [4, 2])
def test_web_replicas_scale_under_load_with_nothing_failed(count):
    before = release()
    with WebLoad(INVENTORY):
        out = playbook("playbooks/scale.yml", "-e", f"web_replicas={count}")
    instances = assert_web_serving(INVENTORY, HOSTS, before, count)
    # Spread evenly over the web hosts.
    assert sorted(len(ports) for ports in instances.values()) == [count // len(HOSTS)] * len(HOSTS), instances
    assert "web: " in out
    scraped = scraped_web_instances(count)
    assert scraped is True, scraped


@pytest.mark.parametrize("value", ["abc", "99"])
def test_bad_web_replicas_are_refused_on_the_controller(value):
    out = playbook("playbooks/scale.yml", "-e", f"web_replicas={value}", expect_rc=2)
    assert "web_replicas" in out and "Nothing was changed" in out
    assert_web_serving(INVENTORY, HOSTS, release(), 2)
