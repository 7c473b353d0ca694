"""The scaling checklist's items from collected facts (module_utils/_checklist.py, filters checklist_*)."""
import pytest

from ansible_collections.recete.stack.plugins.filter.checklist import (
    checklist_items,
    checklist_lines,
    checklist_markdown,
)
from ansible_collections.recete.stack.plugins.module_utils import _checklist as cl


def prom(data, status=200):
    return {"status": status, "json": {"status": "success", "data": data}}


def sentinel(ok=True, others=2):
    return {"reachable": True, "monitored": True,
            "master": {"address": "10.0.0.15:6379", "ip": "10.0.0.15"}, "replicas": [],
            "num_other_sentinels": others, "ckquorum": {"ok": ok, "message": "OK"}}


def target(job, health="up"):
    return {"health": health, "labels": {"job": job, "instance": job + ":1"}}


HEALTHY = {
    "monitoring": {"host": "mon1", "ready": {"status": 200},
                   "targets": prom({"activeTargets": [target("recete_api"), target("node"), target("redis", "down")]}),
                   "rules": prom({"groups": [{"rules": [{"type": "alerting"}, {"type": "recording"}]}]})},
    "pgbouncer": {"pgbouncer1": {"pools": [{"database": "recete", "pool_mode": "transaction"}]}},
    "sentinel": {"redis1": sentinel(), "redis2": sentinel(), "redis3": sentinel()},
    "postgres": {"mode": "self_hosted", "hosts": {
        "pg1": {"node": {"query_result": [{"in_recovery": False}]},
                "replication": {"query_result": [{"application_name": "pg2", "state": "streaming"}]}}}},
}
FACTS = {"playbooks": ["deploy.yml", "rollback.yml", "site.yml"], "results_md": None, "bench_out": [],
         "lb_hosts": ["lb1"], "autoscaler": {"hosts": []}, "cdn": {"groups": {"web": [], "cdn": []}},
         "backup": {"pg1": {"configs": [], "timers": []}}}


def by_id(items):
    return {i["id"]: i for i in items}


def test_a_healthy_lab_without_the_unbuilt_parts():
    items = by_id(checklist_items(HEALTHY, FACTS))
    assert list(items) == ["load_testing", "monitoring", "alerts", "autoscaling", "connection_pooling",
                           "redis_sentinel", "read_replicas", "cdn", "backups", "dr_plan", "lb_redundancy",
                           "zero_downtime"]
    done = sorted(k for k, i in items.items() if i["ok"])
    # A redis target down does not fail monitoring: only recete_api and node are required.
    assert done == ["alerts", "connection_pooling", "monitoring", "read_replicas", "redis_sentinel", "zero_downtime"]
    assert items["monitoring"]["evidence"] == "Prometheus on mon1 ready; targets recete_api 1/1 up, node 1/1 up"
    assert items["alerts"]["evidence"] == "1 alerting rule(s) loaded in Prometheus"
    assert "not built" in items["autoscaling"]["evidence"]
    assert items["lb_redundancy"]["evidence"] == "1 load balancer host(s): lb1 (a single point of failure)"


@pytest.mark.parametrize("data,evidence", [
    ({}, "no host in the monitoring group"),
    ({"monitoring": {"host": "mon1", "ready": {"status": -1, "msg": "Connection refused"}}},
     "Prometheus on mon1 not ready at /-/ready: Connection refused"),
    ({"monitoring": {"host": "mon1", "ready": {"status": 503}}}, "Prometheus on mon1 not ready at /-/ready: HTTP 503"),
    ({"monitoring": {"host": "mon1", "ready": {"status": 200},
                     "targets": prom({"activeTargets": [target("recete_api", "down"), target("node")]})}},
     "Prometheus on mon1 ready; targets recete_api 0/1 up, node 1/1 up"),
    # No recete_api target at all is not "every target up".
    ({"monitoring": {"host": "mon1", "ready": {"status": 200}, "targets": prom({"activeTargets": [target("node")]})}},
     "Prometheus on mon1 ready; targets recete_api 0/0 up, node 1/1 up"),
])
def test_monitoring_fails_on_missing_or_down_targets(data, evidence):
    ok, text = cl.monitoring(data)
    assert not ok and text == evidence


@pytest.mark.parametrize("facts,ok", [
    ({"results_md": "API: 1,240 req/s per instance, p95 38 ms"}, True),
    ({"results_md": "To be measured."}, False),
    # A table header (p50 ms) names a unit, not a figure.
    ({"results_md": "| phase | p50 ms | p95 ms |\n|---|---|---|\n"}, False),
    ({"bench_out": ["pooling.json"]}, True),
    ({}, False),
])
def test_load_testing_needs_a_figure_or_bench_output(facts, ok):
    assert cl.load_testing(facts)[0] is ok


@pytest.mark.parametrize("sentinels,ok", [
    ({"r1": sentinel(), "r2": sentinel(), "r3": sentinel()}, True),
    ({"r1": sentinel(others=1), "r2": sentinel(others=1)}, False),  # only 2 Sentinels
    ({"r1": sentinel(ok=False, others=2)}, False),
    ({"r1": {"unreachable": True}}, False),
])
def test_sentinel_needs_quorum_and_three(sentinels, ok):
    assert cl.sentinel({"sentinel": sentinels})[0] is ok


def test_pooling_needs_transaction_mode_on_every_pool():
    session = {"pgbouncer": {"p1": {"pools": [{"database": "recete", "pool_mode": "session"}]}}}
    assert cl.pooling(session) == (False, "PgBouncer answers SHOW POOLS on 1 host(s); pool_mode session")
    down = {"pgbouncer": {"p1": {"failed": True, "msg": "connection refused"}}}
    assert cl.pooling(down)[1] == "PgBouncer not answering SHOW POOLS: p1 error: connection refused"
    idle = {"pgbouncer": {"p1": {"pools": [{"database": "pgbouncer", "pool_mode": "statement"}]}}}
    assert cl.pooling(idle)[0] is False


def test_replicas_count_only_streaming_ones():
    data = {"postgres": {"hosts": {"pg1": {"node": {"query_result": [{"in_recovery": False}]},
                                           "replication": {"query_result": [{"state": "catchup"}]}}}}}
    assert cl.replicas(data) == (False, "0 streaming replica(s) on pg1")
    assert cl.replicas({"postgres": {"mode": "external"}})[0] is False


def test_backups_dr_cdn_and_autoscaler_need_real_evidence():
    assert cl.backups({"backup": {"pg1": {"configs": ["/etc/pgbackrest.conf"], "timers": []}}}) == (
        False, "no backups: config pg1:/etc/pgbackrest.conf, no backup timer (not built)")
    assert cl.backups({"backup": {"pg1": {"configs": ["/etc/pgbackrest.conf"],
                                          "timers": ["pgbackrest-full.timer"]}}})[0] is True
    assert cl.dr_plan({"playbooks": ["restore_postgres.yml", "deploy.yml"]}) == (True, "DR playbooks: restore_postgres.yml")
    assert cl.dr_plan({"playbooks": ["restorer.txt"]})[0] is False
    assert cl.cdn({"cdn": {"groups": {"cdn": ["edge1"]}}}) == (True, "CDN edge group: cdn (edge1)")
    # A web tier counts only where the load balancers cache its static assets.
    assert cl.cdn({"cdn": {"groups": {"web": ["api1"], "cdn": []}, "caching_lbs": []}}) == (
        False, "group(s) web (api1) but no load balancer caches their static assets")
    assert cl.cdn({"cdn": {"groups": {"web": ["api1", "api2"]}, "caching_lbs": ["lb1", "lb2"]}}) == (
        True, "static assets of web (api1, api2) cached by nginx on lb1, lb2 (the CDN origin; no cdn_url set)")
    assert cl.cdn({"cdn": {"groups": {"web": []}, "setting": "https://cdn.example"}})[0] is True
    assert cl.autoscaling({"autoscaler": {"hosts": ["mon1"], "active": []}}) == (
        False, "autoscaler group mon1 but no active autoscaler service")
    assert cl.zero_downtime({"playbooks": ["deploy.yml"]}) == (False, "missing playbooks/rollback.yml")
    assert cl.lb_redundancy({"lb_hosts": ["lb1", "lb2"]})[0] is True


def test_reports_mark_each_item_and_escape_table_cells():
    items = [cl.item("a", "First", True, "x | y"), cl.item("b", "Second", False, "none")]
    assert checklist_lines(items) == ["\u2714 First: x | y", "\u2718 Second: none", "1/2 done"]
    md = checklist_markdown(items, "Scaling checklist", "2026-11-28T10:00:00Z", "inventories/lab/hosts.yml")
    assert "| \u2714 | First | x \\| y |" in md
    assert "**1 of 2 done.**" in md and md.startswith("# Scaling checklist\n")
