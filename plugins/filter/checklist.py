# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The scaling checklist of playbooks/checklist.yml (module_utils/_checklist.py)."""

from __future__ import annotations

from ansible_collections.recete.stack.plugins.module_utils import _checklist


def checklist_items(data, facts=None):
    """Each checklist item with ok and its evidence, from the status data and the checklist facts."""
    return _checklist.evaluate(dict(data or {}), dict(facts or {}))


def checklist_lines(items):
    """One printable line per item, then the count."""
    return _checklist.text_lines(list(items or []))


def checklist_markdown(items, title="Scaling checklist", generated="", source=""):
    """The Markdown report."""
    return _checklist.markdown(list(items or []), title, generated, source)


class FilterModule(object):
    """recete.stack checklist filters."""

    def filters(self):
        return {"checklist_items": checklist_items, "checklist_lines": checklist_lines,
                "checklist_markdown": checklist_markdown}
