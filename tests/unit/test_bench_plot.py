"""bench/_plot.py: per-second buckets, percentiles, phase spans, and a real PNG when matplotlib is there."""
from __future__ import annotations

import argparse
import math
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))

import _plot  # noqa: E402  (bench/ is a folder of scripts, not a package)


def test_percentile_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert _plot.percentile(values, 50) == 51  # round(0.5 * 99) = 50 -> the 51st value
    assert _plot.percentile(values, 95) == 95
    assert _plot.percentile(values, 99) == 99
    assert _plot.percentile(values, 100) == 100
    assert _plot.percentile([7], 99) == 7
    assert _plot.percentile([3, 1, 2], 0) == 1  # sorts first
    assert math.isnan(_plot.percentile([], 50))


def test_percentile_matches_the_lab_helper():
    # the printed figures (bench/_lab.py) and the pictures must agree
    _lab = pytest.importorskip("_lab")
    values = [0.003, 0.2, 0.011, 0.05, 0.9, 0.004, 0.007]
    for q in (50, 95, 99):
        assert _plot.percentile(values, q) == _lab.percentile(values, q)


def test_samples_bucketed_per_second():
    samples = [(0.1, 0.010, True), (0.9, 0.030, True), (1.0, 0.020, False),
               (1.5, None, False), (3.2, 0.100, True)]
    rows = _plot.samples_to_rows(samples)
    assert [(r.start, r.end) for r in rows] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert [r.requests for r in rows] == [2, 2, 0, 1]
    assert [r.errors for r in rows] == [0, 2, 0, 0]
    # two answers: nearest rank rounds half to even (round(0.5) = 0), so p50 is the lower one, p99 the higher
    assert (rows[0].p50, rows[0].p99) == (0.010, 0.030)
    # a bucket with one answered request (the other got no answer) has that latency for every percentile
    assert rows[1].p50 == rows[1].p99 == 0.020
    # an empty second stays, with no latency: a stall shows as a gap
    assert math.isnan(rows[2].p50)
    assert rows[3].p95 == 0.100


def test_bucket_edges_and_width():
    samples = [(-0.2, 0.001, True), (1.999, 0.002, True), (2.0, 0.003, True), (4.0, 0.004, True)]
    rows = _plot.samples_to_rows(samples, width=2.0)
    assert [r.requests for r in rows] == [2, 1, 1]  # the early sample joins the first bucket
    assert rows[-1].start == 4.0 and rows[-1].end == 6.0
    with pytest.raises(ValueError):
        _plot.samples_to_rows(samples, width=0)


def test_buckets_run_to_the_end_of_the_load():
    rows = _plot.samples_to_rows([(0.5, 0.01, True)], end=3.0)
    assert [r.requests for r in rows] == [1, 0, 0]
    # the load stopped 0.25 s into the last second: its rate is over those 0.25 s
    rows = _plot.samples_to_rows([(0.5, 0.01, True), (1.0, 0.01, True), (1.1, 0.01, True)], end=1.25)
    assert rows[-1].end == 1.25
    assert _plot.rates(rows)[-1][1] == 8.0
    assert _plot.samples_to_rows([]) == []


def test_percentiles_per_bucket_over_many_samples():
    # 100 requests in second 0 with latencies 1..100 ms, 10 in second 1 at 5 ms
    samples = [(i / 100.0, (i + 1) / 1000.0, True) for i in range(100)] + [(1 + i / 10.0, 0.005, True)
                                                                           for i in range(10)]
    first, second = _plot.samples_to_rows(samples)
    assert (first.p50, first.p95, first.p99) == (0.051, 0.095, 0.099)
    assert (second.requests, second.p99) == (10, 0.005)


def test_rates_per_second_of_intervals():
    rows = [_plot.Interval(0, 2, 100, 4, 0.01, 0.02, 0.03), _plot.Interval(10, 20, 50, 0, 0.01, 0.02, 0.03)]
    assert _plot.rates(rows) == [(1.0, 50.0, 2.0), (15.0, 5.0, 0.0)]


def test_gaps_between_intervals_are_unmeasured():
    nan = float("nan")
    runs = [_plot.Interval(30, 40, 900, 0, nan, nan, nan), _plot.Interval(0, 10, 500, 1, 0.01, 0.02, 0.03),
            _plot.Interval(10, 12, 20, 0, 0.01, 0.02, 0.03)]
    filled = _plot.fill_gaps(runs)
    assert [(r.start, r.end) for r in filled] == [(0, 10), (10, 12), (12, 30), (30, 40)]
    gap = filled[2]
    assert math.isnan(gap.requests) and math.isnan(gap.p99)
    assert math.isnan(_plot.rates([gap])[0][1])  # no rate is drawn where nothing was measured
    assert _plot.fill_gaps([]) == []


def test_phase_spans_from_marks():
    marks = [("before", 0.0), ("2->5", 8.0), ("2->5", 8.0), ("5->2", 30.5), ("before", 40.0)]
    spans = _plot.phase_spans(marks, 48.0)
    # the zero-length duplicate is dropped, a phase entered again is a new span, the last ends at `end`
    assert spans == [("before", 0.0, 8.0), ("2->5", 8.0, 30.5), ("5->2", 30.5, 40.0), ("before", 40.0, 48.0)]
    assert _plot.phase_spans([], 10.0) == []


def test_default_png_name():
    import datetime
    when = datetime.datetime(2026, 11, 28, 6, 5, 4, tzinfo=datetime.timezone.utc)
    path = _plot.default_png("scale_under_load", when)
    assert path == os.path.join(REPO, "bench", "out", "scale_under_load-20261128T060504Z.png")


def test_machine_names_cores():
    assert "%d cores" % os.cpu_count() in _plot.machine()


def test_timeline_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    samples = [(i / 50.0, 0.005 + (0.2 if 100 <= i < 150 else 0.0), not 120 <= i < 125) for i in range(300)]
    rows = _plot.samples_to_rows(samples)
    args = argparse.Namespace(png=str(tmp_path / "out" / "t.png"), no_png=False)
    path = _plot.write(args, "test bench", rows, [("before", 0, 2), ("deploy", 2, 3), ("after", 3, 6)],
                       note="rate 50/s")
    assert path == args.png
    with open(path, "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"
    assert "timeline: " in capsys.readouterr().out
    assert _plot.write(argparse.Namespace(png=str(tmp_path / "no.png"), no_png=True), "x", rows) is None
    assert not (tmp_path / "no.png").exists()


def test_timeline_with_a_gauges_panel(tmp_path):
    """The autoscaling bench's third panel: CPU on the left axis, instance counts on the right."""
    pytest.importorskip("matplotlib")
    rows = _plot.samples_to_rows([(i / 10.0, 0.01, True) for i in range(100)])
    gauges = [("CPU", [(t, 0.3 + t / 20.0) for t in range(10)], "left"),
              ("instances", [(t, 2 + (t > 5)) for t in range(10)], "right")]
    path = _plot.timeline(str(tmp_path / "g.png"), "gauges", rows, [("ramp", 0, 10)], gauges=gauges)
    with open(path, "rb") as png:
        assert png.read(8) == b"\x89PNG\r\n\x1a\n"


def test_no_matplotlib_prints_why(monkeypatch, tmp_path, capsys):
    # matplotlib missing (None in sys.modules makes the import fail): the figures stay, no picture
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert _plot.timeline(str(tmp_path / "t.png"), "x", []) is None
    assert "matplotlib is not installed" in capsys.readouterr().out
    assert not (tmp_path / "t.png").exists()


def test_open_loop_keeps_samples_and_phase_marks():
    """bench/_lab.py OpenLoop against a real loopback HTTP server: what the timeline is drawn from."""
    import http.server
    import json
    import threading
    import time

    _lab = pytest.importorskip("_lab")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the load balancer

        def _answer(self, code):
            data = json.dumps({"id": 1}).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802 (http.server's naming)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._answer(201)

        def do_GET(self):  # noqa: N802
            self._answer(200)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        load = _lab.OpenLoop("127.0.0.1", 50, port=server.server_address[1], connections=4)
        load.start()
        time.sleep(0.6)
        load.phase = "middle"
        time.sleep(0.6)
        load.phase = "after"
        time.sleep(0.3)
        load.stop()
    finally:
        server.shutdown()
        server.server_close()
    spans = load.phases()
    assert [name for name, _, _ in spans] == ["before", "middle", "after"]
    assert spans[0][1] == 0.0 and spans[-1][2] == load.ended
    assert all(a[2] == b[1] for a, b in zip(spans, spans[1:]))  # contiguous
    samples = load.samples()
    assert len(samples) == len(load.results) >= 60
    assert [t for t, _, _ in samples] == sorted(t for t, _, _ in samples)
    assert all(ok and latency is not None for _, latency, ok in samples)
    # each request falls in the span of the phase it was counted in (marks and due times share one clock)
    where = {name: (start, end) for name, start, end in spans}
    for result in load.results:
        start, end = where[result.phase]
        assert start - 0.05 <= result.at <= end + 0.05
    # 50 per second while the load ran: every full second of the picture says so
    rows = _plot.samples_to_rows(samples, end=load.ended)
    assert rows[0].requests == 50
    assert rows[-1].end == load.ended
