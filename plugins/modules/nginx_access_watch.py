#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: nginx_access_watch
short_description: Count the 5xx answers of canary upstreams in the nginx load balancer's access log
version_added: 0.2.0
description:
  - Reads the access log the P(recete.stack.nginx_lb#role) role writes (log format C(recete_lb)) and
    counts, for the upstream instances listed in O(upstreams), how many requests they were sent and how
    many they answered with a 5xx status. Fails when the share of errors is above O(max_error_rate) or
    fewer than O(min_requests) requests reached them, so a deploy can stop before a bad release takes
    all the traffic.
  - Works in two calls. Without O(offset) it reads nothing and returns the current end of the log as
    RV(offset) (the mark, taken before the canary joins the load balancer). With O(offset) set to that
    mark it reads the lines written since, and keeps following the log for O(seconds) seconds.
  - Every attempt nginx made is counted on its own. A request that nginx retried, for example
    C(upstream_addr=10.0.0.2:3001, 10.0.0.3:3000 upstream_status=502, 200), counts as one request and
    one error for V(10.0.0.2:3001) even though the client got a 200.
  - Lines that are not in the C(recete_lb) format are skipped and counted in RV(skipped).
  - Read-only; never reports a change.
author: recete.stack maintainers (@recete)
extends_documentation_fragment:
  - recete.stack.action_group.nginx_group
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to diff.
options:
  path:
    description: The load balancer's access log (the role's C(nginx_lb_access_log)).
    type: path
    default: /var/log/nginx/recete-lb.access.log
  offset:
    description:
      - Byte offset to start reading from, normally RV(offset) of an earlier call.
      - Unset, nothing is read and only the current end of the log is returned (the mark).
      - When the log is now shorter than O(offset) it was rotated or truncated, and reading starts at 0.
    type: int
  seconds:
    description:
      - How long to keep reading new lines after the ones already in the log, for example the canary
        window. V(0) reads what is there and returns at once.
      - Needs O(offset).
    type: float
    default: 0
  upstreams:
    description:
      - The upstream instances to watch, as C(address:port) the way nginx writes them in
        C($upstream_addr), for example V(10.0.0.2:3001), V([fd00::5]:3000) or V(unix:/run/app.sock).
      - Host names are refused, since nginx logs the address it connected to.
      - Required when O(offset) is set.
    type: list
    elements: str
  max_error_rate:
    description: The largest share of the watched requests (V(0) to V(1)) that may answer 5xx.
    type: float
    default: 0.01
  min_requests:
    description:
      - The fewest requests the watched upstreams must have been sent; fewer fails the canary, so a canary
        that got no traffic does not pass unseen.
      - V(0) accepts any number, none included.
    type: int
    default: 0
notes:
  - An attempt counts as an error when its C($upstream_status) is 5xx, or when nginx logged no status for it
    (V(-)) and the client got a 5xx.
  - nginx buffers the log (C(buffer=64k flush=1s)), so the requests of the last second of the window may
    be in the next call; the returned RV(offset) picks them up there. A line still being written is left
    for the next call too.
  - While following, a log rotated by renaming is read to its end and the new file from its start; a log
    truncated in place is read again from 0. A rotation between two calls is noticed only when the new log
    is shorter than O(offset).
  - The failure message names the upstreams, the counts, the error rate and the threshold; the counts are
    returned with the failure too, so a play can print them with C(ignore_errors).
seealso:
  - module: recete.stack.nginx_upstream
  - module: recete.stack.http_health
'''

EXAMPLES = r'''
- name: Mark the end of the load balancer's log before the canary joins
  recete.stack.nginx_access_watch:
    path: /var/log/nginx/recete-lb.access.log
  register: lb_mark
  delegate_to: "{{ groups['lb'][0] }}"

# ... add the canary instance to the upstream (recete.stack.nginx_upstream) ...

- name: Watch the canary for 30 seconds; fail on more than 1 % 5xx or fewer than 20 requests
  recete.stack.nginx_access_watch:
    offset: "{{ lb_mark.offset }}"
    seconds: 30
    upstreams:
      - 10.0.0.2:3001
    max_error_rate: 0.01
    min_requests: 20
  register: canary
  delegate_to: "{{ groups['lb'][0] }}"

- name: Show what the canary answered
  ansible.builtin.debug:
    msg: "{{ canary.requests }} requests, {{ canary.errors }} 5xx, by status {{ canary.by_status }}"

- name: Count what happened since the mark without judging it
  recete.stack.nginx_access_watch:
    path: /var/log/nginx/recete-lb.access.log
    offset: "{{ lb_mark.offset }}"
    upstreams: ["10.0.0.2:3001", "10.0.0.3:3001"]
    max_error_rate: 1
  register: since_mark
'''

RETURN = r'''
offset:
  description: The byte offset the next call should start from (the end of the last complete line read).
  returned: always
  type: int
  sample: 1849330
requests:
  description: How many attempts went to the watched upstreams.
  returned: always
  type: int
  sample: 120
errors:
  description: How many of those attempts answered 5xx.
  returned: always
  type: int
  sample: 7
error_rate:
  description: RV(errors) divided by RV(requests), rounded to 4 places; V(0.0) without requests.
  returned: always
  type: float
  sample: 0.0583
by_status:
  description: The watched attempts by C($upstream_status); V(-) for attempts logged without a status.
  returned: always
  type: dict
  sample: {"200": 113, "502": 7}
lines:
  description: How many log lines were read, skipped ones included.
  returned: always
  type: int
  sample: 5210
skipped:
  description: How many of the lines read were not in the C(recete_lb) format.
  returned: always
  type: int
  sample: 0
samples:
  description: Up to 5 raw log lines with an error of a watched upstream, in log order.
  returned: always
  type: list
  elements: str
  sample:
    - '10.0.0.9 [28/Nov/2026:10:00:01 +0000] "GET /api/v1/orders HTTP/1.1" 200 512 upstream_addr=10.0.0.2:3001,
      10.0.0.3:3000 upstream_status=502, 200 upstream_response_time=0.001, 0.004 request_time=0.005 "curl/8.5.0" "-"'
failed_canary:
  description:
    - Whether the error rate is above O(max_error_rate) or RV(requests) below O(min_requests). The module
      fails when it is true.
    - Always V(false) when O(offset) is unset.
  returned: always
  type: bool
  sample: false
rotated:
  description: Whether the log was found rotated or truncated, so reading (re)started at byte 0.
  returned: always
  type: bool
  sample: false
'''

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.recete.stack.plugins.module_utils._access_log import (
    AccessLogError, Tally, end_offset, failure_message, judge, normalize_upstreams, watch)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/var/log/nginx/recete-lb.access.log"),
            offset=dict(type="int"),
            seconds=dict(type="float", default=0),
            upstreams=dict(type="list", elements="str"),
            max_error_rate=dict(type="float", default=0.01),
            min_requests=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    problems = []
    if p["offset"] is not None and p["offset"] < 0:
        problems.append("offset must not be negative")
    if p["seconds"] < 0:
        problems.append("seconds must not be negative")
    if p["seconds"] > 0 and p["offset"] is None:
        problems.append("seconds needs offset: call once without offset to mark the end of the log, "
                        "then with offset set to the returned offset")
    if not 0 <= p["max_error_rate"] <= 1:
        problems.append("max_error_rate must be between 0 and 1 (0.01 is 1 %%), got %s" % p["max_error_rate"])
    if p["min_requests"] < 0:
        problems.append("min_requests must not be negative")
    try:
        upstreams = normalize_upstreams(p["upstreams"])
    except AccessLogError as exc:
        problems.append(str(exc))
        upstreams = []
    if p["offset"] is not None and not upstreams and not problems:
        problems.append('upstreams must list the canary instances to watch, such as ["10.0.0.2:3001"]')
    if problems:
        module.fail_json(msg="; ".join(problems), path=p["path"])

    try:
        if p["offset"] is None:
            result = Tally(upstreams).result()
            result.update(offset=end_offset(p["path"]), rotated=False, failed_canary=False, changed=False)
            module.exit_json(**result)
        tally, result = watch(p["path"], p["offset"], p["seconds"], upstreams, time.monotonic, time.sleep)
    except AccessLogError as exc:
        module.fail_json(msg="%s; is this the load balancer host, and is path its access log "
                             "(nginx_lb_access_log)?" % exc, path=p["path"])

    failed_canary, reasons = judge(tally, p["max_error_rate"], p["min_requests"])
    result.update(failed_canary=failed_canary, changed=False)
    if failed_canary:
        module.fail_json(msg=failure_message(upstreams, reasons, p["seconds"], p["offset"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
