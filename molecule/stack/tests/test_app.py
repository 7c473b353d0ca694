"""The app tier (roles app_release, api, worker) on a running data tier.

Checks what playbooks/app.yml promises: the instances of each tier run as
planned (enabled == running, spread evenly), every API instance answers
/ready, the environment file is root-only, the units are hardened, a POST
/items lands in the primary, a job is processed by a worker into Postgres,
and /ready follows Redis and PgBouncer going away and coming back (the data
tier is always restored in a `finally`).

Requests are sent from the API hosts themselves (curl), to the address the
instance listens on.
"""
import json
import os
import re
import time
import uuid

import pytest
import testinfra
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
testinfra_hosts = sorted(set(RUNNER.get_hosts("api")) | set(RUNNER.get_hosts("worker")))

ENV_FILE = "/etc/recete/app.env"
API_PORTS = range(3000, 3008)
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateUsers": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
    "User": "recete",
    "Restart": "on-failure",
    "KillSignal": "15",
    # V8's JIT needs writable+executable memory: Node aborts with it.
    "MemoryDenyWriteExecute": "no",
}
# systemd-analyze security: 0 (locked down) .. 10 (unprotected).
MAX_EXPOSURE = 2.0


def lab_host(name):
    return testinfra.get_host("ansible://" + name, ansible_inventory=INVENTORY)


def group(name):
    return RUNNER.get_hosts(name)


def tier_of(host):
    groups = host.ansible.get_variables()["group_names"]
    return "api" if "api" in groups else "worker"


def unit_prefix(tier):
    return "recete-api" if tier == "api" else "recete-worker"


def instances(host, prefix):
    """{instance name: (active state, enabled)} of the template's instances."""
    enabled = set(host.check_output(
        "ls /etc/systemd/system/multi-user.target.wants/ 2>/dev/null | grep '^%s@' || true" % prefix).split())
    loaded = set(host.check_output(
        "systemctl list-units --all --plain --no-legend '%s@*.service' | awk '{print $1}'" % prefix).split())
    result = {}
    for unit in sorted(enabled | loaded):
        state = host.run("systemctl is-active %s" % unit).stdout.strip()
        result[unit[len(prefix) + 1:-len(".service")]] = (state, unit in enabled)
    return result


def show(host, unit, *props):
    out = host.check_output("systemctl show %s -p %s" % (unit, ",".join(props)))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def unit_env(host, unit):
    """The unit's Environment= settings (not the secrets file)."""
    env = show(host, unit, "Environment")["Environment"]
    return dict(item.split("=", 1) for item in env.split() if "=" in item)


def api_endpoints(host):
    """(address, port) of each running API instance of this host."""
    ends = []
    for port, (state, _) in instances(host, "recete-api").items():
        if state == "active":
            ends.append((unit_env(host, "recete-api@%s.service" % port)["HOST"], int(port)))
    return ends


def curl(host, method, url, body=None):
    """(status, parsed body) of one request made from `host`."""
    cmd = "curl -s -m 10 -o /tmp/recete-test-body -w '%%{http_code}' -X %s" % method
    if body is not None:
        cmd += " -H 'Content-Type: application/json' -d '%s'" % json.dumps(body)
    status = host.run(cmd + " " + url).stdout.strip()
    text = host.run("cat /tmp/recete-test-body").stdout
    try:
        return int(status or 0), json.loads(text) if text else None
    except ValueError:
        return int(status or 0), text


def first_api():
    for name in group("api"):
        h = lab_host(name)
        ends = api_endpoints(h)
        if ends:
            return h, ends[0]
    pytest.fail("no API instance runs")


def psql(sql):
    """Run SQL on the PostgreSQL primary as postgres; rows as lists of strings."""
    primary = [n for n in group("postgres")
               if lab_host(n).ansible.get_variables().get("postgresql_member_role") == "primary"][0]
    pg = lab_host(primary)
    db = pg.ansible.get_variables().get("postgresql_app_db", "recete")
    out = pg.check_output("sudo -u postgres psql -d %s -AtF '|' -c \"%s\"" % (db, sql))
    return [line.split("|") for line in out.splitlines() if line]


def wait_status(h, method, url, status, timeout, interval=1.0):
    """Repeat a request from `h` until it answers `status`; return (status, body)."""
    return wait_for(lambda: (lambda r: (r[0] == status, r))(curl(h, method, url)), timeout, interval)


def wait_for(predicate, timeout, interval=1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        ok, last = predicate()
        if ok:
            return last
        time.sleep(interval)
    pytest.fail("timed out after %s s; last: %r" % (timeout, last))


# --- per host -------------------------------------------------------------------

def test_instances_enabled_and_running(host):
    prefix = unit_prefix(tier_of(host))
    found = instances(host, prefix)
    for name, (state, enabled) in found.items():
        # Every enabled instance runs; nothing runs that is not enabled.
        assert (state == "active") == enabled, "%s@%s: %s, enabled=%s" % (prefix, name, state, enabled)
    if prefix == "recete-api":
        assert all(int(name) in API_PORTS for name in found), found
    else:
        assert all(name.isdigit() and int(name) >= 1 for name in found), found


def test_env_file_is_root_only(host):
    env = host.file(ENV_FILE)
    assert env.is_file
    assert env.user == "root"
    assert env.group == "root"
    assert env.mode == 0o600


def test_release_layout(host):
    current = host.file("/opt/recete/current")
    assert current.is_symlink
    target = current.linked_to
    assert target.startswith("/opt/recete/releases/")
    version = host.file(target + "/VERSION").content_string.strip()
    assert target.endswith("/" + version)
    assert host.file(target + "/src/server.js").user == "root"
    # The migration ran for this release (one host ran it, every host records it).
    assert host.file("/var/lib/recete/migrations/" + version).exists


def test_units_are_hardened(host):
    prefix = unit_prefix(tier_of(host))
    running = [n for n, (state, _) in instances(host, prefix).items() if state == "active"]
    for name in running:
        unit = "%s@%s.service" % (prefix, name)
        props = show(host, unit, *(list(HARDENING) + ["SystemCallFilter", "TimeoutStopUSec"]))
        for key, want in HARDENING.items():
            assert props[key] == want, "%s %s=%r, want %r" % (unit, key, props[key], want)
        assert props["SystemCallFilter"], "no system call filter on " + unit
        # systemd must not kill the app before its own drain timeout ends.
        stop_s = int(re.match(r"^(\d+)s$", props["TimeoutStopUSec"]).group(1))
        assert stop_s * 1000 > int(unit_env(host, unit)["SHUTDOWN_TIMEOUT_MS"])
        score = host.check_output("systemd-analyze security --no-pager %s | tail -n 1" % unit)
        exposure = float(re.search(r":\s*([\d.]+)\s", score).group(1))
        assert exposure <= MAX_EXPOSURE, score


def test_api_instances_ready(host):
    if tier_of(host) != "api":
        pytest.skip("not an API host")
    for address, port in api_endpoints(host):
        status, body = curl(host, "GET", "http://%s:%d/ready" % (address, port))
        assert status == 200, body
        assert body["status"] == "ready"
        assert body["checks"] == {"postgres": "ok", "postgres_ro": "ok", "redis": "ok"}
        status, body = curl(host, "GET", "http://%s:%d/health" % (address, port))
        assert status == 200 and body["instance"].endswith(":%d" % port)


# --- the tier as a whole --------------------------------------------------------

@pytest.mark.parametrize("tier", ["api", "worker"])
def test_instances_spread_evenly(tier):
    counts = {}
    for name in group(tier):
        found = instances(lab_host(name), unit_prefix(tier))
        counts[name] = sum(1 for state, _ in found.values() if state == "active")
    if tier == "api":
        assert sum(counts.values()) >= 1, counts
    assert max(counts.values()) - min(counts.values()) <= 1, counts


def test_items_land_in_the_primary():
    h, (address, port) = first_api()
    name = "testinfra-" + uuid.uuid4().hex[:12]
    status, item = curl(h, "POST", "http://%s:%d/items" % (address, port), {"name": name, "payload": {"k": 1}})
    assert status == 201, item
    rows = psql("SELECT name, created_by FROM items WHERE id = %d" % int(item["id"]))
    assert rows == [[name, item["created_by"]]]
    # And it reads back through the read-only entry (the replica may lag a moment).
    wait_status(h, "GET", "http://%s:%d/items/%s" % (address, port, item["id"]), 200, timeout=10, interval=0.5)


def run_job(h, address, port, timeout=15):
    values = [1, 2, 3.5, time.time() % 100]
    # Right after Redis restarts, /ready (PING) passes while writes still fail
    # with NOREPLICAS until a replica has resynced (min-replicas-to-write):
    # the enqueue is retried within the timeout.
    _, job = wait_for(lambda: (lambda r: (r[0] == 202, r))(
        curl(h, "POST", "http://%s:%d/jobs" % (address, port), {"type": "sum", "data": {"values": values}})),
        timeout=timeout, interval=1.0)

    def done():
        status, body = curl(h, "GET", "http://%s:%d/jobs/%s" % (address, port, job["id"]))
        return body is not None and body.get("state") == "completed", body
    body = wait_for(done, timeout=timeout, interval=0.5)
    assert body["result"] == pytest.approx(sum(values))
    rows = psql("SELECT result, worker FROM job_results WHERE job_id = '%s'" % job["id"])
    assert len(rows) == 1 and float(rows[0][0]) == pytest.approx(sum(values))
    assert rows[0][1].split(":")[0] in group("worker")
    return body


def test_jobs_are_processed_by_a_worker():
    running = sum(1 for name in group("worker")
                  for state, _ in instances(lab_host(name), "recete-worker").values() if state == "active")
    if not running:
        pytest.skip("no worker runs (worker_replicas=0)")
    h, (address, port) = first_api()
    run_job(h, address, port)


def outage(service, hosts, failing_check):
    """Stop `service` on `hosts`: /ready turns 503 naming the check, then recovers after the restart."""
    h, (address, port) = first_api()
    try:
        for name in hosts:
            lab_host(name).check_output("sudo systemctl stop %s" % service)
        _, payload = wait_status(h, "GET", "http://%s:%d/ready" % (address, port), 503, timeout=30)
        assert payload["status"] == "not_ready"
        assert payload["checks"][failing_check] != "ok", payload
    finally:
        for name in hosts:
            lab_host(name).run("sudo systemctl start %s" % service)
    wait_status(h, "GET", "http://%s:%d/ready" % (address, port), 200, timeout=90)
    return h, address, port


def test_ready_follows_redis():
    h, address, port = outage("redis-server", group("redis"), "redis")
    # Workers must consume again after Redis came back (a known BullMQ failure mode).
    if any(state == "active" for name in group("worker") for state, _ in instances(lab_host(name), "recete-worker").values()):
        run_job(h, address, port, timeout=60)


def test_ready_follows_pgbouncer():
    outage("pgbouncer", group("pgbouncer"), "postgres")
