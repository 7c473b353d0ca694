"""The placement rule shared by the app roles and scale.yml."""
import pytest

from ansible_collections.recete.stack.plugins.module_utils import _placement as p

HOSTS = ["api1", "api2", "api3"]
PORTS = p.slot_range(3000, 4)


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


def test_place_new_instances_take_the_lowest_free_ports():
    target = p.place(HOSTS, 5, {}, PORTS)
    assert target == {"api1": [3000, 3001], "api2": [3000, 3001], "api3": [3000]}


def test_place_keeps_running_instances_where_they_are():
    current = {"api1": [3002], "api2": [3001]}
    target = p.place(["api1", "api2"], 4, current, PORTS)
    assert 3002 in target["api1"] and 3001 in target["api2"]
    assert target == {"api1": [3000, 3002], "api2": [3000, 3001]}


def test_place_scale_in_drops_the_highest_ports():
    current = {"api1": [3000, 3001, 3002], "api2": [3000, 3001]}
    assert p.place(["api1", "api2"], 2, current, PORTS) == {"api1": [3000], "api2": [3000]}


def test_place_drops_instances_outside_the_port_range_first():
    current = {"api1": [2999, 3000]}
    assert p.place(["api1"], 2, current, PORTS) == {"api1": [3000, 3001]}


def test_place_refuses_more_than_a_host_allows():
    with pytest.raises(p.PlanError, match="allows 4"):
        p.place(["api1"], 5, {}, PORTS)


def test_diff_lists_starts_ascending_and_stops_descending():
    start, stop = p.diff({"a": [1, 2, 3]}, {"a": [1], "b": [1, 2]})
    assert start == [("b", 1), ("b", 2)]
    assert stop == [("a", 3), ("a", 2)]


def test_interleave_spreads_a_batch_over_hosts():
    pairs = [("a", 1), ("a", 2), ("b", 1), ("b", 2), ("c", 1)]
    assert p.interleave(pairs, ["a", "b", "c"]) == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("b", 2)]


@pytest.mark.parametrize("n,size,expected", [(0, 2, 0), (1, 2, 1), (4, 2, 2), (5, 2, 3), (5, 10, 1)])
def test_batches(n, size, expected):
    pairs = [("h", i) for i in range(n)]
    out = p.batches(pairs, size)
    assert len(out) == expected
    assert [x for b in out for x in b] == pairs
    assert all(len(b) <= size for b in out)


def test_batches_refuse_a_zero_size():
    with pytest.raises(p.PlanError):
        p.batches([], 0)


def test_capacity_names_the_limit():
    with pytest.raises(p.PlanError, match=r"api_replicas=13 exceeds the capacity.*3 hosts x 4 instances per host = 12"):
        p.check_capacity("api_replicas", 13, HOSTS, 4)
    p.check_capacity("api_replicas", 12, HOSTS, 4)


def test_connection_budget():
    assert p.check_connection_budget([("api", 5, 10), ("worker", 4, 5)], 1000) == 70
    with pytest.raises(p.PlanError, match=r"api 50 x pool 10 \+ worker 10 x pool 10 = 600 .* max_client_conn 500"):
        p.check_connection_budget([("api", 50, 10), ("worker", 10, 10)], 500)


@pytest.mark.parametrize("before,replicas", [
    ({}, 2), ({"api1": [3000], "api2": [3000]}, 5), ({"api1": [3000, 3001], "api2": [3000, 3001], "api3": [3000]}, 2),
    ({"api1": [3000, 3001, 3002, 3003]}, 3), ({"api2": [3001, 3003]}, 6), ({"api1": [3000]}, 1),
])
def test_plan_reaches_a_balanced_target_and_keeps_what_it_can(before, replicas):
    plan = p.plan_tier("api", HOSTS, replicas, before, 3000, 4, 2)
    after = plan["after"]
    assert sum(len(v) for v in after.values()) == replicas
    counts = [len(after[h]) for h in HOSTS]
    assert max(counts) - min(counts) <= 1
    # applying the diff to `before` gives `after`
    result = {h: set(before.get(h, [])) for h in HOSTS}
    for host, slot in plan["start"]:
        result[host].add(slot)
    for host, slot in plan["stop"]:
        result[host].remove(slot)
    assert {h: sorted(v) for h, v in result.items()} == after
    # batches cover exactly the changes
    assert sorted(map(tuple, sum(plan["start_batches"], []))) == sorted(map(tuple, plan["start"]))
    assert sorted(map(tuple, sum(plan["stop_batches"], []))) == sorted(map(tuple, plan["stop"]))
    # nothing that can stay is moved: each host keeps as many of its instances as its target allows
    for h in HOSTS:
        kept = set(before.get(h, [])) & set(after[h])
        assert len(kept) == min(len(before.get(h, [])), len(after[h])), h


def test_plan_same_numbers_again_changes_nothing():
    first = p.plan_tier("api", HOSTS, 5, {}, 3000, 4, 2)
    again = p.plan_tier("api", HOSTS, 5, first["after"], 3000, 4, 2)
    assert not again["changed"]
    assert again["start"] == [] and again["stop"] == [] and again["start_batches"] == []


def test_plan_lists_instance_ids_for_the_load_balancer():
    plan = p.plan_tier("api", ["api1", "api2"], 3, {"api2": [3000]}, 3000, 4, 2)
    assert plan["before_ids"] == ["api2:3000"]
    # api2 already runs one, so it is the host that gets the second instance
    assert plan["after_ids"] == ["api1:3000", "api2:3000", "api2:3001"]
