"""Unit tests of recete.stack.sentinel_monitor.

The "what differs" logic (plan_changes, plan_monitor) is pure and tested
directly; the module's behaviour (which SENTINEL commands it sends, check
mode, diff, hidden passwords) runs against a fake Sentinel that keeps state.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

_COLLECTIONS = Path(__file__).resolve().parents[4] / ".collections"
if _COLLECTIONS.is_dir() and str(_COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS))

from ansible.module_utils.testing import patch_module_args  # noqa: E402

from ansible_collections.recete.stack.plugins.module_utils import _redis_common as rc  # noqa: E402
from ansible_collections.recete.stack.plugins.modules import sentinel_monitor as sm  # noqa: E402

CURRENT = {
    "quorum": 2,
    "down_after_milliseconds": 5000,
    "failover_timeout": 30000,
    "parallel_syncs": 1,
    "auth_user": "sentinel",
    "auth_pass": "pw1",
}
NOTHING = dict.fromkeys(CURRENT)


def desired(**kwargs):
    out = dict(NOTHING)
    out.update(kwargs)
    return out


# --- plan_changes ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("want", "expected"),
    [
        (desired(), []),
        (dict(CURRENT), []),
        (desired(quorum=2, down_after_milliseconds=5000), []),
        (desired(quorum="2"), []),  # types are normalised before comparing
        (desired(quorum=3), [("quorum", 2, 3)]),
        (desired(down_after_milliseconds=3000, parallel_syncs=2),
         [("down_after_milliseconds", 5000, 3000), ("parallel_syncs", 1, 2)]),
        (desired(auth_pass="pw2"), [("auth_pass", "pw1", "pw2")]),
        (desired(auth_user=""), [("auth_user", "sentinel", "")]),
        (desired(failover_timeout=30000, auth_user="sentinel", auth_pass="pw1"), []),
    ],
)
def test_plan_changes_with_known_values(want, expected):
    changes = sm.plan_changes(CURRENT, want)
    assert [(c["option"], c["before"], c["after"]) for c in changes] == expected


def test_plan_changes_order_and_keywords_are_stable():
    want = desired(auth_pass="x", quorum=3, failover_timeout=1, auth_user="u", parallel_syncs=5,
                   down_after_milliseconds=9)
    changes = sm.plan_changes(CURRENT, want)
    assert [c["keyword"] for c in changes] == [
        "quorum", "down-after-milliseconds", "failover-timeout", "parallel-syncs", "auth-user", "auth-pass"]
    assert [c["secret"] for c in changes] == [False, False, False, False, False, True]


@pytest.mark.parametrize(
    ("update_password", "expected"),
    [
        ("on_create", []),
        ("always", [("auth_user", None, "sentinel"), ("auth_pass", None, "pw1")]),
    ],
)
def test_plan_changes_with_unknown_auth(update_password, expected):
    current = dict(CURRENT, auth_user=sm.UNKNOWN, auth_pass=sm.UNKNOWN)
    changes = sm.plan_changes(current, desired(auth_user="sentinel", auth_pass="pw1"), update_password)
    assert [(c["option"], c["before"], c["after"]) for c in changes] == expected


@pytest.mark.parametrize(
    ("auth", "expected_user", "expected_pass"),
    [
        (None, sm.UNKNOWN, sm.UNKNOWN),
        ({"auth_user": None, "auth_pass": None}, "", ""),
        ({"auth_user": "sentinel", "auth_pass": "pw"}, "sentinel", "pw"),
    ],
)
def test_current_settings(auth, expected_user, expected_pass):
    master = rc.parse_master(["name", "recete", "ip", "10.0.0.5", "port", "6379", "flags", "master",
                              "quorum", "2", "down-after-milliseconds", "5000", "failover-timeout", "30000",
                              "parallel-syncs", "1"])
    current = sm.current_settings(master, auth)
    assert current["quorum"] == 2
    assert current["down_after_milliseconds"] == 5000
    assert current["auth_user"] is expected_user or current["auth_user"] == expected_user
    assert current["auth_pass"] is expected_pass or current["auth_pass"] == expected_pass


def test_plan_monitor_sets_everything_but_the_quorum_after_monitor():
    command, changes = sm.plan_monitor("recete", "10.0.0.5", 6379, dict(CURRENT))
    assert command == ["SENTINEL", "MONITOR", "recete", "10.0.0.5", "6379", "2"]
    assert [c["option"] for c in changes] == [
        "down_after_milliseconds", "failover_timeout", "parallel_syncs", "auth_user", "auth_pass"]
    assert all(c["before"] is None for c in changes)


def test_plan_monitor_leaves_unset_options_to_sentinel():
    _command, changes = sm.plan_monitor("recete", "10.0.0.5", 6379, desired(quorum=2))
    assert changes == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"option": "auth_pass", "before": "old", "after": "new", "secret": True},
         {"option": "auth_pass", "before": sm.HIDDEN, "after": sm.HIDDEN}),
        ({"option": "auth_pass", "before": None, "after": "new", "secret": True},
         {"option": "auth_pass", "before": None, "after": sm.HIDDEN}),
        ({"option": "auth_pass", "before": "old", "after": "", "secret": True},
         {"option": "auth_pass", "before": sm.HIDDEN, "after": ""}),
        ({"option": "quorum", "before": 2, "after": 3, "secret": False},
         {"option": "quorum", "before": 2, "after": 3}),
    ],
)
def test_public_change_hides_passwords(change, expected):
    assert sm.public_change(change) == expected


def test_render_hides_passwords_and_marks_changed_ones():
    text = sm.render("recete", dict(CURRENT), "10.0.0.5:6379", changed=["auth_pass"])
    assert "pw1" not in text
    assert "sentinel monitor recete 10.0.0.5 6379" in text
    assert "sentinel auth-pass recete ******** (changed)" in text
    assert "sentinel down-after-milliseconds recete 5000" in text


def test_render_marks_unknown_values():
    text = sm.render("recete", dict(CURRENT, auth_pass=sm.UNKNOWN))
    assert "sentinel auth-pass recete (unknown)" in text


# --- the module against a fake Sentinel ------------------------------------------

class ResponseError(Exception):
    pass


class FakeSentinel:
    """Keeps one monitored master's settings and applies MONITOR/SET to them."""

    def __init__(self, monitored=True, **settings):
        self.settings = None
        if monitored:
            self.settings = {"ip": "10.0.0.5", "port": "6379", "quorum": "2",
                             "down-after-milliseconds": "30000", "failover-timeout": "180000",
                             "parallel-syncs": "1", "auth-user": None, "auth-pass": None}
            self.settings.update(settings)
        self.writes = []

    def execute_command(self, *args):
        sub = args[1].upper()
        if sub == "MASTER":
            if self.settings is None:
                raise ResponseError("ERR No such master with that name")
            reply = ["name", "recete", "flags", "master"]
            for key in ("ip", "port", "quorum", "down-after-milliseconds", "failover-timeout", "parallel-syncs"):
                reply += [key, self.settings[key]]
            return reply
        self.writes.append(args)
        if sub == "MONITOR":
            _s, _m, _name, ip, port, quorum = args
            self.settings = {"ip": ip, "port": port, "quorum": quorum, "down-after-milliseconds": "30000",
                             "failover-timeout": "180000", "parallel-syncs": "1",
                             "auth-user": None, "auth-pass": None}
            return "OK"
        if sub == "SET":
            self.settings[args[3]] = args[4]
            return "OK"
        raise AssertionError(f"unexpected command {args}")


def run_module(monkeypatch, capsys, fake, tmp_path=None, check_mode=False, diff=False, **args):
    monkeypatch.setattr(sm, "connect", lambda params: fake)
    monkeypatch.setattr(sm, "HAS_REDIS", True)
    module_args = {"master_name": "recete", "password": "sentinel-pw"}
    if check_mode:
        module_args["_ansible_check_mode"] = True
    if diff:
        module_args["_ansible_diff"] = True
    module_args.update(args)
    with patch_module_args(module_args):
        with pytest.raises(SystemExit):
            sm.main()
    return json.loads(capsys.readouterr().out)


def write_conf(tmp_path, user=None, password=None):
    path = tmp_path / "sentinel.conf"
    lines = ["port 26379", "sentinel monitor recete 10.0.0.5 6379 2"]
    if user is not None:
        lines.append(f"sentinel auth-user recete {user}")
    if password is not None:
        lines.append(f"sentinel auth-pass recete {password}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


SETTINGS = dict(quorum=2, down_after_milliseconds=5000, failover_timeout=30000, parallel_syncs=1,
                auth_user="sentinel", auth_pass="redis-pw")


def test_module_applies_only_the_differences(monkeypatch, capsys, tmp_path):
    fake = FakeSentinel()
    conf = write_conf(tmp_path, user="sentinel", password="redis-pw")
    result = run_module(monkeypatch, capsys, fake, config_file=conf, **SETTINGS)
    assert result["changed"] is True
    assert result["created"] is False
    assert fake.writes == [
        ("SENTINEL", "SET", "recete", "down-after-milliseconds", "5000"),
        ("SENTINEL", "SET", "recete", "failover-timeout", "30000"),
    ]
    assert result["commands"] == ["SENTINEL SET recete down-after-milliseconds 5000",
                                  "SENTINEL SET recete failover-timeout 30000"]


def test_module_is_idempotent(monkeypatch, capsys, tmp_path):
    fake = FakeSentinel(**{"down-after-milliseconds": "5000", "failover-timeout": "30000"})
    conf = write_conf(tmp_path, user="sentinel", password="redis-pw")
    result = run_module(monkeypatch, capsys, fake, config_file=conf, **SETTINGS)
    assert result["changed"] is False
    assert fake.writes == []
    assert result["settings"]["auth_pass"] == sm.HIDDEN


def test_check_mode_reports_without_writing(monkeypatch, capsys, tmp_path):
    fake = FakeSentinel()
    conf = write_conf(tmp_path, user="sentinel", password="old-pw")
    result = run_module(monkeypatch, capsys, fake, tmp_path, check_mode=True, diff=True, config_file=conf,
                        **SETTINGS)
    assert result["changed"] is True
    assert fake.writes == []
    assert [c["option"] for c in result["changes"]] == [
        "down_after_milliseconds", "failover_timeout", "auth_pass"]
    assert "-sentinel down-after-milliseconds recete 30000" not in result["diff"]["after"]
    assert "sentinel down-after-milliseconds recete 30000" in result["diff"]["before"]
    assert "sentinel down-after-milliseconds recete 5000" in result["diff"]["after"]
    assert "******** (changed)" in result["diff"]["after"]


def test_no_diff_unless_asked(monkeypatch, capsys):
    result = run_module(monkeypatch, capsys, FakeSentinel(), quorum=3)
    assert "diff" not in result


def test_module_monitors_an_unknown_master(monkeypatch, capsys):
    fake = FakeSentinel(monitored=False)
    result = run_module(monkeypatch, capsys, fake, master_host="10.0.0.9", **SETTINGS)
    assert result["created"] is True
    assert result["master"] == "10.0.0.9:6379"
    assert fake.writes[0] == ("SENTINEL", "MONITOR", "recete", "10.0.0.9", "6379", "2")
    assert ("SENTINEL", "SET", "recete", "auth-pass", "redis-pw") in fake.writes
    assert "SENTINEL SET recete auth-pass ********" in result["commands"]


def test_module_needs_the_master_to_monitor_an_unknown_name(monkeypatch, capsys):
    result = run_module(monkeypatch, capsys, FakeSentinel(monitored=False), quorum=2)
    assert result["failed"] is True
    assert "give master_host" in result["msg"]


def test_module_never_moves_a_monitored_master(monkeypatch, capsys):
    """After a failover the inventory's idea of the master is stale: ignore it."""
    fake = FakeSentinel(ip="10.0.0.6")
    result = run_module(monkeypatch, capsys, fake, master_host="10.0.0.5", quorum=2)
    assert result["changed"] is False
    assert result["master"] == "10.0.0.6:6379"
    assert fake.writes == []


@pytest.mark.parametrize(("update_password", "writes"), [("on_create", 0), ("always", 2)])
def test_auth_without_config_file(monkeypatch, capsys, update_password, writes):
    fake = FakeSentinel()
    result = run_module(monkeypatch, capsys, fake, auth_user="sentinel", auth_pass="redis-pw",
                        update_password=update_password)
    assert len(fake.writes) == writes
    assert result["changed"] is bool(writes)


def test_unreadable_config_file_is_a_clear_error(monkeypatch, capsys, tmp_path):
    result = run_module(monkeypatch, capsys, FakeSentinel(), config_file=str(tmp_path / "missing.conf"),
                        auth_pass="x")
    assert result["failed"] is True
    assert "become" in result["msg"]


@pytest.mark.parametrize("option", ["quorum", "down_after_milliseconds", "failover_timeout", "parallel_syncs"])
def test_non_positive_values_are_refused(monkeypatch, capsys, option):
    result = run_module(monkeypatch, capsys, FakeSentinel(), **{option: 0})
    assert result["failed"] is True
    assert option in result["msg"]


def test_passwords_never_leave_the_module(monkeypatch, capsys, tmp_path):
    conf = write_conf(tmp_path, user="sentinel", password="0ld-s3cret-pw")
    result = run_module(monkeypatch, capsys, FakeSentinel(), diff=True, config_file=conf,
                        auth_pass="n3w-s3cret-pw")
    dumped = json.dumps(result)
    assert "0ld-s3cret-pw" not in dumped
    assert "n3w-s3cret-pw" not in dumped
