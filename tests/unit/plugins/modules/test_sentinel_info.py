"""Unit tests of recete.stack.sentinel_info and the shared _redis_common helpers.

Parsing and classification are pure and tested directly; the module's
decisions (when it fails, what it returns) run against a fake Sentinel that
answers the raw RESP2 replies a real Redis 7.0 Sentinel sends.
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
from ansible_collections.recete.stack.plugins.modules import sentinel_info  # noqa: E402


def master_reply(ip="10.0.0.5", port="6379", flags="master", quorum="2", others="2", replicas="2"):
    """A SENTINEL MASTER reply as Redis 7.0 sends it (flat key/value list)."""
    return [
        "name", "recete", "ip", ip, "port", port, "runid", "abc", "flags", flags,
        "link-pending-commands", "0", "link-refcount", "1", "last-ping-sent", "0",
        "last-ok-ping-reply", "120", "last-ping-reply", "120", "down-after-milliseconds", "5000",
        "info-refresh", "900", "role-reported", "master", "role-reported-time", "100000",
        "config-epoch", "3", "num-slaves", replicas, "num-other-sentinels", others, "quorum", quorum,
        "failover-timeout", "30000", "parallel-syncs", "1",
    ]


def replica_reply(ip, link="ok", flags="slave", master_host="10.0.0.5"):
    return [
        "name", f"{ip}:6379", "ip", ip, "port", "6379", "runid", "r-" + ip, "flags", flags,
        "last-ok-ping-reply", "200", "master-link-down-time", "0", "master-link-status", link,
        "master-host", master_host, "master-port", "6379", "slave-priority", "100",
        "slave-repl-offset", "12345", "replica-announced", "1",
    ]


def sentinel_reply(ip, flags="sentinel"):
    return ["name", "id-" + ip, "ip", ip, "port", "26379", "runid", "id-" + ip, "flags", flags,
            "last-ok-ping-reply", "300", "voted-leader", "?", "voted-leader-epoch", "0"]


# --- pure helpers -------------------------------------------------------------

@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (["a", "1", "b", "2"], {"a": "1", "b": "2"}),
        ([], {}),
        (None, {}),
        ({"a": "1"}, {"a": "1"}),
    ],
)
def test_pairs_to_dict(reply, expected):
    assert rc.pairs_to_dict(reply) == expected


def test_pairs_to_dict_rejects_odd_replies():
    with pytest.raises(ValueError):
        rc.pairs_to_dict(["a", "1", "b"])


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("master", ["master"]),
        ("master,s_down,o_down", ["master", "s_down", "o_down"]),
        ("", []),
        (None, []),
        (["slave", "s_down"], ["slave", "s_down"]),
    ],
)
def test_split_flags(flags, expected):
    assert rc.split_flags(flags) == expected


def test_parse_master_normalises_numbers_and_address():
    master = rc.parse_master(master_reply())
    assert master["address"] == "10.0.0.5:6379"
    assert master["port"] == 6379
    assert master["quorum"] == 2
    assert master["num_other_sentinels"] == 2
    assert master["num_replicas"] == 2
    assert master["down_after_milliseconds"] == 5000
    assert master["failover_timeout"] == 30000
    assert master["parallel_syncs"] == 1
    assert master["flags"] == ["master"]


def test_parse_replica_reads_link_and_offset():
    replica = rc.parse_replica(replica_reply("10.0.0.6", link="err", flags="slave,s_down"))
    assert replica["address"] == "10.0.0.6:6379"
    assert replica["master_link_status"] == "err"
    assert replica["master_port"] == 6379
    assert replica["repl_offset"] == 12345
    assert replica["replica_priority"] == 100
    assert rc.instance_is_down(replica)


@pytest.mark.parametrize(
    ("flags", "down"),
    [(["master"], False), (["master", "s_down"], True), (["master", "o_down"], True),
     (["slave", "disconnected"], True), (["sentinel"], False)],
)
def test_instance_is_down(flags, down):
    assert rc.instance_is_down({"flags": flags}) is down


class ConnectionError(Exception):  # noqa: A001 - named like redis-py's class on purpose
    pass


class AuthenticationError(ConnectionError):
    pass


class TimeoutError(Exception):  # noqa: A001
    pass


class ResponseError(Exception):
    pass


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionError("Error 111 connecting to 10.0.0.5:26379. Connection refused."), "unreachable"),
        (TimeoutError("Timeout connecting to server"), "unreachable"),
        (ConnectionRefusedError(111, "refused"), "unreachable"),
        (AuthenticationError("invalid username-password pair or user is disabled."), "auth"),
        (ResponseError("WRONGPASS invalid username-password pair or user is disabled."), "auth"),
        (ResponseError("NOAUTH Authentication required."), "auth"),
        (ResponseError("AUTH <password> called without any password configured for the default user. "
                       "Are you sure your configuration is correct?"), "unconfigured"),
        (AuthenticationError("Client sent AUTH, but no password is set"), "unconfigured"),
        (ResponseError("ERR No such master with that name"), "error"),
    ],
)
def test_classify_error(exc, kind):
    assert rc.classify_error(exc) == kind


@pytest.mark.parametrize("kind", ["unreachable", "unconfigured", "auth", "error"])
def test_describe_error_names_the_sentinel_and_a_next_step(kind):
    text = rc.describe_error(kind, "10.0.0.5", 26379, "boom")
    assert "10.0.0.5:26379" in text
    assert "boom" in text


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("sentinel auth-pass recete s3cret", ["sentinel", "auth-pass", "recete", "s3cret"]),
        ('sentinel auth-pass recete "with space"', ["sentinel", "auth-pass", "recete", "with space"]),
        ('dir "/var/lib/redis"', ["dir", "/var/lib/redis"]),
        ('x "a\\"b\\\\c"', ["x", 'a"b\\c']),
        ('x "\\x41\\n"', ["x", "A\n"]),
        ("x 'it\\'s'", ["x", "it's"]),
        ("   spaced    out  ", ["spaced", "out"]),
        ('save ""', ["save", ""]),
        ("", []),
    ],
)
def test_split_config_args(line, expected):
    assert rc.split_config_args(line) == expected


@pytest.mark.parametrize("line", ['x "open', "x 'open", 'x "a"b'])
def test_split_config_args_rejects_what_redis_rejects(line):
    with pytest.raises(ValueError):
        rc.split_config_args(line)


SENTINEL_CONF = """\
# recete.stack: written once
port 26379
sentinel monitor recete 10.0.0.5 6379 2
sentinel auth-user recete sentinel
sentinel auth-pass recete old
sentinel auth-pass other notthisone
user default on #abc ~* &* +@all
sentinel auth-pass recete "n3w pass"
"""


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        (SENTINEL_CONF, "recete", {"auth_user": "sentinel", "auth_pass": "n3w pass"}),
        (SENTINEL_CONF, "other", {"auth_user": None, "auth_pass": "notthisone"}),
        (SENTINEL_CONF, "absent", {"auth_user": None, "auth_pass": None}),
        ("", "recete", {"auth_user": None, "auth_pass": None}),
        ('sentinel auth-pass recete "broken\n', "recete", {"auth_user": None, "auth_pass": None}),
    ],
)
def test_read_sentinel_auth(text, name, expected):
    assert rc.read_sentinel_auth(text, name) == expected


@pytest.mark.parametrize(
    ("message", "ok"),
    [
        ("OK 3 usable Sentinels. Quorum and failover authorization can be reached", True),
        ("NOQUORUM 1 usable Sentinels. Not enough available Sentinels to reach the specified quorum", False),
        ("", False),
    ],
)
def test_parse_ckquorum(message, ok):
    assert sentinel_info.parse_ckquorum(message) == {"ok": ok, "message": message}


@pytest.mark.parametrize(
    ("master_flags", "ck_ok", "expected_fragments"),
    [
        ("master", True, []),
        ("master,s_down", True, ["flagged s_down"]),
        ("master,s_down,o_down", True, ["flagged s_down,o_down"]),
        ("master,failover_in_progress", True, ["failover of recete is in progress"]),
        ("master", False, ["CKQUORUM"]),
    ],
)
def test_find_problems(master_flags, ck_ok, expected_fragments):
    master = rc.parse_master(master_reply(flags=master_flags))
    ck = {"ok": ck_ok, "message": "OK" if ck_ok else "NOQUORUM"}
    problems = sentinel_info.find_problems("recete", master, ck)
    assert len(problems) == len(expected_fragments)
    for fragment, problem in zip(expected_fragments, problems):
        assert fragment in problem


def test_find_problems_for_an_unmonitored_master():
    assert sentinel_info.find_problems("recete", None, None) == [
        "this Sentinel does not monitor a master named recete"]


# --- the module against a fake Sentinel ------------------------------------------

class FakeSentinel:
    """Answers SENTINEL subcommands with canned raw replies."""

    def __init__(self, master=None, replicas=(), sentinels=(), ckquorum="OK 3 usable Sentinels."):
        self.master = master
        self.replicas = list(replicas)
        self.sentinels = list(sentinels)
        self.ckquorum = ckquorum
        self.commands = []

    def execute_command(self, *args):
        self.commands.append(args)
        sub = args[1].upper()
        if self.master is None:
            raise ResponseError("ERR No such master with that name")
        if sub == "MASTER":
            return self.master
        if sub == "REPLICAS":
            return self.replicas
        if sub == "SENTINELS":
            return self.sentinels
        if sub == "CKQUORUM":
            if self.ckquorum.startswith("OK"):
                return self.ckquorum
            raise ResponseError(self.ckquorum)
        raise AssertionError(f"unexpected command {args}")


def run_module(monkeypatch, capsys, fake, **args):
    if isinstance(fake, Exception):
        def connect(params):
            raise rc.SentinelError(rc.classify_error(fake), str(fake))
    else:
        def connect(params):
            return fake
    monkeypatch.setattr(sentinel_info, "connect", connect)
    monkeypatch.setattr(sentinel_info, "HAS_REDIS", True)
    module_args = {"master_name": "recete", "password": "pw"}
    module_args.update(args)
    with patch_module_args(module_args):
        with pytest.raises(SystemExit):
            sentinel_info.main()
    return json.loads(capsys.readouterr().out)


def healthy():
    return FakeSentinel(
        master=master_reply(),
        replicas=[replica_reply("10.0.0.6"), replica_reply("10.0.0.7")],
        sentinels=[sentinel_reply("10.0.0.6"), sentinel_reply("10.0.0.7")],
    )


def test_module_reports_a_healthy_master(monkeypatch, capsys):
    fake = healthy()
    result = run_module(monkeypatch, capsys, fake)
    assert not result.get("failed")
    assert result["changed"] is False
    assert result["master"]["address"] == "10.0.0.5:6379"
    assert [r["address"] for r in result["replicas"]] == ["10.0.0.6:6379", "10.0.0.7:6379"]
    assert result["num_other_sentinels"] == 2
    assert result["quorum"] == 2
    assert result["ckquorum"]["ok"] is True
    assert result["problems"] == []
    # read-only: only SENTINEL queries were sent
    assert {c[1] for c in fake.commands} == {"MASTER", "REPLICAS", "SENTINELS", "CKQUORUM"}


@pytest.mark.parametrize("require_quorum", [True, False])
def test_module_with_a_down_master(monkeypatch, capsys, require_quorum):
    fake = healthy()
    fake.master = master_reply(flags="master,s_down,o_down")
    fake.ckquorum = "NOQUORUM 1 usable Sentinels."
    result = run_module(monkeypatch, capsys, fake, require_quorum=require_quorum)
    assert bool(result.get("failed")) is require_quorum
    assert len(result["problems"]) == 2
    if require_quorum:
        assert "could not happen now" in result["msg"]
        assert result["master"]["address"] == "10.0.0.5:6379", "the facts come with the failure"


def test_module_with_an_unmonitored_name(monkeypatch, capsys):
    result = run_module(monkeypatch, capsys, FakeSentinel(master=None), require_quorum=False)
    assert result["monitored"] is False
    assert "master" not in result


@pytest.mark.parametrize(
    ("exc", "fail_on_unreachable", "failed", "reason"),
    [
        (ConnectionError("Connection refused"), True, True, None),
        (ConnectionError("Connection refused"), False, False, "unreachable"),
        (ResponseError("AUTH <password> called without any password configured"), False, False, "unconfigured"),
        (ResponseError("WRONGPASS invalid username-password pair"), False, True, None),
    ],
)
def test_module_when_the_sentinel_does_not_answer(monkeypatch, capsys, exc, fail_on_unreachable, failed, reason):
    result = run_module(monkeypatch, capsys, exc, fail_on_unreachable=fail_on_unreachable)
    assert bool(result.get("failed")) is failed
    if reason:
        assert result["reachable"] is False
        assert result["unreachable_reason"] == reason
    if failed:
        assert "127.0.0.1:26379" in result["msg"]


def test_module_never_echoes_the_password(monkeypatch, capsys):
    result = run_module(monkeypatch, capsys, healthy(), password="sup3r-s3cret-value")
    assert "sup3r-s3cret-value" not in json.dumps(result)
