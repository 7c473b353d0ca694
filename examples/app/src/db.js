// PostgreSQL pools. Both URLs point at PgBouncer in *transaction* pooling
// mode, which hands each transaction to any server connection. Hence:
//  - never give a query a `name`: pg only creates server-side (named)
//    prepared statements for named queries, and those would be looked up on
//    a different server connection later;
//  - no session state (SET, session advisory locks, LISTEN) outside an
//    explicit transaction on one checked-out client;
//  - no startup parameters such as statement_timeout: PgBouncer rejects
//    unknown ones.
import pg from 'pg';
import * as log from './log.js';
import { timeQueries } from './metrics.js';
import { ReadPool } from './readpool.js';
import { failoverClient, PoolerChoice, preferenceOrder, withConnectRetry } from './poolers.js';

// The `pool` label of recete_db_query_duration_seconds for each of our pools.
const METRICS_POOL = { rw: 'primary', ro: 'replica' };

/**
 * A pg Pool. With `queryHistogram` (recete_db_query_duration_seconds) every
 * pool.query() is timed under pool=primary (rw) or replica (ro).
 */
export function createPool(connectionString, {
  max = 10, name = 'rw', queryHistogram = null, poolers = [], preferKey = '', connectTimeoutMs = 5000, queryTimeoutMs = undefined,
} = {}) {
  // Several PgBouncer hosts: each connection goes to the first that takes it
  // (poolers.js), starting from this process's preferred one.
  const failover = poolers.length > 0 ? { Client: failoverClient(new PoolerChoice(preferenceOrder(poolers, preferKey))) } : {};
  const pool = new pg.Pool({
    ...failover,
    connectionString,
    max,
    // Do not hang forever waiting for a connection when PgBouncer is down or
    // saturated: the request fails and readiness reports it.
    connectionTimeoutMillis: connectTimeoutMs,
    // Client-side: the connection is dropped and the query fails (reads on a
    // replica then go to the primary). Unset on the primary's pool.
    query_timeout: queryTimeoutMs,
    idleTimeoutMillis: 30000,
    keepAlive: true,
  });
  // An idle client whose server went away (PgBouncer restart) emits 'error' on
  // the pool; without a listener that would crash the process. The pool drops
  // the client and opens a new one on next use.
  pool.on('error', (err) => log.warn('postgres idle client error', { pool: name, err }));
  if (poolers.length > 1) withConnectRetry(pool, poolers.length);
  if (queryHistogram) timeQueries(pool, queryHistogram, METRICS_POOL[name] ?? name);
  return pool;
}

/**
 * rw: the primary's pool. ro: the read pool over every replica (readpool.js),
 * already checking them; reads fall back to rw. `readMetrics` ({reads, lag},
 * see metrics.js readPoolMetrics) counts where reads went.
 */
export function createPools(config, { queryHistogram = null, readMetrics = null } = {}) {
  const common = { max: config.pgPoolSize, queryHistogram, poolers: config.databaseHosts, preferKey: config.instance };
  const rw = createPool(config.databaseUrl, { ...common, name: 'rw' });
  // A replica that stopped answering must not hold a read longer than
  // READ_TIMEOUT_MS: PgBouncer keeps a client waiting while it cannot reach
  // the server, and the read is worth more on the primary at once.
  const replicaLimits = { connectTimeoutMs: config.readTimeoutMs, queryTimeoutMs: config.readTimeoutMs };
  const replicas = config.readReplicas.map(({ name, url }) => ({ name, pool: createPool(url, { ...common, ...replicaLimits, name: 'ro' }) }));
  const ro = new ReadPool({
    replicas,
    primary: rw,
    maxLagMs: config.readMaxLagMs,
    checkIntervalMs: config.readCheckIntervalMs,
    checkTimeoutMs: config.readyCheckTimeoutMs,
    onRead: readMetrics && ((target) => readMetrics.reads.labels(target).inc()),
    onLag: readMetrics && ((name, seconds) => readMetrics.lag.labels(name).set(seconds)),
  });
  ro.start();
  return { rw, ro };
}
