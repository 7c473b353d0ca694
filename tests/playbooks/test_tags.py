"""site.yml's tier tags select one tier's tasks; the checks are tagged always (ansible-playbook --list-tasks)."""
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INVENTORY = os.path.join(REPO, "inventories", "example", "hosts.yml")
TIERS = {
    "recete_common": "recete.stack.common : Install base packages",
    "recete_postgresql": "recete.stack.postgresql : Manage PostgreSQL on this host",
    "recete_pgbouncer": "recete.stack.pgbouncer : Write pgbouncer.ini",
    "recete_redis": "recete.stack.redis : Install Redis and Sentinel",
    "recete_lb": "recete.stack.nginx_lb : Install",
    "recete_web": "recete.stack.web : Install the recete-web@ unit template",
    "recete_monitoring": "recete.stack.prometheus : Install Prometheus",
}


def tasks(*args):
    out = subprocess.run(["ansible-playbook", "-i", INVENTORY, "site.yml", "--list-tasks", *args], cwd=REPO,
                         capture_output=True, text=True, timeout=180, check=True).stdout
    return [line.split("\tTAGS:")[0].strip() for line in out.splitlines() if "\tTAGS:" in line]


@pytest.mark.parametrize("tag", sorted(TIERS))
def test_a_tier_tag_keeps_that_tier_and_the_checks_only(tag):
    listed = tasks("--tags", tag)
    assert TIERS[tag] in listed, listed
    others = [task for other, task in TIERS.items() if other != tag]
    assert not [task for task in others if task in listed], listed
    assert "Check the inventory and the counts" in listed and "Check the secrets and the extra settings" in listed


def test_without_tags_every_tier_is_listed():
    listed = tasks()
    assert all(task in listed for task in TIERS.values()), listed
