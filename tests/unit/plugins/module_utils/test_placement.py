"""Counting rules: parsing counts, balancing over hosts, capacity, connection budget."""
import pytest

from ansible_collections.recete.stack.plugins.module_utils import _placement as p

HOSTS = ["api1", "api2", "api3"]


@pytest.mark.parametrize("value,expected", [(5, 5), ("5", 5), (" 7 ", 7), ("0", 0), (0, 0), ("+3", 3)])
def test_parse_count_accepts_whole_numbers(value, expected):
    assert p.parse_count(value, "api_replicas") == expected


@pytest.mark.parametrize("value", ["abc", "1.5", 1.5, "", " ", None, True, False, [], "5abc", "0x5"])
def test_parse_count_refuses_everything_else(value):
    with pytest.raises(p.PlanError, match="api_replicas must be a whole number"):
        p.parse_count(value, "api_replicas")


@pytest.mark.parametrize("value", [-1, "-1", 0, "0"])
def test_parse_count_enforces_the_minimum(value):
    with pytest.raises(p.PlanError, match="at least 1"):
        p.parse_count(value, "api_replicas", minimum=1)


@pytest.mark.parametrize("total,expected", [
    (0, [0, 0, 0]), (1, [1, 0, 0]), (2, [1, 1, 0]), (3, [1, 1, 1]), (4, [2, 1, 1]), (5, [2, 2, 1]), (12, [4, 4, 4]),
])
def test_balanced_counts_from_nothing(total, expected):
    counts = p.balanced_counts(HOSTS, total, {})
    assert [counts[h] for h in HOSTS] == expected
    assert sum(counts.values()) == total


def test_balanced_counts_favour_hosts_that_already_run_more():
    counts = p.balanced_counts(HOSTS, 4, {"api3": 2})
    assert counts == {"api1": 1, "api2": 1, "api3": 2}


def test_interleave_spreads_a_batch_over_hosts():
    pairs = [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 1)]
    assert p.interleave(pairs, ["a", "b", "c"]) == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("b", 2)]


@pytest.mark.parametrize("count,expected", [(0, 1), (1, 1), (4, 2), (5, 3)])
def test_default_batch_size_is_half_of_the_change(count, expected):
    assert p.default_batch_size(count) == expected


def test_capacity_names_the_limit():
    with pytest.raises(p.PlanError, match=r"api_replicas=13 exceeds the capacity.*3 hosts x 4 instances per host = 12"):
        p.check_capacity("api_replicas", 13, HOSTS, 4)
    p.check_capacity("api_replicas", 12, HOSTS, 4)


def test_connection_budget():
    assert p.check_connection_budget([("api", 5, 10), ("worker", 4, 5)], 1000) == 70
    with pytest.raises(p.PlanError, match=r"api 50 x pool 10 \+ worker 10 x pool 10 = 600 .* max_client_conn 500"):
        p.check_connection_budget([("api", 50, 10), ("worker", 10, 10)], 500)


# --- per-host limit from cores and memory ---------------------------------------

from ansible_collections.recete.stack.plugins.module_utils._placement import resource_limit  # noqa: E402


def test_resource_limit_is_set_by_the_smallest_host():
    hosts = {"api1": {"processor_vcpus": 4, "memtotal_mb": 16384},   # cores: 4, memory: 43 -> 4
             "api2": {"processor_vcpus": 8, "memtotal_mb": 1024}}    # memory: 819 // 300 = 2
    limit, own = resource_limit(hosts, 1, 300)
    assert own == {"api1": 4, "api2": 2} and limit == 2


def test_resource_limit_is_at_least_one_and_needs_facts():
    assert resource_limit({"w1": {"vcpus": 1, "memtotal_mb": 100}}, 2, 250)[0] == 1
    with pytest.raises(p.PlanError, match="w1: no cores/memory facts"):
        resource_limit({"w1": {"memtotal_mb": 100}}, 2, 250)
