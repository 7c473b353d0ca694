#!/usr/bin/env python3
"""Failed client requests caused by nginx reloads: today's layout vs. an edge + router layout.

    bench/reload_keepalive.py [--duration 30] [--rate 200] [--reload-interval 0.5]
                              [--connections 24] [--workers 2] [--options A,B,...]
                              [--wrk-duration 10] [--png PATH | --no-png]

Everything runs on this machine, on 127.0.0.1 only (and unix sockets in a
temporary directory). Needs nginx (installed with apt-get, service kept off,
if missing), node (/usr/bin/node) and, for the throughput part, wrk.

Why
---
A reload (SIGHUP) starts new nginx workers; the old ones finish their
in-flight requests, but they close every *idle* client keep-alive connection
at once (nginx 1.22 has no `keepalive_min_timeout`, which arrived in 1.27.4).
A client that reuses keep-alive connections the way common HTTP libraries do
- before reusing an idle connection it polls it and drops it if it shows EOF
(urllib3's is_connection_dropped, Node's agent) - and never resends a request
that got no answer, loses a request whenever it sends on a connection in the
instant nginx closes it: the request arrives after the old worker's last read
and the close answers it with a RST (ECONNRESET) or a bare EOF. Rare (the lab
saw 3 of 42,001 requests while scaling at 100 req/s), but every scale step is
a reload, and the target is zero.

What
----
Two tiny node HTTP servers (keepAliveTimeout 5 s) are the API instances.
Each layout ("option") gets its own nginx master(s) from its own temporary
prefix, all started side by side and loaded at the same time:

  A        today's layout: one nginx; client keep-alive 65 s; upstream block
           with keepalive 32 (keepalive_timeout 4 s), proxy_http_version 1.1,
           Connection "". This nginx is reloaded.
  B        two layers: an edge nginx that clients talk to (client keep-alive
           65 s, NEVER reloaded) proxies over a unix socket WITHOUT upstream
           keepalive (HTTP/1.0, a new connection per request, so no idle
           edge->router connection exists for a reload to close) and with
           `proxy_next_upstream off` (no retry at all, to show none is needed)
           to a router nginx that holds the upstream block (keepalive 32 to the
           apps) and is the one reloaded.
  C-ka0    one nginx, client keep-alive off (keepalive_timeout 0): every request
           on a new client connection.
  C-linger one nginx as A plus `lingering_close always` (does it help? nginx
           closes idle keep-alive connections on shutdown without lingering).
  C-Bka    B, but edge->router with upstream keepalive 32 (HTTP/1.1) and the
           default `proxy_next_upstream error timeout`: idle edge->router
           connections come back, and with them the race, now inside nginx
           (GETs are retried, a POST once sent is not: 502).
  C-Bka-ni only with --options: C-Bka plus `proxy_next_upstream ...
           non_idempotent` - POSTs retried too, which is only safe while the
           router never fails after forwarding a request.

Load: one client process per option, open loop (Poisson arrivals at --rate,
half GET half POST with a small JSON body), --connections keep-alive
connections, each owned by one client thread; requests wait in one queue, so
the connections are used in turn and all stay open. Before reusing an idle
connection the client polls it (timeout 0) and, if readable, peeks: EOF or
data means the server closed it, and it opens a new one (counted as "stale",
not an error). A request that gets no complete answer is a connection error
and is never resent: refused connect, reset or broken pipe while sending, EOF
or reset before/while reading, no answer within 5 s. Latency is measured from
the request's scheduled time (open loop: queueing counts).

Meanwhile a loop sends SIGHUP every --reload-interval (+-20 % jitter) to each
reloaded master (A, C-*, the routers of B and C-Bka), all at the same moment.
Reloads that took effect are counted from each error log ("reconfiguring").

Throughput: after the load phase, without reloads, wrk (closed loop, 32
connections, 1 thread) runs --wrk-duration seconds at A, B, C-ka0 and C-Bka
in turn, on the full path (nginx -> node) and on /nginx-only (answered by the
innermost nginx with `return 200`, isolating the extra hop), and prints each
rate relative to A. (C-ka0's figure is plain HTTP on loopback: with TLS, a
handshake per request would cost far more.)

The load phase is drawn as a timeline (bench/_plot.py: p50/p99 and
requests/errors per second of each option, the reloads as thin lines) to
--png, default bench/out/reload_keepalive-<timestamp>.png.

The run is bounded (an alarm stops it after duration + 8 x wrk-duration +
90 s) and stops every process it started by PID (nginx masters with SIGTERM,
their workers by PID if any survive, node, clients), then removes its
temporary directory.
"""
from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import queue
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import _plot  # noqa: E402  (bench/ helper: the timeline picture)
from _lab import dropped  # the same check before reusing an idle connection as the lab benches

HOST = "127.0.0.1"
ANSWER_TIMEOUT = 5.0
WRK_CONNECTIONS = 32

NODE_APP = r"""
const http = require('http');
const server = http.createServer((req, res) => {
  let got = 0;
  req.on('data', (chunk) => { got += chunk.length; });
  req.on('end', () => {
    const body = JSON.stringify({ok: true, method: req.method, got: got, pid: process.pid});
    res.writeHead(200, {'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body)});
    res.end(body);
  });
});
server.keepAliveTimeout = 5000;
server.listen(0, '127.0.0.1', () => { console.log(server.address().port); });
"""

WRK_SCRIPT = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,'
    .. '"p50":%d,"p99":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""

# name -> layout. "single": one nginx (reloaded). "two": edge (never reloaded) -> router (reloaded).
OPTIONS = collections.OrderedDict([
    ("A", dict(layout="single", client_keepalive=65, lingering_always=False,
               text="one nginx, client keep-alive 65s, upstream keepalive 32 (today)")),
    ("B", dict(layout="two", edge_keepalive=False, retry_non_idempotent=False,
               text="edge (not reloaded) -unix, new conn/request, no retry-> router (reloaded)")),
    ("C-ka0", dict(layout="single", client_keepalive=0, lingering_always=False,
                   text="one nginx, client keep-alive off (keepalive_timeout 0)")),
    ("C-linger", dict(layout="single", client_keepalive=65, lingering_always=True,
                      text="one nginx as A + lingering_close always")),
    ("C-Bka", dict(layout="two", edge_keepalive=True, retry_non_idempotent=False,
                   text="B with edge->router keepalive 32 + retry error/timeout")),
    # Not in the default set (pass --options ...,C-Bka-ni): retrying POSTs is only safe if the router
    # never fails after forwarding a request, which no configuration guarantees.
    ("C-Bka-ni", dict(layout="two", edge_keepalive=True, retry_non_idempotent=True, default=False,
                      text="C-Bka + proxy_next_upstream non_idempotent (retries POSTs: unsafe in general)")),
])


class BenchError(Exception):
    pass


class Stop(Exception):
    """Raised by SIGTERM/SIGINT/SIGALRM so that cleanup runs."""


# --- configuration -------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


MAIN_CONF = """\
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log notice;
daemon off;
# Old workers still serving after a reload are stopped after this.
worker_shutdown_timeout 10s;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    keepalive_requests 1000;
{http}
}}
"""

APPS_UPSTREAM = """\
    upstream apps {{
        least_conn;
{servers}
        keepalive 32;
        keepalive_timeout 4s;   # below node's keepAliveTimeout (5 s)
    }}
"""

PROXY_TO_APPS = """\
        location / {
            proxy_pass http://apps;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 2;
            proxy_connect_timeout 2s;
        }
        location = /nginx-only {
            return 200 "ok\\n";
        }
"""


def conf_single(dir_, workers, port, app_ports, client_keepalive, lingering_always):
    http = APPS_UPSTREAM.format(servers="\n".join(
        "        server %s:%d max_fails=3 fail_timeout=10s;" % (HOST, p) for p in app_ports))
    http += "    server {\n        listen %s:%d;\n        keepalive_timeout %ds;\n" % (HOST, port, client_keepalive)
    if lingering_always:
        http += "        lingering_close always;\n"
    http += PROXY_TO_APPS + "    }"
    return MAIN_CONF.format(workers=workers, dir=dir_, http=http)


def conf_router(dir_, workers, sock, app_ports):
    http = APPS_UPSTREAM.format(servers="\n".join(
        "        server %s:%d max_fails=3 fail_timeout=10s;" % (HOST, p) for p in app_ports))
    http += ("    server {\n        listen unix:%s;\n        keepalive_timeout 65s;\n" % sock
             + PROXY_TO_APPS + "    }")
    return MAIN_CONF.format(workers=workers, dir=dir_, http=http)


def conf_edge(dir_, workers, port, sock, edge_keepalive, retry_non_idempotent):
    if edge_keepalive:
        upstream = ("    upstream router {\n        server unix:%s;\n        keepalive 32;\n"
                    "        keepalive_timeout 4s;\n    }\n" % sock)
        proxy = ("            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n"
                 "            proxy_next_upstream error timeout%s;\n"
                 % (" non_idempotent" if retry_non_idempotent else ""))
    else:
        # HTTP/1.0 + "Connection: close" (nginx's defaults): one connection per request.
        upstream = "    upstream router {\n        server unix:%s;\n    }\n" % sock
        proxy = "            proxy_next_upstream off;\n"
    http = upstream + (
        "    server {\n        listen %s:%d;\n        keepalive_timeout 65s;\n"
        "        location / {\n            proxy_pass http://router;\n%s"
        "            proxy_set_header Host $host;\n"
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "        }\n    }" % (HOST, port, proxy))
    return MAIN_CONF.format(workers=workers, dir=dir_, http=http)


# --- processes -------------------------------------------------------------------

class Nginx:
    def __init__(self, bench, name, conf):
        self.name = name
        self.dir = os.path.join(bench.tmp, name)
        os.makedirs(os.path.join(self.dir, "tmp"))
        os.chmod(self.dir, 0o755)
        self.conf_path = os.path.join(self.dir, "nginx.conf")
        with open(self.conf_path, "w", encoding="utf-8") as handle:
            handle.write(conf.replace("{DIR}", self.dir))
        check = subprocess.run(["nginx", "-t", "-q", "-p", self.dir, "-e", self.error_log, "-c", self.conf_path],
                               capture_output=True, text=True, check=False)
        if check.returncode:
            raise BenchError("nginx -t failed for %s:\n%s" % (name, check.stderr))
        self.proc = subprocess.Popen(["nginx", "-p", self.dir, "-e", self.error_log, "-c", self.conf_path],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        bench.nginxes.append(self)

    @property
    def error_log(self):
        return os.path.join(self.dir, "error.log")

    def children(self):
        """PIDs whose parent is this master (its workers, old and new)."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open("/proc/%s/stat" % entry, encoding="utf-8") as handle:
                        fields = handle.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.proc.pid:
                    pids.append(int(entry))
        return pids

    def reload(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGHUP)

    def log_count(self, pattern):
        try:
            with open(self.error_log, encoding="utf-8", errors="replace") as handle:
                return len(re.findall(pattern, handle.read(), re.M))
        except OSError:
            return 0

    def errors(self):
        """[error]/[crit]/[alert] lines of the error log, grouped by message (up to "while"/",")."""
        found = collections.Counter()
        try:
            with open(self.error_log, encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    match = re.search(r"\[(error|crit|alert|emerg)\] \d+#\d+: (?:\*\d+ )?([^,]*?)(?: while |,|$)", line)
                    if match:
                        found[match.group(2).strip()] += 1
        except OSError:
            pass
        return found

    def stop(self):
        if self.proc.poll() is not None:
            return
        workers = self.children()
        os.kill(self.proc.pid, signal.SIGTERM)  # fast shutdown: the master stops its workers
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for pid in workers:  # only if the master could not stop them
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_listening(address, deadline=10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        try:
            with socket.socket(family) as s:
                s.settimeout(1)
                s.connect(address)
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError("nothing listens on %s after %ds" % (address, deadline))


class Bench:
    """Owns every process and the temporary directory; close() undoes it all."""

    def __init__(self, workers):
        self.workers = workers
        self.tmp = tempfile.mkdtemp(prefix="reload-keepalive-")
        os.chmod(self.tmp, 0o755)  # nginx workers run as nobody
        self.nginxes = []
        self.apps = []
        self.clients = []
        self.targets = {}  # option -> dict(port, reloaded=[Nginx], front=Nginx, sock=...)

    def start_apps(self, count=2):
        ports = []
        for _ in range(count):
            proc = subprocess.Popen(["node", "-e", NODE_APP], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL, text=True, start_new_session=True)
            self.apps.append(proc)
            ready, _, _ = select.select([proc.stdout], [], [], 10)
            line = proc.stdout.readline().strip() if ready else ""
            if not line.isdigit():
                raise BenchError("a node app did not start (printed %r)" % line)
            ports.append(int(line))
        return ports

    def start_option(self, name, spec, app_ports):
        port = free_port()
        if spec["layout"] == "single":
            nginx = Nginx(self, name, conf_single("{DIR}", self.workers, port, app_ports,
                                                  spec["client_keepalive"], spec["lingering_always"]))
            wait_listening((HOST, port))
            self.targets[name] = dict(port=port, reloaded=[nginx], front=nginx, sock=None)
        else:
            router_dir = os.path.join(self.tmp, name + "-router")
            sock = os.path.join(router_dir, "router.sock")
            router = Nginx(self, name + "-router", conf_router("{DIR}", self.workers, sock, app_ports))
            wait_listening(sock)
            # nginx makes its unix sockets 0666 itself; the edge's workers (nobody) only need the
            # directories to be traversable (0755, see Nginx).
            edge = Nginx(self, name + "-edge", conf_edge("{DIR}", self.workers, port, sock,
                                                                spec["edge_keepalive"],
                                                                spec["retry_non_idempotent"]))
            wait_listening((HOST, port))
            self.targets[name] = dict(port=port, reloaded=[router], front=edge, sock=sock,
                                      sock_inode=os.stat(sock).st_ino)

    def close(self):
        for proc in self.clients:
            if proc.is_alive():
                proc.terminate()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for nginx in self.nginxes:
            try:
                nginx.stop()
            except Exception as err:  # pylint: disable=broad-exception-caught  # keep cleaning up
                print("warning: stopping nginx %s: %s" % (nginx.name, err), file=sys.stderr)
        for proc in self.apps:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- the client (one process per option) ------------------------------------------

def request_bytes(method, n):
    if method == "GET":
        return ("GET /api/items/%d HTTP/1.1\r\nHost: bench\r\nUser-Agent: reload-keepalive\r\n"
                "Accept: application/json\r\n\r\n" % n).encode()
    body = json.dumps({"n": n, "name": "item-%d" % n, "qty": n % 7}).encode()
    return ("POST /api/items HTTP/1.1\r\nHost: bench\r\nUser-Agent: reload-keepalive\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)).encode() + body


class NoAnswer(Exception):
    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind


def read_response(sock, deadline):
    """Read one response; returns (status, keep_alive). Raises NoAnswer(kind) on EOF/reset/timeout."""
    buf = b""

    def more():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise NoAnswer("timeout")
        sock.settimeout(remaining)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            raise NoAnswer("timeout") from None
        except ConnectionResetError:
            raise NoAnswer("reset" if not buf else "reset-partial") from None
        if not data:
            raise NoAnswer("eof" if not buf else "eof-partial")
        return data

    while b"\r\n\r\n" not in buf:
        buf += more()
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip().lower()
    keep = headers.get("connection") != "close" and lines[0].startswith("HTTP/1.1")
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(rest) < length:
            rest += more()
    elif headers.get("transfer-encoding") == "chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            rest += more()
    else:
        keep = False
        try:
            while True:
                rest += more()
        except NoAnswer as err:
            if err.kind != "eof-partial":
                raise
    return status, keep


def client_process(name, port, rate, duration, connections, start_at, seed, out):
    """Open-loop load against one option; sends its counters back through `out`."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rng = random.Random(seed)
    work = queue.Queue()
    lock = threading.Lock()
    stats = dict(sent=0, ok=0, non2xx=0, stale=0, new_conns=0, errors=collections.Counter(),
                 err_on_reused=0, statuses=collections.Counter(), failed_methods=collections.Counter(),
                 latencies=[], samples=[])

    def worker():
        sock = None
        while True:
            item = work.get()
            if item is None:
                break
            n, scheduled, method = item
            reused = False
            if sock is not None:
                if dropped(sock):
                    with lock:
                        stats["stale"] += 1
                    sock.close()
                    sock = None
                else:
                    reused = True
            kind = None
            if sock is None:
                try:
                    sock = socket.create_connection((HOST, port), timeout=ANSWER_TIMEOUT)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    with lock:
                        stats["new_conns"] += 1
                except OSError:
                    kind, sock = "connect", None
            status, keep = None, False
            if kind is None:
                try:
                    sock.settimeout(ANSWER_TIMEOUT)
                    sock.sendall(request_bytes(method, n))
                    status, keep = read_response(sock, time.monotonic() + ANSWER_TIMEOUT)
                except NoAnswer as err:
                    kind = err.kind
                except (BrokenPipeError, ConnectionResetError):
                    kind = "send"
                except (OSError, ValueError, IndexError) as err:
                    kind = "other:%s" % type(err).__name__
            latency = time.monotonic() - scheduled
            with lock:
                stats["sent"] += 1
                # for the timeline: when it was due (s from the start), latency if answered, 2xx or not
                stats["samples"].append((scheduled - start_at, latency if status is not None else None,
                                         kind is None and 200 <= status < 300))
                if kind is not None:
                    stats["errors"][kind] += 1
                    stats["err_on_reused"] += reused
                    stats["failed_methods"][method] += 1
                elif 200 <= status < 300:
                    stats["ok"] += 1
                    stats["latencies"].append(latency)
                else:
                    stats["non2xx"] += 1
                    stats["statuses"][status] += 1
                    stats["failed_methods"][method] += 1
            if kind is not None or (status is not None and not keep):
                if sock is not None:
                    sock.close()
                sock = None
        if sock is not None:
            sock.close()

    threads = [threading.Thread(target=worker, name="%s-%d" % (name, i), daemon=True) for i in range(connections)]
    for thread in threads:
        thread.start()
    at, n, end = start_at, 0, start_at + duration
    while True:
        at += rng.expovariate(rate)
        if at >= end:
            break
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        work.put((n, at, "GET" if rng.random() < 0.5 else "POST"))
        n += 1
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join(ANSWER_TIMEOUT + 2)
    with lock:
        stats["scheduled"] = n
        stats["errors"] = dict(stats["errors"])
        stats["statuses"] = dict(stats["statuses"])
        stats["failed_methods"] = dict(stats["failed_methods"])
        out.send(stats)
    out.close()


# --- phases ------------------------------------------------------------------------

def load_phase(bench, names, args):
    ctx = multiprocessing.get_context("fork")
    start_at = time.monotonic() + 1.0
    pipes = {}
    for i, name in enumerate(names):
        parent, child = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=client_process, daemon=True,
                           args=(name, bench.targets[name]["port"], args.rate, args.duration, args.connections,
                                 start_at, 1000 + i, child))
        proc.start()
        child.close()
        bench.clients.append(proc)
        pipes[name] = parent
    before = {name: [n.log_count(r"#\d+: reconfiguring$") for n in bench.targets[name]["reloaded"]] for name in names}
    rng = random.Random(7)
    sent_hups = 0
    hups_at = []  # seconds from the start of the load, for the timeline
    at = start_at + args.reload_interval * rng.uniform(0.5, 1.0)
    while at < start_at + args.duration:
        delay = at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for name in names:
            for nginx in bench.targets[name]["reloaded"]:
                nginx.reload()
        sent_hups += 1
        hups_at.append(at - start_at)
        at += args.reload_interval * rng.uniform(0.8, 1.2)
    results = {}
    for name in names:
        if pipes[name].poll(ANSWER_TIMEOUT + 10):
            results[name] = pipes[name].recv()
        else:
            raise BenchError("the client of option %s sent no result" % name)
    time.sleep(0.5)  # let the error logs catch up
    for name in names:
        target = bench.targets[name]
        done = [n.log_count(r"#\d+: reconfiguring$") for n in target["reloaded"]]
        results[name]["reloads"] = sum(done) - sum(before[name])
        results[name]["hups"] = sent_hups
        results[name]["hups_at"] = hups_at
        results[name]["log"] = {}
        for nginx in [target["front"]] + [n for n in target["reloaded"] if n is not target["front"]]:
            for message, count in nginx.errors().items():
                results[name]["log"]["%s: %s" % (nginx.name, message)] = count
        if target["sock"]:
            same = os.path.exists(target["sock"]) and os.stat(target["sock"]).st_ino == target["sock_inode"]
            results[name]["sock_same"] = same
    return results


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100.0 * (len(values) - 1))))]


def print_load_table(names, results, args):
    print()
    print("Load phase: %d s, open loop %.0f req/s per option (half GET, half POST), %d keep-alive connections, "
          "reload every %.2f s (+-20%%)" % (args.duration, args.rate, args.connections, args.reload_interval))
    header = ("option", "sent", "2xx", "non-2xx", "conn err", "err kinds", "stale", "new conn", "p50 ms",
              "p95 ms", "p99 ms", "reloads")
    rows = []
    for name in names:
        r = results[name]
        errors = sum(r["errors"].values())
        kinds = ",".join("%s=%d" % kv for kv in sorted(r["errors"].items())) or "-"
        if errors:
            kinds += " (reused %d)" % r["err_on_reused"]
        if r["statuses"]:
            kinds += " status " + ",".join("%s=%d" % kv for kv in sorted(r["statuses"].items()))
        if r["failed_methods"]:
            kinds += " [" + ",".join("%s %d" % kv for kv in sorted(r["failed_methods"].items())) + "]"
        lat = r["latencies"]
        rows.append((name, r["sent"], r["ok"], r["non2xx"], errors, kinds, r["stale"], r["new_conns"],
                     "%.1f" % (1000 * percentile(lat, 50)), "%.1f" % (1000 * percentile(lat, 95)),
                     "%.1f" % (1000 * percentile(lat, 99)), "%d/%d" % (r["reloads"], r["hups"])))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header] + rows:
        print("  ".join(str(x).rjust(w) if i not in (0, 5) else str(x).ljust(w)
                        for i, (x, w) in enumerate(zip(row, widths))))
    print()
    for name in names:
        print("  %-8s %s" % (name, OPTIONS[name]["text"]))
        r = results[name]
        if r["log"]:
            print("           error log: " + "; ".join("%s %d" % kv for kv in sorted(r["log"].items())))
        if "sock_same" in r:
            print("           router unix socket: %s across the reloads"
                  % ("same inode" if r["sock_same"] else "CHANGED or gone"))
    print("  stale = idle connections the client found closed before reuse (handled, not errors); "
          "reloads = reloads logged / SIGHUPs sent per reloaded master")


def wrk_run(url, duration, script):
    out = subprocess.run(["wrk", "-t1", "-c%d" % WRK_CONNECTIONS, "-d%ds" % duration, "--timeout", "2s",
                          "-s", script, url], capture_output=True, text=True, timeout=duration + 30,
                         check=False).stdout
    line = next((l for l in out.splitlines() if l.startswith("WRK_JSON ")), None)
    if line is None:
        raise BenchError("wrk printed no summary:\n%s" % out[-2000:])
    data = json.loads(line[len("WRK_JSON "):])
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    return data


def throughput_phase(bench, args):
    script = os.path.join(bench.tmp, "done.lua")
    with open(script, "w", encoding="utf-8") as handle:
        handle.write(WRK_SCRIPT)
    print()
    names = [n for n in ("A", "B", "C-ka0", "C-Bka") if n in bench.targets]
    print("Throughput without reloads: wrk -t1 -c%d, %d s per run, one after the other (%s)"
          % (WRK_CONNECTIONS, args.wrk_duration, ", ".join(names)))
    print("  %-24s %-6s %9s %8s %8s %8s %7s" % ("path", "option", "req/s", "x A", "p50 ms", "p99 ms", "errors"))
    for path, label in (("/api/items/1", "nginx -> node"), ("/nginx-only", "nginx only (return 200)")):
        base = None
        for name in names:
            r = wrk_run("http://%s:%d%s" % (HOST, bench.targets[name]["port"], path), args.wrk_duration, script)
            base = base or r["rps"]
            errs = sum(r[k] for k in ("connect", "read", "write", "status", "timeout"))
            print("  %-24s %-6s %9.0f %8.2f %8.1f %8.1f %7d" % (label, name, r["rps"], r["rps"] / base,
                                                               r["p50"] / 1000, r["p99"] / 1000, errs))
            label = ""


# --- setup ---------------------------------------------------------------------------

def ensure_nginx():
    if shutil.which("nginx"):
        return
    print("installing nginx-light (service kept off)...", file=sys.stderr)
    policy = "/usr/sbin/policy-rc.d"
    created = not os.path.exists(policy)
    if created:
        with open(policy, "w", encoding="utf-8") as handle:
            handle.write("#!/bin/sh\nexit 101\n")
        os.chmod(policy, 0o755)
    try:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-q", "nginx-light"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
    finally:
        if created:
            os.unlink(policy)
    subprocess.run(["systemctl", "disable", "nginx"], capture_output=True, check=False)
    if not shutil.which("nginx"):
        raise BenchError("nginx is still missing after apt-get install nginx-light")


def plot_load(args, results):
    """The load phase as a timeline: each option a series, every SIGHUP a thin line."""
    series = {name: _plot.samples_to_rows(r["samples"], end=args.duration) for name, r in results.items()}
    hups = next(iter(results.values()))["hups_at"] if results else []
    failed = ", ".join("%s %d" % (name, r["sent"] - r["ok"]) for name, r in results.items())
    _plot.write(args, "reload_keepalive", series, [("load + reloads", 0.0, float(args.duration))],
                [("reload", t) for t in hups],
                note="open loop %.0f req/s per option, %d keep-alive connections, %d reloads (lines); "
                "failed requests: %s" % (args.rate, args.connections, len(hups), failed))


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0], allow_abbrev=False)
    parser.add_argument("--duration", type=int, default=30, help="seconds of load (default 30)")
    parser.add_argument("--rate", type=float, default=200, help="requests/s per option, open loop (default 200)")
    parser.add_argument("--reload-interval", type=float, default=0.5, help="seconds between reloads (default 0.5)")
    parser.add_argument("--connections", type=int, default=24, help="keep-alive connections per option (default 24)")
    parser.add_argument("--workers", type=int, default=2, help="worker_processes of every nginx (default 2)")
    default = [name for name, spec in OPTIONS.items() if spec.get("default", True)]
    parser.add_argument("--options", default=",".join(default),
                        help="comma-separated subset of %s (default %s)" % (",".join(OPTIONS), ",".join(default)))
    parser.add_argument("--wrk-duration", type=int, default=10,
                        help="seconds per wrk run, A vs B without reloads; 0 skips it (default 10)")
    _plot.add_png_option(parser, "reload_keepalive")
    args = parser.parse_args(argv)  # unknown arguments are an error
    names = [n for n in args.options.split(",") if n]
    unknown = [n for n in names if n not in OPTIONS]
    if unknown or not names:
        parser.error("unknown option name(s) %s; choose from %s" % (",".join(unknown), ",".join(OPTIONS)))
    if not (1 <= args.duration <= 120 and 1 <= args.rate <= 2000 and 0.1 <= args.reload_interval <= 60
            and 1 <= args.connections <= 256 and 1 <= args.workers <= 8 and 0 <= args.wrk_duration <= 30):
        parser.error("out of range: duration 1-120, rate 1-2000, reload-interval 0.1-60, connections 1-256, "
                     "workers 1-8, wrk-duration 0-30")
    args.names = names
    return args


def main(argv):
    args = parse_args(argv)
    ensure_nginx()
    if args.wrk_duration and not shutil.which("wrk"):
        raise BenchError("wrk is not installed (apt-get install -y wrk), or pass --wrk-duration 0")

    def stop(signum, frame):
        raise Stop(signal.Signals(signum).name)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
        signal.signal(signum, stop)
    signal.alarm(args.duration + 8 * args.wrk_duration + 90)
    bench = Bench(args.workers)
    try:
        app_ports = bench.start_apps()
        for name in args.names:
            bench.start_option(name, OPTIONS[name], app_ports)
        print("nginx %s, node %s; apps on %s; %d worker(s) per nginx" % (
            subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False).stderr.strip().split("/")[-1],
            subprocess.run(["node", "-v"], capture_output=True, text=True, check=False).stdout.strip(),
            ",".join("%s:%d" % (HOST, p) for p in app_ports), args.workers))
        results = load_phase(bench, args.names, args)
        print_load_table(args.names, results, args)
        plot_load(args, results)
        if args.wrk_duration and "A" in bench.targets and "B" in bench.targets:
            time.sleep(2)  # old workers of the last reloads exit
            throughput_phase(bench, args)
    finally:
        signal.alarm(0)
        bench.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except (BenchError, Stop) as err:
        print("reload_keepalive: %s" % err, file=sys.stderr)
        sys.exit(1)
