"""PostgreSQL under Patroni with etcd (recete.stack.postgresql with postgresql_patroni,
recete.stack.etcd), PgBouncer following the leader (recete-pgbouncer-follow).

On the lab, under a stream of writes through both PgBouncers, as a client that does
not resend counts them:
  1. the cluster: one leader (the inventory's primary), a synchronous standby, every
     member streaming, three healthy etcd members;
  2. the leader killed (Patroni and PostgreSQL SIGKILLed): a new leader within ttl plus
     a loop, writes succeed again through both PgBouncers without any run, and no
     acknowledged write is lost (synchronous mode);
  3. the old leader started again rejoins as a replica (pg_rewind when it diverged);
  4. switchover.yml back to the inventory's primary: no write failed (PgBouncer holds
     them), none lost;
  5. postgresql.yml and pgbouncer.yml re-run afterwards change nothing.
Each drill prints its figures (detection, recovery, failed and lost writes).
"""
import json
import os
import sys
import threading
import time

import psycopg
import testinfra.utils.ansible_runner

INVENTORY = os.environ["MOLECULE_INVENTORY_FILE"]
PROJECT = os.environ.get("MOLECULE_PROJECT_DIRECTORY", os.getcwd())
sys.path.insert(0, os.path.join(PROJECT, "tests", "support"))
from lab_run import Playbooks, changed_per_host, changed_tasks, lab_host  # noqa: E402  (tests/support helper)
from sandbox import assert_sandboxed  # noqa: E402  (tests/support helper)
playbook = Playbooks(INVENTORY, PROJECT)
RUNNER = testinfra.utils.ansible_runner.AnsibleRunner(INVENTORY)
MEMBERS = RUNNER.get_hosts("postgres")
POOLERS = RUNNER.get_hosts("pgbouncer")
PRIMARY = [h for h in MEMBERS if RUNNER.get_variables(h).get("postgresql_member_role") == "primary"][0]
VARS = RUNNER.get_variables(PRIMARY)
UNIT = "patroni@15-main"
TABLE = "recete_patroni_drill"
testinfra_hosts = [PRIMARY]


def on(name):
    return lab_host(INVENTORY, name)


def address(name):
    return RUNNER.get_variables(name)["ansible_host"]


def cluster(ask=None):
    """Patroni's GET /cluster from the first member that answers (skipping `ask`-excluded ones)."""
    for name in ask or MEMBERS:
        out = on(name).run(f"curl -sf --max-time 2 http://{address(name)}:8008/cluster")
        if out.rc == 0:
            return json.loads(out.stdout)
    return {"members": []}


def leader(among=None):
    """The running leader, asking (and accepting) only `among` when given: until its key
    expires (ttl), a killed leader is still listed as the running leader."""
    return next((m["name"] for m in cluster(among)["members"]
                 if m["role"] == "leader" and m["state"] == "running" and m["name"] in (among or MEMBERS)), None)


def sql(name, query, db="recete"):
    return on(name).check_output(f"runuser -u postgres -- psql -d {db} -XAtc \"{query}\"")


class Writes:
    """One writer per PgBouncer, each INSERTing the next id every `every` seconds on its
    own connection; an id is acknowledged when its commit returned. A failed write is
    not resent: it counts as failed and the writer reconnects for the next id."""

    def __init__(self, every=0.05):
        self.every, self.stop, self.lock = every, threading.Event(), threading.Lock()
        self.base = int(time.time()) * 100_000_000   # ids of this stream only
        self.acked, self.failed, self.events = [], [], []
        self.threads = [threading.Thread(target=self.write, args=(i, p), daemon=True) for i, p in enumerate(POOLERS)]

    def conninfo(self, pooler):
        return (f"host={address(pooler)} port=6432 dbname=recete user={VARS['postgresql_app_user']} "
                f"password={VARS['postgresql_app_password']} connect_timeout=3")

    def write(self, index, pooler):
        conn, n = None, 0
        while not self.stop.is_set():
            n += 1
            row_id = self.base + index * 10_000_000 + n
            started = time.monotonic()
            try:
                if conn is None:
                    # No server-side prepared statements: PgBouncer pools by transaction.
                    conn = psycopg.connect(self.conninfo(pooler), autocommit=True, prepare_threshold=None)
                conn.execute(f"INSERT INTO {TABLE} (id) VALUES (%s)", (row_id,))
                with self.lock:
                    self.acked.append(row_id)
                    self.events.append((time.monotonic(), True, started))
            except psycopg.Error as exc:
                with self.lock:
                    self.failed.append((row_id, type(exc).__name__, str(exc).strip()[:120]))
                    self.events.append((time.monotonic(), False, started))
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(max(0.0, self.every - (time.monotonic() - started)))
        if conn is not None:
            conn.close()

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def first_success_started_after(self, t):
        """When the first write sent after `t` was acknowledged (None: not yet)."""
        with self.lock:
            return next((at for at, ok, sent in self.events if ok and sent > t), None)

    def successes_after(self, t):
        with self.lock:
            return sum(1 for at, ok, _ in self.events if ok and at > t)

    def timeline(self, t0):
        """Per second from t0: successes/failures, and the distinct errors - for the report."""
        with self.lock:
            events, failed = list(self.events), list(self.failed)
        seconds = {}
        for at, ok, _ in events:
            if at >= t0:
                row = seconds.setdefault(int(at - t0), [0, 0])
                row[0 if ok else 1] += 1
        errors = sorted({f"{kind}: {text}" for _, kind, text in failed})
        return " ".join(f"{s}s:{ok}/{bad}" for s, (ok, bad) in sorted(seconds.items())) + "\n" + "\n".join(errors[:8])


def lost(writes, on_member):
    """Acknowledged ids missing from the table, read on `on_member` (the leader)."""
    present = {int(v) for v in sql(on_member, f"SELECT id FROM {TABLE} WHERE id >= {writes.base}").split()}
    return sorted(set(writes.acked) - present)


def wait(predicate, timeout, every=0.5, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(every)


def wait_streaming(name, timeout=120):
    wait(lambda: on(name).run(f"curl -sf --max-time 2 http://{address(name)}:8008/replica").rc == 0,
         timeout, what=f"{name} running as a replica")


def test_one_leader_a_synchronous_standby_and_a_healthy_etcd():
    # Patroni names a synchronous standby within a loop of a change.
    members = {m["name"]: m for m in wait(
        lambda: [m for m in cluster()["members"]] if any(m["role"] == "sync_standby" for m in cluster()["members"]) else [],
        30, what="a synchronous standby in Patroni's cluster")}
    assert sorted(members) == sorted(MEMBERS), members
    assert leader() == PRIMARY, members
    assert all(m["state"] in ("running", "streaming") for m in members.values()), members
    health = on(PRIMARY).check_output("etcdctl endpoint health --cluster -w json")
    assert [e["health"] for e in json.loads(health)] == [True] * len(MEMBERS), health
    # Debian's own unit never runs the server: Patroni's does, and start.conf says manual.
    for name in MEMBERS:
        assert on(name).service(UNIT).is_enabled and on(name).service(UNIT).is_running
        assert not on(name).service("postgresql@15-main").is_running
        assert on(name).file("/etc/postgresql/15/main/start.conf").content_string.strip().endswith("manual")
        assert on(name).file("/etc/patroni/15-main.yml").mode == 0o640
    sql(PRIMARY, f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigint PRIMARY KEY, at timestamptz DEFAULT now()); "
                 f"ALTER TABLE {TABLE} OWNER TO {VARS['postgresql_app_user']}")


def test_etcd_runs_sandboxed_and_healthy():
    """etcd's drop-in (roles/etcd, etcd-hardening.conf.j2): Debian's unit alone rates 9.2. The
    cluster stays healthy and writable in it (Patroni's leader lock lives there)."""
    for name in MEMBERS:
        assert_sandboxed(on(name), "etcd", 2.0)
    health = on(PRIMARY).check_output("etcdctl endpoint health --cluster -w json")
    assert [e["health"] for e in json.loads(health)] == [True] * len(MEMBERS), health
    key = "/recete-sandbox-check"
    on(PRIMARY).check_output(f"etcdctl put {key} ok")
    try:
        assert on(MEMBERS[-1]).check_output(f"etcdctl get --print-value-only {key}").strip() == "ok"
    finally:
        on(PRIMARY).run(f"etcdctl del {key}")


def test_the_leader_killed_under_writes_fails_over_and_loses_no_acknowledged_write():
    old = leader()
    survivors = [m for m in MEMBERS if m != old]
    with Writes() as writes:
        time.sleep(5)
        before = len(writes.acked)
        assert before > 0 and not writes.failed, writes.failed
        killed = time.monotonic()
        on(old).run(f"systemctl kill --kill-whom=all --signal=SIGKILL {UNIT}")
        dead = time.monotonic()   # every write sent from now on needs the new leader
        new = wait(lambda: leader(survivors), 90, every=0.25, what="a new leader")
        detected = time.monotonic() - killed
        recovered_at = wait(lambda: writes.first_success_started_after(dead), 60, every=0.25,
                            what="a write sent after the kill acknowledged: " + writes.timeline(killed))
        time.sleep(5)
        assert writes.successes_after(recovered_at) > 20, \
            "writes did not keep flowing after the failover: " + writes.timeline(killed)
    missing = lost(writes, new)
    print(f"\nfailover: {old} killed; {new} leads after {detected:.1f} s; first write acknowledged "
          f"{recovered_at - killed:.1f} s after the kill; failed writes {len(writes.failed)} of "
          f"{len(writes.acked) + len(writes.failed)}; acknowledged writes lost {len(missing)} of {len(writes.acked)}")
    ttl, loop_wait = int(VARS.get("postgresql_patroni_ttl", 30)), int(VARS.get("postgresql_patroni_loop_wait", 10))
    assert new in survivors
    assert detected <= ttl + loop_wait + 10, detected
    assert missing == [], missing[:20]
    # Both PgBouncers point at the new leader, by their followers alone.
    for pooler in POOLERS:
        entry = on(pooler).file("/etc/pgbouncer/follow/primary.ini").content_string
        assert f"host={address(new)} " in entry, (pooler, entry)
    # The old leader comes back as a replica of the new one (pg_rewind if it diverged).
    on(old).check_output(f"systemctl start {UNIT}")
    wait_streaming(old)
    assert sql(old, "SELECT pg_is_in_recovery()") == "t"
    timeline = {m["name"]: m.get("timeline") for m in cluster()["members"]}
    assert len(set(timeline.values())) == 1, timeline


def test_switchover_back_to_the_inventory_primary_fails_and_loses_nothing():
    current = leader()
    assert current != PRIMARY, "the failover drill left the inventory's primary leading"
    with Writes() as writes:
        time.sleep(3)
        started = time.monotonic()
        playbook("playbooks/switchover.yml", "-e", f"candidate={PRIMARY}")
        took = time.monotonic() - started
        time.sleep(3)
    missing = lost(writes, PRIMARY)
    print(f"\nswitchover {current} -> {PRIMARY}: playbook {took:.1f} s; failed writes {len(writes.failed)} of "
          f"{len(writes.acked) + len(writes.failed)}; acknowledged writes lost {len(missing)}")
    assert leader() == PRIMARY
    assert missing == [], missing[:20]
    assert writes.failed == [], writes.failed[:10]
    wait_streaming(current)


def test_reruns_after_the_drills_change_nothing():
    for path in ("playbooks/postgresql.yml", "playbooks/pgbouncer.yml"):
        out = playbook(path)
        changed = changed_per_host(out)
        assert changed and not any(changed.values()), (path, changed_tasks(out))
    sql(PRIMARY, f"DROP TABLE IF EXISTS {TABLE}")
