"""Point PgBouncer's read-write entry at whichever PostgreSQL member Patroni says leads.

Installed by recete.stack.pgbouncer when PostgreSQL runs under Patroni. Every
`interval` seconds it asks the members' REST APIs (GET /cluster, the first that
answers) for the leader and renders the entry line for it; when the include
file PgBouncer reads holds anything else, the file is replaced atomically and
PgBouncer reloaded (SIGHUP: it re-reads its files and moves new server
connections to the new host; the old primary's connections end with it).

While no member answers, or the cluster has no leader (the seconds of a
failover), the file is left as it is: PgBouncer keeps trying the last leader
and clients wait or get that server's error, never a wrong server.

Written here because nothing packaged does this: Patroni's callbacks run on the
database hosts, not on the poolers, and vip-manager (Debian's 1.0) needs etcd's
v2 API and a shared layer-2 network. Python's standard library only.

    recete_pgbouncer_follow.py CONFIG.json      (the role's unit runs it as postgres)
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

LEADER_ROLES = ("leader", "standby_leader")


def leader_host(cluster):
    """The address of the running leader in Patroni's GET /cluster answer, or None."""
    for member in cluster.get("members") or []:
        if member.get("role") in LEADER_ROLES and member.get("state") == "running" and member.get("host"):
            return member["host"]
    return None


def render(line, host):
    """The include file's content for this leader."""
    return line.replace("{host}", host).rstrip("\n") + "\n"


def ask_cluster(apis, timeout, first=0):
    """Patroni's /cluster from the first API that answers, trying from index `first`;
    returns (answer, index) or (None, first)."""
    for step in range(len(apis)):
        index = (first + step) % len(apis)
        try:
            with urllib.request.urlopen(apis[index].rstrip("/") + "/cluster", timeout=timeout) as reply:
                return json.load(reply), index
        except (OSError, ValueError, urllib.error.URLError):
            continue
    return None, first


def read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def write_atomically(path, text):
    """Replace `path` with `text` in one rename (PgBouncer never reads half a file)."""
    directory = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".primary-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o640)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def pgbouncer_pid(unit):
    out = subprocess.run(["systemctl", "show", "--property", "MainPID", "--value", unit],
                         capture_output=True, text=True, check=False).stdout.strip()
    return int(out) if out.isdigit() and int(out) > 0 else None


def reload_pgbouncer(unit):
    """SIGHUP = PgBouncer's RELOAD. Same user as PgBouncer, so no privilege is needed."""
    pid = pgbouncer_pid(unit)
    if pid is None:
        return False
    os.kill(pid, signal.SIGHUP)
    return True


class Follower:
    def __init__(self, config, log=print):
        self.apis = list(config["apis"])
        self.include = config["include"]
        self.line = config["line"]
        self.unit = config.get("unit", "pgbouncer")
        self.interval = float(config.get("interval", 1.0))
        self.timeout = float(config.get("timeout", 1.0))
        self.log = log
        self.first = 0
        self.state = None   # last reported state, so each change is logged once

    def report(self, state, message):
        if state != self.state:
            self.log(message)
            self.state = state

    def step(self):
        """One round; returns the leader's address when the file was changed."""
        cluster, self.first = ask_cluster(self.apis, self.timeout, self.first)
        if cluster is None:
            self.report("no-api", "no Patroni API answers (%s); PgBouncer keeps its target" % ", ".join(self.apis))
            return None
        host = leader_host(cluster)
        if host is None:
            self.report("no-leader", "the cluster has no running leader now; PgBouncer keeps its target")
            return None
        wanted = render(self.line, host)
        if read_text(self.include) == wanted:
            self.report("ok " + host, "PgBouncer's read-write entry points at the leader, %s" % host)
            return None
        write_atomically(self.include, wanted)
        reloaded = reload_pgbouncer(self.unit)
        self.report("ok " + host, "leader is now %s: entry rewritten, PgBouncer %s"
                    % (host, "reloaded" if reloaded else "not running (it reads the file at start)"))
        return host

    def run(self):
        while True:
            started = time.monotonic()
            try:
                self.step()
            except OSError as exc:   # a full disk or a vanished process: say so, try again
                self.report("error " + str(exc), "error: %s" % exc)
            time.sleep(max(0.0, self.interval - (time.monotonic() - started)))


def main(argv):
    if len(argv) != 2:
        print("usage: recete_pgbouncer_follow.py CONFIG.json", file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as handle:
        config = json.load(handle)
    Follower(config, log=lambda message: print(message, flush=True)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
