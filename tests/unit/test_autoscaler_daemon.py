"""roles/autoscaler/files/recete_autoscaler.py: one evaluation round with a fake Prometheus and runner.

The HPA rules themselves are tested in plugins/module_utils/test_hpa.py; here: what the
daemon asks Prometheus, which scale.yml variables it passes, dry run, the decision log,
and that a failed run is not counted as a scale event.
"""
import datetime
import importlib
import json
import os
import sys
import types

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    # The role installs module_utils/_hpa.py next to the daemon as recete_hpa.py: do the same.
    lib = tmp_path_factory.mktemp("lib")
    (lib / "recete_hpa.py").write_text(open(os.path.join(REPO, "plugins", "module_utils", "_hpa.py")).read())
    (lib / "recete_autoscaler.py").write_text(
        open(os.path.join(REPO, "roles", "autoscaler", "files", "recete_autoscaler.py")).read())
    sys.path.insert(0, str(lib))
    try:
        yield importlib.import_module("recete_autoscaler")
    finally:
        sys.path.remove(str(lib))


class FakePrometheus:
    def __init__(self, values):
        self.values = values
        self.asked = []

    def value(self, expr):
        self.asked.append(expr)
        return self.values.get(expr)


class FakeRunner:
    def __init__(self, ok=True):
        self.ok = ok
        self.calls = []

    def scale(self, counts, reason):
        self.calls.append((counts, reason))
        return self.ok, 42.0, "successful" if self.ok else "failed (rc 2)"


def config(tmp_path, dry_run=False, schedules=()):
    return {
        "dry_run": dry_run, "interval": 15, "decision_log": str(tmp_path / "decisions.jsonl"),
        "schedules": list(schedules),
        "tiers": {
            "api": {"min": 2, "max": 10, "count_var": "api_replicas", "replicas_query": "API_COUNT",
                    "metrics": [{"name": "cpu", "query": "API_CPU", "target": 0.7, "kind": "average"}]},
            "worker": {"min": 1, "max": 20, "count_var": "worker_replicas", "replicas_query": "WORKER_COUNT",
                       "metrics": [{"name": "queue_latency", "query": "LATENCY", "target": 30, "kind": "average"}]},
        },
    }


def make(daemon, tmp_path, values, runner=None, **kw):
    clock = {"now": 1000.0}
    scaler = daemon.Autoscaler(config(tmp_path, **kw), FakePrometheus(values), runner or FakeRunner(),
                               clock=lambda: clock["now"],
                               wall=lambda: datetime.datetime(2026, 11, 25, 12, 0))  # a Wednesday
    return scaler, clock


def log_lines(tmp_path):
    path = tmp_path / "decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_one_run_of_scale_yml_carries_every_tier_that_changes(daemon, tmp_path):
    runner = FakeRunner()
    scaler, _ = make(daemon, tmp_path, {"API_COUNT": 2, "API_CPU": 1.4, "WORKER_COUNT": 1, "LATENCY": 90},
                     runner)
    entries = scaler.act(scaler.evaluate())
    assert runner.calls[0][0] == {"api_replicas": 4, "worker_replicas": 3}
    assert "api 2 -> 4" in runner.calls[0][1] and "cpu 1.4 (target 0.7)" in runner.calls[0][1]
    assert [(e["tier"], e["action"], e["desired"]) for e in entries] == [("api", "scale", 4), ("worker", "scale", 3)]
    assert [e["tier"] for e in log_lines(tmp_path)] == ["api", "worker"]
    # The rate policies now know about the change: within 15 s no more than the limit.
    assert scaler.tiers["api"].events[0]["after"] == 4


def test_nothing_to_do_runs_nothing_and_logs_nothing(daemon, tmp_path):
    runner = FakeRunner()
    scaler, _ = make(daemon, tmp_path, {"API_COUNT": 3, "API_CPU": 0.72, "WORKER_COUNT": 1, "LATENCY": 0}, runner)
    entries = scaler.act(scaler.evaluate())
    assert runner.calls == [] and entries == [] and log_lines(tmp_path) == []


def test_dry_run_logs_what_it_would_do_and_runs_nothing(daemon, tmp_path):
    runner = FakeRunner()
    scaler, _ = make(daemon, tmp_path, {"API_COUNT": 2, "API_CPU": 1.4, "WORKER_COUNT": 1, "LATENCY": 0},
                     runner, dry_run=True)
    entries = scaler.act(scaler.evaluate())
    assert runner.calls == []
    assert [(e["action"], e["current"], e["desired"]) for e in entries] == [("would scale", 2, 4)]
    assert scaler.tiers["api"].events == []   # nothing happened


def test_a_failed_run_is_logged_and_not_counted_as_a_change(daemon, tmp_path):
    scaler, _ = make(daemon, tmp_path, {"API_COUNT": 2, "API_CPU": 1.4, "WORKER_COUNT": 1, "LATENCY": 0},
                     FakeRunner(ok=False))
    entries = scaler.act(scaler.evaluate())
    assert entries[0]["ok"] is False and "failed" in entries[0]["detail"]
    assert scaler.tiers["api"].events == []


def test_a_scale_down_held_by_the_window_is_logged_as_hold(daemon, tmp_path):
    values = {"API_COUNT": 6, "API_CPU": 0.7, "WORKER_COUNT": 1, "LATENCY": 0}
    runner = FakeRunner()
    scaler, clock = make(daemon, tmp_path, values, runner)
    scaler.act(scaler.evaluate())
    values["API_CPU"] = 0.2
    clock["now"] += 15
    entries = scaler.act(scaler.evaluate())
    assert runner.calls == []
    assert entries[0]["action"] == "hold" and entries[0]["proposal"] == 2 and entries[0]["desired"] == 6
    assert entries[0]["limited_by"] == "stabilization window"


def test_no_count_from_prometheus_means_no_decision_for_that_tier(daemon, tmp_path):
    runner = FakeRunner()
    scaler, _ = make(daemon, tmp_path, {"API_CPU": 1.4, "WORKER_COUNT": 1, "LATENCY": 0}, runner)
    decisions = scaler.evaluate()
    assert [d["tier"] for d in decisions] == ["worker"]
    scaler.act(decisions)
    assert runner.calls == []


def test_an_active_floor_scales_up_at_once(daemon, tmp_path):
    runner = FakeRunner()
    floors = [{"name": "launch", "from": "2026-11-25T00:00", "until": "2026-11-26T00:00", "floors": {"api": 8}}]
    scaler, _ = make(daemon, tmp_path, {"API_COUNT": 2, "API_CPU": 0.1, "WORKER_COUNT": 1, "LATENCY": 0},
                     runner, schedules=floors)
    entries = scaler.act(scaler.evaluate())
    assert runner.calls[0][0] == {"api_replicas": 8}
    assert entries[0]["floor"] == 8 and entries[0]["limited_by"] == "floor"


def test_prometheus_client_reads_vector_and_scalar_answers(daemon, monkeypatch):
    answers = {
        "up": {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "3"]}]}},
        "none": {"status": "success", "data": {"resultType": "vector", "result": []}},
        "scalar": {"status": "success", "data": {"resultType": "scalar", "result": [1, "0.5"]}},
        "nan": {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "NaN"]}]}},
    }

    class Response:
        def __init__(self, body):
            self.body = json.dumps(body).encode()

        def read(self, *args):
            return self.body

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def urlopen(url, timeout):
        query = url.split("query=")[1]
        return Response(answers[query])

    monkeypatch.setattr(daemon.urllib.request, "urlopen", urlopen)
    prom = daemon.Prometheus("http://x:9090")
    assert prom.value("up") == 3.0
    assert prom.value("none") is None
    assert prom.value("scalar") == 0.5
    assert prom.value("nan") is None


def test_after_its_own_run_it_trusts_the_count_it_set_until_prometheus_catches_up(daemon, tmp_path):
    values = {"API_COUNT": 2, "API_CPU": 1.4, "WORKER_COUNT": 1, "LATENCY": 0}
    runner = FakeRunner()
    scaler, clock = make(daemon, tmp_path, values, runner)
    scaler.act(scaler.evaluate())
    assert runner.calls[-1][0] == {"api_replicas": 4}
    # 20 s later Prometheus still counts 2 targets; CPU per instance fell to 0.7 on the 4 that run.
    clock["now"] += 20
    values["API_CPU"] = 0.7
    decisions = scaler.evaluate()
    assert decisions[0]["current"] == 4 and decisions[0]["desired"] == 4
    scaler.act(decisions)
    assert len(runner.calls) == 1


def test_evaluation_goes_on_during_a_background_run_and_starts_no_second_one(daemon, tmp_path):
    import threading
    release = threading.Event()

    class SlowRunner(FakeRunner):
        def scale(self, counts, reason):
            self.calls.append((counts, reason))
            release.wait(5)
            return True, 60.0, "successful"

    runner = SlowRunner()
    values = {"API_COUNT": 2, "API_CPU": 1.4, "WORKER_COUNT": 1, "LATENCY": 0}
    scaler, clock = make(daemon, tmp_path, values, runner)
    scaler.act(scaler.evaluate(), background=True)
    assert scaler.run_thread.is_alive()
    clock["now"] += 15
    decisions = scaler.evaluate()                      # recommendations go on meanwhile
    assert [r["time"] for r in scaler.tiers["api"].recommendations] == [1000.0, 1000.0, 1015.0]  # seed, 1st, 2nd
    assert scaler.act(decisions, background=True) == [] and len(runner.calls) == 1
    release.set()
    scaler.run_thread.join(5)
    assert [e["action"] for e in log_lines(tmp_path)] == ["scale"] and scaler.tiers["api"].events[0]["after"] == 4
