"""TLS on the data tier's internal hops (recete.stack.internal_tls, on in the lab).

What a client of each hop sees, from another machine of the lab: PostgreSQL and
PgBouncer present a certificate of the internal CA that verifies for the
address the client dialled (and not for another member's); a plain connection
from another host is refused and a verified one admitted; replication and
PgBouncer's server connections really run over TLS (pg_stat_ssl); the hosts'
keys are private.
"""
import functools
import os
import shlex
import sys

import pytest
import testinfra.utils.ansible_runner

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
sys.path.insert(0, os.path.join(PROJECT, "tests", "support"))
from lab_run import lab_host  # noqa: E402  (tests/support helper)
from lab_settings import private_address  # noqa: E402  (tests/support helper)

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
POSTGRES_HOSTS = RUNNER.get_hosts("postgres")
POOLERS = RUNNER.get_hosts("pgbouncer")
testinfra_hosts = POSTGRES_HOSTS + POOLERS

TLS_DIR = "/etc/recete/tls"
CA = f"{TLS_DIR}/ca.crt"
LAB = RUNNER.get_variables(POSTGRES_HOSTS[0])

pytestmark = pytest.mark.skipif(not LAB.get("internal_tls_enabled"), reason="internal_tls_enabled is off")


def on(name):
    """The lab machine, commands run with sudo."""
    return lab_host(INVENTORY, name)


@functools.lru_cache(maxsize=None)
def address_of(name):
    return private_address(on(name))


@functools.lru_cache(maxsize=None)
def pgbouncer_client():
    """A machine to reach PgBouncer from: an app host once site.yml has given it the CA (the host
    firewall lets only app hosts in), else a PostgreSQL member (the data tier alone has no firewall)."""
    for name in RUNNER.get_hosts("api"):
        if on(name).file(CA).exists:
            return name
    return POSTGRES_HOSTS[0]


def sql(name, query, db="postgres"):
    return on(name).check_output(f"runuser -u postgres -- psql -d {db} -XAtc {shlex.quote(query)}")


def leader():
    leaders = [h for h in POSTGRES_HOSTS if sql(h, "SELECT pg_is_in_recovery()") == "f"]
    assert len(leaders) == 1, leaders
    return leaders[0]


def handshake(client, address, port, verify_ip):
    """openssl s_client from CLIENT: PostgreSQL's STARTTLS, the internal CA, the name checked against VERIFY_IP."""
    return on(client).run(
        f"echo | timeout 20 openssl s_client -brief -starttls postgres -connect {address}:{port} "
        f"-CAfile {CA} -verify_return_error -verify_ip {verify_ip}")


def psql(client, address, port, user, password, db, sslmode):
    conninfo = f"host={address} port={port} user={user} dbname={db} sslmode={sslmode} sslrootcert={CA}"
    return on(client).run(
        f"PGCONNECT_TIMEOUT=10 PGPASSWORD={shlex.quote(str(password))} psql -X -At "
        f"-d {shlex.quote(conninfo)} -c 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'")


def test_keys_are_private_and_certificates_public(host):
    with host.sudo():
        key = host.file(f"{TLS_DIR}/host.key")
        assert (key.user, key.group, key.mode) == ("root", "ssl-cert", 0o640)
        for name in ("ca.crt", "host.crt"):
            assert host.file(f"{TLS_DIR}/{name}").mode == 0o644
        # The CA's key never reaches a host.
        assert host.run(f"grep -rl 'PRIVATE KEY' {TLS_DIR}").stdout.split() == [f"{TLS_DIR}/host.key"]


@pytest.mark.parametrize("member", POSTGRES_HOSTS)
def test_postgresql_certificate_verifies_for_its_address_only(member):
    client = POOLERS[0]
    good = handshake(client, address_of(member), LAB.get("postgresql_port", 5432), address_of(member))
    assert good.rc == 0, good.stdout + good.stderr
    assert "Verification: OK" in good.stdout + good.stderr
    other = next(h for h in POSTGRES_HOSTS if h != member)
    wrong = handshake(client, address_of(member), LAB.get("postgresql_port", 5432), address_of(other))
    assert wrong.rc != 0, "the certificate of %s also verified as %s" % (member, other)


@pytest.mark.parametrize("pooler", POOLERS)
def test_pgbouncer_certificate_verifies_for_its_address(pooler):
    result = handshake(pgbouncer_client(), address_of(pooler), 6432, address_of(pooler))
    assert result.rc == 0, result.stdout + result.stderr
    assert "Verification: OK" in result.stdout + result.stderr


def test_postgresql_refuses_a_plain_connection_from_a_pooler():
    pooler, primary = POOLERS[0], leader()
    args = (pooler, address_of(primary), LAB.get("postgresql_port", 5432), LAB["postgresql_app_user"],
            LAB["postgresql_app_password"], LAB["postgresql_app_db"])
    plain = psql(*args, sslmode="disable")
    assert plain.rc != 0
    assert "no encryption" in plain.stderr, plain.stderr
    verified = psql(*args, sslmode="verify-full")
    assert verified.rc == 0, verified.stderr
    assert verified.stdout.strip() == "t"


@pytest.mark.parametrize("pooler", POOLERS)
def test_pgbouncer_refuses_a_plain_connection_from_another_host(pooler):
    args = (pgbouncer_client(), address_of(pooler), 6432, LAB["postgresql_app_user"],
            LAB["postgresql_app_password"], LAB["postgresql_app_db"])
    plain = psql(*args, sslmode="disable")
    assert plain.rc != 0, plain.stdout
    verified = psql(*args, sslmode="verify-full")
    # The query ran on the server behind PgBouncer, over PgBouncer's own TLS connection.
    assert verified.rc == 0, verified.stderr
    assert verified.stdout.strip() == "t"


def test_replication_runs_over_tls():
    primary = leader()
    rows = sql(primary, "SELECT r.application_name, s.ssl, s.version FROM pg_stat_replication r "
                        "JOIN pg_stat_ssl s USING (pid)").splitlines()
    assert len(rows) == len(POSTGRES_HOSTS) - 1, rows
    for row in rows:
        name, ssl, version = row.split("|")
        assert ssl == "t", row
        assert version in ("TLSv1.2", "TLSv1.3"), row


def test_pgbouncer_server_connections_run_over_tls():
    primary = leader()
    for pooler in POOLERS:
        # A query through each pooler, so it holds a server connection to the primary.
        result = on(pooler).run(
            "PGCONNECT_TIMEOUT=10 PGPASSWORD=%s psql -X -At -h 127.0.0.1 -p 6432 -U %s -d %s -c 'SELECT 1'"
            % (shlex.quote(str(LAB["postgresql_app_password"])), LAB["postgresql_app_user"], LAB["postgresql_app_db"]))
        assert result.rc == 0, result.stderr
    poolers = ",".join(f"'{address_of(p)}'" for p in POOLERS)
    rows = sql(primary, "SELECT host(a.client_addr), s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                        f"WHERE host(a.client_addr) IN ({poolers})").splitlines()
    assert {row.split("|")[0] for row in rows} == {address_of(p) for p in POOLERS}, rows
    assert all(row.endswith("|t") for row in rows), rows


@pytest.mark.parametrize("pooler", POOLERS)
def test_pgbouncer_verifies_servers_with_the_internal_ca(pooler):
    """verify-full, or verify-ca with an entry of several servers (PgBouncer < 1.25 cannot check those names)."""
    out = on(pooler).check_output(
        "runuser -u postgres -- psql -X -At -F '|' -h /var/run/postgresql -p 6432 -U pgbouncer pgbouncer -c 'SHOW CONFIG'")
    config = {row.split("|")[0]: row.split("|")[1] for row in out.splitlines()}
    several = "," in on(pooler).check_output("grep -E '^[a-z_]+ = host=[^ ]*,' /etc/pgbouncer/pgbouncer.ini || true")
    assert config["server_tls_sslmode"] == ("verify-ca" if several else "verify-full")
    assert config["server_tls_ca_file"] == CA
    assert config["client_tls_sslmode"] == "prefer"
