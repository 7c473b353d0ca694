#!/usr/bin/env python3
"""Pooling benchmark of the data tier in a lab.

    bench/pooling.py /tmp/dpg-inventory/hosts.yml [--clients 1000] [--duration 15] [--png PATH | --no-png]

Talks only to the machines of the lab inventory it is given (it refuses an
inventory without `recete_lab_name` and addresses outside private ranges).

1. Many clients at once: CLIENTS concurrent connections from the controller
   (asyncio + psycopg 3) to PgBouncer's read-write entry. Each connects, waits
   until every client has tried to connect (so they are all open at the same
   time), runs QUERIES short transactions, waits for the others, and closes.
   Meanwhile SHOW POOLS is sampled every 100 ms as the stats user: the server
   connections of each pool must never exceed default_pool_size +
   reserve_pool_size. Prints successes and failures.
2. pgbench, select-only by default (-S, scale 10, DURATION s per run), run on
   the PgBouncer host: that host is the only one pg_hba.conf lets the app
   user connect from directly, so direct and pooled runs start from the same
   machine without loosening pg_hba. TPS through PgBouncer vs direct to the
   primary at 20 clients and at CLIENTS clients (direct PostgreSQL refuses
   clients past max_connections: the output says what it did).

3. A timeline picture (bench/_plot.py) to --png, default
   bench/out/pooling-<timestamp>.png: part 1 per second (transactions/s,
   failures/s, p50/p95/p99 of a transaction), then each pgbench run as one
   interval drawn at its TPS (pgbench gives no percentiles: no latency line).

Figures only; exit status 1 when a check fails (a client not served, a pool
above its size).
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import re
import resource
import shlex
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _plot  # noqa: E402  (bench/ helper: the timeline picture)

try:
    import psycopg
except ImportError:  # pragma: no cover - controller venv has it (requirements.txt)
    sys.exit("bench: psycopg 3 is needed on the controller (pip install 'psycopg[binary]')")

DEFAULTS = {
    "postgresql_app_db": "recete",
    "postgresql_app_user": "recete",
    "postgresql_port": 5432,
    "pgbouncer_rw_name": "recete",
    "pgbouncer_listen_port": 6432,
    "pgbouncer_stats_user": "pgbouncer_stats",
}


class BenchError(Exception):
    pass


# --- the lab inventory ---------------------------------------------------------

@dataclass
class Lab:
    name: str
    hostvars: dict
    groups: dict

    @classmethod
    def load(cls, path: str) -> "Lab":
        try:
            out = subprocess.run(["ansible-inventory", "-i", path, "--list"], check=True,
                                 capture_output=True, text=True).stdout
        except (OSError, subprocess.CalledProcessError) as err:
            raise BenchError(f"cannot read inventory {path}: {getattr(err, 'stderr', '') or err}") from None
        data = json.loads(out)
        hostvars = data.get("_meta", {}).get("hostvars", {})
        groups = {name: entry.get("hosts", []) for name, entry in data.items() if isinstance(entry, dict)}
        lab_names = {hv.get("recete_lab_name") for hv in hostvars.values()}
        if len(lab_names) != 1 or None in lab_names:
            raise BenchError(f"{path} is not a lab inventory (no recete_lab_name): this benchmark only loads lab machines")
        return cls(lab_names.pop(), hostvars, groups)

    def first(self, group: str) -> str:
        hosts = self.groups.get(group) or []
        if not hosts:
            raise BenchError(f"the inventory has no host in group {group}")
        return hosts[0]

    def member(self, role: str) -> str:
        for host in self.groups.get("postgres", []):
            if self.hostvars[host].get("postgresql_member_role") == role:
                return host
        raise BenchError(f"no host with postgresql_member_role={role} in group postgres")

    def address(self, host: str) -> str:
        addr = self.hostvars[host].get("ansible_host", host)
        if not ipaddress.ip_address(addr).is_private:
            raise BenchError(f"{host} has address {addr}, not a private lab address: refusing to send load there")
        return addr

    def var(self, host: str, name: str):
        value = self.hostvars[host].get(name, DEFAULTS.get(name))
        if value is None:
            raise BenchError(f"{name} is not set for {host} in the inventory")
        if isinstance(value, str) and "{{" in value:
            raise BenchError(f"{name} is a template ({value}); give the lab a plain value")
        return value

    def ssh(self, host: str) -> list[str]:
        hv = self.hostvars[host]
        cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
        if hv.get("ansible_ssh_private_key_file"):
            cmd += ["-i", hv["ansible_ssh_private_key_file"]]
        cmd += shlex.split(hv.get("ansible_ssh_common_args", ""))
        user = hv.get("ansible_user")
        cmd.append(f"{user}@{self.address(host)}" if user else self.address(host))
        return cmd


# --- 1. many concurrent clients ------------------------------------------------

@dataclass
class ClientStats:
    connected: int = 0
    connect_failed: int = 0
    queries_ok: int = 0
    clients_failed: int = 0
    open_now: int = 0
    open_peak: int = 0
    errors: Counter = field(default_factory=Counter)
    t0: float = 0.0  # monotonic start of part 1, the picture's time origin
    samples: list = field(default_factory=list)  # (t, latency, ok) per connect failure and transaction


@dataclass
class PoolStats:
    samples: int = 0
    sv_max: dict = field(default_factory=dict)
    cl_max: dict = field(default_factory=dict)
    waiting_max: dict = field(default_factory=dict)
    sample_errors: Counter = field(default_factory=Counter)


SV_COLUMNS = ("sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle", "sv_used", "sv_tested", "sv_login")


async def admin_rows(conn, sql: str) -> list[dict]:
    cur = await conn.execute(sql)  # no parameters: the admin console needs the simple protocol
    names = [col.name for col in cur.description]
    return [dict(zip(names, row)) for row in await cur.fetchall()]


async def admin_connect(admin_dsn: str):
    # prepare_threshold=None: psycopg prepares a statement run 5 times, which
    # the admin console (simple query protocol only) refuses.
    return await psycopg.AsyncConnection.connect(admin_dsn, autocommit=True, prepare_threshold=None)


async def sample_pools(admin_dsn: str, stop: asyncio.Event, stats: PoolStats) -> None:
    conn = await admin_connect(admin_dsn)
    try:
        while not stop.is_set():
            try:
                for row in await admin_rows(conn, "SHOW POOLS"):
                    key = f"{row['database']}/{row['user']}"
                    sv = sum(int(row.get(col) or 0) for col in SV_COLUMNS)
                    stats.sv_max[key] = max(stats.sv_max.get(key, 0), sv)
                    stats.cl_max[key] = max(stats.cl_max.get(key, 0), int(row["cl_active"]) + int(row["cl_waiting"]))
                    stats.waiting_max[key] = max(stats.waiting_max.get(key, 0), int(row["cl_waiting"]))
                stats.samples += 1
            except psycopg.Error as err:
                stats.sample_errors[str(err).strip()[:120]] += 1
            try:
                await asyncio.wait_for(stop.wait(), 0.1)
            except asyncio.TimeoutError:
                pass
    finally:
        await conn.close()


async def one_client(dsn, n, queries, sleep_s, ramp, all_tried, all_done, counters, stats: ClientStats):
    async with ramp:
        try:
            # prepare_threshold=None: never prepare server-side statements, which
            # PgBouncer 1.18 cannot carry across transactions in transaction mode.
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, prepare_threshold=None,
                                                         connect_timeout=60)
        except psycopg.Error as err:
            stats.connect_failed += 1
            stats.samples.append((time.monotonic() - stats.t0, None, False))
            stats.errors[f"connect: {str(err).strip()[:160]}"] += 1
            conn = None
    if conn is not None:
        stats.connected += 1
        stats.open_now += 1
        stats.open_peak = max(stats.open_peak, stats.open_now)
    counters["tried"] += 1
    if counters["tried"] == n:
        all_tried.set()
    await all_tried.wait()
    if conn is None:
        return
    try:
        for _ in range(queries):
            began = time.monotonic()
            async with conn.transaction():
                await conn.execute(f"SELECT pg_sleep({sleep_s:.3f})")
            stats.queries_ok += 1
            stats.samples.append((began - stats.t0, time.monotonic() - began, True))
    except psycopg.Error as err:
        stats.clients_failed += 1
        stats.samples.append((time.monotonic() - stats.t0, None, False))
        stats.errors[f"query: {str(err).strip()[:160]}"] += 1
    finally:
        counters["done"] += 1
        if counters["done"] == stats.connected:
            all_done.set()
        await all_done.wait()
        await conn.close()
        stats.open_now -= 1


async def many_clients(dsn, admin_dsn, n, queries, sleep_s, ramp_width):
    stats, pools = ClientStats(), PoolStats()
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_pools(admin_dsn, stop, pools))
    await asyncio.sleep(0.3)
    all_tried, all_done = asyncio.Event(), asyncio.Event()
    counters = Counter()
    ramp = asyncio.Semaphore(ramp_width)
    t0 = stats.t0 = time.monotonic()
    await asyncio.gather(*(one_client(dsn, n, queries, sleep_s, ramp, all_tried, all_done, counters, stats)
                           for _ in range(n)))
    elapsed = time.monotonic() - t0
    await asyncio.sleep(0.3)
    stop.set()
    await sampler
    return stats, pools, elapsed


async def pool_limits(admin_dsn: str) -> dict:
    conn = await admin_connect(admin_dsn)
    try:
        config = {row["key"]: row["value"] for row in await admin_rows(conn, "SHOW CONFIG")}
    finally:
        await conn.close()
    return {key: int(config[key]) for key in ("default_pool_size", "reserve_pool_size", "max_client_conn")}


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise BenchError(f"the controller allows {hard} open files, {needed} needed: raise ulimit -Hn")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# --- 2. pgbench on the PgBouncer host -----------------------------------------------

TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)


def remote(lab: Lab, host: str, script: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(lab.ssh(host) + ["bash", "-s"], input=script, capture_output=True, text=True,
                          timeout=timeout, check=False)


def pgbench(lab, host, password, args, timeout) -> tuple[float | None, str]:
    script = (
        "set -u\nulimit -n 8192 2>/dev/null || true\n"
        f"export PGPASSWORD={shlex.quote(password)}\n"
        f"pgbench {' '.join(shlex.quote(a) for a in args)} 2>&1\necho \"exit=$?\"\n"
    )
    out = remote(lab, host, script, timeout).stdout
    match = TPS.search(out)
    return (float(match.group(1)) if match else None), out


def summarize_failure(out: str) -> str:
    """What pgbench said when it could not run: how far it got and why."""
    refused_at = re.search(r"could not create connection for client (\d+)", out)
    reason = re.search(r"FATAL:\s+(.*)", out)
    if refused_at:
        return (f"refused client #{refused_at.group(1)} (pgbench connects all clients first, 2 threads): "
                f"{reason.group(1).strip() if reason else 'see pgbench output'}; pgbench gave up, no TPS")
    lines = [ln for ln in out.splitlines() if "error" in ln.lower() or "fatal" in ln.lower() or ln.startswith("exit=")]
    return "; ".join(lines[:4]) or out.strip()[-300:]


# --- main ------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inventory", help="lab inventory (written by tools/lab up --inventory PATH)")
    parser.add_argument("--clients", type=int, default=1000, help="concurrent clients (default 1000)")
    parser.add_argument("--queries", type=int, default=5, help="transactions per client in part 1 (default 5)")
    parser.add_argument("--query-sleep", type=float, default=0.02, help="pg_sleep of each transaction in part 1 (s)")
    parser.add_argument("--ramp", type=int, default=100, help="connection attempts in flight at once (default 100)")
    parser.add_argument("--duration", type=int, default=15, help="seconds per pgbench run (default 15)")
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale (default 10)")
    parser.add_argument("--builtin", default="select-only", choices=["select-only", "simple-update", "tpcb-like"],
                        help="pgbench script (default select-only, i.e. -S)")
    parser.add_argument("--skip-pgbench", action="store_true", help="only run part 1")
    _plot.add_png_option(parser, "pooling")
    opts = parser.parse_args()

    lab = Lab.load(opts.inventory)
    bouncer = lab.first("pgbouncer")
    primary = lab.member("primary")
    bouncer_addr, primary_addr = lab.address(bouncer), lab.address(primary)
    user = lab.var(bouncer, "postgresql_app_user")
    password = lab.var(bouncer, "postgresql_app_password")
    dbname = lab.var(bouncer, "postgresql_app_db")
    rw_name = lab.var(bouncer, "pgbouncer_rw_name")
    port = int(lab.var(bouncer, "pgbouncer_listen_port"))
    pg_port = int(lab.var(primary, "postgresql_port"))
    dsn = psycopg.conninfo.make_conninfo(host=bouncer_addr, port=port, dbname=rw_name, user=user, password=password,
                                         application_name="bench-pooling")
    admin_dsn = psycopg.conninfo.make_conninfo(host=bouncer_addr, port=port, dbname="pgbouncer",
                                               user=lab.var(bouncer, "pgbouncer_stats_user"),
                                               password=lab.var(bouncer, "pgbouncer_stats_password"))
    failed = False

    print(f"lab {lab.name}: PgBouncer {bouncer} ({bouncer_addr}:{port}), primary {primary} ({primary_addr}:{pg_port})")
    limits = asyncio.run(pool_limits(admin_dsn))
    pool_cap = limits["default_pool_size"] + limits["reserve_pool_size"]
    print(f"PgBouncer: max_client_conn {limits['max_client_conn']}, default_pool_size {limits['default_pool_size']}, "
          f"reserve_pool_size {limits['reserve_pool_size']}")

    # 1. many concurrent clients
    raise_fd_limit(opts.clients + 256)
    print(f"\n[1] {opts.clients} concurrent clients -> {rw_name} through PgBouncer, "
          f"{opts.queries} x SELECT pg_sleep({opts.query_sleep}) each, all connections open at once")
    stats, pools, elapsed = asyncio.run(
        many_clients(dsn, admin_dsn, opts.clients, opts.queries, opts.query_sleep, opts.ramp))
    served = stats.connected - stats.clients_failed
    print(f"    clients served: {served}/{opts.clients}  (connect failures {stats.connect_failed}, "
          f"query failures {stats.clients_failed}), transactions ok {stats.queries_ok}/{opts.clients * opts.queries}, "
          f"{elapsed:.1f} s")
    print(f"    connections open at once (client side, peak): {stats.open_peak}")
    for err, count in stats.errors.most_common(5):
        print(f"    error x{count}: {err}")
    print(f"    SHOW POOLS, {pools.samples} samples; server connections per pool (max) vs limit {pool_cap}:")
    for key in sorted(pools.sv_max):
        if key.startswith("pgbouncer/"):
            continue
        over = pools.sv_max[key] > pool_cap
        failed |= over
        print(f"      {key:28s} server {pools.sv_max[key]:4d}{'  ABOVE LIMIT' if over else ''}   "
              f"clients active+waiting {pools.cl_max[key]:5d} (waiting max {pools.waiting_max[key]})")
    for err, count in pools.sample_errors.most_common(3):
        print(f"    sampler error x{count}: {err}")
    if served != opts.clients:
        failed = True
    print(f"    => {'PASS' if not failed else 'FAIL'}: all clients served and pools within default_pool_size"
          if not failed else "    => FAIL")

    rows = _plot.samples_to_rows(stats.samples, end=elapsed)
    phases = [(f"{opts.clients} clients via PgBouncer", 0.0, elapsed)]

    def picture():
        _plot.write(opts, "pooling", rows, phases,
                    note=f"part 1: {opts.clients} clients x {opts.queries} transactions (per second); "
                    f"pgbench {opts.builtin} {opts.duration} s runs drawn at their TPS")

    if opts.skip_pgbench:
        picture()
        return 1 if failed else 0

    # 2. pgbench
    print(f"\n[2] pgbench --builtin={opts.builtin} scale {opts.scale}, {opts.duration} s per run, on {bouncer} "
          f"(the host pg_hba.conf admits for direct connections)")
    check = remote(lab, bouncer, "command -v pgbench\n", 30)
    if check.returncode != 0:
        raise BenchError(f"pgbench not found on {bouncer}: install postgresql-{{version}} there (it ships pgbench)")
    common = ["-n", "-U", user, "--builtin", opts.builtin, "-T", str(opts.duration), "-j", "2"]
    direct = ["-h", primary_addr, "-p", str(pg_port), dbname]
    pooled = ["-h", "127.0.0.1", "-p", str(port), rw_name]
    t0 = time.monotonic()
    init = remote(lab, bouncer, f"export PGPASSWORD={shlex.quote(password)}\n"
                  f"pgbench -i -q -s {opts.scale} -h {primary_addr} -p {pg_port} -U {shlex.quote(user)} {dbname} 2>&1\n",
                  600)
    if init.returncode != 0:
        raise BenchError(f"pgbench -i failed: {init.stdout.strip()[-400:]}")
    print(f"    initialised pgbench tables (scale {opts.scale}) in {time.monotonic() - t0:.1f} s")
    results = {}
    try:
        for clients in (20, opts.clients):
            for path, target in (("direct", direct), ("pgbouncer", pooled)):
                started = time.monotonic() - stats.t0
                tps, out = pgbench(lab, bouncer, password, common + ["-c", str(clients)] + target,
                                   opts.duration * 4 + 120)
                ended = time.monotonic() - stats.t0
                results[(clients, path)] = tps
                # drawn at its TPS over the run's wall time; a refused run is a gap (no rate)
                nan = float("nan")
                rows.append(_plot.Interval(started, ended, (tps if tps else nan) * (ended - started),
                                           0 if tps else nan, nan, nan, nan))
                phases.append((f"pgbench {path} c{clients}" + ("" if tps else " (failed)"), started, ended))
                shown = f"{tps:10.0f} tps" if tps is not None else "      failed"
                print(f"    {clients:5d} clients {path:10s} {shown}")
                if tps is None:
                    print(f"          {summarize_failure(out)}")
    finally:
        remote(lab, bouncer, f"export PGPASSWORD={shlex.quote(password)}\n"
               f"pgbench -i -I d -h {primary_addr} -p {pg_port} -U {shlex.quote(user)} {dbname} >/dev/null 2>&1\n", 120)
    print("    ratio PgBouncer / direct:")
    for clients in (20, opts.clients):
        d, p = results.get((clients, "direct")), results.get((clients, "pgbouncer"))
        if d and p:
            print(f"      {clients:5d} clients: {p / d:.2f}")
        else:
            print(f"      {clients:5d} clients: direct {'refused (see above)' if not d else f'{d:.0f} tps'}, "
                  f"PgBouncer {'failed' if not p else f'{p:.0f} tps'}")
    if not results.get((20, "pgbouncer")) or not results.get((opts.clients, "pgbouncer")):
        failed = True
    picture()
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as err:
        print(f"bench: {err}", file=sys.stderr)
        sys.exit(2)
