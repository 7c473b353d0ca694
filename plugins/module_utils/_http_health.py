# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure part of recete.stack.http_health: judging one answer, and the
wait-until-N-consecutive-successes loop.

No Ansible imports and no I/O of its own: the loop gets its HTTP request,
clock and sleep as functions, so the unit tests drive it with fakes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import math

# Enough of a body to recognise what answered, short enough for one line.
SNIPPET_CHARS = 200


class Check(object):
    """What one request saw: an HTTP status and body, or a connection error."""

    def __init__(self, status=None, body_text=None, error=None, latency_ms=0.0):
        self.status = status
        self.body_text = body_text
        self.error = error
        self.latency_ms = latency_ms

    def body(self):
        """The body parsed as JSON when it is JSON, else the text (None without a body)."""
        if self.body_text is None:
            return None
        try:
            return json.loads(self.body_text)
        except ValueError:
            return self.body_text


def json_subset(expected, actual):
    """True when `actual` contains `expected`.

    Mappings match when every key of `expected` is in `actual` with a matching
    value (recursively); extra keys in `actual` are ignored. Anything else
    (lists, strings, numbers, null) must be equal.
    """
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return False
        return all(key in actual and json_subset(value, actual[key]) for key, value in expected.items())
    if isinstance(expected, bool) or isinstance(actual, bool):
        # JSON true is not 1.
        return type(expected) is type(actual) and expected == actual
    return expected == actual


def snippet(text, limit=SNIPPET_CHARS):
    """The start of a body on one line, for messages."""
    if text is None:
        return ""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def judge(check, expect_status, expect_json=None):
    """Return (passed, reason) for one check; reason says why it failed ("" when passed)."""
    if check.error is not None:
        return False, "connection error: %s" % check.error
    if check.status not in expect_status:
        return False, "HTTP %s (expected %s): %s" % (
            check.status, " or ".join(str(s) for s in expect_status), snippet(check.body_text))
    if expect_json is not None:
        body = check.body()
        if not isinstance(body, (dict, list)):
            return False, "HTTP %s but the body is not JSON: %s" % (check.status, snippet(check.body_text))
        if not json_subset(expect_json, body):
            return False, "HTTP %s but the body does not contain %s: %s" % (
                check.status, json.dumps(expect_json, sort_keys=True), snippet(check.body_text))
    return True, ""


def percentile(values, pct):
    """Nearest-rank percentile of `values` (pct in 0..100); None for no values."""
    if not values:
        return None
    if not 0 <= pct <= 100:
        raise ValueError("percentile must be between 0 and 100, got %r" % (pct,))
    ordered = sorted(values)
    rank = max(1, int(math.ceil(pct / 100.0 * len(ordered))))
    return ordered[rank - 1]


class Streak(object):
    """The consecutive-success state machine: `consecutive` passes in a row, any failure resets."""

    def __init__(self, consecutive):
        if consecutive < 1:
            raise ValueError("consecutive must be at least 1, got %r" % (consecutive,))
        self.consecutive = consecutive
        self.latencies_ms = []
        self.attempts = 0
        self.last_reason = ""

    def record(self, check, passed, reason=""):
        """Count one check; return True once the streak is long enough."""
        self.attempts += 1
        if passed:
            self.latencies_ms.append(round(check.latency_ms, 1))
        else:
            self.latencies_ms = []
            self.last_reason = reason
        return self.done

    @property
    def passes(self):
        return len(self.latencies_ms)

    @property
    def done(self):
        return self.passes >= self.consecutive


def wait_healthy(fetch, clock, sleep, expect_status, expect_json=None, consecutive=3, timeout=60.0, interval=1.0):
    """Call fetch() until `consecutive` checks in a row pass, or `timeout` seconds have gone by.

    fetch() returns a Check; clock() returns seconds (monotonic); sleep(s) waits.
    Returns (ok, result) where result holds the figures the module reports.
    At least one check is made even with timeout 0; no check starts after the
    deadline, and no sleep runs past it.
    """
    streak = Streak(consecutive)
    start = clock()
    deadline = start + timeout
    last = None
    while True:
        last = fetch()
        passed, reason = judge(last, expect_status, expect_json)
        if streak.record(last, passed, reason):
            break
        now = clock()
        if now + interval > deadline:
            break
        sleep(interval)
    ok = streak.done
    result = {
        "attempts": streak.attempts,
        "elapsed_s": round(clock() - start, 3),
        "latencies_ms": list(streak.latencies_ms),
        "p50_ms": percentile(streak.latencies_ms, 50),
        "max_ms": max(streak.latencies_ms) if streak.latencies_ms else None,
        "status": last.status,
        "body": last.body(),
        "passes": streak.passes,
        "last_error": "" if ok else _shortfall(streak),
    }
    return ok, result


def _shortfall(streak):
    """Why a wait ended without success, for the failure message."""
    if streak.passes == 0:
        return "the last check saw %s" % streak.last_reason
    why = "the last %d check(s) passed, %d in a row were needed" % (streak.passes, streak.consecutive)
    if streak.last_reason:
        why += "; the failure before them saw %s" % streak.last_reason
    return why
