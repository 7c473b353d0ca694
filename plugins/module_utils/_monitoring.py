# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus scrape targets from the inventory and from what runs (pure, unit-tested).

Prometheus reads file-based service discovery files on change, without a
restart: one JSON file per job, a list of target groups. Sorted output keeps
the files byte-identical between runs, so an unchanged stack changes nothing.
"""

from __future__ import annotations

from ansible_collections.recete.stack.plugins.module_utils._rollout import current_records


def _address_port(address, port):
    """host:port, with IPv6 addresses in brackets."""
    return "[%s]:%d" % (address, port) if ":" in address else "%s:%d" % (address, port)


def host_target_groups(hosts, addresses, port, labels=None):
    """One target group per host of a group (exporters): address:port, labelled with the host's name."""
    groups = []
    for host in sorted(hosts):
        address = addresses.get(host)
        if not address:
            raise ValueError("no private address known for host %s" % host)
        group_labels = {"host": host}
        group_labels.update(labels or {})
        groups.append({"targets": [_address_port(address, int(port))], "labels": group_labels})
    return groups


def instance_target_groups(reports, addresses, port_offset=0):
    """One target group per app instance that runs, from recete.stack.app_instances reports.

    The API serves /metrics on its own port (the slot): port_offset 0. A
    worker's slot is its index; it serves /metrics on port_offset + index.
    Stopped and stale-but-running instances are both listed while they are
    part of what runs: a stopped one must show as down, not vanish.
    """
    return record_target_groups(current_records(reports, addresses), port_offset)


def record_target_groups(records, port_offset=0):
    """One target group per instance record ({host, slot, release, address}, as a rolling plan has them).

    The rolling engine knows what runs at its end (its plan's target), so it
    writes the targets from that instead of reading every app host again.
    """
    groups = []
    for record in records:
        if not record.get("address"):
            raise ValueError("no private address known for host %s" % record["host"])
        groups.append({
            "targets": [_address_port(record["address"], int(port_offset) + int(record["slot"]))],
            "labels": {"host": record["host"], "slot": str(record["slot"]), "release": record["release"]},
        })
    return sorted(groups, key=lambda g: (g["labels"]["host"], int(g["labels"]["slot"])))
