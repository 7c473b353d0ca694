"""The audit log (_audit) on a real file, and the module around it.

The concurrency test appends from many processes at once and checks that
every line is whole: O_APPEND plus one write() must not interleave.
"""
import json
import multiprocessing
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.recete.stack.plugins.module_utils import _audit as au
from ansible_collections.recete.stack.plugins.modules import audit_log


@pytest.fixture
def log(tmp_path):
    return str(tmp_path / "log" / "recete" / "operations.jsonl")


def lines_of(path):
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8").splitlines()


# --- append ------------------------------------------------------------------------

def test_append_creates_directory_and_file_with_their_modes(log):
    au.append(log, {"who": "root@ctl"})
    assert os.stat(os.path.dirname(log)).st_mode & 0o777 == 0o750
    assert os.stat(log).st_mode & 0o777 == 0o640


def test_append_adds_exactly_one_line_per_call(log):
    au.append(log, {"n": 1})
    au.append(log, {"n": 2})
    assert [json.loads(line)["n"] for line in lines_of(log)] == [1, 2]


def test_line_keeps_key_order_and_utf8():
    line = au.to_line({"zeta": 1, "alpha": "Grüße → ok", "text": "two\nlines"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    text = line.decode("utf-8")
    assert text.index("zeta") < text.index("alpha")
    assert "Grüße → ok" in text


def test_stamped_puts_time_first_and_keeps_a_given_time():
    stamped = au.stamped({"who": "a"}, epoch=1764320000)
    assert list(stamped) == ["time", "who"]
    assert stamped["time"] == "2025-11-28T08:53:20Z"
    assert au.stamped({"who": "a", "time": "then"}) == {"who": "a", "time": "then"}


def test_an_entry_json_cannot_hold_is_refused():
    with pytest.raises(au.AuditError, match="cannot be written as JSON"):
        au.to_line({"bad": object()})


def _writer(path, writer, count):
    for n in range(count):
        # Long lines make an interleaving visible if writes were split.
        au.append(path, {"writer": writer, "n": n, "pad": "x" * 3000})


def test_appends_from_many_processes_give_whole_lines(log):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(log, w, 50)) for w in range(8)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    entries = [json.loads(line) for line in lines_of(log)]  # raises on any torn line
    assert len(entries) == 8 * 50
    for writer in range(8):
        assert [e["n"] for e in entries if e["writer"] == writer] == list(range(50))


# --- read --------------------------------------------------------------------------

def test_read_last_returns_the_newest_in_file_order(log):
    for n in range(30):
        au.append(log, {"n": n})
    entries, skipped = au.read_last(log, 5)
    assert [e["n"] for e in entries] == [25, 26, 27, 28, 29]
    assert skipped == 0


def test_read_skips_and_counts_lines_that_do_not_parse(log):
    au.append(log, {"n": 1})
    with open(log, "ab") as handle:
        handle.write(b'not json\n[1, 2]\n\n\xff\xfe\n')
    au.append(log, {"n": 2})
    with open(log, "ab") as handle:
        handle.write(b'{"n": 3, "cut')  # a writer that died mid-line
    entries, skipped = au.read_last(log, 20)
    assert [e["n"] for e in entries] == [1, 2]
    assert skipped == 4  # blank lines are not counted


def test_read_of_a_missing_log_is_empty(log):
    assert au.read_last(log, 20) == ([], 0)


def test_read_refuses_last_below_one(log):
    with pytest.raises(au.AuditError, match="at least 1"):
        au.read_last(log, 0)


# --- summary -----------------------------------------------------------------------

def test_summary_of_a_full_entry():
    entry = {"time": "2026-11-28T10:04:31Z", "who": "root@ctl", "command": "scale.yml -e api_replicas=3",
             "result": "failed", "release_before": "1.0.0", "release_after": "1.0.0",
             "counts_before": {"api": 2, "worker": 1}, "counts_after": {"api": 3, "worker": 1},
             "rolled_back": True, "message": "health gate failed on api2:3001"}
    assert au.summary(entry) == ("2026-11-28T10:04:31Z | root@ctl | scale.yml -e api_replicas=3 | failed"
                                 " | release 1.0.0→1.0.0 | counts api 2→3, worker 1→1 | rolled back"
                                 " | health gate failed on api2:3001")


def test_summary_reads_name_before_and_after_pairs_as_counts():
    entry = {"time": "t", "who": "w", "operation": "scale", "result": "ok", "rolled_back": False,
             "release_before": "1.0.0", "release_after": "1.0.0", "api_before": "2", "api_after": "3",
             "worker_before": 1, "worker_after": 1, "phases": [], "failure": ""}
    assert au.summary(entry) == ("t | w | scale | ok | release 1.0.0→1.0.0 | counts api 2→3, worker 1→1"
                                 " | not rolled back")


@pytest.mark.parametrize("entry,expected", [
    ({}, "? | ? | ?"),
    ({"time": "t", "who": "w", "operation": "deploy", "rolled_back": "false"}, "t | w | deploy | not rolled back"),
    ({"time": "t", "who": "w", "command": "c", "release_after": "1.1.0"}, "t | w | c | release -→1.1.0"),
    ({"time": "t", "who": "w", "command": "c", "counts_before": 2, "counts_after": 5}, "t | w | c | counts 2→5"),
    ({"time": "t", "who": "w", "command": "c", "counts_after": {"api": 1}}, "t | w | c | counts api -→1"),
])
def test_summary_leaves_out_what_an_entry_lacks(entry, expected):
    assert au.summary(entry) == expected


# --- the module --------------------------------------------------------------------

def run_module(capsys, **args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            audit_log.main()
    return json.loads(capsys.readouterr().out)


def test_module_appends_then_reads(log, capsys):
    written = run_module(capsys, path=log, entry={"who": "root@ctl", "command": "deploy.yml", "result": "ok"})
    assert written["changed"] is True and "time" in written["entry"]
    read = run_module(capsys, path=log, state="read", last=5)
    assert read["changed"] is False and read["exists"] is True and read["skipped"] == 0
    assert read["entries"] == [written["entry"]]
    assert read["lines"] == ["%s | root@ctl | deploy.yml | ok" % written["entry"]["time"]]


def test_module_check_mode_writes_nothing(log, capsys):
    result = run_module(capsys, path=log, entry={"who": "a"}, _ansible_check_mode=True)
    assert result["changed"] is True
    assert not os.path.exists(log)


@pytest.mark.parametrize("args,message", [
    ({}, "entry"),
    ({"state": "read", "last": 0}, "last must be at least 1"),
])
def test_module_refuses_bad_arguments(log, capsys, args, message):
    result = run_module(capsys, path=log, **args)
    assert result["failed"] is True
    assert message in result["msg"]
