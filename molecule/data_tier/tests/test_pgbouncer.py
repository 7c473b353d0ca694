"""PgBouncer in front of the primary and replica (role recete.stack.pgbouncer).

Checks run against the real pooler: sockets, file modes, the entries in
SHOW DATABASES, a write through the read-write entry read back through the
read-only one, the file-descriptor limit of the running process, an
online RELOAD that restores a changed pool size without a restart, and the
systemd sandbox (reload by SIGHUP and a restart still work in it). Variables
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
from sandbox import assert_sandboxed  # noqa: E402  (tests/support helper)

RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"])
testinfra_hosts = RUNNER.get_hosts("pgbouncer")
POSTGRES_HOSTS = RUNNER.get_hosts("postgres")

_settings = role_settings(RUNNER, ["postgresql", "pgbouncer"], "postgresql")


def settings(host):
    return _settings(host.backend.get_hostname())


@functools.lru_cache(maxsize=None)
def address_of(name):
    return private_address(RUNNER.get_host(name))


def member(role):
    return [h for h in POSTGRES_HOSTS if RUNNER.get_variables(h).get("postgresql_member_role") == role]


def admin(host, command):
    """A command on the admin console: unix socket, built-in user, no password."""
    port = settings(host)["pgbouncer_listen_port"]
    with host.sudo("postgres"):
        out = host.check_output(
            f"psql -X -At -F '|' -h /var/run/postgresql -p {port} -U pgbouncer pgbouncer -c {shlex.quote(command)}")
    return [line.split("|") for line in out.splitlines()]


def app_sql(host, entry, query):
    s = settings(host)
    return host.run(
        "PGCONNECT_TIMEOUT=10 PGPASSWORD=%s psql -X -At -h 127.0.0.1 -p %s -U %s -d %s -c %s"
        % (shlex.quote(str(s["postgresql_app_password"])), s["pgbouncer_listen_port"], s["postgresql_app_user"],
           entry, shlex.quote(query)))


def main_pid(host):
    return host.check_output("systemctl show --property MainPID --value pgbouncer").strip()


def test_service(host):
    assert host.package("pgbouncer").is_installed
    service = host.service("pgbouncer")
    assert service.is_running
    assert service.is_enabled


def test_listens_on_private_address_and_loopback_only(host):
    port = settings(host)["pgbouncer_listen_port"]
    private = address_of(host.backend.get_hostname())
    assert host.socket(f"tcp://{private}:{port}").is_listening
    assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
    tcp = {s for s in host.socket.get_listening_sockets() if s.startswith("tcp") and s.endswith(f":{port}")}
    assert tcp == {f"tcp://{private}:{port}", f"tcp://127.0.0.1:{port}"}


@pytest.mark.parametrize(
    ("path", "owner", "mode"),
    [
        ("/etc/pgbouncer/pgbouncer.ini", "root", 0o640),
        ("/etc/pgbouncer/pgbouncer-restart.ini", "root", 0o640),
        ("/etc/pgbouncer/userlist.txt", "postgres", 0o640),
        ("/etc/pgbouncer/pgbouncer_hba.conf", "root", 0o640),
    ],
)
def test_config_files_not_world_readable(host, path, owner, mode):
    with host.sudo():
        f = host.file(path)
        assert f.is_file
        assert f.user == owner
        assert f.group == "postgres"
        assert f.mode == mode


def test_pooling_settings(host):
    s = settings(host)
    config = {row[0]: row[1] for row in admin(host, "SHOW CONFIG")}
    assert config["pool_mode"] == "transaction"
    # hba: SCRAM for every login, the admin console from this host only (below).
    assert config["auth_type"] == "hba"
    assert config["auth_hba_file"] == "/etc/pgbouncer/pgbouncer_hba.conf"
    assert int(config["max_client_conn"]) == int(s["pgbouncer_max_client_conn"])
    assert int(config["default_pool_size"]) == int(s["pgbouncer_default_pool_size"])


def test_entries_point_at_primary_and_replica(host):
    s = settings(host)
    hosts = {row[0]: row[1] for row in admin(host, "SHOW DATABASES")}
    assert hosts[s["pgbouncer_rw_name"]] == address_of(member("primary")[0])
    # Under Patroni any member may lead tomorrow: every member reads (the app's read
    # pool skips the leader), and the rw entry follows the leader (test_patroni.py).
    readers = POSTGRES_HOSTS if s.get("postgresql_patroni") is True else member("replica")
    assert hosts[s["pgbouncer_ro_name"]] == ",".join(address_of(r) for r in readers or member("primary"))
    # Each reader has its own entry, for the app's read pool.
    for reader in readers:
        assert hosts[f'{s["pgbouncer_ro_name"]}_{reader}'] == address_of(reader)


def test_file_limit_fits_max_client_conn(host):
    s = settings(host)
    with host.sudo():
        limits = host.file(f"/proc/{main_pid(host)}/limits").content_string
    soft = int(next(line for line in limits.splitlines() if line.startswith("Max open files")).split()[3])
    entries = 2 + len(member("replica"))
    needed = int(s["pgbouncer_max_client_conn"]) + entries * int(s["pgbouncer_default_pool_size"])
    assert soft >= needed


def test_write_through_rw_is_read_through_ro(host):
    s = settings(host)
    token = uuid.uuid4().hex
    for query in ("CREATE TABLE IF NOT EXISTS recete_pgbouncer_check (token text, at timestamptz DEFAULT now())",
                  f"INSERT INTO recete_pgbouncer_check (token) VALUES ('{token}')"):
        result = app_sql(host, s["pgbouncer_rw_name"], query)
        assert result.rc == 0, result.stderr
    for _ in range(30):
        result = app_sql(host, s["pgbouncer_ro_name"],
                         f"SELECT count(*) FROM recete_pgbouncer_check WHERE token = '{token}'")
        if result.rc == 0 and result.stdout.strip() == "1":
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"row not readable through {s['pgbouncer_ro_name']}: {result.stderr}")
    # The read entries refuse writes whatever server they reach (the primary too).
    for entry in [s["pgbouncer_ro_name"]] + [f'{s["pgbouncer_ro_name"]}_{m}' for m in POSTGRES_HOSTS
                                             if s.get("postgresql_patroni") is True]:
        refused = app_sql(host, entry, "INSERT INTO recete_pgbouncer_check (token) VALUES ('x')")
        assert "read-only transaction" in refused.stderr, (entry, refused.stdout, refused.stderr)


def test_reload_applies_pool_size_online(host):
    """SET changes the running pool size; RELOAD puts pgbouncer.ini's back, same process."""
    s = settings(host)
    configured = int(s["pgbouncer_default_pool_size"])
    pid = main_pid(host)
    admin(host, f"SET default_pool_size = {configured + 1}")
    sizes = {row[0]: int(row[5]) for row in admin(host, "SHOW DATABASES")}
    assert sizes[s["pgbouncer_rw_name"]] == configured + 1
    admin(host, "RELOAD")
    sizes = {row[0]: int(row[5]) for row in admin(host, "SHOW DATABASES")}
    assert sizes[s["pgbouncer_rw_name"]] == configured
    assert main_pid(host) == pid


def test_sandboxed_and_still_reloads_on_sighup_and_restarts(host):
    """The drop-in recete-hardening.conf (before it, 5.6): SIGHUP (systemctl reload) re-reads
    pgbouncer.ini in the same process, and a restart comes back serving through the rw entry."""
    s = settings(host)
    assert_sandboxed(host, "pgbouncer", 2.0)
    configured = int(s["pgbouncer_default_pool_size"])
    pid = main_pid(host)
    admin(host, f"SET default_pool_size = {configured + 1}")
    with host.sudo():
        host.check_output("systemctl reload pgbouncer")
    for _ in range(50):
        sizes = {row[0]: int(row[5]) for row in admin(host, "SHOW DATABASES")}
        if sizes[s["pgbouncer_rw_name"]] == configured:
            break
        time.sleep(0.1)
    assert sizes[s["pgbouncer_rw_name"]] == configured, "SIGHUP did not re-read pgbouncer.ini"
    assert main_pid(host) == pid
    with host.sudo():
        host.check_output("systemctl restart pgbouncer")
    assert main_pid(host) not in ("0", pid)
    assert_sandboxed(host, "pgbouncer", 2.0)
    for _ in range(50):
        answer = app_sql(host, s["pgbouncer_rw_name"], "SELECT 1")
        if answer.rc == 0:
            break
        time.sleep(0.2)
    assert answer.rc == 0 and answer.stdout.strip() == "1", answer.stderr


# --- the admin console answers on this host only -----------------------------------

def stats_login(client, address, database="pgbouncer"):
    """psql on client to PgBouncer at address as the stats user, with its right password."""
    s = _settings(testinfra_hosts[0])
    return client.run(
        "PGCONNECT_TIMEOUT=10 PGPASSWORD=%s psql -X -At -h %s -p %s -U %s -d %s -c 'SHOW VERSION'"
        % (shlex.quote(str(s["pgbouncer_stats_password"])), shlex.quote(address), s["pgbouncer_listen_port"],
           s["pgbouncer_stats_user"], database))


def other_host():
    """A machine of the lab that is no pooler and has psql (a PostgreSQL member)."""
    return RUNNER.get_host(POSTGRES_HOSTS[0])


def test_admin_console_refuses_tcp_from_another_host(host):
    private = address_of(host.backend.get_hostname())
    refused = stats_login(other_host(), private)
    assert refused.rc != 0, refused.stdout
    # The HBA file's reject line, not a wrong password or an unknown user.
    assert "login rejected" in refused.stderr, refused.stderr
    # The same host reaches the pools through the same listener: only the admin console is refused.
    s = settings(host)
    pooled = other_host().run(
        "PGCONNECT_TIMEOUT=10 PGPASSWORD=%s psql -X -At -h %s -p %s -U %s -d %s -c 'SELECT 1'"
        % (shlex.quote(str(s["postgresql_app_password"])), private, s["pgbouncer_listen_port"],
           s["postgresql_app_user"], s["pgbouncer_rw_name"]))
    assert pooled.rc == 0 and pooled.stdout.strip() == "1", pooled.stderr


def test_admin_console_accepts_loopback_and_socket(host):
    loopback = stats_login(host, "127.0.0.1")
    assert loopback.rc == 0, loopback.stderr
    socket = stats_login(host, "/var/run/postgresql")
    assert socket.rc == 0, socket.stderr
    # The built-in user on the socket (the role's RELOAD handler, the follower).
    assert admin(host, "SHOW VERSION")[0][0].startswith("PgBouncer")


def test_console_users_are_stored_as_scram_secrets_not_passwords(host):
    s = settings(host)
    with host.sudo():
        userlist = host.file("/etc/pgbouncer/userlist.txt").content_string
    entries = dict(line.split(" ", 1) for line in userlist.splitlines() if line.startswith('"'))
    for user, password in (("pgbouncer_admin_user", "pgbouncer_admin_password"),
                           ("pgbouncer_stats_user", "pgbouncer_stats_password")):
        secret = entries['"%s"' % s[user]]
        assert secret.startswith('"SCRAM-SHA-256$4096:'), (user, secret[:20])
        assert str(s[password]) not in userlist, password
    # The secret checks the password: the right one logs in (above), a wrong one does not.
    wrong = host.run("PGCONNECT_TIMEOUT=10 PGPASSWORD=not-the-stats-password psql -X -At -h 127.0.0.1 -p %s -U %s "
                     "-d pgbouncer -c 'SHOW VERSION'" % (s["pgbouncer_listen_port"], s["pgbouncer_stats_user"]))
    assert wrong.rc != 0 and "SASL authentication failed" in wrong.stderr, wrong.stderr
