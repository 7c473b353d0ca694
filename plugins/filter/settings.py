# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""recete.stack filters over the operators' extra settings (documentation: extra_problems.yml)."""
from __future__ import annotations

from ansible_collections.recete.stack.plugins.module_utils._settings import extra_problems


def stack_extra_problems(extra, variable):
    """Messages for a `*_extra` dictionary: managed keys, bad names, secrets in unit files, line breaks."""
    return extra_problems(str(variable), extra)


class FilterModule(object):
    """recete.stack settings filters."""

    def filters(self):
        return {"extra_problems": stack_extra_problems}
