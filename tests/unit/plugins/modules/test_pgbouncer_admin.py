"""Unit tests of recete.stack.pgbouncer_admin and its module_utils.

The pure helpers (row conversion, command building) are tested directly; the
module's decisions (what it issues, when it reports a change, check mode) run
against a fake driver that records the statements it receives.
"""
from __future__ import annotations

import json
import sys
import threading
from decimal import Decimal
from pathlib import Path

import pytest

# Resolve `ansible_collections.recete.stack` to this checkout (tools/setup
# links it under .collections/) when pytest runs from the repository root.
_COLLECTIONS = Path(__file__).resolve().parents[4] / ".collections"
if _COLLECTIONS.is_dir() and str(_COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS))

from ansible.module_utils.testing import patch_module_args  # noqa: E402

from ansible_collections.recete.stack.plugins.module_utils import _pgbouncer as pgb  # noqa: E402
from ansible_collections.recete.stack.plugins.modules import pgbouncer_admin  # noqa: E402


# --- pure helpers -----------------------------------------------------------

@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("42"), 42),
        (Decimal("0"), 0),
        (Decimal("1.5"), 1.5),
        (7, 7),
        ("transaction", "transaction"),
        (None, None),
        (b"unix", "unix"),
        (True, True),
    ],
)
def test_normalize_value(value, expected):
    got = pgb.normalize_value(value)
    assert got == expected
    assert type(got) is type(expected)


def test_rows_to_dicts_converts_counters_to_int():
    rows = pgb.rows_to_dicts(
        ["database", "total_xact_count", "avg_wait_time"],
        [("recete", Decimal("1520"), Decimal("3")), ("recete_ro", Decimal("0"), Decimal("0"))],
    )
    assert rows == [
        {"database": "recete", "total_xact_count": 1520, "avg_wait_time": 3},
        {"database": "recete_ro", "total_xact_count": 0, "avg_wait_time": 0},
    ]
    assert json.dumps(rows)  # serialisable as module output


def test_rows_to_dicts_empty():
    assert pgb.rows_to_dicts(["database"], []) == []


def test_rows_to_dicts_rejects_ragged_rows():
    with pytest.raises(ValueError, match="2 values for 3 columns"):
        pgb.rows_to_dicts(["a", "b", "c"], [(1, 2)])


@pytest.mark.parametrize(
    ("command", "database", "expected"),
    [
        ("reload", None, "RELOAD"),
        ("pause", None, "PAUSE"),
        ("resume", None, "RESUME"),
        ("pause", "recete", "PAUSE recete"),
        ("resume", "recete_ro", "RESUME recete_ro"),
        ("pause", "app.v2-db", "PAUSE app.v2-db"),
        ("pause", "", "PAUSE"),
    ],
)
def test_build_command(command, database, expected):
    assert pgb.build_command(command, database) == expected


@pytest.mark.parametrize(
    ("command", "database", "error"),
    [
        ("reload", "recete", "takes no database"),
        ("shutdown", None, "unknown command"),
        ("kill", "recete", "unknown command"),
        ("pause", "recete; SHUTDOWN", "not a valid PgBouncer database name"),
        ("pause", "x" * 64, "not a valid PgBouncer database name"),
        ("resume", "my db", "not a valid PgBouncer database name"),
    ],
)
def test_build_command_rejects(command, database, error):
    with pytest.raises(ValueError, match=error):
        pgb.build_command(command, database)


@pytest.mark.parametrize(
    ("command", "message", "expected"),
    [
        ("pause", "already suspended/paused", True),
        ("resume", "pooler is not paused/suspended", True),
        ("resume", "database recete is not paused", False),
        ("pause", "admin access needed", False),
        ("reload", "already suspended/paused", False),
        ("pause", None, False),
    ],
)
def test_is_already_in_state(command, message, expected):
    assert pgb.is_already_in_state(command, message) is expected


def test_database_paused():
    rows = [{"name": "recete", "paused": 1}, {"name": "recete_ro", "paused": 0}]
    assert pgb.database_paused(rows, "recete") is True
    assert pgb.database_paused(rows, "recete_ro") is False
    assert pgb.database_paused(rows, "missing") is None


@pytest.mark.parametrize(
    ("params", "expected_host", "has_password"),
    [
        ({"login_host": "10.0.0.5", "login_unix_socket": "", "login_password": "s"}, "10.0.0.5", True),
        ({"login_host": "10.0.0.5", "login_unix_socket": "/var/run/postgresql", "login_password": ""},
         "/var/run/postgresql", False),
        ({"login_host": "", "login_unix_socket": "", "login_password": ""}, None, False),
    ],
)
def test_connection_kwargs(params, expected_host, has_password):
    base = {"login_port": 6432, "login_user": "pgbouncer", "connect_timeout": 5}
    kwargs = pgb.connection_kwargs(dict(base, **params))
    assert kwargs["dbname"] == "pgbouncer"
    assert kwargs["port"] == 6432
    assert kwargs.get("host") == expected_host
    assert ("password" in kwargs) is has_password


# --- the module against a fake driver ---------------------------------------

class FakeError(Exception):
    def __init__(self, message):
        super().__init__(message)
        self.diag = type("Diag", (), {"message_primary": message})()


class FakeConsole:
    """Just enough of PgBouncer's admin console for the module's decisions."""

    def __init__(self, paused=(), globally_paused=False, busy=False):
        self.paused = set(paused)
        self.globally_paused = globally_paused
        # busy: a transaction holds a server connection, so PAUSE never answers
        # (PgBouncer does not answer it even after a RESUME from elsewhere).
        self.busy = busy
        self.release = threading.Event()
        self.issued = []

    def connect(self, **kwargs):
        assert kwargs["dbname"] == "pgbouncer"
        return FakeConnection(self)


class FakeConnection:
    def __init__(self, console):
        self.console = console
        self.autocommit = False

    def cursor(self):
        assert self.autocommit, "the admin console needs autocommit"
        return FakeCursor(self.console)

    def close(self):
        pass


class FakeCursor:
    def __init__(self, console):
        self.console = console
        self.description = None
        self._rows = []

    def execute(self, sql, *args):
        assert not args, "the admin console only takes statements without parameters"
        c = self.console
        if sql == "SHOW DATABASES":
            self._result(["name", "host", "port", "pool_size", "paused"],
                         [(n, "10.0.0.11", 5432, 25, int(n in c.paused)) for n in ("recete", "recete_ro")])
            return
        if sql == "SHOW POOLS":
            self._result(["database", "user", "sv_active", "sv_idle"], [("recete", "recete", 3, Decimal("2"))])
            return
        if sql == "SHOW STATS":
            self._result(["database", "total_xact_count"], [("recete", Decimal("1520"))])
            return
        c.issued.append(sql)
        if sql == "PAUSE":
            if c.globally_paused:
                raise FakeError("already suspended/paused")
            c.globally_paused = True
        elif sql == "RESUME":
            if not c.globally_paused:
                raise FakeError("pooler is not paused/suspended")
            c.globally_paused = False
        elif sql.startswith("PAUSE "):
            c.paused.add(sql.split(" ", 1)[1])
            if c.busy:
                c.release.wait()
        elif sql.startswith("RESUME "):
            c.paused.discard(sql.split(" ", 1)[1])

    def _result(self, columns, rows):
        self.description = [(name,) for name in columns]
        self._rows = rows

    def fetchall(self):
        return self._rows

    def close(self):
        pass


def run_module(monkeypatch, console, args):
    monkeypatch.setattr(pgb, "DRIVER", console)
    monkeypatch.setattr(pgb, "DRIVER_NAME", "fake")
    monkeypatch.setattr(pgb, "HAS_DRIVER", True)
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        pgbouncer_admin.main()
    return exit_info.value.code


@pytest.fixture
def output(capsys):
    def read():
        return json.loads(capsys.readouterr().out)
    return read


def test_read_only_returns_views_as_ints(monkeypatch, output):
    console = FakeConsole()
    assert run_module(monkeypatch, console, {}) == 0
    result = output()
    assert result["changed"] is False
    assert result["command"] == ""
    assert console.issued == []
    assert result["pools"] == [{"database": "recete", "user": "recete", "sv_active": 3, "sv_idle": 2}]
    assert result["stats"] == [{"database": "recete", "total_xact_count": 1520}]
    assert [row["name"] for row in result["databases"]] == ["recete", "recete_ro"]


def test_reload_is_issued_and_changed(monkeypatch, output):
    console = FakeConsole()
    assert run_module(monkeypatch, console, {"command": "reload"}) == 0
    result = output()
    assert result["changed"] is True
    assert result["command"] == "RELOAD"
    assert console.issued == ["RELOAD"]


@pytest.mark.parametrize("command", ["reload", "pause", "resume"])
def test_check_mode_issues_nothing(monkeypatch, output, command):
    console = FakeConsole()
    assert run_module(monkeypatch, console, {"command": command, "_ansible_check_mode": True}) == 0
    result = output()
    assert result["changed"] is True
    assert console.issued == []


def test_check_mode_pause_of_paused_database_is_unchanged(monkeypatch, output):
    console = FakeConsole(paused={"recete"})
    args = {"command": "pause", "database": "recete", "_ansible_check_mode": True}
    assert run_module(monkeypatch, console, args) == 0
    assert output()["changed"] is False
    assert console.issued == []


def test_pause_database_then_again_is_idempotent(monkeypatch, output):
    console = FakeConsole()
    args = {"command": "pause", "database": "recete", "_ansible_diff": True}
    assert run_module(monkeypatch, console, args) == 0
    first = output()
    assert first["changed"] is True
    assert first["command"] == "PAUSE recete"
    assert first["diff"] == {"before": {"database": "recete", "paused": False},
                             "after": {"database": "recete", "paused": True}}
    assert run_module(monkeypatch, console, args) == 0
    assert output()["changed"] is False
    assert console.issued == ["PAUSE recete"]


def test_resume_database_not_paused_is_unchanged(monkeypatch, output):
    console = FakeConsole()
    assert run_module(monkeypatch, console, {"command": "resume", "database": "recete_ro"}) == 0
    assert output()["changed"] is False
    assert console.issued == []


@pytest.mark.parametrize(("command", "already"), [("pause", True), ("resume", False)])
def test_global_command_already_in_state_is_unchanged(monkeypatch, output, command, already):
    console = FakeConsole(globally_paused=already)
    assert run_module(monkeypatch, console, {"command": command}) == 0
    result = output()
    assert result["changed"] is False
    assert result["command"] == ""


def test_pause_that_does_not_return_is_resumed_and_fails(monkeypatch, output):
    console = FakeConsole(busy=True)
    try:
        args = {"command": "pause", "database": "recete", "pause_timeout": 1}
        assert run_module(monkeypatch, console, args) == 1
        result = output()
    finally:
        console.release.set()
    assert console.issued == ["PAUSE recete", "RESUME recete"]
    assert "did not complete within 1 s" in result["msg"]
    assert "issued RESUME recete" in result["msg"]
    assert console.paused == set()


def test_unknown_database_fails_with_the_known_names(monkeypatch, output):
    console = FakeConsole()
    assert run_module(monkeypatch, console, {"command": "pause", "database": "nope"}) == 1
    result = output()
    assert result["failed"] is True
    assert "no database 'nope'" in result["msg"]
    assert "recete, recete_ro" in result["msg"]


def test_database_without_command_fails(monkeypatch, output):
    assert run_module(monkeypatch, FakeConsole(), {"database": "recete"}) == 1
    assert "only used with command=pause" in output()["msg"]


def test_missing_driver_fails_with_install_hint(monkeypatch, output):
    monkeypatch.setattr(pgb, "HAS_DRIVER", False)
    with patch_module_args({}), pytest.raises(SystemExit):
        pgbouncer_admin.main()
    assert "python3-psycopg2" in output()["msg"]


def test_password_is_not_logged(monkeypatch, output):
    console = FakeConsole()
    assert run_module(monkeypatch, console, {"login_password": "s3cret-value"}) == 0
    assert "s3cret-value" not in json.dumps(output())
