// Configuration comes from environment variables only (12-factor): the Ansible
// role renders them into an EnvironmentFile for systemd, the tests pass them to
// child processes. Everything is validated once at start so that a typo fails
// the deploy immediately with a message naming the variable, instead of
// surfacing later as a confusing connection error.
import fs from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseHosts } from './poolers.js';
import { parseTrustedProxies } from './clientaddr.js';

// Exit code for configuration errors: distinct from 1 (crash / forced
// shutdown) so systemd units and tests can tell "misconfigured" apart.
export const CONFIG_EXIT_CODE = 2;

export class ConfigError extends Error {
  constructor(problems) {
    super(problems.join('; '));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

// The release tarball carries a VERSION file (written by build-release.sh,
// possibly overridden with APP_VERSION); a git checkout only has package.json.
export function readVersion() {
  try {
    const v = fs.readFileSync(fileURLToPath(new URL('../VERSION', import.meta.url)), 'utf8').trim();
    if (v) return v;
  } catch {
    // no VERSION file: not a release build
  }
  const pkg = JSON.parse(fs.readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8'));
  return pkg.version;
}

function intVar(env, name, def, min, max, problems) {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw.trim())) {
    problems.push(`${name} must be an integer between ${min} and ${max} (got ${JSON.stringify(raw)})`);
    return def;
  }
  const n = Number(raw.trim());
  if (n < min || n > max) {
    problems.push(`${name} must be an integer between ${min} and ${max} (got ${JSON.stringify(raw)})`);
    return def;
  }
  return n;
}

function numberVar(env, name, def, min, max, problems) {
  const raw = env[name];
  if (raw === undefined || raw === '') return def;
  const n = /^\d+(\.\d+)?$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!(n >= min && n <= max)) {
    problems.push(`${name} must be a number between ${min} and ${max} (got ${JSON.stringify(raw)})`);
    return def;
  }
  return n;
}

const PG_SCHEMES = ['postgres', 'postgresql'];
const REDIS_SCHEMES = ['redis', 'rediss'];

function pgUrlVar(env, name, required, problems) {
  const raw = env[name];
  if (raw === undefined || raw === '') {
    if (required) problems.push(`${name} is required (postgres://user:password@host:port/dbname, through PgBouncer)`);
    return undefined;
  }
  return urlOk(raw, name, PG_SCHEMES, problems) ? raw : undefined;
}

/**
 * The read replicas, [{name, url}]: DATABASE_RO_URLS (space-separated, one
 * PgBouncer entry per replica), else DATABASE_RO_URL (one), else none (reads
 * go to the primary). Each is named by its database name (recete_ro_pg2),
 * which /ready and the metrics show; a URL equal to DATABASE_URL is the
 * primary, not a replica.
 */
function readReplicasVar(env, databaseUrl, problems) {
  const name = env.DATABASE_RO_URLS !== undefined && env.DATABASE_RO_URLS.trim() !== '' ? 'DATABASE_RO_URLS' : 'DATABASE_RO_URL';
  const raws = (env[name] || '').split(/\s+/).filter(Boolean);
  const replicas = [];
  for (const [i, raw] of raws.entries()) {
    const url = pgUrlVar({ [name]: raw }, name, false, problems);
    if (!url || url === databaseUrl) continue;
    const dbname = decodeURIComponent(new URL(url).pathname.replace(/^\//, '')) || `replica${i + 1}`;
    if (replicas.some((r) => r.name === dbname)) {
      problems.push(`${name} names the database ${JSON.stringify(dbname)} twice`);
      continue;
    }
    replicas.push({ name: dbname, url });
  }
  return replicas;
}

/** The PEM of REDIS_TLS_CA_FILE (read once, at start), or undefined: no TLS to Redis. */
function redisTlsCa(file, problems) {
  if (file === undefined || file === '') return undefined;
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    problems.push(`REDIS_TLS_CA_FILE cannot be read (${err.code || err.message}): ${file}`);
    return undefined;
  }
}

/** host:port,host:port (or [v6addr]:port) of the variable `name`. */
function parseSentinels(raw, name, problems) {
  const list = [];
  for (const part of raw.split(',').map((s) => s.trim()).filter(Boolean)) {
    // host:port, or [v6addr]:port
    const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(part);
    const port = m ? Number(m[3]) : 0;
    if (!m || port < 1 || port > 65535) {
      problems.push(`${name} must be a comma-separated list of host:port (bad entry ${JSON.stringify(part)})`);
      return [];
    }
    list.push({ host: m[1] || m[2], port });
  }
  if (list.length === 0) problems.push(`${name} is set but lists no host:port`);
  return list;
}

/**
 * True if `raw` (the variable `name`) is a URL of one of `schemes`; else a
 * problem that names the variable (never its value: it may hold a password).
 */
function urlOk(raw, name, schemes, problems) {
  let u;
  try {
    u = new URL(raw);
  } catch {
    problems.push(`${name} is not a valid URL`);
    return false;
  }
  if (!schemes.includes(u.protocol.slice(0, -1))) {
    problems.push(`${name} must start with ${schemes.map((x) => `${x}://`).join(' or ')} (got ${u.protocol}//)`);
    return false;
  }
  return true;
}

/**
 * The item cache's Redis (cache.js), or null: no cache. A master of its own
 * behind the same Sentinels as the queue's (CACHE_SENTINELS, usually the
 * same list as REDIS_SENTINELS), so the Sentinel credentials and the TLS CA
 * are the queue's; only the ACL user is the cache's own.
 */
function cacheRedisVar(env, tlsCa, problems) {
  return redisVar(env, { sentinels: 'CACHE_SENTINELS', url: 'CACHE_REDIS_URL', master: 'CACHE_MASTER_NAME',
    defaultMaster: 'recete-cache', username: 'CACHE_USERNAME', password: 'CACHE_PASSWORD' }, tlsCa, problems);
}

/**
 * One Redis to connect to, from the variables named in `names`: through the
 * Sentinels (names.sentinels, master names.master), else a URL (names.url);
 * null when neither is set. The Sentinels are always asked with the queue's
 * Sentinel user (REDIS_SENTINEL_USERNAME/PASSWORD: read-only SENTINEL
 * commands; unset = Sentinel's default user).
 */
function redisVar(env, names, tlsCa, problems) {
  const common = {
    username: env[names.username] || undefined,
    password: env[names.password] || undefined,
    ...(tlsCa ? { tlsCa } : {}),
  };
  if (env[names.sentinels]) {
    return {
      mode: 'sentinel',
      sentinels: parseSentinels(env[names.sentinels], names.sentinels, problems),
      name: env[names.master] || names.defaultMaster,
      sentinelUsername: env.REDIS_SENTINEL_USERNAME || undefined,
      sentinelPassword: env.REDIS_SENTINEL_PASSWORD || undefined,
      ...common,
    };
  }
  if (env[names.url]) {
    urlOk(env[names.url], names.url, REDIS_SCHEMES, problems);
    return { mode: 'direct', url: env[names.url], ...common };
  }
  return null;
}

/**
 * Build the configuration from `env`. Throws ConfigError listing every
 * problem found. `role` limits what is required: `migrate` only needs the
 * database, `api` and `worker` need Redis too.
 */
export function loadConfig(env = process.env, { role = 'api' } = {}) {
  const problems = [];

  const port = intVar(env, 'PORT', 3000, 1, 65535, problems);
  const host = env.HOST || '0.0.0.0';
  // The worker has no port; its pid keeps two workers on one host apart.
  const defaultInstance = role === 'api' ? `${os.hostname()}:${port}` : `${os.hostname()}:${role}-${process.pid}`;
  const instance = env.APP_INSTANCE || defaultInstance;

  const databaseUrl = pgUrlVar(env, 'DATABASE_URL', true, problems);
  const readReplicas = readReplicasVar(env, databaseUrl, problems);
  // Several PgBouncer hosts (host:port, space-separated) in place of the
  // URLs' host: connections fail over between them (poolers.js).
  let databaseHosts = [];
  try {
    databaseHosts = parseHosts(env.DATABASE_HOSTS);
  } catch (err) {
    problems.push(`DATABASE_HOSTS must be a space-separated list of host:port (${err.message})`);
  }
  // Each process opens up to PG_POOL_SIZE connections per pool to PgBouncer:
  // an operator budgets instances x pools x size against max_client_conn.
  const pgPoolSize = intVar(env, 'PG_POOL_SIZE', 10, 1, 1000, problems);

  let redis;
  let tlsCa;
  if (role !== 'migrate') {
    // TLS to Redis and the Sentinels, their certificates checked against this CA (PEM).
    tlsCa = redisTlsCa(env.REDIS_TLS_CA_FILE, problems);
    redis = redisVar(env, { sentinels: 'REDIS_SENTINELS', url: 'REDIS_URL', master: 'REDIS_MASTER_NAME',
      defaultMaster: 'recete', username: 'REDIS_USERNAME', password: 'REDIS_PASSWORD' }, tlsCa, problems);
    if (!redis) problems.push('REDIS_SENTINELS (host:port,host:port) or REDIS_URL (redis://host:port) is required');
  }

  const queueName = env.QUEUE_NAME || 'recete-jobs';
  if (!/^[A-Za-z0-9_.-]{1,100}$/.test(queueName)) {
    // BullMQ uses ':' as its key separator, so keep queue names simple.
    problems.push(`QUEUE_NAME must match [A-Za-z0-9_.-]{1,100} (got ${JSON.stringify(queueName)})`);
  }

  // Prometheus metrics: on unless METRICS=off (which only exists so that
  // bench/metrics_overhead.py can measure their cost). The worker serves them
  // on its own listener when METRICS_PORT is set; without it there is none,
  // so deployments that predate metrics keep working unchanged.
  const metricsRaw = (env.METRICS || 'on').trim().toLowerCase();
  if (metricsRaw !== 'on' && metricsRaw !== 'off') {
    problems.push(`METRICS must be "on" or "off" (got ${JSON.stringify(env.METRICS)})`);
  }
  // A host runs several workers from one template unit (recete-worker@INDEX):
  // the unit gives the base and the index, so each gets its own port.
  let metricsPort = intVar(env, 'METRICS_PORT', undefined, 1, 65535, problems);
  if (metricsPort === undefined && env.METRICS_PORT_BASE !== undefined) {
    const base = intVar(env, 'METRICS_PORT_BASE', undefined, 1, 65535, problems);
    const index = intVar(env, 'WORKER_INDEX', undefined, 0, 1000, problems);
    if (base !== undefined && index !== undefined) {
      if (base + index > 65535) problems.push(`METRICS_PORT_BASE + WORKER_INDEX must be at most 65535 (got ${base + index})`);
      else metricsPort = base + index;
    }
  }

  // Shared rate limiting (ratelimit.js), API only: the worker reads the same
  // environment file and has no requests to limit. 0 points: off.
  let rateLimit = { rateLimitPoints: 0, rateLimitWindowS: 1, trustedProxies: parseTrustedProxies('') };
  if (role === 'api') {
    let trustedProxies = rateLimit.trustedProxies;
    try {
      trustedProxies = parseTrustedProxies(env.TRUSTED_PROXIES);
    } catch (err) {
      problems.push(`TRUSTED_PROXIES must be a comma-separated list of IP addresses and CIDR ranges (${err.message})`);
    }
    rateLimit = {
      rateLimitPoints: intVar(env, 'RATE_LIMIT_POINTS', 0, 0, 1000000000, problems),
      rateLimitWindowS: intVar(env, 'RATE_LIMIT_WINDOW_S', 1, 1, 86400, problems),
      trustedProxies,
    };
  }

  // The item cache (cache.js), API only like the rate limit: neither
  // CACHE_SENTINELS nor CACHE_REDIS_URL set, no cache. The TTL is checked
  // even then, so a typo shows before the cache is turned on.
  let cache = null;
  if (role === 'api') {
    const ttlS = intVar(env, 'CACHE_TTL_S', 60, 1, 86400, problems);
    const cacheRedis = cacheRedisVar(env, tlsCa, problems);
    if (cacheRedis) cache = { redis: cacheRedis, ttlS };
  }

  const config = {
    role,
    version: readVersion(),
    port,
    host,
    instance,
    databaseUrl,
    readReplicas,
    databaseHosts,
    readMaxLagMs: intVar(env, 'READ_MAX_LAG_MS', 1000, 0, 3600000, problems),
    readCheckIntervalMs: intVar(env, 'READ_CHECK_INTERVAL_MS', 500, 50, 60000, problems),
    readTimeoutMs: intVar(env, 'READ_TIMEOUT_MS', 2000, 10, 3600000, problems),
    pgPoolSize,
    redis,
    queueName,
    workerConcurrency: intVar(env, 'WORKER_CONCURRENCY', 10, 1, 1000, problems),
    shutdownTimeoutMs: intVar(env, 'SHUTDOWN_TIMEOUT_MS', 25000, 100, 3600000, problems),
    readyCheckTimeoutMs: intVar(env, 'READY_CHECK_TIMEOUT_MS', 1000, 10, 60000, problems),
    metrics: metricsRaw !== 'off',
    metricsPort,
    metricsHost: env.METRICS_HOST || '127.0.0.1',
    cpuQuotaCores: numberVar(env, 'CPU_QUOTA_CORES', 1, 0.01, 64, problems),
    ...rateLimit,
    cache,
  };

  if (problems.length) throw new ConfigError(problems);
  return config;
}

/** loadConfig for entry points: on error print the problems and exit 2. */
export function loadConfigOrExit(env = process.env, opts = {}) {
  try {
    return loadConfig(env, opts);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const p of err.problems) process.stderr.write(`recete-app: configuration error: ${p}\n`);
    process.exit(CONFIG_EXIT_CODE);
  }
}
