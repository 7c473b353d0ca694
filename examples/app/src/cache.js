// Cache-aside for item reads in a Redis of its own (CACHE_SENTINELS or
// CACHE_REDIS_URL; see config.js), so a full cache evicts (allkeys-lru)
// without ever touching the queue's keys.
//
// Consistency: every item row carries a version, bumped by each UPDATE. An
// entry is only ever written by setIfNewer (below), which keeps an entry of
// the same or a newer version. PUT writes the new row through once its
// UPDATE has committed, so the next read anywhere sees it; a fill after a
// miss that read the row before that update carries the older version and
// cannot overwrite it. Where that argument does not hold - the write-through
// failed and so did the DEL after it, or the entry vanished (evicted, expired)
// between the write-through and an older fill - an old entry lives at most
// CACHE_TTL_S.
//
// The cache is never needed: a failing or slow cache costs a read at most
// COMMAND_TIMEOUT_MS and the read is served from Postgres (X-Cache: BYPASS);
// /ready does not look at it.
import { createRedis } from './redis.js';
import * as log from './log.js';

// Keys recete:cache:item:<id>. The redis role's ACL for the cache user
// allows ~recete:cache:*.
export const KEY_PREFIX = 'recete:cache:';
export const ITEM_KEY_PREFIX = `${KEY_PREFIX}item:`;

// Every command this client sends to the cache master, for the ACL of the
// cache user (test/cache.test.js runs the app as a user allowed exactly
// these):
//  - GET (read), SET and GET inside the script, DEL (after a failed write-through);
//  - EVALSHA, and EVAL the first time on each connection (ioredis'
//    defineCommand sends the script itself once, then its SHA1);
//  - INFO: ioredis' ready check; in Sentinel mode it also checks there that
//    the server is a master (role:master). Refused, ioredis would skip the
//    check with a warning and could use a replica after a failover.
// AUTH needs no permission. CLIENT SETINFO is turned off (disableClientInfo),
// and no connection name is set, so CLIENT is not needed; nor is SELECT
// unless CACHE_REDIS_URL names a db. The Sentinels are asked with the
// queue's Sentinel user, as for the queue.
export const CACHE_COMMANDS = ['get', 'set', 'del', 'evalsha', 'eval', 'info'];

// 100 ms, like the rate limiter's: a GET on a healthy cache takes well under
// 1 ms on the private network, so this is only reached when the cache hangs,
// and then a read costs 100 ms + Postgres, inside the API's 200 ms p95
// target. Shorter (50 ms) would turn the event-loop stalls of a busy
// 2-core host (GC, a CPU-heavy /score request) into needless bypasses.
export const COMMAND_TIMEOUT_MS = 100;
// While the cache fails, log once per this many ms (the metrics count each).
const ERROR_LOG_INTERVAL_MS = 10000;

// SET the entry unless it holds the same or a newer version of the item.
// KEYS[1] the key; ARGV[1] the item's JSON, ARGV[2] its version, ARGV[3] TTL
// in ms. Returns 1 when stored, 0 when kept. An entry that does not decode
// (or has no version) is overwritten. Versions are bigint strings in the
// JSON (as id is): compared as numbers, exact below 2^53.
const SET_IF_NEWER = `
local cached = redis.call('GET', KEYS[1])
if cached then
  local ok, item = pcall(cjson.decode, cached)
  if ok and type(item) == 'table' then
    local have = tonumber(item.version)
    if have and have >= tonumber(ARGV[2]) then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
`;

export const itemKey = (id) => `${ITEM_KEY_PREFIX}${id}`;

export class ItemCache {
  /**
   * @param redis    ioredis client (createItemCache's, or a test's)
   * @param ttlS     CACHE_TTL_S
   * @param metrics  cacheMetrics() counters, or null
   */
  constructor(redis, { ttlS, metrics = null }) {
    this.redis = redis;
    this.ttlMs = ttlS * 1000;
    this.metrics = metrics;
    this.lastLog = -Infinity;
    redis.defineCommand('recete_cache_set_if_newer', { numberOfKeys: 1, lua: SET_IF_NEWER });
  }

  /**
   * Read item `id` through the cache: { result: 'HIT'|'MISS'|'BYPASS',
   * body: the item's JSON or null (no such item) }.
   *
   * `readPrimary` fills a miss: the primary, never a replica, because a
   * replica that lags behind an update would hand the fill the old row,
   * and with the newer entry gone (expired or evicted) that old row would
   * be served for CACHE_TTL_S instead of for the replica's lag.
   * `readFallback` serves a bypass, exactly as without a cache.
   * Both resolve to the row or undefined. Not-found is not cached.
   */
  async read(id, { readPrimary, readFallback }) {
    let cached;
    try {
      cached = await this.redis.get(itemKey(id));
    } catch (err) {
      this.#failed('cache read failed, reading from Postgres', err);
      this.metrics?.reads.inc({ result: 'bypass' });
      const row = await readFallback();
      return { result: 'BYPASS', body: row ? JSON.stringify(row) : null };
    }
    if (cached !== null) {
      this.metrics?.reads.inc({ result: 'hit' });
      return { result: 'HIT', body: cached };
    }
    this.metrics?.reads.inc({ result: 'miss' });
    const row = await readPrimary();
    if (!row) return { result: 'MISS', body: null };
    const body = JSON.stringify(row);
    // Awaited, so the next read finds it; a failure is only counted.
    await this.store(row, { body });
    return { result: 'MISS', body };
  }

  /**
   * Write `row` (with id and version) into the cache as `body` (its JSON
   * unless given), unless the cache has that version or a newer one. Never
   * throws: returns 'stored', 'kept_newer' or 'error'. With `invalidate`
   * (the write-through of an update) a failed write is followed by a DEL, so
   * that the entry of the previous version does not outlive the update; if
   * that fails too, the old entry expires within CACHE_TTL_S.
   */
  async store(row, { body = JSON.stringify(row), invalidate = false } = {}) {
    const key = itemKey(row.id);
    let result;
    try {
      const stored = await this.redis.recete_cache_set_if_newer(key, body, String(row.version), this.ttlMs);
      result = stored === 1 ? 'stored' : 'kept_newer';
    } catch (err) {
      result = 'error';
      this.#failed(invalidate ? 'cache write-through failed' : 'cache fill failed', err);
      if (invalidate) await this.redis.del(key).catch(() => {});
    }
    this.metrics?.writes.inc({ result });
    return result;
  }

  close() {
    // quit() needs a connection; without one there is nothing to say goodbye to.
    return this.redis.quit().catch(() => this.redis.disconnect());
  }

  #failed(msg, err) {
    if (performance.now() - this.lastLog < ERROR_LOG_INTERVAL_MS) return;
    this.lastLog = performance.now();
    log.warn(msg, { err });
  }
}

/** The ItemCache of `config.cache`, on its own ioredis client, or null (no cache configured). */
export function createItemCache(config, { metrics = null } = {}) {
  if (!config.cache) return null;
  const redis = createRedis(config.cache.redis, {
    // Fail at once rather than wait (as the rate limiter does): no offline
    // queue while disconnected, no resend after a reconnect, and a deadline
    // on every command. Sentinel mode keeps failoverDetector and the rest
    // of redisOptions.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: COMMAND_TIMEOUT_MS,
    // No CLIENT SETINFO on connect: one command fewer for the ACL.
    disableClientInfo: true,
  }, 'cache');
  return new ItemCache(redis, { ttlS: config.cache.ttlS, metrics });
}
