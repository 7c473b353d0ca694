"""Running the collection's playbooks from a Molecule test, as an operator would.

    from lab_run import Playbooks, changed_per_host
    run = Playbooks(INVENTORY, PROJECT)
    out = run("restore.yml", "-e", "restore_host=worker2")   # asserts rc 0
    assert not any(changed_per_host(run("playbooks/backup.yml")).values())

Only the standard library and testinfra, like the tests that use it.
"""
import os
import re
import subprocess

import testinfra

RECAP = re.compile(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)", re.M)


def changed_per_host(out):
    """{host: changed count} from a PLAY RECAP."""
    return {host: int(n) for host, n in RECAP.findall(out)}


def changed_tasks(out):
    """[(task, host)] of every "changed:" line, for the message of a failed idempotence check."""
    found, task = [], None
    for line in out.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].rsplit("]", 1)[0]
        elif line.startswith("changed: ["):
            found.append((task, line[len("changed: ["):].split("]", 1)[0]))
    return found


def lab_host(inventory, name):
    """A testinfra host of the lab, commands run with sudo."""
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}", sudo=True)


class Playbooks:
    def __init__(self, inventory, project):
        self.inventory, self.project = inventory, project

    def __call__(self, path, *extra, expect_rc=0, timeout=900):
        """ansible-playbook -i INVENTORY PROJECT/path EXTRA...; the output, after checking the exit code."""
        run = subprocess.run(["ansible-playbook", "-i", self.inventory, os.path.join(self.project, path), *extra],
                             capture_output=True, text=True, cwd=self.project, timeout=timeout)
        out = run.stdout + "\n" + run.stderr
        assert run.returncode == expect_rc, f"rc={run.returncode}\n{out[-6000:]}"
        return out
