// HTTP routes (Hono). Dependencies are passed in so that server.js owns the
// lifecycle (connections, signals) and this file stays plain request handling.
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { Job } from 'bullmq';
import * as log from './log.js';
import { httpMetrics, metricsHandler, rateLimitMetrics } from './metrics.js';
import { rateLimit } from './ratelimit.js';
import { readWithRetry } from './readpool.js';
import { MAX_EVENTS, retentionScore } from './score.js';

const JOB_TYPES = new Set(['echo', 'sum']);
// Queue connections wait for a reconnect instead of failing (see redis.js);
// an HTTP caller should not wait that long, so give up after this and answer
// 503. Long enough to ride out a Sentinel failover of a few seconds.
// Longer than a Sentinel failover (about 6 s with down-after-milliseconds
// 5000), so a job posted while the master dies is queued on the new one
// instead of answered with 503.
const QUEUE_ADD_TIMEOUT_MS = 10000;

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const isPlainObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

async function jsonBody(c) {
  let body;
  try {
    body = await c.req.json();
  } catch {
    throw new HttpError(400, 'request body must be valid JSON');
  }
  if (!isPlainObject(body)) throw new HttpError(400, 'request body must be a JSON object');
  return body;
}

function validateItem(body) {
  const { name, payload } = body;
  if (typeof name !== 'string' || name.length < 1 || name.length > 200) {
    throw new HttpError(400, 'name must be a string of 1 to 200 characters');
  }
  if (payload !== undefined && payload !== null && !isPlainObject(payload)) {
    throw new HttpError(400, 'payload must be a JSON object if given');
  }
  return { name, payload: payload ?? null };
}

function validateJob(body) {
  const type = body.type ?? 'echo';
  if (!JOB_TYPES.has(type)) throw new HttpError(400, 'type must be "echo" or "sum"');
  const data = body.data ?? {};
  if (!isPlainObject(data)) throw new HttpError(400, 'data must be a JSON object if given');
  if (type === 'sum') {
    const ok = Array.isArray(data.values) && data.values.every((v) => typeof v === 'number' && Number.isFinite(v));
    if (!ok) throw new HttpError(400, 'a sum job needs data.values: an array of numbers');
  }
  const sleepMs = body.sleep_ms ?? 0;
  if (!Number.isInteger(sleepMs) || sleepMs < 0 || sleepMs > 60000) {
    throw new HttpError(400, 'sleep_ms must be an integer between 0 and 60000');
  }
  return { type, data, sleep_ms: sleepMs };
}

// bigserial ids come back from pg as strings (they may exceed 2^53); keep
// them as strings in JSON and accept only what fits a bigint.
const ITEM_ID = /^[0-9]{1,18}$/;
// BullMQ ids are generated integers, but accept custom ids of a safe shape.
const JOB_ID = /^[A-Za-z0-9_.-]{1,100}$/;

// What GET /items/:id and PUT answer (and the cache holds). version counts
// the updates of the row (1 when created); the cache compares it.
const ITEM_COLUMNS = 'id, name, payload, created_by, created_at, updated_at, version';
const SELECT_ITEM = `SELECT ${ITEM_COLUMNS} FROM items WHERE id = $1`;

function itemId(c) {
  const id = c.req.param('id');
  if (!ITEM_ID.test(id)) throw new HttpError(400, 'id must be a positive integer');
  return id;
}

/**
 * @param deps.config  configuration (config.js)
 * @param deps.pools   { rw, ro } pg Pools
 * @param deps.queue   BullMQ Queue
 * @param deps.redis   ioredis client for the readiness PING
 * @param deps.state   { shuttingDown: boolean }, flipped by server.js on SIGTERM
 * @param deps.metrics prom-client Registry, or null (METRICS=off: no
 *                     instrumentation, GET /metrics is 404)
 * @param deps.limiter a rate-limiter-flexible limiter (ratelimit.js), or
 *                     null: no rate limiting (RATE_LIMIT_POINTS=0)
 * @param deps.cache   an ItemCache (cache.js), or null: item reads go to the
 *                     read pool, no X-Cache header
 */
export function createApp({ config, pools, queue, redis, state, metrics = null, limiter = null, cache = null }) {
  const app = new Hono();
  const ident = { version: config.version, instance: config.instance };

  // First, so that the time and status of everything below (413s from
  // bodyLimit, errors from onError) are measured.
  if (metrics) app.use('*', httpMetrics(metrics));

  // Tell which instance answered: the lab checks load balancing and rolling
  // deploys through nginx with these headers.
  app.use('*', async (c, next) => {
    await next();
    c.header('X-Instance', config.instance);
    c.header('X-App-Version', config.version);
  });
  // Before the body is read: a refused request costs no parsing. After the
  // two above, so a 429 is measured and names its instance.
  if (limiter) {
    app.use('*', rateLimit(limiter, { trusted: config.trustedProxies, metrics: metrics && rateLimitMetrics(metrics) }));
  }
  app.use('*', bodyLimit({ maxSize: 1024 * 1024, onError: (c) => c.json({ error: 'request body too large' }, 413) }));

  // Liveness: the process runs and the event loop answers. Deliberately no
  // dependency checks, and still 200 while draining, so a supervisor does not
  // kill an instance that is finishing its in-flight requests.
  app.get('/health', (c) => c.json({ status: 'ok', ...ident }));

  // Prometheus scrapes the API on its own listener (nginx does not route
  // /metrics to the public). Counted like any route, as route="/metrics".
  if (metrics) app.get('/metrics', metricsHandler(metrics));

  // Readiness: may this instance receive traffic? 503 once shutdown started,
  // or when a dependency does not answer within READY_CHECK_TIMEOUT_MS.
  app.get('/ready', async (c) => {
    if (state.shuttingDown) return c.json({ status: 'shutting_down', ...ident }, 503);
    const ms = config.readyCheckTimeoutMs;
    const checks = {
      postgres: () => readWithRetry(pools.rw, 'SELECT 1'),
      // Not connected (yet, or any more): say so rather than ioredis'
      // "Stream isn't writeable" from the disabled offline queue.
      redis: () => (redis.status === 'ready' ? redis.ping() : Promise.reject(new Error(`not connected (${redis.status})`))),
    };
    const names = Object.keys(checks);
    const results = await Promise.allSettled(names.map((n) => withTimeout(checks[n](), ms, n)));
    const out = {};
    let ok = true;
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') {
        out[names[i]] = 'ok';
      } else {
        ok = false;
        out[names[i]] = `${names[i]}: ${r.reason?.message || r.reason}`;
      }
    });
    // The read pool never takes the instance out: without a healthy replica
    // reads go to the primary, which the postgres check covers.
    const readPool = pools.ro.status();
    out.read_pool = readPool.summary;
    if (state.shuttingDown) return c.json({ status: 'shutting_down', ...ident }, 503);
    return c.json({ status: ok ? 'ready' : 'not_ready', ...ident, checks: out, replicas: readPool.replicas }, ok ? 200 : 503);
  });

  app.post('/items', async (c) => {
    const { name, payload } = validateItem(await jsonBody(c));
    const { rows } = await pools.rw.query(
      `INSERT INTO items (name, payload, created_by) VALUES ($1, $2::jsonb, $3)
       RETURNING id, name, payload, created_by`,
      [name, payload === null ? null : JSON.stringify(payload), config.instance],
    );
    return c.json(rows[0], 201);
  });

  app.put('/items/:id', async (c) => {
    const id = itemId(c);
    const { name, payload } = validateItem(await jsonBody(c));
    // version + 1 in the same statement: concurrent updates of a row are
    // serialised by its row lock, so each gets its own version.
    const { rows } = await pools.rw.query(
      `UPDATE items SET name = $2, payload = $3::jsonb, updated_at = now(), version = version + 1
       WHERE id = $1 RETURNING ${ITEM_COLUMNS}`,
      [id, name, payload === null ? null : JSON.stringify(payload)],
    );
    if (rows.length === 0) return c.json({ error: 'item not found' }, 404);
    // Write-through after the commit, so no read of the cache can see the old
    // version from here on. If it fails the update still stands (the
    // database is the truth): store() deletes the old entry, and failing
    // that, the old entry lives at most CACHE_TTL_S.
    if (cache) await cache.store(rows[0], { invalidate: true });
    return c.json(rows[0]);
  });

  app.get('/items/:id', async (c) => {
    const id = itemId(c);
    // Reads go to the read-only pool (a replica in a bigger setup, so a row
    // may appear there a moment after the POST).
    const readFallback = () => pools.ro.query(SELECT_ITEM, [id]).then((r) => r.rows[0]);
    if (!cache) {
      const row = await readFallback();
      if (!row) return c.json({ error: 'item not found' }, 404);
      return c.json(row);
    }
    const { result, body } = await cache.read(id, {
      // A miss is filled from the primary (see ItemCache.read).
      readPrimary: () => readWithRetry(pools.rw, SELECT_ITEM, [id]).then((r) => r.rows[0]),
      readFallback,
    });
    c.header('X-Cache', result);
    if (body === null) return c.json({ error: 'item not found' }, 404);
    // The JSON as stored (or as it would be): the same bytes, hit or not.
    return c.body(body, 200, { 'Content-Type': 'application/json' });
  });

  // CPU-bound, no database: GET /score/42?events=50000 (see score.js).
  app.get('/score/:customer', (c) => {
    const customer = c.req.param('customer');
    if (!ITEM_ID.test(customer)) throw new HttpError(400, 'customer must be a positive integer');
    const raw = c.req.query('events') ?? '10000';
    if (!/^[0-9]{1,7}$/.test(raw) || Number(raw) > MAX_EVENTS) {
      throw new HttpError(400, `events must be a whole number from 0 to ${MAX_EVENTS}`);
    }
    const events = Number(raw);
    return c.json({ customer: Number(customer), events, score: retentionScore(customer, events) });
  });

  app.post('/jobs', async (c) => {
    const job = validateJob(await jsonBody(c));
    let added;
    try {
      added = await withTimeout(queue.add(job.type, job), QUEUE_ADD_TIMEOUT_MS, 'queue add');
    } catch (err) {
      log.error('enqueue failed', { err });
      throw new HttpError(503, `could not enqueue job: ${err.message}`);
    }
    return c.json({ id: added.id }, 202);
  });

  app.get('/jobs/:id', async (c) => {
    const id = c.req.param('id');
    if (!JOB_ID.test(id)) return c.json({ error: 'job not found' }, 404);
    // Redis first, Postgres second: the worker writes job_results before it
    // marks the job completed, so a job seen as completed has its row already
    // (querying both at once could miss a row written in between).
    const found = await withTimeout(
      (async () => {
        const job = await Job.fromId(queue, id);
        return job ? { job, state: await job.getState() } : undefined;
      })(),
      QUEUE_ADD_TIMEOUT_MS,
      'job lookup',
    ).catch((err) => {
      // Redis down: still answer from Postgres if the job has finished.
      log.warn('job lookup in redis failed', { err, job_id: id });
      return undefined;
    });
    const { rows } = await pools.ro.query('SELECT result, worker, processed_at FROM job_results WHERE job_id = $1', [id]);
    const row = rows[0];
    if (!found && !row) return c.json({ error: 'job not found' }, 404);
    const job = found?.job;
    // Completed jobs are removed from Redis after a while (removeOnComplete);
    // the result row in Postgres is the durable record.
    const state = found ? found.state : 'completed';
    // A read-only replica may lag behind the worker's write: fall back to the
    // return value BullMQ kept.
    const result = row ? row.result : state === 'completed' ? job.returnvalue ?? null : null;
    const body = { id, state, result };
    if (row) Object.assign(body, { worker: row.worker, processed_at: row.processed_at });
    if (job && job.failedReason) body.failed_reason = job.failedReason;
    return c.json(body);
  });

  app.notFound((c) => c.json({ error: 'not found' }, 404));

  app.onError((err, c) => {
    if (err instanceof HttpError) return c.json({ error: err.message }, err.status);
    log.error('request failed', { err, method: c.req.method, path: c.req.path });
    return c.json({ error: 'internal server error' }, 500);
  });

  return app;
}
