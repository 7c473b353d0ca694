"""PostgreSQL primary and streaming replica (role recete.stack.postgresql).

Checks run against the real servers: listening sockets, settings read back
from pg_settings, roles and grants, replication of a write, and pg_hba.conf
refusing the app user from a host that is not a PgBouncer host. Variables
come from the role defaults < the lab's group_vars < the Molecule inventory.
"""
import functools
import os
import shlex
import sys
import time
import uuid

import pytest
import testinfra.utils.ansible_runner

sys.path.insert(0, os.path.join(os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd()), "tests", "support"))
from lab_settings import private_address, role_settings  # noqa: E402  (tests/support helper)

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = RUNNER.get_hosts("postgres")
PGBOUNCER_HOSTS = RUNNER.get_hosts("pgbouncer")

VERSION = "15"  # Debian 12 lab machines
DATA_DIR = f"/var/lib/postgresql/{VERSION}/main"
CONF_DIR = f"/etc/postgresql/{VERSION}/main"


_settings = role_settings(RUNNER, ["postgresql"], "postgresql")


def settings(host):
    return _settings(host.backend.get_hostname())


@functools.lru_cache(maxsize=None)
def address_of(name):
    return private_address(RUNNER.get_host(name))


def member_role(host):
    return settings(host)["postgresql_member_role"]


def primary_name():
    return next(h for h in testinfra_hosts if _settings(h)["postgresql_member_role"] == "primary")


def sql(host, query, db="postgres"):
    """A query as postgres over the local socket; returns stripped output."""
    with host.sudo("postgres"):
        out = host.check_output(f"psql -X -At -d {shlex.quote(db)} -c {shlex.quote(query)}")
    return out.strip()


def test_server_runs_on_debians_cluster(host):
    assert host.package(f"postgresql-{VERSION}").is_installed
    # Under Patroni, Patroni's instance of Debian's cluster runs it (test_patroni.py).
    patroni = settings(host).get("postgresql_patroni") is True
    service = host.service(f"patroni@{VERSION}-main" if patroni else f"postgresql@{VERSION}-main")
    assert service.is_running
    assert service.is_enabled


def test_listens_on_private_address_and_loopback_only(host):
    port = settings(host)["postgresql_port"]
    private = address_of(host.backend.get_hostname())
    assert host.socket(f"tcp://{private}:{port}").is_listening
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
    listening = {s for s in host.socket.get_listening_sockets() if s.endswith(f":{port}")}
    allowed = {f"tcp://{private}:{port}", f"tcp://127.0.0.1:{port}", f"tcp://::1:{port}", f"unix:///var/run/postgresql/.s.PGSQL.{port}"}
    assert listening <= allowed, listening - allowed


@pytest.mark.parametrize(
    ("name", "expected"),
    [("password_encryption", "scram-sha-256"), ("hot_standby", "on"), ("wal_level", "replica")],
)
def test_settings_in_effect(host, name, expected):
    assert sql(host, f"SHOW {name}") == expected


def test_connection_limits_in_effect(host):
    assert int(sql(host, "SHOW max_connections")) == int(settings(host)["postgresql_max_connections"])
    assert int(sql(host, "SHOW superuser_reserved_connections")) == int(
        settings(host)["postgresql_superuser_reserved_connections"])
    assert sql(host, "SELECT count(*) FROM pg_settings WHERE pending_restart") == "0"


def test_hba_admits_only_pgbouncer_hosts_and_members(host):
    with host.sudo():
        hba = host.file(f"{CONF_DIR}/pg_hba.conf")
        assert hba.user == "postgres"
        assert hba.mode == 0o640
        content = hba.content_string
    rules = [line.split() for line in content.splitlines() if line.strip() and not line.startswith("#")]
    assert all("trust" not in rule for rule in rules)
    host_rules = [rule for rule in rules if rule[0] in ("host", "hostssl")]
    app = settings(host)["postgresql_app_user"]
    app_rules = [rule for rule in host_rules if app in rule[2].split(",")]
    assert {rule[3] for rule in app_rules} == {f"{address_of(h)}/32" for h in PGBOUNCER_HOSTS}
    assert all(rule[-1] == "scram-sha-256" for rule in host_rules)
    # With TLS on the internal hops, every rule for another host asks for it.
    if RUNNER.get_variables(host.backend.get_hostname()).get("internal_tls_enabled"):
        remote = [rule for rule in host_rules if not rule[3].startswith(("127.", "::1"))]
        assert remote and all(rule[0] == "hostssl" for rule in remote), remote


def test_role_and_standby_state(host):
    in_recovery = sql(host, "SELECT pg_is_in_recovery()")
    with host.sudo():
        standby_signal = host.file(f"{DATA_DIR}/standby.signal").exists
    assert in_recovery == ("t" if member_role(host) == "replica" else "f")
    assert standby_signal is (member_role(host) == "replica")


def test_primary_streams_to_every_replica(host):
    if member_role(host) != "primary":
        pytest.skip("primary only")
    replicas = [h for h in testinfra_hosts if _settings(h)["postgresql_member_role"] == "replica"]
    rows = sql(host, "SELECT client_addr, state FROM pg_stat_replication").splitlines()
    streaming = {row.split("|")[0] for row in rows if row.endswith("|streaming")}
    assert streaming == {address_of(h) for h in replicas}
    assert sql(host, "SELECT count(*) FROM pg_replication_slots WHERE NOT active") == "0"


def test_replica_keeps_its_password_out_of_the_data_directory(host):
    if member_role(host) != "replica":
        pytest.skip("replica only")
    # primary_conninfo: pg_basebackup -R's in postgresql.auto.conf, or under Patroni its
    # own postgresql.conf in Debian's configuration directory, each with a passfile.
    patroni = settings(host).get("postgresql_patroni") is True
    with host.sudo():
        auto = host.file(f"/etc/postgresql/{VERSION}/main/postgresql.conf" if patroni
                         else f"{DATA_DIR}/postgresql.auto.conf").content_string
        pgpass = host.file(f"/var/lib/postgresql/{VERSION}-main.pgpass" if patroni else "/var/lib/postgresql/.pgpass")
        assert pgpass.mode == 0o600
        assert pgpass.user == "postgres"
    assert "passfile=" in auto
    assert settings(host)["postgresql_replication_password"] not in auto
    assert sql(host, "SELECT status FROM pg_stat_wal_receiver") == "streaming"


def test_write_on_primary_reaches_replica(host):
    if member_role(host) != "replica":
        pytest.skip("replica only")
    primary = RUNNER.get_host(primary_name())
    token = uuid.uuid4().hex
    sql(primary, "CREATE TABLE IF NOT EXISTS recete_replication_check (token text, at timestamptz DEFAULT now())")
    sql(primary, f"INSERT INTO recete_replication_check (token) VALUES ('{token}')")
    for _ in range(30):
        if sql(host, f"SELECT count(*) FROM recete_replication_check WHERE token = '{token}'") == "1":
            break
        time.sleep(0.5)
    else:
        pytest.fail("the row written on the primary did not reach the replica in 15 s")
    with pytest.raises(AssertionError):
        sql(host, "INSERT INTO recete_replication_check (token) VALUES ('x')")


def test_app_database_and_roles(host):
    if member_role(host) != "primary":
        pytest.skip("primary only")
    s = settings(host)
    app, db, auth = s["postgresql_app_user"], s["postgresql_app_db"], s["postgresql_pgbouncer_auth_user"]
    assert sql(host, f"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{db}'") == app
    assert sql(host, f"SELECT has_schema_privilege('{app}', 'public', 'CREATE')", db=db) == "t"
    flags = sql(host, f"SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles WHERE rolname = '{app}'")
    assert flags == "f|f|f|f"
    with host.sudo("postgres"):
        secret = host.check_output(f"psql -X -At -c \"SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = '{app}'\"")
    assert secret.strip() == "SCRAM-SHA-256$"
    # PgBouncer's auth function: definer rights, callable by the auth role only.
    assert sql(host, "SELECT prosecdef FROM pg_proc WHERE oid = 'pgbouncer.get_auth(text)'::regprocedure", db=db) == "t"
    assert sql(host, f"SELECT has_function_privilege('{auth}', 'pgbouncer.get_auth(text)', 'EXECUTE')", db=db) == "t"
    assert sql(host, f"SELECT has_function_privilege('{app}', 'pgbouncer.get_auth(text)', 'EXECUTE')", db=db) == "f"
    assert sql(host, "SELECT count(*) FROM pgbouncer.get_auth('postgres')", db=db) == "0", "never a superuser's secret"


def test_app_user_refused_from_a_host_that_is_not_pgbouncer(host):
    """From a replica (not a PgBouncer host) the app user cannot reach the primary."""
    if member_role(host) != "replica":
        pytest.skip("runs from a replica")
    s = settings(host)
    primary = address_of(primary_name())
    cmd = host.run(
        "PGCONNECT_TIMEOUT=5 PGPASSWORD=%s psql -X -At -h %s -p %s -U %s -d %s -c 'SELECT 1'"
        % (shlex.quote(s["postgresql_app_password"]), primary, s["postgresql_port"], s["postgresql_app_user"],
           s["postgresql_app_db"]))
    assert cmd.rc != 0
    assert "no pg_hba.conf entry" in cmd.stderr
