"""Prometheus file_sd targets from the inventory and from what runs (module_utils/_monitoring.py)."""
import pytest

from ansible_collections.recete.stack.plugins.module_utils._monitoring import host_target_groups, instance_target_groups


def report(*instances):
    return {"instances": [dict({"current": True, "running": True, "stale": False}, **i) for i in instances]}


def test_host_targets_sorted_and_labelled():
    groups = host_target_groups(["b", "a"], {"a": "10.0.0.1", "b": "10.0.0.2"}, 9100)
    assert groups == [
        {"targets": ["10.0.0.1:9100"], "labels": {"host": "a"}},
        {"targets": ["10.0.0.2:9100"], "labels": {"host": "b"}},
    ]


def test_host_targets_ipv6_in_brackets():
    assert host_target_groups(["a"], {"a": "fd00::1"}, 9100)[0]["targets"] == ["[fd00::1]:9100"]


def test_host_without_address_is_an_error():
    with pytest.raises(ValueError, match="host b"):
        host_target_groups(["a", "b"], {"a": "10.0.0.1"}, 9100)


def test_api_instances_use_their_port():
    reports = {"api2": report({"slot": 3000, "release": "1.0.0"}),
               "api1": report({"slot": 3001, "release": "1.1.0"}, {"slot": 3000, "release": "1.1.0"})}
    groups = instance_target_groups(reports, {"api1": "10.0.0.1", "api2": "10.0.0.2"})
    assert [g["targets"][0] for g in groups] == ["10.0.0.1:3000", "10.0.0.1:3001", "10.0.0.2:3000"]
    assert groups[1]["labels"] == {"host": "api1", "slot": "3001", "release": "1.1.0"}


def test_worker_metrics_port_is_offset_by_index():
    groups = instance_target_groups({"w1": report({"slot": 1, "release": "1.0.0"}, {"slot": 2, "release": "1.0.0"})},
                                    {"w1": "10.0.0.5"}, 9400)
    assert [g["targets"][0] for g in groups] == ["10.0.0.5:9401", "10.0.0.5:9402"]


def test_instances_that_do_not_belong_to_what_runs_are_left_out():
    reports = {"api1": report({"slot": 3000, "release": "1.0.0"}, {"slot": 3001, "release": "1.0.0", "current": False})}
    assert len(instance_target_groups(reports, {"api1": "10.0.0.1"})) == 1


def test_a_stopped_instance_that_is_still_enabled_stays_a_target():
    reports = {"api1": report({"slot": 3000, "release": "1.0.0", "running": False})}
    assert instance_target_groups(reports, {"api1": "10.0.0.1"})[0]["targets"] == ["10.0.0.1:3000"]


def test_no_instances_no_targets():
    assert instance_target_groups({"api1": report()}, {"api1": "10.0.0.1"}) == []


def test_records_give_the_same_targets_as_the_reports_they_describe():
    from ansible_collections.recete.stack.plugins.module_utils._monitoring import record_target_groups
    reports = {"api1": report({"slot": 3001, "release": "1.1.0"}, {"slot": 3000, "release": "1.1.0"})}
    records = [{"host": "api1", "slot": 3001, "release": "1.1.0", "address": "10.0.0.1"},
               {"host": "api1", "slot": 3000, "release": "1.1.0", "address": "10.0.0.1"}]
    assert record_target_groups(records) == instance_target_groups(reports, {"api1": "10.0.0.1"})
    assert [g["targets"][0] for g in record_target_groups(records, 9400)] == ["10.0.0.1:12400", "10.0.0.1:12401"]


def test_a_record_without_address_is_an_error():
    from ansible_collections.recete.stack.plugins.module_utils._monitoring import record_target_groups
    with pytest.raises(ValueError, match="host api2"):
        record_target_groups([{"host": "api2", "slot": 3000, "release": "1.0.0", "address": None}])
