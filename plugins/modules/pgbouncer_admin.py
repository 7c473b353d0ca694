#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pgbouncer_admin
short_description: Read PgBouncer's pools and statistics, and issue RELOAD, PAUSE or RESUME
version_added: 0.1.0
description:
  - Connects to the PgBouncer admin console (the pseudo database C(pgbouncer)) on the target and
    returns C(SHOW POOLS), C(SHOW STATS) and C(SHOW DATABASES) as lists of dictionaries.
  - With O(command), issues C(RELOAD), C(PAUSE) or C(RESUME) first, then reads the views.
  - C(RELOAD) re-reads C(pgbouncer.ini) and the auth file online; settings PgBouncer can only apply at
    start (such as C(listen_addr), C(listen_port), C(unix_socket_dir)) still need a restart.
  - C(PAUSE) waits until every server connection of the pooler (or of O(database)) is released, so it
    returns only once in-flight transactions have finished; see O(pause_timeout).
  - The admin console speaks only the simple query protocol and has no transactions; the module uses
    autocommit and sends statements without parameters.
author: recete.stack maintainers (@recete)
requirements:
  - psycopg2 (Debian package C(python3-psycopg2)), or psycopg 3 (C(python3-psycopg)), on the target.
extends_documentation_fragment:
  - recete.stack.action_group.pgbouncer_group
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details:
      - In check mode the views are read but no command is issued. O(command=pause) and O(command=resume)
        for one O(database) report a change only if its paused state would change; for the whole pooler
        PgBouncer 1.18 does not expose that state, so they report a change.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: partial
    details:
      - Reports the paused state of O(database) before and after O(command=pause) or O(command=resume).
options:
  command:
    description:
      - Admin command to issue before reading the views.
      - V(reload) always reports a change. V(pause) and V(resume) report no change when the pooler
        (or O(database)) is already in that state.
      - Leave unset to only read the views.
    type: str
    choices: [reload, pause, resume]
  database:
    description:
      - PgBouncer database (a name from its C([databases]) section) to pause or resume, instead of the whole pooler.
      - Only with O(command=pause) or O(command=resume).
    type: str
  pause_timeout:
    description:
      - Seconds to wait for C(PAUSE) to return. When it does not return in time (a long transaction holds a
        server connection), the module issues C(RESUME) so clients are not left waiting, and fails.
      - V(0) waits without limit.
    type: int
    default: 60
  login_host:
    description:
      - Host name or address of PgBouncer. Ignored when O(login_unix_socket) is set.
      - Leave empty (and O(login_unix_socket) empty) to use libpq's default socket directory.
    type: str
    default: ""
  login_port:
    description: Port PgBouncer listens on (its C(listen_port)); also names the unix socket file.
    type: int
    default: 6432
  login_user:
    description:
      - User for the admin console; must be in PgBouncer's C(admin_users) to issue commands, or in
        C(stats_users) to read the views.
      - The default C(pgbouncer) needs no password when connecting through the unix socket as the OS user
        PgBouncer runs as (C(postgres) on Debian; use O(ignore:become_user=postgres)).
    type: str
    default: pgbouncer
  login_password:
    description: Password of O(login_user).
    type: str
    default: ""
  login_unix_socket:
    description: Directory of PgBouncer's unix socket (its C(unix_socket_dir)), for example C(/var/run/postgresql).
    type: str
    default: ""
  connect_timeout:
    description: Seconds to wait for the connection to the admin console.
    type: int
    default: 10
notes:
  - Tested with PgBouncer 1.18 (Debian 12).
seealso:
  - name: PgBouncer admin console
    description: Commands and columns of the views.
    link: https://www.pgbouncer.org/usage.html#admin-console
"""

EXAMPLES = r"""
- name: Read PgBouncer's pools through the local socket, without a password
  recete.stack.pgbouncer_admin:
    login_unix_socket: /var/run/postgresql
  become: true
  become_user: postgres
  register: pgbouncer

- name: Show server connections of each pool
  ansible.builtin.debug:
    msg: "{{ item.database }}/{{ item.user }}: {{ item.sv_active + item.sv_idle + item.sv_used }} server connections"
  loop: "{{ pgbouncer.pools }}"
  loop_control:
    label: "{{ item.database }}/{{ item.user }}"

- name: Apply a changed pgbouncer.ini online
  recete.stack.pgbouncer_admin:
    login_host: 127.0.0.1
    login_user: pgbouncer_admin
    login_password: "{{ pgbouncer_admin_password }}"
    command: reload
  no_log: true

- name: Hold new transactions on the read-write entry during a switchover (up to 30 s)
  recete.stack.pgbouncer_admin:
    login_unix_socket: /var/run/postgresql
    command: pause
    database: recete
    pause_timeout: 30
  become: true
  become_user: postgres

- name: Let them through again
  recete.stack.pgbouncer_admin:
    login_unix_socket: /var/run/postgresql
    command: resume
    database: recete
  become: true
  become_user: postgres
"""

RETURN = r"""
command:
  description: The statement issued, or would have been issued in check mode; empty when none.
  returned: always
  type: str
  sample: PAUSE recete
pools:
  description: Rows of C(SHOW POOLS), one per database and user pair; counters are integers.
  returned: always
  type: list
  elements: dict
  sample:
    - database: recete
      user: recete
      cl_active: 12
      cl_waiting: 0
      sv_active: 3
      sv_idle: 2
      sv_used: 0
      sv_tested: 0
      sv_login: 0
      maxwait: 0
      maxwait_us: 0
      pool_mode: transaction
stats:
  description: Rows of C(SHOW STATS), one per database; counters are integers.
  returned: always
  type: list
  elements: dict
  sample:
    - database: recete
      total_xact_count: 1520
      total_query_count: 3040
      avg_xact_time: 812
databases:
  description: Rows of C(SHOW DATABASES), one per database entry, including C(paused) and C(disabled) flags.
  returned: always
  type: list
  elements: dict
  sample:
    - name: recete
      host: 10.0.0.11
      port: 5432
      database: recete
      pool_size: 25
      paused: 0
      disabled: 0
driver:
  description: Python driver used on the target.
  returned: always
  type: str
  sample: psycopg2
"""

import threading

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.recete.stack.plugins.module_utils import _pgbouncer as pgb


class PauseTimeout(Exception):
    """PAUSE did not return in time; the connection it used is still busy."""


def _run_pause(module, conn, statement, timeout):
    """Issue PAUSE in a worker thread so a stuck PAUSE can be bounded.

    PgBouncer answers PAUSE only once every server connection concerned is
    released. On timeout RESUME is sent over a second connection so clients
    are not held; the first connection never gets an answer after that and
    is left to die with the module process (closing it would block on the
    driver's lock held by the waiting thread).
    """
    outcome = {}

    def worker():
        try:
            pgb.execute(conn, statement)
        except Exception as err:  # pylint: disable=broad-except
            outcome["error"] = err

    thread = threading.Thread(target=worker, name="pgbouncer-pause")
    thread.daemon = True
    thread.start()
    thread.join(timeout if timeout > 0 else None)
    if thread.is_alive():
        resume = statement.replace("PAUSE", "RESUME", 1)
        note = "issued %s" % resume
        try:
            other = pgb.connect(module.params)
            pgb.execute(other, resume)
            other.close()
        except Exception as err:  # pylint: disable=broad-except
            note = "%s also failed (%s): run it on the admin console" % (resume, pgb.error_message(err))
        raise PauseTimeout(
            "%s did not complete within %d s: a transaction still holds a server connection; %s. "
            "Find it with SHOW SERVERS or pg_stat_activity, or raise pause_timeout." % (statement, timeout, note)
        )
    if "error" in outcome:
        raise outcome["error"]


def _apply(module, conn, command, database, statement):
    """Read state, issue the command when it changes something, read the views."""
    databases = pgb.show(conn, "databases")
    changed = bool(command)
    before = after = None
    if database:
        before = pgb.database_paused(databases, database)
        if before is None:
            raise ValueError(
                "PgBouncer has no database %r; it has: %s"
                % (database, ", ".join(str(row.get("name")) for row in databases))
            )
        after = command == "pause"
        changed = before != after

    if changed and not module.check_mode:
        try:
            if command == "pause":
                _run_pause(module, conn, statement, module.params["pause_timeout"])
            else:
                pgb.execute(conn, statement)
        except PauseTimeout:
            raise
        except Exception as err:  # pylint: disable=broad-except
            message = pgb.error_message(err)
            if database or not pgb.is_already_in_state(command, message):
                raise ValueError("%s failed: %s" % (statement, message)) from err
            changed = False
        databases = pgb.show(conn, "databases")

    result = dict(changed=changed, command=statement if changed else "", databases=databases)
    if database and module._diff:
        result["diff"] = dict(
            before={"database": database, "paused": before},
            after={"database": database, "paused": after if changed else before},
        )
    result["pools"] = pgb.show(conn, "pools")
    result["stats"] = pgb.show(conn, "stats")
    return result


def main():
    argument_spec = pgb.pgbouncer_argument_spec()
    argument_spec.update(
        command=dict(type="str", choices=sorted(pgb.COMMANDS)),
        database=dict(type="str"),
        pause_timeout=dict(type="int", default=60),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)

    if not pgb.HAS_DRIVER:
        module.fail_json(
            msg=missing_required_lib("psycopg2 (python3-psycopg2) or psycopg 3 (python3-psycopg)"),
            exception=pgb.DRIVER_IMPORT_ERROR,
        )

    command = module.params["command"]
    database = module.params["database"]
    if database and not command:
        module.fail_json(msg="database is only used with command=pause or command=resume")
    if module.params["pause_timeout"] < 0:
        module.fail_json(msg="pause_timeout must be 0 (no limit) or a number of seconds")
    statement = ""
    if command:
        try:
            statement = pgb.build_command(command, database)
        except ValueError as err:
            module.fail_json(msg=str(err))

    try:
        conn = pgb.connect(module.params)
    except Exception as err:  # pylint: disable=broad-except
        where = module.params["login_unix_socket"] or module.params["login_host"] or "the default unix socket"
        module.fail_json(
            msg="cannot connect to the PgBouncer admin console at %s port %d as %s: %s. Check that PgBouncer runs, "
                "that the user is in admin_users/stats_users and in the auth file, or connect through the unix socket "
                "as the OS user PgBouncer runs as." % (where, module.params["login_port"], module.params["login_user"],
                                                       pgb.error_message(err)),
        )

    result = dict(changed=False, command=statement, driver=pgb.DRIVER_NAME)
    try:
        result.update(_apply(module, conn, command, database, statement))
    except PauseTimeout as err:
        module.fail_json(msg=str(err), **result)
    except Exception as err:  # pylint: disable=broad-except
        conn.close()
        module.fail_json(msg="PgBouncer admin console error: %s" % pgb.error_message(err), **result)
    conn.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
