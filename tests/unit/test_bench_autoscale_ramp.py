"""bench/autoscale_ramp.py: what the high load needed, on made-up samples (the test's scale-in rule)."""
from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))

ramp = pytest.importorskip("autoscale_ramp")  # bench/ is a folder of scripts, not a package
Sample = ramp.Sample


def samples(proposals, every=2.0):
    return [Sample(i * every, 0.5, 2, p, p) for i, p in enumerate(proposals)]


def test_the_lowest_proposal_of_the_last_20_s_before_the_drop():
    # The overshoot (6) is older than 20 s before the drop at t=40; then 4, a gap, 5.
    rows = samples([2, 3, 6, 6, 6, 6, 6, 6, 6, 6, 4, 4, None, 5, 4, 4, 4, 4, 4, 4, 4, 2, 2])
    assert ramp.high_load_need(rows, 40.0) == 4
    assert ramp.high_load_need(rows, 40.0, span=4.0) == 4
    assert ramp.high_load_need(rows, 18.0, span=2.0) == 6


def test_no_drop_or_no_proposal_no_need():
    assert ramp.high_load_need(samples([3, 4]), None) is None
    assert ramp.high_load_need(samples([None, None]), 2.0) is None


def test_timeline_and_summary_read_the_samples():
    from types import SimpleNamespace
    rows = samples([2, 2, 3, 3, 3, 4, 4, 4, 4, 4, 2])
    load = SimpleNamespace(samples=lambda: [(t * 0.5, 0.02, True) for t in range(40)])
    lines = ramp.timeline_lines({"rows": rows, "load": load})
    assert lines[0].split() == ["t(s)", "cpu", "up", "want", "req/s", "p95", "ms", "errors"]
    assert [line.split()[3] for line in lines[1:]] == ["2", "4", "2"]   # every 5th sample (10 s)
    result = {"events": 20000, "low": 30, "high": 360, "quota": 0.25, "target": 0.7, "tolerance": 0.1, "high_at": 4.0,
              "crossing_at": 8.0, "first_scale_out_at": 9.0, "scale_outs": [{"current": 2, "desired": 4}],
              "drop_at": 16.0, "first_scale_in_at": 19.0, "window": 60, "scale_ins": [{"current": 4, "desired": 2}],
              "high_need": 4, "first_scale_in_below_need_at": 80.0, "min_instances": 2, "max_instances": 4,
              "failed": 0, "sent": 100, "epoch0": 1000.0, "boosts": [(1050.0, 20000, 30000)]}
    text = "\n".join(ramp.summary_lines(result))
    assert "events raised during the high load: 20000->30000 at 50 s" in text
    assert "past the target's tolerance band (0.77) at 8 s" in text
    assert "the high load needed 4" in text and "first scale-in below it at 80 s (64 s after the drop" in text


def test_one_reading_takes_half_the_cost_as_the_events_and_two_readings_follow_their_line():
    cost = ramp.RequestCost(ceiling=400000)
    cost.add(20000, 0.65)
    assert cost.next_events(0.95) == 38000            # 20000 * (2 * 0.95 / 0.65 - 1)
    cost.add(29000, 0.68)                             # +9000 events, +0.03: 81000 more to reach 0.95
    assert cost.next_events(0.95) == 110000
    cost.add(None, None)                              # a failed reading is left out
    assert len(cost.readings) == 2


def test_the_next_count_is_never_lower_and_never_past_4x_or_the_ceiling():
    cost = ramp.RequestCost(ceiling=50000)
    cost.add(20000, 0.9)
    cost.add(30000, 0.85)                             # noise: a negative slope falls back on one reading
    assert cost.next_events(0.95) == 37000            # 30000 * (2 * 0.95 / 0.85 - 1) = 37059, in 1000s
    cost.add(30000, 0.2)
    assert cost.next_events(0.95) == 50000            # the ceiling
    low = ramp.RequestCost(ceiling=10 ** 6)
    low.add(10000, 0.1)
    assert low.next_events(0.95) == 40000             # 4 x per step at most
    high = ramp.RequestCost(ceiling=10 ** 6)
    high.add(10000, 0.94)
    assert high.next_events(0.95) == 11500            # at least 1.15 x
