"""The filters playbooks see: rollout_plan, count_problems, rollout_batch_line, rollout_host_lines, connection_budget."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.recete.stack.plugins.filter.connection_budget import connection_budget
from ansible_collections.recete.stack.plugins.filter.rollout import (
    rollout_batch_line,
    rollout_count_problems,
    rollout_host_lines,
    rollout_plan,
)

REPORTS = {"api1": {"deployed": True, "release": "1.0.0",
                    "instances": [{"slot": 3000, "release": "1.0.0", "current": True, "running": True}]},
           "api2": {"deployed": True, "release": "1.0.0",
                    "instances": [{"slot": 3000, "release": "1.0.0", "current": True, "running": True}]}}


@pytest.mark.parametrize("replicas,message", [
    ("-1", "api_replicas must be at least 1"),
    ("0", "api_replicas must be at least 1"),
    ("abc", "api_replicas must be a whole number"),
    ("1.5", "api_replicas must be a whole number"),
    ("", "api_replicas must be a whole number, got an empty value"),
    ("99", "api_replicas=99 exceeds the capacity of the hosts: 2 hosts x 4 instances per host = 8"),
])
def test_bad_api_replicas_are_refused_with_the_reason(replicas, message):
    with pytest.raises(AnsibleFilterError, match=message):
        rollout_plan(REPORTS, ["api1", "api2"], replicas, "1.0.0", tier="api", per_host_limit=4)


def test_workers_may_be_zero():
    reports = {"worker1": {"deployed": True, "instances": [
        {"slot": 1, "release": "1", "current": True, "running": True}]}}
    plan = rollout_plan(reports, ["worker1"], "0", "1", tier="worker", first_slot=1, minimum=0)
    assert plan["after"] == [] and [r["id"] for r in plan["stop"]] == ["worker1:1"]


def test_a_missing_group_is_refused_unless_nothing_is_wanted():
    with pytest.raises(AnsibleFilterError, match="no hosts in group 'api'"):
        rollout_plan({}, [], 2, "1", tier="api")
    assert rollout_plan({}, [], 0, "1", tier="worker", minimum=0)["changed"] is False


def test_default_batches_take_half_of_the_change_and_an_explicit_size_is_kept():
    assert [len(b["start"]) for b in rollout_plan(REPORTS, ["api1", "api2"], 6, "1.0.0")["batches"]] == [2, 2]
    assert len(rollout_plan(REPORTS, ["api1", "api2"], 6, "1.0.0", batch_size="1")["batches"]) == 4
    with pytest.raises(AnsibleFilterError, match="batch size must be at least 1"):
        rollout_plan(REPORTS, ["api1", "api2"], 6, "1.0.0", batch_size="0")


def test_the_same_numbers_and_release_again_change_nothing():
    plan = rollout_plan(REPORTS, ["api1", "api2"], None, "1.0.0")
    assert plan["changed"] is False and [r["id"] for r in plan["after"]] == ["api1:3000", "api2:3000"]


def test_a_deploy_plan_reads_as_lines():
    plan = rollout_plan(REPORTS, ["api1", "api2"], None, "1.1.0", addresses={"api1": "10.0.0.1"}, canary=True)
    assert rollout_batch_line(plan["batches"][0]) == "batch 1 (canary): start api1:3001 (1.1.0); stop api1:3000 (1.0.0)"
    assert rollout_host_lines(plan["before"], plan["after"], ["api1", "api2"])[0] == "api1: 3000 (1.0.0) -> 3001 (1.1.0)"


def test_count_problems_filter():
    specs = [{"name": "api_replicas", "given": "x", "minimum": 1, "group": "api", "limit": 4}]
    assert rollout_count_problems(specs, {"api": ["api1"]}) == ["api_replicas must be a whole number, got 'x'"]


def test_connection_budget_filter():
    tiers = [{"name": "api", "instances": 5, "pool_size": 10}, {"name": "worker", "instances": "4", "pool_size": 5}]
    assert connection_budget(tiers, 1000) == 70
    with pytest.raises(AnsibleFilterError, match="connection budget exceeded"):
        connection_budget(tiers, 60)
