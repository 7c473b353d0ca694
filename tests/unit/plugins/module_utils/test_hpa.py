"""The HPA algorithm against the Kubernetes semantics: tolerance, bounds, stabilization, rate limits,
missing metrics, flapping input, scheduled floors."""
import datetime
import random

import pytest

from ansible_collections.recete.stack.plugins.module_utils._hpa import (
    Tier,
    active_floor,
    metric_proposal,
    parse_weekly,
    schedule_problems,
)

API = {"min": 2, "max": 10}


def cpu(value, target=0.7):
    return [{"name": "cpu", "value": value, "target": target, "kind": "average"}]


def settle(tier, now, current, metrics, floor=0):
    """One evaluation whose answer is applied at once (the scale event is recorded)."""
    decision = tier.decide(now, current, metrics, floor)
    tier.record_scale(now, current, decision["desired"])
    return decision["desired"], decision


# --- one metric -----------------------------------------------------------------

@pytest.mark.parametrize("current,value,target,expected", [
    (2, 0.70, 0.70, 2),    # on target
    (2, 0.76, 0.70, 2),    # +8.6 %: inside the 10 % tolerance
    (2, 0.64, 0.70, 2),    # -8.6 %: inside
    (2, 0.78, 0.70, 3),    # +11 %: ceil(2 x 1.114) = 3
    (2, 1.40, 0.70, 4),    # twice the target: twice the instances
    (4, 0.35, 0.70, 2),    # half the target: half the instances
    (3, 0.50, 0.70, 3),    # ceil(3 x 0.714) = ceil(2.14) = 3
    (3, 0.45, 0.70, 2),    # ceil(1.93) = 2
    (5, 0.0, 0.70, 0),     # idle: the bounds (min) decide later
])
def test_average_metric_proposes_ceil_of_current_times_ratio(current, value, target, expected):
    assert metric_proposal(current, value, target) == expected


def test_exact_multiples_do_not_round_up_by_floating_point():
    # 0.7 / 0.35 x 3 = 6.000000000000001 in floating point: must stay 6.
    assert metric_proposal(3, 0.7, 0.35) == 6


def test_total_metric_divides_by_the_target_per_instance():
    # 200 jobs waiting, 10 per worker wanted: 20 workers whatever runs now.
    assert metric_proposal(4, 200, 10, kind="total") == 20
    assert metric_proposal(4, 42, 10, kind="total") == 4    # 42 / 40 = 1.05: tolerance
    assert metric_proposal(4, 45, 10, kind="total") == 5


@pytest.mark.parametrize("value", [None, float("nan"), float("inf")])
def test_a_missing_metric_proposes_nothing(value):
    assert metric_proposal(2, value, 0.7) is None


def test_no_instance_no_proposal():
    assert metric_proposal(0, 0.9, 0.7) is None


# --- bounds ---------------------------------------------------------------------

def test_proposals_stay_within_min_and_max():
    tier = Tier("api", API)
    assert settle(tier, 0, 8, cpu(7.0))[0] == 10          # ceil(8 x 10) = 80 -> max 10
    tier = Tier("api", dict(API, scale_down={"stabilization_seconds": 0}))
    desired, decision = settle(tier, 0, 3, cpu(0.01))
    assert desired == 2 and decision["limited_by"] == "min"


def test_out_of_bounds_counts_are_brought_in_at_once_without_rate_limit():
    tier = Tier("api", API)
    desired, decision = settle(tier, 0, 14, cpu(0.7))      # a manual scale above max
    assert desired == 10 and decision["limited_by"] == "max"
    desired, decision = settle(tier, 100, 1, cpu(0.7))     # below min
    assert desired == 2 and decision["limited_by"] == "min"


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="1 <= min"):
        Tier("api", {"min": 5, "max": 3})
    with pytest.raises(ValueError):
        Tier("api", {"min": 0, "max": 3})


def test_a_tier_that_runs_nothing_is_left_alone():
    decision = Tier("api", API).decide(0, 0, cpu(0.9))
    assert decision["desired"] == 0 and "zero" in decision["limited_by"]


# --- stabilization --------------------------------------------------------------

def test_scale_up_acts_on_the_first_evaluation():
    tier = Tier("api", API)
    assert settle(tier, 0, 2, cpu(1.05))[0] == 3


def test_scale_down_waits_for_the_whole_window():
    tier = Tier("api", API)
    now, current = 0, 6
    assert settle(tier, now, current, cpu(0.7))[0] == 6      # on target: a recommendation of 6 is kept
    for now in range(15, 300, 15):                           # load halves: 3 proposed every 15 s
        current, decision = settle(tier, now, current, cpu(0.35))
        assert current == 6 and decision["proposal"] == 3 and decision["limited_by"] == "stabilization window"
    current, decision = settle(tier, 300, current, cpu(0.35))
    assert current == 3 and decision["limited_by"] is None   # 300 s after the last higher recommendation


def test_a_fresh_start_does_not_scale_down_before_a_window():
    tier = Tier("api", API)                          # no history: the autoscaler just (re)started
    desired, decision = settle(tier, 0, 6, cpu(0.1))
    assert desired == 6 and decision["limited_by"] == "stabilization window"
    assert settle(tier, 299, 6, cpu(0.1))[0] == 6
    assert settle(tier, 300, 6, cpu(0.1))[0] == 2


def test_scale_down_goes_to_the_highest_recommendation_of_the_window():
    tier = Tier("api", dict(API, scale_down={"stabilization_seconds": 60}))
    settle(tier, 0, 8, cpu(0.7))           # 8
    settle(tier, 20, 8, cpu(0.6))          # 7 proposed (tolerance? 0.857: no) -> held at 8
    settle(tier, 40, 8, cpu(0.35))         # 4 proposed -> held at 8 (8 is in the window)
    desired, _ = settle(tier, 65, 8, cpu(0.35))
    assert desired == 7                    # 8 left the window; 7 (t=20) is the highest left


def test_scale_up_window_takes_the_lowest_recommendation():
    tier = Tier("api", dict(API, scale_up={"stabilization_seconds": 30}))
    settle(tier, 0, 2, cpu(0.7))           # 2
    desired, decision = settle(tier, 15, 2, cpu(1.4))
    assert desired == 2 and decision["limited_by"] == "stabilization window"
    desired, _ = settle(tier, 31, 2, cpu(1.4))
    assert desired == 4


# --- rate policies ----------------------------------------------------------------

def test_scale_up_rate_is_the_larger_of_100_percent_and_4_instances_per_15s():
    tier = Tier("api", {"min": 1, "max": 100})
    desired, decision = settle(tier, 0, 2, cpu(7.0))      # wants 20: +4 (> +100 % = 4) -> 6
    assert desired == 6 and decision["limited_by"] == "rate limit"
    desired, _ = settle(tier, 5, 6, cpu(7.0))             # same period: 6 is already the limit
    assert desired == 6
    desired, _ = settle(tier, 15, 6, cpu(7.0))            # new period: +100 % of 6 = 12 > +4
    assert desired == 12
    desired, _ = settle(tier, 30, 12, cpu(7.0))
    assert desired == 24


def test_scale_down_rate_limit_counts_the_period_start():
    tier = Tier("api", {"min": 1, "max": 100, "scale_down": {
        "stabilization_seconds": 0, "policies": [{"type": "instances", "value": 2, "period_seconds": 60}]}})
    desired, decision = settle(tier, 0, 10, cpu(0.07))     # wants 1: at most -2 per minute
    assert desired == 8 and decision["limited_by"] == "rate limit"
    assert settle(tier, 30, 8, cpu(0.07))[0] == 8         # the minute is not over
    assert settle(tier, 61, 8, cpu(0.07))[0] == 6


def test_select_min_takes_the_least_change():
    tier = Tier("api", {"min": 1, "max": 100, "scale_up": {"select": "min"}})
    assert settle(tier, 0, 10, cpu(7.0))[0] == 14         # min(+100 % = 20, +4 = 14)


# --- missing metrics, several metrics --------------------------------------------

def test_without_any_metric_nothing_changes():
    tier = Tier("api", API)
    desired, decision = settle(tier, 0, 5, cpu(None))
    assert desired == 5 and decision["limited_by"] == "no metric" and decision["missing"] == ["cpu"]


def test_a_missing_metric_blocks_scale_down_but_not_scale_up():
    tier = Tier("api", dict(API, scale_down={"stabilization_seconds": 0}))
    both = [{"name": "cpu", "value": 0.1, "target": 0.7}, {"name": "rps", "value": None, "target": 800}]
    assert settle(tier, 0, 6, both)[0] == 6
    both[0]["value"] = 1.4
    assert settle(tier, 15, 6, both)[0] == 10


def test_the_largest_proposal_of_several_metrics_wins():
    tier = Tier("api", API)
    metrics = [{"name": "cpu", "value": 0.35, "target": 0.7}, {"name": "rps", "value": 1200, "target": 800}]
    desired, decision = settle(tier, 0, 4, metrics)
    assert desired == 6 and [m["proposal"] for m in decision["metrics"]] == [2, 6]


# --- flapping input ---------------------------------------------------------------

def test_flapping_load_does_not_oscillate():
    """Load jumping between 4.0 and 1.6 cores every evaluation: one scale-up, then it holds."""
    tier = Tier("api", API)
    current, history = 4, []
    for step in range(60):                                # 15 minutes at 15 s
        load = 4.0 if step % 2 == 0 else 1.6              # cores used by the whole tier
        current, _ = settle(tier, step * 15, current, cpu(load / current))
        history.append(current)
    changes = sum(1 for a, b in zip(history, history[1:]) if a != b)
    assert history[0] == 6 and changes == 0, history      # 4 -> 6 at once, then never down and up again


@pytest.mark.parametrize("seed", range(5))
def test_noisy_load_scales_down_only_below_every_recommendation_of_the_window(seed):
    rng = random.Random(seed)
    tier = Tier("api", API)
    current, proposals = 5, []
    for step in range(80):
        now = step * 15
        load = 3.5 * rng.uniform(0.4, 1.4)
        before = current
        current, decision = settle(tier, now, current, cpu(load / current))
        proposals.append((now, decision["proposal"]))
        assert 2 <= current <= 10
        if current < before:
            window = [p for t, p in proposals if now - t < 300 and p is not None]
            assert current >= max(window), (now, current, window)


# --- scheduled floors ---------------------------------------------------------------

FRIDAY = datetime.datetime(2026, 11, 27, 12, 0)      # a Friday
BLACK_FRIDAY = [{"name": "black-friday", "weekly": {"from": "fri 00:00", "until": "mon 06:00"},
                 "floors": {"api": 10, "worker": 20}}]


def test_weekly_floor_wraps_the_weekend():
    assert active_floor(BLACK_FRIDAY, "api", FRIDAY) == 10
    assert active_floor(BLACK_FRIDAY, "worker", FRIDAY + datetime.timedelta(days=2)) == 20   # Sunday
    assert active_floor(BLACK_FRIDAY, "api", datetime.datetime(2026, 11, 30, 5, 59)) == 10   # Monday 05:59
    assert active_floor(BLACK_FRIDAY, "api", datetime.datetime(2026, 11, 30, 6, 0)) == 0     # Monday 06:00
    assert active_floor(BLACK_FRIDAY, "api", datetime.datetime(2026, 11, 26, 23, 59)) == 0   # Thursday


def test_dated_floor_and_the_highest_of_overlapping_ones():
    schedules = BLACK_FRIDAY + [{"name": "launch", "from": "2026-11-27T10:00", "until": "2026-11-27T14:00",
                                 "floors": {"api": 8}}]
    assert active_floor(schedules, "api", FRIDAY) == 10
    assert active_floor(schedules[1:], "api", FRIDAY) == 8
    assert active_floor(schedules[1:], "api", FRIDAY + datetime.timedelta(hours=2)) == 0


def test_a_floor_raises_the_count_at_once_and_holds_it():
    tier = Tier("api", API)
    desired, decision = settle(tier, 0, 2, cpu(0.1), floor=10)
    assert desired == 10 and decision["limited_by"] == "floor"
    desired, decision = settle(tier, 15, 10, cpu(0.1), floor=10)
    assert desired == 10
    # Floor over: scale-down waits for the window like any other.
    assert settle(tier, 30, 10, cpu(0.1))[0] == 10
    assert settle(tier, 400, 10, cpu(0.1))[0] == 2


def test_a_floor_above_max_is_capped_at_max():
    tier = Tier("api", API)
    assert settle(tier, 0, 2, cpu(0.7), floor=50)[0] == 10


@pytest.mark.parametrize("text,minutes", [("mon 00:00", 0), ("fri 00:00", 4 * 1440), ("Sunday 23:59", 6 * 1440 + 1439)])
def test_parse_weekly(text, minutes):
    assert parse_weekly(text) == minutes


@pytest.mark.parametrize("text", ["fri", "friday 25:00", "xyz 10:00", "fri 10", "fri 10:60"])
def test_parse_weekly_refuses(text):
    with pytest.raises(ValueError):
        parse_weekly(text)


def test_schedule_problems_name_what_to_fix():
    tiers = {"api": {"max": 10}, "worker": {"max": 20}}
    assert schedule_problems(BLACK_FRIDAY, tiers) == []
    bad = [{"name": "a", "weekly": {"from": "fri 00:00", "until": "fri 00:00"}, "floors": {"api": 2}},
           {"name": "b", "from": "2026-11-28T00:00", "until": "2026-11-27T00:00", "floors": {"api": 2}},
           {"name": "c", "weekly": {"from": "fri 00:00", "until": "mon 06:00"}, "floors": {"api": 12}},
           {"name": "d", "weekly": {"from": "fri 00:00", "until": "mon 06:00"}, "floors": {"db": 2}},
           {"name": "e", "weekly": {"from": "fri 00:00", "until": "mon 06:00"}, "floors": {"api": "ten"}},
           {"name": "f", "floors": {"api": 2}}]
    problems = schedule_problems(bad, tiers)
    assert len(problems) == 6, problems
    assert "same moment" in problems[0]
    assert "not after" in problems[1]
    assert "above its max 10" in problems[2]
    assert "unknown tier 'db'" in problems[3]
    assert "whole number" in problems[4]
    assert "either weekly" in problems[5]
