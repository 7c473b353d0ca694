// Prometheus metrics (prom-client), shared by the API and the worker. The
// names and labels are a contract with the Prometheus rules of the
// collection: change them only together (see README "Metrics").
//
// Each process has its own Registry rather than prom-client's global one, so
// nothing registers metrics behind our back and tests can build several.
import http from 'node:http';
import client from 'prom-client';
import { matchedRoutes } from 'hono/route';
import * as log from './log.js';

// Latency buckets (seconds) of the HTTP and query histograms: fine below the
// 200 ms API p95 and 100 ms query p95 targets, coarse above.
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2.5, 5, 10];
// Jobs may sleep up to 60 s (sleep_ms), so the job histogram reaches further.
export const JOB_BUCKETS = [...DURATION_BUCKETS, 30, 60];

/**
 * A Registry with prom-client's default process and Node.js metrics, and the
 * CPU budget of this process (cores; systemd's CPUQuota when the unit sets
 * one): CPU utilisation, the autoscaler's metric, is measured against it.
 */
export function createRegistry({ cpuQuotaCores = 1 } = {}) {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  new client.Gauge({
    name: 'recete_cpu_quota_cores',
    help: 'CPU this process may use, in cores (its unit\'s CPUQuota; 1 without one: Node runs on one core)',
    registers: [registry],
  }).set(cpuQuotaCores);
  return registry;
}

// ------------------------------------------------------------------ queries

export function dbQueryHistogram(registry) {
  return new client.Histogram({
    name: 'recete_db_query_duration_seconds',
    help: 'Time of pg pool queries as the app sees them (waiting for a pooled connection included)',
    labelNames: ['pool'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
}

/**
 * Where reads went (a replica's entry name, or `primary` when none was
 * healthy) and each replica's lag as the read pool last measured it (NaN
 * while it does not answer).
 */
export function readPoolMetrics(registry) {
  return {
    reads: new client.Counter({
      name: 'recete_db_reads_total',
      help: 'Reads of the read pool by where they were served: a replica, or the primary',
      labelNames: ['target'],
      registers: [registry],
    }),
    lag: new client.Gauge({
      name: 'recete_db_replica_lag_seconds',
      help: 'Replication lag of each read replica as the read pool measured it (NaN: not answering)',
      labelNames: ['replica'],
      registers: [registry],
    }),
  };
}

/**
 * Time every promise-style `pool.query()` into `histogram` with label
 * pool=`label` (`primary` or `replica`). Wrapping the pool, not each call
 * site, means no query of the API or the worker is missed. Callback-style
 * calls (not used by the app) pass through untimed.
 */
export function timeQueries(pool, histogram, label) {
  const child = histogram.labels(label);
  const query = pool.query.bind(pool);
  pool.query = (...args) => {
    if (typeof args[args.length - 1] === 'function') return query(...args);
    const start = performance.now();
    const done = () => child.observe((performance.now() - start) / 1000);
    const p = query(...args);
    p.then(done, done);
    return p;
  };
  return pool;
}

// --------------------------------------------------------------------- API

/**
 * Hono middleware for the request histogram and the in-flight gauge. Register
 * it before every route. The `route` label is the pattern of the route that
 * answered (`/items/:id`), never the raw path, so the number of series stays
 * bounded whatever clients send; a request that no route matched (only `*`
 * middleware did) is `unmatched`.
 */
export function httpMetrics(registry) {
  const duration = new client.Histogram({
    name: 'recete_http_request_duration_seconds',
    help: 'HTTP request duration by method, route pattern and status code',
    labelNames: ['method', 'route', 'status'],
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  // A plain number, read at scrape time: cheaper per request than inc()/dec().
  let inFlight = 0;
  new client.Gauge({
    name: 'recete_http_requests_in_flight',
    help: 'HTTP requests being handled right now',
    registers: [registry],
    collect() {
      this.set(inFlight);
    },
  });
  // One child per label set, so a request allocates no label object. The
  // map is as bounded as the series are.
  const children = new Map();
  const childFor = (method, route, status) => {
    const key = `${method} ${route} ${status}`;
    let child = children.get(key);
    if (!child) {
      child = duration.labels(method, route, String(status));
      children.set(key, child);
    }
    return child;
  };

  return function metricsMiddleware(c, next) {
    const start = performance.now();
    inFlight += 1;
    const done = () => {
      inFlight -= 1;
      // Routes are matched in registration order, middleware (method ALL)
      // first: if the last match is still middleware, no route matched.
      const routes = matchedRoutes(c);
      const last = routes[routes.length - 1];
      const route = last && last.method !== 'ALL' ? last.path : 'unmatched';
      // Hono's compose turns a thrown error into c.res via onError; without
      // a response at all it is a 500 for the client.
      const status = c.res ? c.res.status : 500;
      childFor(c.req.method, route, status).observe((performance.now() - start) / 1000);
    };
    return next().then(done, (err) => {
      done();
      throw err;
    });
  };
}

/**
 * The shared rate limiter's outcomes (ratelimit.js): requests refused with
 * 429, and requests let through because the limiter's Redis did not answer
 * in time (fail open). Both start at zero so rate() sees the first one.
 */
export function rateLimitMetrics(registry) {
  const limited = new client.Counter({
    name: 'recete_rate_limited_total',
    help: 'Requests refused with 429 because their client was over RATE_LIMIT_POINTS in the window',
    registers: [registry],
  });
  const errors = new client.Counter({
    name: 'recete_rate_limit_errors_total',
    help: 'Requests let through unchecked because the rate limiter failed (Redis down, slow or refusing)',
    registers: [registry],
  });
  limited.inc(0);
  errors.inc(0);
  return { limited, errors };
}

/**
 * The item cache's outcomes (cache.js). Reads of GET /items/:id: `hit`
 * (answered from the cache), `miss` (from the primary, then stored) and
 * `bypass` (the cache failed or was too slow: from Postgres as without a
 * cache). Writes of an item into the cache (the fill after a miss and the
 * write-through of PUT): `stored`, `kept_newer` (the cache already held that
 * version or a newer one) and `error`. Every label starts at zero.
 */
export function cacheMetrics(registry) {
  const reads = new client.Counter({
    name: 'recete_cache_reads_total',
    help: 'Item reads by cache outcome: hit, miss (read from the primary and stored) or bypass (cache failed: read from Postgres)',
    labelNames: ['result'],
    registers: [registry],
  });
  const writes = new client.Counter({
    name: 'recete_cache_writes_total',
    help: 'Items written to the cache by outcome: stored, kept_newer (the cache held the same or a newer version) or error',
    labelNames: ['result'],
    registers: [registry],
  });
  for (const result of ['hit', 'miss', 'bypass']) reads.inc({ result }, 0);
  for (const result of ['stored', 'kept_newer', 'error']) writes.inc({ result }, 0);
  return { reads, writes };
}

/** Hono handler for GET /metrics: the text exposition format. */
export function metricsHandler(registry) {
  return async (c) => c.body(await registry.metrics(), 200, { 'Content-Type': registry.contentType });
}

// ------------------------------------------------------------------ worker

/**
 * Job metrics of one worker. Call `track(processor)` to wrap the BullMQ
 * processor (duration and active jobs), and `attach(worker)` for the
 * completed/failed counters, counted from BullMQ's events: a job counts as
 * completed once BullMQ has acknowledged it, not when the processor returns.
 * Includes the queue gauges (queueMetrics) of `queue`, a BullMQ Queue.
 */
export function workerMetrics(registry, { queue, queueName, concurrency, scrapeTimeoutMs = 1000 }) {
  const labels = { queue: queueName };
  const duration = new client.Histogram({
    name: 'recete_job_duration_seconds',
    help: 'Processing time of a job (one attempt), result write included',
    labelNames: ['queue', 'name'],
    buckets: JOB_BUCKETS,
    registers: [registry],
  });
  const completed = new client.Counter({
    name: 'recete_jobs_completed_total',
    help: 'Jobs this worker completed',
    labelNames: ['queue'],
    registers: [registry],
  });
  const failed = new client.Counter({
    name: 'recete_jobs_failed_total',
    help: 'Job attempts that failed in this worker (each retry counts)',
    labelNames: ['queue'],
    registers: [registry],
  });
  const active = new client.Gauge({
    name: 'recete_worker_active_jobs',
    help: 'Jobs this worker is processing right now',
    registers: [registry],
  });
  new client.Gauge({
    name: 'recete_worker_concurrency',
    help: 'Jobs this worker may process in parallel (WORKER_CONCURRENCY)',
    registers: [registry],
  }).set(concurrency);
  // Start at zero so rate() sees the first job of a fresh process.
  completed.inc(labels, 0);
  failed.inc(labels, 0);

  queueMetrics(registry, { queue, queueName, scrapeTimeoutMs });

  return {
    track(processor) {
      return async (job, token) => {
        const end = duration.startTimer({ ...labels, name: job.name });
        active.inc();
        try {
          return await processor(job, token);
        } finally {
          active.dec();
          end();
        }
      };
    },
    attach(worker) {
      worker.on('completed', () => completed.inc(labels));
      worker.on('failed', () => failed.inc(labels));
    },
  };
}

/**
 * The queue's depth by state and the age of its oldest waiting job, read
 * from Redis at scrape time. Both the API and every worker export them, so
 * queue latency stays measurable when no worker runs (the case its alert is
 * for); rules take the max over all reporters.
 */
export function queueMetrics(registry, { queue, queueName, scrapeTimeoutMs = 1000 }) {
  const labels = { queue: queueName };
  // Both queue gauges come from one Redis read per scrape, shared through
  // `pending`; a read that outlasts scrapeTimeoutMs drops the two gauges
  // from this scrape (absent, rather than stale or a hung scrape).
  let pending;
  const readQueue = () => {
    pending ??= withTimeout(queueSnapshot(queue), scrapeTimeoutMs, 'queue metrics').finally(() => {
      setImmediate(() => {
        pending = undefined;
      });
    });
    return pending;
  };
  new client.Gauge({
    name: 'recete_queue_jobs',
    help: 'Jobs in the queue by state, read from Redis at scrape time',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      this.reset();
      try {
        const { counts } = await readQueue();
        for (const state of QUEUE_STATES) this.set({ ...labels, state }, counts[state] ?? 0);
      } catch (err) {
        log.warn('queue metrics unavailable', { err });
      }
    },
  });
  new client.Gauge({
    name: 'recete_queue_oldest_waiting_age_seconds',
    help: 'Age of the oldest waiting job (0 when none waits), read from Redis at scrape time',
    labelNames: ['queue'],
    registers: [registry],
    async collect() {
      this.reset();
      try {
        const { oldestAgeSeconds } = await readQueue();
        this.set(labels, oldestAgeSeconds);
      } catch {
        // already logged by recete_queue_jobs
      }
    },
  });
}

const QUEUE_STATES = ['waiting', 'active', 'delayed', 'failed'];

async function queueSnapshot(queue) {
  const [counts, oldest] = await Promise.all([
    queue.getJobCounts(...QUEUE_STATES),
    // asc: the head of the wait list, i.e. the next job to be taken.
    queue.getJobs(['wait'], 0, 0, true),
  ]);
  const ts = oldest[0]?.timestamp;
  const oldestAgeSeconds = ts ? Math.max(0, (Date.now() - ts) / 1000) : 0;
  return { counts, oldestAgeSeconds };
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// -------------------------------------------------------- metrics listener

/**
 * A plain node:http listener that answers GET /metrics (404 otherwise) for
 * processes without an HTTP server of their own (the worker). With
 * `registry` null (METRICS=off) every path is 404. Resolves once listening;
 * rejects on a listen error (e.g. EADDRINUSE).
 */
export function serveMetrics(registry, { host, port }) {
  const server = http.createServer(async (req, res) => {
    const path = (req.url || '').split('?')[0];
    if (!registry || path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    try {
      const body = await registry.metrics();
      res.writeHead(200, { 'Content-Type': registry.contentType }).end(req.method === 'HEAD' ? undefined : body);
    } catch (err) {
      log.error('metrics failed', { err });
      res.writeHead(500, { 'Content-Type': 'text/plain' }).end('metrics failed\n');
    }
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** Close a serveMetrics listener, keep-alive scrape connections included. */
export function closeServer(server) {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections?.();
  });
}
