#!/usr/bin/env python3
"""How fast one worker process drains a full queue, on loopback.

    bench/worker_drain.py [--jobs 20000] [--concurrency 1,5,20] [--no-durable] [--baseline DIR]
                          [--png PATH | --no-png]

Starts the test stack of examples/app (scripts/bench-stack.mjs: PostgreSQL
behind PgBouncer in transaction mode, Redis behind Sentinel, random loopback
ports, a temp dir; Postgres with fsync and synchronous_commit on, as in
production, unless --no-durable). For each concurrency it fills the queue
first (JOBS `sum` jobs with BullMQ addBulk, scripts/fill-queue.mjs), then
starts ONE real worker (`node src/worker.js`, WORKER_CONCURRENCY=N, metrics on)
and times it until every job is completed, i.e. its result row is in
Postgres and BullMQ acknowledged it.

Prints per concurrency: jobs/s (first to last result, from job_results'
processed_at), the wall time, and the CPU each process used while draining
(100 % = one core): the worker, Postgres (all backends), PgBouncer, Redis.
The machine's cores bound the sum: what saturates first is the bottleneck.
bench/worker_throughput.py measures the deployed lab through the load
balancer instead (bounded by its enqueue rate). Target: >= 100 jobs/s per
worker; this bench looks for the ceiling. Figures only, no timing asserts;
exit 1 if a job is missing in Postgres or failed. Draws the run as a
timeline (bench/_plot.py): one interval per concurrency (jobs/s from the
first to the last result, failed jobs/s) in one shaded phase (filling the
queue, then the drain), to --png, default bench/out/worker_drain-<timestamp>.png.

--baseline DIR also runs the worker of another copy of the app (an older
checkout's examples/app with its node_modules, from the version that added
METRICS_PORT on) at each concurrency, alternating with this one in the same
run, for before/after figures on the same machine state.

Every process is started here and stopped by PID (the stack helper stops the
servers it started, also when this script dies: it exits when its stdin closes).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

try:
    import psycopg
except ImportError:  # pragma: no cover - the controller venv has it (requirements.txt)
    sys.exit("bench: psycopg 3 is needed (pip install 'psycopg[binary]')")

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _plot  # noqa: E402  (bench/ helper: the timeline picture)

APP_DIR = Path(__file__).resolve().parent.parent / "examples" / "app"
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout=15.0) -> None:
    """Signal one process we started (by PID), SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class LoopbackStack:
    """The app's test stack on loopback, for the benches (a context manager)."""

    def __init__(self, durable: bool = True):
        args = ["node", "scripts/bench-stack.mjs"] + (["--durable"] if durable else [])
        # stdin stays open: the helper stops its servers when it closes.
        self.proc = subprocess.Popen(args, cwd=APP_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            stop(self.proc)
            sys.exit("bench: the stack did not start (see the output above)")
        info = json.loads(line)
        self.env = info["env"]
        self.pids = info["pids"]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        stop(self.proc, timeout=30)

    def app_env(self, **extra) -> dict:
        """Environment for an app process: only what it needs, like the tests."""
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", **self.env}
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def start(self, script: str, ready: str, app_dir: Path = APP_DIR, **env) -> subprocess.Popen:
        """Start an app entry point; return once its log has `ready` in a line."""
        proc = subprocess.Popen(["node", script], cwd=app_dir, env=self.app_env(**env),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        for line in proc.stdout:
            if ready in line:
                break
        else:
            sys.exit("bench: %s exited before logging %r" % (script, ready))
        # Keep reading its log so that a full pipe never blocks it.
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        return proc

    def db(self):
        """A psycopg connection to the app database through PgBouncer (autocommit, no prepare)."""
        return psycopg.connect(self.env["DATABASE_URL"], autocommit=True, prepare_threshold=None)


def cpu_seconds(pid: int, with_children_of: bool = False) -> float:
    """utime+stime of `pid`, plus of its live child processes if asked (Postgres backends)."""
    def one(p):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / TICK, int(fields[1])
        except (FileNotFoundError, ProcessLookupError):
            return 0.0, -1
    total = one(pid)[0]
    if with_children_of:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                t, ppid = one(int(entry))
                if ppid == pid:
                    total += t
    return total


def cpu_snapshot(stack: LoopbackStack, worker_pid: int) -> dict:
    return {
        "worker": cpu_seconds(worker_pid),
        "postgres": cpu_seconds(stack.pids["postgres"], with_children_of=True),
        "pgbouncer": cpu_seconds(stack.pids["pgbouncer"]),
        "redis": cpu_seconds(stack.pids["redis"]),
    }


def scrape(url: str) -> dict:
    """name{labels} -> value of a /metrics page."""
    out = {}
    with urllib.request.urlopen(url, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                key, _, val = line.rpartition(" ")
                out[key] = float(val)
    return out


def drain(stack: LoopbackStack, jobs: int, concurrency: int, app_dir: Path = APP_DIR) -> dict:
    queue = "drain-bench"
    t_fill = time.time()
    with stack.db() as db:
        db.execute("TRUNCATE job_results")
    fill = subprocess.run(["node", "scripts/fill-queue.mjs"], cwd=APP_DIR, capture_output=True, text=True,
                          env=stack.app_env(QUEUE_NAME=queue, JOBS=jobs), timeout=300)
    if fill.returncode != 0:
        sys.exit("bench: fill-queue failed:\n%s%s" % (fill.stdout, fill.stderr))
    filled = json.loads(fill.stdout.strip().splitlines()[-1])
    port = free_port()
    instance = "drain-c%d" % concurrency
    t_start = time.time()
    worker = stack.start("src/worker.js", '"msg":"worker started"', app_dir, QUEUE_NAME=queue, WORKER_CONCURRENCY=concurrency,
                         APP_INSTANCE=instance, METRICS_PORT=port, METRICS_HOST="127.0.0.1")
    try:
        cpu0 = cpu_snapshot(stack, worker.pid)
        wall0 = time.time()
        metrics = "http://127.0.0.1:%d/metrics" % port
        key_done = 'recete_jobs_completed_total{queue="%s"}' % queue
        key_failed = 'recete_jobs_failed_total{queue="%s"}' % queue
        deadline = time.time() + max(120, jobs / 50)
        while True:
            m = scrape(metrics)
            if m.get(key_done, 0) + m.get(key_failed, 0) >= jobs or time.time() > deadline:
                break
            time.sleep(0.25)
        t_end = time.time()
        wall = t_end - wall0
        cpu1 = cpu_snapshot(stack, worker.pid)
    finally:
        stop(worker)
    with stack.db() as db:
        count, first, last = db.execute(
            "SELECT count(*), extract(epoch FROM min(processed_at)), extract(epoch FROM max(processed_at))"
            " FROM job_results WHERE worker = %s", (instance,)).fetchone()
    span = float(last - first) if count > 1 else float("nan")
    # Where a job slot's time goes: in the processor (mostly waiting for the
    # result's commit) or outside it (BullMQ's Redis round trips, the event loop).
    q = 'recete_db_query_duration_seconds_%s{pool="primary"}'
    j = 'recete_job_duration_seconds_%s{queue="%s",name="sum"}'
    queries = m.get(q % "count", 0)
    return {
        "concurrency": concurrency, "filled": filled, "completed": int(m.get(key_done, 0)),
        "failed": int(m.get(key_failed, 0)), "rows": count, "rate": (count - 1) / span if span else float("nan"),
        "wall": wall, "startup": wall0 - t_start,
        # epoch seconds, for the timeline: the fill began, the drain ended, the first and last result
        "t_fill": t_fill, "t_end": t_end,
        "t_first": float(first) if count else float("nan"), "t_last": float(last) if count else float("nan"),
        "jobs_per_query": m.get(j % ("count", queue), 0) / queries if queries else float("nan"),
        "query_ms": 1000 * m.get(q % "sum", 0) / queries if queries else float("nan"),
        "job_ms": 1000 * m.get(j % ("sum", queue), 0) / max(1, m.get(j % ("count", queue), 0)),
        "cpu": {k: 100.0 * (cpu1[k] - cpu0[k]) / wall for k in cpu0},
        # CPU per job stays meaningful when other load shares the machine.
        "cpu_ms_per_job": {k: 1000.0 * (cpu1[k] - cpu0[k]) / max(1, count) for k in cpu0},
    }


def report(label: str, r: dict) -> None:
    c = r["concurrency"]
    print("%s concurrency %3d: %6.0f jobs/s  (%d rows, %d completed, %d failed; drained in %.1f s; filled %d jobs in %.1f s)"
          % (label, c, r["rate"], r["rows"], r["completed"], r["failed"], r["wall"], r["filled"]["added"],
             r["filled"]["seconds"]))
    pad = " " * (len(label) + 17)
    print(pad + "CPU while draining: " + ", ".join("%s %.0f%%" % kv for kv in r["cpu"].items())
          + " (of %d cores)" % os.cpu_count())
    print(pad + "per job slot: %.2f ms a job, %.2f ms of it in the processor; %.2f ms per result INSERT, %.1f jobs each"
          % (c * 1000.0 / r["rate"], r["job_ms"], r["query_ms"], r["jobs_per_query"]))
    per_job = r["cpu_ms_per_job"]
    total = sum(per_job.values())
    print(pad + "CPU per job: " + ", ".join("%s %.3f ms" % kv for kv in per_job.items())
          + " = %.3f ms: at most %.0f jobs/s on %d idle cores" % (total, os.cpu_count() * 1000.0 / total, os.cpu_count()),
          flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--concurrency", default="1,5,20", help="comma-separated WORKER_CONCURRENCY values")
    parser.add_argument("--no-durable", action="store_true", help="Postgres without fsync/synchronous_commit (as the tests)")
    parser.add_argument("--baseline", type=Path, help="another copy of examples/app to compare with, side by side")
    _plot.add_png_option(parser, "worker_drain")
    args = parser.parse_args()
    apps = [("this", APP_DIR)] + ([("base", args.baseline.resolve())] if args.baseline else [])
    results = []
    series = {label: [] for label, _ in apps}  # one Interval per drain, for the picture
    phases = []
    with LoopbackStack(durable=not args.no_durable) as stack:
        # Unreported warm-up of each app: a fresh Postgres, Redis and page
        # cache would otherwise slow down whichever drain comes first.
        for _, app_dir in apps:
            drain(stack, min(args.jobs, 2000), 5, app_dir)
        t0 = time.time()  # the picture's time origin: the first reported fill
        for i, c in enumerate(int(x) for x in args.concurrency.split(",")):
            # Alternate which one goes first, so that a drift of the
            # machine's load does not always favour the same side.
            for label, app_dir in (apps if i % 2 == 0 else apps[::-1]):
                r = drain(stack, args.jobs, c, app_dir)
                results.append(r)
                report(label if args.baseline else "", r)
                # jobs/s between the first and the last result, as printed; the whole drain if fewer than 2
                start, end = ((r["t_first"], r["t_last"]) if r["rows"] > 1 and r["t_last"] > r["t_first"]
                              else (r["t_end"] - r["wall"], r["t_end"]))
                nan = float("nan")
                series[label].append(_plot.Interval(start - t0, end - t0, r["rows"], r["failed"], nan, nan, nan))
                phases.append(("concurrency %d%s" % (c, " " + label if args.baseline else ""),
                               r["t_fill"] - t0, r["t_end"] - t0))
    print("Postgres: %s; one worker process, PG_POOL_SIZE 10, results via PgBouncer (transaction mode)"
          % ("fsync + synchronous_commit off" if args.no_durable else "fsync + synchronous_commit on (production)"))
    print("target: >= 100 jobs/s per worker (contract); goal of this bench: >= 2000 jobs/s per worker process")
    bad = [r for r in results if r["rows"] < args.jobs or r["failed"]]
    for r in bad:
        print("concurrency %d: only %d of %d results in Postgres, %d failed" % (r["concurrency"], r["rows"], args.jobs, r["failed"]))
    _plot.write(args, "worker_drain", series if args.baseline else series["this"], phases, rate_label="jobs/s",
                note="%d sum jobs per concurrency, one worker process, Postgres %s; each phase fills the queue, then "
                "drains it (jobs/s from the first to the last result)"
                % (args.jobs, "not durable" if args.no_durable else "durable"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
