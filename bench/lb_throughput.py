#!/usr/bin/env python3
"""Throughput of one API instance through the nginx load balancer vs. directly.

    bench/lb_throughput.py /tmp/dlb-inv/hosts.yml [--instance api1:3000] [--duration 10] [--png PATH | --no-png]

Talks only to the machines of the lab inventory it is given (it refuses an
inventory without `recete_lab_name` and addresses outside private ranges).
Run it from the repository root (ansible.cfg), with the load balancer and the
API instance running (playbooks/lb.yml and the API, or stand-ins).

1. Points the load balancer's upstream at ONE instance, through the role's
   own membership entry point (recete.stack.nginx_lb, tasks_from: members:
   nginx -t, reload, drain), so the figure compares like with like.
2. Load generator: wrk (Debian package) on the controller. Chosen because it
   is a C event loop with a small cost per request - on a lab host the
   generator shares the CPUs with nginx and the API, so a heavier one (hey
   in Go, autocannon in Node) would take more from the system under test -
   and because its Lua `done` hook gives the exact latency percentiles
   (p50/p95/p99; `--latency` alone prints 50/75/90/99) and the error counts
   (connect/read/write/timeout and non-2xx/3xx responses).
   wrk is closed-loop (each connection waits for its answer), so the rate is
   found by a sweep: for each concurrency level, one run straight at the
   instance and one through the load balancer, back to back. A target's
   sustained rate is the highest rate of a run with p95 < the limit (200 ms)
   and no errors; the sweep of a target stops at its first level past that.
   With --rounds N each level is run N times per target, alternating, and
   its figures are the medians (the lab host is shared: noise is real).
3. Prints every run and the ratio LB / direct, then puts the upstream
   members back as they were (also on failure or Ctrl-C).
4. Draws the sweep as a timeline (bench/_plot.py): each wrk run is one
   interval (its req/s, errors/s and p50/p95/p99) and one shaded phase, to
   --png, default bench/out/lb_throughput-<timestamp>.png.

The request is GET /health (no data tier involved): what is measured is the
proxy path (nginx, upstream keep-alive, the extra hop), not the app.
"""
from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _plot  # noqa: E402  (bench/ helper: the timeline picture)

DEFAULTS = {
    "nginx_lb_upstream_name": "recete_api",
    "nginx_lb_http_port": 80,
    "nginx_lb_https_port": 443,
    "nginx_lb_http_redirect": True,
}
LEVELS = [4, 16, 32, 64, 128, 256]

# Printed by wrk at the end of a run: one JSON line (latency in microseconds).
WRK_SCRIPT = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
    .. '"p50":%d,"p95":%d,"p99":%d,"max":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


class BenchError(Exception):
    pass


def run(argv, **kwargs):
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)
    except FileNotFoundError:
        raise BenchError("%s is not installed" % argv[0]) from None
    except subprocess.CalledProcessError as err:
        raise BenchError("%s failed (rc %d):\n%s%s" % (" ".join(argv[:3]), err.returncode, err.stdout[-3000:],
                                                       err.stderr[-3000:])) from None


# --- the lab -----------------------------------------------------------------

class Lab:
    def __init__(self, path):
        self.path = path
        data = json.loads(run(["ansible-inventory", "-i", path, "--list"]).stdout)
        self.hostvars = data.get("_meta", {}).get("hostvars", {})
        self.groups = {name: entry.get("hosts", []) for name, entry in data.items() if isinstance(entry, dict)}
        names = {hv.get("recete_lab_name") for hv in self.hostvars.values()}
        if len(names) != 1 or None in names:
            raise BenchError("%s is not a lab inventory (no recete_lab_name): this benchmark only loads lab machines"
                             % path)
        self.name = names.pop()

    def address(self, host):
        if host not in self.hostvars:
            raise BenchError("%s is not in the inventory" % host)
        address = self.hostvars[host].get("ansible_host", host)
        if not ipaddress.ip_address(address).is_private:
            raise BenchError("%s has a public address %s: refusing to load it" % (host, address))
        return address

    def var(self, host, name):
        return self.hostvars[host].get(name, DEFAULTS.get(name))

    def first(self, group):
        hosts = self.groups.get(group) or []
        if not hosts:
            raise BenchError("the inventory has no host in group %s" % group)
        return hosts[0]


# --- load balancer membership (through the role) --------------------------------

def upstream_file(lab, lb):
    return "/etc/nginx/recete/upstream-%s.conf" % lab.var(lb, "nginx_lb_upstream_name")


def read_members(lab, lb):
    """The current members as (address, state) pairs, from the upstream file."""
    out = run(["ansible", "-i", lab.path, lb, "-b", "-o", "-m", "ansible.builtin.slurp",
               "-a", "src=%s" % upstream_file(lab, lb)]).stdout
    payload = json.loads(out.split("=>", 1)[1])
    text = base64.b64decode(payload["content"]).decode()
    members = re.findall(r"^\s*server\s+(\S+)[^;]*?(\sdown)?;", text, re.M)
    if not members:
        raise BenchError("no server lines in %s on %s" % (upstream_file(lab, lb), lb))
    return [(address, "down" if down else "active") for address, down in members]


def set_members(lab, lb, members):
    """Apply a member list with the role's members entry point (nginx -t, reload, drain)."""
    extra = {
        "nginx_lb_upstream_members": [a for a, _ in members],
        "nginx_lb_upstream_draining": [a for a, s in members if s == "down"],
    }
    play = [{
        "name": "Set the load balancer's members for the benchmark",
        "hosts": lb,
        "become": True,
        "gather_facts": False,
        "tasks": [{"name": "Apply", "ansible.builtin.include_role": {"name": "recete.stack.nginx_lb",
                                                                    "tasks_from": "members"}}],
    }]
    with tempfile.TemporaryDirectory() as tmp:
        playbook = os.path.join(tmp, "members.yml")
        with open(playbook, "w") as handle:
            json.dump(play, handle)
        run(["ansible-playbook", "-i", lab.path, playbook, "-e", json.dumps(extra)])


# --- wrk -----------------------------------------------------------------------

def wrk(url, connections, duration, threads, script):
    out = run(["wrk", "-t", str(min(threads, connections)), "-c", str(connections), "-d", "%ds" % duration,
               "--timeout", "2s", "-s", script, url], timeout=duration + 30).stdout
    line = next((l for l in out.splitlines() if l.startswith("WRK_JSON ")), None)
    if line is None:
        raise BenchError("wrk printed no summary:\n%s" % out)
    r = json.loads(line[len("WRK_JSON "):])
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["errors"] = r["connect"] + r["read"] + r["write"] + r["timeout"]
    r["non2xx"] = r["status"]
    return r


def fmt_ms(us):
    return "%.1f" % (us / 1000.0)


def combine(runs):
    """One figure per level: the median of each rate and percentile, the sum of the errors."""
    def median(values):
        values = sorted(values)
        middle = len(values) // 2
        return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2.0
    combined = dict((key, median([r[key] for r in runs])) for key in ("rps", "p50", "p95", "p99"))
    combined.update(errors=sum(r["errors"] for r in runs), non2xx=sum(r["non2xx"] for r in runs))
    return combined


def sustained(runs, limit_ms):
    ok = [r for r in runs if r["p95"] < limit_ms * 1000 and r["errors"] == 0 and r["non2xx"] == 0]
    return max(ok, key=lambda r: r["rps"]) if ok else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inventory", help="lab inventory (tools/lab up --inventory PATH)")
    parser.add_argument("--instance", help="API instance as host:port (default: first host of group api, port 3000)")
    parser.add_argument("--lb", help="load balancer host (default: first host of group lb)")
    parser.add_argument("--path", default="/health")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (5-15)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="connection counts to sweep")
    parser.add_argument("--rounds", type=int, default=1,
                        help="runs per target and level, alternating; the level's figure is their median")
    parser.add_argument("--p95-limit-ms", type=float, default=200.0)
    parser.add_argument("--https", action="store_true", help="through the LB over HTTPS (default: HTTP on port 80)")
    _plot.add_png_option(parser, "lb_throughput")
    args = parser.parse_args()
    if not 5 <= args.duration <= 15:
        raise BenchError("--duration must be 5-15 seconds (bounded runs)")
    if not shutil.which("wrk"):
        raise BenchError("wrk is not installed (apt-get install wrk)")
    if not 1 <= args.rounds <= 5:
        raise BenchError("--rounds must be 1-5")
    levels = [int(x) for x in args.levels.split(",")]
    if not levels or min(levels) < 1 or max(levels) > 1024:
        raise BenchError("--levels must be connection counts from 1 to 1024")

    lab = Lab(args.inventory)
    lb = args.lb or lab.first("lb")
    instance = args.instance or "%s:3000" % lab.first("api")
    host, _, port = instance.rpartition(":")
    direct_url = "http://%s:%s%s" % (lab.address(host), port, args.path)
    if args.https:
        lb_url = "https://%s:%s%s" % (lab.address(lb), lab.var(lb, "nginx_lb_https_port"), args.path)
    else:
        if lab.var(lb, "nginx_lb_http_redirect"):
            raise BenchError("the load balancer redirects HTTP to HTTPS (nginx_lb_http_redirect); use --https")
        lb_url = "http://%s:%s%s" % (lab.address(lb), lab.var(lb, "nginx_lb_http_port"), args.path)

    print("lab %s: %s via %s vs. %s, wrk %d threads, %d s per run, %d round(s), p95 limit %.0f ms"
          % (lab.name, instance, lb_url, direct_url, args.threads, args.duration, args.rounds, args.p95_limit_ms))
    print("host load average at start: %.1f (1 min) on %s CPUs" % (os.getloadavg()[0], os.cpu_count()))
    before = read_members(lab, lb)
    print("upstream now: %s" % ", ".join("%s%s" % (a, " (down)" if s == "down" else "") for a, s in before))
    results = {"direct": [], "lb": []}
    t0, timeline, phases = time.monotonic(), [], []  # every measured wrk run, for the picture
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        script.write(WRK_SCRIPT)
        script.flush()
        try:
            set_members(lab, lb, [(instance, "active")])
            print("upstream for the benchmark: %s only (nginx -t, reload, drain done)" % instance)
            for url in (direct_url, lb_url):  # warm-up: JIT, connection pools
                wrk(url, 16, 3, args.threads, script.name)
            print("\n%-7s %6s %10s %8s %8s %8s %7s %7s" % ("target", "conns", "req/s", "p50 ms", "p95 ms", "p99 ms",
                                                          "errors", "non2xx"))
            open_targets = {"direct": direct_url, "lb": lb_url}
            for connections in levels:
                runs = {"direct": [], "lb": []}
                for _ in range(args.rounds):  # alternate, so drift on the host hits both alike
                    for name in ("direct", "lb"):
                        if name not in open_targets:
                            continue
                        started = time.monotonic() - t0
                        r = wrk(open_targets[name], connections, args.duration, args.threads, script.name)
                        ended = time.monotonic() - t0
                        timeline.append(_plot.Interval(started, ended, r["requests"], r["errors"] + r["non2xx"],
                                                       r["p50"] / 1e6, r["p95"] / 1e6, r["p99"] / 1e6))
                        phases.append(("%s c%d" % (name, connections), started, ended))
                        runs[name].append(r)
                        print("%-7s %6d %10.0f %8s %8s %8s %7d %7d" % (
                            name, connections, r["rps"], fmt_ms(r["p50"]), fmt_ms(r["p95"]), fmt_ms(r["p99"]),
                            r["errors"], r["non2xx"]))
                        sys.stdout.flush()
                for name, got in runs.items():
                    if not got:
                        continue
                    r = combine(got)
                    r["connections"] = connections
                    results[name].append(r)
                    if r["p95"] >= args.p95_limit_ms * 1000 or r["errors"] or r["non2xx"]:
                        del open_targets[name]
                if not open_targets:
                    break
        finally:
            set_members(lab, lb, before)
            print("\nupstream restored: %s" % ", ".join(a for a, _ in before))

    best = {name: sustained(runs, args.p95_limit_ms) for name, runs in results.items()}
    print("\nsustained rate of one instance with p95 < %.0f ms and no errors%s:"
          % (args.p95_limit_ms, " (medians of %d rounds)" % args.rounds if args.rounds > 1 else ""))
    for name in ("direct", "lb"):
        b = best[name]
        print("  %-7s %s" % (name, "none" if b is None else "%.0f req/s (%d connections, p50 %s / p95 %s / p99 %s ms)"
                             % (b["rps"], b["connections"], fmt_ms(b["p50"]), fmt_ms(b["p95"]), fmt_ms(b["p99"]))))
    if best["direct"] and best["lb"]:
        print("  ratio lb/direct: %.2f" % (best["lb"]["rps"] / best["direct"]["rps"]))
    print("\nhost load average at the end: %.1f (1 min). The generator, nginx and the instance share this host's %s\n"
          "CPUs (and whatever else runs on it): through the LB, nginx takes CPU the instance and wrk would otherwise\n"
          "have, so the ratio is a lower bound for separate machines." % (os.getloadavg()[0], os.cpu_count()))
    _plot.write(args, "lb_throughput", timeline, phases,
                note="wrk sweep of %s (one run per phase: requests/s over the run, its percentiles), "
                "direct vs. through the LB; %d s per run" % (instance, args.duration))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print("bench: %s" % exc, file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
