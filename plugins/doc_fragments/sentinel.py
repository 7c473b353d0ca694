# -*- coding: utf-8 -*-
# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options of the Sentinel modules (module_utils/_redis_common.sentinel_argument_spec)."""

from __future__ import annotations


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  host:
    description: Address of the Sentinel.
    type: str
    default: 127.0.0.1
  port:
    description: Port of the Sentinel.
    type: int
    default: 26379
  username:
    description:
      - User to authenticate as on the Sentinel. Leave unset to authenticate as the default
        user with O(password) (Sentinel's C(requirepass)).
    type: str
  password:
    description: Password of the Sentinel (its C(requirepass)); unset when it has none.
    type: str
  master_name:
    description: Name under which the Sentinel monitors the master (C(sentinel monitor <name> ...)).
    type: str
    required: true
  timeout:
    description: Seconds to wait for the connection and for each reply.
    type: float
    default: 5.0
  tls:
    description:
      - Connect over TLS and verify the Sentinel's certificate and name (its address) against O(ca_file)
        (the redis role's C(redis_tls)).
    type: bool
    default: false
    version_added: 0.6.0
  ca_file:
    description: CA certificate file the Sentinel's certificate is verified with; the system's CAs when unset.
    type: path
    version_added: 0.6.0
'''
