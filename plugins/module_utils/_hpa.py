# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes HorizontalPodAutoscaler algorithm, for instances on VMs.

One decision per tier and per evaluation, in the order of the HPA controller
(pkg/controller/podautoscaler/horizontal.go, autoscaling/v2 semantics):

  1. each metric proposes a count: ceil(current x value / target), or keeps
     the current count while value / target is within the tolerance (10 %);
     a missing metric proposes nothing, and while any metric is missing the
     tier may scale up but never down;
  2. the tier's proposal is the largest one of its metrics;
  3. a count outside [min, max] (the floor of a schedule raises min) is
     brought inside at once, as the HPA does, without rate limits;
  4. stabilization: scale-up takes the lowest proposal of its window (0 s:
     the current one), scale-down the highest of its window (300 s), so a
     load that dips for a moment never removes instances;
  5. rate policies over the scale events of the last period: up by at most
     the larger of +100 % and +4 instances per 15 s, down by at most 100 %
     per 15 s (the HPA defaults), then min/max again.

Pure Python, no Ansible imports: unit-tested directly and shipped to the
monitoring host with the autoscaler (roles/autoscaler), which feeds it
Prometheus values and acts on the answer with scale.yml. Written here
because no Python package implements the HPA's behaviour rules; the
Kubernetes controller is Go and tied to the API server.
"""

from __future__ import annotations

import math

DEFAULT_TOLERANCE = 0.1

# HPA defaults (autoscaling/v2 HorizontalPodAutoscalerBehavior).
DEFAULT_SCALE_UP = {
    "stabilization_seconds": 0,
    "select": "max",
    "policies": [{"type": "percent", "value": 100, "period_seconds": 15},
                 {"type": "instances", "value": 4, "period_seconds": 15}],
}
DEFAULT_SCALE_DOWN = {
    "stabilization_seconds": 300,
    "select": "max",
    "policies": [{"type": "percent", "value": 100, "period_seconds": 15}],
}


def metric_proposal(current, value, target, kind="average", tolerance=DEFAULT_TOLERANCE):
    """The count one metric asks for, or None when the metric is missing.

    kind "average": VALUE is per instance (CPU share, requests/s per instance)
    or a level the tier should bring down by growing (queue latency):
    ceil(current x value / target). kind "total": VALUE is shared by the
    instances (jobs waiting): ceil(value / target), with the same tolerance on
    value / (target x current).
    """
    if value is None or target is None or target <= 0 or current < 1:
        return None
    if math.isnan(value) or math.isinf(value):  # no sample
        return None
    ratio = value / target if kind == "average" else value / (target * current)
    if abs(ratio - 1.0) <= tolerance:
        return current
    return int(math.ceil(ratio * current - 1e-9))


def _change_in_period(events, now, period_seconds, direction):
    """Instances added (direction 1) or removed (-1) by scale events within the period."""
    total = 0
    for event in events:
        if now - event["time"] < period_seconds:
            change = event["after"] - event["before"]
            if change * direction > 0:
                total += abs(change)
    return total


def _rate_limit(policies, select, current, events, now, up):
    """The highest (up) or lowest (down) count the rate policies allow now."""
    proposals = []
    for policy in policies:
        added = _change_in_period(events, now, policy["period_seconds"], 1)
        removed = _change_in_period(events, now, policy["period_seconds"], -1)
        period_start = current - added + removed
        if up:
            if policy["type"] == "instances":
                proposals.append(period_start + policy["value"])
            else:
                proposals.append(int(math.ceil(period_start * (1 + policy["value"] / 100.0) - 1e-9)))
        else:
            if policy["type"] == "instances":
                proposals.append(period_start - policy["value"])
            else:
                proposals.append(int(period_start * (1 - policy["value"] / 100.0)))
    if not proposals:
        return None
    # "max" picks the policy that allows the most change, "min" the least.
    most_change = max if up else min
    least_change = min if up else max
    return (most_change if select == "max" else least_change)(proposals)


class Tier(object):
    """The autoscaling state of one tier: recommendations and scale events kept in memory.

    settings: {"min": 2, "max": 10, "tolerance": 0.1,
               "scale_up": {...}, "scale_down": {...}}  (see DEFAULT_SCALE_UP/DOWN)
    """

    def __init__(self, name, settings):
        self.name = name
        self.min = int(settings["min"])
        self.max = int(settings["max"])
        if not 1 <= self.min <= self.max:
            raise ValueError("tier %s: need 1 <= min (%s) <= max (%s)" % (name, self.min, self.max))
        self.tolerance = float(settings.get("tolerance", DEFAULT_TOLERANCE))
        self.scale_up = dict(DEFAULT_SCALE_UP, **(settings.get("scale_up") or {}))
        self.scale_down = dict(DEFAULT_SCALE_DOWN, **(settings.get("scale_down") or {}))
        self.recommendations = []  # [{"time", "replicas"}]
        self.events = []           # [{"time", "before", "after"}]

    def decide(self, now, current, metrics, floor=0):
        """The count to run now, with the reasons, as a dict.

        metrics: [{"name", "value" (None when missing), "target", "kind"}]
        floor: the highest floor of the schedules active now (0: none).
        """
        low = max(self.min, min(int(floor or 0), self.max))
        decision = {"tier": self.name, "time": now, "current": current, "min": low, "max": self.max,
                    "metrics": [], "proposal": None, "stabilized": None, "desired": current,
                    "limited_by": None, "missing": []}
        for metric in metrics:
            proposal = metric_proposal(current, metric.get("value"), metric.get("target"),
                                       metric.get("kind", "average"), self.tolerance)
            decision["metrics"].append(dict(metric, proposal=proposal))
            if proposal is None:
                decision["missing"].append(metric["name"])
        proposals = [m["proposal"] for m in decision["metrics"] if m["proposal"] is not None]

        if current < 1:
            decision["limited_by"] = "no instance runs (the autoscaler does not start a tier from zero)"
            return decision
        if current > self.max or current < low:
            # Out of bounds (a new floor, a manual scale): straight to the bound.
            decision["desired"] = min(max(current, low), self.max)
            decision["limited_by"] = "floor" if current < low and low > self.min else (
                "min" if current < low else "max")
            self._remember(now, decision["desired"])
            return decision
        if not proposals:
            decision["limited_by"] = "no metric"
            return decision

        if not self.recommendations:
            # No history (the autoscaler just started): count what runs as recommended
            # now, so a restart never scales down before a whole window has passed.
            self._remember(now, current)
        proposal = max(proposals)
        if decision["missing"] and proposal < current:
            proposal = current  # the HPA never scales down on partial metrics
        decision["proposal"] = proposal
        self._remember(now, proposal)
        stabilized = self._stabilize(now, current, proposal)
        decision["stabilized"] = stabilized
        desired, limited_by = self._limit_rate(now, current, stabilized, low)
        if limited_by is None and min(max(proposal, low), self.max) != desired:
            limited_by = "stabilization window"  # the bounds alone would have given another count
        decision["desired"] = desired
        decision["limited_by"] = limited_by
        return decision

    def record_scale(self, now, before, after):
        """Note a change that happened (the rate policies count it)."""
        if before != after:
            self.events.append({"time": now, "before": before, "after": after})

    def _remember(self, now, replicas):
        self.recommendations.append({"time": now, "replicas": replicas})
        keep = max(self.scale_up["stabilization_seconds"], self.scale_down["stabilization_seconds"])
        self.recommendations = [r for r in self.recommendations if now - r["time"] <= keep]
        longest = max([p["period_seconds"] for p in self.scale_up["policies"] + self.scale_down["policies"]] or [0])
        self.events = [e for e in self.events if now - e["time"] < longest]

    def _stabilize(self, now, current, proposal):
        up = proposal
        down = proposal
        # A recommendation counts while it is younger than the window (the HPA's
        # timestamp.After(now - window)): a 0 s window holds only the current one.
        for rec in self.recommendations:
            if now - rec["time"] < self.scale_up["stabilization_seconds"]:
                up = min(up, rec["replicas"])
            if now - rec["time"] < self.scale_down["stabilization_seconds"]:
                down = max(down, rec["replicas"])
        result = current
        if result < up:
            result = up
        if result > down:
            result = down
        return result

    def _limit_rate(self, now, current, desired, low):
        """DESIRED within the rate policies and the bounds, and what limited it (None: nothing)."""
        if desired > current:
            limit = _rate_limit(self.scale_up["policies"], self.scale_up["select"], current, self.events, now, True)
            limit = current if limit is None else max(limit, current)  # never below what runs
            allowed = min(self.max, limit)
            if desired <= allowed:
                return desired, None
            return allowed, ("max" if allowed == self.max else "rate limit")
        if desired < current:
            limit = _rate_limit(self.scale_down["policies"], self.scale_down["select"], current, self.events, now,
                                False)
            limit = current if limit is None else min(limit, current)  # never above what runs
            allowed = max(low, limit)
            if desired >= allowed:
                return desired, None
            if allowed == limit and limit > low:
                return allowed, "rate limit"
            return allowed, "floor" if low > self.min else "min"
        return desired, None


def active_floor(schedules, tier, moment):
    """The highest floor for TIER among SCHEDULES active at MOMENT (a datetime), 0 if none.

    A schedule: {"name", "weekly": {"from": "fri 00:00", "until": "mon 06:00"}
    or "from"/"until" (ISO datetimes, same timezone as MOMENT), "floors": {"api": 10, "worker": 20}}.
    A weekly window may wrap the week (Friday to Monday).
    """
    best = 0
    for schedule in schedules or []:
        floor = int((schedule.get("floors") or {}).get(tier, 0) or 0)
        if floor > best and schedule_active(schedule, moment):
            best = floor
    return best


DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def parse_weekly(text):
    """'fri 00:00' -> minutes since Monday 00:00; ValueError with what is wrong."""
    parts = str(text).strip().lower().split()
    if len(parts) != 2 or parts[0][:3] not in DAYS or parts[0] not in (parts[0][:3], _full_day(parts[0][:3])):
        raise ValueError("%r: expected a day and a time, like 'fri 00:00'" % (text,))
    hours, sep, minutes = parts[1].partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or int(hours) > 23 or int(minutes) > 59:
        raise ValueError("%r: expected a time of day HH:MM" % (text,))
    return DAYS.index(parts[0][:3]) * 1440 + int(hours) * 60 + int(minutes)


def _full_day(short):
    return {"mon": "monday", "tue": "tuesday", "wed": "wednesday", "thu": "thursday", "fri": "friday",
            "sat": "saturday", "sun": "sunday"}[short]


def schedule_active(schedule, moment):
    if "weekly" in schedule:
        start = parse_weekly(schedule["weekly"]["from"])
        end = parse_weekly(schedule["weekly"]["until"])
        now = moment.weekday() * 1440 + moment.hour * 60 + moment.minute
        if start <= end:
            return start <= now < end
        return now >= start or now < end  # wraps the end of the week
    start = _parse_iso(schedule["from"], moment)
    end = _parse_iso(schedule["until"], moment)
    return start <= moment < end


def _parse_iso(text, moment):
    import datetime
    value = datetime.datetime.fromisoformat(str(text))
    if value.tzinfo is None and moment.tzinfo is not None:
        value = value.replace(tzinfo=moment.tzinfo)
    return value


def schedule_problems(schedules, tiers):
    """What is wrong in the schedules (list of sentences), checked on the controller."""
    problems = []
    for i, schedule in enumerate(schedules or []):
        name = schedule.get("name") or "#%d" % (i + 1)
        has_weekly = "weekly" in schedule
        has_dates = "from" in schedule or "until" in schedule
        if has_weekly == has_dates:
            problems.append("schedule %s: give either weekly: {from, until} or from/until dates" % name)
            continue
        try:
            if has_weekly:
                weekly = schedule["weekly"] or {}
                if parse_weekly(weekly.get("from", "")) == parse_weekly(weekly.get("until", "")):
                    problems.append("schedule %s: weekly from and until are the same moment" % name)
            else:
                import datetime
                start = datetime.datetime.fromisoformat(str(schedule.get("from")))
                end = datetime.datetime.fromisoformat(str(schedule.get("until")))
                if (start.tzinfo is None) != (end.tzinfo is None):
                    problems.append("schedule %s: give both dates with a timezone or neither" % name)
                elif end <= start:
                    problems.append("schedule %s: until (%s) is not after from (%s)" % (name, end, start))
        except (ValueError, TypeError) as exc:
            problems.append("schedule %s: %s" % (name, exc))
        floors = schedule.get("floors") or {}
        if not floors:
            problems.append("schedule %s: floors is empty (e.g. floors: {api: 10, worker: 20})" % name)
        for tier, floor in floors.items():
            if tier not in tiers:
                problems.append("schedule %s: unknown tier %r (tiers: %s)" % (name, tier, ", ".join(sorted(tiers))))
                continue
            if not isinstance(floor, int) or isinstance(floor, bool) or floor < 1:
                problems.append("schedule %s: floor of %s must be a whole number >= 1, got %r" % (name, tier, floor))
            elif floor > tiers[tier]["max"]:
                problems.append("schedule %s: floor %d of %s is above its max %d: raise the max or lower the floor"
                                % (name, floor, tier, tiers[tier]["max"]))
    return problems
