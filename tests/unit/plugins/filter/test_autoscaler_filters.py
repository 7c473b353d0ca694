"""Filters of the autoscaler role: the schedules check and where the controller's collections are."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.recete.stack.plugins.filter.autoscaler import (
    autoscaler_collection_sources,
    autoscaler_schedule_problems,
)


def test_collection_sources_take_the_first_path_in_search_order():
    listing = {
        "/repo/.collections/ansible_collections": {"recete.stack": {"version": "0.4.0"}},
        "/venv/site-packages/ansible_collections": {"recete.stack": {"version": "0.1.0"},
                                                    "ansible.posix": {"version": "2.1.0"}},
    }
    assert autoscaler_collection_sources(listing, ["recete.stack", "ansible.posix"]) == [
        {"name": "recete.stack", "src": "/repo/.collections/ansible_collections/recete/stack"},
        {"name": "ansible.posix", "src": "/venv/site-packages/ansible_collections/ansible/posix"},
    ]


def test_collection_sources_name_what_is_missing():
    with pytest.raises(AnsibleFilterError, match="community.general are not installed"):
        autoscaler_collection_sources({"/p": {"recete.stack": {}}}, ["recete.stack", "community.general"])


def test_schedule_problems_take_the_max_of_each_tier():
    tiers = {"api": {"max": "10"}, "worker": {"max": 20}}
    ok = [{"name": "bf", "weekly": {"from": "fri 00:00", "until": "mon 06:00"}, "floors": {"api": 10}}]
    assert autoscaler_schedule_problems(ok, tiers) == []
    bad = [{"name": "bf", "weekly": {"from": "fri 00:00", "until": "mon 06:00"}, "floors": {"api": 11}}]
    assert "above its max 10" in autoscaler_schedule_problems(bad, tiers)[0]
    assert autoscaler_schedule_problems(None, tiers) == []
