"""Unit tests of recete.stack.nginx_upstream and module_utils._nginx.

The pure parts (address checks, normalisation, rendering, the worker PID
comparison and the /proc reading against a fake /proc tree) are tested
directly. The module's decisions (unchanged -> no write and no reload, check
mode, nginx -t failure -> file restored, reload confirmation, drain) run with
run_command and the process inspection replaced by fakes.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

_COLLECTIONS = Path(__file__).resolve().parents[4] / ".collections"
if _COLLECTIONS.is_dir() and str(_COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS))

from ansible.module_utils.testing import patch_module_args  # noqa: E402

from ansible_collections.recete.stack.plugins.module_utils import _nginx as ng  # noqa: E402
from ansible_collections.recete.stack.plugins.modules import nginx_upstream  # noqa: E402


# --- addresses ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.5:3000", ("ipv4", "10.0.0.5", 3000)),
        (" 10.0.0.5:3000 ", ("ipv4", "10.0.0.5", 3000)),
        ("[fd00::5]:3000", ("ipv6", "fd00::5", 3000)),
        ("[FD00:0:0::5]:443", ("ipv6", "fd00::5", 443)),
        ("api1:3000", ("name", "api1", 3000)),
        ("api1.internal.example:65535", ("name", "api1.internal.example", 65535)),
        ("unix:/run/recete/api.sock", ("unix", "/run/recete/api.sock", None)),
    ],
)
def test_parse_address(address, expected):
    assert ng.parse_address(address) == expected


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("10.0.0.5", "needs a port"),
        (":3000", "needs a port"),
        ("10.0.0.5:0", "port must be a number"),
        ("10.0.0.5:65536", "port must be a number"),
        ("10.0.0.5:30x", "port must be a number"),
        ("10.0.0.256:3000", "neither an IPv4 address nor a host name"),
        ("fd00::5:3000", "IPv6 address in brackets"),
        ("[fd00::zz]:3000", "not an IPv6 address"),
        ("[fd00::5]3000", "IPv6 address as"),
        ("10.0.0.5:3000; server 6.6.6.6:80", "characters of nginx syntax"),
        ("evil;host:3000", "characters of nginx syntax"),
        ("api 1:3000", "characters of nginx syntax"),
        ("api1:3000}", "characters of nginx syntax"),
        ("api_1:3000", "neither an IPv4 address nor a host name"),
        ("unix:relative.sock", "unix:/absolute/path"),
        ("unix:/run/a b.sock", "characters of nginx syntax"),
        ("unix:/run/a:b.sock", "unix:/absolute/path"),
        ("", "non-empty string"),
        (None, "non-empty string"),
        (3000, "non-empty string"),
    ],
)
def test_parse_address_refuses(address, message):
    with pytest.raises(ng.UpstreamError, match=message):
        ng.parse_address(address)


@pytest.mark.parametrize("address", ["10.0.0.5:3000", "[fd00::5]:3000", "api1:3000", "unix:/run/api.sock"])
def test_format_address_round_trips(address):
    assert ng.format_address(ng.parse_address(address)) == address


@pytest.mark.parametrize("name", ["recete_api", "api", "api-v2", "api.v2", "A1"])
def test_check_name_accepts(name):
    assert ng.check_name(name) == name


@pytest.mark.parametrize("name", ["", "-api", ".api", "api backend", "api;", "a" * 65, None])
def test_check_name_refuses(name):
    with pytest.raises(ng.UpstreamError, match="name must be"):
        ng.check_name(name)


# --- servers ------------------------------------------------------------------

def test_normalize_sorts_and_fills_defaults():
    servers = ng.normalize_servers(
        [
            {"address": "10.0.0.12:3000"},
            {"address": "10.0.0.9:3001", "state": "down"},
            {"address": "10.0.0.9:3000", "weight": 2, "max_fails": 0},
            {"address": "api3:3000"},
            {"address": "[fd00::1]:3000", "fail_timeout": 5},
        ],
        max_fails=3, fail_timeout=10,
    )
    assert [s["address"] for s in servers] == [
        "10.0.0.9:3000", "10.0.0.9:3001", "10.0.0.12:3000", "[fd00::1]:3000", "api3:3000"]
    assert servers[0] == {"address": "10.0.0.9:3000", "state": "active", "weight": 2, "max_fails": 0,
                          "fail_timeout": 10}
    assert servers[1]["state"] == "down"
    assert servers[3]["fail_timeout"] == 5
    assert servers[2] == {"address": "10.0.0.12:3000", "state": "active", "weight": None, "max_fails": 3,
                          "fail_timeout": 10}


def test_order_of_the_input_does_not_change_the_result():
    a = [{"address": "10.0.0.11:3000"}, {"address": "10.0.0.12:3000"}, {"address": "10.0.0.11:3001"}]
    assert ng.normalize_servers(a) == ng.normalize_servers(list(reversed(a)))


def test_state_none_means_active():
    assert ng.normalize_servers([{"address": "10.0.0.1:1", "state": None}])[0]["state"] == "active"


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        ([], "at least one server"),
        (None, "at least one server"),
        ([{"address": "10.0.0.1:3000"}, {"address": " 10.0.0.1:3000"}], "listed twice"),
        ([{"address": "[fd00::1]:80"}, {"address": "[fd00:0::1]:80"}], "listed twice"),
        ([{"address": "10.0.0.1:3000", "state": "drain"}], "state must be one of active, down"),
        ([{"address": "10.0.0.1:3000", "state": "down"}], "every server is down"),
        ([{"address": "10.0.0.1:3000", "weight": 0}], "weight must be a whole number of at least 1"),
        ([{"address": "10.0.0.1:3000", "max_fails": -1}], "max_fails must be"),
        ([{"address": "10.0.0.1:3000", "fail_timeout": True}], "fail_timeout must be"),
        ([{"address": "10.0.0.1:3000", "backup": True}], "unknown keys: backup"),
        (["10.0.0.1:3000"], "must be a dict"),
    ],
)
def test_normalize_refuses(servers, message):
    with pytest.raises(ng.UpstreamError, match=message):
        ng.normalize_servers(servers)


# --- rendering ----------------------------------------------------------------

def test_render_least_conn_with_keepalive():
    servers = ng.normalize_servers(
        [{"address": "10.0.0.12:3000"}, {"address": "10.0.0.11:3000", "state": "down"}],
        max_fails=3, fail_timeout=10)
    text = ng.render_upstream("recete_api", servers, "least_conn", 32, 4, header="Managed.\nSecond line.")
    assert text == (
        "# Managed.\n"
        "# Second line.\n"
        "upstream recete_api {\n"
        "    least_conn;\n"
        "    server 10.0.0.11:3000 max_fails=3 fail_timeout=10s down;\n"
        "    server 10.0.0.12:3000 max_fails=3 fail_timeout=10s;\n"
        "    keepalive 32;\n"
        "    keepalive_timeout 4s;\n"
        "}\n"
    )


def test_render_round_robin_without_keepalive_or_parameters():
    servers = ng.normalize_servers([{"address": "10.0.0.1:3000", "weight": 5}])
    text = ng.render_upstream("api", servers, "round_robin", 0, 4)
    assert text == "upstream api {\n    server 10.0.0.1:3000 weight=5;\n}\n"


def test_balancing_precedes_keepalive():
    servers = ng.normalize_servers([{"address": "10.0.0.1:3000"}])
    lines = ng.render_upstream("api", servers, "ip_hash", 8).splitlines()
    assert lines.index("    ip_hash;") < lines.index("    keepalive 8;")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"balancing": "random"}, "balancing must be one of"),
        ({"keepalive": -1}, "keepalive must be"),
        ({"keepalive_timeout": 0}, "keepalive_timeout must be"),
        ({"name": "bad name"}, "name must be"),
    ],
)
def test_render_refuses(kwargs, message):
    servers = ng.normalize_servers([{"address": "10.0.0.1:3000"}])
    args = dict(name="api", servers=servers)
    args.update(kwargs)
    with pytest.raises(ng.UpstreamError, match=message):
        ng.render_upstream(**args)


# --- worker generations -------------------------------------------------------

@pytest.mark.parametrize(
    ("before", "current", "new", "remaining"),
    [
        ([10, 11], [10, 11], [], [10, 11]),          # reload not applied yet
        ([10, 11], [10, 11, 20, 21], [20, 21], [10, 11]),  # new generation, old one draining
        ([10, 11], [20, 21], [20, 21], []),          # drained
        ([], [20, 21], [20, 21], []),                # nginx had no workers
        ([10, 11], [], [], []),                      # nginx gone
    ],
)
def test_compare_generations(before, current, new, remaining):
    assert ng.compare_generations(before, current) == {"new": new, "remaining": remaining}


def test_shutting_down():
    workers = {10: "nginx: worker process is shutting down", 20: "nginx: worker process"}
    assert ng.shutting_down(workers) == [10]


def fake_proc(tmp_path, processes):
    """A /proc tree: {pid: (ppid, title, comm)}."""
    root = tmp_path / "proc"
    root.mkdir()
    (root / "self").mkdir()
    for pid, (ppid, title, comm) in processes.items():
        d = root / str(pid)
        d.mkdir()
        (d / "stat").write_text("%d (%s) S %d 1 1 0 -1\n" % (pid, comm, ppid))
        (d / "cmdline").write_bytes(title.encode() + b"\0" * 10)
    return str(root)


@pytest.mark.parametrize(
    ("mtime", "starts", "expected"),
    [
        (100.0, [200.0, 201.0], False),      # reloaded after the write
        (100.0, [100.5], False),             # within the margin: a reload right after the write
        (100.0, [50.0, 60.0], True),         # written after every worker started: not loaded
        (100.0, [50.0, 150.0], False),       # the newest generation counts
        (100.0, [None, 50.0], True),
        (100.0, [], False),                  # no workers: nothing to compare
        (None, [50.0], False),               # no file
    ],
)
def test_written_after_workers(mtime, starts, expected):
    assert ng.written_after_workers(mtime, starts) is expected


def test_process_start_time(tmp_path):
    root = tmp_path / "proc"
    (root / "42").mkdir(parents=True)
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    # priority nice num_threads itrealvalue starttime ...
    (root / "42" / "stat").write_text("42 (nginx: worker) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 50000 0 0\n")
    # Started 500 s after boot; the machine has been up 1000 s; now is 10000.
    assert ng.process_start_time(42, str(root), now=10000.0, boottime=1000.0, ticks=100) == 9500.0
    assert ng.process_start_time(43, str(root)) is None


def test_processes_from_proc(tmp_path):
    proc = fake_proc(tmp_path, {
        100: (1, "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;", "nginx"),
        101: (100, "nginx: worker process", "nginx"),
        102: (100, "nginx: worker process is shutting down", "nginx"),
        103: (100, "nginx: cache manager process", "nginx"),
        200: (1, "nginx: worker process", "nginx"),          # another master's worker
        300: (100, "sleep 10", "odd) name (x"),              # not a worker
    })
    pid_file = tmp_path / "nginx.pid"
    pid_file.write_text("100\n")
    assert ng.parent_pid(300, proc) == 100
    assert ng.master_pid(str(pid_file), proc) == 100
    assert ng.worker_processes(100, proc) == {101: "nginx: worker process",
                                              102: "nginx: worker process is shutting down"}
    assert ng.worker_processes(None, proc) == {}
    assert ng.process_title(999, proc) is None


@pytest.mark.parametrize("content", [None, "", "abc", "101\n"])
def test_master_pid_none_when_not_running(tmp_path, content):
    proc = fake_proc(tmp_path, {101: (1, "nginx: worker process", "nginx")})
    pid_file = tmp_path / "nginx.pid"
    if content is not None:
        pid_file.write_text(content)
    assert ng.master_pid(str(pid_file), proc) is None


# --- the module ---------------------------------------------------------------

class FakeNginx:
    """nginx as the module sees it: nginx -t, reload commands and worker PIDs.

    A reload replaces the workers with a new generation; the old one stays
    for `drain_polls` polls (requests in flight), then exits.
    """

    def __init__(self, path, running=True, test_rc=0, reload_rc=0, applies=True, drain_polls=2,
                 systemd=True, bad_text=None):
        self.path = path
        self.running = running
        self.test_rc = test_rc
        self.reload_rc = reload_rc
        self.applies = applies
        self.drain_polls = drain_polls
        self.systemd = systemd
        self.bad_text = bad_text
        self.commands = []
        self.generation = [11, 12] if running else []
        self.old = []
        self.polls_left = 0
        # When the current workers started (wall clock): after any file the test writes.
        self.started = time.time() + 3600

    def run_command(self, args, **kwargs):
        self.commands.append(list(args))
        if args[-1] == "-t":
            content = Path(self.path).read_text() if Path(self.path).exists() else ""
            if self.test_rc or (self.bad_text and self.bad_text in content):
                return 1, "", "nginx: [emerg] host not found in upstream \"bad.invalid:3000\"\nnginx: test failed"
            return 0, "", "nginx: configuration file /etc/nginx/nginx.conf test is successful"
        if "is-active" in args:
            return (0 if self.systemd else 3), "", ""
        if "reload" in args:
            if self.reload_rc:
                return self.reload_rc, "", "Job for nginx.service failed."
            if self.applies:
                self.old = self.generation
                self.generation = [g + 100 for g in self.generation]
                self.polls_left = self.drain_polls
            return 0, "", ""
        raise AssertionError("unexpected command %r" % (args,))

    def workers(self, master, proc="/proc"):
        if not self.running or master is None:
            return {}
        result = dict((pid, "nginx: worker process") for pid in self.generation)
        if self.old:
            if self.polls_left <= 0:
                self.old = []
            else:
                self.polls_left -= 1
                result.update((pid, "nginx: worker process is shutting down") for pid in self.old)
        return result


def run_module(monkeypatch, capsys, fake, check_mode=False, diff=False, **args):
    monkeypatch.setattr(nginx_upstream, "master_pid", lambda pid_file: 10 if fake.running else None)
    monkeypatch.setattr(nginx_upstream, "process_start_time", lambda pid: fake.started)
    monkeypatch.setattr(nginx_upstream, "worker_processes", fake.workers)
    monkeypatch.setattr(nginx_upstream, "POLL_SECONDS", 0)
    monkeypatch.setattr(nginx_upstream.AnsibleModule, "run_command", lambda self, a, **kw: fake.run_command(a, **kw))
    monkeypatch.setattr(nginx_upstream.AnsibleModule, "get_bin_path",
                        lambda self, name, required=False, opt_dirs=None: "/usr/sbin/" + name)
    module_args = {"name": "recete_api", "path": fake.path,
                   "servers": [{"address": "10.0.0.11:3000"}, {"address": "10.0.0.12:3000"}]}
    if check_mode:
        module_args["_ansible_check_mode"] = True
    if diff:
        module_args["_ansible_diff"] = True
    module_args.update(args)
    with patch_module_args(module_args):
        with pytest.raises(SystemExit):
            nginx_upstream.main()
    return json.loads(capsys.readouterr().out)


def reloads(fake):
    return [c for c in fake.commands if "reload" in c]


def test_new_file_is_written_checked_reloaded_and_drained(monkeypatch, capsys, tmp_path):
    fake = FakeNginx(str(tmp_path / "upstream.conf"))
    result = run_module(monkeypatch, capsys, fake, keepalive_timeout=4, max_fails=3, fail_timeout=10)
    assert result["changed"] is True
    assert result["reloaded"] is True
    assert result["workers_before"] == [11, 12]
    assert result["workers_after"] == [111, 112]
    assert result["drained"] is True
    assert result["workers_draining"] == []
    assert reloads(fake) == [["/usr/sbin/systemctl", "reload", "nginx.service"]]
    assert ["/usr/sbin/nginx", "-t"] in fake.commands
    text = (tmp_path / "upstream.conf").read_text()
    assert "server 10.0.0.11:3000 max_fails=3 fail_timeout=10s;" in text
    assert "keepalive_timeout 4s;" in text
    assert text == result["content"]


def test_unchanged_file_means_no_write_and_no_reload(monkeypatch, capsys, tmp_path):
    fake = FakeNginx(str(tmp_path / "upstream.conf"))
    run_module(monkeypatch, capsys, fake)
    fake.commands = []
    result = run_module(monkeypatch, capsys, fake,
                        servers=[{"address": "10.0.0.12:3000"}, {"address": "10.0.0.11:3000"}])
    assert result["changed"] is False
    assert result["reloaded"] is False
    assert fake.commands == []


def test_unchanged_still_waits_for_an_earlier_drain(monkeypatch, capsys, tmp_path):
    fake = FakeNginx(str(tmp_path / "upstream.conf"), drain_polls=100)
    first = run_module(monkeypatch, capsys, fake, drain_timeout=0)
    assert first["drained"] is False
    assert first["workers_draining"] == [11, 12]
    fake.polls_left = 3
    second = run_module(monkeypatch, capsys, fake, drain_timeout=5)
    assert second["changed"] is False
    assert second["drained"] is True
    assert reloads(fake) == [["/usr/sbin/systemctl", "reload", "nginx.service"]]


def test_drain_timeout_is_reported(monkeypatch, capsys, tmp_path):
    fake = FakeNginx(str(tmp_path / "upstream.conf"), drain_polls=10 ** 9)
    result = run_module(monkeypatch, capsys, fake, drain_timeout=0)
    assert result["reloaded"] is True
    assert result["drained"] is False
    assert result["workers_draining"] == [11, 12]


def test_marking_down_renders_down(monkeypatch, capsys, tmp_path):
    fake = FakeNginx(str(tmp_path / "upstream.conf"))
    run_module(monkeypatch, capsys, fake)
    result = run_module(monkeypatch, capsys, fake, diff=True,
                        servers=[{"address": "10.0.0.11:3000"}, {"address": "10.0.0.12:3000", "state": "down"}])
    assert result["changed"] is True
    assert "server 10.0.0.12:3000 down;" in result["diff"]["after"]
    assert "server 10.0.0.12:3000;" in result["diff"]["before"]
    assert [s["state"] for s in result["servers"]] == ["active", "down"]


def test_check_mode_writes_nothing(monkeypatch, capsys, tmp_path):
    path = tmp_path / "upstream.conf"
    path.write_text("upstream recete_api { server 10.0.0.9:3000; }\n")
    fake = FakeNginx(str(path))
    result = run_module(monkeypatch, capsys, fake, check_mode=True, diff=True)
    assert result["changed"] is True
    assert result["diff"]["before"] == "upstream recete_api { server 10.0.0.9:3000; }\n"
    assert "server 10.0.0.11:3000;" in result["diff"]["after"]
    assert path.read_text() == "upstream recete_api { server 10.0.0.9:3000; }\n"
    assert fake.commands == []


def test_no_diff_unless_asked(monkeypatch, capsys, tmp_path):
    result = run_module(monkeypatch, capsys, FakeNginx(str(tmp_path / "u.conf")))
    assert "diff" not in result


def test_rejected_config_restores_the_file(monkeypatch, capsys, tmp_path):
    path = tmp_path / "upstream.conf"
    fake = FakeNginx(str(path), bad_text="bad.invalid")
    run_module(monkeypatch, capsys, fake)
    good = path.read_text()
    fake.commands = []
    result = run_module(monkeypatch, capsys, fake,
                        servers=[{"address": "10.0.0.11:3000"}, {"address": "bad.invalid:3000"}])
    assert result["failed"] is True
    assert result["changed"] is False
    assert "host not found in upstream" in result["msg"]
    assert "previous file is back in place" in result["msg"]
    assert path.read_text() == good
    assert reloads(fake) == []


def test_rejected_new_file_is_removed(monkeypatch, capsys, tmp_path):
    path = tmp_path / "upstream.conf"
    result = run_module(monkeypatch, capsys, FakeNginx(str(path), bad_text="bad.invalid"),
                        servers=[{"address": "bad.invalid:3000"}])
    assert result["failed"] is True
    assert not path.exists()


def test_already_broken_config_is_named(monkeypatch, capsys, tmp_path):
    result = run_module(monkeypatch, capsys, FakeNginx(str(tmp_path / "u.conf"), test_rc=1))
    assert result["failed"] is True
    assert "already invalid without this change" in result["msg"]


def test_reload_that_does_not_take_effect_fails_and_restores(monkeypatch, capsys, tmp_path):
    path = tmp_path / "upstream.conf"
    fake = FakeNginx(str(path))
    run_module(monkeypatch, capsys, fake)
    good = path.read_text()
    fake.applies = False
    result = run_module(monkeypatch, capsys, fake, reload_timeout=0,
                        servers=[{"address": "10.0.0.11:3000"}])
    assert result["failed"] is True
    assert "did not start new worker processes" in result["msg"]
    assert path.read_text() == good


def test_failed_reload_command_restores(monkeypatch, capsys, tmp_path):
    path = tmp_path / "upstream.conf"
    fake = FakeNginx(str(path), reload_rc=1)
    result = run_module(monkeypatch, capsys, fake)
    assert result["failed"] is True
    assert "Job for nginx.service failed" in result["msg"]
    assert not path.exists()


def test_signal_reload_without_systemd(monkeypatch, capsys, tmp_path):
    fake = FakeNginx(str(tmp_path / "u.conf"), systemd=False)
    result = run_module(monkeypatch, capsys, fake)
    assert result["reloaded"] is True
    assert reloads(fake) == [["/usr/sbin/nginx", "-s", "reload"]]


def test_reload_false_writes_and_checks_only(monkeypatch, capsys, tmp_path):
    fake = FakeNginx(str(tmp_path / "u.conf"))
    result = run_module(monkeypatch, capsys, fake, reload=False)
    assert result["changed"] is True
    assert result["reloaded"] is False
    assert reloads(fake) == []
    assert ["/usr/sbin/nginx", "-t"] in fake.commands


def test_nginx_not_running_warns(monkeypatch, capsys, tmp_path):
    # Recorded at the call: where ansible-core delivers warnings depends on
    # what else the test process has imported (controller code or not).
    warnings = []
    monkeypatch.setattr(nginx_upstream.AnsibleModule, "warn", lambda self, msg: warnings.append(msg))
    fake = FakeNginx(str(tmp_path / "u.conf"), running=False)
    result = run_module(monkeypatch, capsys, fake)
    assert result["changed"] is True
    assert result["reloaded"] is False
    assert any("does not run" in w for w in warnings)
    assert reloads(fake) == []


def test_missing_directory_fails_clearly(monkeypatch, capsys, tmp_path):
    result = run_module(monkeypatch, capsys, FakeNginx(str(tmp_path / "missing" / "u.conf")))
    assert result["failed"] is True
    assert "directory of" in result["msg"]


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        ([{"address": "10.0.0.11"}], "needs a port"),
        ([{"address": "10.0.0.11:3000", "state": "down"}], "every server is down"),
    ],
)
def test_bad_input_fails_before_touching_anything(monkeypatch, capsys, tmp_path, servers, message):
    fake = FakeNginx(str(tmp_path / "u.conf"))
    result = run_module(monkeypatch, capsys, fake, servers=servers)
    assert result["failed"] is True
    assert message in result["msg"]
    assert fake.commands == []
    assert not (tmp_path / "u.conf").exists()


def test_block_written_but_never_loaded_is_reloaded(monkeypatch, capsys, tmp_path):
    fake = FakeNginx(str(tmp_path / "u.conf"))
    run_module(monkeypatch, capsys, fake, reload=False)   # written, the reload left to a handler that never ran
    fake.started = 0.0                                    # the workers predate the file
    fake.commands = []
    checked = run_module(monkeypatch, capsys, fake, check_mode=True)
    assert checked["changed"] is True
    assert checked["not_loaded"] is True
    assert fake.commands == []
    result = run_module(monkeypatch, capsys, fake)
    assert result["changed"] is True
    assert result["not_loaded"] is True
    assert result["reloaded"] is True
    assert reloads(fake) == [["/usr/sbin/systemctl", "reload", "nginx.service"]]


def test_block_never_loaded_notifies_with_reload_false(monkeypatch, capsys, tmp_path):
    fake = FakeNginx(str(tmp_path / "u.conf"))
    run_module(monkeypatch, capsys, fake, reload=False)
    fake.started = 0.0
    result = run_module(monkeypatch, capsys, fake, reload=False)
    assert result["changed"] is True
    assert result["not_loaded"] is True
    assert result["reloaded"] is False
    assert reloads(fake) == []


def test_loaded_block_is_left_alone(monkeypatch, capsys, tmp_path):
    fake = FakeNginx(str(tmp_path / "u.conf"))
    run_module(monkeypatch, capsys, fake)
    fake.commands = []
    result = run_module(monkeypatch, capsys, fake)
    assert result["changed"] is False
    assert result["not_loaded"] is False
    assert fake.commands == []


# --- a second nginx master (the router behind an edge nginx) -------------------

ROUTER = {"config": "/etc/nginx/recete/router.conf", "pid_file": "/run/recete-router/nginx.pid",
          "service": "recete-router.service"}


def test_router_is_checked_with_its_config_and_reloaded_through_its_unit(monkeypatch, capsys, tmp_path):
    fake = FakeNginx(str(tmp_path / "u.conf"))
    pid_files = []
    result = run_module(monkeypatch, capsys, fake, **ROUTER)
    assert result["reloaded"] is True
    assert ["/usr/sbin/nginx", "-c", ROUTER["config"], "-t"] in fake.commands
    assert ["/usr/sbin/nginx", "-t"] not in fake.commands
    assert ["/usr/sbin/systemctl", "is-active", "--quiet", "recete-router.service"] in fake.commands
    assert reloads(fake) == [["/usr/sbin/systemctl", "reload", "recete-router.service"]]
    # The master is looked up in the router's pid file, never in nginx's.
    monkeypatch.setattr(nginx_upstream, "master_pid", lambda pid_file: pid_files.append(pid_file) or 10)
    fake.commands = []
    with patch_module_args({"name": "recete_api", "path": fake.path, "servers": [{"address": "10.0.0.11:3000"}],
                            **ROUTER}):
        with pytest.raises(SystemExit):
            nginx_upstream.main()
    capsys.readouterr()
    assert pid_files and set(pid_files) == {ROUTER["pid_file"]}


def test_router_without_systemd_is_signalled_through_its_config(monkeypatch, capsys, tmp_path):
    fake = FakeNginx(str(tmp_path / "u.conf"), systemd=False)
    result = run_module(monkeypatch, capsys, fake, **ROUTER)
    assert result["reloaded"] is True
    assert reloads(fake) == [["/usr/sbin/nginx", "-c", ROUTER["config"], "-s", "reload"]]


def test_router_config_rejected_restores_and_names_nothing_reloaded(monkeypatch, capsys, tmp_path):
    path = tmp_path / "u.conf"
    fake = FakeNginx(str(path), bad_text="bad.invalid")
    result = run_module(monkeypatch, capsys, fake, servers=[{"address": "bad.invalid:3000"}], **ROUTER)
    assert result["failed"] is True
    assert "Nothing was reloaded" in result["msg"]
    assert fake.commands.count(["/usr/sbin/nginx", "-c", ROUTER["config"], "-t"]) == 2
    assert reloads(fake) == []
    assert not path.exists()


@pytest.mark.parametrize(
    ("config", "args", "expected"),
    [
        (None, ("-t",), ["/usr/sbin/nginx", "-t"]),
        ("/etc/nginx/recete/router.conf", ("-t",), ["/usr/sbin/nginx", "-c", "/etc/nginx/recete/router.conf", "-t"]),
        ("/etc/r.conf", ("-s", "reload"), ["/usr/sbin/nginx", "-c", "/etc/r.conf", "-s", "reload"]),
    ],
)
def test_nginx_command(config, args, expected):
    assert nginx_upstream.nginx_command("/usr/sbin/nginx", config, *args) == expected
