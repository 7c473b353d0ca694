# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""recete.stack filters of the host firewall (documentation: firewall_rules.yml, firewall_problems.yml)."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.recete.stack.plugins.module_utils._firewall import nft_statements, settings_problems


def firewall_rules(services, host, groups, addresses):
    """The nftables accept rules of one host, from the services and the inventory."""
    try:
        return nft_statements(list(services or []), str(host), dict(groups), dict(addresses or {}))
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from None


def firewall_problems(settings):
    """Messages for one host's firewall settings; empty when usable."""
    return settings_problems(dict(settings or {}))


class FilterModule(object):
    """recete.stack firewall filters."""

    def filters(self):
        return {"firewall_rules": firewall_rules, "firewall_problems": firewall_problems}
