"""rebuild_sentinel.yml: a Sentinel whose state is thrown away is seeded again
from the others, every Sentinel then counts the same peers and replicas (no
duplicate of the rebuilt one), the quorum holds, and a re-run of redis.yml
changes nothing."""
import os
import re
import subprocess
import time

import testinfra
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
SENTINELS = RUNNER.get_hosts("sentinel")
VICTIM = SENTINELS[-1]
testinfra_hosts = [VICTIM]


def on(name):
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={INVENTORY}", sudo=True)


def sentinel(name, args):
    password = RUNNER.get_variables(name)["redis_sentinel_password"]
    return on(name).check_output(f"REDISCLI_AUTH='{password}' redis-cli --no-auth-warning -p 26379 {args}")


def view(name):
    fields = sentinel(name, "SENTINEL master recete").splitlines()
    info = dict(zip(fields[::2], fields[1::2]))
    return info["ip"], int(info["num-other-sentinels"]), int(info["num-slaves"])


def playbook(path, *extra):
    run = subprocess.run(["ansible-playbook", "-i", INVENTORY, os.path.join(PROJECT, path), *extra],
                         capture_output=True, text=True, cwd=PROJECT, timeout=900)
    out = run.stdout + "\n" + run.stderr
    assert run.returncode == 0, f"rc={run.returncode}\n{out[-6000:]}"
    return out


def test_a_rebuilt_sentinel_joins_the_others_and_a_rerun_changes_nothing():
    before_id = sentinel(VICTIM, "SENTINEL myid")
    master_before = view(SENTINELS[0])[0]
    playbook("rebuild_sentinel.yml", "-e", f"sentinel={VICTIM}")
    assert sentinel(VICTIM, "SENTINEL myid") != before_id, "the Sentinel kept its old state"
    expected = (master_before, len(SENTINELS) - 1, len(RUNNER.get_hosts("redis")) - 1)
    deadline = time.monotonic() + 30
    views = {}
    while time.monotonic() < deadline:
        views = {name: view(name) for name in SENTINELS}
        if all(v == expected for v in views.values()):
            break
        time.sleep(1)
    assert all(v == expected for v in views.values()), (expected, views)
    assert sentinel(VICTIM, "SENTINEL ckquorum recete").startswith("OK")
    out = playbook("playbooks/redis.yml")
    changed = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", out, re.M)}
    assert changed and not any(changed.values()), changed
