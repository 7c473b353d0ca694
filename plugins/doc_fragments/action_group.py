# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each module's action group (meta/runtime.yml action_groups), one variable per group:
extends_documentation_fragment: recete.stack.action_group.app_group (nginx_group, ...). The suffix
keeps a name from meeting a fragment of the same name (recete.stack.sentinel). Literal strings:
ansible-test reads doc fragments without running them."""

from __future__ import annotations


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options: {}
'''

    APP_GROUP = r'''
attributes:
  action_group:
    support: full
    membership: [recete.stack.app, recete.stack.all]
    description: Defaults for it can be set with C(group/recete.stack.app) or C(group/recete.stack.all) in C(module_defaults).
'''

    NGINX_GROUP = r'''
attributes:
  action_group:
    support: full
    membership: [recete.stack.nginx, recete.stack.all]
    description: Defaults for it can be set with C(group/recete.stack.nginx) or C(group/recete.stack.all) in C(module_defaults).
'''

    OPERATION_GROUP = r'''
attributes:
  action_group:
    support: full
    membership: [recete.stack.operation, recete.stack.all]
    description: Defaults for it can be set with C(group/recete.stack.operation) or C(group/recete.stack.all) in C(module_defaults).
'''

    PGBOUNCER_GROUP = r'''
attributes:
  action_group:
    support: full
    membership: [recete.stack.pgbouncer, recete.stack.all]
    description: Defaults for it can be set with C(group/recete.stack.pgbouncer) or C(group/recete.stack.all) in C(module_defaults).
'''

    SENTINEL_GROUP = r'''
attributes:
  action_group:
    support: full
    membership: [recete.stack.sentinel, recete.stack.all]
    description: Defaults for it can be set with C(group/recete.stack.sentinel) or C(group/recete.stack.all) in C(module_defaults).
'''
