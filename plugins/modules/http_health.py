#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: http_health
short_description: Wait until an HTTP endpoint passes several health checks in a row
version_added: 0.1.0
description:
  - Sends C(GET) requests to O(url) until O(consecutive) checks in a row pass, or fails when that does
    not happen within O(timeout) seconds. A check passes when the status is one of O(expect_status) and,
    when O(expect_json) is given, the body is JSON containing O(expect_json).
  - Any failed check starts the count again, so a service that flaps between ready and not ready does
    not pass.
  - Reports the latency of the passing checks, so a play can print or gate on them.
  - Read-only; never reports a change. Uses only the Python standard library and Ansible's own
    C(open_url), so the target needs nothing extra.
author: recete.stack maintainers (@recete)
extends_documentation_fragment:
  - recete.stack.action_group.app_group
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to diff.
options:
  url:
    description: The URL to check, for example V(http://10.0.0.11:3000/ready).
    type: str
    required: true
  expect_status:
    description: HTTP status codes that count as a pass.
    type: list
    elements: int
    default: [200]
  expect_json:
    description:
      - 'A JSON object the body must contain to pass, for example V({"status": "ready"}).'
      - Keys of nested objects are matched the same way; extra keys in the body are ignored; lists,
        strings, numbers and booleans must be equal.
      - Unset, the body is not looked at.
    type: dict
  consecutive:
    description: How many checks in a row must pass.
    type: int
    default: 3
  timeout:
    description: Seconds to wait in all for O(consecutive) passing checks.
    type: float
    default: 60
  interval:
    description: Seconds between two checks.
    type: float
    default: 1
  request_timeout:
    description: Seconds one request may take before it counts as failed.
    type: float
    default: 5
  headers:
    description: 'Extra request headers, for example V({"Host": "api.example.com"}).'
    type: dict
    default: {}
  validate_certs:
    description: Verify the server certificate for C(https) URLs.
    type: bool
    default: true
notes:
  - The failure message names the URL and what the last check saw (the status and the start of the
    body, or the connection error), so a failed deploy says which instance is unhealthy and why.
  - Redirects are not followed; a 3xx counts as its own status.
seealso:
  - module: ansible.builtin.uri
  - module: ansible.builtin.wait_for
'''

EXAMPLES = r'''
- name: Wait until an API instance is ready three times in a row
  recete.stack.http_health:
    url: "http://{{ ansible_facts['default_ipv4']['address'] }}:3000/ready"
    expect_json:
      status: ready
    timeout: 60
    interval: 0.5
  register: ready

- name: Show how fast it answered
  ansible.builtin.debug:
    msg: "ready after {{ ready.elapsed_s }} s, p50 {{ ready.p50_ms }} ms, max {{ ready.max_ms }} ms"

- name: Accept a draining instance as alive (liveness, not readiness)
  recete.stack.http_health:
    url: http://127.0.0.1:3000/health
    expect_status: [200]
    consecutive: 1
    timeout: 10
'''

RETURN = r'''
url:
  description: The URL that was checked.
  returned: always
  type: str
  sample: http://10.213.2.11:3000/ready
status:
  description: HTTP status of the last check; V(null) when it could not connect.
  returned: always
  type: int
  sample: 200
body:
  description: Body of the last check, parsed when it is JSON, else the text.
  returned: always
  type: raw
  sample: {"status": "ready", "version": "1.0.0", "checks": {"postgres": "ok", "postgres_ro": "ok", "redis": "ok"}}
attempts:
  description: How many checks were made in all, failed ones included.
  returned: always
  type: int
  sample: 4
elapsed_s:
  description: Seconds from the first check to the end.
  returned: always
  type: float
  sample: 1.52
latencies_ms:
  description: Latency in milliseconds of each check of the final run of passing checks, in order.
  returned: always
  type: list
  elements: float
  sample: [3.1, 1.9, 2.2]
p50_ms:
  description: Median (nearest rank) of RV(latencies_ms); V(null) when no check passed.
  returned: always
  type: float
  sample: 2.2
max_ms:
  description: Largest of RV(latencies_ms); V(null) when no check passed.
  returned: always
  type: float
  sample: 3.1
'''

import socket
import time
from urllib.error import HTTPError, URLError

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.urls import open_url

from ansible_collections.recete.stack.plugins.module_utils._http_health import Check, wait_healthy

# A health answer is small; never read more than this of a body.
MAX_BODY_BYTES = 64 * 1024


def _read(response):
    try:
        return to_text(response.read(MAX_BODY_BYTES), errors="surrogate_or_replace")
    except Exception:  # a body cut off mid-read still tells the status
        return ""


def make_fetch(url, headers, request_timeout, validate_certs):
    """A function doing one GET and returning a Check, whatever happened."""
    def fetch():
        started = time.monotonic()
        try:
            response = open_url(url, method="GET", headers=headers, timeout=request_timeout,
                                validate_certs=validate_certs, follow_redirects="none")
            try:
                return Check(status=response.getcode(), body_text=_read(response),
                             latency_ms=(time.monotonic() - started) * 1000.0)
            finally:
                response.close()
        except HTTPError as exc:
            # Non-2xx answers arrive as HTTPError but are answers all the same.
            return Check(status=exc.code, body_text=_read(exc), latency_ms=(time.monotonic() - started) * 1000.0)
        except URLError as exc:
            return Check(error=to_text(exc.reason), latency_ms=(time.monotonic() - started) * 1000.0)
        except (socket.timeout, OSError) as exc:
            return Check(error=to_text(exc) or exc.__class__.__name__, latency_ms=(time.monotonic() - started) * 1000.0)
        except Exception as exc:  # e.g. http.client.RemoteDisconnected, BadStatusLine
            return Check(error="%s: %s" % (exc.__class__.__name__, to_text(exc)),
                         latency_ms=(time.monotonic() - started) * 1000.0)
    return fetch


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type="str", required=True),
            expect_status=dict(type="list", elements="int", default=[200]),
            expect_json=dict(type="dict"),
            consecutive=dict(type="int", default=3),
            timeout=dict(type="float", default=60),
            interval=dict(type="float", default=1),
            request_timeout=dict(type="float", default=5),
            headers=dict(type="dict", default={}),
            validate_certs=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    problems = []
    if p["consecutive"] < 1:
        problems.append("consecutive must be at least 1")
    if p["timeout"] < 0 or p["interval"] < 0:
        problems.append("timeout and interval must not be negative")
    if p["request_timeout"] <= 0:
        problems.append("request_timeout must be above 0")
    if not p["expect_status"]:
        problems.append("expect_status must list at least one status code")
    if not p["url"].lower().startswith(("http://", "https://")):
        problems.append("url must start with http:// or https:// (got %s)" % p["url"])
    if problems:
        module.fail_json(msg="; ".join(problems), url=p["url"])

    fetch = make_fetch(p["url"], p["headers"], p["request_timeout"], p["validate_certs"])
    ok, result = wait_healthy(fetch, time.monotonic, time.sleep, p["expect_status"], p["expect_json"],
                              consecutive=p["consecutive"], timeout=p["timeout"], interval=p["interval"])
    last_error = result.pop("last_error")
    result.pop("passes")
    result.update(url=p["url"], changed=False)
    if not ok:
        module.fail_json(
            msg="%s did not pass %d consecutive check(s) within %s s (%d attempts): %s"
                % (p["url"], p["consecutive"], p["timeout"], result["attempts"], last_error),
            **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
