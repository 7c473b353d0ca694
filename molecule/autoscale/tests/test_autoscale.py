"""The autoscaler on the lab, and scaling beyond the lab's first hosts.

In order (pytest keeps file order), on the stack the earlier scenarios left:
  1. the autoscaler runs on mon1 in dry run, scraped by Prometheus, its secrets private;
  2. a CPU ramp through the load balancer: scale-out within 60 s of crossing the target,
     scale-in below the high load's need only after the window, 2..10 instances, 0 failed requests (bench/autoscale_ramp.py);
  3. slow jobs: queue latency rises and the autoscaler adds workers, every job completes; a
     manual scale.yml started while the autoscaler holds the operation lock waits for it;
  4. a machine joins the lab (tools/lab add) in groups api and web; one scale.yml run prepares it
     and places an API and a web instance on it under API and page loads; then leaving_hosts
     empties it and it leaves the lab.
The Black Friday counts (10 API, 20 workers on joined machines) are bench/black_friday.py's.
The tests use the lab's own inventory (tools/lab writes it, with the lab's group_vars beside
it) because machines join it during the run; Molecule's inventory is fixed at create.
"""
import json
import os
import re
import subprocess
import sys
import time

import pytest

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
LAB = os.environ.get("RECETE_LAB_STACK", "mstack")
sys.path.insert(0, os.path.join(PROJECT, "bench"))
sys.path.insert(0, os.path.join(PROJECT, "tests", "support"))
from _lab import Lab, OpenLoop, lab_inventory, lab_tool  # noqa: E402  (bench/: the lab client, load, tools/lab)
from autoscale_ramp import decisions, run_ramp, settings, summary_lines, timeline_lines  # noqa: E402
from prometheus import Prometheus  # noqa: E402
from web_lab import WebLoad  # noqa: E402  (page loads and the assets they name, through the load balancers)

WINDOW = 60      # scale-down stabilization window in these tests (default 300 s)
INTERVAL = 5     # autoscaler evaluation interval in these tests (default 15 s)


@pytest.fixture(scope="module")
def lab():
    return Lab(lab_inventory(LAB))


@pytest.fixture(scope="module")
def prom(lab):
    return Prometheus(lab.address(lab.first("monitoring")))


def instances(lab, unit, hosts):
    found = {}
    for host in hosts:
        out = lab.ssh(host, "systemctl list-units '%s@*' --state=running --no-legend --plain" % unit).stdout
        found[host] = len(re.findall(r"%s@\d+\.service" % unit, out))
    return found


def assert_jobs_done(load):
    """Every acknowledged job completed with the right result."""
    for phase, row in load.check_jobs(timeout=300).items():
        assert row["acked"] > 0 and row["done_right"] == row["acked"], (phase, dict(row))


def test_the_autoscaler_runs_dry_is_scraped_and_keeps_its_secrets(lab, prom):
    mon = lab.first("monitoring")
    assert lab.ssh(mon, "systemctl is-active recete-autoscaler").stdout.strip() == "active"
    targets, _ = prom.wait(lambda: [t for t in prom.targets("recete_autoscaler") if t["health"] == "up"], 30)
    assert targets, prom.targets("recete_autoscaler")
    assert prom.value("recete_autoscaler_dry_run") == 1.0
    modes = lab.ssh(mon, "sudo stat -c '%n %a %U %G' /etc/recete-autoscaler/config.json "
                         "/etc/recete-autoscaler/inventory /var/lib/recete-autoscaler/.ssh/id_ed25519").stdout
    assert modes.split("\n")[0].endswith("640 root recete-autoscaler"), modes
    assert "inventory 700 recete-autoscaler" in modes and "id_ed25519 600 recete-autoscaler" in modes, modes
    # Every file of its inventory copy (secrets inside) is the autoscaler's alone.
    files = lab.ssh(mon, "sudo find /etc/recete-autoscaler/inventory -type f -printf '%m %u %p\\n'").stdout.split("\n")
    files = [f for f in files if f.strip()]
    assert files and all(f.startswith("600 recete-autoscaler ") for f in files), files
    # Its key is accepted from the monitoring host's address only.
    keys = lab.ssh(lab.first("api"), "cat ~/.ssh/authorized_keys").stdout
    assert 'from="%s" ssh-ed25519' % lab.address(mon) in keys and "recete-autoscaler@mon1" in keys, keys
    # It can log in and run Ansible as the autoscaler would.
    out = lab.ssh(mon, "sudo -u recete-autoscaler env HOME=/var/lib/recete-autoscaler "
                       "/opt/recete-autoscaler/venv/bin/ansible -i /etc/recete-autoscaler/inventory api "
                       "-m ansible.builtin.ping -e ansible_ssh_private_key_file=/var/lib/recete-autoscaler/.ssh/id_ed25519 "
                       "-e ansible_private_key_file=/var/lib/recete-autoscaler/.ssh/id_ed25519", timeout=180).stdout
    assert out.count("SUCCESS") == len(lab.hosts("api")), out


def test_a_cpu_ramp_scales_out_within_60s_and_in_only_after_the_window(lab):
    result = run_ramp(lab, quota=0.25, events=20000, low=30, high=360, window=WINDOW, interval=INTERVAL,
                      log=lambda line: print(line, flush=True))
    report = "\n".join(timeline_lines(result) + summary_lines(result))
    print(report)
    assert result["failed"] == 0, report
    assert result["scale_outs"], report
    assert result["crossing_at"] is not None, report
    assert result["first_scale_out_at"] - result["crossing_at"] <= 60, report
    assert all(e.get("ok", True) for e in result["scale_outs"] + result["scale_ins"]), report
    assert 2 <= result["min_instances"] and result["max_instances"] <= 10, report
    assert result["scale_ins"], report
    # The HPA's rule: no count below what the load asked for within the window. A scale-in
    # that only takes back an overshoot (3 -> 6 proposed while the third instance warmed up,
    # 6 -> 4 once the window forgot the 6) may come sooner; the one the drop allows may not.
    assert result["scale_ins_below_need"], report
    assert result["first_scale_in_below_need_at"] - result["drop_at"] >= WINDOW, report


def lock_holder(lab):
    raw = lab.ssh(lab.first("lb"), "sudo cat /var/lib/recete/lock/details.json 2>/dev/null || true", check=False).stdout
    return json.loads(raw) if raw.strip() else None


def test_workers_scale_out_on_queue_latency_and_a_manual_scale_waits_for_the_lock(lab, prom):
    run = lab.playbook("playbooks/scale.yml", extra_vars={"worker_replicas": 1, "lock_wait": 600})
    assert run.ok, run.tail()
    settings(lab, False, {"autoscaler_worker_queue_latency_target": 10})
    since = time.time()
    # 6 jobs/s that each take 2 s, one worker of concurrency 5: 2.5 jobs/s, the queue grows.
    load = OpenLoop(lab.address(lab.first("lb")), 6, job_share=1.0, job_sleep_ms=2000)
    manual = None
    try:
        load.phase = "slow jobs"
        load.start()
        held, _ = prom.wait(lambda: (lock_holder(lab) or {}).get("holder", "").startswith("recete-autoscaler"), 240,
                            interval=1)
        assert held, "the autoscaler took no lock within 240 s; decisions: %s" % decisions(lab, since)
        holder = lock_holder(lab)
        # An operator scales the API meanwhile: the run waits for the autoscaler's lock, then goes on.
        manual = lab.playbook("playbooks/scale.yml", extra_vars={"api_replicas": 3, "lock_wait": 900})
        grew, _ = prom.wait(lambda: (prom.value('count(up{job="recete_worker"} == 1)') or 0) > 1, 120, interval=2)
    finally:
        load.stop()
        settings(lab, True)
    outs = [d for d in decisions(lab, since) if d["tier"] == "worker" and d["action"] == "scale"]
    assert grew, "no second worker scraped; decisions: %s" % outs
    assert outs and outs[0]["desired"] > 1 and outs[0]["metrics"]["queue_latency"] > 10, outs
    assert holder and "worker_replicas=" in holder["command"] and "autoscaler" in holder["command"], holder
    assert manual is not None and manual.ok, manual.tail() if manual else "not run"
    assert re.search(r"waited [0-9.]+ s for the operation lock", manual.stdout), manual.tail()
    # The audit log: the autoscaler's run ended before the manual one (one operation at a time).
    lines = [json.loads(line) for line in
             lab.ssh(lab.first("lb"), "sudo tail -n 20 /var/log/recete/operations.jsonl").stdout.splitlines()]
    auto = [i for i, e in enumerate(lines) if "autoscaler" in e.get("command", "")]
    by_hand = [i for i, e in enumerate(lines) if e.get("command", "").startswith("scale.yml api_replicas=3")]
    assert auto and by_hand and auto[0] < by_hand[-1], lines[-4:]
    assert load.failed() == 0
    assert_jobs_done(load)


def test_a_host_joins_in_one_scale_run_then_leaves(lab):
    # api3 joins the API and the web tier (groups api and web, as the lab's app hosts are).
    lab_tool("add", "--name", LAB, "--machine", "api3", "--groups", "api,web")
    big = Lab(lab_inventory(LAB))
    try:
        load = OpenLoop(big.address(big.first("lb")), 20, job_share=0.1)
        load.phase = "join"
        load.start()
        try:
            with WebLoad(lab_inventory(LAB)) as pages:
                run = big.playbook("playbooks/scale.yml", extra_vars={"api_replicas": 3, "web_replicas": 3},
                                   timeout=2400)
        finally:
            load.stop()
        assert run.ok, run.tail()
        assert "api3 joined" not in run.stdout  # that line is check mode's; a real run prepares it
        api = instances(big, "recete-api", big.hosts("api"))
        assert api == {"api1": 1, "api2": 1, "api3": 1}, api
        web = instances(big, "recete-web", big.hosts("web"))
        assert web == {"api1": 1, "api2": 1, "api3": 1}, web
        for root in ("/opt/recete", "/opt/recete-web"):
            release = big.ssh("api1", "readlink %s/current" % root).stdout.strip()
            assert release and big.ssh("api3", "readlink %s/current" % root).stdout.strip() == release, root
        # Prepared once: the base role ran in the API's preparation only, not again for the web tier.
        assert run.stdout.count("common : Install base packages]") == 1, run.tail()
        assert load.failed() == 0, load.stats("join")
        assert pages.stats["sent"] > 0, pages.stats     # WebLoad asserted 0 failed page loads on exit
        assert_jobs_done(load)
        # Leaving: api3's instances move to the first hosts, then the machine goes.
        run = big.playbook("playbooks/scale.yml",
                           extra_vars={"api_replicas": 2, "web_replicas": 2, "leaving_hosts": "api3"}, timeout=2400)
        assert run.ok, run.tail()
        assert instances(big, "recete-api", big.hosts("api")) == {"api1": 1, "api2": 1, "api3": 0}
        assert instances(big, "recete-web", big.hosts("web")) == {"api1": 1, "api2": 1, "api3": 0}
    finally:
        subprocess.run([os.path.join(PROJECT, "tools", "lab"), "remove", "--name", LAB, "--machine", "api3"],
                       capture_output=True, text=True, timeout=600)
