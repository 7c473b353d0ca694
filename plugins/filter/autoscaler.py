# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side checks of the autoscaler's settings (the algorithm itself is module_utils/_hpa.py)."""

from __future__ import annotations

import os

from ansible.errors import AnsibleFilterError

from ansible_collections.recete.stack.plugins.module_utils._hpa import schedule_problems


def autoscaler_schedule_problems(schedules, tiers):
    """What is wrong with the scheduled floors, one sentence each (empty: nothing)."""
    tiers = {name: {"max": int(spec["max"])} for name, spec in (tiers or {}).items()}
    return schedule_problems(list(schedules or []), tiers)


def autoscaler_collection_sources(galaxy_list, wanted):
    """[{name, src}] for each WANTED collection, from `ansible-galaxy collection list --format json`.

    The first path that has a collection is the one the controller loads, as
    in the collection search order the list is printed in.
    """
    found = {}
    for path, collections in (galaxy_list or {}).items():
        for name in collections or {}:
            found.setdefault(name, os.path.join(path, *name.split(".")))
    missing = [name for name in wanted if name not in found]
    if missing:
        raise AnsibleFilterError("collections %s are not installed on the controller (ansible-galaxy collection list "
                                 "does not show them); the autoscaler runs the controller's collections"
                                 % ", ".join(missing))
    return [{"name": name, "src": found[name]} for name in wanted]


class FilterModule(object):
    """recete.stack autoscaler filters."""

    def filters(self):
        return {"autoscaler_schedule_problems": autoscaler_schedule_problems,
                "autoscaler_collection_sources": autoscaler_collection_sources}
