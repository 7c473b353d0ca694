// ioredis options shared by every Redis connection (BullMQ's and ours).
import { Redis } from 'ioredis';
import * as log from './log.js';

// Reconnect quickly and forever: after a Sentinel failover we want to be on
// the new master within seconds, not after BullMQ's default backoff (up to 20 s).
function retryStrategy(times) {
  return Math.min(times * 200, 2000);
}

// After a failover the old master is turned into a replica. A connection that
// survived the switch (no TCP reset) now gets READONLY on writes; returning 2
// makes ioredis reconnect - asking Sentinel for the current master - and
// resend the failed command.
function reconnectOnError(err) {
  return err && err.message && err.message.startsWith('READONLY') ? 2 : false;
}

/**
 * Connection options for ioredis / BullMQ.
 *
 * BullMQ needs `maxRetriesPerRequest: null` so that commands (above all the
 * worker's blocking BZPOPMIN) wait for a reconnect instead of failing after 20
 * retries and silently stopping the fetch loop, and `enableReadyCheck` so that
 * commands only flow once the server answers INFO (not while it is loading).
 *
 * With Sentinel, `failoverDetector` subscribes to +switch-master on the
 * sentinels and drops the connection as soon as a failover happens, so the
 * worker reconnects to the new master. Without it, when the old master hangs
 * or is cut off (rather than shutting down cleanly), the worker's sockets to
 * it stay open, nothing errors, and the worker silently stops consuming: the
 * worker test "after the master hangs and Sentinel fails over" shows exactly
 * that when this option is removed.
 */
export function redisOptions(redisConfig, overrides = {}) {
  const base = {
    username: redisConfig.username,
    password: redisConfig.password,
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    retryStrategy,
    reconnectOnError,
    // TCP keepalive on every connection (first probe after 10 s idle).
    keepAlive: 10000,
    // A connect to a host that does not answer (hung master) gives up after
    // 5 s and goes back through Sentinel instead of waiting for the kernel.
    connectTimeout: 5000,
  };
  // TLS (REDIS_TLS_CA_FILE): Node checks each server's certificate against the
  // CA and its name against the address dialled (the Sentinels name masters
  // by address).
  const tls = redisConfig.tlsCa ? { ca: redisConfig.tlsCa } : undefined;
  if (redisConfig.mode === 'sentinel') {
    Object.assign(base, {
      sentinels: redisConfig.sentinels,
      name: redisConfig.name,
      sentinelUsername: redisConfig.sentinelUsername,
      sentinelPassword: redisConfig.sentinelPassword,
      failoverDetector: true,
    });
    if (tls) Object.assign(base, { tls, sentinelTLS: tls, enableTLSForSentinelMode: true });
  } else {
    const u = new URL(redisConfig.url);
    Object.assign(base, {
      host: u.hostname,
      port: Number(u.port || 6379),
      db: u.pathname && u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
      // URL credentials win over REDIS_USERNAME/REDIS_PASSWORD only if set.
      username: u.username ? decodeURIComponent(u.username) : redisConfig.username,
      password: u.password ? decodeURIComponent(u.password) : redisConfig.password,
      tls: u.protocol === 'rediss:' || tls ? tls || {} : undefined,
    });
  }
  return { ...base, ...overrides };
}

/** A plain ioredis client (used by the API's readiness check). */
export function createRedis(redisConfig, overrides = {}, name = 'redis') {
  const client = new Redis(redisOptions(redisConfig, overrides));
  // Without a listener ioredis prints "Unhandled error event"; log it as JSON.
  client.on('error', (err) => log.warn('redis connection error', { client: name, err }));
  return client;
}
