"""What the lab benchmarks share: the lab inventory, SSH, playbook runs, open-loop load.

    from _lab import Lab, OpenLoop, LabError        # bench/ is on sys.path when a bench runs

Lab(INVENTORY)
    Loads an inventory as Ansible sees it (`ansible-inventory --list`, so
    group_vars/host_vars next to it count) and refuses one that is not a lab's:
    every host must carry the same `recete_lab_name` (tools/lab writes it), and
    every address must be private. Benchmarks send load, kill processes and
    start instances: they must never reach anything but a lab.
    .hosts(group) / .first(group) / .address(host) / .addresses(group) / .var(host, name)
    .ssh(host, command)    SSH into a machine the way the inventory tells Ansible to
                           (ansible_user, ansible_ssh_private_key_file,
                           ansible_ssh_common_args, ansible_port); the command
                           is one string run by the remote shell.
    .playbook(path, *args, extra_vars={...})
                           ansible-playbook -i INVENTORY from the repository
                           root (its ansible.cfg), timed; never raises on a
                           failed play: the caller decides what a failure means.

OpenLoop(address, rate, ...)
    An open-loop load generator through the load balancer's plain-HTTP
    listener: requests are issued on a fixed schedule whatever the answers, and
    latency is counted from the scheduled time, so a stall shows as latency and
    errors rather than as fewer requests (the coordinated omission of
    closed-loop tools such as wrk). The mix: `job_share` of the requests are
    POST /jobs of a `sum` job whose result is known, the rest alternate
    GET /items/:id and POST /items (examples/app/src/api.js).

    Counting rule: connections are kept alive and reused the way common HTTP
    clients do - before reusing an idle connection it is polled (timeout 0) and
    peeked, and a connection showing EOF, an error or unexpected bytes is
    dropped for a new one (urllib3's is_connection_dropped) - but a request that
    got no complete answer is NEVER resent: it counts as a connection error.
    Errors met on a reused keep-alive connection are also counted apart
    (`ka_reset`, included in `conn_err`): those are the requests an nginx reload
    closing idle connections costs a client.

    Every request keeps when it was due (Result.at) and every `load.phase = X`
    is marked, so .samples() and .phases() give bench/_plot.py its timeline.

    web_host="web.recete.internal": page loads of the web tier instead (roles/web,
    the load balancer's web server, picked by that Host header): requests
    alternate a page (GET /items/:id, rendered from the API, and GET /) and a
    static asset (GET /_next/static/... of the page last loaded, as a browser
    loads what the page names; with ?n=<run>-<seq> so that each one passes nginx's
    cache and reaches an instance - during a rolling deploy the instance may
    run the other release). Counted by the same rule: no resend, every non-2xx fails.

A plain module, not a package: the benchmarks run as scripts from bench/.
"""
from __future__ import annotations

import collections
import http.client
import ipaddress
import json
import os
import queue
import re
import select
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from _plot import phase_spans  # bench/ is on sys.path (pure function; matplotlib is not imported)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(REPO, ".venv", "bin")


class LabError(Exception):
    """A lab or benchmark precondition that does not hold (the message says what to do)."""


def tool(name):
    """Path of an Ansible command: the checkout's venv first, then PATH."""
    candidate = os.path.join(VENV_BIN, name)
    if os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    if not found:
        raise LabError("%s is not installed: run tools/setup (it makes .venv)" % name)
    return found


def lab_tool(*args, timeout=900):
    """Run tools/lab ARGS (add, remove, ...); its output, or LabError with what it printed."""
    run = subprocess.run([os.path.join(REPO, "tools", "lab"), *args], capture_output=True, text=True, timeout=timeout)
    if run.returncode:
        raise LabError("tools/lab %s: %s" % (" ".join(args), (run.stderr or run.stdout).strip()))
    return run.stdout


def lab_inventory(name):
    """A copy of running lab NAME's inventory as it is now, with the lab's group_vars beside it.

    For what must see machines that joined after the lab came up (Molecule's own inventory is
    fixed at create, and lacks recete_lab_name, which Lab insists on).
    """
    directory = tempfile.mkdtemp(prefix="lab-inventory-")
    shutil.copy("/var/lib/recete-lab/%s/inventory.yml" % name, os.path.join(directory, "hosts.yml"))
    os.symlink(os.path.join(REPO, "inventories", "lab", "group_vars"), os.path.join(directory, "group_vars"))
    return os.path.join(directory, "hosts.yml")


def ssh_argv(hostvars, address):
    """The ssh command line Ansible would use for a host with these variables (command not included)."""
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    argv += shlex.split(hostvars.get("ansible_ssh_common_args", "") or "")
    if hostvars.get("ansible_ssh_private_key_file"):
        argv += ["-i", hostvars["ansible_ssh_private_key_file"]]
    if hostvars.get("ansible_port"):
        argv += ["-p", str(hostvars["ansible_port"])]
    user = hostvars.get("ansible_user")
    argv.append("%s@%s" % (user, address) if user else address)
    return argv


def percentile(values, q):
    """The q-th percentile (nearest rank on the sorted values); NaN for none."""
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(q / 100.0 * (len(values) - 1))))]


# --- the lab ------------------------------------------------------------------------

class PlaybookRun(collections.namedtuple("PlaybookRun", "argv rc seconds stdout stderr")):
    """One ansible-playbook run: its command, exit code, wall time (s) and output."""

    @property
    def ok(self):
        return self.rc == 0

    def tail(self, chars=4000):
        return (self.stdout + self.stderr)[-chars:]


class Lab:
    """A lab inventory: hosts, groups, addresses, SSH and playbook runs (see the module doc)."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        if not os.path.exists(self.path):
            raise LabError("%s does not exist" % path)
        run = subprocess.run([tool("ansible-inventory"), "-i", self.path, "--list"], cwd=REPO,
                             capture_output=True, text=True, check=False)
        if run.returncode:
            raise LabError("ansible-inventory -i %s failed:\n%s" % (path, run.stderr[-2000:]))
        data = json.loads(run.stdout)
        self.hostvars = data.get("_meta", {}).get("hostvars", {})
        self.groups = {name: sorted(body.get("hosts", [])) for name, body in data.items()
                       if name != "_meta" and isinstance(body, dict)}
        names = {hv.get("recete_lab_name") for hv in self.hostvars.values()}
        if not self.hostvars or len(names) != 1 or None in names:
            raise LabError("%s is not a lab inventory (no recete_lab_name on every host): benchmarks only load lab "
                           "machines (tools/lab up --inventory PATH writes one)" % path)
        self.name = names.pop()
        for host in self.hostvars:
            self.address(host)  # refuses a public address before anything is sent

    def hosts(self, group):
        """The hosts of a group, sorted by name (empty list for an unknown group)."""
        return list(self.groups.get(group, []))

    def first(self, group):
        hosts = self.hosts(group)
        if not hosts:
            raise LabError("the inventory has no host in group %s" % group)
        return hosts[0]

    def var(self, host, name, default=None):
        return self.hostvars[host].get(name, default)

    def address(self, host):
        """The host's address (ansible_host); refuses anything but a private address."""
        if host not in self.hostvars:
            raise LabError("%s is not in the inventory %s" % (host, self.path))
        address = self.hostvars[host].get("ansible_host", host)
        try:
            private = ipaddress.ip_address(address).is_private
        except ValueError:
            raise LabError("%s has no IP address (ansible_host %r): a lab machine has one" % (host, address)) from None
        if not private:
            raise LabError("%s has a public address %s: refusing to touch it" % (host, address))
        return address

    def addresses(self, group):
        return [self.address(h) for h in self.hosts(group)]

    def host_of(self, address):
        return next((h for h in self.hostvars if self.hostvars[h].get("ansible_host") == address), None)

    def ssh(self, host, command, check=True, timeout=120):
        """Run one shell command line on a lab machine (as the inventory's user; use sudo inside)."""
        argv = ssh_argv(self.hostvars[host], self.address(host)) + [command]
        try:
            run = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise LabError("ssh %s %r: no answer within %d s" % (host, command, timeout)) from None
        if check and run.returncode:
            raise LabError("ssh %s %r failed (rc %d): %s" % (host, command, run.returncode,
                                                              (run.stderr or run.stdout).strip()[-1000:]))
        return run

    def playbook(self, playbook, *args, extra_vars=None, timeout=1800, log=None, env=None):
        """ansible-playbook -i <this inventory> PLAYBOOK [-e k=v ...] ARGS from the repository root, timed.

        Returns a PlaybookRun whatever the exit code (rc None: killed at the timeout); the output
        (stdout and stderr together) is also written to `log` as it comes, when given. `env` adds
        environment variables (ANSIBLE_* settings of one run).
        """
        argv = [tool("ansible-playbook"), "-i", self.path, playbook]
        for key, value in (extra_vars or {}).items():
            # Lists and mappings as JSON (k=v would make them strings); scalars as typed on a command line.
            argv += ["-e", json.dumps({key: value}) if isinstance(value, (list, dict, bool)) else "%s=%s" % (key, value)]
        argv += list(args)
        env = dict(os.environ, PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""), ANSIBLE_FORCE_COLOR="0",
                   **(env or {}))
        # The output goes to a file as it comes (tail -f it during a long run), then is read back.
        out = open(log, "w+", encoding="utf-8") if log else tempfile.TemporaryFile("w+", encoding="utf-8")
        with out:
            out.write("$ %s\n" % " ".join(argv))
            out.flush()
            t0 = time.monotonic()
            proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = None
            seconds = time.monotonic() - t0
            out.write("\n# rc %s, %.1f s\n" % (rc, seconds))
            out.flush()
            out.seek(0)
            text = out.read()
        return PlaybookRun(argv, rc, seconds, text, "" if rc is not None else "timed out after %d s" % timeout)


# --- open-loop load -----------------------------------------------------------------

# at: when the request was due, in seconds from the start of the schedule (for bench/_plot.py timelines)
# Fingerprinted assets a Next.js page names (roles/web).
WEB_ASSET = re.compile(r'/_next/static/[A-Za-z0-9_./~-]+\.(?:js|css|svg|woff2?)')
Result = collections.namedtuple("Result", "phase kind latency status error reused version at")
Job = collections.namedtuple("Job", "phase id expected")


def dropped(sock):
    """True when an idle keep-alive connection shows EOF, an error or bytes nobody asked for."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


class OpenLoop:
    """Requests at a fixed rate through the load balancer, counted without resends (see the module doc).

        load = OpenLoop(lb_address, rate=50, job_share=0.1)
        load.start(); load.phase = "deploy"; ...; load.stop()
        load.stats("deploy"); load.check_jobs()
    """

    JOB_CONSTANT = 1000003  # a sum job adds it to its sequence number

    def __init__(self, address, rate, port=80, job_share=0.0, connections=32, timeout=10.0,
                 max_seconds=3600.0, tag=None, score_events=0, job_sleep_ms=0, read_ids=None, web_host=None):
        if rate <= 0:
            raise LabError("the rate must be positive")
        self.address, self.port, self.rate = address, port, float(rate)
        self.job_share, self.timeout, self.max_seconds = job_share, timeout, max_seconds
        # score_events > 0: every request that is not a job is GET /score/:id?events=N
        # (CPU-bound, no database; examples/app/src/score.js) - the load of the autoscaling bench.
        self.score_events = int(score_events)
        # job_sleep_ms > 0: each sum job also sleeps that long in the worker (a slow job: queue latency grows).
        self.job_sleep_ms = int(job_sleep_ms)
        # read_ids: every request is GET /items/:id over these ids in turn (a read mix for the
        # cache bench, bench/cache_reads.py); the X-Cache answers are counted per phase.
        self.read_ids = list(read_ids or [])
        # web_host: page and asset loads of the web tier (see the module doc).
        self.web_host = web_host
        self.web_assets = []   # /_next/static/... named by the last page loaded
        self.cache_answers = collections.Counter()   # (phase, X-Cache or None) -> answers
        self.tag = tag or "bench-%d" % int(time.time())
        self.t0 = None         # monotonic start of the schedule (set by start())
        self.marks = []        # [(phase, t)] each phase change, t as Result.at
        self.ended = None      # when stop() ended the schedule, as Result.at
        self._phase = "before"
        self.results = []      # Result records, appended by the connection threads
        self.jobs = []         # Job records of the enqueues answered 2xx with an id
        self.scheduled = collections.Counter()   # phase -> requests scheduled
        self.new_connections = 0
        self.stale_dropped = 0  # idle connections found closed before reuse (not errors)
        self.item_id = None
        self._work = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._connections = connections
        self._threads = []
        self._scheduler = None

    @property
    def phase(self):
        return self._phase

    @phase.setter
    def phase(self, name):
        """Requests scheduled from now on count in phase `name`; the change is marked for the timeline."""
        self._phase = name
        if self.t0 is not None:
            self.marks.append((name, time.monotonic() - self.t0))

    # -- requests
    def _connection(self):
        return http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)

    def _request(self, conn, method, path, body=None, host=None):
        headers = {"Accept": "application/json"}
        if host:
            headers = {"Host": host, "Accept": "text/html,*/*"}
        if body is not None:
            body = json.dumps(body)
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body, headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.x_cache = resp.getheader("X-Cache")
        if host and resp.status == 200 and (resp.getheader("Content-Type") or "").startswith("text/html"):
            assets = sorted(set(WEB_ASSET.findall(data.decode("utf-8", "replace"))))
            if assets:
                with self._lock:
                    self.web_assets = assets
        return resp.status, data, resp.getheader("X-App-Version")

    def _kind(self, seq):
        if self.web_host:
            return "page" if seq % 2 == 0 else "asset"
        if self.read_ids:
            return "read"
        if self.job_share > 0 and int((seq + 1) * self.job_share) > int(seq * self.job_share):
            return "job"
        if self.score_events > 0:
            return "score"
        # the others alternate, counted without the jobs before them
        return "get" if (seq - int(seq * self.job_share)) % 2 == 0 else "post"

    def _send(self, conn, kind, seq):
        if kind == "page":
            path = "/items/%s" % self.item_id if seq % 4 == 0 else "/"
            return self._request(conn, "GET", path, host=self.web_host)
        if kind == "asset":
            with self._lock:
                assets = self.web_assets
            # seq // 2: asset requests are the odd ones, and every asset of the list gets its turn.
            path = "%s?n=%s-%d" % (assets[(seq // 2) % len(assets)], self.tag, seq) if assets else "/"
            return self._request(conn, "GET", path, host=self.web_host)
        if kind == "score":
            return self._request(conn, "GET", "/score/%d?events=%d" % (seq % 100000 + 1, self.score_events))
        if kind == "read":
            return self._request(conn, "GET", "/items/%s" % self.read_ids[seq % len(self.read_ids)])
        if kind == "get":
            return self._request(conn, "GET", "/items/%s" % self.item_id)
        if kind == "post":
            return self._request(conn, "POST", "/items", {"name": "bench", "payload": {"seq": seq, "run": self.tag}})
        job = {"type": "sum", "data": {"values": [seq, self.JOB_CONSTANT], "run": self.tag}}
        if self.job_sleep_ms:
            job["sleep_ms"] = self.job_sleep_ms
        return self._request(conn, "POST", "/jobs", job)

    def start(self, ready_timeout=20.0):
        """Create the item the GETs read (and wait until the read pool sees it), then start the schedule."""
        conn = self._connection()
        status, data, _ = self._request(conn, "POST", "/items", {"name": "bench", "payload": {"run": self.tag}})
        if status != 201:
            raise LabError("POST /items through the load balancer answered %d: %s" % (status, data[:200]))
        self.item_id = json.loads(data)["id"]
        deadline = time.monotonic() + ready_timeout
        while self._request(conn, "GET", "/items/%s" % self.item_id)[0] != 200:
            if time.monotonic() > deadline:
                raise LabError("GET /items/%s did not answer 200 within %.0f s" % (self.item_id, ready_timeout))
            time.sleep(0.2)
        if self.web_host:   # the assets the first page names
            status, data, _ = self._request(conn, "GET", "/", host=self.web_host)
            if status != 200 or not self.web_assets:
                raise LabError("GET / of the web tier (Host %s) answered %d without assets" % (self.web_host, status))
        conn.close()
        self._threads = [threading.Thread(target=self._worker, daemon=True) for _ in range(self._connections)]
        for thread in self._threads:
            thread.start()
        self.t0 = time.monotonic()
        self.marks = [(self._phase, 0.0)]
        self._scheduler = threading.Thread(target=self._schedule, daemon=True)
        self._scheduler.start()

    def _schedule(self):
        """One request every 1/rate s; `rate` may be changed while it runs (a ramp), the schedule stays continuous.

        Due times are counted from the last rate change (base + n / rate), not summed step by
        step, so a constant rate gives exactly rate requests per second (no floating drift).
        """
        t0, seq = self.t0, 0
        rate, base, base_seq = self.rate, self.t0, 0
        while not self._stop.is_set():
            if self.rate != rate:   # a new rate from the next request on
                base, base_seq, rate = base + (seq - base_seq) / rate, seq, self.rate
            due = base + (seq - base_seq) / rate
            if due - t0 > self.max_seconds:
                break
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            phase = self.phase
            with self._lock:
                self.scheduled[phase] += 1
            self._work.put((due, seq, self._kind(seq), phase))
            seq += 1

    def _worker(self):
        conn = self._connection()
        while True:
            item = self._work.get()
            if item is None:
                conn.close()
                return
            due, seq, kind, phase = item
            reused = False
            if conn.sock is not None:
                if dropped(conn.sock):
                    conn.close()
                    with self._lock:
                        self.stale_dropped += 1
                else:
                    reused = True
            try:
                if conn.sock is None:
                    try:
                        conn.connect()
                    except OSError as exc:
                        raise ConnectError(type(exc).__name__) from None
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    with self._lock:
                        self.new_connections += 1
                status, data, version = self._send(conn, kind, seq)
            except (OSError, http.client.HTTPException, ConnectError) as exc:
                # No complete answer: never resent (the server may have acted on it).
                error = "connect:%s" % exc if isinstance(exc, ConnectError) else type(exc).__name__
                self.results.append(Result(phase, kind, None, None, error, reused, None, due - self.t0))
                conn.close()
                continue
            self.results.append(Result(phase, kind, time.monotonic() - due, status, None, reused, version,
                                       due - self.t0))
            if kind == "read":
                with self._lock:
                    self.cache_answers[(phase, conn.x_cache)] += 1
            if kind == "job" and 200 <= status < 300:
                try:
                    job_id = str(json.loads(data)["id"])
                except (ValueError, KeyError, TypeError):
                    job_id = None
                self.jobs.append(Job(phase, job_id, seq + self.JOB_CONSTANT))

    def stop(self, drain_timeout=None):
        """Stop scheduling; wait for what was scheduled (bounded); what never got sent counts as an error."""
        self._stop.set()
        if self._scheduler:
            self._scheduler.join()
        # the load ends when nothing more is scheduled (draining what was sent is not load)
        self.ended = time.monotonic() - self.t0 if self.t0 is not None else 0.0
        total = sum(self.scheduled.values())
        deadline = time.monotonic() + (drain_timeout if drain_timeout is not None else self.timeout + 5)
        while len(self.results) < total and time.monotonic() < deadline:
            time.sleep(0.1)
        while True:  # still queued: scheduled, never sent
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self.results.append(Result(item[3], item[2], None, None, "not-sent", False, None, item[0] - self.t0))
        for _ in self._threads:
            self._work.put(None)
        for thread in self._threads:
            thread.join(self.timeout + 2)

    # -- figures
    def stats(self, phase):
        """Per-phase counters: sent, non2xx, conn_err, ka_reset (of conn_err), p50/p95/p99 ms, versions, errors."""
        rows = [r for r in self.results if r.phase == phase]
        lat = [r.latency * 1000 for r in rows if r.latency is not None]
        return {
            "sent": self.scheduled.get(phase, len(rows)),
            "answered": sum(1 for r in rows if r.status is not None),
            "non2xx": sum(1 for r in rows if r.status is not None and not 200 <= r.status < 300),
            "conn_err": sum(1 for r in rows if r.status is None),
            "ka_reset": sum(1 for r in rows if r.status is None and r.reused),
            "p50": percentile(lat, 50), "p95": percentile(lat, 95), "p99": percentile(lat, 99),
            "versions": collections.Counter(r.version for r in rows if r.version),
            "errors": collections.Counter(r.error for r in rows if r.error),
            "statuses": collections.Counter(r.status for r in rows
                                            if r.status is not None and not 200 <= r.status < 300),
            "jobs_sent": sum(1 for r in rows if r.kind == "job"),
        }

    def samples(self):
        """[(t, latency, ok)] of every request for bench/_plot.py: t when it was due (s from the start)."""
        return sorted(((r.at, r.latency, r.status is not None and 200 <= r.status < 300) for r in self.results),
                      key=lambda sample: sample[0])  # by time only: a latency may be None

    def phases(self):
        """[(phase, start, end)] spans of the phase marks, the last one ending when the load stopped."""
        end = self.ended
        if end is None:
            end = time.monotonic() - self.t0 if self.t0 is not None else 0.0
        return phase_spans(self.marks, end)

    def failed(self):
        """Requests without a 2xx answer, in all phases (non-2xx, connection errors, never sent)."""
        return sum(1 for r in self.results if r.status is None or not 200 <= r.status < 300)

    def check_jobs(self, timeout=120.0, threads=8):
        """Read every acknowledged job back through GET /jobs/:id until it completed (or the timeout).

        Returns {job id: (state, result)} and counts per phase
        {phase: {"acked", "done_right", "wrong", "missing"}}. Reading back is
        not load: it retries freely, and is not counted in the phase figures.
        """
        jobs = {j.id: j for j in self.jobs if j.id}
        seen = {}
        pending = set(jobs)
        deadline = time.monotonic() + timeout

        def read(ids):
            conn = self._connection()
            for job_id in ids:
                try:
                    status, data, _ = self._request(conn, "GET", "/jobs/%s" % job_id)
                    body = json.loads(data) if data else {}
                    seen[job_id] = (status, body.get("state"), body.get("result"))
                except (OSError, http.client.HTTPException, ValueError):
                    conn.close()
                    conn = self._connection()
            conn.close()

        while pending:
            ids = sorted(pending)
            chunks = [ids[i::threads] for i in range(threads)]
            workers = [threading.Thread(target=read, args=(chunk,), daemon=True) for chunk in chunks if chunk]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            for job_id in ids:
                status, state, result = seen.get(job_id, (None, None, None))
                if status == 200 and state == "completed" and result is not None:
                    pending.discard(job_id)
                elif status == 200 and state == "failed":
                    pending.discard(job_id)
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(1.0)

        counts = collections.defaultdict(lambda: collections.Counter(acked=0, done_right=0, wrong=0, missing=0))
        for job in self.jobs:
            row = counts[job.phase]
            row["acked"] += 1
            status, state, result = seen.get(job.id, (None, None, None)) if job.id else (None, None, None)
            if state == "completed" and result is not None:
                right = isinstance(result, (int, float)) and result == job.expected
                row["done_right" if right else "wrong"] += 1
            else:
                row["missing"] += 1
        return counts


class ConnectError(Exception):
    """A new connection to the load balancer could not be opened."""
