#!/usr/bin/env python3
"""Worker throughput of the deployed stack, in jobs/s per worker, for the reference job.

    bench/worker_throughput.py INVENTORY [--jobs 2000] [--clients 16] [--png PATH | --no-png]

Run from the repository root against a lab whose whole stack is deployed
(tools/demo). Talks only to that lab's machines.

Enqueues --jobs `sum` jobs through the load balancer (POST /jobs, as clients
do) from --clients keep-alive connections, tagged with this run's id, then
reads Postgres (job_results, where the workers write each result) until all
are there. Prints the enqueue rate, the processing rate (jobs between the
first and the last result / that time), that rate per running worker, and
the queue latency (last enqueue to last result). Target: at least 100
jobs/s per worker, queue latency under a minute. The run as a timeline
(bench/_plot.py): enqueues per second with the POST /jobs latency, and results
written per second (from job_results.processed_at), to --png, default
bench/out/worker_throughput-<timestamp>.png.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import sys
import time

import _plot  # same folder: the timeline picture
from scale_under_load import load_inventory, ssh  # same folder


def enqueue(address, tag, count):
    conn = http.client.HTTPConnection(address, 80, timeout=15)
    sent = []  # (answered at, POST /jobs latency) per job
    for i in range(count):
        body = json.dumps({"type": "sum", "data": {"values": [i, 1], "run": tag}})
        began = time.time()
        conn.request("POST", "/jobs", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        payload = resp.read()
        if resp.status != 202:
            raise SystemExit("POST /jobs answered %d: %s" % (resp.status, payload[:200]))
        now = time.time()
        sent.append((now, now - began))
    return sent


def results(login, pg, tag):
    # The run's results are those written since it started.
    query = ("select count(*), extract(epoch from min(processed_at)), extract(epoch from max(processed_at)), "
             "count(distinct worker) from job_results where processed_at >= to_timestamp(%s)" % tag)
    out = ssh(login, pg, "sudo -u postgres psql -d recete -tA -F, -c %s" % json.dumps(query)).stdout.strip()
    count, first, last, workers = out.split(",")
    return int(count), float(first or 0), float(last or 0), int(workers)


def results_per_second(login, pg, tag):
    """[(t, None, True)] per result written, t in seconds from the run's start (for the timeline)."""
    query = ("select extract(epoch from processed_at) - %s from job_results where processed_at >= to_timestamp(%s)"
             % (tag, tag))
    out = ssh(login, pg, "sudo -u postgres psql -d recete -tA -c %s" % json.dumps(query)).stdout.split()
    return [(float(t), None, True) for t in out]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inventory")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    _plot.add_png_option(parser, "worker_throughput")
    args = parser.parse_args()
    login, hosts = load_inventory(args.inventory)
    lb = next(h for h in hosts.values() if "lb" in h["groups"])["ansible_host"]
    pg = next(h for n, h in sorted(hosts.items()) if h.get("postgresql_member_role") == "primary")["ansible_host"]
    workers_running = sum(
        int(ssh(login, h["ansible_host"], "systemctl list-units 'recete-worker@*' --state=running --no-legend | wc -l").stdout)
        for h in hosts.values() if "worker" in h["groups"])
    start = time.time()
    per_client = [args.jobs // args.clients + (1 if i < args.jobs % args.clients else 0) for i in range(args.clients)]
    with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
        sent = sorted(sum(pool.map(lambda n: enqueue(lb, "%.3f" % start, n), per_client), []))
    enqueue_s = time.time() - start
    deadline = time.time() + 300
    while True:
        count, first, last, workers = results(login, pg, "%.3f" % start)
        if count >= args.jobs or time.time() > deadline:
            break
        time.sleep(1)
    rate = (count - 1) / (last - first) if last > first else float("nan")
    print("jobs: %d enqueued through the LB in %.1f s (%.0f/s); %d results in Postgres from %d worker(s) (%d running)"
          % (len(sent), enqueue_s, len(sent) / enqueue_s, count, workers, workers_running))
    print("processing: %.0f jobs/s in all, %.0f jobs/s per worker (target >= 100)" % (rate, rate / max(1, workers)))
    print("queue latency (enqueue of the last job to its result): %.1f s (target < 60 s)"
          % max(0.0, last - sent[-1][0]))
    tag = "%.3f" % start
    end = max(last, sent[-1][0]) - start
    series = {"enqueued": _plot.samples_to_rows([(t - start, latency, True) for t, latency in sent], end=end),
              "processed": _plot.samples_to_rows(results_per_second(login, pg, tag), end=end)}
    _plot.write(args, "worker_throughput", series, [("enqueue", 0.0, enqueue_s), ("drain", enqueue_s, end)],
                rate_label="jobs/s", error_label="errors/s",
                note="%d sum jobs from %d clients; latency = POST /jobs answer; %.0f jobs/s from %d worker(s)"
                % (args.jobs, args.clients, rate, workers))
    print("(the workers kept up with the enqueue rate when the processing rate is close to it: it is then a lower bound)")
    if count < args.jobs:
        sys.exit("only %d of %d jobs completed within 300 s" % (count, args.jobs))


if __name__ == "__main__":
    main()
