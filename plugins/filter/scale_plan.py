# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn inventory + requested replica counts into a placement plan."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.recete.stack.plugins.module_utils._placement import (
    PlanError,
    check_connection_budget,
    default_batch_size,
    empty_plan,
    parse_count,
    plan_tier,
)


def scale_plan(current, hosts, replicas, tier="api", first_slot=3000, per_host_limit=8,
               batch_size=None, minimum=1):
    """Plan one tier: target placement, instances to start/stop, ordered batches."""
    try:
        count = parse_count(replicas, "%s_replicas" % tier, minimum=int(minimum))
        hosts = list(hosts or [])
        current = current or {}
        if not hosts:
            if count:
                raise PlanError("the inventory has no hosts in group '%s': add them, or set %s_replicas=0"
                                % (tier, tier))
            return empty_plan(tier)
        if batch_size in (None, ""):
            running = sum(len(slots) for slots in current.values())
            size = default_batch_size(abs(count - running))
        else:
            size = parse_count(batch_size, "%s batch size" % tier, minimum=1)
        return plan_tier(tier, hosts, count, current, int(first_slot), int(per_host_limit), size)
    except PlanError as exc:
        raise AnsibleFilterError(str(exc))


def connection_budget(tiers, max_client_conn):
    """Check instances x pool size against PgBouncer's max_client_conn; return the total."""
    try:
        rows = [(t["name"], parse_count(t["instances"], t["name"]), parse_count(t["pool_size"], t["name"] + " pool size"))
                for t in tiers]
        return check_connection_budget(rows, parse_count(max_client_conn, "max_client_conn", 1))
    except PlanError as exc:
        raise AnsibleFilterError(str(exc))


def whole_number(value, name="value", minimum=0):
    """Parse a count given on the command line (`-e api_replicas=5`), refusing anything else."""
    try:
        return parse_count(value, name, minimum=int(minimum))
    except PlanError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    """recete.stack placement filters."""

    def filters(self):
        return {
            "scale_plan": scale_plan,
            "connection_budget": connection_budget,
            "whole_number": whole_number,
        }
