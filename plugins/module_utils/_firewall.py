# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host firewall's accept rules, derived from the inventory (role recete.stack.firewall).

A service listens on the hosts of some groups (``on_groups``) and may be reached from
the hosts of other groups (``from_groups``) and from networks
(``from_networks``). For one host, ``host_rules`` keeps the services it runs
and turns their sources into addresses; ``nft_statements`` writes them as
nftables rules for an ``inet`` table whose input policy drops the rest.

``settings_problems`` checks the operator's settings on the controller.
Written here because no collection derives host firewall rules from an
Ansible inventory; addresses are handled by Python's ipaddress module.
"""
from __future__ import annotations

import ipaddress

# Protocols a service may name: VRRP (keepalived) is IP protocol 112; "any"
# admits every protocol and port (trusted networks).
PROTOCOLS = {"tcp": "tcp", "udp": "udp", "vrrp": "112", "any": ""}


NETWORK_SETTINGS = ("firewall_ssh_networks", "firewall_trusted_networks", "firewall_lb_client_networks")


def _bad_networks(values):
    """The entries of a list that are not IP networks (CIDR) or addresses."""
    bad = []
    for value in values:
        try:
            ipaddress.ip_network(str(value), strict=False)
        except ValueError:
            bad.append(value)
    return bad


def settings_problems(settings):
    """Messages for one host's firewall settings (name -> value); empty when usable."""
    problems = []
    for name in NETWORK_SETTINGS:
        value = settings.get(name, [])
        if not isinstance(value, (list, tuple)):
            problems.append("%s must be a list of networks such as 192.0.2.0/24" % name)
            continue
        problems.extend("%s: %r is not an IP network (CIDR) or address" % (name, v) for v in _bad_networks(value))
    span = str(settings.get("firewall_instance_port_span", 64))
    if not (span.isdigit() and 1 <= int(span) <= 1024):
        problems.append("firewall_instance_port_span must be a number from 1 to 1024, got %s" % span)
    extra = settings.get("firewall_extra_services", [])
    for service in extra if isinstance(extra, (list, tuple)) else [None]:
        problems.extend(_service_problems(service))
    return problems


def _service_problems(service):
    """Messages for one entry of firewall_extra_services."""
    if not isinstance(service, dict) or not service.get("name") or not isinstance(service.get("on_groups"), list):
        return ["each of firewall_extra_services needs a name and on_groups (a list of groups)"]
    name = "firewall_extra_services %s" % service["name"]
    if service.get("proto", "tcp") not in PROTOCOLS:
        return ["%s: proto must be one of %s" % (name, ", ".join(PROTOCOLS))]
    problems = ["%s: %r is not an IP network (CIDR) or address" % (name, v)
                for v in _bad_networks(service.get("from_networks") or [])]
    try:
        _ports(service)
    except ValueError as exc:
        problems.append(str(exc).replace("firewall service %r" % service["name"], name))
    return problems


def _ports(service):
    """The service's ports as nftables set elements ("6379", "3000-3063"), checked."""
    ports = []
    for port in service.get("ports") or []:
        low, _dash, high = str(port).partition("-")
        try:
            low, high = int(low), int(high or low)
        except ValueError:
            raise ValueError("firewall service %r: port %r is not a number or range" % (service["name"], port)) from None
        if not 1 <= low <= high <= 65535:
            raise ValueError("firewall service %r: port %r is outside 1-65535" % (service["name"], port))
        ports.append(str(low) if low == high else "%d-%d" % (low, high))
    return ports


def _sources(service, groups, addresses):
    """Source networks of a service, IPv4 and IPv6 apart, sorted so that the rules file is stable."""
    nets = set()
    for group in service.get("from_groups") or []:
        for member in groups.get(group, []):
            if not addresses.get(member):
                raise ValueError("firewall service %r: host %s (group %s) has no known address"
                                 % (service["name"], member, group))
            nets.add(ipaddress.ip_network(str(addresses[member])))
    for net in service.get("from_networks") or []:
        nets.add(ipaddress.ip_network(str(net), strict=False))
    return {family: sorted(n for n in nets if n.version == version)
            for family, version in (("ip", 4), ("ip6", 6))}


def host_rules(services, host, groups, addresses):
    """The rules of the services ``host`` runs: name, protocol, ports, sources per address family."""
    rules = []
    for service in services:
        on = service.get("on_groups") or []
        if not any(host in groups.get(group, []) for group in on):
            continue
        proto = service.get("proto", "tcp")
        if proto not in PROTOCOLS:
            raise ValueError("firewall service %r: proto must be one of %s" % (service["name"], ", ".join(PROTOCOLS)))
        ports = _ports(service)
        if proto in ("tcp", "udp") and not ports:
            raise ValueError("firewall service %r: no ports" % service["name"])
        for family, nets in _sources(service, groups, addresses).items():
            if nets:
                rules.append({"name": service["name"], "proto": proto, "ports": ports, "family": family,
                              "sources": [str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n)
                                          for n in nets]})
    return rules


def _statement(rule):
    """One nftables rule: from these sources, this protocol (and ports), accept."""
    sources = rule["sources"]
    if sources == ["0.0.0.0/0"] or sources == ["::/0"]:
        match = "meta nfproto %s" % ("ipv4" if rule["family"] == "ip" else "ipv6")
    else:
        match = "%s saddr { %s }" % (rule["family"], ", ".join(sources))
    if rule["proto"] == "any":
        what = ""
    elif rule["proto"] == "vrrp":
        what = " meta l4proto %s" % PROTOCOLS["vrrp"]
    else:
        what = " %s dport { %s }" % (rule["proto"], ", ".join(rule["ports"]))
    comment = rule["name"].replace('"', "'")[:120]
    return '%s%s accept comment "%s"' % (match, what, comment)


def nft_statements(services, host, groups, addresses):
    """The accept rules of ``host``'s input chain, as nftables statements."""
    return [_statement(rule) for rule in host_rules(services, host, groups, addresses)]
