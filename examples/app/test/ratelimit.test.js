// Shared rate limiting (src/ratelimit.js) without a Redis server:
// the app is built in-process with fakes, the limiter is rate-limiter-
// flexible's RateLimiterMemory (same contract as the Redis one) or a stub.
// Where the production wiring (createRedisLimiter) is under test, its Redis
// is a port nobody listens on, or a fake server that never answers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { serve } from '@hono/node-server';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { createApp } from '../src/api.js';
import { createRegistry } from '../src/metrics.js';
import { loadConfig } from '../src/config.js';
import { parseTrustedProxies } from '../src/clientaddr.js';
import { createRedisLimiter } from '../src/ratelimit.js';
import { freePort } from '../test-support/stack.js';

const LB = '10.0.0.5';

// ------------------------------------------------------------- the middleware

function makeApp({ limiter, trusted = LB, metrics = createRegistry(), redisStatus = 'ready' } = {}) {
  const config = {
    version: 'test',
    instance: 'rl-test',
    readyCheckTimeoutMs: 200,
    trustedProxies: parseTrustedProxies(trusted),
  };
  const pools = {
    rw: { query: async () => ({ rows: [{ '?column?': 1 }] }) },
    ro: { status: () => ({ summary: 'ok', replicas: {} }) },
  };
  const redis = { status: redisStatus, ping: async () => 'PONG' };
  const app = createApp({ config, pools, queue: null, redis, state: { shuttingDown: false }, metrics, limiter });
  // What @hono/node-server hands the app: the request's socket as env.incoming.
  const get = (path, { peer = LB, xff } = {}) => app.request(
    path,
    { headers: xff ? { 'X-Forwarded-For': xff } : {} },
    { incoming: { socket: { remoteAddress: peer } } },
  );
  return { app, get, metrics };
}

async function counter(registry, name) {
  const m = await registry.getSingleMetric(name).get();
  return m.values.reduce((sum, v) => sum + v.value, 0);
}

const LIMITED = '/score/1?events=1';

test('over the limit: 429 with an integer Retry-After and a JSON error, per client, counted', async () => {
  const limiter = new RateLimiterMemory({ points: 2, duration: 30 });
  const { get, metrics } = makeApp({ limiter });
  const client = { xff: '203.0.113.10' };
  assert.equal((await get(LIMITED, client)).status, 200);
  assert.equal((await get(LIMITED, client)).status, 200);
  const res = await get(LIMITED, client);
  assert.equal(res.status, 429);
  const retryAfter = res.headers.get('retry-after');
  assert.match(retryAfter, /^[1-9][0-9]*$/);
  assert.ok(Number(retryAfter) <= 30, retryAfter);
  const body = await res.json();
  assert.equal(body.error, 'too many requests');
  assert.equal(body.retry_after_s, Number(retryAfter));
  assert.equal(res.headers.get('x-instance'), 'rl-test');
  // Another client behind the same LB has its own budget.
  assert.equal((await get(LIMITED, { xff: '203.0.113.11' })).status, 200);
  // A client cannot reset its budget by making up a left entry.
  assert.equal((await get(LIMITED, { xff: '9.9.9.9, 203.0.113.10' })).status, 429);
  assert.equal(await counter(metrics, 'recete_rate_limited_total'), 2);
  assert.equal(await counter(metrics, 'recete_rate_limit_errors_total'), 0);
});

test('Retry-After is at least 1, even when the window has just ended', async () => {
  // What the library rejects with when no time of the window is left.
  const limiter = { consume: async () => { throw new RateLimiterRes(0, 0); } };
  const { get } = makeApp({ limiter });
  const res = await get(LIMITED);
  assert.equal(res.status, 429);
  assert.equal(res.headers.get('retry-after'), '1');
});

test('a limiter that fails lets the request through and counts the error', async () => {
  let calls = 0;
  const limiter = { consume: async () => { calls += 1; throw new Error('Command timed out'); } };
  const { get, metrics } = makeApp({ limiter });
  for (let i = 0; i < 3; i += 1) {
    const res = await get(LIMITED);
    assert.equal(res.status, 200, await res.text());
  }
  assert.equal(calls, 3);
  assert.equal(await counter(metrics, 'recete_rate_limit_errors_total'), 3);
  assert.equal(await counter(metrics, 'recete_rate_limited_total'), 0);
});

test('/health, /ready and /metrics are never limited and never consult the limiter', async () => {
  let calls = 0;
  const limiter = { consume: async () => { calls += 1; throw new Error('redis down'); } };
  const { get } = makeApp({ limiter });
  for (let i = 0; i < 5; i += 1) {
    for (const path of ['/health', '/ready', '/metrics']) {
      const res = await get(path);
      assert.equal(res.status, 200, `${path}: ${await res.text()}`);
    }
  }
  assert.equal(calls, 0);
  // The limiter's failure does not make the instance unready.
  const ready = await (await get('/ready')).json();
  assert.equal(ready.status, 'ready');
  assert.equal((await get(LIMITED)).status, 200);
  assert.equal(calls, 1);
});

test('RATE_LIMIT_POINTS unset or 0: no limiter, and the app answers every request', async () => {
  const base = { DATABASE_URL: 'postgres://app:pw@127.0.0.1:6432/recete', REDIS_URL: 'redis://127.0.0.1:1' };
  for (const env of [base, { ...base, RATE_LIMIT_POINTS: '0' }]) {
    const config = loadConfig(env);
    assert.equal(config.rateLimitPoints, 0);
    assert.equal(createRedisLimiter(config), null);
  }
  const { get } = makeApp({ limiter: null });
  for (let i = 0; i < 50; i += 1) assert.equal((await get(LIMITED, { xff: '203.0.113.10' })).status, 200);
});

// ------------------------------------------------- over a real HTTP listener

async function listen(app) {
  const server = await new Promise((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
  });
  return { url: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => { server.close(r); server.closeAllConnections?.(); }) };
}

test('through @hono/node-server the socket peer decides whether X-Forwarded-For counts', async () => {
  const send = (url, xff) => fetch(`${url}${LIMITED}`, { headers: { 'X-Forwarded-For': xff } }).then((r) => r.status);
  // The test client (127.0.0.1) is not trusted: its headers do not matter.
  const untrusted = await listen(makeApp({ limiter: new RateLimiterMemory({ points: 1, duration: 30 }), trusted: '' }).app);
  try {
    assert.deepEqual([await send(untrusted.url, '203.0.113.1'), await send(untrusted.url, '203.0.113.2')], [200, 429]);
  } finally {
    await untrusted.close();
  }
  // Trusted as a load balancer: each forwarded client has its own budget.
  const trusted = await listen(makeApp({ limiter: new RateLimiterMemory({ points: 1, duration: 30 }), trusted: '127.0.0.1' }).app);
  try {
    assert.deepEqual([await send(trusted.url, '203.0.113.1'), await send(trusted.url, '203.0.113.2'), await send(trusted.url, '203.0.113.1')], [200, 200, 429]);
  } finally {
    await trusted.close();
  }
});

// ------------------------------------ the production limiter without its Redis

function limiterConfig(url) {
  return { rateLimitPoints: 5, rateLimitWindowS: 1, redis: { mode: 'direct', url } };
}

async function timedGet(get) {
  const t0 = performance.now();
  const res = await get(LIMITED);
  return { status: res.status, ms: performance.now() - t0 };
}

test('createRedisLimiter with Redis down: requests pass at once, counted as errors', async () => {
  const { limiter, redis } = createRedisLimiter(limiterConfig(`redis://127.0.0.1:${await freePort()}`));
  try {
    const { get, metrics } = makeApp({ limiter });
    const { status, ms } = await timedGet(get);
    assert.equal(status, 200);
    assert.ok(ms < 500, `took ${ms} ms`);
    assert.equal(await counter(metrics, 'recete_rate_limit_errors_total'), 1);
  } finally {
    redis.disconnect();
  }
});

// The timeout: without the command deadline the request would hang for good.
test('createRedisLimiter with a Redis that stops answering: the request waits ~100 ms, not longer', { timeout: 10000 }, async () => {
  // Enough RESP for ioredis to call the connection ready (INFO), then
  // silence: every other command (the limiter's EVALSHA) hangs.
  const info = '# Server\r\nredis_version:7.0.15\r\nloading:0\r\n';
  const sockets = new Set();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('data', (buf) => {
      if (/INFO/i.test(buf.toString())) sock.write(`$${Buffer.byteLength(info)}\r\n${info}\r\n`);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { limiter, redis } = createRedisLimiter(limiterConfig(`redis://127.0.0.1:${server.address().port}`));
  try {
    await new Promise((resolve, reject) => {
      redis.once('ready', resolve);
      setTimeout(() => reject(new Error(`client not ready: ${redis.status}`)), 3000);
    });
    const { get, metrics } = makeApp({ limiter });
    const { status, ms } = await timedGet(get);
    assert.equal(status, 200);
    assert.ok(ms >= 90 && ms < 1000, `took ${ms} ms`);
    assert.equal(await counter(metrics, 'recete_rate_limit_errors_total'), 1);
  } finally {
    redis.disconnect();
    for (const sock of sockets) sock.destroy();
    server.close();
  }
});
