// API entry point: `node src/server.js`.
import { serve } from '@hono/node-server';
import { loadConfigOrExit } from './config.js';
import { createPools } from './db.js';
import { createRedis } from './redis.js';
import { createQueue } from './queue.js';
import { createApp } from './api.js';
import { createRedisLimiter } from './ratelimit.js';
import { createItemCache } from './cache.js';
import { installProcessHandlers } from './lifecycle.js';
import { cacheMetrics, createRegistry, dbQueryHistogram, queueMetrics, readPoolMetrics } from './metrics.js';
import * as log from './log.js';

const config = loadConfigOrExit(process.env, { role: 'api' });
log.setLogContext({ component: 'api', instance: config.instance, version: config.version });

// METRICS=off exists to measure what the instrumentation costs (bench/metrics_overhead.py).
const metrics = config.metrics ? createRegistry({ cpuQuotaCores: config.cpuQuotaCores }) : null;
const pools = createPools(config, {
  queryHistogram: metrics && dbQueryHistogram(metrics),
  readMetrics: metrics && readPoolMetrics(metrics),
});
// Fail fast for the readiness PING: no offline queue, so a PING while
// disconnected errors at once instead of waiting for the reconnect.
const redis = createRedis(config.redis, { enableOfflineQueue: false, maxRetriesPerRequest: 1 }, 'ready-check');
const queue = createQueue(config);
// Queue depth and latency from the API too: measurable while no worker runs.
if (metrics) queueMetrics(metrics, { queue, queueName: config.queueName });
// Shared rate limiting on a client of its own (short command timeout, fails
// open), so neither the queue nor /ready waits behind it. null when off.
const rateLimiter = createRedisLimiter(config);
// The item cache, on its own Redis and client (falls back to Postgres, not
// part of /ready). null without CACHE_SENTINELS / CACHE_REDIS_URL.
const cache = createItemCache(config, { metrics: metrics && config.cache && cacheMetrics(metrics) });
const state = { shuttingDown: false };
const app = createApp({ config, pools, queue, redis, state, metrics, limiter: rateLimiter?.limiter ?? null, cache });

const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, (info) => {
  log.info('listening', { address: info.address, port: info.port, pid: process.pid, node: process.version });
});
server.on('error', (err) => {
  // e.g. EADDRINUSE: nothing sensible to do but exit and let systemd retry.
  log.error('http server error', { err });
  process.exit(1);
});

async function shutdown(signal) {
  // 1. Readiness goes 503 at once (nginx / the deploy stop sending traffic).
  state.shuttingDown = true;
  log.info('shutdown started', { signal, timeout_ms: config.shutdownTimeoutMs });

  // 2. Stop accepting connections; close() calls back once every open
  //    connection has ended, i.e. in-flight requests have been answered.
  //    Node 18 does not close idle keep-alive connections on close() (19+
  //    does), and a connection that finishes its request becomes idle later,
  //    so sweep idle connections until the server is closed.
  await new Promise((resolve) => {
    server.close(() => resolve());
    log.info('listener closed, draining open connections');
    server.closeIdleConnections?.();
    const sweep = setInterval(() => server.closeIdleConnections?.(), 100);
    server.once('close', () => clearInterval(sweep));
  });
  log.info('http server closed');

  // 3. Release the backends.
  const closing = [queue.close(), pools.rw.end(), pools.ro.end(), redis.quit()];
  if (rateLimiter) closing.push(rateLimiter.redis.quit());
  if (cache) closing.push(cache.close());
  const results = await Promise.allSettled(closing);
  for (const r of results) if (r.status === 'rejected') log.warn('error while closing', { err: r.reason });
  log.info('shutdown complete');
  process.exit(0);
}

installProcessHandlers({ shutdown, timeoutMs: config.shutdownTimeoutMs });
