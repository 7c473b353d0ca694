"""roles/pgbouncer/files/recete_pgbouncer_follow.py: the leader it picks and when it rewrites.

Patroni's REST API is served by a real HTTP server on loopback answering what Patroni's
GET /cluster answers; PgBouncer itself is replaced by recording the reload (the lab's
data_tier drills run the real one).
"""
import http.server
import importlib.util
import json
import os
import threading

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SPEC = importlib.util.spec_from_file_location(
    "recete_pgbouncer_follow", os.path.join(REPO, "roles", "pgbouncer", "files", "recete_pgbouncer_follow.py"))
follow = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(follow)


def member(name, role, state="running", host=None):
    return {"name": name, "role": role, "state": state, "host": host or "10.0.0.%d" % int(name[-1]), "port": 5432}


def test_the_running_leader_is_picked():
    cluster = {"members": [member("pg1", "replica"), member("pg2", "leader"), member("pg3", "sync_standby")]}
    assert follow.leader_host(cluster) == "10.0.0.2"


@pytest.mark.parametrize("members", [
    [],
    [member("pg1", "replica"), member("pg2", "replica")],        # mid-failover: nobody leads yet
    [member("pg1", "leader", state="stopped"), member("pg2", "replica")],
])
def test_no_leader_means_none(members):
    assert follow.leader_host({"members": members}) is None


def test_render_puts_the_host_in_the_line():
    assert follow.render("recete = host={host} port=5432 dbname=recete", "10.0.0.9") == \
        "recete = host=10.0.0.9 port=5432 dbname=recete\n"


class FakePatroni(http.server.BaseHTTPRequestHandler):
    answer = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = json.dumps(type(self).answer).encode()
        self.send_response(200 if self.path == "/cluster" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def patroni():
    server = http.server.HTTPServer(("127.0.0.1", 0), FakePatroni)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def make_follower(tmp_path, apis, reloads, log):
    include = tmp_path / "primary.ini"
    config = {"apis": apis, "include": str(include), "line": "recete = host={host} port=5432 dbname=recete",
              "interval": 0.1, "timeout": 0.5}
    follower = follow.Follower(config, log=log.append)
    follow.reload_pgbouncer = lambda unit: reloads.append(unit) or True
    return follower, include


def test_rewrites_and_reloads_only_when_the_leader_moves(tmp_path, patroni):
    reloads, log = [], []
    # The first API is dead (connection refused): the follower goes on to the next.
    dead = "http://127.0.0.1:1"
    follower, include = make_follower(tmp_path, [dead, "http://127.0.0.1:%d" % patroni.server_port], reloads, log)
    FakePatroni.answer = {"members": [member("pg1", "leader"), member("pg2", "replica")]}
    assert follower.step() == "10.0.0.1"
    assert include.read_text() == "recete = host=10.0.0.1 port=5432 dbname=recete\n"
    assert oct(include.stat().st_mode & 0o777) == "0o640"
    assert follower.step() is None and len(reloads) == 1          # same leader: nothing
    FakePatroni.answer = {"members": [member("pg1", "replica"), member("pg2", "replica")]}
    assert follower.step() is None and len(reloads) == 1          # no leader: the file stays
    assert "10.0.0.1" in include.read_text()
    FakePatroni.answer = {"members": [member("pg1", "replica"), member("pg2", "leader")]}
    assert follower.step() == "10.0.0.2" and len(reloads) == 2
    assert include.read_text() == "recete = host=10.0.0.2 port=5432 dbname=recete\n"
    assert [name for name in os.listdir(tmp_path) if name.startswith(".primary-")] == []   # no temporary left
    assert any("leader is now 10.0.0.2" in line for line in log), log


def test_a_file_changed_behind_its_back_is_put_right(tmp_path, patroni):
    reloads, log = [], []
    follower, include = make_follower(tmp_path, ["http://127.0.0.1:%d" % patroni.server_port], reloads, log)
    FakePatroni.answer = {"members": [member("pg3", "leader")]}
    include.write_text("recete = host=10.0.0.1 port=5432 dbname=recete\n")   # e.g. a run with a stale answer
    assert follower.step() == "10.0.0.3" and reloads == ["pgbouncer"]


def test_no_api_answering_leaves_the_file_alone(tmp_path):
    reloads, log = [], []
    follower, include = make_follower(tmp_path, ["http://127.0.0.1:1"], reloads, log)
    include.write_text("recete = host=10.0.0.1 port=5432 dbname=recete\n")
    assert follower.step() is None and follower.step() is None
    assert reloads == [] and "10.0.0.1" in include.read_text()
    assert len([line for line in log if "no Patroni API answers" in line]) == 1   # said once, not every second
