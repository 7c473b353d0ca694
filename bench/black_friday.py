#!/usr/bin/env python3
"""Black Friday on the lab, as an operator types it: machines join, Redis memory grows online, one scale.yml.

    bench/black_friday.py --lab NAME [--api 10] [--workers 20] [--rate 40] [--keep] [--png PATH | --no-png]

On a running lab of the default topology with the stack deployed (tools/lab up, site.yml):
  1. tools/lab add: api3 (group api) and worker3 (group worker) join the lab;
  2. playbooks/redis.yml -e redis_maxmemory=512MB: CONFIG SET, the Redis PIDs must not change;
  3. under open-loop load through the load balancer (bench/_lab.py OpenLoop, 10 % jobs, never
     resent): ansible-playbook scale.yml -e api_replicas=10 -e worker_replicas=20 - one run that
     prepares the joined machines (base, release, units, exporters) and places the instances;
  4. unless --keep: scale.yml -e api_replicas=2 -e worker_replicas=2 -e leaving_hosts=api3,worker3
     under the same load, then tools/lab remove.
Prints the wall time of each run, the instances per host, failed requests (goal 0) and jobs
lost (goal 0), and draws the timeline (bench/_plot.py).
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _plot  # noqa: E402  (bench/ helper)
from _lab import Lab, LabError, OpenLoop, lab_inventory, lab_tool  # noqa: E402  (bench/ helper)

JOINING = [("api3", "api"), ("worker3", "worker")]


def per_host(lab, unit, group):
    counts = {}
    for host in lab.hosts(group):
        out = lab.ssh(host, "systemctl list-units '%s@*' --state=running --no-legend --plain" % unit).stdout
        counts[host] = len(re.findall(r"%s@\d+\.service" % unit, out))
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", required=True, help="name of a running lab (tools/lab list)")
    parser.add_argument("--api", type=int, default=10)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--rate", type=float, default=40.0, help="requests/s through the LB (40)")
    parser.add_argument("--maxmemory", default="512MB")
    parser.add_argument("--keep", action="store_true", help="leave the joined machines and the counts")
    _plot.add_png_option(parser, "black_friday")
    args = parser.parse_args()

    for name, group in JOINING:
        t0 = time.monotonic()
        lab_tool("add", "--name", args.lab, "--machine", name, "--groups", group)
        print("joined: %s (group %s) in %.0f s" % (name, group, time.monotonic() - t0))
    lab = Lab(lab_inventory(args.lab))

    pids = {h: lab.ssh(h, "pgrep -x redis-server").stdout.strip() for h in lab.hosts("redis")}
    run = lab.playbook("playbooks/redis.yml", extra_vars={"redis_maxmemory": args.maxmemory})
    if not run.ok:
        raise LabError("redis.yml failed:\n" + run.tail())
    same = all(lab.ssh(h, "pgrep -x redis-server").stdout.strip() == pid for h, pid in pids.items())
    print("redis maxmemory %s online in %.0f s: PIDs unchanged: %s" % (args.maxmemory, run.seconds, same))

    load = OpenLoop(lab.address(lab.first("lb")), args.rate, job_share=0.1)
    events = []
    peak_api = peak_workers = {}
    load.phase = "before"
    load.start()
    try:
        time.sleep(10)
        load.phase = "scale-out"
        events.append(("scale.yml %d/%d" % (args.api, args.workers), time.monotonic() - load.t0))
        out = lab.playbook("playbooks/scale.yml", extra_vars={"api_replicas": args.api,
                                                              "worker_replicas": args.workers}, timeout=3600)
        load.phase = "peak"
        peak_api = per_host(lab, "recete-api", "api")
        peak_workers = per_host(lab, "recete-worker", "worker")
        time.sleep(15)
        back = None
        if not args.keep:
            load.phase = "scale-in"
            back = lab.playbook("playbooks/scale.yml", extra_vars={"api_replicas": 2, "worker_replicas": 2,
                                                                   "leaving_hosts": "api3,worker3"}, timeout=3600)
            load.phase = "after"
            time.sleep(10)
    finally:
        load.stop()
    print("scale.yml api_replicas=%d worker_replicas=%d: rc %s in %.0f s" % (args.api, args.workers, out.rc, out.seconds))
    if not out.ok:
        print(out.tail())
    print("at the peak: api %s, workers %s" % (peak_api, peak_workers))
    print("now: api %s, workers %s" % (per_host(lab, "recete-api", "api"), per_host(lab, "recete-worker", "worker")))
    if back is not None:
        print("scale-in with leaving_hosts=api3,worker3: rc %s in %.0f s" % (back.rc, back.seconds))
    for phase in ("before", "scale-out", "peak", "scale-in", "after"):
        if load.scheduled.get(phase):
            st = load.stats(phase)
            print("  %-9s sent %6d  non-2xx %d  conn errors %d  p95 %s ms"
                  % (phase, st["sent"], st["non2xx"], st["conn_err"],
                     "-" if st["p95"] != st["p95"] else "%.0f" % st["p95"]))
    counts = load.check_jobs(timeout=300)
    lost = sum(row["acked"] - row["done_right"] for row in counts.values())
    print("failed requests: %d of %d (goal 0); jobs acknowledged %d, not done right %d (goal 0)"
          % (load.failed(), sum(load.scheduled.values()), sum(r["acked"] for r in counts.values()), lost))
    if not args.keep:
        for name, _ in JOINING:
            lab_tool("remove", "--name", args.lab, "--machine", name)
        print("removed: %s" % ", ".join(n for n, _ in JOINING))
    _plot.write(args, "black_friday", _plot.samples_to_rows(load.samples(), end=load.ended), load.phases(), events,
                note="scale.yml api_replicas=%d worker_replicas=%d with api3, worker3 joining; %g req/s"
                % (args.api, args.workers, args.rate))
    return 0 if out.ok and load.failed() == 0 and lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
