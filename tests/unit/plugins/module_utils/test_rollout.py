"""The rolling-change planner: records, desired state, surge/in-place units, batches, canary."""
import pytest

from ansible_collections.recete.stack.plugins.module_utils._placement import PlanError
from ansible_collections.recete.stack.plugins.module_utils._rollout import (
    count_problems,
    desired_records,
    host_lines,
    host_units,
    make_record,
    plan_tier_rollout,
    resolve_count,
)

HOSTS = ["api1", "api2"]
ADDR = {"api1": "10.0.0.11", "api2": "10.0.0.12"}


def report(*instances, installed=True):
    """An app_instances report of one host: (slot, release[, stale]) tuples."""
    return {"unit_installed": installed, "deployed": installed, "instances": [
        {"slot": i[0], "release": i[1], "current": True, "running": True, "stale": len(i) > 2 and i[2]}
        for i in instances]}


def plan(reports, requested=None, release="1.0.0", **kw):
    kw.setdefault("addresses", ADDR)
    return plan_tier_rollout("api", kw.pop("hosts", HOSTS), reports, requested, release, 3000, 4, **kw)


def ids(records):
    return [f"{r['id']}@{r['release']}" for r in records]


def test_a_record_carries_everything_later_steps_need():
    assert make_record("api1", 3001, "1.1.0", "10.0.0.11") == {
        "id": "api1:3001", "host": "api1", "slot": 3001, "release": "1.1.0",
        "address": "10.0.0.11", "endpoint": "10.0.0.11:3001"}
    assert make_record("api1", 3001, "1", "fd00::1")["endpoint"] == "[fd00::1]:3001"
    assert "endpoint" not in make_record("worker1", 1, "1")


@pytest.mark.parametrize("requested,running,deployed,minimum,expected", [
    (None, 3, True, 1, 3),      # unset keeps what runs
    (None, 0, False, 1, 2),     # first deploy: one per host
    (None, 0, True, 1, 2),      # the API never keeps zero
    (None, 0, True, 0, 0),      # workers may stay at zero
    ("5", 3, True, 1, 5),
])
def test_unset_keeps_and_a_number_is_taken(requested, running, deployed, minimum, expected):
    assert resolve_count(requested, "api", running, HOSTS, deployed, minimum) == expected


@pytest.mark.parametrize("requested,message", [
    ("", "empty value"), ("  ", "empty value"), ("abc", "whole number"), ("0", "at least 1"), ("1.5", "whole number")])
def test_bad_counts_are_refused(requested, message):
    with pytest.raises(PlanError, match=message):
        resolve_count(requested, "api", 2, HOSTS, True, 1)


def test_nothing_to_do_when_the_release_and_count_match():
    p = plan({"api1": report((3000, "1.0.0")), "api2": report((3000, "1.0.0"))})
    assert p["changed"] is False and p["batches"] == []
    assert ids(p["after"]) == ids(p["before"])


def test_deploy_surges_beside_each_old_instance_canary_first():
    p = plan({"api1": report((3000, "1.0.0")), "api2": report((3000, "1.0.0"))}, release="1.1.0", canary=True)
    assert [(ids(b["start"]), ids(b["stop"]), b["canary"], b["in_place"]) for b in p["batches"]] == [
        (["api1:3001@1.1.0"], ["api1:3000@1.0.0"], True, False),
        (["api2:3001@1.1.0"], ["api2:3000@1.0.0"], False, False),
    ]
    assert p["after"][0]["endpoint"] == "10.0.0.11:3001"


def test_a_full_host_replaces_in_place_one_at_a_time():
    full = report((3000, "1"), (3001, "1"), (3002, "1"), (3003, "1"))
    p = plan({"api1": full}, release="2", hosts=["api1"], canary=True, batch_size=4)
    assert all(b["in_place"] and len(b["start"]) == 1 for b in p["batches"])
    assert [(b["start"][0]["slot"], b["stop"][0]["slot"]) for b in p["batches"]] == [
        (3000, 3000), (3001, 3001), (3002, 3002), (3003, 3003)]


def test_a_freed_slot_is_reused_in_a_later_batch_so_capacity_never_drops():
    three = report((3000, "1"), (3001, "1"), (3002, "1"))
    p = plan({"api1": three}, release="2", hosts=["api1"], batch_size=3)
    assert not any(b["in_place"] for b in p["batches"])
    # Every new instance starts before the old one it replaces stops, and no
    # batch starts on a slot that the same batch frees.
    for b in p["batches"]:
        assert not {r["slot"] for r in b["start"]} & {r["slot"] for r in b["stop"]}
    assert sorted(r["slot"] for r in p["after"]) == [3000, 3001, 3003]


def test_scale_out_during_deploy_starts_first_then_replaces():
    p = plan({"api1": report((3000, "1")), "api2": report((3000, "1"))}, requested=4, release="2", batch_size=2)
    kinds = [("start" if not b["stop"] else "replace") for b in p["batches"]]
    assert kinds[0] == "start" and kinds[-1] == "replace"
    assert len(p["after"]) == 4 and {r["release"] for r in p["after"]} == {"2"}


def test_scale_keeps_other_releases_when_not_replacing():
    p = plan({"api1": report((3000, "1")), "api2": report((3000, "1"))}, requested=3, release="2", replace=False)
    assert ids(p["start"]) == ["api1:3001@2"] and p["stop"] == []


def test_scale_in_stops_the_highest_slots_and_interleaves_hosts():
    p = plan({"api1": report((3000, "1"), (3001, "1"), (3002, "1")), "api2": report((3000, "1"), (3001, "1"))},
             requested=2, release="1", replace=False)
    assert [ids(b["stop"]) for b in p["batches"]] == [["api1:3002@1", "api2:3001@1"], ["api1:3001@1"]]


def test_a_stale_instance_is_replaced_even_on_the_same_release():
    p = plan({"api1": report((3000, "1", True)), "api2": report((3000, "1"))}, release="1")
    assert ids(p["start"]) == ["api1:3001@1"] and ids(p["stop"]) == ["api1:3000@1"]


def test_rollback_goes_back_to_exact_records_in_the_same_rolling_way():
    before = [make_record("api1", 3000, "1", ADDR["api1"]), make_record("api2", 3000, "1", ADDR["api2"])]
    # The deploy replaced api1 and failed on api2's new instance (api2:3001 runs, not ready).
    now = {"api1": report((3001, "2")), "api2": report((3000, "1"), (3001, "2"))}
    p = plan(now, exact=before)
    assert ids(p["after"]) == ids(before)
    assert [(ids(b["start"]), ids(b["stop"])) for b in p["batches"]] == [
        (["api1:3000@1"], ["api1:3001@2"]), ([], ["api2:3001@2"])]


def test_rollback_of_an_in_place_replacement_is_in_place():
    before = [make_record("api1", 3000, "1")]
    p = plan({"api1": report((3000, "2"))}, exact=before, hosts=["api1"], addresses={})
    assert p["batches"][0]["in_place"] is True


def test_capacity_and_missing_release_are_refused():
    with pytest.raises(PlanError, match="exceeds the capacity"):
        plan({}, requested=9)
    with pytest.raises(PlanError, match="no release"):
        plan({}, requested=2, release="")


@pytest.mark.parametrize("requested", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("release", ["1", "2"])
def test_every_plan_reaches_its_target_and_stays_balanced(requested, release):
    reports = {"api1": report((3000, "1"), (3002, "1")), "api2": report((3001, "1"))}
    p = plan(reports, requested=requested, release=release, canary=True)
    counts = [len([r for r in p["after"] if r["host"] == h]) for h in HOSTS]
    assert sum(counts) == requested and max(counts) - min(counts) <= 1
    # Simulate the batches: slots never collide, the result is the plan's "after".
    running = {(r["host"], r["slot"]): r["release"] for r in p["before"]}
    for b in p["batches"]:
        for r in b["stop"] if b["in_place"] else []:
            del running[(r["host"], r["slot"])]
        for r in b["start"]:
            assert (r["host"], r["slot"]) not in running, b
            running[(r["host"], r["slot"])] = r["release"]
        for r in [] if b["in_place"] else b["stop"]:
            del running[(r["host"], r["slot"])]
    assert running == {(r["host"], r["slot"]): r["release"] for r in p["after"]}
    if p["batches"] and p["batches"][0]["start"]:
        assert len(p["batches"][0]["start"]) == 1


def test_host_lines_show_each_host_before_and_after_in_inventory_order():
    before = [make_record("api2", 3000, "1"), make_record("api1", 3000, "1")]
    after = [make_record("api1", 3001, "2"), make_record("api1", 3002, "2")]
    assert host_lines(before, after, HOSTS) == ["api1: 3000 (1) -> 3001 (2), 3002 (2)", "api2: 3000 (1) -> -"]


def test_desired_records_prefers_free_slots():
    current = [make_record("api1", 3000, "1")]
    assert [r["slot"] for r in desired_records(["api1"], 1, current, "2", [3000, 3001])] == [3001]
    assert [r["slot"] for r in desired_records(["api1"], 1, current, "2", [3000])] == [3000]


def test_host_units_pairs_in_place_only_when_no_slot_is_free():
    a = make_record("h", 1, "2")
    assert host_units([a], [make_record("h", 1, "1")])[0]["in_place"] is True
    assert host_units([a], [make_record("h", 2, "1")])[0]["in_place"] is False


@pytest.mark.parametrize("given,message", [
    ("-1", "api_replicas must be at least 1"),
    ("0", "api_replicas must be at least 1"),
    ("abc", "api_replicas must be a whole number"),
    ("1.5", "api_replicas must be a whole number"),
    ("", "got an empty value"),
    ("99", "api_replicas=99 exceeds the capacity of the hosts: 2 hosts x 4 instances per host = 8"),
])
def test_bad_counts_are_found_from_the_inventory_alone(given, message):
    spec = {"name": "api_replicas", "given": given, "minimum": 1, "group": "api", "limit": 4}
    problems = count_problems([spec], {"api": HOSTS})
    assert len(problems) == 1 and message in problems[0]


def test_good_and_missing_counts_pass_and_workers_need_hosts():
    specs = [{"name": "api_replicas", "given": "5", "minimum": 1, "group": "api", "limit": 4},
             {"name": "worker_replicas", "given": None, "minimum": 0, "group": "worker", "limit": 4}]
    assert count_problems(specs, {"api": HOSTS}) == []
    workers = [{"name": "worker_replicas", "given": 2, "minimum": 0, "group": "worker", "limit": 4}]
    assert "needs hosts in group 'worker'" in count_problems(workers, {})[0]
    assert count_problems([dict(workers[0], given="0")], {}) == []


@pytest.mark.parametrize("before,replicas", [
    ({}, 2), ({"api1": [3000], "api2": [3000]}, 5), ({"api1": [3000, 3001], "api2": [3000, 3001], "api3": [3000]}, 2),
    ({"api1": [3000, 3001, 3002, 3003]}, 3), ({"api2": [3001, 3003]}, 6), ({"api1": [3000]}, 1),
])
def test_scale_keeps_every_instance_that_can_stay(before, replicas):
    hosts = ["api1", "api2", "api3"]
    reports = {h: report(*[(s, "1") for s in slots]) for h, slots in before.items()}
    p = plan(reports, requested=replicas, release="1", hosts=hosts, replace=False)
    for h in hosts:
        now = set(before.get(h, []))
        then = {r["slot"] for r in p["after"] if r["host"] == h}
        assert len(now & then) == min(len(now), len(then)), h


# --- per-host limit "auto" and leaving hosts --------------------------------------

def test_count_problems_leave_the_capacity_of_auto_limits_to_planning():
    specs = [{"name": "api_replicas", "given": "50", "minimum": 1, "group": "api", "limit": "auto"}]
    assert count_problems(specs, {"api": ["api1"]}) == []
    specs[0]["given"] = "x"
    assert "whole number" in count_problems(specs, {"api": ["api1"]})[0]


def test_a_leaving_host_is_emptied_onto_the_others():
    reports = {"api1": report((3000, "1.0.0")), "api2": report((3000, "1.0.0")), "api3": report((3000, "1.0.0"), (3001, "1.0.0"))}
    addresses = dict(ADDR, api3="10.0.0.13")
    plan = plan_tier_rollout("api", ["api1", "api2"], reports, 4, "1.0.0", 3000, 4, addresses, replace=False)
    assert sorted(r["id"] for r in plan["after"]) == ["api1:3000", "api1:3001", "api2:3000", "api2:3001"]
    assert sorted(r["id"] for r in plan["stop"]) == ["api3:3000", "api3:3001"]
    # Scale-out on the staying hosts comes first, the leaving host's instances stop last.
    assert plan["batches"][-1]["stop"] and all(r["host"] == "api3" for b in plan["batches"] for r in b["stop"])
    assert all(r["host"] != "api3" for r in plan["start"])
