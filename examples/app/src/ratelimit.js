// Per-client rate limiting shared by every API instance. Each load balancer
// (nginx limit_req) and each instance counting alone lets a client through
// N times the limit; counting in Redis gives one budget per client for the
// whole tier. The algorithm is rate-limiter-flexible's (a fixed window per
// key, one Lua call per request); this file only wires it into Hono.
import { RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import { clientAddress } from './clientaddr.js';
import { createRedis } from './redis.js';
import * as log from './log.js';

// Keys recete:rl:<client address>; the redis role's ACL lets the app's user
// touch recete:rl:* (redis_app_key_patterns).
export const KEY_PREFIX = 'recete:rl';
// Probes and scrapes must never be refused: a 429 on /ready would take a
// healthy instance out of the load balancer.
export const EXEMPT_PATHS = new Set(['/health', '/ready', '/metrics']);
// A limiter call that takes longer is abandoned and the request let through:
// a slow Redis must not add more than this to every request.
export const COMMAND_TIMEOUT_MS = 100;
// While the limiter fails, log once per this many ms (the metric counts each).
const ERROR_LOG_INTERVAL_MS = 10000;

/**
 * A RateLimiterRedis on its own ioredis client (the queue's connection
 * settings, Sentinel included), or null when `config.rateLimitPoints` is 0.
 * Returns { limiter, redis } so that server.js can close the client.
 */
export function createRedisLimiter(config) {
  if (!config.rateLimitPoints) return null;
  const redis = createRedis(config.redis, {
    // Fail at once rather than wait: no offline queue while disconnected, no
    // resend after a reconnect (a resent INCR would count a request twice),
    // and a deadline on every command.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: COMMAND_TIMEOUT_MS,
  }, 'rate-limit');
  const limiter = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix: KEY_PREFIX,
    points: config.rateLimitPoints,
    duration: config.rateLimitWindowS,
    // Not connected: reject in the library without sending anything.
    rejectIfRedisNotReady: true,
    // Once a client is over the limit, this instance refuses it from memory
    // until its window ends: a flood costs Redis one call per instance.
    inMemoryBlockOnConsumed: config.rateLimitPoints + 1,
  });
  return { limiter, redis };
}

/**
 * Hono middleware: consume one point for the request's client and answer
 * 429 with Retry-After once the client is over the limit. `limiter` is any
 * rate-limiter-flexible limiter (the tests give a RateLimiterMemory): it
 * resolves under the limit, rejects with a RateLimiterRes over it and with
 * anything else (an Error) when it cannot count - then the request goes
 * through (fail open).
 *
 * @param opts.trusted  parseTrustedProxies() of TRUSTED_PROXIES
 * @param opts.metrics  rateLimitMetrics() counters, or null
 */
export function rateLimit(limiter, { trusted, metrics = null }) {
  let lastLog = -Infinity;
  return async function rateLimitMiddleware(c, next) {
    if (EXEMPT_PATHS.has(c.req.path)) return next();
    const client = clientAddress(peerAddress(c), c.req.header('x-forwarded-for'), trusted);
    try {
      await limiter.consume(client);
    } catch (res) {
      if (!(res instanceof RateLimiterRes)) {
        metrics?.errors.inc();
        if (performance.now() - lastLog >= ERROR_LOG_INTERVAL_MS) {
          lastLog = performance.now();
          log.warn('rate limiter failed, letting requests through', { err: res });
        }
        return next();
      }
      metrics?.limited.inc();
      const seconds = Math.ceil(res.msBeforeNext / 1000);
      const retryAfter = Number.isFinite(seconds) && seconds > 1 ? seconds : 1;
      c.header('Retry-After', String(retryAfter));
      return c.json({ error: 'too many requests', retry_after_s: retryAfter }, 429);
    }
    // Outside the try: an error of a handler below is not the limiter's.
    return next();
  };
}

/** The socket peer's address (@hono/node-server passes the IncomingMessage as env.incoming). */
function peerAddress(c) {
  return c.env?.incoming?.socket?.remoteAddress ?? '';
}
