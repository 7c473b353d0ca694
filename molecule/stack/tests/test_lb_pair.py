"""Two load balancers with a floating address (role recete.stack.keepalived).

The address is on exactly one load balancer and serves the API; when the
holder's nginx stops it moves to the other, and stays there when nginx comes
back (nopreempt); and the drill: the holder's keepalived and nginx SIGKILLed
under an open-loop load through the address (a client that does not resend),
with the time until the address moved, the gap, and the failed requests
counted and printed.
"""
import os
import sys
import time

import pytest
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
LBS = RUNNER.get_hosts("lb")
sys.path.insert(0, os.path.join(PROJECT, "bench"))
from _lab import OpenLoop  # noqa: E402  (bench/ holds the one load generator)
sys.path.insert(0, os.path.join(PROJECT, "tests", "support"))
from lab_run import Playbooks, changed_per_host, lab_host  # noqa: E402  (tests/support helper)

pytestmark = pytest.mark.skipif(len(LBS) < 2, reason="one load balancer")
# The lab's floating address: .250 of the first load balancer's /24 (inventories/lab/group_vars/all/lb.yml).
VIP = RUNNER.get_variables(LBS[0])["ansible_host"].rsplit(".", 1)[0] + ".250"
ADVERT = 1.0
# A dead holder is noticed after three missed adverts plus the skew ((256 - priority) / 256 s).
DETECTION_BOUND = 3 * ADVERT + 1.0


def on(name):
    return lab_host(INVENTORY, name)


def holders():
    return [n for n in LBS if on(n).run(f"ip -4 -o addr show | grep -q ' {VIP}/'").rc == 0]


def wait_holder(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = holders()
        if predicate(now):
            return now, time.monotonic()
        time.sleep(0.1)
    pytest.fail(f"address {VIP} held by {holders()} after {timeout} s")


def restart(name):
    on(name).run("systemctl reset-failed nginx keepalived; systemctl start nginx keepalived")
    for unit in ("nginx", "keepalived"):
        assert on(name).service(unit).is_running, (name, unit)


def test_exactly_one_load_balancer_holds_the_address_and_serves():
    assert len(holders()) == 1, holders()
    import urllib.request
    with urllib.request.urlopen(f"http://{VIP}/health", timeout=5) as r:
        assert r.status == 200


def test_stopped_nginx_gives_the_address_up_and_it_does_not_come_back():
    (old,), _ = wait_holder(lambda h: len(h) == 1, 10)
    t0 = time.monotonic()
    on(old).check_output("systemctl stop nginx")
    try:
        (new,), moved = wait_holder(lambda h: len(h) == 1 and h[0] != old, 10)
        print(f"nginx stopped on {old}: address on {new} after {moved - t0:.2f} s")
        # Two failed checks a second apart, then one advert.
        assert moved - t0 <= 2 * 1.0 + ADVERT + 2.0
    finally:
        restart(old)
    time.sleep(4)
    assert holders() == [new], "the address went back (nopreempt)"


def test_losing_the_holder_under_load_moves_the_address():
    (old,), _ = wait_holder(lambda h: len(h) == 1, 10)
    rate = 50
    load = OpenLoop(VIP, rate=rate, port=80, connections=16, timeout=5.0, tag="lb-pair")
    load.start()
    try:
        time.sleep(3)
        load.phase = "fault"
        t_kill = time.monotonic()
        on(old).check_output("systemctl kill -s KILL keepalived nginx")
        (new,), t_moved = wait_holder(lambda h: new_holder(h, old), 15)
        time.sleep(3)
        load.phase = "after"
        time.sleep(3)
    finally:
        load.stop()
        restart(old)
    kill_at = t_kill - load.t0
    failed = [r for r in load.results if r.error or not (200 <= (r.status or 0) < 300)]
    before = [r for r in failed if r.phase == "before"]
    fault = [r for r in failed if r.phase == "fault"]
    after = [r for r in failed if r.phase == "after"]
    ok_at = sorted(r.at for r in load.results if r not in failed and r.phase != "before")
    gap = (ok_at[0] - kill_at) if ok_at else float("inf")
    detection = t_moved - t_kill
    print(f"{old} killed under {rate} req/s: address on {new} after {detection:.2f} s, first success "
          f"{gap:.2f} s after the kill; failed {len(before)} before, {len(fault)} during "
          f"({len([r for r in fault if r.error])} connection errors), {len(after)} after, "
          f"of {len(load.results)}")
    assert detection <= DETECTION_BOUND + 1.0
    # While nobody answers for the address: what the rate sends in that time,
    # plus the keep-alive connections open on the dead holder.
    assert len(fault) <= rate * (detection + 1.0) + 16
    assert not after, after[:5]


def test_a_rerun_after_the_drills_changes_nothing():
    changed = changed_per_host(Playbooks(INVENTORY, PROJECT)("playbooks/lb.yml"))
    assert set(changed) >= set(LBS) and not any(changed.values()), changed
    assert len(holders()) == 1, holders()


def new_holder(now, old):
    return len(now) == 1 and now[0] != old
