"""The action groups of meta/runtime.yml (module_defaults: group/recete.stack.*)
reach our modules, on localhost only."""
import subprocess

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_action_groups_set_module_defaults(tmp_path):
    run = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", str(REPO / "tests/playbooks/module_defaults.yml"),
         "-e", f"audit_path={tmp_path}/operations.jsonl"],
        cwd=REPO, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
