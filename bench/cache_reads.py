#!/usr/bin/env python3
"""Item reads with the cache and without it, at the same open-loop load, side by side, on a lab.

    bench/cache_reads.py INVENTORY [--rate 80] [--seconds 30] [--items 50]

Through the first load balancer, GET /items/:id over --items items in turn at --rate requests
per second (bench/_lab.py's OpenLoop: a schedule that does not slow down when answers do,
nothing resent), in two measured phases of --seconds each:
  cached    the cache Redis up (after one unmeasured pass over the items that fills it);
  no-cache  every cache server stopped (redis-server@cache on group redis): the API finds the
            cache down at once and reads PostgreSQL (X-Cache: BYPASS), which is what it would
            do without a cache, plus one failed Redis call that costs no network round trip.
The cache servers are started again at the end and the run waits until an item is a HIT again.

Prints per phase: reads answered 2xx per second, p50/p95, the X-Cache answers and the hit rate,
and PostgreSQL transactions per second in the app's database summed over every PostgreSQL host
(pg_stat_database xact_commit + xact_rollback: the item reads, a miss's fill, and whatever else
runs there, counted honestly), then the ratio of the two phases' PostgreSQL rates.
molecule/stack/tests/test_cache.py runs the same phases and checks the issue's targets
(hit rate >= 90 %, PostgreSQL >= 5x fewer transactions, no failed read either way).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lab import Lab, LabError, OpenLoop  # noqa: E402  (same folder)

CACHE_UNIT = "redis-server@cache"


def create_items(lab, count, tag):
    """POST count items through the first load balancer; their ids."""
    load = OpenLoop(lab.address(lab.first("lb")), 1)
    conn = load._connection()
    ids = []
    try:
        for i in range(count):
            status, data, _ = load._request(conn, "POST", "/items", {"name": "%s-%d" % (tag, i), "payload": {"i": i}})
            if status != 201:
                raise LabError("POST /items answered %d: %s" % (status, data[:200]))
            ids.append(json.loads(data)["id"])
    finally:
        conn.close()
    return ids


def pg_transactions(lab, database):
    """xact_commit + xact_rollback of `database`, summed over every PostgreSQL host."""
    query = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '%s'" % database
    total = 0
    for host in lab.hosts("postgres"):
        out = lab.ssh(host, "sudo -u postgres psql -X -At -c \"%s\"" % query).stdout.strip()
        total += int(out or 0)
    return total


def cache_units(lab, action):
    for host in lab.hosts("redis"):
        lab.ssh(host, "sudo systemctl %s %s" % (action, CACHE_UNIT))


def wait_for_hit(lab, item_id, timeout=120.0):
    """Seconds until GET /items/:id answers X-Cache HIT (the cache master is back and filled)."""
    load = OpenLoop(lab.address(lab.first("lb")), 1)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        conn = load._connection()
        try:
            for _ in range(2):   # the first may be the MISS that fills it
                status, _, _ = load._request(conn, "GET", "/items/%s" % item_id)
                if status == 200 and conn.x_cache == "HIT":
                    return time.monotonic() - t0
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(1.0)
    raise LabError("GET /items/%s was not a cache HIT within %.0f s of starting the cache again" % (item_id, timeout))


def measure(lab, load, phase, seconds, database):
    """One phase of the running load: its figures, PostgreSQL's transactions per second included."""
    before = pg_transactions(lab, database)
    t0 = time.monotonic()
    load.phase = phase
    time.sleep(seconds)
    load.phase = phase + "-end"
    elapsed = time.monotonic() - t0
    after = pg_transactions(lab, database)
    return {"seconds": elapsed, "pg_tps": (after - before) / elapsed}


def phase_figures(load, phase, measured):
    stats = load.stats(phase)
    answers = {header: n for (p, header), n in load.cache_answers.items() if p == phase}
    reads = sum(answers.values())
    hits = answers.get("HIT", 0)
    return dict(measured, sent=stats["sent"], failed=stats["non2xx"] + stats["conn_err"],
                ok_per_s=(stats["answered"] - stats["non2xx"]) / measured["seconds"],
                p50=stats["p50"], p95=stats["p95"], answers=answers, hit_rate=hits / reads if reads else 0.0)


def api_readiness(lab):
    """{"host:port": HTTP status of GET /ready} of every running API instance (unit recete-api@PORT)."""
    found = {}
    for host in lab.hosts("api"):
        units = lab.ssh(host, "systemctl list-units 'recete-api@*' --state=running --no-legend --plain").stdout
        for port in re.findall(r"recete-api@(\d+)\.service", units):
            # Instances listen on the host's private address only (the load balancers' side).
            code = lab.ssh(host, "curl -s -o /dev/null -m 5 -w '%%{http_code}' http://%s:%s/ready"
                           % (lab.address(host), port), check=False).stdout.strip()
            found["%s:%s" % (host, port)] = int(code or 0)
    return found


def run_cache_phases(lab, rate=80.0, seconds=30.0, items=50, database=None):
    """Both phases at `rate`; {"cached": figures, "no-cache": figures, "ready_without_cache": {instance: status},
    "back_after_s": s, "failed_total": n}."""
    database = database or lab.var(lab.first("postgres"), "postgresql_app_db", "recete")
    ids = create_items(lab, items, "cache-bench-%d" % int(time.time()))
    load = OpenLoop(lab.address(lab.first("lb")), rate, read_ids=ids)
    results = {}
    load.phase = "warm-up"
    load.start()
    try:
        time.sleep(max(2.0, 2 * items / rate))          # every item read at least twice: filled
        results["cached"] = measure(lab, load, "cached", seconds, database)
        load.phase = "stopping"
        cache_units(lab, "stop")
        time.sleep(2.0)
        results["no-cache"] = measure(lab, load, "no-cache", seconds, database)
        ready = api_readiness(lab)
        load.phase = "restarting"
    finally:
        try:
            cache_units(lab, "start")
        finally:
            load.stop()
    back = wait_for_hit(lab, ids[0])
    figures = {phase: phase_figures(load, phase, results[phase]) for phase in ("cached", "no-cache")}
    figures["ready_without_cache"] = ready
    figures["back_after_s"] = back
    figures["failed_total"] = load.failed()
    return figures


def report(figures, rate):
    lines = ["%-9s %9s %9s %8s %8s %9s %10s  %s" % ("phase", "sent", "ok/s", "p50 ms", "p95 ms", "hit rate",
                                                   "PG tx/s", "X-Cache")]
    for phase in ("cached", "no-cache"):
        f = figures[phase]
        lines.append("%-9s %9d %9.1f %8.1f %8.1f %8.1f%% %10.1f  %s" % (
            phase, f["sent"], f["ok_per_s"], f["p50"] or 0, f["p95"] or 0, 100 * f["hit_rate"], f["pg_tps"],
            ", ".join("%s %d" % (k or "none", v) for k, v in sorted(f["answers"].items(), key=str))))
    cached, uncached = figures["cached"]["pg_tps"], figures["no-cache"]["pg_tps"]
    ratio = uncached / cached if cached > 0 else float("inf")
    lines.append("instances' GET /ready with the cache down: %s" % ", ".join(
        "%s %s" % item for item in sorted(figures["ready_without_cache"].items())))
    lines.append("open loop %.0f reads/s; PostgreSQL transactions %.1fx fewer with the cache; failed reads %d;"
                 " cache HIT again %.1f s after its servers started" % (rate, ratio, figures["failed_total"],
                                                                         figures["back_after_s"]))
    return lines, ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inventory")
    parser.add_argument("--rate", type=float, default=80.0, help="reads per second (open loop)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each measured phase")
    parser.add_argument("--items", type=int, default=50, help="distinct items read in turn")
    args = parser.parse_args()
    lab = Lab(args.inventory)
    figures = run_cache_phases(lab, args.rate, args.seconds, args.items)
    lines, _ = report(figures, args.rate)
    print("\n".join(lines))
    return 1 if figures["failed_total"] else 0


if __name__ == "__main__":
    sys.exit(main())
