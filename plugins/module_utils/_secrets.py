# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of the stack's secrets that need only the inventory (run on the controller).

A secret is refused when it is a placeholder (the example vault's CHANGE-ME),
shorter than the minimum, holds a line break or another control character (a
YAML block scalar adds a trailing newline, which breaks sentinel.conf and
userlist.txt), or has the value of another secret that must differ from it
(one leaked password must not open two doors). Messages name variables and
hosts only, never values.
"""
from __future__ import annotations

import re

# Texts people leave in place of a real secret.
PLACEHOLDER = re.compile(
    r"change[-_ .]?me|replace[-_ .]?me|placeholder|fix[-_ ]?me|to[-_ ]?do|"
    r"^(password|passw0rd|secret|example|default|test|admin|x+|\*+|\.+|-+)$",
    re.IGNORECASE)
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def value_problem(value, minimum):
    """Why one set value is not usable as a secret, or None."""
    text = str(value)
    if "\n" in text or "\r" in text:
        return "holds a line break (a YAML block scalar '|' adds one: use a plain or quoted string)"
    if CONTROL.search(text):
        return "holds a control character"
    if PLACEHOLDER.search(text.strip()):
        return "is a placeholder (replace it, e.g. with `openssl rand -hex 32`)"
    if len(text) < minimum:
        return "is shorter than %d characters" % minimum
    return None


def secret_problems(checks, minimum=16):
    """Messages for the secrets that are set but not usable.

    checks: a list of {"name": variable, "host": where it was read, "value": the
    value, "distinct": bool}. Unset values (None or "") are left to the roles,
    which know when a secret is required. Values of entries marked distinct
    must all differ from each other (an entry not marked distinct - a client's
    copy of a server's password - may repeat one).
    """
    problems = []
    seen = set()
    owner_of = {}
    for check in checks:
        value = check.get("value")
        if value is None or value == "":
            continue
        name = check["name"]
        where = check.get("host")
        label = "%s (%s)" % (name, where) if where else name
        problem = value_problem(value, int(minimum))
        if problem:
            if (name, problem) not in seen:   # once per variable, not once per host
                seen.add((name, problem))
                problems.append("%s %s" % (label, problem))
            continue   # two placeholders alike say nothing more than that they are placeholders
        if check.get("distinct"):
            other = owner_of.setdefault(str(value), name)
            if other != name and (name, other) not in seen:
                seen.add((name, other))
                problems.append("%s has the same value as %s (each secret must be its own)" % (label, other))
    return problems
