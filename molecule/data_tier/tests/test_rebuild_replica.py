"""rebuild_replica.yml: a replica rebuilt from the primary streams again, and a
re-run of postgresql.yml afterwards changes nothing."""
import os
import sys
import time
import uuid

import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
sys.path.insert(0, os.path.join(PROJECT, "tests", "support"))
from lab_run import Playbooks, changed_per_host, lab_host  # noqa: E402  (tests/support helper)
playbook = Playbooks(INVENTORY, PROJECT)
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
MEMBERS = RUNNER.get_hosts("postgres")
PRIMARY = [h for h in MEMBERS if RUNNER.get_variables(h).get("postgresql_member_role") == "primary"][0]
REPLICA = [h for h in MEMBERS if RUNNER.get_variables(h).get("postgresql_member_role") == "replica"][-1]
testinfra_hosts = [REPLICA]


def on(name):
    return lab_host(INVENTORY, name)


def sql(name, query, db="recete"):
    return on(name).check_output(f"runuser -u postgres -- psql -d {db} -XAtc \"{query}\"")


def test_a_rebuilt_replica_streams_again_and_a_rerun_changes_nothing():
    started_before = sql(REPLICA, "SELECT pg_postmaster_start_time()")
    playbook("rebuild_replica.yml", "-e", f"replica={REPLICA}")
    # A new copy: a new server start, and a standby again.
    assert sql(REPLICA, "SELECT pg_postmaster_start_time()") != started_before
    assert sql(REPLICA, "SELECT pg_is_in_recovery()") == "t"
    token = uuid.uuid4().hex
    sql(PRIMARY, "CREATE TABLE IF NOT EXISTS recete_rebuild_check (token text)")
    sql(PRIMARY, f"INSERT INTO recete_rebuild_check VALUES ('{token}')")
    deadline = time.monotonic() + 20
    while sql(REPLICA, f"SELECT count(*) FROM recete_rebuild_check WHERE token = '{token}'") != "1":
        assert time.monotonic() < deadline, "the rebuilt replica does not replay the primary's writes"
        time.sleep(0.5)
    streaming = sql(PRIMARY, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'", db="postgres")
    assert REPLICA.replace("-", "_") in streaming.split(), streaming
    out = playbook("playbooks/postgresql.yml")
    changed = changed_per_host(out)
    assert changed and not any(changed.values()), changed
