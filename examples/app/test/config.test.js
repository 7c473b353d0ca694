// Configuration validation: bad input must stop the process with exit code 2
// and a message naming the variable (no servers needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runWithEnv } from '../test-support/app.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig, ConfigError } from '../src/config.js';
import { redisOptions } from '../src/redis.js';

const VALID = {
  DATABASE_URL: 'postgres://app:pw@127.0.0.1:6432/recete',
  REDIS_SENTINELS: '127.0.0.1:26379,[::1]:26380',
};

test('server: a bad PORT exits 2 naming PORT', async () => {
  const { code, output } = await runWithEnv('src/server.js', { ...VALID, PORT: 'eighty' });
  assert.equal(code, 2, output);
  assert.match(output, /PORT must be an integer/);
});

test('server: PORT out of range exits 2', async () => {
  const { code, output } = await runWithEnv('src/server.js', { ...VALID, PORT: '70000' });
  assert.equal(code, 2, output);
  assert.match(output, /PORT/);
});

test('server: missing DATABASE_URL exits 2 naming DATABASE_URL', async () => {
  const { code, output } = await runWithEnv('src/server.js', { REDIS_SENTINELS: VALID.REDIS_SENTINELS });
  assert.equal(code, 2, output);
  assert.match(output, /DATABASE_URL is required/);
});

test('worker: missing DATABASE_URL exits 2 naming DATABASE_URL', async () => {
  const { code, output } = await runWithEnv('src/worker.js', { REDIS_URL: 'redis://127.0.0.1:6379' });
  assert.equal(code, 2, output);
  assert.match(output, /DATABASE_URL/);
});

test('migrate: missing DATABASE_URL exits 2', async () => {
  const { code, output } = await runWithEnv('src/migrate.js', {});
  assert.equal(code, 2, output);
  assert.match(output, /DATABASE_URL/);
});

test('server: no Redis configured exits 2 naming both variables', async () => {
  const { code, output } = await runWithEnv('src/server.js', { DATABASE_URL: VALID.DATABASE_URL });
  assert.equal(code, 2, output);
  assert.match(output, /REDIS_SENTINELS .* or REDIS_URL/);
});

test('loadConfig: defaults and parsing', () => {
  const c = loadConfig({ ...VALID, REDIS_SENTINEL_USERNAME: 'c', REDIS_SENTINEL_PASSWORD: 's', REDIS_USERNAME: 'u', REDIS_PASSWORD: 'p' });
  assert.equal(c.port, 3000);
  assert.equal(c.host, '0.0.0.0');
  assert.match(c.instance, /:3000$/);
  assert.deepEqual(c.readReplicas, []);
  assert.equal(c.readMaxLagMs, 1000);
  assert.equal(c.readCheckIntervalMs, 500);
  assert.equal(c.readTimeoutMs, 2000);
  assert.equal(c.pgPoolSize, 10);
  assert.equal(c.queueName, 'recete-jobs');
  assert.equal(c.workerConcurrency, 10);
  assert.equal(c.shutdownTimeoutMs, 25000);
  assert.equal(c.readyCheckTimeoutMs, 1000);
  assert.deepEqual(c.redis, {
    mode: 'sentinel',
    sentinels: [
      { host: '127.0.0.1', port: 26379 },
      { host: '::1', port: 26380 },
    ],
    name: 'recete',
    sentinelUsername: 'c',
    sentinelPassword: 's',
    username: 'u',
    password: 'p',
  });
});

test('loadConfig: read replicas from DATABASE_RO_URLS (or DATABASE_RO_URL), named by database', () => {
  const base = 'postgres://app:pw@10.0.0.5:6432';
  const many = loadConfig({ ...VALID, DATABASE_RO_URLS: ` ${base}/recete_ro_pg2\n${base}/recete_ro_pg3 ` });
  assert.deepEqual(many.readReplicas, [
    { name: 'recete_ro_pg2', url: `${base}/recete_ro_pg2` },
    { name: 'recete_ro_pg3', url: `${base}/recete_ro_pg3` },
  ]);
  const one = loadConfig({ ...VALID, DATABASE_RO_URL: `${base}/recete_ro` });
  assert.deepEqual(one.readReplicas.map((r) => r.name), ['recete_ro']);
  // The primary's own URL (the old default of DATABASE_RO_URL) is no replica.
  assert.deepEqual(loadConfig({ ...VALID, DATABASE_RO_URL: VALID.DATABASE_URL }).readReplicas, []);
  assert.throws(() => loadConfig({ ...VALID, DATABASE_RO_URLS: `${base}/a ${base}/a` }), /DATABASE_RO_URLS names the database "a" twice/);
  assert.throws(() => loadConfig({ ...VALID, DATABASE_RO_URLS: `mysql://x/y` }), /DATABASE_RO_URLS must start with postgres:\/\//);
  assert.throws(() => loadConfig({ ...VALID, READ_MAX_LAG_MS: '-1' }), /READ_MAX_LAG_MS must be an integer/);
});

test('loadConfig: reports every problem at once', () => {
  assert.throws(
    () => loadConfig({ PORT: '0', PG_POOL_SIZE: 'x', REDIS_SENTINELS: 'nohostport', DATABASE_URL: 'mysql://x/y' }),
    (err) => {
      assert.ok(err instanceof ConfigError);
      const msg = err.problems.join('\n');
      for (const v of ['PORT', 'PG_POOL_SIZE', 'REDIS_SENTINELS', 'DATABASE_URL']) assert.match(msg, new RegExp(v));
      return true;
    },
  );
});

test('loadConfig: the password in a bad DATABASE_URL is not echoed', () => {
  assert.throws(
    () => loadConfig({ ...VALID, DATABASE_URL: 'redis://app:hunter2@host/db' }),
    (err) => !err.message.includes('hunter2') && /DATABASE_URL/.test(err.message),
  );
});

test('loadConfig: a worker of a template unit gets METRICS_PORT_BASE + WORKER_INDEX', () => {
  const env = { ...VALID, METRICS_PORT_BASE: '9400', WORKER_INDEX: '3' };
  assert.equal(loadConfig(env).metricsPort, 9403);
  assert.equal(loadConfig({ ...env, METRICS_PORT: '9999' }).metricsPort, 9999);
  assert.equal(loadConfig(VALID).metricsPort, undefined);
  assert.throws(() => loadConfig({ ...env, WORKER_INDEX: 'x' }), /WORKER_INDEX must be an integer/);
  assert.throws(() => loadConfig({ ...env, METRICS_PORT_BASE: '65535' }), /at most 65535/);
});

test('loadConfig: metrics on by default, worker listener only with METRICS_PORT', () => {
  const c = loadConfig(VALID, { role: 'worker' });
  assert.equal(c.metrics, true);
  assert.equal(c.metricsPort, undefined);
  assert.equal(c.metricsHost, '127.0.0.1');
  const w = loadConfig({ ...VALID, METRICS: 'off', METRICS_PORT: '9401', METRICS_HOST: '10.0.0.5' }, { role: 'worker' });
  assert.deepEqual([w.metrics, w.metricsPort, w.metricsHost], [false, 9401, '10.0.0.5']);
});

test('loadConfig: a bad METRICS or METRICS_PORT is reported by name', () => {
  assert.throws(
    () => loadConfig({ ...VALID, METRICS: 'maybe', METRICS_PORT: '70000' }, { role: 'worker' }),
    (err) => /METRICS must be "on" or "off"/.test(err.message) && /METRICS_PORT must be an integer/.test(err.message),
  );
});

test('loadConfig: CPU_QUOTA_CORES is the CPU budget (1 core by default), refused when not a positive number', () => {
  assert.equal(loadConfig(VALID).cpuQuotaCores, 1);
  assert.equal(loadConfig({ ...VALID, CPU_QUOTA_CORES: '0.25' }).cpuQuotaCores, 0.25);
  for (const bad of ['0', 'x', '-1', '100']) {
    assert.throws(() => loadConfig({ ...VALID, CPU_QUOTA_CORES: bad }), /CPU_QUOTA_CORES/);
  }
});

test('loadConfig: REDIS_TLS_CA_FILE is read at start; ioredis then speaks TLS to Sentinel and Redis with it', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recete-ca-'));
  const file = path.join(dir, 'ca.crt');
  fs.writeFileSync(file, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  try {
    const c = loadConfig({ ...VALID, REDIS_TLS_CA_FILE: file });
    assert.equal(c.redis.tlsCa, fs.readFileSync(file, 'utf8'));
    const o = redisOptions(c.redis);
    assert.deepEqual(o.tls, { ca: c.redis.tlsCa });
    assert.deepEqual(o.sentinelTLS, { ca: c.redis.tlsCa });
    assert.equal(o.enableTLSForSentinelMode, true);
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
  // Without it: no TLS option at all.
  const plain = redisOptions(loadConfig(VALID).redis);
  assert.equal(plain.tls, undefined);
  assert.equal(plain.sentinelTLS, undefined);
});

test('loadConfig: an unreadable REDIS_TLS_CA_FILE is reported by name', () => {
  assert.throws(
    () => loadConfig({ ...VALID, REDIS_TLS_CA_FILE: '/nonexistent/ca.crt' }),
    (err) => err instanceof ConfigError && /REDIS_TLS_CA_FILE cannot be read \(ENOENT\)/.test(err.message),
  );
});

test('loadConfig: rate limiting is off by default; RATE_LIMIT_* and TRUSTED_PROXIES are read and checked by name', () => {
  const off = loadConfig(VALID);
  assert.deepEqual([off.rateLimitPoints, off.rateLimitWindowS, off.trustedProxies.entries], [0, 1, []]);
  const on = loadConfig({ ...VALID, RATE_LIMIT_POINTS: '50', RATE_LIMIT_WINDOW_S: '10', TRUSTED_PROXIES: '10.0.0.11,10.0.0.12, fd00::/8' });
  assert.deepEqual([on.rateLimitPoints, on.rateLimitWindowS], [50, 10]);
  assert.ok(on.trustedProxies.has('10.0.0.12') && on.trustedProxies.has('fd00::7') && !on.trustedProxies.has('10.0.0.13'));
  assert.throws(
    () => loadConfig({ ...VALID, RATE_LIMIT_POINTS: '-1', RATE_LIMIT_WINDOW_S: '0', TRUSTED_PROXIES: '10.0.0.11,lb2' }),
    (err) => ['RATE_LIMIT_POINTS', 'RATE_LIMIT_WINDOW_S', 'TRUSTED_PROXIES'].every((v) => err.problems.some((p) => p.startsWith(v))),
  );
});

test('loadConfig: the worker ignores the API-only rate limit settings of the shared environment file', () => {
  const w = loadConfig({ ...VALID, RATE_LIMIT_POINTS: 'x', TRUSTED_PROXIES: 'lb2' }, { role: 'worker' });
  assert.equal(w.rateLimitPoints, 0);
});

test('server: a bad TRUSTED_PROXIES exits 2 naming it', async () => {
  const { code, output } = await runWithEnv('src/server.js', { ...VALID, TRUSTED_PROXIES: '10.0.0.0/40' });
  assert.equal(code, 2, output);
  assert.match(output, /TRUSTED_PROXIES must be a comma-separated list .*"10\.0\.0\.0\/40"/);
});

test('loadConfig: no cache by default; CACHE_SENTINELS (the queue\'s Sentinel credentials and CA) or CACHE_REDIS_URL turn it on', () => {
  const off = loadConfig(VALID);
  assert.equal(off.cache, null);
  // The TTL alone does not turn it on.
  assert.equal(loadConfig({ ...VALID, CACHE_TTL_S: '30' }).cache, null);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recete-ca-'));
  const file = path.join(dir, 'ca.crt');
  fs.writeFileSync(file, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  try {
    const s = loadConfig({
      ...VALID,
      REDIS_SENTINEL_USERNAME: 'client',
      REDIS_SENTINEL_PASSWORD: 'sp',
      REDIS_USERNAME: 'app',
      REDIS_PASSWORD: 'ap',
      REDIS_TLS_CA_FILE: file,
      CACHE_SENTINELS: '10.0.0.21:26379,10.0.0.22:26379',
      CACHE_USERNAME: 'cache',
      CACHE_PASSWORD: 'cp',
    });
    assert.deepEqual(s.cache, {
      ttlS: 60,
      redis: {
        mode: 'sentinel',
        sentinels: [{ host: '10.0.0.21', port: 26379 }, { host: '10.0.0.22', port: 26379 }],
        name: 'recete-cache',
        sentinelUsername: 'client',
        sentinelPassword: 'sp',
        username: 'cache',
        password: 'cp',
        tlsCa: fs.readFileSync(file, 'utf8'),
      },
    });
    const o = redisOptions(s.cache.redis);
    assert.equal(o.name, 'recete-cache');
    assert.equal(o.failoverDetector, true);
    assert.deepEqual(o.sentinelTLS, { ca: s.cache.redis.tlsCa });
  } finally {
    fs.rmSync(dir, { recursive: true });
  }
  const named = loadConfig({ ...VALID, CACHE_SENTINELS: '10.0.0.21:26379', CACHE_MASTER_NAME: 'other', CACHE_TTL_S: '86400' });
  assert.deepEqual([named.cache.redis.name, named.cache.ttlS], ['other', 86400]);
  const url = loadConfig({ ...VALID, CACHE_REDIS_URL: 'rediss://cache.internal:6380', CACHE_TTL_S: '1' });
  assert.deepEqual(url.cache, { ttlS: 1, redis: { mode: 'direct', url: 'rediss://cache.internal:6380', username: undefined, password: undefined } });
  assert.deepEqual(redisOptions(url.cache.redis).tls, {});
});

test('loadConfig: bad cache settings are reported by name', () => {
  const refused = (env, re) => assert.throws(() => loadConfig({ ...VALID, ...env }), (err) => err instanceof ConfigError && re.test(err.message));
  refused({ CACHE_TTL_S: '0' }, /CACHE_TTL_S must be an integer between 1 and 86400 \(got "0"\)/);
  refused({ CACHE_TTL_S: 'abc', CACHE_REDIS_URL: 'redis://127.0.0.1:6379' }, /CACHE_TTL_S must be an integer/);
  refused({ CACHE_TTL_S: '86401' }, /CACHE_TTL_S/);
  refused({ CACHE_SENTINELS: 'nohostport' }, /CACHE_SENTINELS must be a comma-separated list of host:port \(bad entry "nohostport"\)/);
  refused({ CACHE_SENTINELS: ' , ' }, /CACHE_SENTINELS is set but lists no host:port/);
  refused({ CACHE_REDIS_URL: 'http://127.0.0.1:6379' }, /CACHE_REDIS_URL must start with redis:\/\/ or rediss:\/\/ \(got http:\/\/\)/);
  refused({ CACHE_REDIS_URL: 'not a url' }, /CACHE_REDIS_URL is not a valid URL/);
  // The worker (same environment file) has no cache and ignores them.
  assert.equal(loadConfig({ ...VALID, CACHE_TTL_S: 'abc', CACHE_REDIS_URL: 'http://x' }, { role: 'worker' }).cache, null);
});

test('server: a bad CACHE_TTL_S or CACHE_REDIS_URL exits 2 naming it', async () => {
  const { code, output } = await runWithEnv('src/server.js', { ...VALID, CACHE_TTL_S: '0', CACHE_REDIS_URL: 'http://127.0.0.1:6379' });
  assert.equal(code, 2, output);
  assert.match(output, /configuration error: CACHE_TTL_S must be an integer between 1 and 86400/);
  assert.match(output, /configuration error: CACHE_REDIS_URL must start with redis:\/\//);
});
