"""The reference app's release artifact runs on each Debian's own Node.js.

Debian 12 ships Node 18 and Debian 13 Node 20: the artifact is built once on
the controller and must start on both and answer /health.
"""
import glob
import json
import os
import subprocess
import time

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]
).get_hosts("all")

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
EXPECTED_NODE_MAJOR = {"bookworm": 18, "trixie": 20}
SMOKE_DIR = "/opt/recete-smoke"
SMOKE_UNIT = "recete-smoke"
SMOKE_PORT = 3999


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """The release tarball: the one the test runner built, else build one now."""
    path = os.environ.get("RECETE_APP_ARTIFACT")
    if not path:
        out = tmp_path_factory.mktemp("release")
        subprocess.run([os.path.join(PROJECT, "examples/app/scripts/build-release.sh"), str(out)],
                       check=True, capture_output=True)
        path = glob.glob(str(out / "recete-app-*.tar.gz"))[0]
    return path


def test_node_is_the_distribution_one(host):
    codename = host.system_info.codename
    major = int(host.check_output("node --version").lstrip("v").split(".")[0])
    assert major == EXPECTED_NODE_MAJOR[codename]


def test_artifact_answers_health(host, artifact):
    version = os.path.basename(artifact)[len("recete-app-"):-len(".tar.gz")]
    host.ansible("ansible.builtin.file", f"path={SMOKE_DIR} state=directory mode=0755",
                 become=True, check=False)
    host.ansible("ansible.builtin.unarchive", f"src={artifact} dest={SMOKE_DIR}",
                 become=True, check=False)
    release = f"{SMOKE_DIR}/recete-app-{version}"
    try:
        # Postgres and Redis are unreachable on purpose: liveness must not need them.
        host.run_expect([0], " ".join([
            "sudo systemd-run", f"--unit={SMOKE_UNIT}", "--uid=recete", "--gid=recete",
            f"-E PORT={SMOKE_PORT}", "-E HOST=127.0.0.1", "-E APP_INSTANCE=smoke",
            "-E DATABASE_URL=postgres://nobody@127.0.0.1:1/none",
            "-E REDIS_URL=redis://127.0.0.1:1",
            f"/usr/bin/node {release}/src/server.js"]))
        body = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            res = host.run(f"curl -fsS http://127.0.0.1:{SMOKE_PORT}/health")
            if res.rc == 0:
                body = json.loads(res.stdout)
                break
            time.sleep(0.5)
        assert body is not None, host.run(f"sudo journalctl -u {SMOKE_UNIT} --no-pager -n 30").stdout
        assert body["status"] == "ok"
        assert body["version"] == version
        assert body["instance"] == "smoke"
    finally:
        host.run(f"sudo systemctl stop {SMOKE_UNIT}")
        host.run(f"sudo systemctl reset-failed {SMOKE_UNIT}")
        host.run(f"sudo rm -rf {SMOKE_DIR}")
