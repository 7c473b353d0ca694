# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the rolling-change engine: the plan (module_utils/_rollout.py) and its summary lines."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.recete.stack.plugins.module_utils._placement import PlanError, resource_limit
from ansible_collections.recete.stack.plugins.module_utils._rollout import count_problems, host_lines, plan_tier_rollout


def rollout_plan(reports, hosts, replicas=None, release="", tier="api", first_slot=3000, per_host_limit=4,
                 addresses=None, replace=True, batch_size=None, canary=False, minimum=1, exact=None):
    """Plan one tier's rolling change from the app_instances reports of its hosts."""
    try:
        return plan_tier_rollout(tier, list(hosts or []), reports or {}, replicas, release or "", int(first_slot),
                                 int(per_host_limit), addresses or {}, bool(replace), batch_size, bool(canary),
                                 int(minimum), exact)
    except PlanError as exc:
        raise AnsibleFilterError(str(exc))


def rollout_host_lines(before, after, hosts=None):
    """Each host's instances before -> after, one line a host, for summaries."""
    return host_lines(before or [], after or [], list(hosts or []))


def rollout_batch_line(batch):
    """One line per batch for the plan and the summary: what starts, what stops, and how."""
    how = " (canary)" if batch.get("canary") else (" (in place)" if batch.get("in_place") else "")
    parts = []
    for verb in ("start", "stop"):
        if batch.get(verb):
            parts.append("%s %s" % (verb, " ".join("%s (%s)" % (r["id"], r["release"]) for r in batch[verb])))
    return "batch %s%s: %s" % (batch.get("index"), how, "; ".join(parts))


def rollout_count_problems(specs, groups):
    """Messages for the counts given on the command line that are not whole numbers or exceed the hosts."""
    return count_problems(list(specs or []), dict(groups or {}))


def per_host_limit(hosts, per_core, instance_mb):
    """The instance limit of a tier's hosts from their cores and memory (the smallest host sets it)."""
    try:
        return resource_limit(dict(hosts or {}), int(per_core), int(instance_mb))[0]
    except PlanError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    """recete.stack rolling-change filters."""

    def filters(self):
        return {"rollout_plan": rollout_plan, "rollout_host_lines": rollout_host_lines, "rollout_batch_line": rollout_batch_line,
                "count_problems": rollout_count_problems, "per_host_limit": per_host_limit}
