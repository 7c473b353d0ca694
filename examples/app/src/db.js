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

// The `pool` label of recete_db_query_duration_seconds for each of our pools.
const METRICS_POOL = { rw: 'primary', ro: 'replica' };

/**
 * A pg Pool. With `queryHistogram` (recete_db_query_duration_seconds) every
 * pool.query() is timed under pool=primary (rw) or replica (ro).
 */
export function createPool(connectionString, { max = 10, name = 'rw', queryHistogram = null } = {}) {
  const pool = new pg.Pool({
    connectionString,
    max,
    // Do not hang forever waiting for a connection when PgBouncer is down or
    // saturated: the request fails and readiness reports it.
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30000,
    keepAlive: true,
  });
  // An idle client whose server went away (PgBouncer restart) emits 'error' on
  // the pool; without a listener that would crash the process. The pool drops
  // the client and opens a new one on next use.
  pool.on('error', (err) => log.warn('postgres idle client error', { pool: name, err }));
  if (queryHistogram) timeQueries(pool, queryHistogram, METRICS_POOL[name] ?? name);
  return pool;
}

export function createPools(config, { queryHistogram = null } = {}) {
  const rw = createPool(config.databaseUrl, { max: config.pgPoolSize, name: 'rw', queryHistogram });
  const ro = createPool(config.databaseRoUrl, { max: config.pgPoolSize, name: 'ro', queryHistogram });
  return { rw, ro };
}
