"""Make `ansible_collections.recete.stack` importable from the checkout.

tools/setup links .collections/ansible_collections/recete/stack to the repo root.

The module tests use `ansible.module_utils.testing.patch_module_args`, which
ansible-core added in 2.19. On older ansible-core (tools/matrix runs these
tests on every version requires_ansible admits) the same context manager is
provided here, the way those versions take module arguments: JSON bytes in
`ansible.module_utils.basic._ANSIBLE_ARGS`.
"""
import contextlib
import json
import os
import sys
import types
from unittest import mock

_COLLECTIONS = os.path.join(os.path.dirname(__file__), "..", "..", ".collections")
sys.path.insert(0, os.path.abspath(_COLLECTIONS))

try:
    from ansible.module_utils.testing import patch_module_args  # noqa: F401  (ansible-core >= 2.19)
except ImportError:
    from ansible.module_utils import basic as _basic

    @contextlib.contextmanager
    def _patch_module_args(args=None):
        """Expose `args` to AnsibleModule instances created within this context (ansible-core < 2.19)."""
        if not isinstance(args, (dict, type(None))):
            raise TypeError("The `args` arg must be a dict or None.")
        payload = json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()
        with mock.patch.object(_basic, "_ANSIBLE_ARGS", payload):
            yield

    _testing = types.ModuleType("ansible.module_utils.testing")
    _testing.patch_module_args = _patch_module_args
    sys.modules["ansible.module_utils.testing"] = _testing
