"""deploy.yml, rollback.yml and site.yml on the lab, under load through the load balancer.

The tests run in order (pytest keeps file order) and build on each other:
1.0.0 -> 1.1.0 -> the same again -> a release that never gets ready (rolled
back) -> a release whose migration fails (stopped before any instance) ->
rollback.yml to 1.0.0 while scale.yml meets the lock -> site.yml with 1.1.0 and
fewer instances. Every operation that changes instances runs while an
open-loop client (bench/_lab.py's OpenLoop) sends GET and POST requests and
`sum` jobs through the load balancer; it reuses keep-alive connections but
never resends a request that got no answer, so a dropped request counts.
"""
import os
import re
import subprocess
import sys
import threading
import time

import pytest
import testinfra

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
API_HOSTS = ["api1", "api2"]
WORKER_HOSTS = ["worker1", "worker2"]
sys.path.insert(0, os.path.join(PROJECT, "bench"))
from _lab import OpenLoop  # noqa: E402  (bench/ holds the one load generator)
sys.path.insert(0, os.path.join(PROJECT, "tests", "support"))
from releases import app_artifact  # noqa: E402  (built ahead by tools/test, else here)

# Short canary and load windows: the lab shares two cores with the test run.
CANARY = ["-e", "rollout_canary_seconds=5"]
RATE = 20
# site.yml's plays that the app tier's rolling change leaves unchanged (tags of playbooks/site.yml).
UNCHANGED_TAGS = "recete_common,recete_firewall,recete_postgresql,recete_pgbouncer,recete_redis,recete_backup,recete_monitoring"


def on(name):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}", sudo=True)


def playbook(name, *extra, expect_rc=0):
    cmd = ["ansible-playbook", "-i", INVENTORY, os.path.join(PROJECT, "playbooks", name), *extra]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT, timeout=1200)
    out = run.stdout + "\n" + run.stderr
    assert run.returncode == expect_rc, f"rc={run.returncode}\n{out[-6000:]}"
    return out


def lb_address():
    return on("lb1").ansible("setup", "gather_subset=network")["ansible_facts"]["ansible_default_ipv4"]["address"]


class Load:
    """OpenLoop through the LB around one operation; asserts nothing was dropped and every job came back right."""

    def __enter__(self):
        self.load = OpenLoop(lb_address(), rate=RATE, job_share=0.1, connections=8, max_seconds=900)
        self.load.start()
        self.load.phase = "operation"
        return self.load

    def __exit__(self, *exc):
        self.load.stop()
        if exc[0] is None:
            stats = self.load.stats("operation")
            assert stats["sent"] > 0
            assert self.load.failed() == 0, stats
            jobs = self.load.check_jobs(timeout=120)["operation"]
            assert jobs["acked"] > 0 and jobs["acked"] == jobs["done_right"], jobs
        return False


def api_instances():
    """{host: {port: release}} of the running API instances, from systemd (the pinned working directory)."""
    found = {}
    for name in API_HOSTS:
        host = on(name)
        units = re.findall(r"recete-api@(\d+)\.service",
                           host.check_output("systemctl list-units 'recete-api@*' --state=running --no-legend --plain"))
        found[name] = {int(port): os.path.basename(host.check_output(
            f"readlink /proc/$(systemctl show -p MainPID --value recete-api@{port})/cwd")) for port in units}
    return found


def worker_releases():
    releases = []
    for name in WORKER_HOSTS:
        host = on(name)
        for index in re.findall(r"recete-worker@(\d+)\.service",
                                host.check_output("systemctl list-units 'recete-worker@*' --state=running --no-legend --plain")):
            releases.append(os.path.basename(host.check_output(
                f"readlink /proc/$(systemctl show -p MainPID --value recete-worker@{index})/cwd")))
    return releases


def router():
    """The nginx that holds the upstream block: the router when the LB runs one, else nginx itself."""
    lb = on("lb1")
    if lb.file("/etc/nginx/recete/router.conf").exists:
        return "-c /etc/nginx/recete/router.conf", "/run/recete-router/nginx.pid"
    return "", "/run/nginx.pid"


def upstream_active():
    config_arg, _pid = router()
    config = on("lb1").check_output(f"nginx {config_arg} -T 2>/dev/null")
    block = re.search(r"upstream recete_api \{(.*?)\}", config, re.S).group(1)
    servers = re.findall(r"^\s*server\s+(\S+)([^;]*);", block, re.M)
    return sorted(a for a, opts in servers if "down" not in opts)


def nginx_workers():
    _config_arg, pid = router()
    return sorted(on("lb1").check_output(f"pgrep -P $(cat {pid})").split())


def addresses():
    return {name: on(name).ansible("setup", "gather_subset=network")["ansible_facts"]["ansible_default_ipv4"]["address"]
            for name in API_HOSTS}


def assert_serving(release, count):
    """`count` API instances, balanced, all on `release`, exactly those in the upstream; workers on it too."""
    instances = api_instances()
    assert sum(len(v) for v in instances.values()) == count, instances
    assert {r for ports in instances.values() for r in ports.values()} == {release}, instances
    addr = addresses()
    assert upstream_active() == sorted(f"{addr[h]}:{p}" for h, ports in instances.items() for p in ports)
    assert set(worker_releases()) == {release}
    for name in API_HOSTS:
        assert on(name).file("/opt/recete/current").linked_to == f"/opt/recete/releases/{release}"


def recap_changed(out):
    return {host: int(n) for host, n in re.findall(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)", out, re.M)}


def test_start_from_two_api_instances_and_two_workers_of_1_0_0():
    playbook("scale.yml", "-e", "api_replicas=2", "-e", "worker_replicas=2")
    assert_serving("1.0.0", 2)


def test_deploy_1_1_0_under_load_drops_nothing():
    app_artifact("1.1.0")
    with Load():
        out = playbook("deploy.yml", "-e", "app_version=1.1.0", *CANARY)
    assert_serving("1.1.0", 2)
    # The summary, in order: the canary batch first, every host before -> after with releases.
    assert "deploy: changed; release 1.0.0 -> 1.1.0" in out
    assert re.search(r"api api1: \d+ \(1\.0\.0\) -> \d+ \(1\.1\.0\)", out), out[-3000:]
    assert "batch 1 (canary)" in out
    for name in API_HOSTS:
        host = on(name)
        assert host.file("/opt/recete/releases/1.0.0").is_directory
        assert host.file("/opt/recete/previous").linked_to == "/opt/recete/releases/1.0.0"


def test_the_same_version_again_changes_nothing_and_does_not_reload():
    workers = nginx_workers()
    out = playbook("deploy.yml", "-e", "app_version=1.1.0", *CANARY)
    changed = recap_changed(out)
    assert changed and set(changed.values()) == {0}, changed
    assert nginx_workers() == workers
    assert_serving("1.1.0", 2)


def test_a_release_that_never_gets_ready_is_rolled_back_under_load():
    app_artifact("1.2.0-notready", fault="not-ready")
    with Load():
        # A gate shorter than the default 60 s: the failure, and the old release's instances
        # ready again in the rollback, take seconds.
        out = playbook("deploy.yml", "-e", "app_version=1.2.0-notready", "-e", "api_ready_timeout=20", *CANARY,
                       expect_rc=2)
    flat = " ".join(out.split())
    assert re.search(r"api\d:\d+ \(1\.2\.0-notready\) is not ready", flat), flat[-3000:]
    assert "HTTP 503" in flat and "Rolled back" in flat
    assert_serving("1.1.0", 2)


def test_a_canary_that_answers_5xx_is_rolled_back():
    app_artifact("1.2.1-errors", fault="server-errors")
    # The canary passes /ready but answers 500 to every /items request: the
    # access log shows it, and the deploy rolls back before a second batch.
    load = OpenLoop(lb_address(), rate=RATE, connections=8, max_seconds=900)
    load.start()
    try:
        out = playbook("deploy.yml", "-e", "app_version=1.2.1-errors", "-e", "rollout_canary_seconds=8", expect_rc=2)
    finally:
        load.stop()
    flat = " ".join(out.split())
    assert re.search(r"canary \S+: \d+ of \d+ requests answered 5xx", flat), flat[-3000:]
    assert "Rolled back" in flat
    assert_serving("1.1.0", 2)


def test_a_failed_migration_stops_before_any_instance_changes():
    app_artifact("1.3.0-nomigration", fault="failing-migration")
    before = api_instances()
    pids = {name: on(name).check_output("pgrep -xf '/usr/bin/node src/server.js' | sort") for name in API_HOSTS}
    out = playbook("deploy.yml", "-e", "app_version=1.3.0-nomigration", expect_rc=2)
    flat = " ".join(out.split())
    assert "schema migration of release 1.3.0-nomigration failed" in flat, flat[-3000:]
    assert "injected migration failure" in flat
    assert api_instances() == before
    assert {name: on(name).check_output("pgrep -xf '/usr/bin/node src/server.js' | sort") for name in API_HOSTS} == pids


def test_rollback_to_the_previous_release_while_scale_meets_the_lock():
    lock_dir = on("lb1").file("/var/lib/recete/lock")
    result = {}

    def rollback():
        result["out"] = playbook("rollback.yml", *CANARY)

    with Load():
        thread = threading.Thread(target=rollback)
        thread.start()
        deadline = time.monotonic() + 300
        while not lock_dir.exists and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert lock_dir.exists, "rollback.yml never took the lock"
        refused = " ".join(playbook("scale.yml", "-e", "api_replicas=2", expect_rc=2).split())
        assert "held by" in refused and "rollback.yml app_version=1.0.0" in refused, refused[-2000:]
        started = time.monotonic()
        waited = playbook("scale.yml", "-e", "api_replicas=2", "-e", "lock_wait=900")
        thread.join(timeout=900)
    assert "out" in result, "rollback.yml did not finish"
    assert "rollback: changed; release 1.1.0 -> 1.0.0" in result["out"], result["out"][-3000:]
    assert "scale: unchanged" in waited and time.monotonic() - started > 1
    assert_serving("1.0.0", 2)
    assert not lock_dir.exists


def test_site_with_a_new_release_and_fewer_instances_drains_under_load():
    playbook("scale.yml", "-e", "api_replicas=4")
    assert_serving("1.0.0", 4)
    # What this checks is site.yml's rolling replacement of the app tier, with the load
    # balancer's and the web tier's plays after it. The plays that would only run unchanged
    # here are skipped (their idempotence is the stack scenario's): the data tier's, the base
    # configuration, the firewall and monitoring - 436 s of the test's 440 s otherwise.
    with Load():
        out = playbook("site.yml", "-e", f"app_release_artifact={app_artifact('1.1.0')}", "-e", "api_replicas=2", *CANARY,
                       "--skip-tags", UNCHANGED_TAGS)
    assert_serving("1.1.0", 2)
    assert "site: changed; release 1.0.0 -> 1.1.0" in out
    assert "drains (s):" in out


def test_every_operation_left_one_audit_line():
    out = " ".join(playbook("audit.yml", "-e", "audit_last=50").split())
    for line in ("deploy.yml app_version=1.1.0", "deploy.yml app_version=1.2.0-notready",
                 "deploy.yml app_version=1.3.0-nomigration", "rollback.yml app_version=1.0.0", "site.yml"):
        assert line in out, out[-3000:]
    assert "rolled back" in out
