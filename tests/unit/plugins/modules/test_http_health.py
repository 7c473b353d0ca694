"""Unit tests of recete.stack.http_health and its pure helpers (_http_health).

The state machine, the JSON subset match and the percentile are tested
directly with a fake clock; the module itself runs against a real HTTP server
on 127.0.0.1 (a random free port) whose answers the test scripts.
"""
from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

_COLLECTIONS = Path(__file__).resolve().parents[4] / ".collections"
if _COLLECTIONS.is_dir() and str(_COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS))

from ansible.module_utils.testing import patch_module_args  # noqa: E402

from ansible_collections.recete.stack.plugins.module_utils import _http_health as hh  # noqa: E402
from ansible_collections.recete.stack.plugins.modules import http_health  # noqa: E402


READY = '{"status": "ready", "version": "1.0.0", "checks": {"postgres": "ok", "redis": "ok"}}'
NOT_READY = '{"status": "not_ready", "checks": {"postgres": "ok", "redis": "redis: not connected"}}'


# --- JSON subset ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("expected", "actual", "match"),
    [
        ({"status": "ready"}, {"status": "ready", "version": "1.0.0"}, True),
        ({"status": "ready"}, {"status": "not_ready"}, False),
        ({"status": "ready"}, {"version": "1.0.0"}, False),
        ({}, {"anything": 1}, True),
        ({"checks": {"redis": "ok"}}, {"checks": {"redis": "ok", "postgres": "ok"}}, True),
        ({"checks": {"redis": "ok"}}, {"checks": {"redis": "down"}}, False),
        ({"checks": {"redis": "ok"}}, {"checks": "ok"}, False),
        ({"status": "ready"}, ["status", "ready"], False),
        ({"n": 1}, {"n": 1}, True),
        ({"n": 1}, {"n": True}, False),
        ({"ok": True}, {"ok": 1}, False),
        ({"ok": True}, {"ok": True}, True),
        ({"list": [1, 2]}, {"list": [1, 2]}, True),
        ({"list": [1]}, {"list": [1, 2]}, False),
        ({"v": None}, {"v": None}, True),
        ({"v": None}, {}, False),
    ],
)
def test_json_subset(expected, actual, match):
    assert hh.json_subset(expected, actual) is match


# --- percentile -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("values", "pct", "expected"),
    [
        ([], 50, None),
        ([7.0], 50, 7.0),
        ([3.0, 1.0, 2.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        (list(range(1, 101)), 95, 95),
        (list(range(1, 101)), 99, 99),
    ],
)
def test_percentile(values, pct, expected):
    assert hh.percentile(values, pct) == expected


@pytest.mark.parametrize("pct", [-1, 101])
def test_percentile_refuses_out_of_range(pct):
    with pytest.raises(ValueError):
        hh.percentile([1.0], pct)


# --- judging one check ----------------------------------------------------------

@pytest.mark.parametrize(
    ("check", "expect_status", "expect_json", "passed", "reason_has"),
    [
        (hh.Check(200, READY), [200], None, True, ""),
        (hh.Check(200, READY), [200], {"status": "ready"}, True, ""),
        (hh.Check(200, "plain text"), [200], None, True, ""),
        (hh.Check(200, "plain text"), [200], {"status": "ready"}, False, "not JSON: plain text"),
        (hh.Check(200, NOT_READY), [200], {"status": "ready"}, False, "does not contain"),
        (hh.Check(503, NOT_READY), [200], {"status": "ready"}, False, "HTTP 503 (expected 200): {\"status\""),
        (hh.Check(503, NOT_READY), [200, 503], None, True, ""),
        (hh.Check(204, ""), [200, 204], None, True, ""),
        (hh.Check(error="[Errno 111] Connection refused"), [200], None, False,
         "connection error: [Errno 111] Connection refused"),
    ],
)
def test_judge(check, expect_status, expect_json, passed, reason_has):
    ok, reason = hh.judge(check, expect_status, expect_json)
    assert ok is passed
    assert reason_has in reason
    assert (reason == "") is passed


def test_snippet_is_one_short_line():
    text = "line one\nline two   with   spaces\n" + "x" * 500
    out = hh.snippet(text)
    assert "\n" not in out
    assert out.startswith("line one line two with spaces x")
    assert out.endswith("...")
    assert len(out) == hh.SNIPPET_CHARS + 3
    assert hh.snippet(None) == ""


# --- the consecutive-success state machine --------------------------------------

class FakeClock(object):
    """Time moves only when the code sleeps (or a request takes time)."""

    def __init__(self, request_s=0.0):
        self.now = 1000.0
        self.request_s = request_s
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def scripted(clock, answers):
    """fetch() returning the scripted checks in order (the last one repeats)."""
    answers = list(answers)

    def fetch():
        clock.now += clock.request_s
        check = answers.pop(0) if len(answers) > 1 else answers[0]
        return check
    return fetch


OK = hh.Check(200, READY, latency_ms=2.0)
DOWN = hh.Check(503, NOT_READY, latency_ms=1.0)
REFUSED = hh.Check(error="[Errno 111] Connection refused", latency_ms=0.3)


@pytest.mark.parametrize(
    ("answers", "consecutive", "timeout", "ok", "attempts"),
    [
        ([OK], 3, 10, True, 3),                                  # healthy at once
        ([OK], 1, 10, True, 1),
        ([REFUSED, REFUSED, OK], 3, 10, True, 5),                # starting up
        ([OK, DOWN, OK, OK, DOWN, OK], 3, 10, True, 8),          # flapping resets the count
        ([OK, DOWN], 3, 2, False, 3),                            # never 3 in a row: 0, 1, 2 s
        ([REFUSED], 3, 2.5, False, 3),                           # never up
        ([REFUSED], 1, 0, False, 1),                             # timeout 0 still checks once
        ([OK], 3, 0, False, 1),                                  # no time for a second check
    ],
)
def test_wait_healthy_state_machine(answers, consecutive, timeout, ok, attempts):
    clock = FakeClock()
    passed, result = hh.wait_healthy(scripted(clock, answers), clock.clock, clock.sleep, [200], {"status": "ready"},
                                     consecutive=consecutive, timeout=timeout, interval=1.0)
    assert passed is ok
    assert result["attempts"] == attempts
    # Never sleeps past the deadline, and never sleeps after the last check.
    assert sum(clock.sleeps) <= timeout
    assert len(clock.sleeps) == attempts - 1
    if ok:
        assert result["latencies_ms"] == [2.0] * consecutive
        assert result["p50_ms"] == 2.0
        assert result["max_ms"] == 2.0
        assert result["status"] == 200
        assert result["body"]["status"] == "ready"
        assert result["last_error"] == ""
    else:
        assert result["last_error"]


def test_wait_healthy_reports_the_last_failure():
    clock = FakeClock()
    ok, result = hh.wait_healthy(scripted(clock, [REFUSED, DOWN]), clock.clock, clock.sleep, [200], {"status": "ready"},
                                 consecutive=2, timeout=3, interval=1.0)
    assert not ok
    assert result["status"] == 503
    assert result["body"]["status"] == "not_ready"
    assert result["last_error"].startswith("the last check saw HTTP 503 (expected 200)")
    assert result["latencies_ms"] == []
    assert result["p50_ms"] is None and result["max_ms"] is None


def test_wait_healthy_says_when_the_streak_was_cut_short():
    clock = FakeClock()
    ok, result = hh.wait_healthy(scripted(clock, [DOWN, OK]), clock.clock, clock.sleep, [200], None,
                                 consecutive=5, timeout=3, interval=1.0)
    assert not ok
    assert "the last 3 check(s) passed, 5 in a row were needed" in result["last_error"]
    assert "HTTP 503" in result["last_error"]


def test_wait_healthy_counts_request_time_against_the_timeout():
    clock = FakeClock(request_s=2.0)
    ok, result = hh.wait_healthy(scripted(clock, [OK]), clock.clock, clock.sleep, [200], None,
                                 consecutive=3, timeout=5, interval=1.0)
    # 0 -> check (2 s) -> sleep 1 -> check (2 s) = 5 s: no room for a third.
    assert not ok
    assert result["attempts"] == 2
    assert result["elapsed_s"] == 5.0


def test_streak_refuses_zero():
    with pytest.raises(ValueError):
        hh.Streak(0)


# --- the module against a real HTTP server on loopback ---------------------------

class Script(object):
    """The answers the test server gives, in order (the last one repeats)."""

    def __init__(self):
        self.answers = [(200, READY)]
        self.seen = []
        self.lock = threading.Lock()

    def next(self, path, headers):
        with self.lock:
            self.seen.append((path, dict(headers)))
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture()
def server():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            status, body = script.next(self.path, self.headers)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json" if body.startswith("{") else "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    script.url = "http://127.0.0.1:%d" % httpd.server_address[1]
    try:
        yield script
    finally:
        httpd.shutdown()
        httpd.server_close()


def run_module(capsys, **args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            http_health.main()
    return json.loads(capsys.readouterr().out)


def test_module_passes_on_a_ready_server(server, capsys):
    result = run_module(capsys, url=server.url + "/ready", expect_json={"status": "ready"}, interval=0.01,
                        headers={"X-Probe": "recete"})
    assert not result.get("failed"), result
    assert result["changed"] is False
    assert result["status"] == 200
    assert result["body"]["version"] == "1.0.0"
    assert result["attempts"] == 3
    assert len(result["latencies_ms"]) == 3
    assert result["p50_ms"] <= result["max_ms"]
    assert [path for path, _ in server.seen] == ["/ready"] * 3
    assert server.seen[0][1]["X-Probe"] == "recete"


def test_module_waits_through_503(server, capsys):
    server.answers = [(503, NOT_READY), (503, NOT_READY), (200, READY)]
    result = run_module(capsys, url=server.url + "/ready", expect_json={"status": "ready"}, consecutive=2,
                        interval=0.01)
    assert not result.get("failed"), result
    assert result["attempts"] == 4


def test_module_fails_naming_the_url_and_the_last_answer(server, capsys):
    server.answers = [(503, NOT_READY)]
    url = server.url + "/ready"
    result = run_module(capsys, url=url, expect_json={"status": "ready"}, timeout=0.2, interval=0.05)
    assert result["failed"] is True
    assert result["msg"].startswith(url + " did not pass 3 consecutive check(s) within 0.2 s")
    assert "HTTP 503 (expected 200)" in result["msg"]
    assert "not_ready" in result["msg"]
    assert result["status"] == 503
    assert result["body"]["status"] == "not_ready"


def test_module_fails_on_a_closed_port(capsys):
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = "http://127.0.0.1:%d/ready" % port
    result = run_module(capsys, url=url, timeout=0.1, interval=0.05, consecutive=1)
    assert result["failed"] is True
    assert url in result["msg"]
    assert "connection error" in result["msg"]
    assert result["status"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"consecutive": 0}, "consecutive must be at least 1"),
        ({"request_timeout": 0}, "request_timeout must be above 0"),
        ({"expect_status": []}, "expect_status must list"),
        ({"url": "ftp://x/"}, "url must start with http"),
    ],
)
def test_module_refuses_bad_arguments(capsys, args, message):
    base = {"url": "http://127.0.0.1:1/ready"}
    base.update(args)
    result = run_module(capsys, **base)
    assert result["failed"] is True
    assert message in result["msg"]
