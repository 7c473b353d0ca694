"""scale.yml through ansible-runner's Python API, as the autoscaler drives it:
a bad count stops on the controller before any host is contacted."""
from pathlib import Path

import ansible_runner

REPO = Path(__file__).resolve().parents[2]

# A regression that reached the hosts would wait for TEST-NET addresses: bound it.
ENV = {"ANSIBLE_TIMEOUT": "3", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}


def _run(private_data_dir, **kwargs):
    return ansible_runner.run(private_data_dir=str(private_data_dir), project_dir=str(REPO), playbook="scale.yml",
                              envvars=ENV, quiet=True, **kwargs)


def test_negative_count_fails_before_any_host_is_contacted(private_data_dir):
    run = _run(private_data_dir, extravars={"api_replicas": -1})
    assert run.status == "failed" and run.rc != 0
    events = list(run.events)
    failures = [e["event_data"]["res"].get("msg", "") for e in events if e["event"] == "runner_on_failed"]
    assert any("api_replicas must be at least 1" in msg for msg in failures), failures
    assert not [e for e in events if e["event"] == "runner_on_unreachable"]
    # Only localhost ran tasks, apart from the --limit check: a play over `all` whose one
    # task runs once, delegated to localhost (an assert: no connection either way).
    ran = {(e["event_data"]["host"], e["event_data"].get("task", "")) for e in events
           if e["event"].startswith("runner_on_") and e.get("event_data", {}).get("host")}
    elsewhere = {(host, task) for host, task in ran if host != "localhost"}
    assert all(task.startswith(("Refuse a --limit", "Validating arguments")) for _, task in elsewhere), elsewhere


def test_valid_count_parses_and_lists_its_tasks(private_data_dir):
    """A valid count would contact hosts: check the playbook loads and plans its plays instead."""
    for cmdline in ("--syntax-check", "--list-tasks"):
        run = _run(private_data_dir, extravars={"api_replicas": 3}, cmdline=cmdline)
        output = run.stdout.read()
        assert run.status == "successful" and run.rc == 0, (cmdline, output)
    # --list-tasks names every play, the controller's checks first.
    assert "play #1 (all): Refuse a --limit that cuts the rolling change short" in output
    assert "play #2 (localhost): Check the request before contacting any host" in output
    assert "play #9 (lb): Scale the app tier behind the load balancer" in output
