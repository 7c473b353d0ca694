"""deploy.yml -e web_version on the lab: the web tier alone, under open-loop page and asset loads.

Runs after test_deploy.py (file order), before test_rate_limit.py (which leaves the API's rate
limit on). 1.0.0 -> 1.1.0 (two `next build`s: different asset names, so while both releases serve
a page names assets only its release has, and nginx retries such a 404 on another instance; 1.1.0
downloaded from a URL held to its SHA-256), then a release whose /ready always answers 503, rolled
back, then rollback.yml -e rollback_tiers=web back to 1.0.0. Page loads and the assets they name go
through the load balancer (tests/support/web_lab.py's WebLoad): every non-2xx answer and broken
connection counts as failed, never resent - 0 failed. The API tier is left as it was.
"""
import contextlib
import functools
import http.server
import os
import re
import sys
import threading

import testinfra
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
sys.path.insert(0, os.path.join(PROJECT, "tests", "support"))
from lab_run import Playbooks  # noqa: E402
from web_lab import WebLoad, assert_web_serving, web_artifact  # noqa: E402

HOSTS = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("web")
CANARY = ["-e", "rollout_canary_seconds=3"]
playbook = Playbooks(INVENTORY, PROJECT)


def api_units():
    found = {}
    for name in testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY).get_hosts("api"):
        host = testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}", sudo=True)
        found[name] = host.check_output("systemctl list-units 'recete-api@*' --state=running --no-legend --plain")
    return found


def test_the_web_tier_runs_1_0_0():
    web_artifact("1.0.0")
    assert_web_serving(INVENTORY, HOSTS, "1.0.0", len(HOSTS))


@contextlib.contextmanager
def release_store(path):
    """The artifact's directory served over HTTP on the controller's loopback, as a release store
    (an S3 bucket, a CI's artifacts) would serve it: yields the artifact's URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=os.path.dirname(path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield "http://127.0.0.1:%d/%s" % (server.server_address[1], os.path.basename(path))
    finally:
        server.shutdown()
        server.server_close()


def test_a_web_deploy_1_1_0_downloaded_under_load_fails_no_page_and_no_asset(tmp_path):
    artifact = web_artifact("1.1.0")
    with open(artifact + ".sha256", encoding="utf-8") as published:
        sha256 = published.read().split()[0]
    api_before = api_units()
    # Downloaded from a URL and held to its SHA-256 (web_release_artifact_url), not read from the build directory.
    download = tmp_path / os.path.basename(artifact)
    with release_store(artifact) as url, WebLoad(INVENTORY) as load:
        out = playbook("playbooks/deploy.yml", "-e", "web_version=1.1.0", "-e", f"web_release_artifact={download}",
                       "-e", f"web_release_artifact_url={url}", "-e", f"web_release_artifact_sha256={sha256}", *CANARY)
    assert download.read_bytes() == open(artifact, "rb").read()
    assert_web_serving(INVENTORY, HOSTS, "1.1.0", len(HOSTS))
    assert {"1.0.0", "1.1.0"} <= set(load.stats["versions"]), load.stats
    # The summary's first line names the release this run changed: the web tier's.
    assert "deploy: changed; web release 1.0.0 -> 1.1.0" in out and "batch 1 (canary)" in out
    # Assets one release lacks, asked of an instance of the other: nginx's 404 retry (router access log).
    lb = testinfra.get_host(f"ansible://lb1?ansible_inventory={INVENTORY}", sudo=True)
    retried = lb.run("grep -c 'upstream_status=404, 200' /var/log/nginx/recete-lb.access.log").stdout.strip()
    print("assets answered after a 404 of the other release (all runs on lb1): %s" % retried)
    assert api_units() == api_before        # only the web tier changed
    for name in HOSTS:
        assert testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}", sudo=True).file(
            "/opt/recete-web/previous").linked_to == "/opt/recete-web/releases/1.0.0"


def test_a_web_release_that_never_gets_ready_is_rolled_back_under_load():
    web_artifact("1.2.0-notready", fault="not-ready")
    with WebLoad(INVENTORY):
        out = playbook("playbooks/deploy.yml", "-e", "web_version=1.2.0-notready", "-e", "web_ready_timeout=10",
                       *CANARY, expect_rc=2)
    flat = " ".join(out.split())
    assert re.search(r"api\d:31\d\d \(1\.2\.0-notready\) is not ready", flat), flat[-3000:]
    assert "Rolled back" in flat and "web instances" in flat
    assert_web_serving(INVENTORY, HOSTS, "1.1.0", len(HOSTS))


def test_rollback_yml_takes_the_web_tier_back_to_its_previous_release_under_load():
    # After the failed deploy above, /opt/recete-web/previous still names 1.0.0 (current never moved).
    api_before = api_units()
    with WebLoad(INVENTORY) as load:
        out = playbook("rollback.yml", "-e", "rollback_tiers=web", *CANARY)
    assert "rollback: changed; web release 1.1.0 -> 1.0.0" in out, out[-3000:]
    assert_web_serving(INVENTORY, HOSTS, "1.0.0", len(HOSTS))
    assert {"1.0.0", "1.1.0"} <= set(load.stats["versions"]), load.stats
    assert api_units() == api_before        # the API and the workers kept their release
