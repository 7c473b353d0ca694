"""The lab's network on the host: a bridge, a /24 from 10.213.0.0/16, NAT.

Everything the tool adds is marked so it can be found again without the
state file: bridges carry the interface alias `recete-lab:<name>`, iptables
rules the comment `recete-lab:<name>`.
"""
from __future__ import annotations

import ipaddress
import json
import shlex

from .names import BRIDGE_PREFIX, COMMENT_PREFIX, rule_comment
from .util import LabError, run

POOL = ipaddress.ip_network("10.213.0.0/16")
FIRST_HOST = 10  # machines get .10, .11, ... in topology order


# --- addresses (pure) ---------------------------------------------------------

def pick_subnet(taken: list[str], routes: list[str]) -> ipaddress.IPv4Network:
    """Lowest /24 of the pool that no other lab uses and no host route overlaps."""
    blocked = [ipaddress.ip_network(n, strict=False) for n in [*taken, *routes]]
    for subnet in POOL.subnets(new_prefix=24):
        if not any(subnet.overlaps(b) for b in blocked if b.version == 4):
            return subnet
    raise LabError(f"no free /24 left in {POOL} (other labs or host routes use them all)")


def gateway(subnet: str) -> str:
    return str(ipaddress.ip_network(subnet)[1])


def machine_address(subnet: str, index: int) -> str:
    net = ipaddress.ip_network(subnet)
    address = net[FIRST_HOST + index]
    if address >= net.broadcast_address:
        raise LabError(f"machine #{index + 1} does not fit in {subnet}")
    return str(address)


def free_addresses(subnet: str, taken, count: int) -> list[str]:
    """The COUNT lowest machine addresses of SUBNET not in TAKEN (addresses of
    machines that still exist): a machine added after others were removed
    fills the first gap."""
    used = set(taken)
    net = ipaddress.ip_network(subnet)
    found = []
    index = 0
    while len(found) < count:
        if net[FIRST_HOST + index] >= net.broadcast_address:
            raise LabError(f"no free address left in {subnet} for {count} more machine(s) "
                           f"({len(used)} in use, at most {net.num_addresses - FIRST_HOST - 1})")
        address = machine_address(subnet, index)
        if address not in used:
            found.append(address)
        index += 1
    return found


def route_destinations(ip_json: str) -> list[str]:
    """Destination networks of `ip -j route` output (skips 'default')."""
    found = []
    for route in json.loads(ip_json or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            try:
                found.append(str(ipaddress.ip_network(dst, strict=False)))
            except ValueError:
                pass
    return found


def host_routes() -> list[str]:
    return route_destinations(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout)


# --- bridge -------------------------------------------------------------------

def link_info(name: str) -> dict | None:
    proc = run(["ip", "-j", "-d", "link", "show", "dev", name], check=False)
    if proc.returncode != 0:
        return None
    links = json.loads(proc.stdout or "[]")
    return links[0] if links else None


def bridge_owner(info: dict) -> str | None:
    """The lab that made this interface (from its alias), or None."""
    alias = info.get("ifalias", "")
    return alias[len(COMMENT_PREFIX):] if alias.startswith(COMMENT_PREFIX) else None


def check_bridge_free(bridge: str, lab: str) -> None:
    """Fail if BRIDGE exists but is not this lab's (a foreign interface or another tool's)."""
    info = link_info(bridge)
    if info and bridge_owner(info) != lab:
        raise LabError(f"interface {bridge} already exists and was not made by lab {lab}; "
                       f"remove it (ip link del {bridge}) or choose another --name")


def ensure_bridge(bridge: str, lab: str, subnet: str) -> None:
    if link_info(bridge) is None:
        run(["ip", "link", "add", bridge, "type", "bridge"])
        run(["ip", "link", "set", "dev", bridge, "alias", rule_comment(lab)])
    prefix = ipaddress.ip_network(subnet).prefixlen
    address = f"{gateway(subnet)}/{prefix}"
    have = run(["ip", "-j", "-4", "addr", "show", "dev", bridge]).stdout
    if address not in _addresses(have):
        run(["ip", "addr", "add", address, "dev", bridge])
    run(["ip", "link", "set", "dev", bridge, "up"])


def _addresses(ip_json: str) -> list[str]:
    return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(ip_json or "[]")
            for a in link.get("addr_info", [])]


def delete_bridge(bridge: str) -> bool:
    if link_info(bridge) is None:
        return False
    run(["ip", "link", "del", "dev", bridge])
    return True


def lab_bridges() -> list[tuple[str, str | None]]:
    """(interface, owning lab) for every interface that looks like the tool's."""
    links = json.loads(run(["ip", "-j", "-d", "link", "show"]).stdout or "[]")
    return [(l["ifname"], bridge_owner(l)) for l in links
            if l["ifname"].startswith(BRIDGE_PREFIX) or bridge_owner(l)]


# --- NAT and forwarding -------------------------------------------------------

def nat_rules(lab: str, subnet: str, bridge: str) -> list[tuple[str, str, list[str]]]:
    """(table, chain, rule spec) the lab adds; each carries the lab's comment."""
    tag = ["-m", "comment", "--comment", rule_comment(lab)]
    return [
        ("nat", "POSTROUTING", ["-s", subnet, "!", "-o", bridge, *tag, "-j", "MASQUERADE"]),
        ("filter", "FORWARD", ["-i", bridge, *tag, "-j", "ACCEPT"]),
        ("filter", "FORWARD", ["-o", bridge, *tag, "-j", "ACCEPT"]),
    ]


def add_nat(lab: str, subnet: str, bridge: str) -> None:
    for table, chain, spec in nat_rules(lab, subnet, bridge):
        if run(["iptables", "-t", table, "-C", chain, *spec], check=False).returncode != 0:
            # Inserted first in FORWARD so a host policy of DROP does not hide them.
            op = ["-I", chain, "1"] if chain == "FORWARD" else ["-A", chain]
            run(["iptables", "-t", table, *op, *spec])


def tagged_rules(rules_text: str, lab: str | None = None) -> list[list[str]]:
    """Rules from `iptables -S` text whose comment is recete-lab:<lab> (any lab if None)."""
    found = []
    for line in rules_text.splitlines():
        words = shlex.split(line)
        if not words or words[0] != "-A" or "--comment" not in words:
            continue
        comment = words[words.index("--comment") + 1]
        wanted = comment.startswith(COMMENT_PREFIX) if lab is None else comment == rule_comment(lab)
        if wanted:
            found.append(words)
    return found


def list_tagged(lab: str | None = None) -> list[tuple[str, list[str]]]:
    out = []
    for table in ("nat", "filter"):
        proc = run(["iptables", "-t", table, "-S"], check=False)
        out += [(table, rule) for rule in tagged_rules(proc.stdout, lab)]
    return out


def delete_nat(lab: str) -> int:
    """Delete every rule carrying the lab's comment; returns how many."""
    rules = list_tagged(lab)
    for table, rule in rules:
        run(["iptables", "-t", table, "-D", *rule[1:]])
    return len(rules)
