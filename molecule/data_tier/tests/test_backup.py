"""Backups of PostgreSQL with pgBackRest (role recete.stack.pgbackrest) and restore.yml,
and the off-host RDB copies of Redis (role recete.stack.redis_backup).

On the lab: the repository host (group backup) holds a full backup and the
WAL of every member, the timers are armed and their service runs, and the
drill the operator cares about - writes, a dropped table, then a
point-in-time restore to one second before the drop onto a scratch host
(an app host, which runs no PostgreSQL) - brings back every row. A re-run of
the backup playbook afterwards changes nothing.
"""
import json
import os
import re
import sys
import time
import uuid

import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
sys.path.insert(0, os.path.join(PROJECT, "tests", "support"))
from lab_run import Playbooks, changed_per_host, lab_host  # noqa: E402  (tests/support helper)
from lab_tls import redis_cli_tls  # noqa: E402  (tests/support helper)
playbook = Playbooks(INVENTORY, PROJECT)
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
REPO = RUNNER.get_hosts("backup")[0]
PRIMARY = [h for h in RUNNER.get_hosts("postgres") if RUNNER.get_variables(h).get("postgresql_member_role") == "primary"][0]
# A host outside the data tier: the restore must not need a PostgreSQL member.
SCRATCH = RUNNER.get_hosts("worker")[-1]
STANZA = "recete"
DB = "recete"
testinfra_hosts = [REPO]


def on(name):
    return lab_host(INVENTORY, name)


def pgbackrest(args):
    return on(REPO).check_output(f"runuser -u postgres -- pgbackrest --stanza={STANZA} {args}")


def backups():
    return json.loads(pgbackrest("--output=json info"))[0]["backup"]


def primary_sql(sql):
    return on(PRIMARY).check_output(f"runuser -u postgres -- psql -d {DB} -XAtc \"{sql}\"")


def test_a_full_backup_and_archiving_that_works():
    info = json.loads(pgbackrest("--output=json info"))[0]
    assert info["status"]["code"] == 0, info["status"]
    assert any(b["type"] == "full" for b in info["backup"]), info["backup"]
    # check forces a WAL switch on the primary and waits for it in the repository.
    pgbackrest("check")


def test_repository_and_configuration_are_not_world_readable(host):
    repo = host.file("/var/lib/pgbackrest")
    assert repo.user == "postgres" and repo.mode & 0o007 == 0, oct(repo.mode)
    for name in [REPO, PRIMARY]:
        conf = on(name).file("/etc/pgbackrest/pgbackrest.conf")
        assert conf.mode & 0o007 == 0, (name, oct(conf.mode))


def test_the_timers_are_armed_and_their_service_takes_a_backup():
    repo = on(REPO)
    for kind in ("full", "incr"):
        timer = repo.service(f"recete-backup-{kind}.timer")
        assert timer.is_enabled and timer.is_running, kind
    before = len(backups())
    repo.check_output("systemctl start recete-backup@incr.service")
    after = backups()
    assert len(after) == before + 1 and after[-1]["type"] == "incr", after[-1]


def test_point_in_time_restore_to_one_second_before_a_dropped_table():
    table = "drill_" + uuid.uuid4().hex[:8]
    primary_sql(f"CREATE TABLE {table} (n int)")
    for _ in range(3):
        primary_sql(f"INSERT INTO {table} SELECT generate_series(1, 1000)")
    primary_sql(f"INSERT INTO {table} SELECT generate_series(1, 234)")
    expected = int(primary_sql(f"SELECT count(*) FROM {table}"))
    time.sleep(2)
    target = primary_sql("SELECT to_char((now() - interval '1 second') AT TIME ZONE 'UTC', "
                         "'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
    primary_sql(f"DROP TABLE {table}")
    # The drop's commit must be archived for recovery to know it passed the target.
    primary_sql("SELECT pg_switch_wal()")
    started = time.monotonic()
    out = playbook("restore.yml", "-e", f"restore_host={SCRATCH}", "-e", f"restore_target_time='{target}'")
    took = time.monotonic() - started
    scratch = on(SCRATCH)
    try:
        restored = scratch.check_output(
            f"runuser -u postgres -- psql -h /var/run/postgresql -p 5433 -d {DB} -XAtc 'SELECT count(*) FROM {table}'")
        print(f"restore.yml to {target} on {SCRATCH}: {restored} of {expected} rows in {took:.1f} s")
        assert int(restored) == expected
        assert re.search(r"Restored to .* on %s" % SCRATCH, out)
        # The live cluster is untouched: the table stays dropped there.
        assert primary_sql(f"SELECT to_regclass('{table}') IS NULL") == "t"
    finally:
        scratch.run("systemctl stop recete-restore.service")
        scratch.run("rm -rf /var/lib/postgresql/recete-restore")


def test_a_rerun_after_the_drill_changes_nothing():
    out = playbook("playbooks/backup.yml")
    changed = changed_per_host(out)
    assert changed and not any(changed.values()), changed


def redis_cli(name, args, user="admin"):
    password = RUNNER.get_variables(name)["redis_admin_password"]
    tls = redis_cli_tls(RUNNER.get_variables(name))
    return on(name).check_output(f"REDISCLI_AUTH='{password}' redis-cli --no-auth-warning {tls}--user {user} {args}")


def test_redis_rdb_copied_off_host_restores_the_data():
    """A key written on the master is in the newest off-host copy: the copy,
    loaded into a throwaway redis-server on a socket (the documented restore,
    without touching the live servers), answers with it."""
    master = next(n for n in RUNNER.get_hosts("redis") if redis_cli(n, "ROLE").splitlines()[0] == "master")
    key, value = "bull:backup-drill:" + uuid.uuid4().hex[:8], uuid.uuid4().hex
    redis_cli(master, f"SET {key} {value}")
    repo = on(REPO)
    repo.check_output("systemctl start recete-redis-backup.service")
    copies = repo.check_output("ls -1t /var/lib/recete-redis-backup/").split()
    assert copies and copies[0].startswith("dump-") and copies[0].endswith(".rdb"), copies
    assert oct(repo.file("/var/lib/private/recete-redis-backup").mode) == "0o700"
    # Pulled from a replica: no Sentinel takes the backup host for a replica.
    repo_address = RUNNER.get_variables(REPO)["ansible_host"]
    for name in RUNNER.get_hosts("sentinel"):
        password = RUNNER.get_variables(name)["redis_sentinel_password"]
        replicas = on(name).check_output(
            f"REDISCLI_AUTH='{password}' redis-cli --no-auth-warning {redis_cli_tls(RUNNER.get_variables(name))}"
            "-p 26379 SENTINEL replicas recete")
        assert repo_address not in replicas, (name, replicas)
    scratch = "/tmp/recete-redis-restore"
    repo.check_output(f"rm -rf {scratch} && mkdir -m 0700 {scratch} && cp /var/lib/recete-redis-backup/{copies[0]} {scratch}/dump.rdb")
    repo.check_output(f"redis-server --port 0 --unixsocket {scratch}/redis.sock --dir {scratch} --dbfilename dump.rdb "
                      f"--daemonize yes --pidfile {scratch}/redis.pid --save ''")
    try:
        got = ""
        for _ in range(50):
            got = repo.run(f"redis-cli -s {scratch}/redis.sock GET {key}").stdout.strip()
            if got:
                break
            time.sleep(0.1)
        assert got == value
    finally:
        repo.run(f"redis-cli -s {scratch}/redis.sock SHUTDOWN NOSAVE")
        repo.run(f"rm -rf {scratch}")
        redis_cli(master, f"DEL {key}")
