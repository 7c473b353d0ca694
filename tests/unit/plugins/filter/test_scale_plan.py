"""The scale_plan filters: what scale.yml and the app roles see."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.recete.stack.plugins.filter.scale_plan import (
    connection_budget,
    scale_plan,
    whole_number,
)


@pytest.mark.parametrize("replicas,message", [
    ("-1", "api_replicas must be at least 1"),
    ("0", "api_replicas must be at least 1"),
    ("abc", "api_replicas must be a whole number"),
    ("1.5", "api_replicas must be a whole number"),
    ("", "api_replicas must be a whole number"),
    ("99", "api_replicas=99 exceeds the capacity of the hosts: 2 hosts x 4 instances per host = 8"),
])
def test_bad_api_replicas_are_refused_with_the_reason(replicas, message):
    with pytest.raises(AnsibleFilterError, match=message):
        scale_plan({}, ["api1", "api2"], replicas, tier="api", per_host_limit=4)


def test_workers_may_be_zero():
    plan = scale_plan({"worker1": [1]}, ["worker1"], "0", tier="worker", first_slot=1, minimum=0)
    assert plan["after"] == {"worker1": []}
    assert plan["stop"] == [["worker1", 1]]


def test_a_missing_group_is_refused_unless_nothing_is_wanted():
    with pytest.raises(AnsibleFilterError, match="no hosts in group 'api'"):
        scale_plan({}, [], 2, tier="api")
    assert scale_plan({}, [], 0, tier="worker", minimum=0)["changed"] is False


def test_default_batches_take_half_of_the_change():
    plan = scale_plan({"api1": [3000], "api2": [3000]}, ["api1", "api2"], 6, tier="api")
    assert [len(b) for b in plan["start_batches"]] == [2, 2]


def test_explicit_batch_size():
    plan = scale_plan({}, ["api1", "api2"], 4, tier="api", batch_size="1")
    assert len(plan["start_batches"]) == 4


def test_connection_budget_filter():
    tiers = [{"name": "api", "instances": 5, "pool_size": 10}, {"name": "worker", "instances": "4", "pool_size": 5}]
    assert connection_budget(tiers, 1000) == 70
    with pytest.raises(AnsibleFilterError, match="connection budget exceeded"):
        connection_budget(tiers, 60)


def test_whole_number_filter():
    assert whole_number("3", "worker_replicas") == 3
    with pytest.raises(AnsibleFilterError, match="worker_replicas must be a whole number"):
        whole_number("x", "worker_replicas")
