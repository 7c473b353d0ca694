#!/usr/bin/env python3
"""Redis failover benchmark: kill the master for real, measure, restore.

    .venv/bin/python bench/failover.py --inventory /tmp/dredis-inventory/hosts.yml [--rounds 3] [--bullmq]
                                       [--png PATH | --no-png]

Runs on the controller against a lab (or any inventory) where the redis role
was applied. Each round:

1. asks the Sentinels for the master and checks CKQUORUM;
2. writes sequence numbers to a Redis list through Sentinel's master, as the
   application user, every --interval s, and records each acknowledged write
   with the server that took it (--wait-replicas N: a write only counts as
   acknowledged once WAIT N confirms it reached N replicas);
3. with --bullmq, also runs a BullMQ producer and worker that use the
   reference app's own connection options (bench/bullmq_stream.mjs);
4. SIGKILLs the master's redis-server over SSH (systemd's MainPID), with
   systemd's automatic restart held back so the master stays dead;
5. measures seconds from the kill to Sentinel naming a new master and to the
   first write the new master acknowledged;
6. brings the old master back and waits until it is a replica of the new one;
7. checks every acknowledged write on the new master: lost = acknowledged
   but missing.

Prints the figures of each round next to down-after-milliseconds. Sentinel
does not fail the same master over twice within 2 x failover-timeout, so
rounds are spaced accordingly. Then every round on one timeline
(bench/_plot.py): write latency p50/p95/p99 and acknowledged writes / errors
per second, the phases of each round shaded, the kill and the switch as
lines, to --png, default bench/out/failover-<timestamp>.png.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _plot  # noqa: E402  (bench/ helper: the timeline picture)

HERE = os.path.dirname(os.path.abspath(__file__))
# redis-py 5+ retries failed commands with a backoff of up to seconds by default:
# that would hide the very gap this benchmark measures.
NO_RETRY = Retry(NoBackoff(), 0)
DROPIN = '/run/systemd/system/redis-server.service.d/90-recete-bench.conf'


def inventory(path):
    """Hosts, groups and variables as Ansible sees them (group_vars included)."""
    raw = subprocess.run(['ansible-inventory', '-i', path, '--list'], check=True, capture_output=True, text=True)
    data = json.loads(raw.stdout)
    hostvars = data.get('_meta', {}).get('hostvars', {})

    def hosts(group):
        return data.get(group, {}).get('hosts', [])
    return hosts, hostvars


class Lab(object):
    def __init__(self, path):
        self.hosts, self.hostvars = inventory(path)
        self.redis_hosts = self.hosts('redis')
        self.sentinel_hosts = self.hosts('sentinel')
        if not self.redis_hosts or not self.sentinel_hosts:
            sys.exit('bench: the inventory has no hosts in groups redis and sentinel')
        some = self.hostvars[self.redis_hosts[0]]
        self.var = lambda name, default=None: some.get(name, default)
        for name in ('redis_app_password', 'redis_sentinel_password'):
            if not self.var(name):
                sys.exit('bench: %s is not set for the redis hosts (group_vars next to the inventory?)' % name)
        self.sentinel_port = int(self.var('redis_sentinel_port', 26379))
        self.master_name = self.var('redis_master_name', 'recete')
        self.app_user = self.var('redis_app_user', 'recete')
        self.tls = {}

    def use_tls(self):
        """With redis_tls (from internal_tls_enabled), fetch the internal CA's certificate from a
        Redis host and verify every server with it, as the app does."""
        if not self.var('redis_tls', self.var('internal_tls_enabled', False)):
            return
        handle = tempfile.NamedTemporaryFile('w', prefix='recete-ca-', suffix='.crt', delete=False)
        with handle:
            handle.write(self.ssh(self.redis_hosts[0], 'cat /etc/recete/tls/ca.crt'))
        self.tls = dict(ssl=True, ssl_ca_certs=handle.name, ssl_cert_reqs='required', ssl_check_hostname=True)

    def address(self, host):
        hv = self.hostvars[host]
        return hv.get('redis_bind_address') or hv.get('ansible_host') or host

    def host_of(self, ip):
        for host in self.redis_hosts:
            if self.address(host) == ip:
                return host
        return None

    def sentinels(self):
        return [(self.address(h), self.sentinel_port) for h in self.sentinel_hosts]

    def sentinel(self, address):
        return redis.Redis(host=address[0], port=address[1], password=self.var('redis_sentinel_password'),
                           socket_timeout=0.5, socket_connect_timeout=0.5, decode_responses=True, retry=NO_RETRY,
                           **self.tls)

    def ssh(self, host, script):
        hv = self.hostvars[host]
        argv = ['ssh', '-o', 'BatchMode=yes']
        argv += shlex.split(hv.get('ansible_ssh_common_args', ''))
        if hv.get('ansible_ssh_private_key_file'):
            argv += ['-i', hv['ansible_ssh_private_key_file']]
        user = hv.get('ansible_user')
        argv += ['%s%s' % (user + '@' if user else '', hv.get('ansible_host', host)), 'sudo', 'sh', '-c', shlex.quote(script)]
        return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def sentinel_view(lab):
    """Master address each Sentinel names, and the first CKQUORUM answer."""
    views, quorum = {}, None
    for address in lab.sentinels():
        try:
            client = lab.sentinel(address)
            ip, port = client.execute_command('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', lab.master_name)
            views['%s:%s' % address] = '%s:%s' % (ip, port)
            if quorum is None:
                quorum = client.execute_command('SENTINEL', 'CKQUORUM', lab.master_name)
        except Exception as exc:
            views['%s:%s' % address] = 'error: %s' % exc
    return views, quorum


def master_settings(lab):
    for address in lab.sentinels():
        try:
            raw = lab.sentinel(address).execute_command('SENTINEL', 'MASTER', lab.master_name)
            return dict(zip(raw[0::2], raw[1::2]))
        except Exception:
            continue
    sys.exit('bench: no Sentinel answers SENTINEL MASTER %s' % lab.master_name)


class Writer(threading.Thread):
    """Appends sequence numbers through Sentinel's master; records acknowledgements."""

    def __init__(self, lab, key, interval, wait_replicas, t0=None):
        super().__init__(daemon=True)
        self.lab, self.key, self.interval, self.wait_replicas = lab, key, interval, wait_replicas
        self.t0 = time.time() if t0 is None else t0  # the timeline's origin (time.time())
        self.samples = []  # (t, latency, acknowledged) per write attempt, for the timeline
        self.stop = threading.Event()
        self.acked = []
        self.errors = {}
        self.unconfirmed = 0
        self.client = None
        self.address = None

    def connect(self):
        for address in self.lab.sentinels():
            try:
                ip, port = self.lab.sentinel(address).execute_command(
                    'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', self.lab.master_name)
                break
            except Exception:
                continue
        else:
            raise ConnectionError('no Sentinel answers')
        self.address = '%s:%s' % (ip, port)
        self.client = redis.Redis(host=ip, port=int(port), username=self.lab.app_user,
                                  password=self.lab.var('redis_app_password'), socket_timeout=0.5,
                                  socket_connect_timeout=0.5, retry=NO_RETRY, **self.lab.tls)

    def run(self):
        seq = 0
        while not self.stop.is_set():
            started = time.time()
            try:
                if self.client is None:
                    self.connect()
                seq += 1
                self.client.rpush(self.key, seq)
                if self.wait_replicas and self.client.execute_command('WAIT', self.wait_replicas, 100) < self.wait_replicas:
                    self.unconfirmed += 1
                    self.samples.append((started - self.t0, time.time() - started, False))
                    continue
                self.acked.append((seq, time.time(), self.address))
                self.samples.append((started - self.t0, time.time() - started, True))
            except Exception as exc:
                self.samples.append((started - self.t0, None, False))
                kind = exc.__class__.__name__
                word = str(exc).split(' ')[0]
                if word.isupper():
                    kind += ' ' + word
                self.errors[kind] = self.errors.get(kind, 0) + 1
                self.client = None
                time.sleep(0.02)
                continue
            pause = self.interval - (time.time() - started)
            if pause > 0:
                time.sleep(pause)

    def first_ack_on(self, address, after):
        for _seq, stamp, addr in self.acked:
            if addr == address and stamp > after:
                return stamp
        return None

    def longest_gap(self):
        stamps = [s for _q, s, _a in self.acked]
        return max((b - a for a, b in zip(stamps, stamps[1:])), default=0.0)

    def verify(self):
        for _attempt in range(30):
            try:
                self.connect()
                present = set(int(v) for v in self.client.lrange(self.key, 0, -1))
                self.client.delete(self.key)
                break
            except Exception:
                time.sleep(1)
        else:
            return None, None
        acked = set(q for q, _s, _a in self.acked)
        return sorted(acked - present), len(present - acked)


def start_bullmq(lab, interval_ms, run_retry_delay_ms=None):
    env = dict(os.environ,
               REDIS_SENTINELS=','.join('%s:%s' % a for a in lab.sentinels()),
               REDIS_MASTER_NAME=lab.master_name, REDIS_USERNAME=lab.app_user,
               REDIS_PASSWORD=lab.var('redis_app_password'),
               REDIS_SENTINEL_PASSWORD=lab.var('redis_sentinel_password'),
               QUEUE_NAME='recete-bench', STREAM_INTERVAL_MS=str(interval_ms))
    if run_retry_delay_ms is not None:
        env['WORKER_RUN_RETRY_DELAY_MS'] = str(run_retry_delay_ms)
    proc = subprocess.Popen(['node', os.path.join(HERE, 'bullmq_stream.mjs')], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if '"ready"' not in line:
        proc.kill()
        sys.exit('bench: the BullMQ stream did not start: %s %s' % (line, proc.stderr.read()[-2000:]))
    return proc


def stop_bullmq(proc):
    proc.terminate()
    out, _err = proc.communicate(timeout=90)
    for line in out.splitlines():
        if '"summary"' in line:
            return json.loads(line)
    return {'error': 'no summary', 'stderr': _err[-2000:]}


def wait_for_replica(lab, old_address, new_address, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for address in lab.sentinels():
            try:
                for raw in lab.sentinel(address).execute_command('SENTINEL', 'REPLICAS', lab.master_name):
                    r = dict(zip(raw[0::2], raw[1::2]))
                    if ('%s:%s' % (r['ip'], r['port']) == old_address and 's_down' not in r['flags']
                            and r.get('master-link-status') == 'ok'
                            and '%s:%s' % (r.get('master-host'), r.get('master-port')) == new_address):
                        return time.time()
            except Exception:
                pass
            break
        time.sleep(0.2)
    return None


def one_round(lab, args, number, t0=None):
    views, quorum = sentinel_view(lab)
    masters = set(views.values())
    if len(masters) != 1 or not str(quorum).startswith('OK'):
        sys.exit('bench: Sentinels disagree or no quorum: %s / %s' % (views, quorum))
    old_address = masters.pop()
    old_host = lab.host_of(old_address.rsplit(':', 1)[0])
    settings = master_settings(lab)

    writer = Writer(lab, 'bull:recete-bench:probe-%d' % number, args.interval, args.wait_replicas, t0)
    began = time.time()
    bullmq = start_bullmq(lab, args.bullmq_interval_ms, args.bullmq_run_retry_delay_ms) if args.bullmq else None
    writer.start()
    time.sleep(args.warmup)

    kill = lab.ssh(old_host, 'mkdir -p %s && printf "[Service]\\nRestart=no\\n" > %s && systemctl daemon-reload && '
                             'pid=$(systemctl show -p MainPID --value redis-server) && date +%%s.%%N && kill -KILL "$pid"'
                   % (os.path.dirname(DROPIN), DROPIN))
    killed_at = float(kill.strip().splitlines()[-1])

    switched_at, new_address = None, None
    deadline = killed_at + 60
    while time.time() < deadline:
        views, _q = sentinel_view(lab)
        named = [v for v in views.values() if not v.startswith('error') and v != old_address]
        if named:
            switched_at, new_address = time.time(), named[0]
            break
        time.sleep(0.05)
    if new_address is None:
        lab.ssh(old_host, 'rm -f %s && systemctl daemon-reload && systemctl start redis-server' % DROPIN)
        sys.exit('bench: no new master within 60 s of the kill')

    first_write = None
    while first_write is None and time.time() < deadline:
        first_write = writer.first_ack_on(new_address, killed_at)
        time.sleep(0.05)
    time.sleep(args.settle)

    lab.ssh(old_host, 'rm -f %s && systemctl daemon-reload && systemctl start redis-server' % DROPIN)
    restarted_at = time.time()
    rejoined_at = wait_for_replica(lab, old_address, new_address)
    time.sleep(args.settle)

    writer.stop.set()
    writer.join()
    ended = time.time()
    lost, unacked_present = writer.verify()
    views, quorum = sentinel_view(lab)
    result = dict(
        round=number, old_master='%s (%s)' % (old_host, old_address),
        new_master='%s (%s)' % (lab.host_of(new_address.rsplit(':', 1)[0]), new_address),
        down_after_ms=int(settings['down-after-milliseconds']),
        kill_to_new_master_s=round(switched_at - killed_at, 2),
        kill_to_first_write_s=round(first_write - killed_at, 2) if first_write else None,
        longest_write_gap_s=round(writer.longest_gap(), 2),
        writes_acked=len(writer.acked), writes_unconfirmed_by_wait=writer.unconfirmed,
        writes_lost=None if lost is None else len(lost), lost_sample=(lost or [])[:20],
        present_but_unacked=unacked_present, write_errors=writer.errors,
        old_master_rejoined_as_replica_s=round(rejoined_at - restarted_at, 2) if rejoined_at else None,
        sentinels_agree=len(set(views.values())) == 1, ckquorum=quorum,
    )
    if bullmq:
        result['bullmq'] = stop_bullmq(bullmq)
    # for the timeline, in seconds from t0 (not printed, not in --json)
    at = (lambda stamp: stamp - writer.t0)
    marks = [('r%d warm-up' % number, at(began)), ('r%d kill -> first write' % number, at(killed_at)),
             ('r%d new master' % number, at(first_write or switched_at)),
             ('r%d old master restarted' % number, at(restarted_at))]
    if rejoined_at:
        marks.append(('r%d rejoined' % number, at(rejoined_at)))
    result['_timeline'] = dict(samples=writer.samples, phases=_plot.phase_spans(marks, at(ended)),
                               events=[('kill', at(killed_at)), ('new master named', at(switched_at))])
    return result, int(settings['failover-timeout'])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--inventory', required=True, help='inventory of a lab where the redis role ran')
    parser.add_argument('--rounds', type=int, default=1)
    parser.add_argument('--interval', type=float, default=0.005, help='seconds between writes (default 0.005)')
    parser.add_argument('--wait-replicas', type=int, default=0,
                        help='acknowledge a write only after WAIT confirms this many replicas (mitigation)')
    parser.add_argument('--bullmq', action='store_true', help='also run a BullMQ producer + worker (node)')
    parser.add_argument('--bullmq-interval-ms', type=int, default=20)
    parser.add_argument('--bullmq-run-retry-delay-ms', type=int, default=None,
                        help="the worker's runRetryDelay (default: BullMQ's 15000 ms, like the reference app)")
    parser.add_argument('--warmup', type=float, default=3, help='seconds of writes before the kill')
    parser.add_argument('--settle', type=float, default=3, help='seconds after the switch and after the rejoin')
    parser.add_argument('--json', action='store_true', help='print the rounds as JSON')
    _plot.add_png_option(parser, 'failover')
    args = parser.parse_args()

    lab = Lab(args.inventory)
    lab.use_tls()
    results, timeline = [], dict(samples=[], phases=[], events=[])
    t0 = time.time()
    for number in range(1, args.rounds + 1):
        started = time.time()
        result, failover_timeout = one_round(lab, args, number, t0)
        for key, values in result.pop('_timeline').items():
            timeline[key] += values
        results.append(result)
        if not args.json:
            print('round %(round)d: %(old_master)s -> %(new_master)s' % result)
            print('  kill -> Sentinel names the new master: %5.2f s   (down-after-milliseconds %d ms)'
                  % (result['kill_to_new_master_s'], result['down_after_ms']))
            print('  kill -> first acknowledged write on it: %5.2f s   longest gap between acknowledged writes %.2f s'
                  % (result['kill_to_first_write_s'] or -1, result['longest_write_gap_s']))
            print('  writes acknowledged %d, lost %s, present but unacknowledged %s, errors %s'
                  % (result['writes_acked'], result['writes_lost'], result['present_but_unacked'],
                     result['write_errors']))
            if args.wait_replicas:
                print('  writes not confirmed by WAIT %d (not counted as acknowledged): %d'
                      % (args.wait_replicas, result['writes_unconfirmed_by_wait']))
            print('  old master back as a replica of the new one after %s s; Sentinels agree: %s; %s'
                  % (result['old_master_rejoined_as_replica_s'], result['sentinels_agree'], result['ckquorum']))
            if 'bullmq' in result:
                print('  BullMQ: %s' % json.dumps(result['bullmq'], sort_keys=True))
            sys.stdout.flush()
        if number < args.rounds:
            # Sentinel waits 2 x failover-timeout before failing the same master over again.
            pause = 2 * failover_timeout / 1000.0 + 2 - (time.time() - started)
            if pause > 0:
                if not args.json:
                    print('  (waiting %.0f s: 2 x failover-timeout before the next failover)' % pause)
                time.sleep(pause)
    if args.json:
        print(json.dumps(results, indent=1, sort_keys=True))
    elif len(results) > 1:
        firsts = [r['kill_to_first_write_s'] for r in results if r['kill_to_first_write_s']]
        print('summary over %d rounds: kill -> first write on the new master min %.2f / median %.2f / max %.2f s; '
              'lost writes total %d' % (len(results), min(firsts), statistics.median(firsts), max(firsts),
                                        sum(r['writes_lost'] or 0 for r in results)))
    if args.json:
        args.no_png = True  # stdout is the JSON document: no picture line in it
    _plot.write(args, 'failover', _plot.samples_to_rows(timeline['samples']), timeline['phases'], timeline['events'],
                rate_label='writes/s (attempts)', error_label='failed writes/s',
                note='%d round(s), a write every %.3f s through Sentinel; lost writes %d'
                % (len(results), args.interval, sum(r['writes_lost'] or 0 for r in results)))
    return 0 if all(r['writes_lost'] == 0 for r in results) else 1


if __name__ == '__main__':
    sys.exit(main())
