# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The app tier's connection budget against PgBouncer's max_client_conn."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.recete.stack.plugins.module_utils._placement import (
    PlanError,
    check_connection_budget,
    parse_count,
)


def connection_budget(tiers, max_client_conn):
    """Check instances x pool size against PgBouncer's max_client_conn; return the total."""
    try:
        rows = [(t["name"], parse_count(t["instances"], t["name"]), parse_count(t["pool_size"], t["name"] + " pool size"))
                for t in tiers]
        return check_connection_budget(rows, parse_count(max_client_conn, "max_client_conn", 1))
    except PlanError as exc:
        raise AnsibleFilterError(str(exc))


class FilterModule(object):
    """recete.stack connection budget filter."""

    def filters(self):
        return {"connection_budget": connection_budget}
