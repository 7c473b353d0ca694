"""The API's cache-aside item reads on the cache Redis (roles redis_cache and app_release), end to end.

In order (pytest keeps file order), through the load balancers of the stack site.yml deployed:
  1. an update is never followed by a stale read: PUT through one load balancer, then GET through
     both, on every instance, many times over;
  2. a repeated read mix at a fixed open-loop rate, first with the cache up, then with every cache
     server stopped (bench/cache_reads.py): the hit rate reaches 90 %, PostgreSQL runs at least 5x
     fewer transactions with the cache, no read fails either way, every instance stays ready while
     the cache is down, and reads are cache hits again once it is back.
"""
import http.client
import json
import os
import sys
import uuid

import pytest

PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
LAB = os.environ.get("RECETE_LAB_STACK", "mstack")
sys.path.insert(0, os.path.join(PROJECT, "bench"))
from _lab import Lab, lab_inventory  # noqa: E402  (bench/: the lab client)
from cache_reads import report, run_cache_phases  # noqa: E402  (bench/: the cache bench's phases)

RATE = 80           # reads per second, open loop
SECONDS = 20        # per measured phase
ITEMS = 50          # distinct items read in turn


@pytest.fixture(scope="module")
def lab():
    return Lab(lab_inventory(LAB))


def request(address, method, path, body=None):
    conn = http.client.HTTPConnection(address, 80, timeout=10)
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None,
                     {"Content-Type": "application/json"} if body is not None else {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else None, resp.getheader("X-Cache"), resp.getheader("X-Instance")
    finally:
        conn.close()


def test_no_stale_read_after_an_update_on_any_instance(lab):
    lbs = lab.addresses("lb")
    status, item, _, _ = request(lbs[0], "POST", "/items", {"name": "stale-check", "payload": {"n": 0}})
    assert status == 201, item
    path = "/items/%s" % item["id"]
    request(lbs[0], "GET", path)   # cached from here on
    seen_instances, caches = set(), set()
    for n in range(1, 31):
        name = "stale-check-%d-%s" % (n, uuid.uuid4().hex[:6])
        status, updated, _, _ = request(lbs[n % len(lbs)], "PUT", path, {"name": name, "payload": {"n": n}})
        assert status == 200, updated
        assert updated["name"] == name and updated["payload"] == {"n": n}
        for _ in range(3):
            for lb in lbs:
                status, read, cache, instance = request(lb, "GET", path)
                assert status == 200, read
                # The version only grows: an older one here is a stale read.
                assert (read["version"], read["name"]) == (updated["version"], name), (n, lb, instance, cache, read)
                seen_instances.add(instance)
                caches.add(cache)
    # Every API instance answered, and from the cache: the reads above were not all misses.
    assert len(seen_instances) >= len(lab.hosts("api")), seen_instances
    assert "HIT" in caches, caches


def test_reads_hit_the_cache_spare_postgres_and_survive_the_cache_down(lab):
    figures = run_cache_phases(lab, RATE, SECONDS, ITEMS)
    lines, ratio = report(figures, RATE)
    print("\n" + "\n".join(lines))
    cached, uncached = figures["cached"], figures["no-cache"]
    assert figures["failed_total"] == 0, figures
    assert cached["hit_rate"] >= 0.90, cached
    # With every cache server stopped each read went to PostgreSQL, and still answered.
    assert set(uncached["answers"]) == {"BYPASS"}, uncached["answers"]
    assert ratio >= 5, (cached["pg_tps"], uncached["pg_tps"])
    # The cache is not a dependency of readiness: no instance left the load balancers.
    ready = figures["ready_without_cache"]
    assert len(ready) >= len(lab.hosts("api")) and set(ready.values()) == {200}, ready
    # Both phases carried the same open-loop load.
    assert abs(cached["sent"] - uncached["sent"]) <= 0.05 * uncached["sent"], (cached["sent"], uncached["sent"])
