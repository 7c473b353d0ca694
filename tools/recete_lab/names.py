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
RELEASES = ("bookworm", "trixie")
BRIDGE_PREFIX = "rlab-"
COMMENT_PREFIX = "recete-lab:"


def check_lab_name(name: str) -> str | None:
    """None if NAME is a valid lab name, else the reason it is not."""
    if not LAB_NAME.match(name):
        return (f"invalid lab name {name!r}: use 1-8 characters, a lowercase letter "
                "then lowercase letters or digits (it goes into interface names)")
    return None


def bridge_name(lab: str) -> str:
    return BRIDGE_PREFIX + lab  # at most 5 + 8 = 13 characters


def machine_name(lab: str, host: str) -> str:
    return f"{lab}-{host}"


def rule_comment(lab: str) -> str:
    return COMMENT_PREFIX + lab
