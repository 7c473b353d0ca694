# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The status screen of playbooks/status.yml (module_utils/_status.py)."""

from __future__ import annotations

from ansible_collections.recete.stack.plugins.module_utils._status import status_lines as _status_lines


def status_lines(data):
    """One screen, a section per tier, from the results the status plays collected."""
    return _status_lines(dict(data or {}))


class FilterModule(object):
    """recete.stack status filter."""

    def filters(self):
        return {"status_lines": status_lines}
