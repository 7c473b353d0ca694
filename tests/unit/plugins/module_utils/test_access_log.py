"""Unit tests of recete.stack.nginx_access_watch's pure part (_access_log).

Parsing, counting and judging are tested on strings; following the log
(offsets, partial lines, truncation, rotation) on real files under tmp_path
with a fake clock whose sleep can change the file. A few tests at the end run
the module itself against such a file.
"""
from __future__ import annotations

import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.recete.stack.plugins.module_utils import _access_log as al
from ansible_collections.recete.stack.plugins.modules import nginx_access_watch

CANARY = "10.0.0.2:3001"
OLD = "10.0.0.3:3000"


def log_line(upstream_addr, upstream_status, status=200, request="GET /api/v1/orders HTTP/1.1",
             response_time=None, agent="curl/8.5.0"):
    """One line in the recete_lb format, as nginx writes it (with its newline)."""
    if response_time is None:
        response_time = ", ".join("0.004" for _ in upstream_status.split(", ")) if upstream_status != "-" else "-"
    return ('10.0.0.9 [28/Nov/2026:10:00:01 +0000] "%s" %d 512 upstream_addr=%s upstream_status=%s '
            'upstream_response_time=%s request_time=0.005 "%s" "-"\n'
            % (request, status, upstream_addr, upstream_status, response_time, agent))


OK_LINE = log_line(CANARY, "200")
ERR_LINE = log_line(CANARY, "502", status=502)
OTHER_LINE = log_line(OLD, "200")


# --- parsing one line -------------------------------------------------------------

@pytest.mark.parametrize(
    ("line", "status", "attempts"),
    [
        # single attempt
        (log_line(CANARY, "200"), "200", [(CANARY, "200")]),
        # retried on the next upstream: the client got 200
        (log_line(CANARY + ", " + OLD, "502, 200"), "200", [(CANARY, "502"), (OLD, "200")]),
        # three attempts, all failing
        (log_line("10.0.0.2:3001, 10.0.0.3:3000, 10.0.0.4:3000", "504, 502, 502", status=502), "502",
         [(CANARY, "504"), (OLD, "502"), ("10.0.0.4:3000", "502")]),
        # two groups after an internal redirect
        (log_line(CANARY + " : " + OLD, "404 : 200"), "200", [(CANARY, "404"), (OLD, "200")]),
        # no upstream used (served by nginx itself, or rate limited)
        (log_line("-", "-", status=429), "429", []),
        # client closed before the upstream answered
        (log_line(CANARY, "-", status=499), "499", [(CANARY, "-")]),
        # fewer statuses than addresses
        (log_line(CANARY + ", " + OLD, "502", status=502, response_time="0.001"), "502",
         [(CANARY, "502"), (OLD, None)]),
        # no live upstreams: nginx logs the group name
        (log_line("recete_api", "502", status=502), "502", [("recete_api", "502")]),
        # IPv6 and unix sockets
        (log_line("[fd00::5]:3000", "200"), "200", [("[fd00::5]:3000", "200")]),
        (log_line("unix:/run/recete/api.sock", "503", status=503), "503", [("unix:/run/recete/api.sock", "503")]),
        # escaped quotes and odd text in the quoted fields
        (log_line(CANARY, "200", request='GET /q?a=\\x22b\\x22 HTTP/1.1', agent='Mo \\x22z\\x22 upstream_addr=1.2.3.4:1'),
         "200", [(CANARY, "200")]),
        # unescaped quotes (log_format ... escape=none)
        (log_line(CANARY, "200", request='GET /q?a="b" 200 1 HTTP/1.1', agent='Mo "z" \\"x\\" "y"'),
         "200", [(CANARY, "200")]),
        # retries with an attempt that logged no status
        (log_line(CANARY + ", " + OLD, "-, 200"), "200", [(CANARY, "-"), (OLD, "200")]),
        # without the newline
        (OK_LINE.rstrip("\n"), "200", [(CANARY, "200")]),
        (OK_LINE.rstrip("\n") + "\r\n", "200", [(CANARY, "200")]),
    ],
)
def test_parse_line(line, status, attempts):
    fields = al.parse_line(line)
    assert fields is not None, line
    assert fields["status"] == status
    assert fields["attempts"] == attempts
    assert fields["remote_addr"] == "10.0.0.9"


@pytest.mark.parametrize(
    "line",
    [
        "",
        "\n",
        "garbage",
        # the stock combined format
        '10.0.0.9 - - [28/Nov/2026:10:00:01 +0000] "GET / HTTP/1.1" 200 612 "-" "curl/8.5.0"\n',
        # cut off mid-line
        OK_LINE[:60],
        OK_LINE[:-6] + "\n",
        # status not three digits
        OK_LINE.replace('" 200 512', '" 20 512'),
        # a field missing
        OK_LINE.replace(" request_time=0.005", ""),
    ],
)
def test_parse_line_refuses_other_formats(line):
    assert al.parse_line(line) is None


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        (None, []),
        ("", []),
        (" ", []),
        ("-", ["-"]),
        ("10.0.0.2:3001", ["10.0.0.2:3001"]),
        ("10.0.0.2:3001, 10.0.0.3:3000", ["10.0.0.2:3001", "10.0.0.3:3000"]),
        ("10.0.0.2:3001, 10.0.0.3:3000 : 10.0.0.4:3000", ["10.0.0.2:3001", "10.0.0.3:3000", "10.0.0.4:3000"]),
        ("[fd00::5]:3000, [fd00::6]:3000", ["[fd00::5]:3000", "[fd00::6]:3000"]),
        ("502, 200", ["502", "200"]),
    ],
)
def test_split_attempts(value, parts):
    assert al.split_attempts(value) == parts


@pytest.mark.parametrize(
    ("upstream_status", "final_status", "failed"),
    [
        ("200", "200", False),
        ("404", "404", False),
        ("500", "500", True),
        ("502", "200", True),   # failed, then retried elsewhere: still the canary's error
        ("504", "504", True),
        ("-", "502", True),     # no answer logged, and the client got a 5xx
        (None, "503", True),
        ("-", "499", False),    # the client gave up
        (None, "200", False),
        ("5xx", "200", False),
    ],
)
def test_attempt_failed(upstream_status, final_status, failed):
    assert al.attempt_failed(upstream_status, final_status) is failed


# --- counting ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("lines", "upstreams", "expected"),
    [
        # single attempts on the canary and on an old instance
        ([OK_LINE, OK_LINE, ERR_LINE, OTHER_LINE], [CANARY],
         dict(lines=4, skipped=0, requests=3, errors=1, by_status={"200": 2, "502": 1})),
        # retry: the canary's 502 is counted although the client got 200; the old instance is not watched
        ([log_line(CANARY + ", " + OLD, "502, 200")], [CANARY],
         dict(lines=1, skipped=0, requests=1, errors=1, by_status={"502": 1})),
        # the same retry seen from the old instance: a success
        ([log_line(CANARY + ", " + OLD, "502, 200")], [OLD],
         dict(lines=1, skipped=0, requests=1, errors=0, by_status={"200": 1})),
        # both watched: two attempts of one request
        ([log_line(CANARY + ", " + OLD, "502, 200")], [CANARY, OLD],
         dict(lines=1, skipped=0, requests=2, errors=1, by_status={"502": 1, "200": 1})),
        # the canary twice in one request (an internal redirect back to it)
        ([log_line(CANARY + " : " + CANARY, "500 : 200")], [CANARY],
         dict(lines=1, skipped=0, requests=2, errors=1, by_status={"500": 1, "200": 1})),
        # no upstream
        ([log_line("-", "-", status=503), log_line("-", "-", status=200)], [CANARY],
         dict(lines=2, skipped=0, requests=0, errors=0, by_status={})),
        # missing status with a 5xx / 499 final status
        ([log_line(CANARY + ", " + OLD, "504", status=504, response_time="1.0")], [OLD],
         dict(lines=1, skipped=0, requests=1, errors=1, by_status={"-": 1})),
        ([log_line(CANARY, "-", status=499)], [CANARY],
         dict(lines=1, skipped=0, requests=1, errors=0, by_status={"-": 1})),
        # unparseable lines are skipped and counted
        (["garbage\n", OK_LINE, "\n", OK_LINE[:40]], [CANARY],
         dict(lines=4, skipped=3, requests=1, errors=0, by_status={"200": 1})),
        # nothing watched matches
        ([OK_LINE, ERR_LINE], ["10.9.9.9:3000"],
         dict(lines=2, skipped=0, requests=0, errors=0, by_status={})),
    ],
)
def test_tally(lines, upstreams, expected):
    tally = al.Tally(upstreams)
    for line in lines:
        tally.add(line)
    result = tally.result()
    for key, value in expected.items():
        assert result[key] == value, key
    # samples are the erring lines themselves, without their newline
    assert len(result["samples"]) <= min(result["errors"], al.MAX_SAMPLES)
    assert bool(result["samples"]) is bool(result["errors"])
    assert all(sample + "\n" in lines for sample in result["samples"])


def test_tally_keeps_five_samples_without_newlines():
    tally = al.Tally([CANARY])
    errors = [log_line(CANARY, "50%d" % (i % 4), status=500, request="GET /%d HTTP/1.1" % i) for i in range(8)]
    for line in errors:
        tally.add(line)
    result = tally.result()
    assert result["errors"] == 8
    assert result["samples"] == [line.rstrip("\n") for line in errors[:5]]
    assert result["error_rate"] == 1.0


def test_error_rate_is_rounded_and_zero_without_requests():
    tally = al.Tally([CANARY])
    assert tally.result()["error_rate"] == 0.0
    for line in [ERR_LINE] + [OK_LINE] * 2:
        tally.add(line)
    assert tally.result()["error_rate"] == 0.3333


# --- judging ------------------------------------------------------------------------

def tally_of(requests, errors):
    tally = al.Tally([CANARY])
    for _ in range(errors):
        tally.add(ERR_LINE)
    for _ in range(requests - errors):
        tally.add(OK_LINE)
    return tally


@pytest.mark.parametrize(
    ("requests", "errors", "max_error_rate", "min_requests", "failed", "reason_has"),
    [
        (120, 7, 0.01, 0, True, "7 of 120 requests answered 5xx (5.8 % > 1.0 %)"),
        (100, 1, 0.01, 0, False, ""),        # exactly at the threshold passes
        (100, 2, 0.01, 0, True, "2 of 100 requests answered 5xx (2.0 % > 1.0 %)"),
        (100, 0, 0.0, 0, False, ""),
        (100, 1, 0.0, 0, True, "1 of 100"),
        (10, 10, 1.0, 0, False, ""),         # 1 accepts everything
        (0, 0, 0.01, 0, False, ""),          # nothing seen, nothing asked
        (0, 0, 0.01, 1, True, "only 0 request(s) reached it, at least 1 are needed (0 answered 5xx)"),
        (19, 0, 0.01, 20, True, "only 19 request(s)"),
        (20, 0, 0.01, 20, False, ""),
        (5, 5, 0.01, 20, True, "5 of 5 requests answered 5xx (100.0 % > 1.0 %)"),
    ],
)
def test_judge(requests, errors, max_error_rate, min_requests, failed, reason_has):
    failed_canary, reasons = al.judge(tally_of(requests, errors), max_error_rate, min_requests)
    assert failed_canary is failed
    assert (reasons == []) is (not failed)
    assert reason_has in "; ".join(reasons)


def test_judge_reports_both_reasons():
    failed, reasons = al.judge(tally_of(5, 5), 0.01, 20)
    assert failed
    assert len(reasons) == 2


@pytest.mark.parametrize(
    ("upstreams", "seconds", "expected"),
    [
        ([CANARY], 30.0, "canary 10.0.0.2:3001: 7 of 120 requests answered 5xx (5.8 % > 1.0 %) in 30 s"),
        ([CANARY, "10.0.0.3:3001"], 7.5,
         "canary 10.0.0.2:3001, 10.0.0.3:3001: 7 of 120 requests answered 5xx (5.8 % > 1.0 %) in 7.5 s"),
        ([CANARY], 0, "canary 10.0.0.2:3001: 7 of 120 requests answered 5xx (5.8 % > 1.0 %) since byte offset 4096"),
    ],
)
def test_failure_message(upstreams, seconds, expected):
    _, reasons = al.judge(tally_of(120, 7), 0.01, 0)
    assert al.failure_message(upstreams, reasons, seconds, 4096) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, []),
        ([], []),
        ([CANARY], [CANARY]),
        ([" 10.0.0.2:3001 ", CANARY, OLD], [CANARY, OLD]),
        (["[FD00:0::5]:3000"], ["[fd00::5]:3000"]),
        (["unix:/run/recete/api.sock"], ["unix:/run/recete/api.sock"]),
    ],
)
def test_normalize_upstreams(given, expected):
    assert al.normalize_upstreams(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["api1.example.com:3000"], "is a host name"),
        (["10.0.0.2"], "needs a port"),
        (["10.0.0.2:70000"], "port must be a number"),
        (["fd00::5:3000"], "in brackets"),
        ([""], "non-empty"),
    ],
)
def test_normalize_upstreams_refuses(given, message):
    with pytest.raises(al.AccessLogError, match=message):
        al.normalize_upstreams(given)


# --- following the file -----------------------------------------------------------------

class FakeClock(object):
    """Time moves only when the code sleeps; each sleep may run a scripted change to the log."""

    def __init__(self, on_sleep=()):
        self.now = 500.0
        self.sleeps = []
        self.on_sleep = list(on_sleep)

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep.pop(0)()


def append(path, *lines):
    with open(str(path), "a") as handle:
        handle.write("".join(lines))


@pytest.fixture()
def log(tmp_path):
    path = tmp_path / "recete-lb.access.log"
    path.write_text("")
    return path


def test_end_offset_is_the_size(log):
    assert al.end_offset(str(log)) == 0
    append(log, OK_LINE, ERR_LINE)
    assert al.end_offset(str(log)) == len(OK_LINE) + len(ERR_LINE)


def test_end_offset_of_a_missing_log(tmp_path):
    with pytest.raises(al.AccessLogError, match="cannot read the access log .*No such file"):
        al.end_offset(str(tmp_path / "missing.log"))


def test_watch_a_missing_log(tmp_path):
    clock = FakeClock()
    with pytest.raises(al.AccessLogError, match="cannot read the access log"):
        al.watch(str(tmp_path / "missing.log"), 0, 0, [CANARY], clock.clock, clock.sleep)


@pytest.mark.parametrize(
    ("before", "after", "requests", "errors", "lines"),
    [
        ([], [OK_LINE, ERR_LINE], 2, 1, 2),                            # from the start
        ([ERR_LINE] * 3, [OK_LINE], 1, 0, 1),                          # the errors before the mark are not counted
        ([OK_LINE] * 2, [ERR_LINE, OTHER_LINE, ERR_LINE], 2, 2, 3),
        ([ERR_LINE] * 4, [], 0, 0, 0),                                  # nothing new
    ],
)
def test_reading_from_an_offset_in_the_middle(log, before, after, requests, errors, lines):
    append(log, *before)
    mark = al.end_offset(str(log))
    append(log, *after)
    clock = FakeClock()
    tally, result = al.watch(str(log), mark, 0, [CANARY], clock.clock, clock.sleep)
    assert (result["requests"], result["errors"], result["lines"]) == (requests, errors, lines)
    assert result["offset"] == os.path.getsize(str(log))
    assert result["rotated"] is False
    assert clock.sleeps == []           # seconds 0: one read, no waiting
    assert tally.requests == requests


def test_offset_in_the_middle_of_a_line_skips_the_fragment(log):
    append(log, ERR_LINE, OK_LINE)
    clock = FakeClock()
    _, result = al.watch(str(log), len(ERR_LINE) + 30, 0, [CANARY], clock.clock, clock.sleep)
    assert (result["lines"], result["skipped"], result["requests"]) == (1, 1, 0)


def test_a_line_still_being_written_is_left_for_later(log):
    append(log, OK_LINE, ERR_LINE[:50])
    clock = FakeClock()
    _, result = al.watch(str(log), 0, 0, [CANARY], clock.clock, clock.sleep)
    assert (result["lines"], result["requests"], result["skipped"]) == (1, 1, 0)
    assert result["offset"] == len(OK_LINE)
    append(log, ERR_LINE[50:])
    _, result = al.watch(str(log), result["offset"], 0, [CANARY], clock.clock, clock.sleep)
    assert (result["lines"], result["requests"], result["errors"], result["skipped"]) == (1, 1, 1, 0)
    assert result["offset"] == len(OK_LINE) + len(ERR_LINE)


def test_lines_longer_than_a_chunk(log, monkeypatch):
    monkeypatch.setattr(al, "CHUNK_BYTES", 7)
    append(log, OK_LINE, ERR_LINE, OTHER_LINE)
    clock = FakeClock()
    _, result = al.watch(str(log), 0, 0, [CANARY], clock.clock, clock.sleep)
    assert (result["lines"], result["requests"], result["errors"], result["skipped"]) == (3, 2, 1, 0)
    assert result["offset"] == os.path.getsize(str(log))


def test_following_for_seconds_reads_new_lines(log):
    append(log, ERR_LINE)
    mark = al.end_offset(str(log))
    clock = FakeClock(on_sleep=[lambda: append(log, OK_LINE), lambda: append(log, ERR_LINE, OK_LINE)])
    _, result = al.watch(str(log), mark, 2.0, [CANARY], clock.clock, clock.sleep, interval=0.5)
    assert (result["lines"], result["requests"], result["errors"]) == (3, 3, 1)
    assert clock.sleeps == [0.5, 0.5, 0.5, 0.5]
    assert result["offset"] == os.path.getsize(str(log))


def test_following_never_sleeps_past_the_window(log):
    clock = FakeClock()
    al.watch(str(log), 0, 1.2, [CANARY], clock.clock, clock.sleep, interval=0.5)
    assert clock.sleeps == [0.5, 0.5, pytest.approx(0.2)]


@pytest.mark.parametrize("new_content", [[], [OK_LINE], [ERR_LINE, OK_LINE]])
def test_truncated_or_rotated_since_the_mark_starts_at_zero(log, new_content):
    append(log, *([OK_LINE] * 5))
    mark = al.end_offset(str(log))
    log.write_text("".join(new_content))   # shorter than the mark now
    clock = FakeClock()
    _, result = al.watch(str(log), mark, 0, [CANARY], clock.clock, clock.sleep)
    assert result["rotated"] is True
    assert result["lines"] == len(new_content)
    assert result["errors"] == new_content.count(ERR_LINE)
    assert result["offset"] == os.path.getsize(str(log))


def test_truncated_while_following(log):
    append(log, OK_LINE, OK_LINE)
    mark = 0

    def copytruncate():
        with open(str(log), "w") as handle:
            handle.write(ERR_LINE)

    clock = FakeClock(on_sleep=[copytruncate])
    _, result = al.watch(str(log), mark, 1.0, [CANARY], clock.clock, clock.sleep, interval=0.5)
    assert result["rotated"] is True
    assert (result["lines"], result["requests"], result["errors"]) == (3, 3, 1)
    assert result["offset"] == len(ERR_LINE)


def test_rotated_by_rename_while_following(log):
    append(log, OK_LINE)
    rotated = str(log) + ".1"

    def rename_and_create():
        os.rename(str(log), rotated)
        append(log, OTHER_LINE)         # nginx has reopened nothing yet ...
        append(rotated, ERR_LINE)       # ... and still writes to the old file

    def nginx_reopens():
        append(rotated, ERR_LINE)       # the last buffered lines reach the old file
        append(log, ERR_LINE)

    clock = FakeClock(on_sleep=[rename_and_create, nginx_reopens])
    _, result = al.watch(str(log), 0, 1.5, [CANARY], clock.clock, clock.sleep, interval=0.5)
    assert result["rotated"] is True
    # OK (old file), ERR + ERR (old file after the rename), OTHER + ERR (new file)
    assert (result["lines"], result["requests"], result["errors"]) == (5, 4, 3)
    assert result["offset"] == len(OTHER_LINE) + len(ERR_LINE)


def test_log_missing_for_a_moment_while_following(log):
    append(log, OK_LINE)
    moved = str(log) + ".1"
    clock = FakeClock(on_sleep=[lambda: os.rename(str(log), moved), lambda: append(log, ERR_LINE)])
    _, result = al.watch(str(log), 0, 1.0, [CANARY], clock.clock, clock.sleep, interval=0.5)
    assert (result["lines"], result["requests"], result["errors"], result["rotated"]) == (2, 2, 1, True)


# --- the module ---------------------------------------------------------------------------

def run_module(capsys, **args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            nginx_access_watch.main()
    return json.loads(capsys.readouterr().out)


def test_module_mark_returns_the_end_and_reads_nothing(log, capsys):
    append(log, ERR_LINE * 3)
    result = run_module(capsys, path=str(log))
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["offset"] == 3 * len(ERR_LINE)
    assert (result["lines"], result["requests"], result["errors"]) == (0, 0, 0)
    assert result["failed_canary"] is False


def test_module_passes_a_healthy_canary(log, capsys):
    append(log, ERR_LINE)
    mark = os.path.getsize(str(log))
    append(log, *([OK_LINE] * 99 + [ERR_LINE, OTHER_LINE]))
    result = run_module(capsys, path=str(log), offset=mark, upstreams=[CANARY], min_requests=50,
                        _ansible_check_mode=True)
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert (result["requests"], result["errors"], result["error_rate"]) == (100, 1, 0.01)
    assert result["by_status"] == {"200": 99, "502": 1}
    assert result["lines"] == 101
    assert result["samples"] == [ERR_LINE.rstrip("\n")]
    assert result["failed_canary"] is False
    assert result["offset"] == os.path.getsize(str(log))


def test_module_fails_a_bad_canary_with_the_counts(log, capsys):
    append(log, *([OK_LINE] * 113 + [ERR_LINE] * 7))
    result = run_module(capsys, path=str(log), offset=0, upstreams=[CANARY])
    assert result["failed"] is True
    assert result["msg"] == ("canary 10.0.0.2:3001: 7 of 120 requests answered 5xx (5.8 % > 1.0 %) "
                             "since byte offset 0")
    assert result["failed_canary"] is True
    assert (result["requests"], result["errors"]) == (120, 7)
    assert len(result["samples"]) == 5


def test_module_fails_a_canary_without_traffic(log, capsys):
    append(log, *([OTHER_LINE] * 10))
    result = run_module(capsys, path=str(log), offset=0, upstreams=[CANARY], min_requests=1)
    assert result["failed"] is True
    assert "only 0 request(s) reached it, at least 1 are needed" in result["msg"]


def test_module_missing_log(tmp_path, capsys):
    result = run_module(capsys, path=str(tmp_path / "nope.log"))
    assert result["failed"] is True
    assert "cannot read the access log" in result["msg"]
    assert "nginx_lb_access_log" in result["msg"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"offset": -1, "upstreams": [CANARY]}, "offset must not be negative"),
        ({"offset": 0}, "upstreams must list the canary instances"),
        ({"offset": 0, "upstreams": []}, "upstreams must list the canary instances"),
        ({"seconds": 5}, "seconds needs offset"),
        ({"offset": 0, "upstreams": [CANARY], "seconds": -1}, "seconds must not be negative"),
        ({"offset": 0, "upstreams": [CANARY], "max_error_rate": 1.5}, "max_error_rate must be between 0 and 1"),
        ({"offset": 0, "upstreams": [CANARY], "min_requests": -1}, "min_requests must not be negative"),
        ({"offset": 0, "upstreams": ["api1:3000"]}, "is a host name"),
    ],
)
def test_module_refuses_bad_arguments(log, capsys, args, message):
    result = run_module(capsys, path=str(log), **args)
    assert result["failed"] is True
    assert message in result["msg"]
