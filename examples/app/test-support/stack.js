// Starts the production topology on loopback for one test file, with real
// servers from Debian packages (postgresql, pgbouncer, redis-server,
// redis-sentinel), random free ports and a temp dir:
//
//   app --> PgBouncer (transaction mode, scram-sha-256) --> PostgreSQL
//   app --> redis-sentinel (master "recete") --> redis-server (ACL user)
//   app --> redis-sentinel (master "recete-cache") --> cache redis-server
//           (opts.cache: the item cache, allkeys-lru, its own ACL user)
//
// initdb, postgres and pgbouncer refuse to run as root; when the tests run as
// root (CI) they are started as the `postgres` system user. We use spawn's
// uid/gid options rather than `runuser -u postgres --`: runuser forks and stays
// the parent, so its PID would not be the server's, and signals such as
// SIGSTOP (used to hold a request in flight) would not reach the server.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Redis } from 'ioredis';
import { Proc } from './proc.js';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/** Poll `fn` until it returns a truthy value (or stops throwing). */
export async function waitUntil(fn, { timeoutMs = 10000, intervalMs = 50, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${lastErr.message}` : ''}`);
    }
    await sleep(intervalMs);
  }
}

function findPgBin() {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root)
    ? fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, 'bin', 'initdb'))).sort((a, b) => Number(b) - Number(a))
    : [];
  if (!versions.length) {
    throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql: apt-get install -y postgresql');
  }
  return path.join(root, versions[0], 'bin');
}

function which(cmd, pkg) {
  for (const dir of ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/bin', '/usr/local/sbin']) {
    const p = path.join(dir, cmd);
    if (fs.existsSync(p)) return p;
  }
  throw new Error(`${cmd} not found: apt-get install -y ${pkg}`);
}

function serviceUser() {
  if (process.geteuid() !== 0) return {};
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  return { uid, gid };
}

const DB = 'recete';
const DB_USER = 'app';
const DB_PASSWORD = 'app-secret';
const REDIS_USER = 'app';
const REDIS_PASSWORD = 'redis-secret';
const SENTINEL_REDIS_USER = 'sentinel';
const SENTINEL_REDIS_PASSWORD = 'sentinel-user-secret';
const SENTINEL_PASSWORD = 'sentinel-secret';
export const MASTER_NAME = 'recete';
export const CACHE_MASTER_NAME = 'recete-cache';
const CACHE_USER = 'cache';
const CACHE_PASSWORD = 'cache-secret';
const CACHE_ADMIN_USER = 'admin';
const CACHE_ADMIN_PASSWORD = 'admin-secret';

export class Stack {
  /**
   * @param opts.replica  also start a Redis replica (for failover tests)
   * @param opts.pgReplica also start a PostgreSQL streaming replica, with its
   *                       own PgBouncer entry in DATABASE_RO_URLS
   * @param opts.secondPooler also start a second PgBouncer (same entries), both
   *                       in DATABASE_HOSTS
   * @param opts.durable  Postgres with production durability (fsync and
   *                      synchronous_commit on) for benchmarks of write paths
   * @param opts.cache    also start the item cache's Redis, monitored by the
   *                      Sentinel as `recete-cache`: { commands } are all its
   *                      cache user may run (keys ~recete:cache:*)
   */
  constructor({ replica = false, durable = false, pgReplica = false, secondPooler = false, cache = null } = {}) {
    this.cache = cache;
    this.withPgReplica = pgReplica;
    this.withSecondPooler = secondPooler;
    this.procs = [];
    this.withReplica = replica;
    this.durable = durable;
  }

  async start() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recete-test-'));
    this.user = serviceUser();
    this.pgBin = findPgBin();
    this.binPgbouncer = which('pgbouncer', 'pgbouncer');
    this.binRedis = which('redis-server', 'redis-server');
    this.binSentinel = which('redis-sentinel', 'redis-sentinel');
    this.runDir = path.join(this.dir, 'run');
    fs.mkdirSync(this.runDir);
    if (this.user.uid !== undefined) {
      fs.chownSync(this.dir, this.user.uid, this.user.gid);
      fs.chownSync(this.runDir, this.user.uid, this.user.gid);
    }
    [this.pgPort, this.bouncerPort, this.redisPort, this.sentinelPort, this.replicaPort, this.pgReplicaPort, this.bouncer2Port, this.cachePort] = await Promise.all([
      freePort(),
      freePort(),
      freePort(),
      freePort(),
      freePort(),
      freePort(),
      freePort(),
      freePort(),
    ]);
    try {
      await Promise.all([this.#startPostgresAndBouncer(), this.#startRedisAndSentinel()]);
    } catch (err) {
      await this.stop();
      throw err;
    }
    return this;
  }

  /** Environment for the app: through PgBouncer and Sentinel, as in production. */
  get env() {
    return {
      DATABASE_URL: `postgres://${DB_USER}:${DB_PASSWORD}@127.0.0.1:${this.bouncerPort}/${DB}`,
      ...(this.withSecondPooler ? { DATABASE_HOSTS: `127.0.0.1:${this.bouncerPort} 127.0.0.1:${this.bouncer2Port}` } : {}),
      ...(this.withPgReplica ? { DATABASE_RO_URLS: `postgres://${DB_USER}:${DB_PASSWORD}@127.0.0.1:${this.bouncerPort}/${DB}_ro_replica` } : {}),
      REDIS_SENTINELS: `127.0.0.1:${this.sentinelPort}`,
      REDIS_MASTER_NAME: MASTER_NAME,
      REDIS_SENTINEL_PASSWORD: SENTINEL_PASSWORD,
      REDIS_USERNAME: REDIS_USER,
      REDIS_PASSWORD: REDIS_PASSWORD,
    };
  }

  /** Environment for the item cache through the Sentinel (opts.cache), as in production. */
  get cacheEnv() {
    return {
      CACHE_SENTINELS: `127.0.0.1:${this.sentinelPort}`,
      CACHE_MASTER_NAME,
      CACHE_USERNAME: CACHE_USER,
      CACHE_PASSWORD,
    };
  }

  /** The same cache, straight to the server (CACHE_REDIS_URL). */
  get cacheUrlEnv() {
    return { CACHE_REDIS_URL: `redis://127.0.0.1:${this.cachePort}`, CACHE_USERNAME: CACHE_USER, CACHE_PASSWORD };
  }

  #track(proc) {
    this.procs.push(proc);
    return proc;
  }

  // ---------------------------------------------------------------- Postgres

  async #startPostgresAndBouncer() {
    const data = path.join(this.dir, 'pgdata');
    // Local (socket) connections trust, TCP needs scram-sha-256: PgBouncer
    // logs in over TCP with the password from its userlist.
    execFileSync(
      path.join(this.pgBin, 'initdb'),
      ['-D', data, '-U', 'postgres', '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'],
      { ...this.user, stdio: 'pipe', env: { PATH: process.env.PATH, LC_ALL: 'C' } },
    );
    this.startPostgres();
    await waitUntil(async () => {
      if (!this.postgres.running) throw new Error(`postgres exited\n${this.postgres.tail()}`);
      await this.adminQuery('SELECT 1');
      return true;
    }, { what: 'postgres to accept connections', timeoutMs: 20000 });
    await this.adminQuery(`CREATE ROLE ${DB_USER} LOGIN PASSWORD '${DB_PASSWORD}'`);
    await this.adminQuery(`CREATE DATABASE ${DB} OWNER ${DB_USER}`);

    // PgBouncer 1.18, transaction pooling. The userlist holds the plain
    // password: with it PgBouncer can answer the client's SCRAM exchange and
    // run its own SCRAM login to Postgres. (A SCRAM secret copied from
    // pg_authid also works, but only with auth_type scram-sha-256 on both
    // sides; md5 hashes cannot log in to a scram-sha-256 server.)
    fs.writeFileSync(path.join(this.dir, 'userlist.txt'), `"${DB_USER}" "${DB_PASSWORD}"\n`);
    fs.writeFileSync(
      path.join(this.dir, 'pgbouncer.ini'),
      [
        '[databases]',
        `${DB} = host=127.0.0.1 port=${this.pgPort} dbname=${DB}`,
        ...(this.withPgReplica ? [`${DB}_ro_replica = host=127.0.0.1 port=${this.pgReplicaPort} dbname=${DB}`] : []),
        '[pgbouncer]',
        'listen_addr = 127.0.0.1',
        `listen_port = ${this.bouncerPort}`,
        `unix_socket_dir = ${this.runDir}`,
        'auth_type = scram-sha-256',
        `auth_file = ${path.join(this.dir, 'userlist.txt')}`,
        'pool_mode = transaction',
        'max_client_conn = 200',
        'default_pool_size = 20',
        // JDBC and others send it; harmless to allow (node-postgres does not).
        'ignore_startup_parameters = extra_float_digits',
        'server_reset_query =',
        'log_connections = 0',
        'log_disconnections = 0',
        '',
      ].join('\n'),
    );
    if (this.user.uid !== undefined) {
      for (const f of ['userlist.txt', 'pgbouncer.ini']) fs.chownSync(path.join(this.dir, f), this.user.uid, this.user.gid);
    }
    if (this.withPgReplica) await this.#makePgReplica();
    if (this.withSecondPooler) {
      const ini = fs.readFileSync(path.join(this.dir, 'pgbouncer.ini'), 'utf8').replace(`listen_port = ${this.bouncerPort}`, `listen_port = ${this.bouncer2Port}`);
      fs.writeFileSync(path.join(this.dir, 'pgbouncer2.ini'), ini);
      if (this.user.uid !== undefined) fs.chownSync(path.join(this.dir, 'pgbouncer2.ini'), this.user.uid, this.user.gid);
      await this.startPgbouncer2();
    }
    await this.startPgbouncer();
  }

  // A streaming replica of the primary, as the postgresql role builds one:
  // pg_basebackup -R over the primary's socket (initdb's pg_hba trusts local
  // replication), then hot standby on its own port.
  async #makePgReplica() {
    execFileSync(
      path.join(this.pgBin, 'pg_basebackup'),
      ['-h', this.runDir, '-p', String(this.pgPort), '-U', 'postgres', '-D', path.join(this.dir, 'pgreplica'), '-R', '-X', 'stream', '--checkpoint=fast', '--no-sync'],
      { ...this.user, stdio: 'pipe', env: { PATH: process.env.PATH, LC_ALL: 'C' } },
    );
    await this.startPgReplica();
  }

  async startPgReplica() {
    this.pgReplica = this.#track(this.#postgresProc('postgres-replica', 'pgreplica', this.pgReplicaPort, ['fsync=off']));
    await waitUntil(async () => {
      if (!this.pgReplica.running) throw new Error(`postgres replica exited\n${this.pgReplica.tail()}`);
      const { rows } = await this.replicaQuery('SELECT pg_is_in_recovery() AS r');
      return rows[0].r;
    }, { what: 'the postgres replica to accept connections', timeoutMs: 20000 });
  }

  /** SIGINT is PostgreSQL's fast shutdown. */
  async stopPgReplica() {
    await this.pgReplica.stop('SIGINT');
  }

  /** Superuser query on the replica, over its socket. */
  replicaQuery(sql, params = []) {
    return this.#superuserQuery(this.pgReplicaPort, sql, params, 'postgres');
  }

  /** Query the app database on the replica as a superuser. */
  replicaAppDbQuery(sql, params = []) {
    return this.#superuserQuery(this.pgReplicaPort, sql, params, DB);
  }

  /** One postgres server of this stack: its data directory under the temp dir, its port, settings. */
  #postgresProc(name, dataDir, port, settings) {
    const args = ['-D', path.join(this.dir, dataDir)];
    for (const setting of ['listen_addresses=127.0.0.1', `port=${port}`, `unix_socket_directories=${this.runDir}`,
      ...settings, 'shared_buffers=32MB', 'max_connections=60']) {
      args.push('-c', setting);
    }
    return new Proc(name, path.join(this.pgBin, 'postgres'), args, { ...this.user, env: { PATH: process.env.PATH, LC_ALL: 'C' } });
  }

  startPostgres() {
    // Throwaway test cluster: durability off for speed (benchmarks of write
    // paths ask for production settings).
    const durability = this.durable ? 'on' : 'off';
    this.postgres = this.#track(this.#postgresProc('postgres', 'pgdata', this.pgPort,
      [`fsync=${durability}`, `synchronous_commit=${durability}`, `full_page_writes=${durability}`]));
  }

  /** Superuser query over the Unix socket, bypassing PgBouncer. */
  adminQuery(sql, params = [], database = 'postgres') {
    return this.#superuserQuery(this.pgPort, sql, params, database);
  }

  async #superuserQuery(port, sql, params, database) {
    const client = new pg.Client({ host: this.runDir, port, user: 'postgres', database });
    await client.connect();
    try {
      return await client.query(sql, params);
    } finally {
      await client.end();
    }
  }

  /** Query the app database as a superuser (bypassing PgBouncer). */
  appDbQuery(sql, params = []) {
    return this.adminQuery(sql, params, DB);
  }

  /**
   * Take an ACCESS EXCLUSIVE lock on `table` in an open transaction (as the
   * superuser, directly on Postgres); queries on it block until release().
   */
  async lockTable(table) {
    const client = new pg.Client({ host: this.runDir, port: this.pgPort, user: 'postgres', database: DB });
    await client.connect();
    await client.query('BEGIN');
    await client.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        await client.query('COMMIT').catch(() => {});
        await client.end().catch(() => {});
      },
    };
  }

  async startPgbouncer() {
    this.pgbouncer = this.#track(
      new Proc('pgbouncer', this.binPgbouncer, [path.join(this.dir, 'pgbouncer.ini')], {
        ...this.user,
        env: { PATH: process.env.PATH },
      }),
    );
    await waitUntil(async () => {
      if (!this.pgbouncer.running) throw new Error(`pgbouncer exited\n${this.pgbouncer.tail()}`);
      const client = new pg.Client({ connectionString: this.env.DATABASE_URL });
      await client.connect();
      try {
        await client.query('SELECT 1');
      } finally {
        await client.end();
      }
      return true;
    }, { what: 'pgbouncer to accept logins', timeoutMs: 15000 });
  }

  /** The second PgBouncer (opts.secondPooler), on its own port. */
  async startPgbouncer2() {
    this.pgbouncer2 = this.#track(
      new Proc('pgbouncer2', this.binPgbouncer, [path.join(this.dir, 'pgbouncer2.ini')], { ...this.user, env: { PATH: process.env.PATH } }),
    );
    await this.pgbouncer2.waitForOutput(/process up/, 15000);
  }

  /** SIGTERM is PgBouncer's immediate shutdown. */
  async stopPgbouncer() {
    await this.pgbouncer.stop('SIGTERM');
  }

  pausePgbouncer() {
    this.pgbouncer.signalProc('SIGSTOP');
  }

  resumePgbouncer() {
    this.pgbouncer.signalProc('SIGCONT');
  }

  // ------------------------------------------------------------------- Redis

  // Same ACL users on every Redis server: after a failover the app logs in
  // to the promoted replica with the same credentials. The default user is
  // disabled, the app has its own user, Sentinel and replication use another.
  #writeRedisConf(name, port, extra = []) {
    const dir = path.join(this.dir, name);
    fs.mkdirSync(dir);
    const file = path.join(this.dir, `${name}.conf`);
    fs.writeFileSync(
      file,
      [
        'bind 127.0.0.1',
        `port ${port}`,
        'daemonize no',
        'logfile ""',
        `dir ${dir}`,
        'save ""',
        'appendonly no',
        'maxmemory-policy noeviction',
        // Start the replica's full sync at once instead of waiting 5 s for
        // more replicas to join.
        'repl-diskless-sync-delay 0',
        'user default off',
        `user ${REDIS_USER} on >${REDIS_PASSWORD} ~* &* +@all`,
        `user ${SENTINEL_REDIS_USER} on >${SENTINEL_REDIS_PASSWORD} allchannels +@all`,
        `masteruser ${SENTINEL_REDIS_USER}`,
        `masterauth ${SENTINEL_REDIS_PASSWORD}`,
        ...extra,
        '',
      ].join('\n'),
    );
    return file;
  }

  async #startRedisAndSentinel() {
    fs.mkdirSync(path.join(this.dir, 'sentinel'));
    this.redisConf = this.#writeRedisConf('redis', this.redisPort);
    await this.startRedis();
    if (this.withReplica) {
      const conf = this.#writeRedisConf('replica', this.replicaPort, [`replicaof 127.0.0.1 ${this.redisPort}`]);
      this.replica = this.#track(new Proc('redis-replica', this.binRedis, [conf]));
      await this.replica.waitForOutput(/MASTER <-> REPLICA sync: Finished with success/, 10000);
    }

    if (this.cache) await this.#startCacheRedis();

    // Sentinel rewrites its config file at run time, so it lives in the temp
    // dir. `sentinel auth-user/auth-pass` must follow `sentinel monitor`.
    const monitor = (name, port) => [
      `sentinel monitor ${name} 127.0.0.1 ${port} 1`,
      `sentinel auth-user ${name} ${SENTINEL_REDIS_USER}`,
      `sentinel auth-pass ${name} ${SENTINEL_REDIS_PASSWORD}`,
      // Short, so that failover tests are quick.
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 10000`,
    ];
    fs.writeFileSync(
      path.join(this.dir, 'sentinel.conf'),
      [
        'bind 127.0.0.1',
        `port ${this.sentinelPort}`,
        'daemonize no',
        'logfile ""',
        `dir ${path.join(this.dir, 'sentinel')}`,
        `requirepass ${SENTINEL_PASSWORD}`,
        ...monitor(MASTER_NAME, this.redisPort),
        ...(this.cache ? monitor(CACHE_MASTER_NAME, this.cachePort) : []),
        '',
      ].join('\n'),
    );
    this.sentinel = this.#track(new Proc('redis-sentinel', this.binSentinel, [path.join(this.dir, 'sentinel.conf')]));
    await waitUntil(async () => {
      if (!this.sentinel.running) throw new Error(`redis-sentinel exited\n${this.sentinel.tail()}`);
      const s = new Redis({ host: '127.0.0.1', port: this.sentinelPort, password: SENTINEL_PASSWORD, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      s.on('error', () => {});
      try {
        await s.connect();
        const addr = await s.call('SENTINEL', 'get-master-addr-by-name', MASTER_NAME);
        // Wait until Sentinel has actually talked to the master (flags
        // "master" without s_down/disconnected), so the app's first
        // connection does not race Sentinel's startup.
        const master = await s.call('SENTINEL', 'master', MASTER_NAME);
        const flags = master[master.indexOf('flags') + 1];
        if (!(addr && Number(addr[1]) === this.redisPort && flags === 'master')) return false;
        if (this.cache) {
          const cache = await s.call('SENTINEL', 'master', CACHE_MASTER_NAME);
          if (cache[cache.indexOf('flags') + 1] !== 'master') return false;
        }
        if (!this.withReplica) return true;
        const replicas = await s.call('SENTINEL', 'replicas', MASTER_NAME);
        return replicas.some((r) => r[r.indexOf('port') + 1] === String(this.replicaPort) && r[r.indexOf('flags') + 1] === 'slave');
      } finally {
        s.disconnect();
      }
    }, { what: 'redis-sentinel to monitor the master', timeoutMs: 15000 });
  }

  async startRedis() {
    this.redis = this.#track(new Proc('redis-server', this.binRedis, [this.redisConf]));
    await this.redis.waitForOutput(/Ready to accept connections/, 10000);
  }

  async stopRedis() {
    await this.redis.stop('SIGTERM');
  }

  // The item cache (opts.cache): evicts rather than refuses when full, keeps
  // nothing on disk, as the redis role configures it. Its cache user may run
  // only opts.cache.commands on ~recete:cache:*, and nothing on channels; the
  // admin user is the tests' own view.
  async #startCacheRedis() {
    const commands = this.cache.commands.map((c) => `+${c}`).join(' ');
    this.cacheConf = path.join(this.dir, 'cache.conf');
    fs.mkdirSync(path.join(this.dir, 'cache'));
    fs.writeFileSync(this.cacheConf, [
      'bind 127.0.0.1',
      `port ${this.cachePort}`,
      'daemonize no',
      'logfile ""',
      `dir ${path.join(this.dir, 'cache')}`,
      'save ""',
      'appendonly no',
      'maxmemory 64mb',
      'maxmemory-policy allkeys-lru',
      'user default off',
      `user ${CACHE_USER} on >${CACHE_PASSWORD} resetkeys ~recete:cache:* resetchannels -@all ${commands}`,
      `user ${CACHE_ADMIN_USER} on >${CACHE_ADMIN_PASSWORD} ~* &* +@all`,
      `user ${SENTINEL_REDIS_USER} on >${SENTINEL_REDIS_PASSWORD} allchannels +@all`,
      '',
    ].join('\n'));
    await this.startCacheRedis();
  }

  async startCacheRedis() {
    this.cacheRedis = this.#track(new Proc('redis-cache', this.binRedis, [this.cacheConf]));
    await this.cacheRedis.waitForOutput(/Ready to accept connections/, 10000);
  }

  /** SIGTERM: the cache is gone, and its contents with it (nothing saved). */
  async stopCacheRedis() {
    await this.cacheRedis.stop('SIGTERM');
  }

  /** An ioredis client to the cache as its admin user (FLUSHALL, PTTL, ACL LOG). */
  cacheAdminClient() {
    const c = new Redis({ host: '127.0.0.1', port: this.cachePort, username: CACHE_ADMIN_USER, password: CACHE_ADMIN_PASSWORD, maxRetriesPerRequest: 1 });
    c.on('error', () => {});
    return c;
  }

  /** An ioredis client straight to the master as the app's ACL user. */
  redisClient() {
    const c = new Redis({ host: '127.0.0.1', port: this.redisPort, username: REDIS_USER, password: REDIS_PASSWORD, maxRetriesPerRequest: 1 });
    c.on('error', () => {});
    return c;
  }

  #sentinelClient() {
    const s = new Redis({ host: '127.0.0.1', port: this.sentinelPort, password: SENTINEL_PASSWORD, maxRetriesPerRequest: 1 });
    s.on('error', () => {});
    return s;
  }

  /** Port of the master as Sentinel reports it. */
  async masterPort() {
    const s = this.#sentinelClient();
    try {
      const addr = await s.call('SENTINEL', 'get-master-addr-by-name', MASTER_NAME);
      return Number(addr[1]);
    } finally {
      s.disconnect();
    }
  }

  /**
   * Make the master hang (SIGSTOP) so that Sentinel fails over to the
   * replica, and wait for it. This is the hard case for clients: their TCP
   * connections to the old master stay open but get no answer, unlike
   * `SENTINEL FAILOVER`, which makes the old master kill its client
   * connections so everyone reconnects anyway. Call resumeOldMaster() after.
   */
  async hangMasterUntilFailover() {
    const before = await this.masterPort();
    assert(before === this.redisPort, 'the original master must still be the master');
    this.redis.signalProc('SIGSTOP');
    await waitUntil(async () => (await this.masterPort()) !== before, { what: 'sentinel failover', timeoutMs: 20000, intervalMs: 100 });
    return this.masterPort();
  }

  /** SIGCONT the hung old master; Sentinel turns it into a replica. */
  resumeOldMaster() {
    this.redis.signalProc('SIGCONT');
  }

  // ----------------------------------------------------------------- cleanup

  async stop() {
    // Reverse start order; each stop() sends SIGCONT first in case a test
    // left a process paused, and SIGKILLs after a grace period.
    const procs = this.procs.slice().reverse();
    this.procs = [];
    for (const p of procs) {
      // postgres: SIGINT is the "fast" shutdown (SIGTERM is "smart").
      await p.stop(p.name.startsWith('postgres') ? 'SIGINT' : 'SIGTERM', 5000);
    }
    if (this.dir) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function startStack(opts) {
  return new Stack(opts).start();
}
