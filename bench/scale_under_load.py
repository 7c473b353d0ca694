#!/usr/bin/env python3
"""Scale the API 2 -> 5 -> 2 under a constant open-loop load through the load balancer.

    bench/scale_under_load.py INVENTORY [--rate 40] [--settle 8]

Run from the repository root against a lab whose whole stack is deployed
(tools/demo, or the Molecule `stack` lab). Talks only to that lab's machines
(it refuses an inventory without `recete_lab_name`).

Load: an open-loop generator (requests are issued on a fixed schedule,
whatever the answers, and latency is counted from the scheduled time, so a
stall cannot hide behind fewer requests - the "coordinated omission" that a
closed-loop tool such as wrk has). Half GET /items/:id, half POST /items,
over keep-alive connections to the LB's plain-HTTP listener (the lab serves
the API on port 80). Written here because no open-loop generator is packaged
for Debian 12 (wrk2 and vegeta are not) and the rates needed are small.

Prints, per phase (before, 2->5, 5->5 no-change, 5->2, after): requests sent,
non-2xx answers, connection errors, p50/p95/p99. Then the wall time of
scale.yml for 2->5 next to the floor measured in the same run (starting the
same three instances by hand over SSH and waiting for their first healthy
answer), as a ratio, and the time of the no-change re-run.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import subprocess
import sys
import threading
import time

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_inventory(path):
    with open(path, encoding="utf-8") as handle:
        inv = yaml.safe_load(handle)
    if "recete_lab_name" not in inv["all"].get("vars", {}):
        sys.exit("scale_under_load: not a lab inventory (no recete_lab_name): refusing to send load")
    hosts = {}
    for group, body in inv["all"]["children"].items():
        for name, hvars in (body.get("hosts") or {}).items():
            hosts.setdefault(name, dict(hvars or {}, groups=[]))["groups"].append(group)
    return inv["all"]["vars"], hosts


class OpenLoop:
    """Issue requests at a fixed rate from a pool of keep-alive connections."""

    def __init__(self, address, rate, workers=32):
        self.address, self.rate = address, rate
        self.jobs = queue.Queue()
        self.results = []  # (phase, latency_s or None, status or None, error or None)
        self.phase = "before"
        self.stop = threading.Event()
        self.item_id = None
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]

    def start(self):
        self.item_id = self._post(http.client.HTTPConnection(self.address, 80, timeout=10))[1]["id"]
        for thread in self.threads:
            thread.start()
        threading.Thread(target=self._schedule, daemon=True).start()

    def _schedule(self):
        t0, i = time.monotonic(), 0
        while not self.stop.is_set():
            due = t0 + i / self.rate
            time.sleep(max(0.0, due - time.monotonic()))
            self.jobs.put((due, i % 2, self.phase))
            i += 1

    def _post(self, conn):
        body = json.dumps({"name": "bench", "payload": {"t": time.time()}})
        conn.request("POST", "/items", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")

    def _send(self, conn, kind):
        if kind:
            return self._post(conn)[0]
        conn.request("GET", "/items/%s" % self.item_id)
        resp = conn.getresponse()
        resp.read()
        return resp.status

    def _work(self):
        conn, used = http.client.HTTPConnection(self.address, 80, timeout=10), False
        while True:
            due, kind, phase = self.jobs.get()
            stale = False
            try:
                try:
                    status = self._send(conn, kind)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not used:
                        raise
                    # nginx closes idle keep-alive connections when a reload
                    # retires its old workers; a request that meets such a
                    # connection got no answer and was never read, and HTTP
                    # clients resend it on a new connection (RFC 9112 9.3.1).
                    # Counted apart, and retried once.
                    stale = True
                    conn.close()
                    conn = http.client.HTTPConnection(self.address, 80, timeout=10)
                    status = self._send(conn, kind)
                used = True
                self.results.append((phase, time.monotonic() - due, status, "stale-keepalive" if stale else None))
            except (OSError, http.client.HTTPException) as exc:
                self.results.append((phase, None, None, type(exc).__name__))
                conn.close()
                conn, used = http.client.HTTPConnection(self.address, 80, timeout=10), False


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100.0 * (len(values) - 1))))] if values else float("nan")


def scale(inventory, replicas):
    t0 = time.monotonic()
    run = subprocess.run(["ansible-playbook", "-i", inventory, "playbooks/scale.yml", "-e", "api_replicas=%d" % replicas],
                         cwd=REPO, capture_output=True, text=True)
    if run.returncode:
        sys.exit("scale.yml api_replicas=%d failed:\n%s" % (replicas, run.stdout[-4000:]))
    return time.monotonic() - t0


def ssh(login, address, command):
    return subprocess.run(["ssh", "-i", login["ansible_ssh_private_key_file"], "-o", "StrictHostKeyChecking=no",
                           "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                           "%s@%s" % (login["ansible_user"], address), command], check=True,
                          capture_output=True, text=True)


def floor(login, hosts, instances):
    """Start the instances by hand, wait for each one's first healthy answer."""
    t0 = time.monotonic()
    for host, port in instances:
        ssh(login, hosts[host]["ansible_host"], "sudo systemctl start recete-api@%d" % port)
    pending = set(instances)
    while pending:
        for host, port in list(pending):
            try:
                conn = http.client.HTTPConnection(hosts[host]["ansible_host"], port, timeout=1)
                conn.request("GET", "/ready")
                if conn.getresponse().status == 200:
                    pending.discard((host, port))
            except OSError:
                pass
        time.sleep(0.05)
    took = time.monotonic() - t0
    for host, port in instances:
        ssh(login, hosts[host]["ansible_host"], "sudo systemctl disable --now recete-api@%d" % port)
    return took


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inventory")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second (default 40)")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds of load before and after (default 8)")
    args = parser.parse_args()
    login, hosts = load_inventory(args.inventory)
    lb = next(h for h in hosts.values() if "lb" in h["groups"])["ansible_host"]

    scale(args.inventory, 2)
    apis = sorted(n for n, h in hosts.items() if "api" in h["groups"])
    # The three instances a 2 -> 5 scale-out starts (the placement rule).
    new = [(apis[0], 3001), (apis[1], 3001), (apis[0], 3002)]
    floor_s = floor(login, hosts, new)

    load = OpenLoop(lb, args.rate)
    load.start()
    time.sleep(args.settle)
    timings = {}
    for phase, replicas in (("2->5", 5), ("5->5 no change", 5), ("5->2", 2)):
        load.phase = phase
        timings[phase] = scale(args.inventory, replicas)
    load.phase = "after"
    time.sleep(args.settle)
    load.stop.set()
    time.sleep(2)

    print("open-loop load through the LB at %.0f req/s (half GET /items/:id, half POST /items)" % args.rate)
    print("%-16s %7s %8s %10s %10s %8s %8s %8s" % (
        "phase", "sent", "non-2xx", "conn-err", "ka-resent", "p50 ms", "p95 ms", "p99 ms"))
    for phase in ("before", "2->5", "5->5 no change", "5->2", "after"):
        rows = [r for r in load.results if r[0] == phase]
        lat = [r[1] * 1000 for r in rows if r[1] is not None]
        print("%-16s %7d %8d %10d %10d %8.1f %8.1f %8.1f" % (
            phase, len(rows), sum(1 for r in rows if r[2] is not None and not 200 <= r[2] < 300),
            sum(1 for r in rows if r[2] is None), sum(1 for r in rows if r[3] == "stale-keepalive"),
            percentile(lat, 50), percentile(lat, 95), percentile(lat, 99)))
    failed = sum(1 for r in load.results if r[2] is None or not 200 <= r[2] < 300)
    errors = sorted(set(r[3] for r in load.results if r[2] is None))
    print("conn-err: no answer even on a new connection%s" % (" (%s)" % ", ".join(errors) if errors else ""))
    print("ka-resent: met a keep-alive connection nginx closed on reload, answered on a new one")
    print("failed requests in all: %d of %d" % (failed, len(load.results)))
    print("scale.yml 2->5: %.1f s; floor (3 instances started by hand, first healthy answer): %.1f s; ratio %.1fx"
          % (timings["2->5"], floor_s, timings["2->5"] / floor_s))
    print("scale.yml no-change re-run (5->5): %.1f s; 5->2: %.1f s" % (timings["5->5 no change"], timings["5->2"]))


if __name__ == "__main__":
    main()
