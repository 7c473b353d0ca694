// Several PgBouncer hosts, so that no pooler is a single point of failure.
// Each process prefers one pooler (spread by instance name, so the tier's
// connections are shared out) and opens new connections on the next one in
// its order while a pooler refuses them; a pooler that failed is skipped for
// DOWN_MS, then tried again, so connections drift back when it returns.
//
// node-postgres takes one host per connection string, and nothing on npm
// fails over between hosts for a pg.Pool (pg-pool has no host list), hence
// this module: a pg.Client subclass that picks its host when the pool
// creates it, and a retry of connects that failed before any query was sent.
import pg from 'pg';

export const DOWN_MS = 5000;

/** `host:port host:port` (or `[v6]:port`) to [{host, port}]. */
export function parseHosts(raw) {
  return String(raw ?? '').split(/[\s,]+/).filter(Boolean).map((part) => {
    const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(part);
    const port = m ? Number(m[3]) : 0;
    if (!m || port < 1 || port > 65535) throw new Error(`bad host:port ${JSON.stringify(part)}`);
    return { host: m[1] || m[2], port };
  });
}

/** The hosts rotated so that `key` (the instance name) picks where to start. */
export function preferenceOrder(hosts, key) {
  let h = 0;
  for (const ch of String(key)) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  const start = hosts.length ? h % hosts.length : 0;
  return [...hosts.slice(start), ...hosts.slice(0, start)];
}

/** Which pooler to open the next connection on: the first not failed lately, else the one failed longest ago. */
export class PoolerChoice {
  constructor(hosts, { now = Date.now, downMs = DOWN_MS } = {}) {
    this.hosts = hosts.map((h) => ({ ...h, downSince: null }));
    this.now = now;
    this.downMs = downMs;
  }

  pick() {
    const t = this.now();
    const up = this.hosts.find((h) => h.downSince === null || t - h.downSince >= this.downMs);
    return up ?? this.hosts.reduce((a, b) => (a.downSince <= b.downSince ? a : b));
  }

  failed(target) {
    target.downSince = this.now();
  }

  worked(target) {
    target.downSince = null;
  }
}

/** A pg.Client class whose instances connect to the pooler `choice` picks. */
export function failoverClient(choice) {
  return class FailoverClient extends pg.Client {
    constructor(config) {
      const target = choice.pick();
      // The connection string's host wins over a `host` option: rewrite it.
      const url = new URL(config.connectionString);
      url.hostname = target.host.includes(':') ? `[${target.host}]` : target.host;
      url.port = String(target.port);
      super({ ...config, connectionString: url.toString() });
      this.pooler = target;
    }

    connect(callback) {
      const settle = (err) => {
        if (!err) {
          choice.worked(this.pooler);
          return;
        }
        choice.failed(this.pooler);
        // Nothing was sent: the caller may repeat the query elsewhere.
        err.beforeQuery = true;
        err.pooler = `${this.pooler.host}:${this.pooler.port}`;
      };
      if (callback) {
        return super.connect((err) => {
          settle(err);
          callback(err);
        });
      }
      return super.connect().then(() => settle(null), (err) => {
        settle(err);
        throw err;
      });
    }
  };
}

/**
 * pool.query(), repeated on the next pooler while the connection failed
 * before the query was sent (never once it may have run). Tries each pooler
 * once.
 */
export function withConnectRetry(pool, attempts) {
  const query = pool.query.bind(pool);
  pool.query = async (...args) => {
    if (typeof args[args.length - 1] === 'function') return query(...args);
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await query(...args);
      } catch (err) {
        if (!err?.beforeQuery || attempt >= attempts) throw err;
      }
    }
  };
  return pool;
}
