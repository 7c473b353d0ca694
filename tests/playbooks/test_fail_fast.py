"""Bad requests are refused on the controller, before any host is contacted.

The inventory's hosts are in TEST-NET-1 (192.0.2.0/24, RFC 5737): nothing
answers there, so a playbook that tried to connect would print UNREACHABLE
(after a 2 s connect timeout) instead of the message that names the mistake.
"""
import os
import subprocess

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOSTS = {
    "lb": ["lb1"], "api": ["api1", "api2"], "worker": ["worker1"],
    "postgres": ["pg1"], "pgbouncer": ["pgbouncer1"], "redis": ["redis1"], "sentinel": ["redis1"],
}


def unreachable_inventory(directory, hosts):
    addresses = {}
    children = {}
    for group, names in hosts.items():
        for name in names:
            addresses.setdefault(name, "192.0.2.%d" % (len(addresses) + 10))
        children[group] = {"hosts": {name: {"ansible_host": addresses[name]} for name in names}}
    path = directory / "hosts.yml"
    path.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_ssh_common_args": "-o ConnectTimeout=2", "app_release_artifact_dir": "/nonexistent"},
        "children": children}}))
    return str(path)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    return unreachable_inventory(tmp_path_factory.mktemp("unreachable"), HOSTS)


@pytest.fixture(scope="module")
def web_inventory(tmp_path_factory):
    """The same hosts with a web tier beside the API (as the lab has it)."""
    return unreachable_inventory(tmp_path_factory.mktemp("unreachable-web"), dict(HOSTS, web=["api1", "api2"]))


def run(inventory, playbook, *args):
    proc = subprocess.run(["ansible-playbook", "-i", inventory, playbook, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=180,
                          env=dict(os.environ, ANSIBLE_FORCE_COLOR="0", NO_COLOR="1"))
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


@pytest.mark.parametrize("playbook", ["scale.yml"])
@pytest.mark.parametrize("assignment,message", [
    ("api_replicas=-1", "api_replicas must be at least 1, got -1"),
    ("api_replicas=abc", "api_replicas must be a whole number, got 'abc'"),
    ("api_replicas=1.5", "api_replicas must be a whole number, got '1.5'"),
    ("api_replicas=5.0", "api_replicas must be a whole number, got '5.0'"),
    ("api_replicas=1e3", "api_replicas must be a whole number, got '1e3'"),
    ("api_replicas=100000", "api_replicas=100000 exceeds the capacity of the hosts"),
    ("worker_replicas=-3", "worker_replicas must be at least 0, got -3"),
])
def test_a_bad_count_is_refused_without_contacting_a_host(inventory, playbook, assignment, message):
    rc, out = run(inventory, playbook, "-e", assignment)
    assert rc == 2, out[-2000:]
    assert message in out, out[-2000:]
    assert "UNREACHABLE" not in out and "unreachable=1" not in out, out[-2000:]


@pytest.mark.parametrize("assignment,message", [
    ("api_replicas=1e3", "api_replicas must be a whole number, got '1e3'"),
    ("worker_replicas=-3", "worker_replicas must be at least 0, got -3"),
])
def test_site_checks_the_counts_before_its_first_play(inventory, assignment, message):
    # site.yml's first play over the hosts (common) would meet them unreachable.
    rc, out = run(inventory, "site.yml", "-e", assignment)
    assert rc == 2 and message in out, out[-2000:]
    assert "UNREACHABLE" not in out and "unreachable=1" not in out, out[-2000:]


@pytest.mark.parametrize("playbook,args,message", [
    ("scale.yml", ["-e", "api_replicas=5", "--limit", "api"], "scale.yml takes no --limit (got --limit api)"),
    ("scale.yml", ["-e", "worker_replicas=2", "--limit", "worker1"], "scale.yml takes no --limit (got --limit worker1)"),
    ("deploy.yml", ["-e", "app_version=1.0.1", "--limit", "lb"], "deploy.yml takes no --limit (got --limit lb)"),
    ("rollback.yml", ["--limit", "api1"], "rollback.yml takes no --limit (got --limit api1)"),
    ("site.yml", ["--limit", "api2"], "--limit api2 selects api2 of the app tier"),
])
def test_a_limit_that_cuts_the_rolling_change_is_refused(inventory, playbook, args, message):
    rc, out = run(inventory, playbook, *args)
    assert rc == 2, out[-2000:]
    assert message in out and "Nothing was changed" in out, out[-2000:]
    assert "UNREACHABLE" not in out and "unreachable=1" not in out, out[-2000:]


def test_a_limit_to_the_data_tier_passes_the_check(inventory):
    # site.yml --limit pg1 is allowed: the check passes and the run goes on to
    # contact pg1, which (here) is unreachable - the proof the check let it through.
    rc, out = run(inventory, "site.yml", "--limit", "pg1")
    assert "selects" not in out and "takes no --limit" not in out, out[-2000:]
    assert rc != 0 and "UNREACHABLE" in out, out[-2000:]


@pytest.fixture(scope="module")
def lab_inventory(tmp_path_factory, inventory):
    """The unreachable hosts with the lab's settings and secrets (good ones)."""
    path = tmp_path_factory.mktemp("unreachable-lab")
    (path / "hosts.yml").write_text(open(inventory, encoding="utf-8").read())
    (path / "group_vars").symlink_to(os.path.join(REPO, "inventories", "lab", "group_vars"))
    return str(path / "hosts.yml")


@pytest.mark.parametrize("extra,message", [
    ({"redis_app_password": "CHANGE-ME"}, "redis_app_password (redis1) is a placeholder"),
    ({"postgresql_app_password": "too-short"}, "postgresql_app_password (pg1) is shorter than 16 characters"),
    ({"postgresql_rewind_password": "a-block-scalar-secret\n"}, "postgresql_rewind_password (pg1) holds a line break"),
    ({"pgbouncer_stats_password": "lab-pgbouncer-admin-password"},
     "pgbouncer_stats_password (pgbouncer1) has the same value as pgbouncer_admin_password"),
])
def test_a_bad_secret_is_refused_without_contacting_a_host(lab_inventory, extra, message):
    import json
    rc, out = run(lab_inventory, "site.yml", "-e", json.dumps(extra))
    assert rc == 2, out[-2000:]
    assert message in out and "Nothing was changed" in out, out[-2000:]
    assert list(extra.values())[0].strip() not in out, "a secret's value was printed"
    assert "UNREACHABLE" not in out and "unreachable=1" not in out, out[-2000:]


def test_the_lab_secrets_pass_and_the_example_placeholders_do_not(lab_inventory):
    rc, out = run(lab_inventory, "site.yml")
    # Past every check, the first play contacts the hosts: unreachable here.
    assert "Nothing was changed" not in out and "UNREACHABLE" in out, out[-2000:]
    rc, out = run(os.path.join(REPO, "inventories", "example", "hosts.yml"), "site.yml")
    assert rc == 2 and "redis_admin_password (redis-1.example.internal) is a placeholder" in out, out[-2000:]
    assert "UNREACHABLE" not in out, out[-2000:]


@pytest.mark.parametrize("extra,message", [
    ({"pgbouncer_extra_settings": {"auth_type": "trust"}},
     "pgbouncer_extra_settings sets auth_type, which the role manages (use pgbouncer_auth_method)"),
    ({"redis_config_extra": {"bind": "0.0.0.0"}}, "redis_config_extra sets bind, which the role manages (use redis_bind_address)"),
    ({"api_env_extra": {"HOST": "0.0.0.0"}}, "api_env_extra sets HOST, which the role manages (use api_listen_address)"),
    ({"worker_env_extra": {"GREETING": "hi\nExecStartPre=/bin/true"}}, "the value of GREETING holds a line break"),
    ({"redis_port": 70000}, "redis_port must be a port between 1 and 65535, got 70000"),
    ({"pgbouncer_listen_port": "abc"}, "pgbouncer_listen_port must be a port between 1 and 65535, got abc"),
    ({"worker_concurrency": 0}, "worker_concurrency must be a whole number of at least 1, got 0"),
    ({"firewall_ssh_networks": ["10.0.0.0/33"]}, "firewall_ssh_networks: '10.0.0.0/33' is not an IP network"),
    ({"firewall_extra_services": [{"name": "x", "on_groups": ["api"], "ports": [0]}]},
     "firewall_extra_services x: port 0 is outside 1-65535"),
])
def test_a_managed_key_in_an_extra_or_a_bad_port_or_count_is_refused(lab_inventory, extra, message):
    import json
    rc, out = run(lab_inventory, "site.yml", "-e", json.dumps(extra))
    assert rc == 2 and message in out and "Nothing was changed" in out, out[-2000:]
    assert "UNREACHABLE" not in out and "unreachable=1" not in out, out[-2000:]


@pytest.mark.parametrize("published,message", [
    (None, "recete-app-9.9.9.tar.gz has no checksum: publish"),
    ("0" * 64, "recete-app-9.9.9.tar.gz does not match its checksum"),
])
def test_a_release_without_a_matching_checksum_is_refused(lab_inventory, tmp_path, published, message):
    artifact = tmp_path / "recete-app-9.9.9.tar.gz"
    artifact.write_bytes(b"not the release")
    if published:
        (tmp_path / "recete-app-9.9.9.tar.gz.sha256").write_text("%s  %s\n" % (published, artifact.name))
    rc, out = run(lab_inventory, "deploy.yml", "-e", "app_version=9.9.9", "-e", "app_release_artifact_dir=%s" % tmp_path)
    assert rc == 2 and message in out and "Nothing was changed" in out, out[-2000:]
    assert "UNREACHABLE" not in out and "unreachable=1" not in out, out[-2000:]


@pytest.mark.parametrize("playbook,args,message", [
    ("rollback.yml", ["-e", "rollback_tiers=wbe"], "rollback_tiers names the tiers to roll back: api (the API and the"),
    ("rollback.yml", ["-e", "rollback_tiers=api,"], None),
    ("rollback.yml", ["-e", "rollback_tiers=web"], "rollback of the web tier needs hosts in group web (found 0)"),
])
def test_a_rollback_of_a_bad_tier_is_refused_without_contacting_a_host(inventory, playbook, args, message):
    rc, out = run(inventory, playbook, *args)
    if message is None:
        # api, with a trailing comma: a good request, so the run goes on to the first API host.
        assert "rollback_tiers names" not in out and "UNREACHABLE" in out, out[-2000:]
        return
    assert rc == 2 and message in out and "Nothing was changed" in out, out[-2000:]
    assert "UNREACHABLE" not in out and "unreachable=1" not in out, out[-2000:]


@pytest.fixture(scope="module")
def artifact_server(tmp_path_factory):
    """A web release artifact served over HTTP on loopback (as a release store would)."""
    import functools
    import hashlib
    import http.server
    import threading
    root = tmp_path_factory.mktemp("release-store")
    body = b"a web release artifact"
    (root / "recete-web-9.9.9.tar.gz").write_bytes(body)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"url": "http://127.0.0.1:%d/recete-web-9.9.9.tar.gz" % server.server_address[1],
           "sha256": hashlib.sha256(body).hexdigest(), "body": body}
    server.shutdown()
    server.server_close()


def deploy_web_from(web_inventory, tmp_path, url, sha256=None):
    dest = tmp_path / "recete-web-9.9.9.tar.gz"
    args = ["-e", "web_version=9.9.9", "-e", "web_release_artifact=%s" % dest, "-e", "web_release_artifact_url=%s" % url]
    if sha256 is not None:
        args += ["-e", "web_release_artifact_sha256=%s" % sha256]
    return dest, run(web_inventory, "deploy.yml", *args)


def test_a_web_artifact_url_without_its_sha256_is_refused(web_inventory, tmp_path, artifact_server):
    dest, (rc, out) = deploy_web_from(web_inventory, tmp_path, artifact_server["url"])
    assert rc == 2 and "web_release_artifact_url needs web_release_artifact_sha256" in out, out[-2000:]
    assert not dest.exists() and "UNREACHABLE" not in out, out[-2000:]


def test_a_web_artifact_that_does_not_match_its_sha256_is_refused(web_inventory, tmp_path, artifact_server):
    dest, (rc, out) = deploy_web_from(web_inventory, tmp_path, artifact_server["url"], "0" * 64)
    assert rc == 2 and "did not match" in out, out[-2000:]
    assert not dest.exists() and "UNREACHABLE" not in out, out[-2000:]


def test_a_web_artifact_is_downloaded_and_checked_before_the_first_host(web_inventory, tmp_path, artifact_server):
    dest, (rc, out) = deploy_web_from(web_inventory, tmp_path, artifact_server["url"], artifact_server["sha256"])
    assert dest.read_bytes() == artifact_server["body"], out[-2000:]
    # Past every check on the controller, the run goes on to take the lock on lb1: unreachable here.
    assert rc != 0 and "UNREACHABLE" in out and "Nothing was changed" not in out, out[-2000:]
