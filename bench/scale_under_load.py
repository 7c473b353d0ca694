#!/usr/bin/env python3
"""Scale the API 2 -> 5 -> 2 under a constant open-loop load through the load balancer.

    bench/scale_under_load.py INVENTORY [--rate 40] [--settle 8] [--png PATH | --no-png]

Run from the repository root against a lab whose whole stack is deployed
(tools/demo, or the Molecule `stack` lab). Talks only to that lab's machines
(it refuses an inventory without `recete_lab_name`).

Load: an open-loop generator (requests are issued on a fixed schedule,
whatever the answers, and latency is counted from the scheduled time, so a
stall cannot hide behind fewer requests - the "coordinated omission" that a
closed-loop tool such as wrk has). Half GET /items/:id, half POST /items,
over keep-alive connections to the LB's plain-HTTP listener (the lab serves
the API on port 80): bench/_lab.py's OpenLoop, which reuses idle connections
only after checking them as HTTP clients do and never resends a request that
got no answer (a connection error; `ka-reset` counts those that met a reused
keep-alive connection). Written there because no open-loop generator is
packaged for Debian 12 (wrk2 and vegeta are not) and the rates needed are small.

Prints, per phase (before, 2->5, 5->5 no-change, 5->2, after): requests sent,
non-2xx answers, connection errors, p50/p95/p99. Then the wall time of
scale.yml for 2->5 next to the floor measured in the same run (starting the
same three instances by hand over SSH and waiting for their first healthy
answer), as a ratio, and the time of the no-change re-run. Draws the run as a
timeline (bench/_plot.py: latency and requests/errors per second, the phases
shaded) to --png, default bench/out/scale_under_load-<timestamp>.png.
"""
from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _lab import Lab, LabError, OpenLoop, ssh_argv  # noqa: E402  (bench/ helper)
import _plot  # noqa: E402  (bench/ helper)


def load_inventory(path):
    """(variables of the first host, {host: hostvars + groups}): kept for bench/worker_throughput.py."""
    try:
        lab = Lab(path)
    except LabError as exc:
        sys.exit("scale_under_load: %s" % exc)
    hosts = {name: dict(hvars, groups=[g for g, members in lab.groups.items() if name in members and g != "all"])
             for name, hvars in lab.hostvars.items()}
    return lab.hostvars[sorted(lab.hostvars)[0]], hosts


def ssh(login, address, command):
    """Run a command on a lab machine with the inventory's SSH settings (kept for bench/worker_throughput.py)."""
    return subprocess.run(ssh_argv(login, address) + [command], check=True, capture_output=True, text=True)


def scale(lab, replicas):
    run = lab.playbook("playbooks/scale.yml", extra_vars={"api_replicas": replicas})
    if not run.ok:
        sys.exit("scale.yml api_replicas=%d failed:\n%s" % (replicas, run.stdout[-4000:]))
    return run.seconds


def floor(lab, instances):
    """Start the instances by hand, wait for each one's first healthy answer."""
    t0 = time.monotonic()
    for host, port in instances:
        lab.ssh(host, "sudo systemctl start recete-api@%d" % port)
    pending = set(instances)
    while pending:
        for host, port in list(pending):
            try:
                conn = http.client.HTTPConnection(lab.address(host), port, timeout=1)
                conn.request("GET", "/ready")
                if conn.getresponse().status == 200:
                    pending.discard((host, port))
            except OSError:
                pass
        time.sleep(0.05)
    took = time.monotonic() - t0
    for host, port in instances:
        lab.ssh(host, "sudo systemctl disable --now recete-api@%d" % port)
    return took


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inventory")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second (default 40)")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds of load before and after (default 8)")
    _plot.add_png_option(parser, "scale_under_load")
    args = parser.parse_args()
    try:
        lab = Lab(args.inventory)
        lb = lab.address(lab.first("lb"))
        apis = lab.hosts("api")
    except LabError as exc:
        sys.exit("scale_under_load: %s" % exc)

    scale(lab, 2)
    # The three instances a 2 -> 5 scale-out starts (the placement rule).
    new = [(apis[0], 3001), (apis[1], 3001), (apis[0], 3002)]
    floor_s = floor(lab, new)

    load = OpenLoop(lb, args.rate)
    load.start()
    time.sleep(args.settle)
    timings = {}
    for phase, replicas in (("2->5", 5), ("5->5 no change", 5), ("5->2", 2)):
        load.phase = phase
        timings[phase] = scale(lab, replicas)
    load.phase = "after"
    time.sleep(args.settle)
    load.stop()

    print("open-loop load through the LB at %.0f req/s (half GET /items/:id, half POST /items)" % args.rate)
    print("%-16s %7s %8s %10s %10s %8s %8s %8s" % (
        "phase", "sent", "non-2xx", "conn-err", "ka-reset", "p50 ms", "p95 ms", "p99 ms"))
    for phase in ("before", "2->5", "5->5 no change", "5->2", "after"):
        row = load.stats(phase)
        print("%-16s %7d %8d %10d %10d %8.1f %8.1f %8.1f" % (
            phase, row["sent"], row["non2xx"], row["conn_err"], row["ka_reset"], row["p50"], row["p95"], row["p99"]))
    errors = sorted(set(r.error for r in load.results if r.error))
    print("conn-err: no answer, never resent%s" % (" (%s)" % ", ".join(errors) if errors else ""))
    print("ka-reset: of conn-err, those sent on a reused keep-alive connection (e.g. one nginx closed on reload)")
    print("failed requests in all: %d of %d" % (load.failed(), len(load.results)))
    print("scale.yml 2->5: %.1f s; floor (3 instances started by hand, first healthy answer): %.1f s; ratio %.1fx"
          % (timings["2->5"], floor_s, timings["2->5"] / floor_s))
    print("scale.yml no-change re-run (5->5): %.1f s; 5->2: %.1f s" % (timings["5->5 no change"], timings["5->2"]))
    _plot.write(args, "scale_under_load", _plot.samples_to_rows(load.samples(), end=load.ended), load.phases(),
                note="open loop %.0f req/s through the LB; scale.yml 2->5 %.0f s, 5->5 %.0f s, 5->2 %.0f s"
                % (args.rate, timings["2->5"], timings["5->5 no change"], timings["5->2"]))


if __name__ == "__main__":
    main()
