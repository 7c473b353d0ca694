"""The status screen's reading of raw results (module_utils/_status.py, filter status_lines)."""
import base64

import pytest

from ansible_collections.recete.stack.plugins.filter.status import status_lines
from ansible_collections.recete.stack.plugins.module_utils import _status as st

UPSTREAM = """# Ansible managed
upstream recete_api {
    least_conn;
    server 10.0.0.11:3000 max_fails=3 fail_timeout=10s;
    server 10.0.0.12:3000 max_fails=3 fail_timeout=10s down;
    keepalive 32;
}
"""


def slurp(text):
    return {"content": base64.b64encode(text.encode()).decode(), "encoding": "base64", "changed": False}


def sentinel(master="10.0.0.15", ok=True, others=2, replicas=None):
    return {"reachable": True, "monitored": True, "changed": False,
            "master": {"address": master + ":6379", "ip": master, "port": 6379, "flags": ["master"]},
            "replicas": replicas if replicas is not None else [
                {"address": "10.0.0.16:6379", "ip": "10.0.0.16", "flags": ["slave"], "master_link_status": "ok"}],
            "num_other_sentinels": others,
            "ckquorum": {"ok": ok, "message": "OK 3 usable Sentinels." if ok else "NOQUORUM 1 usable Sentinels."}}


def prom(data):
    return {"status": 200, "json": {"status": "success", "data": data}}


@pytest.mark.parametrize("result,need,expected", [
    (None, None, "not read (outside the play: --limit?)"),
    ({"unreachable": True, "msg": "ssh: timeout"}, None, "unreachable"),
    ({"failed": True, "msg": "boom\nmore"}, None, "error: boom"),
    # failed_when: false keeps failed false: the missing key tells.
    ({"failed": False, "msg": "file not found: /x"}, "content", "error: file not found: /x"),
    ({"skipped": True, "skip_reason": "Conditional result was False"}, None, "not read (conditional result was false)"),
    ({"content": ""}, "content", None),
])
def test_problem_says_why_a_result_holds_no_data(result, need, expected):
    assert st.problem(result, need) == expected


def test_upstream_members_with_down_marked():
    upstream = st.parse_upstream(UPSTREAM)
    assert upstream["name"] == "recete_api"
    assert [(m["address"], m["down"]) for m in upstream["members"]] == [("10.0.0.11:3000", False), ("10.0.0.12:3000", True)]
    assert st.lb_line("lb1", slurp(UPSTREAM)) == "lb1: 1/2 active: 10.0.0.11:3000, 10.0.0.12:3000 DOWN"


def test_a_missing_upstream_file_means_not_deployed():
    line = st.lb_line("lb1", {"failed": False, "msg": "file not found: /etc/nginx/recete/upstream-recete_api.conf"})
    assert line == "lb1: no upstream file (load balancer not deployed)"


def test_app_lines_show_each_instance_release_and_state():
    result = {"unit_installed": True, "release": "1.1.0", "instances": [
        {"slot": 3001, "release": "1.1.0", "running": True, "current": True, "stale": True},
        {"slot": 3000, "release": "1.0.0", "running": True, "current": True},
        {"slot": 3002, "release": "1.0.0", "running": False, "current": False, "active_state": "inactive"}]}
    assert st.app_line("api1", result) == "api1: 3000 (1.0.0) running, 3001 (1.1.0) stale"
    assert st.app_line("api2", {"unit_installed": False, "instances": []}) == "api2: not deployed"
    assert st.running_count({"api1": result, "api2": {"unreachable": True}}) == 2


def test_redis_lines_name_the_master_and_flag_a_disagreement():
    addresses = {"10.0.0.15": "redis1", "10.0.0.16": "redis2"}
    lines = st.redis_lines({"redis1": sentinel(), "redis2": sentinel(), "redis3": {"unreachable": True}}, addresses)
    assert lines[0] == "master 10.0.0.15:6379 (redis1)"
    assert lines[1] == "replicas: 10.0.0.16:6379 (redis2) link ok"
    assert lines[2] == "sentinels: redis1 ckquorum OK; redis2 ckquorum OK; redis3 unreachable"
    assert lines[-1] == "3 Sentinel(s) known, quorum OK"
    split = st.redis_lines({"redis1": sentinel(), "redis2": sentinel(master="10.0.0.16")}, addresses)
    assert split[0].startswith("Sentinels DISAGREE on the master: 10.0.0.15:6379, 10.0.0.16:6379")


def test_a_failing_ckquorum_is_not_ok():
    sentinels = {"redis1": sentinel(), "redis2": sentinel(ok=False)}
    view = st.sentinel_view(sentinels)
    assert not view["quorum_ok"] and view["sentinels"] == 3
    assert st.redis_lines(sentinels, {})[2] == "sentinels: redis1 ckquorum OK; redis2 ckquorum FAILS: NOQUORUM 1 usable Sentinels."


def pg(in_recovery, streams=(), **row):
    node = {"query_result": [dict(in_recovery=in_recovery, **row)]}
    return {"node": node, "replication": {"query_result": list(streams)}}


def test_postgres_lines_primary_with_lag_and_replica_with_replay_age():
    hosts = {"pg1": pg(False, [{"application_name": "pg2", "client_addr": "10.0.0.19", "state": "streaming",
                                "sync_state": "async", "replay_lag": 0.0021}]),
             "pg2": pg(True, replay_age=4.25, caught_up=True, receiver="streaming")}
    lines = st.postgres_lines({"mode": "self_hosted", "hosts": hosts}, {"10.0.0.19": "pg2"})
    assert lines == ["pg1: primary, 1 replica(s) attached; pg2 (pg2) streaming async replay lag 0.002 s",
                     "pg2: replica, receiver streaming, caught up, last replayed transaction 4.2 s ago"]


def test_postgres_external_and_two_primaries():
    assert st.postgres_lines({"mode": "external"}, {})[0].startswith("external")
    lines = st.postgres_lines({"hosts": {"pg1": pg(False), "pg2": pg(False)}}, {})
    assert lines[-1] == "MORE THAN ONE PRIMARY: pg1, pg2"


def test_pgbouncer_pool_line_skips_the_admin_database():
    result = {"pools": [
        {"database": "pgbouncer", "user": "pgbouncer", "pool_mode": "statement"},
        {"database": "recete", "user": "recete", "pool_mode": "transaction", "cl_active": 4, "cl_waiting": 1,
         "sv_active": 2, "sv_idle": 3, "maxwait": 1, "maxwait_us": 500000}]}
    assert st.pgbouncer_lines({"pgbouncer1": result}) == [
        "pgbouncer1: recete/recete transaction cl_active 4 cl_waiting 1 sv_active 2 sv_idle 3 maxwait 1.500 s"]


def test_queue_from_prometheus():
    mon = {"host": "mon1",
           "jobs": prom({"result": [{"metric": {"state": "waiting"}, "value": [1, "12"]},
                                    {"metric": {"state": "failed"}, "value": [1, "3"]}]}),
           "latency": prom({"result": [{"metric": {}, "value": [1, "2.5"]}]})}
    assert st.queue_lines(mon, None) == ["waiting 12, active 0, delayed 0, failed 3 (Prometheus on mon1); latency 2.5 s"]


def test_queue_from_redis_counts_the_age_of_the_oldest_waiting_job():
    result = {"rc": 0, "stdout": "5\n1\n0\n2\n1000000\n1060\n"}
    assert st.redis_queue(result) == {"counts": {"waiting": 5, "active": 1, "delayed": 0, "failed": 2}, "latency": 60.0}
    empty = {"rc": 0, "stdout": "0\n0\n0\n0\n\n1060\n"}
    assert st.redis_queue(empty)["latency"] == 0.0
    # A Redis read (status_queue_source=redis) wins over Prometheus.
    lines = st.queue_lines({"host": "mon1"}, {"name": "recete-jobs", "host": "redis1", "result": result})
    assert lines == ["recete-jobs: waiting 5, active 1, delayed 0, failed 2 (Redis on redis1); latency 60.0 s"]
    denied = {"rc": 0, "stdout": "NOPERM this user has no permissions"}
    assert st.queue_lines({}, {"name": "q", "host": "redis1", "result": denied}) == [
        "q on redis1: NOPERM this user has no permissions"]


def test_alert_lines_list_firing_alerts_and_down_targets():
    mon = {"host": "mon1",
           "alerts": prom({"alerts": [
               {"state": "pending", "labels": {"alertname": "Later"}},
               {"state": "firing", "activeAt": "2026-11-28T10:00:00.893065422Z",
                "labels": {"alertname": "ApiDown", "instance": "10.0.0.11:3000", "severity": "critical"}}]}),
           "targets": prom({"activeTargets": [
               {"health": "up", "labels": {"job": "node", "instance": "a"}},
               {"health": "down", "labels": {"job": "recete_api", "instance": "10.0.0.11:3000"}}]})}
    assert st.alert_lines(mon) == ["targets: 1/2 up; DOWN recete_api 10.0.0.11:3000",
                                   "FIRING ApiDown 10.0.0.11:3000 (critical) since 2026-11-28T10:00:00Z"]
    assert st.alert_lines({}) == ["monitoring not deployed (no host in the monitoring group)"]


def test_the_screen_has_every_tier_and_survives_empty_data():
    lines = status_lines({})
    headers = [line for line in lines if line.startswith("== ")]
    assert len(headers) == 7
    assert "   no host in the lb group" in lines
    assert "   monitoring not deployed (no host in the monitoring group)" in lines


def test_the_web_tier_has_a_section_only_where_it_has_hosts():
    web = {"unit_installed": True, "release": "1.1.0", "changed": False,
           "instances": [{"slot": 3100, "release": "1.1.0", "running": True, "current": True},
                         {"slot": 3101, "release": "1.0.0", "running": False, "current": False, "active_state": "inactive"}]}
    lines = status_lines({"app": {"api": {}, "web": {"api1": web, "api2": None}}})
    at = lines.index("== Web (1 instances running)")
    assert lines[at + 1:at + 3] == ["   web api1: 3100 (1.1.0) running",
                                    "   web api2: not read (outside the play: --limit?)"]
    # Right after the API and workers, before the load balancer.
    assert lines[at - 2].startswith("== API and workers") and lines[at + 3].startswith("== Load balancer")
    assert not any(line.startswith("== Web") for line in status_lines({"app": {"web": {}}}))
