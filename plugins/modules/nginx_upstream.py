#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: nginx_upstream
short_description: Manage the file holding one nginx upstream block, validate it, reload and wait for the drain
version_added: 0.1.0
description:
  - Renders one C(upstream) block (balancing method, one C(server) line per member, upstream keepalive)
    into O(path), a file the site configuration includes.
  - Open-source nginx has no runtime API for upstream membership, so a change is applied as a new file,
    C(nginx -t) and a reload. When the rendered block equals the file, nothing is written and nginx is not
    reloaded.
  - Otherwise the file is replaced atomically and the whole configuration is checked with C(nginx -t) (C(nginx -c
    FILE -t) with O(config)). If nginx rejects it, the previous file is put back and the module fails with nginx's
    message; nginx keeps serving.
  - With O(reload=true) nginx is then reloaded (C(systemctl reload SERVICE), or C(nginx -s reload) when systemd
    does not run O(service)) and the module confirms the reload took effect - the master named by O(pid_file) runs
    worker processes that did not exist before. A reload that nginx did not apply also puts the previous file back
    and fails.
  - O(config), O(pid_file) and O(service) select one nginx master among several on the host, for example a router
    nginx with its own configuration, pid file and systemd unit that holds the upstream block, behind an edge nginx
    that is never reloaded for membership changes.
  - When the file already holds the block but was written after nginx's worker processes started (an earlier run
    wrote it without a reload that then happened, for example a failed handler), nginx still routes by the previous
    block; the module then checks and reloads as for a change, and returns RV(not_loaded=true). With O(reload=false)
    it reports a change, so that a handler notified by it reloads.
  - It then waits up to O(drain_timeout) seconds until every worker process of the previous generation has
    exited, which happens once their in-flight requests have finished. A server marked V(down) receives no new
    requests after the reload; once RV(drained) is true none is in flight to it either, so it can be stopped
    without failing a request (nginx never retries a non-idempotent request such as a POST on another server).
author: recete.stack maintainers (@recete)
requirements:
  - nginx on the target, whose configuration (O(config), else nginx's default) includes O(path) inside its C(http)
    block.
extends_documentation_fragment:
  - recete.stack.action_group.nginx_group
attributes:
  check_mode:
    support: full
    description: Renders and compares the block and reports whether it would change; writes and reloads nothing.
  diff_mode:
    support: full
    description: Returns the file content before and after.
options:
  name:
    description:
      - Name of the upstream, as C(proxy_pass http://NAME) refers to it.
      - Letters, digits, C(_), C(.) and C(-).
    type: str
    required: true
  path:
    description:
      - The file holding the block, for example C(/etc/nginx/recete/upstream-recete_api.conf).
      - Its directory must exist. A new file is created with mode C(0644); an existing one keeps its owner and mode.
      - Nothing but this block belongs in it; the module rewrites the whole file.
    type: path
    required: true
  servers:
    description:
      - The members of the upstream. At least one must be V(active).
      - The file lists them sorted by address, so the order of this list never causes a change.
    type: list
    elements: dict
    required: true
    suboptions:
      address:
        description:
          - V(host:port) of the member, such as V(10.0.0.5:3000); V([fd00::5]:3000) for IPv6, V(unix:/path) for a socket.
          - A host name is resolved by nginx when it loads the configuration.
        type: str
        required: true
      state:
        description:
          - V(active) receives requests.
          - V(down) stays in the block marked C(down) and receives no new requests after the reload. This is how a
            member is drained before it is stopped.
        type: str
        choices: [active, down]
        default: active
      weight:
        description: Relative share of requests (nginx's default is 1).
        type: int
      max_fails:
        description: Failed attempts within O(servers[].fail_timeout) after which nginx stops using the member for
          O(servers[].fail_timeout); V(0) disables the accounting. Overrides O(max_fails).
        type: int
      fail_timeout:
        description: Seconds; the window for O(servers[].max_fails) and how long a failed member is skipped.
          Overrides O(fail_timeout).
        type: int
  balancing:
    description:
      - V(least_conn) sends each request to the member with the fewest active connections (weighted).
      - V(round_robin) is nginx's default. V(ip_hash) keeps a client on one member.
    type: str
    choices: [least_conn, round_robin, ip_hash]
    default: least_conn
  keepalive:
    description:
      - Idle connections to the members each worker process keeps open for reuse (C(keepalive)). V(0) disables them.
      - Takes effect only when the proxying location sets C(proxy_http_version 1.1) and clears the C(Connection) header.
    type: int
    default: 32
  keepalive_timeout:
    description:
      - Seconds an idle upstream connection is kept (C(keepalive_timeout) in the upstream block); unset keeps
        nginx's 60 s.
      - Keep it below the members' own idle timeout (Node.js closes idle connections after 5 s), or nginx may send
        a request on a connection the member is closing.
    type: int
  max_fails:
    description: Default C(max_fails) of every member (passive failure detection); unset keeps nginx's 1.
    type: int
  fail_timeout:
    description: Default C(fail_timeout) of every member, in seconds; unset keeps nginx's 10 s.
    type: int
  reload:
    description:
      - Reload nginx after a change and confirm that new worker processes run.
      - With V(false) the file is written and checked with C(nginx -t) only; reload it yourself (for example in a
        handler that other configuration changes also notify).
      - When nginx does not run, the module writes and checks the file and warns; nginx reads it when it starts.
    type: bool
    default: true
  reload_timeout:
    description: Seconds to wait for the worker processes of the new generation after the reload.
    type: int
    default: 10
  drain_timeout:
    description:
      - Seconds to wait after the reload until every worker process of the previous generation has exited, that
        is until the requests that were in flight have finished. V(0) does not wait.
      - Keep it below nginx's C(worker_shutdown_timeout), after which old workers close what is still open, so
        that RV(drained=true) means every request finished by itself.
      - When nothing changed, the module still waits for workers that an earlier reload left shutting down, so
        re-running a scale-in after an interruption drains before the member is stopped.
    type: int
    default: 30
  pid_file:
    description:
      - The pid file of the nginx master that loads O(path), used to find it and its worker processes.
      - The C(pid) directive of O(config), for a second nginx master.
    type: path
    default: /run/nginx.pid
  config:
    description:
      - The main configuration file of the nginx master that loads O(path), checked with C(nginx -c CONFIG -t)
        and, without systemd, reloaded with C(nginx -c CONFIG -s reload).
      - Unset means nginx's compiled-in default (C(/etc/nginx/nginx.conf) on Debian).
    type: path
  service:
    description:
      - The systemd unit of that nginx master, reloaded with C(systemctl reload SERVICE) when it is active.
      - Its C(ExecReload) must reload the master named by O(pid_file) (send it C(SIGHUP)).
    type: str
    default: nginx.service
notes:
  - The module reads C(/proc) on the target to find the master's worker processes; it needs the same privileges as
    C(nginx -t) (become root).
  - Passive failure detection only (C(max_fails)/C(fail_timeout)); open-source nginx has no active health checks.
seealso:
  - name: ngx_http_upstream_module
    description: The upstream block, server parameters and keepalive.
    link: https://nginx.org/en/docs/http/ngx_http_upstream_module.html
  - name: Controlling nginx
    description: How a reload replaces the worker processes.
    link: https://nginx.org/en/docs/control.html
'''

EXAMPLES = r'''
- name: Put the API instances behind the load balancer
  recete.stack.nginx_upstream:
    name: recete_api
    path: /etc/nginx/recete/upstream-recete_api.conf
    servers:
      - address: 10.0.0.11:3000
      - address: 10.0.0.11:3001
      - address: 10.0.0.12:3000
    keepalive: 32
    keepalive_timeout: 4
    max_fails: 3
    fail_timeout: 10
  become: true

- name: Drain one instance before stopping it (scale-in)
  recete.stack.nginx_upstream:
    name: recete_api
    path: /etc/nginx/recete/upstream-recete_api.conf
    servers:
      - address: 10.0.0.11:3000
      - address: 10.0.0.12:3000
      - address: 10.0.0.11:3001
        state: down
    drain_timeout: 60
  become: true
  register: lb

- name: Refuse to stop the instance while requests may still be in flight to it
  ansible.builtin.assert:
    that: lb.drained
    fail_msg: "nginx still finishes requests after {{ lb.drain_seconds }} s"

- name: Change the membership of a second nginx (a router behind an edge nginx that stays untouched)
  recete.stack.nginx_upstream:
    name: recete_api
    path: /etc/nginx/recete/upstream-recete_api.conf
    servers: "{{ upstream_servers }}"
    config: /etc/nginx/recete/router.conf
    pid_file: /run/recete-router/nginx.pid
    service: recete-router.service
    drain_timeout: 60
  become: true

- name: Write the block without reloading; a handler reloads once for every change
  recete.stack.nginx_upstream:
    name: recete_api
    path: /etc/nginx/recete/upstream-recete_api.conf
    servers: "{{ upstream_servers }}"   # a list of {address: ..., state: ...}
    reload: false
  become: true
  notify: nginx configuration changed
'''

RETURN = r'''
path:
  description: The file holding the block.
  returned: always
  type: str
  sample: /etc/nginx/recete/upstream-recete_api.conf
servers:
  description: The members as written, in file order, with every setting resolved (V(null) = nginx's default).
  returned: always
  type: list
  elements: dict
  sample:
    - {address: "10.0.0.11:3000", state: active, weight: null, max_fails: 3, fail_timeout: 10}
    - {address: "10.0.0.11:3001", state: down, weight: null, max_fails: 3, fail_timeout: 10}
content:
  description: The rendered file.
  returned: always
  type: str
not_loaded:
  description: The file held the block already, but nginx's workers had started before it was written, so it was
    reloaded to load it (the task then reports a change).
  returned: always
  type: bool
  sample: false
reloaded:
  description: Whether nginx was reloaded and new worker processes were seen.
  returned: always
  type: bool
  sample: true
reload_seconds:
  description: Seconds from the reload command until the first worker of the new generation was seen.
  returned: when RV(reloaded) is true
  type: float
  sample: 0.12
workers_before:
  description: PIDs of the master's worker processes before the reload (or now, when nothing was reloaded).
  returned: always
  type: list
  elements: int
  sample: [2301, 2302]
workers_after:
  description: PIDs of the worker processes the reload started (the new generation).
  returned: always
  type: list
  elements: int
  sample: [2415, 2416]
drained:
  description:
    - Whether every worker of the previous generation had exited within O(drain_timeout) (their in-flight requests
      finished). V(true) when there was nothing to drain.
    - V(false) means some were still serving requests when the wait ended; see RV(workers_draining).
  returned: always
  type: bool
  sample: true
drain_seconds:
  description: Seconds from the reload (or from the start, when nothing was reloaded) until the previous generation
    had exited, or until the wait ended.
  returned: always
  type: float
  sample: 1.84
workers_draining:
  description: PIDs of old-generation workers still running when the module returned.
  returned: always
  type: list
  elements: int
  sample: []
nginx_test:
  description: What C(nginx -t) said about the rejected block.
  returned: when nginx -t rejected the new block
  type: str
  sample: 'nginx: [emerg] host not found in upstream "api9.invalid:3000" in /etc/nginx/recete/upstream-recete_api.conf:6'
'''

import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.recete.stack.plugins.module_utils._nginx import (
    BALANCING,
    STATES,
    UpstreamError,
    check_name,
    compare_generations,
    master_pid,
    normalize_servers,
    process_start_time,
    render_upstream,
    shutting_down,
    worker_processes,
    written_after_workers,
)

HEADER = ('Managed by recete.stack.nginx_upstream: every change here is overwritten.\n'
          'Applied with nginx -t and a reload; a member marked "down" is being drained.')
POLL_SECONDS = 0.1


def read_file(path):
    """The file's content (bytes), or None when it does not exist."""
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        if not os.path.exists(path):
            return None
        raise exc


def file_mtime(path):
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def write_file(module, path, content):
    """Replace path atomically (temporary file in the same directory, then rename)."""
    directory = os.path.dirname(path) or '.'
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, 'wb') as handle:
            handle.write(content if isinstance(content, bytes) else to_bytes(content))
        if not os.path.exists(path):
            os.chmod(tmp, 0o644)
        module.atomic_move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def restore(module, path, old):
    """Put the previous file back (remove it when there was none)."""
    if old is None:
        if os.path.exists(path):
            os.unlink(path)
    else:
        write_file(module, path, old)


def nginx_command(nginx, config, *args):
    """nginx [-c CONFIG] ARGS: the master that loads the upstream file."""
    return [nginx] + (['-c', config] if config else []) + list(args)


def nginx_test(module, nginx, config=None):
    rc, out, err = module.run_command(nginx_command(nginx, config, '-t'))
    return rc, (err or out or '').strip()


def reload_command(module, nginx, config=None, service='nginx.service'):
    """systemctl when systemd runs the service (it then knows about the reload), else the signal."""
    systemctl = module.get_bin_path('systemctl')
    if systemctl:
        rc, out, err = module.run_command([systemctl, 'is-active', '--quiet', service])
        if rc == 0:
            return [systemctl, 'reload', service]
    return nginx_command(nginx, config, '-s', 'reload')


def wait_for(predicate, timeout):
    """Poll predicate until it returns something truthy or timeout seconds pass."""
    deadline = time.monotonic() + max(timeout, 0)
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(POLL_SECONDS)


def wait_for_drain(master, old_pids, timeout, started, pid_file):
    """Wait until none of old_pids is a worker of the master; return (drained, seconds, remaining)."""
    remaining = [old_pids]

    def gone():
        current = worker_processes(master_pid(pid_file) or master)
        remaining[0] = compare_generations(old_pids, current)['remaining']
        return not remaining[0]

    drained = bool(wait_for(gone, timeout)) if old_pids else True
    return drained, round(time.monotonic() - started, 3), remaining[0] if old_pids else []


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            path=dict(type='path', required=True),
            servers=dict(
                type='list', elements='dict', required=True,
                options=dict(
                    address=dict(type='str', required=True),
                    state=dict(type='str', choices=list(STATES), default='active'),
                    weight=dict(type='int'),
                    max_fails=dict(type='int'),
                    fail_timeout=dict(type='int'),
                ),
            ),
            balancing=dict(type='str', choices=list(BALANCING), default='least_conn'),
            keepalive=dict(type='int', default=32),
            keepalive_timeout=dict(type='int'),
            max_fails=dict(type='int'),
            fail_timeout=dict(type='int'),
            reload=dict(type='bool', default=True),
            reload_timeout=dict(type='int', default=10),
            drain_timeout=dict(type='int', default=30),
            pid_file=dict(type='path', default='/run/nginx.pid'),
            config=dict(type='path'),
            service=dict(type='str', default='nginx.service'),
        ),
        supports_check_mode=True,
    )
    params = module.params
    path = params['path']

    try:
        check_name(params['name'])
        servers = normalize_servers(params['servers'], params['max_fails'], params['fail_timeout'])
        content = render_upstream(params['name'], servers, params['balancing'], params['keepalive'],
                                  params['keepalive_timeout'], header=HEADER)
    except UpstreamError as exc:
        module.fail_json(msg=str(exc))
    for option in ('reload_timeout', 'drain_timeout'):
        if params[option] < 0:
            module.fail_json(msg='%s must be 0 or more seconds, got %d' % (option, params[option]))

    try:
        old = read_file(path)
    except (IOError, OSError) as exc:
        module.fail_json(msg='cannot read %s: %s' % (path, to_native(exc)))
    changed = old != to_bytes(content)

    master = master_pid(params['pid_file'])
    workers = worker_processes(master)
    workers_before = sorted(workers)
    # The file already holds the block, but nginx's workers started before it was written: an earlier run wrote
    # it without a reload that then happened (a failed handler). nginx still routes by the previous block.
    not_loaded = (not changed and master is not None
                  and written_after_workers(file_mtime(path), [process_start_time(pid) for pid in workers
                                                               if pid not in shutting_down(workers)]))
    result = dict(changed=changed or not_loaded, path=path, servers=servers, content=content, reloaded=False,
                  not_loaded=not_loaded, workers_before=workers_before, workers_after=[], drained=True,
                  drain_seconds=0.0, workers_draining=[])
    if module._diff:
        result['diff'] = dict(before=to_native(old or b'', errors='surrogate_or_replace'), after=content,
                              before_header='%s (before)' % path, after_header='%s (after)' % path)

    if module.check_mode:
        module.exit_json(**result)

    if not changed and not not_loaded:
        # Nothing to apply; still let a drain that an earlier reload started finish.
        if params['reload'] and master and params['drain_timeout']:
            lingering = shutting_down(worker_processes(master))
            if lingering:
                drained, seconds, remaining = wait_for_drain(master, lingering, params['drain_timeout'],
                                                             time.monotonic(), params['pid_file'])
                result.update(drained=drained, drain_seconds=seconds, workers_draining=remaining)
        module.exit_json(**result)

    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        module.fail_json(msg='the directory of %s does not exist: create it first (the recete.stack.nginx_lb role '
                             'does), and include the file from the site configuration' % path, **result)
    nginx = module.get_bin_path('nginx', required=True, opt_dirs=['/usr/sbin'])

    if changed:
        try:
            write_file(module, path, content)
        except (IOError, OSError) as exc:
            module.fail_json(msg='cannot write %s: %s' % (path, to_native(exc)), **result)

    rc, message = nginx_test(module, nginx, params['config'])
    if rc != 0:
        if changed:
            restore(module, path, old)
        rc_old, message_old = nginx_test(module, nginx, params['config'])
        cause = ('the configuration was already invalid without this change (nginx -t still fails with the previous '
                 'file: %s)' % message_old) if rc_old != 0 else 'the previous file is back in place and nginx keeps serving'
        result.update(changed=False, nginx_test=message)
        module.fail_json(msg='nginx -t rejects the new upstream %s in %s: %s. Nothing was reloaded; %s.'
                             % (params['name'], path, message, cause), **result)

    if not params['reload']:
        module.exit_json(**result)
    if master is None:
        module.warn('nginx does not run (no master process in %s): %s is written and checked, and takes effect '
                    'when nginx starts' % (params['pid_file'], path))
        module.exit_json(**result)

    command = reload_command(module, nginx, params['config'], params['service'])
    started = time.monotonic()
    rc, out, err = module.run_command(command)
    if rc != 0:
        if changed:
            restore(module, path, old)
        result.update(changed=False)
        module.fail_json(msg='%s failed (rc %d): %s. The previous %s is back in place; nginx runs the previous '
                             'configuration.' % (' '.join(command), rc, (err or out).strip(), path), **result)

    def new_generation():
        current = master_pid(params['pid_file'])
        return compare_generations(workers_before, worker_processes(current))['new'] if current else []

    workers_after = wait_for(new_generation, params['reload_timeout'])
    if not workers_after:
        if changed:
            restore(module, path, old)
        result.update(changed=False)
        module.fail_json(msg='nginx did not start new worker processes within %d s of "%s": the reload did not take '
                             'effect and nginx still runs the previous configuration (see the error log of %s). The '
                             'previous %s is back in place.'
                             % (params['reload_timeout'], ' '.join(command), params['config'] or 'nginx', path),
                         **result)
    result.update(reloaded=True, workers_after=workers_after, reload_seconds=round(time.monotonic() - started, 3))

    master = master_pid(params['pid_file']) or master
    drained, seconds, remaining = wait_for_drain(master, workers_before, params['drain_timeout'], started,
                                                 params['pid_file'])
    # The new generation as it stands once the old one is gone (all of its workers have started by now).
    workers_after = compare_generations(workers_before, worker_processes(master))['new'] or workers_after
    result.update(drained=drained, drain_seconds=seconds, workers_draining=remaining, workers_after=workers_after)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
