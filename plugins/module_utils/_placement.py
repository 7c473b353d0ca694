# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Counting rules of app instances: parsing counts, spreading them over hosts, capacity and budgets.

Pure Python, no Ansible imports, so it runs on the controller (filter plugin)
and is unit-tested directly. An instance is identified by its slot number on
its host: the TCP port for API instances (recete-api@3000), an index for
workers (recete-worker@1).

The rule: spread the instances evenly over the group's hosts (counts differ by
at most one). Where each instance goes and in which batches is _rollout.py's.
Written here rather than taken from a library because it is the collection's
own policy; nothing on PyPI or in community.general expresses it.
"""

from __future__ import annotations

import math
import re

_WHOLE_NUMBER = re.compile(r"^\s*[+-]?\d+\s*$")


class PlanError(ValueError):
    """Input that the plan refuses, with a message that says what to change."""


def parse_count(value, name, minimum=0):
    """Return value as an int >= minimum, or raise PlanError.

    `-e api_replicas=5` arrives as the string "5"; booleans, floats and
    strings such as "1.5", "abc" or "" are refused.
    """
    if isinstance(value, bool) or value is None:
        raise PlanError("%s must be a whole number, got %r" % (name, value))
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _WHOLE_NUMBER.match(value):
        number = int(value)
    else:
        raise PlanError("%s must be a whole number, got %r" % (name, value))
    if number < minimum:
        raise PlanError("%s must be at least %d, got %d" % (name, minimum, number))
    return number


def slot_range(first_slot, per_host_limit):
    """The slots a host may use: per_host_limit consecutive numbers from first_slot."""
    return list(range(first_slot, first_slot + per_host_limit))


def balanced_counts(hosts, total, current_counts):
    """How many instances each host gets: floor or ceil of total/len(hosts).

    The hosts that get one more are those that already run the most (fewest
    changes), then the earlier ones in inventory order.
    """
    if not hosts:
        raise PlanError("no hosts to place instances on")
    base, extra = divmod(total, len(hosts))
    order = sorted(range(len(hosts)), key=lambda i: (-current_counts.get(hosts[i], 0), i))
    favoured = set(order[:extra])
    return dict((host, base + (1 if i in favoured else 0)) for i, host in enumerate(hosts))


def interleave(pairs, hosts):
    """Order (host, slot) pairs round-robin over hosts, so a batch spreads its risk."""
    queues = dict((h, [p for p in pairs if p[0] == h]) for h in hosts)
    ordered = []
    while any(queues.values()):
        for host in list(queues):
            if queues[host]:
                ordered.append(queues[host].pop(0))
    return ordered


def resource_limit(hosts, per_core, instance_mb, reserve=0.2):
    """The per-host instance limit the smallest host allows: min over hosts of
    min(cores x per_core, memory x (1 - reserve) / instance_mb), at least 1.

    hosts: {name: facts}, facts with "processor_vcpus" (or "vcpus") and "memtotal_mb" (Ansible's names). One limit for the tier
    (the planner spreads instances evenly), so the smallest host sets it.
    Returns (limit, {host: its own limit}).
    """
    if not hosts:
        raise PlanError("no hosts to derive a per-host limit from")
    own = {}
    for name, facts in sorted(hosts.items()):
        try:
            cores = int(facts.get("processor_vcpus", facts.get("vcpus")))
            memory = int(facts["memtotal_mb"])
        except (KeyError, TypeError, ValueError):
            raise PlanError("host %s: no cores/memory facts to derive its instance limit from" % name)
        own[name] = max(1, min(cores * int(per_core), int(memory * (1 - reserve)) // int(instance_mb)))
    return min(own.values()), own


def check_capacity(name, total, hosts, per_host_limit):
    """Refuse more instances than the hosts have slots for."""
    capacity = len(hosts) * per_host_limit
    if total > capacity:
        raise PlanError(
            "%s=%d exceeds the capacity of the hosts: %d hosts x %d instances per host = %d; "
            "add hosts to the group or raise the per-host limit" % (name, total, len(hosts), per_host_limit, capacity))


def check_connection_budget(tiers, max_client_conn):
    """Refuse when instances x their database pool size exceed PgBouncer's max_client_conn.

    tiers: list of (name, instances, pool_size).
    """
    used = sum(tier[1] * tier[2] for tier in tiers)
    if used > max_client_conn:
        detail = " + ".join("%s %d x pool %d" % tier for tier in tiers)
        raise PlanError(
            "connection budget exceeded: %s = %d client connections > PgBouncer max_client_conn %d; "
            "lower the replicas or the pool size, or raise pgbouncer_max_client_conn"
            % (detail, used, max_client_conn))
    return used


def default_batch_size(count, fraction=0.5):
    """A rolling batch: at most half of the change at once, at least one."""
    return max(1, int(math.ceil(count * fraction)))
