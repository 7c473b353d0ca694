"""The operation lock (_oplock) on a real directory, and the module around it.

Concurrency is tested with real processes racing for one mkdir: exactly one
may win. Waiting is tested with a releaser thread and a fake clock.
"""
import json
import multiprocessing
import os
import threading
import time

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.recete.stack.plugins.module_utils import _oplock as ol
from ansible_collections.recete.stack.plugins.modules import operation_lock


@pytest.fixture
def lock(tmp_path):
    return str(tmp_path / "recete" / "lock")


def take(lock, holder="root@ctl", token="t1", **kwargs):
    return ol.acquire(lock, holder, command="deploy.yml -e app_version=1.1.0", message="release 1.1.0",
                      token=token, **kwargs)


# --- acquire -----------------------------------------------------------------------

def test_acquire_creates_the_directory_and_details(lock):
    result = take(lock)
    assert result["changed"] is True and result["held"] is True and result["waited_s"] == 0
    assert os.stat(lock).st_mode & 0o777 == 0o700
    details_file = os.path.join(lock, ol.DETAILS_FILE)
    assert os.stat(details_file).st_mode & 0o777 == 0o600
    with open(details_file) as handle:
        details = json.load(handle)
    assert details == result["lock"]
    assert details["holder"] == "root@ctl"
    assert details["command"] == "deploy.yml -e app_version=1.1.0"
    assert details["token"] == "t1"
    assert "pid" not in details
    assert time.strptime(details["started"], ol.ISO_FORMAT)
    assert os.listdir(lock) == [ol.DETAILS_FILE]  # no temporary file left


def test_acquire_again_with_the_same_token_is_no_change(lock):
    first = take(lock)
    again = take(lock)
    assert again["changed"] is False
    assert again["lock"] == first["lock"]


def test_acquire_held_by_another_fails_at_once_naming_the_holder(lock):
    take(lock, holder="alice@ctl1", token="a")
    with pytest.raises(ol.LockHeld) as caught:
        take(lock, holder="bob@ctl2", token="b")
    msg = str(caught.value)
    assert "held by alice@ctl1 since" in msg
    assert "deploy.yml -e app_version=1.1.0" in msg and "release 1.1.0" in msg
    assert "ansible-playbook playbooks/lock.yml -e lock_action=release" in msg
    assert caught.value.details["holder"] == "alice@ctl1"


def test_acquire_without_token_never_matches_an_existing_lock(lock):
    take(lock, token="")
    with pytest.raises(ol.LockHeld):
        take(lock, token="")


def test_acquire_waits_with_a_fake_clock_then_gives_up(lock):
    take(lock, token="a")
    now = [1000.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    with pytest.raises(ol.LockHeld) as caught:
        take(lock, token="b", wait=5, poll=2, clock=lambda: now[0], sleep=sleep)
    assert sleeps == [2, 2, 1]  # never sleeps past the deadline
    assert caught.value.waited_s == 5
    assert "after waiting 5 s" in str(caught.value)


def test_acquire_waits_until_the_holder_releases(lock):
    take(lock, token="a")
    releaser = threading.Timer(0.3, ol.release, args=(lock,), kwargs={"token": "a"})
    releaser.start()
    try:
        result = take(lock, holder="bob@ctl2", token="b", wait=5, poll=0.05)
    finally:
        releaser.join()
    assert result["changed"] is True
    assert result["lock"]["holder"] == "bob@ctl2"
    assert 0.2 <= result["waited_s"] < 5


def _race(lock, name, start, results):
    start.wait()
    try:
        ol.acquire(lock, name, token=name)
        results.put((name, "won"))
    except ol.LockHeld as exc:
        results.put((name, exc.details["holder"]))
    except Exception as exc:  # report it instead of leaving the parent waiting
        results.put((name, "error: %r" % exc))


def test_concurrent_acquire_from_processes_has_exactly_one_winner(lock):
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(lock, "run%d" % i, start, results)) for i in range(16)]
    for proc in procs:
        proc.start()
    start.set()
    outcomes = dict(results.get(timeout=30) for _ in procs)
    for proc in procs:
        proc.join(timeout=30)
    winners = [name for name, outcome in outcomes.items() if outcome == "won"]
    assert len(winners) == 1
    # The losers name the winner, even those that looked before its details were written.
    assert {o for o in outcomes.values() if o != "won"} == {winners[0]}
    assert ol.read_status(lock)[1]["holder"] == winners[0]


def test_concurrent_acquire_from_threads_has_exactly_one_winner(lock):
    barrier = threading.Barrier(12)
    won, lost = [], []

    def run(name):
        barrier.wait()
        try:
            ol.acquire(lock, name, token=name)
            won.append(name)
        except ol.LockHeld:
            lost.append(name)

    threads = [threading.Thread(target=run, args=("t%d" % i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1 and len(lost) == 11


def test_check_mode_acquire_writes_nothing_but_still_fails_when_held(lock):
    result = take(lock, check_mode=True)
    assert result["changed"] is True and result["lock"]["holder"] == "root@ctl"
    assert not os.path.exists(lock)
    take(lock, token="a")
    with pytest.raises(ol.LockHeld):
        take(lock, token="b", check_mode=True)


# --- stale lock without details ----------------------------------------------------

def test_directory_without_details_is_held_by_unknown_since_its_mtime(lock):
    os.makedirs(lock)
    os.utime(lock, (1764320000, 1764320000))
    held, details = ol.read_status(lock)
    assert held is True
    assert details["holder"] == "unknown"
    assert details["started"] == "2025-11-28T08:53:20Z"
    with pytest.raises(ol.LockHeld, match="held by unknown since 2025-11-28T08:53:20Z"):
        take(lock)


def test_a_fresh_directory_without_details_is_awaited_briefly(lock):
    os.makedirs(lock)
    writer = threading.Timer(0.2, ol._write_details, args=(lock, ol.make_details("alice@ctl1", "", "", "a", 0)))
    writer.start()
    try:
        with pytest.raises(ol.LockHeld, match="held by alice@ctl1"):
            take(lock)
    finally:
        writer.join()


def test_unreadable_details_count_as_unknown(lock):
    os.makedirs(lock)
    with open(os.path.join(lock, ol.DETAILS_FILE), "w") as handle:
        handle.write('{"holder": "cut sh')
    assert ol.read_status(lock)[1]["holder"] == "unknown"


def test_stale_directory_only_goes_with_force(lock):
    os.makedirs(lock)
    with pytest.raises(ol.LockError, match="held by unknown"):
        ol.release(lock, token="t1")
    result = ol.release(lock, force=True)
    assert result["changed"] is True and result["lock"]["holder"] == "unknown"
    assert take(lock)["changed"] is True


def test_a_file_in_place_of_the_lock_is_an_error(lock):
    os.makedirs(os.path.dirname(lock))
    open(lock, "w").close()
    with pytest.raises(ol.LockError, match="not a directory"):
        ol.read_status(lock)


# --- release -----------------------------------------------------------------------

def test_release_with_the_token_removes_the_lock(lock):
    take(lock)
    result = ol.release(lock, token="t1")
    assert result == {"changed": True, "held": False, "lock": result["lock"]}
    assert result["lock"]["holder"] == "root@ctl"
    assert not os.path.exists(lock)
    assert os.listdir(os.path.dirname(lock)) == []  # the renamed copy is gone too


def test_release_with_another_token_fails_naming_the_holder(lock):
    take(lock, holder="alice@ctl1", token="a")
    with pytest.raises(ol.LockError, match="held by alice@ctl1") as caught:
        ol.release(lock, token="b")
    assert "lock_action=release" in str(caught.value)
    assert os.path.isdir(lock)


def test_release_with_force_ignores_the_token(lock):
    take(lock, token="a")
    assert ol.release(lock, force=True)["changed"] is True
    assert not os.path.exists(lock)


def test_release_of_a_free_lock_is_no_change(lock):
    assert ol.release(lock, token="t1") == {"changed": False, "held": False, "lock": None}


def test_check_mode_release_keeps_the_lock(lock):
    take(lock)
    assert ol.release(lock, token="t1", check_mode=True)["changed"] is True
    assert os.path.isdir(lock)


# --- messages ----------------------------------------------------------------------

@pytest.mark.parametrize("age,text", [(30, "(30 s ago)"), (600, "(10 min ago)"), (3 * 3600, "(3.0 h ago)")])
def test_describe_says_how_long_ago(age, text):
    details = ol.make_details("root@ctl", "scale.yml", "", "t", 1764320000)
    assert text in ol.describe(details, now=1764320000 + age)


# --- the module --------------------------------------------------------------------

def run_module(capsys, **args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            operation_lock.main()
    return json.loads(capsys.readouterr().out)


def test_module_acquire_status_release(lock, capsys):
    taken = run_module(capsys, path=lock, holder="root@ctl", command="scale.yml", reason="five api", token="x")
    assert taken["changed"] is True and taken["lock"]["holder"] == "root@ctl"
    assert taken["lock"]["message"] == "five api"
    status = run_module(capsys, path=lock, state="status")
    assert status["changed"] is False and status["held"] is True
    assert status["details"] == status["lock"] == taken["lock"]
    released = run_module(capsys, path=lock, state="released", token="x")
    assert released["changed"] is True and released["held"] is False
    assert run_module(capsys, path=lock, state="status")["held"] is False


def test_module_fails_when_held_with_the_details(lock, capsys):
    take(lock, holder="alice@ctl1", token="a")
    result = run_module(capsys, path=lock, holder="bob@ctl2", token="b", _ansible_check_mode=True)
    assert result["failed"] is True
    assert "held by alice@ctl1" in result["msg"]
    assert result["lock"]["holder"] == "alice@ctl1" and result["held"] is True


@pytest.mark.parametrize("args,message", [
    ({"state": "released"}, "needs the token"),
    ({"holder": "a", "wait": -1}, "wait must not be negative"),
    ({"holder": "a", "poll": 0}, "poll must be above 0"),
    ({}, "holder"),
])
def test_module_refuses_bad_arguments(lock, capsys, args, message):
    result = run_module(capsys, path=lock, **args)
    assert result["failed"] is True
    assert message in result["msg"]
