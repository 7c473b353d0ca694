#!/usr/bin/env python3
"""Deploy, a failing deploy that rolls back, and a rollback, under constant open-loop load.

    bench/deploy_under_load.py INVENTORY [--rate 50] [--settle 8] [--canary-seconds 10]
                                         [--job-share 0.1] [--job-timeout 120] [--plain-rollback]
                                         [--png PATH | --no-png]

Run from the repository root against a lab whose whole stack is deployed
(site.yml), running release 1.0.0 (the bench deploys 1.0.0 first, untimed and
unloaded, when something else runs). Talks only to that lab's machines: it
refuses an inventory without `recete_lab_name` (bench/_lab.py).

Load (bench/_lab.py OpenLoop): --rate requests/s on a fixed schedule through
the load balancer's plain-HTTP listener (port 80), over keep-alive
connections; --job-share of them POST /jobs a `sum` job whose result is
known, the others alternate GET /items/:id and POST /items. A request with no
answer is never resent: it is a connection error (`ka-reset`: those of them
that met a reused keep-alive connection). Latency runs from the scheduled time.

Phases: before (--settle s) | deploy.yml -e app_version=1.1.0 | between |
deploy.yml -e app_version=1.2.0-bad, which must FAIL and roll back (the 1.1.0
artifact repacked with a GET /ready that always answers 503, written as
.cache/release/recete-app-1.2.0-bad.tar.gz with its .sha256; an existing valid
one is reused, so every lab deploys the same bytes under that version) |
between | rollback.yml -e app_version=1.0.0 (plain rollback.yml with
--plain-rollback) | after. Every operation gets -e rollout_canary_seconds.

Prints per phase: requests sent, non-2xx, connection errors, p50/p95/p99,
which releases answered, sum jobs acknowledged (enqueue answered 2xx) and
completed with the right result (read back with GET /jobs/:id once the load
stopped). Then the playbooks' wall times next to a FLOOR measured in the same
run: the same number of API instances of the target release started by hand
over SSH on a port the engine does not use (3003 and up), timed to their
first healthy GET /ready, then stopped and their drop-ins removed. For the
bad release the floor is the readiness timeout the engine must wait before it
can tell (api_ready_timeout). Then the run as a timeline picture
(bench/_plot.py: latency and requests/errors per second, phases shaded) to
--png, default bench/out/deploy_under_load-<timestamp>.png. Last line:
"failed requests: N, lost jobs: M"; exit 1 when either is not zero or an
operation did not end as expected.
"""
from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import http.client
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _lab import REPO, Lab, LabError, OpenLoop  # noqa: E402  (bench/ helper)
import _plot  # noqa: E402  (bench/ helper)

OLD, NEW, BAD = "1.0.0", "1.1.0", "1.2.0-bad"
RELEASE_DIR = os.path.join(REPO, ".cache", "release")
BUILD_SCRIPT = os.path.join(REPO, "examples", "app", "scripts", "build-release.sh")
RELEASES = "/opt/recete/releases"
FLOOR_FIRST_PORT = 3003
FLOOR_MARK = "# bench/deploy_under_load.py floor instance"
READY_ROUTE = "app.get('/ready', async (c) => {"
NEVER_READY = ("\n    // bench/deploy_under_load.py: a bad release, never ready\n"
               "    return c.json({ status: 'not_ready', ...ident, checks: { bench: 'never ready' } }, 503);")


# --- artifacts -----------------------------------------------------------------------

def artifact(version):
    return os.path.join(RELEASE_DIR, "recete-app-%s.tar.gz" % version)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_ok(path):
    try:
        with open(path + ".sha256", encoding="utf-8") as handle:
            return handle.read().split()[0] == sha256(path)
    except (OSError, IndexError):
        return False


def ensure_artifact(version):
    """The release artifact of `version`, built from examples/app the way the lab's engine does when missing."""
    path = artifact(version)
    if not os.path.exists(path):
        subprocess.run([BUILD_SCRIPT, RELEASE_DIR], env=dict(os.environ, APP_VERSION=version), check=True,
                       capture_output=True, text=True)
    if not checksum_ok(path):
        raise LabError("%s does not match its .sha256: remove both and run again" % path)
    return path


def member_text(path, name):
    with tarfile.open(path) as tar:
        top = tar.getmembers()[0].name.split("/")[0]
        handle = tar.extractfile("%s/%s" % (top, name))
        return handle.read().decode() if handle else None


def bad_artifact_valid(path, good):
    """An existing bad artifact is reused when its checksum, VERSION and a patched /ready hold."""
    try:
        return (checksum_ok(path) and member_text(path, "VERSION").strip() == BAD
                and member_text(path, "src/api.js") != member_text(good, "src/api.js"))
    except (OSError, KeyError, tarfile.TarError, AttributeError):
        return False


def make_bad_artifact(good):
    """Unpack the 1.1.0 artifact, make GET /ready always 503, repack it as 1.2.0-bad (reproducibly)."""
    path = artifact(BAD)
    if bad_artifact_valid(path, good):
        return path, "reused"
    with tempfile.TemporaryDirectory(prefix="recete-bad-release.") as tmp:
        with tarfile.open(good) as tar:
            top = tar.getmembers()[0].name.split("/")[0]
            tar.extractall(tmp, filter="data")
        root = os.path.join(tmp, "recete-app-%s" % BAD)
        os.rename(os.path.join(tmp, top), root)
        api = os.path.join(root, "src", "api.js")
        with open(api, encoding="utf-8") as handle:
            source = handle.read()
        if source.count(READY_ROUTE) != 1:
            raise LabError("%s: the /ready route (%r) is not where the bench expects it" % (api, READY_ROUTE))
        with open(api, "w", encoding="utf-8") as handle:
            handle.write(source.replace(READY_ROUTE, READY_ROUTE + NEVER_READY))
        with open(os.path.join(root, "VERSION"), "w", encoding="utf-8") as handle:
            handle.write(BAD + "\n")

        def normalise(info):
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            return info

        partial = path + ".partial"
        with open(partial, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as out:
                    out.add(root, arcname=os.path.basename(root), filter=normalise)
        os.replace(partial, path)
    with open(path + ".sha256", "w", encoding="utf-8") as handle:
        handle.write("%s  %s\n" % (sha256(path), os.path.basename(path)))
    return path, "built"


# --- the stack ------------------------------------------------------------------------

def versions_through_lb(lb, port, samples=12):
    """Releases that answer GET /health through the load balancer (X-App-Version)."""
    seen = collections.Counter()
    conn = http.client.HTTPConnection(lb, port, timeout=10)
    for _ in range(samples):
        conn.request("GET", "/health")
        resp = conn.getresponse()
        resp.read()
        seen[resp.getheader("X-App-Version")] += 1
    conn.close()
    return seen


def running_api_ports(lab, host):
    out = lab.ssh(host, "systemctl list-units 'recete-api@*' --state=running --no-legend --plain").stdout
    return sorted(int(m) for m in re.findall(r"recete-api@(\d+)\.service", out))


def dropin(port):
    return "/etc/systemd/system/recete-api@%d.service.d" % port


def floor_cleanup(lab, host, ports):
    """Stop the floor's instances and remove their drop-ins (only those the bench wrote: they carry its mark)."""
    script = "".join(
        "if grep -qF '{m}' {d}/release.conf 2>/dev/null; then systemctl stop recete-api@{p}; rm -rf {d}; "
        "systemctl reset-failed recete-api@{p} 2>/dev/null; fi; ".format(m=FLOOR_MARK, p=p, d=dropin(p))
        for p in ports) + "systemctl daemon-reload; true"
    lab.ssh(host, "sudo sh -c %s" % shlex.quote(script), check=False)


def floor(lab, release, placement, timeout=120.0):
    """Start placement {host: count} instances of `release` by hand, time them to their first healthy /ready."""
    instances = []
    for host, count in sorted(placement.items()):
        busy = set(running_api_ports(lab, host))
        ports = [p for p in range(FLOOR_FIRST_PORT, FLOOR_FIRST_PORT + 20) if p not in busy][:count]
        instances += [(host, p) for p in ports]
    try:
        t0 = time.monotonic()
        for host in sorted(placement):
            ports = [p for h, p in instances if h == host]
            script = "set -e; test -d {r}/{v}; ".format(r=RELEASES, v=release) + "".join(
                "mkdir -p {d}; printf '{m}\\n[Service]\\nWorkingDirectory={r}/{v}\\nEnvironment=APP_RELEASE={v}\\n' "
                "> {d}/release.conf; ".format(d=dropin(p), r=RELEASES, v=release, m=FLOOR_MARK) for p in ports)
            script += "systemctl daemon-reload; " + "".join("systemctl start recete-api@%d; " % p for p in ports)
            lab.ssh(host, "sudo sh -c %s" % shlex.quote(script))
        pending = set(instances)
        while pending:
            if time.monotonic() - t0 > timeout:
                raise LabError("floor: %s not ready within %.0f s" % (sorted(pending), timeout))
            for host, port in sorted(pending):
                try:
                    conn = http.client.HTTPConnection(lab.address(host), port, timeout=1)
                    conn.request("GET", "/ready")
                    resp = conn.getresponse()
                    body = resp.read()
                    conn.close()
                    if resp.status == 200 and json.loads(body).get("status") == "ready":
                        pending.discard((host, port))
                except (OSError, http.client.HTTPException, ValueError):
                    pass
            time.sleep(0.05)
        return time.monotonic() - t0, len(instances)
    finally:
        for host in sorted(placement):
            floor_cleanup(lab, host, [p for h, p in instances if h == host])


def _result_blocks(lines, marker):
    """The results Ansible printed after `marker` (e.g. "FAILED! => "), parsed (YAML or JSON callback format)."""
    blocks = []
    for i, line in enumerate(lines):
        if marker not in line:
            continue
        text = [line.split(marker, 1)[1]]
        for following in lines[i + 1:]:
            if not following.startswith((" ", "\t")):
                break
            text.append(following)
        try:
            blocks.append(yaml.safe_load(textwrap.dedent("\n".join(text[1:])) if not text[0].strip()
                                         else text[0]) or {})
        except yaml.YAMLError:
            blocks.append({"msg": " ".join(t.strip() for t in text)})
    return blocks


def engine_summary(run):
    """The engine's summary lines (its last "Summary" task) and the last failure message of a run."""
    lines, summary = run.stdout.splitlines(), []
    for i, line in enumerate(lines):
        if line.startswith("TASK [") and ": Summary]" in line:
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith(("TASK [", "PLAY ", "RUNNING"))),
                       len(lines))
            for block in _result_blocks(lines[i + 1:end], "] => "):
                msg = block.get("msg") if isinstance(block, dict) else None
                if msg:
                    summary = msg if isinstance(msg, list) else [str(msg)]
    failures = [b for b in _result_blocks(lines, "FAILED! => ") if isinstance(b, dict)]
    failure = str(failures[-1].get("msg", "")) if failures else ""
    return summary, " ".join(failure.split())[:500]


# --- the bench -------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inventory")
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second (default 50)")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds of load before, between and after (default 8)")
    parser.add_argument("--canary-seconds", type=float, default=10.0, help="-e rollout_canary_seconds (default 10)")
    parser.add_argument("--job-share", type=float, default=0.1, help="share of requests that enqueue a sum job (0.1)")
    parser.add_argument("--job-timeout", type=float, default=120.0, help="seconds to wait for the jobs' results (120)")
    parser.add_argument("--plain-rollback", action="store_true",
                        help="run rollback.yml without -e app_version (the engine picks the previous release)")
    parser.add_argument("--playbook-timeout", type=float, default=1200.0, help="seconds per playbook (1200)")
    _plot.add_png_option(parser, "deploy_under_load")
    args = parser.parse_args()
    if not 0 < args.rate <= 500 or not 0 <= args.job_share <= 1 or args.settle < 0:
        parser.error("--rate must be in (0, 500], --job-share in [0, 1], --settle >= 0")

    try:
        lab = Lab(args.inventory)
        lb = lab.address(lab.first("lb"))
        lb_port = int(lab.var(lab.first("lb"), "nginx_lb_http_port", 80))
        apis = lab.hosts("api")
        if not apis:
            raise LabError("the inventory has no host in group api")
        logdir = tempfile.mkdtemp(prefix="deploy_under_load-")
        for host in apis:  # a floor instance an interrupted run left behind
            floor_cleanup(lab, host, range(FLOOR_FIRST_PORT, FLOOR_FIRST_PORT + 4))
        good = ensure_artifact(NEW)
        bad, how = make_bad_artifact(good)
        print("artifacts: %s; %s (%s); playbook logs in %s" % (os.path.relpath(good, REPO),
                                                              os.path.relpath(bad, REPO), how, logdir))
        running = versions_through_lb(lb, lb_port)
        if set(running) != {OLD}:
            print("the lab runs %s: deploying %s first (untimed, no load)" % (dict(running), OLD))
            prep = lab.playbook("deploy.yml", extra_vars={"app_version": OLD, "rollout_canary_seconds": 0},
                                timeout=args.playbook_timeout, log=os.path.join(logdir, "0-prepare.log"))
            if not prep.ok:
                raise LabError("deploy.yml -e app_version=%s failed:\n%s" % (OLD, prep.tail()))
        placement = {host: len(running_api_ports(lab, host)) for host in apis}
        placement = {h: n for h, n in placement.items() if n}
    except (LabError, subprocess.CalledProcessError) as exc:
        sys.exit("deploy_under_load: %s" % (exc.stderr if isinstance(exc, subprocess.CalledProcessError) else exc))

    canary = {"rollout_canary_seconds": "%g" % args.canary_seconds}
    rollback_vars = dict(canary) if args.plain_rollback else dict(canary, app_version=OLD)
    operations = [  # phase name, playbook, extra vars, should it succeed
        ("deploy %s->%s" % (OLD, NEW), "deploy.yml", dict(canary, app_version=NEW), True),
        ("bad %s" % BAD, "deploy.yml", dict(canary, app_version=BAD), False),
        ("rollback ->%s" % ("previous" if args.plain_rollback else OLD), "rollback.yml", rollback_vars, True),
    ]
    phases, runs, floors, unexpected = ["before"], {}, {}, []
    # Bounded: the load stops at the latest after every playbook's timeout and the settles.
    load = OpenLoop(lb, args.rate, port=lb_port, job_share=args.job_share,
                    max_seconds=len(operations) * args.playbook_timeout + 4 * args.settle + 300)
    load.start()
    try:
        time.sleep(args.settle)
        for index, (phase, playbook, extra, should_pass) in enumerate(operations):
            load.phase = phase
            phases.append(phase)
            run = lab.playbook(playbook, extra_vars=extra, timeout=args.playbook_timeout,
                               log=os.path.join(logdir, "%d-%s.log" % (index + 1, phase.split()[0])))
            runs[phase] = run
            summary, failure = engine_summary(run)
            if run.ok != should_pass or (not should_pass and not any("rolled back" in s for s in summary)):
                unexpected.append("%s: %s (rc %s) %s" % (phase, "failed" if not run.ok else "succeeded", run.rc,
                                                        failure or run.tail(600)))
            between = "after" if index == len(operations) - 1 else "between %d" % (index + 1)
            load.phase = between
            phases.append(between)
            t0 = time.monotonic()
            if index == 0:
                # The floors, under the same load, while the engine is idle.
                for release in (NEW, OLD):
                    try:
                        floors[release] = floor(lab, release, placement)
                    except LabError as exc:
                        unexpected.append("floor %s: %s" % (release, exc))
            time.sleep(max(0.0, args.settle - (time.monotonic() - t0)))
    finally:
        load.stop()
    jobs = load.check_jobs(timeout=args.job_timeout)
    # Who answered: the bad release never (its instance never joins the load balancer), and the
    # release each operation left behind alone in the quiet phase after it.
    wanted = {"before": OLD, "between 1": NEW, "between 2": NEW, "after": OLD}
    for phase in phases:
        versions = set(load.stats(phase)["versions"])
        if BAD in versions or (phase in wanted and versions - {wanted[phase]}):
            unexpected.append("%s: answered by %s (expected %s)" % (phase, ", ".join(sorted(versions)),
                                                                   wanted.get(phase, "no %s" % BAD)))

    # --- report
    print()
    print("open-loop load through the LB at %.0f req/s for %.0f s (%.0f %% sum jobs, the rest half GET /items/:id, "
          "half POST /items); no request is ever resent" % (args.rate, sum(load.scheduled.values()) / args.rate,
                                                            100 * args.job_share))
    head = "%-20s %6s %7s %8s %8s %7s %7s %7s %6s %6s  %s"
    print(head % ("phase", "sent", "non-2xx", "conn-err", "ka-reset", "p50 ms", "p95 ms", "p99 ms",
                  "jobs", "right", "answered by"))
    total = collections.Counter()
    for phase in phases:
        s = load.stats(phase)
        j = jobs.get(phase, collections.Counter())
        for key in ("sent", "non2xx", "conn_err", "ka_reset"):
            total[key] += s[key]
        total["acked"] += j["acked"]
        total["right"] += j["done_right"]
        print("%-20s %6d %7d %8d %8d %7.1f %7.1f %7.1f %6d %6d  %s" % (
            phase, s["sent"], s["non2xx"], s["conn_err"], s["ka_reset"], s["p50"], s["p95"], s["p99"],
            j["acked"], j["done_right"], " ".join("%s:%d" % kv for kv in sorted(s["versions"].items()))))
        extra = [("%s x%d" % kv) for kv in sorted(s["errors"].items())] + [
            ("HTTP %s x%d" % kv) for kv in sorted(s["statuses"].items())]
        if extra:
            print("%-20s   ^ %s" % ("", ", ".join(extra)))
    print("%-20s %6d %7d %8d %8d %7s %7s %7s %6d %6d" % ("all", total["sent"], total["non2xx"], total["conn_err"],
                                                       total["ka_reset"], "", "", "", total["acked"], total["right"]))
    print("jobs: sum jobs whose enqueue was answered 2xx / read back completed with the right result "
          "(GET /jobs/:id); ka-reset: connection errors on a reused keep-alive connection (in conn-err)")
    print("connections opened: %d; idle ones found closed before reuse (not errors): %d"
          % (load.new_connections, load.stale_dropped))

    print()
    ready_timeout = float(lab.var(apis[0], "api_ready_timeout", 60))
    print("%-22s %9s  %-44s %s" % ("operation", "playbook", "floor", "playbook / floor"))
    for phase, _, _, _ in operations:
        run = runs.get(phase)
        if run is None:
            continue
        summary, _ = engine_summary(run)
        if phase.startswith("bad"):
            floor_s, what = ready_timeout, "readiness timeout (api_ready_timeout): %.0f s" % ready_timeout
            ratio = "%.1fx" % (run.seconds / floor_s)
        else:
            release = NEW if phase.startswith("deploy") else OLD
            took = floors.get(release)
            floor_s = took[0] if took else None
            what = "%d x %s API instance(s) by hand: %.1f s" % (took[1], release, took[0]) if took else "not measured"
            ratio = ("%.1fx (%.1fx without the %.0f s canary watch)" % (
                run.seconds / floor_s, (run.seconds - args.canary_seconds) / floor_s, args.canary_seconds)
                if floor_s else "")
        print("%-22s %7.1f s  %-44s %s" % (phase, run.seconds, what, ratio))
        for line in summary[:2] or ["rc %s" % run.rc]:
            print("%-22s %9s  engine: %s" % ("", "", line))

    failed = load.failed()
    lost = sum(j["acked"] - j["done_right"] for j in jobs.values())
    _plot.write(args, "deploy_under_load", _plot.samples_to_rows(load.samples(), end=load.ended), load.phases(),
                note="open loop %.0f req/s through the LB (%.0f %% sum jobs); %s; failed requests %d, lost jobs %d"
                % (args.rate, 100 * args.job_share, ", ".join("%s %.0f s" % (p, r.seconds) for p, r in runs.items()),
                   failed, lost))
    for note in unexpected:
        print("UNEXPECTED: %s" % note)
    print("failed requests: %d, lost jobs: %d" % (failed, lost))
    sys.exit(1 if failed or lost or unexpected else 0)


if __name__ == "__main__":
    main()
