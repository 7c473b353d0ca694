# Copyright: recete.stack maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write stream for the Redis failover drill (playbooks/drill_redis_failover.yml).

Runs on a host that survives the drill. Appends sequence numbers to a Redis
list through whatever master Sentinel names, as the application user, every
--interval seconds, and records every acknowledged write with its time and the
server that took it. Optionally also enqueues jobs through the application's
HTTP API (--jobs-url) and afterwards checks that the workers completed them.

Stops after --duration seconds or on SIGTERM, then checks every acknowledged
write on the current master and writes a JSON summary to --out:
first/last acknowledged write per server (so the drill can measure kill ->
first write on the new master), the longest gap between acknowledged writes,
errors by kind, and the acknowledged writes missing on the new master (lost).

Passwords come from the environment: PROBE_PASSWORD (the application user)
and PROBE_SENTINEL_PASSWORD.
"""

import argparse
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

STOP = threading.Event()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sentinels', required=True, help='host:port,host:port,...')
    parser.add_argument('--master-name', required=True)
    parser.add_argument('--user', required=True, help='Redis ACL user (the application user)')
    parser.add_argument('--key', required=True, help='list to append to (within the user\'s key patterns)')
    parser.add_argument('--interval', type=float, default=0.01, help='seconds between writes')
    parser.add_argument('--duration', type=float, default=300, help='stop after this many seconds')
    parser.add_argument('--timeout', type=float, default=0.5, help='socket timeout of each write')
    parser.add_argument('--wait-replicas', type=int, default=0,
                        help='count a write as acknowledged only after WAIT <n> confirms it')
    parser.add_argument('--wait-timeout-ms', type=int, default=100)
    parser.add_argument('--jobs-url', default='', help='POST jobs here too (the app API, e.g. http://lb1/jobs)')
    parser.add_argument('--jobs-interval', type=float, default=0.1)
    parser.add_argument('--jobs-settle', type=float, default=60,
                        help='seconds to wait for accepted jobs to complete after the stream stops')
    parser.add_argument('--tls-ca', default='', help='CA file: reach the Sentinels and Redis over TLS, verified with it')
    parser.add_argument('--out', required=True, help='JSON summary file')
    return parser.parse_args()


class Writer(object):
    def __init__(self, args):
        self.args = args
        hosts = []
        for item in args.sentinels.split(','):
            host, port = item.rsplit(':', 1)
            hosts.append((host, int(port)))
        # TLS (the redis role's redis_tls): the certificate and the address checked.
        self.tls = dict(ssl=True, ssl_ca_certs=args.tls_ca, ssl_cert_reqs='required',
                        ssl_check_hostname=True) if args.tls_ca else {}
        self.sentinel = Sentinel(hosts, socket_timeout=args.timeout,
                                 sentinel_kwargs=dict({'password': os.environ.get('PROBE_SENTINEL_PASSWORD'),
                                                       'socket_timeout': args.timeout}, **self.tls))
        self.password = os.environ.get('PROBE_PASSWORD')
        self.client = None
        self.address = None
        self.acked = []          # (seq, time, address)
        self.unconfirmed = 0     # written, but WAIT did not confirm a replica
        self.errors = {}
        self.attempts = 0

    def connect(self):
        host, port = self.sentinel.discover_master(self.args.master_name)
        self.address = '%s:%s' % (host, port)
        # No retries inside redis-py: every failure must show as a data point.
        self.client = redis.Redis(host=host, port=port, username=self.args.user, password=self.password,
                                  socket_timeout=self.args.timeout, socket_connect_timeout=self.args.timeout,
                                  retry=Retry(NoBackoff(), 0), **self.tls)

    def error(self, exc):
        kind = exc.__class__.__name__
        text = str(exc).split(' ', maxsplit=1)[0] if str(exc) else ''
        if text.isupper():
            kind = '%s %s' % (kind, text)
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.client = None

    def run(self):
        seq = 0
        deadline = time.time() + self.args.duration
        while not STOP.is_set() and time.time() < deadline:
            started = time.time()
            try:
                if self.client is None:
                    self.connect()
                seq += 1
                self.attempts += 1
                self.client.rpush(self.args.key, seq)
                if self.args.wait_replicas:
                    if self.client.execute_command('WAIT', self.args.wait_replicas,
                                                   self.args.wait_timeout_ms) < self.args.wait_replicas:
                        self.unconfirmed += 1
                        continue
                self.acked.append((seq, time.time(), self.address))
            except Exception as exc:  # every failure is a data point
                self.error(exc)
                time.sleep(0.05)
                continue
            pause = self.args.interval - (time.time() - started)
            if pause > 0:
                time.sleep(pause)

    def verify(self):
        """Read the list back from the current master: which acked writes are gone?"""
        for _attempt in range(60):
            try:
                self.connect()
                present = set(int(v) for v in self.client.lrange(self.args.key, 0, -1))
                break
            except Exception as exc:
                self.error(exc)
                time.sleep(1)
        else:
            return dict(verified=False)
        acked = set(seq for seq, _t, _a in self.acked)
        lost = sorted(acked - present)
        return dict(verified=True, verified_on=self.address, present=len(present), lost_count=len(lost),
                    lost_sample=lost[:50], present_unacked=len(present - acked))

    def summary(self):
        per_server = {}
        gaps = []
        previous = None
        for seq, stamp, address in self.acked:
            entry = per_server.setdefault(address, dict(first=stamp, last=stamp, count=0))
            entry['last'] = stamp
            entry['count'] += 1
            if previous is not None:
                gaps.append((stamp - previous[1], previous[1], stamp))
            previous = (seq, stamp, address)
        longest = max(gaps) if gaps else (0, None, None)
        switches = []
        for (_s1, t1, a1), (_s2, t2, a2) in zip(self.acked, self.acked[1:]):
            if a1 != a2:
                switches.append(dict(last_on_old=t1, first_on_new=t2, old=a1, new=a2))
        return dict(attempts=self.attempts, acked=len(self.acked), unconfirmed=self.unconfirmed, errors=self.errors,
                    servers=per_server, switches=switches, longest_gap_s=round(longest[0], 3),
                    longest_gap_from=longest[1], longest_gap_to=longest[2])


class Jobs(object):
    """Enqueue jobs through the application's API and check they complete."""

    def __init__(self, args):
        self.args = args
        self.accepted = []   # (id, time)
        self.refused = {}

    def post(self, seq):
        body = json.dumps({'type': 'echo', 'data': {'drill_seq': seq}}).encode()
        request = urllib.request.Request(self.args.jobs_url, data=body, method='POST',
                                         headers={'Content-Type': 'application/json'})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read().decode())['id']

    def run(self):
        seq = 0
        while not STOP.is_set():
            seq += 1
            try:
                self.accepted.append((self.post(seq), time.time()))
            except urllib.error.HTTPError as exc:
                self.refused[str(exc.code)] = self.refused.get(str(exc.code), 0) + 1
            except Exception as exc:
                kind = exc.__class__.__name__
                self.refused[kind] = self.refused.get(kind, 0) + 1
            time.sleep(self.args.jobs_interval)

    def state(self, job_id):
        base = self.args.jobs_url.rstrip('/')
        with urllib.request.urlopen('%s/%s' % (base, job_id), timeout=10) as response:
            return json.loads(response.read().decode()).get('state')

    def verify(self):
        pending = dict(self.accepted)
        deadline = time.time() + self.args.jobs_settle
        states = {}
        while pending and time.time() < deadline:
            for job_id in list(pending):
                try:
                    states[job_id] = self.state(job_id)
                except Exception as exc:
                    states[job_id] = 'lookup failed: %s' % exc.__class__.__name__
                if states[job_id] == 'completed':
                    del pending[job_id]
            if pending:
                time.sleep(1)
        counts = {}
        for value in states.values():
            counts[value] = counts.get(value, 0) + 1
        return dict(accepted=len(self.accepted), refused=self.refused, states=counts,
                    not_completed=len(pending), not_completed_sample=sorted(pending)[:20])


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: STOP.set())
    signal.signal(signal.SIGINT, lambda *_: STOP.set())
    writer = Writer(args)
    jobs = Jobs(args) if args.jobs_url else None
    try:
        writer.connect()
        writer.client.delete(args.key)
    except Exception as exc:
        writer.error(exc)
    started = time.time()
    threads = [threading.Thread(target=writer.run)]
    if jobs:
        threads.append(threading.Thread(target=jobs.run))
    for thread in threads:
        thread.start()
    threads[0].join()
    STOP.set()
    for thread in threads[1:]:
        thread.join()
    result = dict(started=started, stopped=time.time(), interval=args.interval, wait_replicas=args.wait_replicas)
    result.update(writer.summary())
    result.update(writer.verify())
    if jobs:
        result['jobs'] = jobs.verify()
    try:
        writer.client.delete(args.key)
    except Exception:
        pass
    tmp = args.out + '.tmp'
    with open(tmp, 'w') as handle:
        json.dump(result, handle, indent=1, sort_keys=True)
    os.rename(tmp, args.out)


if __name__ == '__main__':
    main()
