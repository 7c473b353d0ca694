# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that turn the inventory and what runs into Prometheus file_sd target groups (module_utils/_monitoring.py)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.recete.stack.plugins.module_utils._monitoring import host_target_groups, instance_target_groups, record_target_groups


def scrape_host_targets(hosts, addresses, port, labels=None):
    """file_sd target groups for an exporter on each host."""
    try:
        return host_target_groups(list(hosts or []), dict(addresses or {}), int(port), dict(labels or {}))
    except ValueError as exc:
        raise AnsibleFilterError(str(exc))


def scrape_instance_targets(reports, addresses, port_offset=0):
    """file_sd target groups for each app instance that runs."""
    try:
        return instance_target_groups(dict(reports or {}), dict(addresses or {}), int(port_offset))
    except ValueError as exc:
        raise AnsibleFilterError(str(exc))


def scrape_record_targets(records, port_offset=0):
    """file_sd target groups for instance records (a rolling plan's)."""
    try:
        return record_target_groups(list(records or []), int(port_offset))
    except (KeyError, ValueError) as exc:
        raise AnsibleFilterError("scrape_record_targets: %s" % exc)


class FilterModule(object):
    """recete.stack monitoring filters."""

    def filters(self):
        return {"scrape_host_targets": scrape_host_targets, "scrape_instance_targets": scrape_instance_targets,
                "scrape_record_targets": scrape_record_targets}
