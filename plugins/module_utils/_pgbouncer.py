# -*- coding: utf-8 -*-
# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared code for modules that talk to PgBouncer's admin console.

The admin console (the pseudo database ``pgbouncer``) understands only the
simple query protocol and has no transactions, so every connection is made
in autocommit mode and every statement is sent without parameters. psycopg2
(Debian's python3-psycopg2) always uses the simple protocol; psycopg 3 does
so for statements without parameters. psycopg2 is preferred because it is
what Debian bakes into our hosts; psycopg 3 is the fallback.

The pure helpers (row conversion, command building) have no driver
dependency and are unit-tested on the controller.
"""

from __future__ import annotations

import re
import traceback
from decimal import Decimal

DRIVER = None
DRIVER_NAME = None
DRIVER_IMPORT_ERROR = None

try:
    import psycopg2 as _driver  # pylint: disable=import-error

    DRIVER, DRIVER_NAME = _driver, "psycopg2"
except ImportError:
    try:
        import psycopg as _driver  # pylint: disable=import-error

        DRIVER, DRIVER_NAME = _driver, "psycopg"
    except ImportError:
        DRIVER_IMPORT_ERROR = traceback.format_exc()

HAS_DRIVER = DRIVER is not None

# Admin commands this collection issues, with the SQL keyword and whether a
# database name may follow it.
COMMANDS = {
    "reload": ("RELOAD", False),
    "pause": ("PAUSE", True),
    "resume": ("RESUME", True),
}

# PgBouncer database names it accepts without quoting (pgbouncer.ini(5)).
_DB_NAME = re.compile(r"^[0-9A-Za-z_.-]{1,63}$")

# Errors PgBouncer returns when a global PAUSE/RESUME is already in effect:
# the only way to read the global pause state on 1.18 (no SHOW STATE).
ALREADY_IN_STATE = {
    "pause": "already suspended/paused",
    "resume": "is not paused/suspended",
}

SHOW_VIEWS = ("pools", "stats", "databases")


def pgbouncer_argument_spec():
    """Connection options shared by every module that uses the admin console."""
    return dict(
        login_host=dict(type="str", default=""),
        login_port=dict(type="int", default=6432),
        login_user=dict(type="str", default="pgbouncer"),
        login_password=dict(type="str", default="", no_log=True),
        login_unix_socket=dict(type="str", default=""),
        connect_timeout=dict(type="int", default=10),
    )


def connection_kwargs(params):
    """Keyword arguments for the driver's connect(), from module params.

    A unix socket directory wins over a host name: libpq takes a host that
    starts with '/' as a socket directory. Empty values are left out so libpq
    applies its own defaults (Debian: /var/run/postgresql).
    """
    kwargs = {
        "dbname": "pgbouncer",
        "port": params["login_port"],
        "user": params["login_user"],
        "connect_timeout": params["connect_timeout"],
        # Show who is connected in SHOW CLIENTS.
        "application_name": "recete.stack.pgbouncer_admin",
    }
    host = params.get("login_unix_socket") or params.get("login_host")
    if host:
        kwargs["host"] = host
    if params.get("login_password"):
        kwargs["password"] = params["login_password"]
    return kwargs


def connect(params):
    """Open an autocommit connection to the admin console."""
    kwargs = connection_kwargs(params)
    if DRIVER_NAME == "psycopg":
        # psycopg 3 prepares a statement it has run 5 times (extended
        # protocol), which the admin console refuses.
        kwargs["prepare_threshold"] = None
    conn = DRIVER.connect(**kwargs)
    conn.autocommit = True
    return conn


def normalize_value(value):
    """A value from the admin console as plain JSON-friendly Python.

    PgBouncer types its counters as int4/int8 or numeric; the drivers return
    numeric as Decimal, which Ansible cannot serialise cleanly.
    """
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return value


def rows_to_dicts(columns, rows):
    """Rows of a SHOW command as a list of dicts keyed by column name."""
    names = list(columns)
    result = []
    for row in rows:
        if len(row) != len(names):
            raise ValueError(
                "row has %d values for %d columns (%s)" % (len(row), len(names), ", ".join(names))
            )
        result.append({name: normalize_value(value) for name, value in zip(names, row)})
    return result


def build_command(command, database=None):
    """The admin console statement for `command`, or ValueError with a reason."""
    if command not in COMMANDS:
        raise ValueError(
            "unknown command %r: expected one of %s" % (command, ", ".join(sorted(COMMANDS)))
        )
    keyword, takes_database = COMMANDS[command]
    if not database:
        return keyword
    if not takes_database:
        raise ValueError("%s applies to the whole pooler and takes no database" % keyword)
    if not _DB_NAME.match(database):
        raise ValueError(
            "database %r is not a valid PgBouncer database name (letters, digits, '_', '.', '-')" % database
        )
    return "%s %s" % (keyword, database)


def is_already_in_state(command, message):
    """True when `message` says a global PAUSE/RESUME was already in effect."""
    marker = ALREADY_IN_STATE.get(command)
    return bool(marker and marker in (message or ""))


def database_paused(databases, name):
    """Paused flag of database `name` in SHOW DATABASES rows; None if absent."""
    for row in databases:
        if row.get("name") == name:
            return bool(row.get("paused"))
    return None


def show(conn, view):
    """Run SHOW <view> and return its rows as dicts."""
    if view not in SHOW_VIEWS:
        raise ValueError("unknown view %r" % view)
    cur = conn.cursor()
    try:
        cur.execute("SHOW %s" % view.upper())
        columns = [col[0] for col in cur.description]
        return rows_to_dicts(columns, cur.fetchall())
    finally:
        cur.close()


def execute(conn, statement):
    """Run an admin command that returns no rows."""
    cur = conn.cursor()
    try:
        cur.execute(statement)
    finally:
        cur.close()


def error_message(err):
    """The server's message of a driver error, without the driver's decoration."""
    diag = getattr(err, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return primary or str(err).strip()
