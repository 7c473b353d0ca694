"""read_hosts and read_entries: which replicas the app reads from, and their PgBouncer entry names."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.recete.stack.plugins.filter.read_pool import read_entries, read_hosts

GROUPS = {"pgbouncer": ["pgb1", "pgb2"], "postgres": ["pg1", "pg2", "pg3"], "db": ["dbA", "dbB"]}
HOSTVARS = {
    "pgb1": {}, "pgb2": {},
    "pg1": {"postgresql_member_role": "primary"},
    "pg2": {"postgresql_member_role": "replica"},
    "pg3": {"postgresql_member_role": "replica"},
    "dbA": {"postgresql_member_role": "primary"},
    "dbB": {"postgresql_member_role": "replica"},
}


def test_every_replica_of_the_postgresql_group_in_inventory_order():
    assert read_hosts(GROUPS, HOSTVARS) == ["pg2", "pg3"]


def test_the_pooler_s_postgresql_group_and_explicit_hosts_win():
    hostvars = dict(HOSTVARS, pgb1={"pgbouncer_postgresql_group": "db"})
    assert read_hosts(GROUPS, hostvars) == ["dbB"]
    hostvars = dict(HOSTVARS, pgb1={"pgbouncer_ro_hosts": ["ro.example.net"]})
    assert read_hosts(GROUPS, hostvars) == ["ro.example.net"]


@pytest.mark.parametrize("pooler", [{"postgresql_patroni": True}, {"pgbouncer_follow_patroni": "True"}])
def test_under_patroni_every_member_reads_whatever_the_inventory_says_leads(pooler):
    # Any member may lead after a failover; the app's read pool skips the one not in recovery.
    assert read_hosts(GROUPS, dict(HOSTVARS, pgb1=pooler)) == ["pg1", "pg2", "pg3"]
    assert read_hosts(GROUPS, dict(HOSTVARS, pgb1={"postgresql_patroni": True, "pgbouncer_follow_patroni": False})) \
        == ["pg2", "pg3"]


def test_no_replica_and_no_pooler_mean_no_read_host():
    assert read_hosts({"postgres": ["pg1"]}, HOSTVARS) == []
    assert read_hosts({}, {}) == []


def test_entry_names_are_prefix_and_host_made_safe():
    assert read_entries(["pg2", "PG-3.example.net"], "recete_ro") == [
        {"name": "recete_ro_pg2", "host": "pg2"},
        {"name": "recete_ro_pg_3_example_net", "host": "PG-3.example.net"},
    ]
    assert read_entries([], "recete_ro") == []


@pytest.mark.parametrize("hosts", [["pg-2", "pg_2"], ["--"]])
def test_names_that_collide_or_vanish_are_refused(hosts):
    with pytest.raises(AnsibleFilterError, match="rename one of them"):
        read_entries(hosts, "recete_ro")
