// The read pool: reads go to every healthy replica in turn, and to the
// primary when none is healthy. A replica is healthy when it answers, is in
// recovery (still a replica) and lags the primary by at most maxLagMs.
//
// Why the app decides and not PgBouncer: PgBouncer's multi-host entries
// rotate over hosts without knowing whether one is down or behind, so a
// stopped or stale replica would keep receiving reads. Each replica has its
// own PgBouncer entry (recete_ro_<host>), and this module picks among them.
//
// Lag is measured in time, from the primary's WAL position: every check
// samples pg_current_wal_lsn() on the primary and pg_last_wal_replay_lsn() on
// each replica; a replica's lag is how long ago the primary first had WAL
// that the replica has not replayed yet. Unlike now() -
// pg_last_xact_replay_timestamp(), this stays 0 on an idle primary and keeps
// growing on a replica cut off from a busy one.
import * as log from './log.js';

/** A pg_lsn as text ('16/B374D848') to a BigInt. */
export function parseLsn(text) {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(String(text ?? ''));
  if (!m) throw new Error(`not a pg_lsn: ${JSON.stringify(text)}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/**
 * How far behind `replayLsn` is, in ms at time `now`: the age of the oldest
 * primary sample ({t, lsn}, oldest first) that is ahead of it, 0 when none
 * is. Once samples were dropped this is a lower bound, which is all a
 * threshold needs.
 */
export function replicaLagMs(samples, replayLsn, now) {
  const ahead = samples.find((s) => s.lsn > replayLsn);
  return ahead ? Math.max(0, now - ahead.t) : 0;
}

// SQLSTATE classes that are the query's own fault (bad data, syntax,
// permissions): the primary would refuse it too, so it is not retried there.
// Everything else on a replica (connection refused or reset, PgBouncer's
// "server login has been failing", shutdown, recovery conflicts, timeouts)
// is the replica's fault, and the read is repeated on the primary.
const QUERY_FAULT_CLASSES = new Set(['22', '23', '42']);

export function isReplicaFault(err) {
  const code = typeof err?.code === 'string' && /^[0-9A-Z]{5}$/.test(err.code) ? err.code : '';
  return !QUERY_FAULT_CLASSES.has(code.slice(0, 2));
}

/**
 * A read on `pool`, repeated (up to `attempts` in all) while it fails for
 * the connection's sake: a pooler that shut down under an idle pooled
 * connection, say. Safe for reads only: a write might have committed.
 */
export async function readWithRetry(pool, text, params, attempts = 3) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await pool.query(text, params);
    } catch (err) {
      if (!isReplicaFault(err) || attempt >= attempts) throw err;
      log.warn('read failed on its connection, repeated', { err: err.message, attempt });
    }
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class ReadPool {
  /**
   * replicas: [{name, pool}] (pg Pools on each replica's PgBouncer entry);
   * primary: the read-write pg Pool, for the WAL position and as fallback.
   */
  constructor({ replicas, primary, maxLagMs = 1000, checkIntervalMs = 1000, checkTimeoutMs = 1000, onRead = null, onLag = null }) {
    this.replicas = replicas.map((r) => ({ ...r, healthy: false, state: 'not checked yet', lagMs: null }));
    this.primary = primary;
    this.maxLagMs = maxLagMs;
    this.checkIntervalMs = checkIntervalMs;
    this.checkTimeoutMs = checkTimeoutMs;
    this.onRead = onRead; // (target) => void, for metrics
    this.onLag = onLag; // (name, seconds or NaN) => void
    this.samples = [];
    this.next = 0;
    this.timer = null;
  }

  /** Check now, then every checkIntervalMs. Resolves after the first check. */
  start() {
    if (!this.replicas.length) return Promise.resolve();
    const tick = () => {
      this.checking = this.check().finally(() => {
        if (this.timer !== false) this.timer = setTimeout(tick, this.checkIntervalMs).unref();
      });
      return this.checking;
    };
    return tick();
  }

  async check() {
    const now = Date.now();
    try {
      const { rows } = await withTimeout(this.primary.query('SELECT pg_current_wal_lsn()::text AS lsn'), this.checkTimeoutMs, 'primary');
      this.samples.push({ t: now, lsn: parseLsn(rows[0].lsn) });
    } catch (err) {
      // A primary that does not answer (or is a replica mid-failover) adds no
      // sample: the replicas are then judged against what was last known.
      log.warn('read pool: no WAL position from the primary', { err: err.message });
    }
    // Samples older than 10 x maxLagMs tell nothing a newer one does not
    // (lag is then past the threshold anyway); keep at least the newest.
    const horizon = now - 10 * this.maxLagMs;
    while (this.samples.length > 1 && this.samples[0].t < horizon) this.samples.shift();
    await Promise.all(this.replicas.map((r) => this.checkReplica(r, now)));
  }

  async checkReplica(replica, now) {
    const was = replica.healthy;
    try {
      const { rows } = await withTimeout(
        replica.pool.query('SELECT pg_is_in_recovery() AS recovery, pg_last_wal_replay_lsn()::text AS lsn'),
        this.checkTimeoutMs,
        replica.name,
      );
      if (!rows[0].recovery) {
        // The member that leads (under Patroni every member has an entry, and
        // a failover moves the lead): not read from, and not a missing replica.
        Object.assign(replica, { healthy: false, leads: true, state: 'primary (not read from)', lagMs: null });
      } else {
        replica.leads = false;
        const lagMs = replicaLagMs(this.samples, parseLsn(rows[0].lsn), now);
        const healthy = lagMs <= this.maxLagMs;
        Object.assign(replica, { healthy, lagMs, state: healthy ? 'ok' : `lag ${(lagMs / 1000).toFixed(1)} s` });
      }
    } catch (err) {
      Object.assign(replica, { healthy: false, leads: false, state: `down: ${err.message}`, lagMs: null });
    }
    this.onLag?.(replica.name, replica.lagMs === null ? NaN : replica.lagMs / 1000);
    if (was !== replica.healthy) {
      log.info(replica.healthy ? 'read pool: replica joined' : 'read pool: replica left', { replica: replica.name, state: replica.state });
    }
  }

  /** The next healthy replica in turn, or null. */
  pick() {
    for (let i = 0; i < this.replicas.length; i += 1) {
      const r = this.replicas[(this.next + i) % this.replicas.length];
      if (r.healthy) {
        this.next = (this.next + i + 1) % this.replicas.length;
        return r;
      }
    }
    return null;
  }

  /** pool.query() for reads: a healthy replica, else (or on its failure) the primary. */
  async query(text, params) {
    const replica = this.pick();
    if (replica) {
      try {
        const result = await replica.pool.query(text, params);
        this.onRead?.(replica.name);
        return result;
      } catch (err) {
        if (!isReplicaFault(err)) throw err;
        // Out of the pool until the next check says otherwise, so the reads
        // that follow do not try it too.
        Object.assign(replica, { healthy: false, state: `down: ${err.message}` });
        log.warn('read pool: read failed on a replica, repeated on the primary', { replica: replica.name, err: err.message });
      }
    }
    const result = await readWithRetry(this.primary, text, params);
    this.onRead?.('primary');
    return result;
  }

  /** For /ready: ok when every replica is healthy (or there is none); an entry
   * that leads is not counted as a replica. */
  status() {
    const members = this.replicas.filter((r) => !r.leads);
    const healthy = members.filter((r) => r.healthy).length;
    const replicas = Object.fromEntries(this.replicas.map((r) => [r.name, r.state]));
    if (healthy === members.length) return { ok: true, summary: 'ok', replicas };
    const fallback = healthy === 0 ? '; reads go to the primary' : '';
    return { ok: false, summary: `degraded: ${healthy} of ${members.length} replicas healthy${fallback}`, replicas };
  }

  async end() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = false;
    await this.checking?.catch(() => {});
    await Promise.allSettled(this.replicas.map((r) => r.pool.end()));
  }
}
