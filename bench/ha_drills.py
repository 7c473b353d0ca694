#!/usr/bin/env python3
"""High-availability drills as a benchmark: one fault at a time under an open-loop load.

    .venv/bin/python bench/ha_drills.py --lab NAME [--rate 50] [--faults replica,pooler,primary,switchover,lb]
                                        [--png PATH | --no-png]

Runs on the controller against a running lab where site.yml was applied
(`tools/lab up --name NAME` then site.yml; bench/failover.py drills Redis).
For each fault, a load of reads and writes (bench/_lab.py OpenLoop: a client
that does not resend) runs 5 s before, through the fault, and 5 s after it
was repaired, and the bench prints:

- detection: seconds from the fault until the stack acted on it - every API
  instance's /ready names the stopped replica (replica), Patroni names a new
  running leader (primary, switchover), the floating address is on the other
  load balancer (lb); a pooler is left per connection, at once (pooler, no
  figure);
- recovery: seconds from the fault until the last failed request (0 when
  none failed);
- failed requests, split into reads and writes, and lost acknowledged
  writes: POSTs answered 201 whose row is not on the primary afterwards
  (rows found beyond the acknowledged ones are writes whose answer was lost).

The faults: `replica` stops PostgreSQL on a replica (Patroni's unit under
Patroni), `pooler` stops PgBouncer on the first pooler host, `primary`
SIGKILLs Patroni and PostgreSQL on the leader (repair: Patroni started again,
the member rejoins as a replica), `switchover` runs playbooks/switchover.yml
back to the inventory's primary, `lb` SIGKILLs keepalived and nginx on the
load balancer holding the floating address (the load then goes through that
address; needs two load balancers). Every fault is repaired before the next. One timeline of all of
them (bench/_plot.py) goes to --png, default bench/out/ha_drills-<time>.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _plot  # noqa: E402  (bench/ helper)
from _lab import Lab, LabError, OpenLoop, lab_inventory  # noqa: E402  (bench/ helper)

FAULTS = ("replica", "pooler", "primary", "switchover", "lb")
PATRONI_UNIT = "patroni@15-main"


def api_endpoints(lab):
    """(address, port) of every running API instance, from systemd on each API host."""
    ends = []
    for host in lab.hosts("api"):
        units = lab.ssh(host, "systemctl list-units --plain --no-legend --state=active 'recete-api@*.service'"
                              " | awk '{print $1}'").stdout.split()
        ends += [(lab.address(host), int(u.split("@")[1].split(".")[0])) for u in units]
    return ends


def replica_states(ends):
    states = []
    for address, port in ends:
        try:
            with urllib.request.urlopen("http://%s:%d/ready" % (address, port), timeout=3) as r:
                states.append(json.loads(r.read()).get("replicas", {}))
        except (OSError, ValueError):
            states.append({})
    return states


def vip(lab):
    """The lab's floating address: .250 of the first load balancer's /24 (inventories/lab/group_vars/all/lb.yml)."""
    return lab.address(lab.first("lb")).rsplit(".", 1)[0] + ".250"


def vip_holder(lab, address):
    holders = [h for h in lab.hosts("lb")
               if lab.ssh(h, "ip -4 -o addr show | grep -q ' %s/'" % address, check=False).returncode == 0]
    return holders[0] if len(holders) == 1 else None


def wait(predicate, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(step)
    return None


def patroni(lab):
    return bool(lab.var(lab.first("postgres"), "postgresql_patroni", False))


def leader(lab, among=None):
    """The running leader as Patroni says (asking `among` only; a killed leader stays listed
    as running until its key expires), or the inventory's primary without Patroni."""
    members = among or lab.hosts("postgres")
    if not patroni(lab):
        return next(h for h in members if lab.var(h, "postgresql_member_role") == "primary")
    for host in members:
        out = lab.ssh(host, "curl -sf --max-time 2 http://%s:8008/cluster" % lab.address(host), check=False)
        if out.returncode == 0:
            return next((m["name"] for m in json.loads(out.stdout)["members"]
                         if m["role"] == "leader" and m["state"] == "running" and m["name"] in members), None)
    return None


def rows_written(lab, tag):
    """The load's POSTed rows on the leader (the seed item that start() writes has no seq)."""
    sql = "SELECT count(*) FROM items WHERE payload->>'run' = '%s' AND payload ? 'seq'" % tag
    return int(lab.ssh(leader(lab), "sudo -u postgres psql -d recete -XAtc \"%s\"" % sql).stdout.strip())


def server_unit(lab):
    return PATRONI_UNIT if patroni(lab) else "postgresql@*-main"


def drill(lab, fault, rate, events):
    """One fault under load; returns its figures."""
    ends = api_endpoints(lab)
    victim, target = None, lab.address(lab.first("lb"))
    if fault == "replica":
        victim = [h for h in lab.hosts("postgres") if h != leader(lab)][-1]
        entry = "recete_ro_" + victim
    elif fault == "pooler":
        victim = lab.first("pgbouncer")
    elif fault in ("primary", "switchover"):
        if not patroni(lab):
            raise LabError("the %s drill needs PostgreSQL under Patroni (postgresql_patroni)" % fault)
        victim = leader(lab)
        home = next(h for h in lab.hosts("postgres") if lab.var(h, "postgresql_member_role") == "primary")
        if fault == "switchover" and victim == home:
            raise LabError("the switchover drill hands the lead back to %s, which leads already: "
                           "run it after the primary drill" % home)
    else:
        target = vip(lab)
        victim = vip_holder(lab, target)
        if victim is None:
            raise LabError("no single load balancer holds %s: is keepalived_virtual_ipv4 set?" % target)
    tag = "ha-%s-%d" % (fault, int(time.time()))
    load = OpenLoop(target, rate, tag=tag, timeout=5.0)
    load.phase = "before"
    load.start()
    detected = None
    try:
        time.sleep(5)
        load.phase = fault
        t_fault = time.monotonic()
        events.append(("%s: %s" % (fault, victim), t_fault - load.t0))
        if fault == "replica":
            lab.ssh(victim, "sudo systemctl stop '%s'" % server_unit(lab))
            detected = wait(lambda: all(s.get(entry, "").startswith("down") for s in replica_states(ends)), 30)
        elif fault == "pooler":
            lab.ssh(victim, "sudo systemctl stop pgbouncer")
            time.sleep(5)
        elif fault == "primary":
            lab.ssh(victim, "sudo systemctl kill --kill-whom=all --signal=SIGKILL %s" % PATRONI_UNIT)
            survivors = [h for h in lab.hosts("postgres") if h != victim]
            detected = wait(lambda: leader(lab, survivors) is not None, 90, step=0.25)
        elif fault == "switchover":
            run = lab.playbook("playbooks/switchover.yml", "-e", "candidate=%s" % home, timeout=600)
            if not run.ok:
                raise LabError("switchover.yml failed:\n" + run.tail())
            detected = wait(lambda: leader(lab) == home, 30, step=0.25)
        else:
            lab.ssh(victim, "sudo systemctl kill -s KILL keepalived nginx")
            detected = wait(lambda: vip_holder(lab, target) not in (None, victim), 30)
        time.sleep(5)
        repair = {"replica": "sudo systemctl start '%s'" % server_unit(lab), "pooler": "sudo systemctl start pgbouncer",
                  "primary": "sudo systemctl start %s" % PATRONI_UNIT, "switchover": "true",
                  "lb": "sudo systemctl reset-failed nginx keepalived; sudo systemctl start nginx keepalived"}[fault]
        lab.ssh(victim, repair)
        if fault in ("primary", "switchover"):   # back as a replica (pg_rewind if it diverged)
            wait(lambda: lab.ssh(victim, "curl -sf --max-time 2 http://%s:8008/replica" % lab.address(victim),
                                 check=False).returncode == 0, 120, step=1.0)
        load.phase = "repaired"
        time.sleep(5)
    finally:
        load.stop()
    failed = [r for r in load.results if r.error or not 200 <= (r.status or 0) < 300]
    fault_at = t_fault - load.t0
    acked = sum(1 for r in load.results if r.kind == "post" and r.status == 201)
    found = rows_written(lab, tag)
    return {
        "fault": fault, "victim": victim, "requests": len(load.results),
        "detection": None if detected is None else detected - t_fault,
        "recovery": max([r.at - fault_at for r in failed if r.at >= fault_at], default=0.0),
        "failed_reads": sum(1 for r in failed if r.kind == "get"),
        "failed_writes": sum(1 for r in failed if r.kind == "post"),
        "failed_before": sum(1 for r in failed if r.phase == "before"),
        "lost_writes": max(0, acked - found), "unanswered_writes": max(0, found - acked),
        "samples": load.samples(), "phases": load.phases(), "ended": load.ended,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", required=True, help="name of a running lab (tools/lab list)")
    parser.add_argument("--rate", type=float, default=50.0, help="requests/s, half reads, half writes (50)")
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated, of: %s" % ", ".join(FAULTS))
    _plot.add_png_option(parser, "ha_drills")
    args = parser.parse_args()
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown or not faults:
        parser.error("--faults: unknown %s (choose from %s)" % (", ".join(unknown) or "nothing", ", ".join(FAULTS)))
    if args.rate <= 0:
        parser.error("--rate must be positive")
    lab = Lab(lab_inventory(args.lab))
    if "lb" in faults and len(lab.hosts("lb")) < 2:
        print("lb: skipped, the lab has one load balancer (tools/lab add --machine lb2 --groups lb, then lb.yml)")
        faults.remove("lb")
    if not patroni(lab):
        for fault in ("primary", "switchover"):
            if fault in faults:
                print("%s: skipped, PostgreSQL does not run under Patroni" % fault)
                faults.remove(fault)
    results, rows, phases, events, offset = [], [], [], [], 0.0
    for fault in faults:
        fault_events = []
        figures = drill(lab, fault, args.rate, fault_events)
        results.append(figures)
        # One timeline: each drill's samples shifted to follow the previous one's.
        rows += [r._replace(start=r.start + offset, end=r.end + offset)
                 for r in _plot.samples_to_rows(figures["samples"], end=figures["ended"])]
        phases += [(name, start + offset, end + offset) for name, start, end in figures["phases"]]
        events += [(name, t + offset) for name, t in fault_events]
        offset += figures["ended"] + 1.0
    print("%-8s %-11s %9s %9s %7s %7s %7s %6s %9s" % ("fault", "victim", "detection", "recovery", "reads",
                                                    "writes", "before", "lost", "requests"))
    for f in results:
        print("%-8s %-11s %9s %8.2fs %7d %7d %7d %6d %9d" % (
            f["fault"], f["victim"], "-" if f["detection"] is None else "%.2fs" % f["detection"], f["recovery"],
            f["failed_reads"], f["failed_writes"], f["failed_before"], f["lost_writes"], f["requests"]))
    print("(reads/writes/before: failed requests; lost: acknowledged writes missing on the primary; "
          "rows written without an answer: %s)" % ", ".join("%s %d" % (f["fault"], f["unanswered_writes"])
                                                            for f in results))
    _plot.write(args, "ha_drills", _plot.fill_gaps(rows), phases, events,
                note="rate %g req/s through the load balancer (the floating address for lb)" % args.rate)


if __name__ == "__main__":
    try:
        main()
    except LabError as exc:
        sys.exit("ha_drills: %s" % exc)
