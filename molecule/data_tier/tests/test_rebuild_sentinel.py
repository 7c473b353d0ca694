"""rebuild_sentinel.yml: a Sentinel whose state is thrown away is seeded again
from the others, every Sentinel then counts the same peers and replicas (no
duplicate of the rebuilt one), the quorum holds, and a re-run of redis.yml
changes nothing."""
import os
import sys
import time

import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
sys.path.insert(0, os.path.join(PROJECT, "tests", "support"))
from lab_run import Playbooks, changed_per_host, lab_host  # noqa: E402  (tests/support helper)
from lab_tls import redis_cli_tls  # noqa: E402  (tests/support helper)
playbook = Playbooks(INVENTORY, PROJECT)
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
SENTINELS = RUNNER.get_hosts("sentinel")
VICTIM = SENTINELS[-1]
testinfra_hosts = [VICTIM]


def on(name):
    return lab_host(INVENTORY, name)


def sentinel(name, args):
    password = RUNNER.get_variables(name)["redis_sentinel_password"]
    tls = redis_cli_tls(RUNNER.get_variables(name))
    return on(name).check_output(f"REDISCLI_AUTH='{password}' redis-cli --no-auth-warning {tls}-p 26379 {args}")


def view(name):
    fields = sentinel(name, "SENTINEL master recete").splitlines()
    info = dict(zip(fields[::2], fields[1::2]))
    return info["ip"], int(info["num-other-sentinels"]), int(info["num-slaves"])


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
    changed = changed_per_host(out)
    assert changed and not any(changed.values()), changed
