"""Name rules. Lab and host names end up in interface names (15 chars max),
machine names and inventory host names, so they are kept short and plain."""
from __future__ import annotations

import re

LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")
HOST_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
# Ansible group names: identifiers; 'all'/'ungrouped' are Ansible's own and
# lab_* is where the tool puts its per-release groups.
GROUP_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
RESERVED_GROUPS = {"all", "ungrouped"}
# Host variable names given on the command line (`tools/lab add --var`).
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RELEASES = ("bookworm", "trixie")
BRIDGE_PREFIX = "rlab-"
COMMENT_PREFIX = "recete-lab:"


def check_lab_name(name: str) -> str | None:
    """None if NAME is a valid lab name, else the reason it is not."""
    if not LAB_NAME.match(name):
        return (f"invalid lab name {name!r}: use 1-8 characters, a lowercase letter "
                "then lowercase letters or digits (it goes into interface names)")
    return None


def check_host_name(host) -> str | None:
    """None if HOST is a valid machine name (a hostname, part of interface names), else why not."""
    if not isinstance(host, str) or not HOST_NAME.match(host):
        return (f"invalid machine name {host!r}: 1-12 characters, a lowercase "
                "letter then lowercase letters or digits")
    return None


def check_group_name(group) -> str | None:
    """None if GROUP can be one of a machine's inventory groups, else why not."""
    if not isinstance(group, str) or not GROUP_NAME.match(group) \
            or group in RESERVED_GROUPS or group.startswith("lab_"):
        return f"invalid group name {group!r} (lowercase identifier; not all/ungrouped/lab_*)"
    return None


def bridge_name(lab: str) -> str:
    return BRIDGE_PREFIX + lab  # at most 5 + 8 = 13 characters


def machine_name(lab: str, host: str) -> str:
    return f"{lab}-{host}"


def rule_comment(lab: str) -> str:
    return COMMENT_PREFIX + lab
