# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The read pool's replicas and their PgBouncer entries, one definition for
the pgbouncer role (which writes the entries) and the app roles (which list
them in DATABASE_RO_URLS and budget a pool per entry)."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError


def read_hosts(groups, hostvars, pgbouncer_group="pgbouncer", postgresql_group="postgres"):
    """The hosts behind the read entries, as the pgbouncer role sees them: the
    first pooler's pgbouncer_ro_hosts, else every replica of the PostgreSQL group
    (every member when PgBouncer follows Patroni)."""
    poolers = list(groups.get(pgbouncer_group) or [])
    pooler_vars = hostvars[poolers[0]] if poolers else {}
    explicit = list(pooler_vars.get("pgbouncer_ro_hosts") or [])
    if explicit:
        return explicit
    group = pooler_vars.get("pgbouncer_postgresql_group") or postgresql_group
    if _true(pooler_vars.get("pgbouncer_follow_patroni", pooler_vars.get("postgresql_patroni", False))):
        # Under Patroni any member may lead tomorrow: every one gets an entry, and the
        # app's read pool leaves out whichever is not in recovery.
        return list(groups.get(group) or [])
    return [host for host in groups.get(group) or []
            if hostvars[host].get("postgresql_member_role") == "replica"]


def _true(value):
    return value is True or str(value).strip().lower() in ("true", "yes", "on", "1")


def read_entries(hosts, prefix):
    """One PgBouncer entry per read host: [{'name': 'recete_ro_pg2', 'host': 'pg2'}]."""
    entries = []
    for host in hosts:
        suffix = re.sub(r"[^a-z0-9]+", "_", str(host).lower()).strip("_")
        name = "%s_%s" % (prefix, suffix)
        if not suffix or any(e["name"] == name for e in entries):
            raise AnsibleFilterError(
                "read host %r gives the PgBouncer entry name %r, which is empty or taken by another read host: "
                "rename one of them" % (host, name))
        entries.append({"name": name, "host": host})
    return entries


class FilterModule(object):
    """recete.stack read pool filters."""

    def filters(self):
        return {"read_hosts": read_hosts, "read_entries": read_entries}
