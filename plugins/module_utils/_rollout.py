# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rolling changes of an app tier as a plan: what runs now -> what should run -> ordered batches.

One planner for every operation that changes instances: scale (a new count),
deploy (a new release), site (either), rollback (back to exact records). The
executor (roles/rollout) runs each batch the same way: start the batch's new
instances (each gated), put them behind the load balancer while the old ones
are marked down, wait for the drain, stop the old ones.

An instance is a record, built once here and never re-parsed by the roles:
  {"id": "api1:3001", "host": "api1", "slot": 3001, "release": "1.1.0",
   "address": "10.0.0.11", "endpoint": "10.0.0.11:3001"}
(slot is the TCP port of an API instance, the index of a worker; workers have
no address and no endpoint).

A batch is made of units. A unit starts one instance and/or stops one:
  surge    - the new instance starts on a free slot beside the old one, which
             is drained and stopped once the new one serves (capacity never drops);
  in place - the host has no free slot: the old instance is drained and stopped
             first and the new one takes its slot (capacity drops by one, so an
             in-place unit is always a batch of its own);
  start    - scale-out; stop - scale-in.
Pure Python, no Ansible imports: unit-tested directly, called by the
recete.stack.rollout_plan filter.
"""

from __future__ import annotations

from ansible_collections.recete.stack.plugins.module_utils._placement import (
    PlanError,
    balanced_counts,
    check_capacity,
    default_batch_size,
    interleave,
    parse_count,
    slot_range,
)


def resolve_count(requested, tier, running, hosts, deployed, minimum):
    """The instance count an operation aims for; the one place "unset" and "empty" are decided.

    Unset (None) keeps the number that runs now; on the first deploy (the tier
    was never deployed) one per host. An empty string is an error (`-e
    api_replicas=` is a typo, never "keep").
    """
    if requested is None:
        # The API never keeps zero (minimum 1): nothing running means one per host again.
        return running if deployed and running >= minimum else len(hosts)
    if isinstance(requested, str) and not requested.strip():
        raise PlanError("%s_replicas must be a whole number, got an empty value" % tier)
    return parse_count(requested, "%s_replicas" % tier, minimum=minimum)


def count_problems(specs, groups):
    """What is wrong with the counts given on the command line, checked before any host is contacted.

    specs: [{"name": "api_replicas", "given": "5", "minimum": 1, "group": "api", "limit": 4}, ...];
    a spec whose value was not given (None) is skipped. Returns a list of messages.
    """
    problems = []
    for spec in specs:
        given = spec.get("given")
        if given is None:
            continue
        tier = spec["name"].replace("_replicas", "")
        try:
            count = resolve_count(given, tier, 0, [], True, int(spec.get("minimum", 0)))
            hosts = list(groups.get(spec["group"], []))
            if count and not hosts:
                raise PlanError("%s=%d needs hosts in group '%s'; the inventory has none" % (spec["name"], count, spec["group"]))
            if str(spec.get("limit")) != "auto":  # "auto" needs the hosts' facts: checked when planning
                check_capacity(spec["name"], count, hosts, int(spec["limit"]))
        except PlanError as exc:
            problems.append(str(exc))
    return problems


def make_record(host, slot, release, address=None):
    """One instance as every later step sees it."""
    record = {"id": "%s:%s" % (host, slot), "host": host, "slot": int(slot), "release": release}
    if address:
        endpoint_host = "[%s]" % address if ":" in address else address
        record["address"] = address
        record["endpoint"] = "%s:%s" % (endpoint_host, slot)
    return record


def current_records(reports, addresses=None):
    """Records of what runs now, from the per-host reports of recete.stack.app_instances.

    reports: {host: {"instances": [{"slot", "release", "current", "stale"}, ...]}}.
    Only instances that belong to what runs (enabled or running) count. Stale
    ones (configuration changed after their start) keep "stale": True.
    """
    addresses = addresses or {}
    records = []
    for host in sorted(reports):
        for inst in reports[host].get("instances", []):
            if not inst.get("current"):
                continue
            record = make_record(host, inst["slot"], inst.get("release") or "", addresses.get(host))
            if inst.get("stale") or not inst.get("running", True):
                record["stale"] = True
            records.append(record)
    return records


def desired_records(hosts, count, current, release, slots, addresses=None, replace=True):
    """The records that should run: `count` instances of `release`, spread evenly over `hosts`.

    Kept as they are: instances already on `release` (any release when
    replace is False, as scale does) that are not stale. New instances take
    the free slots first (so they start beside the old ones), then the slots
    of the instances they replace.
    """
    addresses = addresses or {}
    if not hosts:
        return []
    allowed = set(slots)
    by_host = dict((h, [r for r in current if r["host"] == h]) for h in hosts)
    counts = balanced_counts(hosts, count, dict((h, len(by_host[h])) for h in hosts))
    wanted = []
    for host in hosts:
        now = sorted(by_host[host], key=lambda r: r["slot"])
        want = counts[host]
        if want > len(slots):
            raise PlanError("host %s would need %d instances but allows %d" % (host, want, len(slots)))
        good = [r for r in now if r["slot"] in allowed and not r.get("stale")
                and (not replace or r["release"] == release)]
        keep = good[:want]
        kept_slots = set(r["slot"] for r in keep)
        occupied = set(r["slot"] for r in now)
        free = [s for s in slots if s not in occupied]
        freed = sorted(r["slot"] for r in now if r["slot"] not in kept_slots and r["slot"] in allowed)
        new_slots = (free + freed)[:want - len(keep)]
        wanted.extend(dict((k, v) for k, v in r.items() if k != "stale") for r in keep)
        wanted.extend(make_record(host, s, release, addresses.get(host)) for s in new_slots)
    return sorted(wanted, key=lambda r: (r["host"], r["slot"]))


def _same(a, b):
    return a["id"] == b["id"] and a["release"] == b["release"] and not a.get("stale") and not b.get("stale")


def host_units(starts, stops):
    """Pair one host's starts with its stops, in the order they can run.

    A start whose slot is free pairs with a stop (surge), preferring the stop
    whose slot another start waits for; when every remaining start waits for
    a slot, the start and the stop of that slot form an in-place unit.
    Starts beyond the stops are scale-out units (on free slots, so they can
    run first); stops left over are scale-in units.
    """
    starts = sorted(starts, key=lambda r: r["slot"])
    stops = sorted(stops, key=lambda r: r["slot"])
    occupied = set(r["slot"] for r in stops)
    # Scale-out beyond the replacements takes free slots, so it can run first.
    extra = max(0, len(starts) - len(stops))
    outs = [s for s in starts if s["slot"] not in occupied][:extra]
    units = [{"start": s, "stop": None, "in_place": False} for s in outs]
    starts = [s for s in starts if s not in outs]
    while starts and stops:
        ready = [s for s in starts if s["slot"] not in occupied]
        if ready:
            start = ready[0]
            waited_for = set(s["slot"] for s in starts if s is not start)
            stop = next((o for o in stops if o["slot"] in waited_for), stops[0])
            units.append({"start": start, "stop": stop, "in_place": False})
        else:
            start = starts[0]
            stop = next(o for o in stops if o["slot"] == start["slot"])
            units.append({"start": start, "stop": stop, "in_place": True})
        starts.remove(start)
        stops.remove(stop)
        occupied.discard(stop["slot"])
    # Starts left (only a rollback to exact slots has them) wait for the slots the pairs free.
    units.extend({"start": s, "stop": None, "in_place": False, "waits": True} for s in starts)
    units.extend({"start": None, "stop": o, "in_place": False} for o in sorted(stops, key=lambda r: -r["slot"]))
    return units


def _depends(unit, batch):
    """True when the unit's new instance needs a slot that a unit of the batch frees."""
    return unit["start"] is not None and any(
        u["stop"] is not None and u["stop"]["host"] == unit["start"]["host"]
        and u["stop"]["slot"] == unit["start"]["slot"] for u in batch)


def make_batches(units, hosts, batch_size, canary):
    """Order the units (scale-out, replacements, scale-in; hosts interleaved) and cut batches.

    canary: the first batch holds one unit only (starts come first). An
    in-place unit is a batch of its own; a unit never shares a batch with the
    unit that frees its slot.
    """
    def kind(u):
        if u["stop"] is None:
            return 1 if u.get("waits") else 0
        return 2 if u["start"] is None else 1

    ordered = []
    for k in (0, 1, 2):
        of_kind = [u for u in units if kind(u) == k]
        keyed = [((u["start"] or u["stop"])["host"], i) for i, u in enumerate(of_kind)]
        ordered.extend(of_kind[i] for _h, i in interleave(keyed, hosts))
    batches = []
    current = []
    for unit in ordered:
        # The canary: the first batch is one instance, watched before the rest follow.
        limit = 1 if canary and not batches else batch_size
        if current and (len(current) >= limit or unit["in_place"] or current[0]["in_place"] or _depends(unit, current)):
            batches.append(current)
            current = []
        current.append(unit)
    if current:
        batches.append(current)
    return batches


def plan_changes(current, desired, hosts, batch_size=None, canary=False):
    """Batches that take the tier from the current records to the desired ones.

    batch_size None: half of the units at a time (at least one).
    """
    starts = [d for d in desired if not any(_same(d, c) for c in current)]
    stops = [c for c in current if not any(_same(c, d) for d in desired)]
    every_host = list(hosts) + sorted(set(r["host"] for r in starts + stops) - set(hosts))
    units = []
    for host in every_host:
        units.extend(host_units([s for s in starts if s["host"] == host], [o for o in stops if o["host"] == host]))
    size = default_batch_size(len(units)) if batch_size is None else batch_size
    batches = make_batches(units, every_host, size, canary)
    return [{
        "index": i + 1,
        "canary": bool(canary and i == 0 and any(u["start"] for u in batch)),
        "in_place": any(u["in_place"] for u in batch),
        "start": [u["start"] for u in batch if u["start"]],
        "stop": [u["stop"] for u in batch if u["stop"]],
    } for i, batch in enumerate(batches)]


def plan_tier_rollout(tier, hosts, reports, requested, release, first_slot, per_host_limit,
                      addresses=None, replace=True, batch_size=None, canary=False, minimum=1,
                      exact=None):
    """The whole plan of one tier; see the module docstring.

    exact: records to go back to (a rollback); the count and release are then theirs.
    """
    hosts = list(hosts)
    current = current_records(reports, addresses)
    deployed = any(r.get("deployed") for r in reports.values())
    if exact is not None:
        desired = sorted((dict((k, v) for k, v in r.items() if k != "stale") for r in exact),
                         key=lambda r: (r["host"], r["slot"]))
        count = len(desired)
    else:
        count = resolve_count(requested, tier, len(current), hosts, deployed, minimum)
        if count and not hosts:
            raise PlanError("the inventory has no hosts in group '%s': add them, or set %s_replicas=0" % (tier, tier))
        check_capacity("%s_replicas" % tier, count, hosts, per_host_limit)
        if count and not release:
            raise PlanError("no release to run on the %s hosts: deploy one first (deploy.yml -e app_version=...)" % tier)
        desired = desired_records(hosts, count, current, release, slot_range(first_slot, per_host_limit),
                                  addresses, replace)
    if batch_size not in (None, ""):
        batch_size = parse_count(batch_size, "%s batch size" % tier, minimum=1)
    else:
        batch_size = None
    batches = plan_changes(current, desired, hosts, batch_size, canary)
    return {
        "tier": tier,
        "replicas": count,
        "release": release,
        "before": current,
        "after": desired,
        "batches": batches,
        "start": [r for b in batches for r in b["start"]],
        "stop": [r for b in batches for r in b["stop"]],
        "changed": bool(batches),
    }


def host_lines(before, after, hosts=None):
    """["api1: 3000 (1.0.0) -> 3001 (1.1.0)", ...]: each host's instances before -> after, hosts in order."""
    def on(records, host):
        found = ["%s (%s)" % (r["slot"], r["release"] or "?") for r in sorted(records, key=lambda r: r["slot"])
                 if r["host"] == host]
        return ", ".join(found) or "-"
    every = list(hosts or []) + sorted(set(r["host"] for r in before + after) - set(hosts or []))
    return ["%s: %s -> %s" % (h, on(before, h), on(after, h)) for h in every]
