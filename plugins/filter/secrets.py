# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""recete.stack filters over the stack's secrets (documentation: secret_problems.yml, scram_sha_256.yml)."""
from __future__ import annotations

from ansible_collections.recete.stack.plugins.module_utils._scram import scram_sha_256
from ansible_collections.recete.stack.plugins.module_utils._secrets import secret_problems


def stack_secret_problems(checks, minimum=16):
    """Messages for the secrets that are placeholders, short, multi-line or repeated."""
    return secret_problems(list(checks or []), minimum)


class FilterModule(object):
    """recete.stack secret filters."""

    def filters(self):
        return {"secret_problems": stack_secret_problems, "scram_sha_256": scram_sha_256}
