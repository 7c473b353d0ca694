// The item cache (src/cache.js) against real servers: PostgreSQL (and a
// streaming replica, for the read pool) through PgBouncer, the queue's Redis
// and a cache Redis (allkeys-lru, nothing on disk) both behind one Sentinel,
// as the roles deploy them. The app's cache
// user may run only CACHE_COMMANDS on ~recete:cache:*, so every test here
// also checks that list is complete (the last test reads the ACL log).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, waitUntil, sleep } from '../test-support/stack.js';
import { startApi, runMigrate, waitReady, http as req } from '../test-support/app.js';
import { scrape, value } from '../test-support/metrics.js';
import { CACHE_COMMANDS, createItemCache, itemKey } from '../src/cache.js';
import { loadConfig } from '../src/config.js';

let stack;
let admin;
// Two instances sharing the cache through the Sentinel (CACHE_SENTINELS).
let apiA;
let apiB;
const apis = [];

before(async () => {
  stack = await startStack({ pgReplica: true, cache: { commands: CACHE_COMMANDS } });
  const m = await runMigrate(stack);
  assert.equal(m.code, 0, m.output);
  [apiA, apiB] = await Promise.all([
    startApi(stack, stack.cacheEnv, { name: 'api-a' }),
    startApi(stack, stack.cacheEnv, { name: 'api-b' }),
  ]);
  apis.push(apiA, apiB);
  await Promise.all(apis.map((a) => waitReady(a.url)));
  admin = stack.cacheAdminClient();
  // The cache client connects on its own, after "listening": wait until
  // both instances use it.
  const id = await createItem('warm-up');
  for (const api of apis) {
    await waitUntil(async () => (await get(api, id)).cache !== 'BYPASS', { what: `${api.instance} to reach the cache` });
  }
});

after(async () => {
  await Promise.all(apis.map((a) => a.proc.stop('SIGTERM')));
  admin?.disconnect();
  if (stack) await stack.stop();
});

async function createItem(name, payload = { n: 1 }) {
  const r = await req(`${apiA.url}/items`, { method: 'POST', body: { name, payload } });
  assert.equal(r.status, 201, r.text);
  return r.json.id;
}

async function get(api, id) {
  const t0 = performance.now();
  const r = await req(`${api.url}/items/${id}`);
  return { ...r, cache: r.headers.get('x-cache'), ms: performance.now() - t0 };
}

async function put(api, id, body) {
  const r = await req(`${api.url}/items/${id}`, { method: 'PUT', body });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

/** Wait until the replica has replayed item `id` (reads that bypass the cache go there). */
function onReplica(id) {
  return waitUntil(async () => (await stack.replicaAppDbQuery('SELECT 1 FROM items WHERE id = $1', [id])).rowCount === 1, { what: `item ${id} on the replica` });
}

const counter = (samples, name, result) => value(samples, name, { result }) ?? 0;

test('a first read misses, the next hits with the same body; a repeated read mix hits at least 90 %', async () => {
  const id = await createItem('cached', { colour: 'blue' });
  const miss = await get(apiA, id);
  assert.equal(miss.status, 200, miss.text);
  assert.equal(miss.cache, 'MISS');
  assert.equal(miss.json.version, '1');
  assert.equal(miss.json.updated_at, null);
  assert.deepEqual(miss.json.payload, { colour: 'blue' });
  const hit = await get(apiA, id);
  assert.equal(hit.cache, 'HIT');
  assert.equal(hit.text, miss.text);
  assert.equal(hit.headers.get('content-type'), miss.headers.get('content-type'));
  // Shared: the other instance finds it too.
  const other = await get(apiB, id);
  assert.equal(other.cache, 'HIT');
  assert.equal(other.text, miss.text);
  // Stored under the agreed key, with the default TTL of 60 s.
  const pttl = await admin.pttl(itemKey(id));
  assert.ok(pttl > 55000 && pttl <= 60000, `PTTL ${pttl}`);

  const ids = [];
  for (let i = 0; i < 5; i += 1) ids.push(await createItem(`mix-${i}`));
  const before = await scrape(`${apiA.url}/metrics`);
  for (let i = 0; i < 100; i += 1) {
    const r = await get(apiA, ids[i % ids.length]);
    assert.equal(r.status, 200, r.text);
  }
  const after = await scrape(`${apiA.url}/metrics`);
  const delta = (result) => counter(after, 'recete_cache_reads_total', result) - counter(before, 'recete_cache_reads_total', result);
  const [hits, misses, bypasses] = ['hit', 'miss', 'bypass'].map(delta);
  assert.equal(hits + misses + bypasses, 100);
  assert.ok(misses >= ids.length, `${misses} misses`);
  assert.ok(hits / 100 >= 0.9, `hit rate ${hits} %, ${misses} misses, ${bypasses} bypasses`);
  assert.ok(counter(after, 'recete_cache_writes_total', 'stored') - counter(before, 'recete_cache_writes_total', 'stored') >= ids.length);
});

test('not found is not cached; PUT checks id and body like POST', async () => {
  for (let i = 0; i < 2; i += 1) {
    const r = await get(apiA, '987654321');
    assert.equal(r.status, 404);
    assert.equal(r.cache, 'MISS');
  }
  assert.equal(await admin.exists(itemKey('987654321')), 0);
  assert.equal((await req(`${apiA.url}/items/987654321`, { method: 'PUT', body: { name: 'x' } })).status, 404);
  assert.equal(await admin.exists(itemKey('987654321')), 0);
  const id = await createItem('valid');
  for (const body of [{}, { name: '' }, { name: 'ok', payload: [1] }, 'not json {']) {
    assert.equal((await req(`${apiA.url}/items/${id}`, { method: 'PUT', body })).status, 400, JSON.stringify(body));
  }
  assert.equal((await req(`${apiA.url}/items/abc`, { method: 'PUT', body: { name: 'x' } })).status, 400);
});

test('an update is read at once everywhere: PUT on one instance, GET on the other never sees the old version', async () => {
  const id = await createItem('v1');
  assert.equal((await get(apiB, id)).cache, 'MISS');
  assert.equal((await get(apiB, id)).json.version, '1');
  assert.equal((await get(apiA, id)).cache, 'HIT');
  for (let v = 2; v <= 8; v += 1) {
    const [writer, reader] = v % 2 ? [apiA, apiB] : [apiB, apiA];
    const updated = await put(writer, id, { name: `v${v}`, payload: { v } });
    assert.equal(updated.version, String(v));
    assert.ok(!Number.isNaN(Date.parse(updated.updated_at)));
    for (const api of [reader, writer]) {
      const r = await get(api, id);
      assert.equal(r.status, 200, r.text);
      // Written through: served from the cache, and the new version.
      assert.equal(r.cache, 'HIT', `${api.instance} after update to v${v}`);
      assert.deepEqual(r.json, updated);
    }
  }
});

test('a fill that read an older version does not overwrite a newer entry', async () => {
  // The app's own cache code as its ACL user, straight to the cache Redis.
  const config = loadConfig({ DATABASE_URL: 'postgres://u:p@127.0.0.1:1/x', REDIS_URL: 'redis://127.0.0.1:1', ...stack.cacheUrlEnv });
  const cache = createItemCache(config);
  try {
    // No offline queue: wait for the connection before the first command.
    if (cache.redis.status !== 'ready') await new Promise((resolve) => cache.redis.once('ready', resolve));
    const id = await createItem('race');
    // A slow fill: read the row (version 1) before the update...
    const { rows } = await stack.appDbQuery('SELECT id, name, payload, created_by, created_at, updated_at, version FROM items WHERE id = $1', [id]);
    const old = rows[0];
    assert.equal(old.version, '1');
    // ...the update commits and is written through...
    const updated = await put(apiA, id, { name: 'race-v2' });
    assert.equal(updated.version, '2');
    // ...and only then does the fill try to store what it read.
    assert.equal(await cache.store(old), 'kept_newer');
    const r = await get(apiB, id);
    assert.equal(r.cache, 'HIT');
    assert.deepEqual(r.json, updated);

    // Absent: stored; a newer version then replaces it.
    await admin.del(itemKey(id));
    assert.equal(await cache.store(old), 'stored');
    assert.equal((await get(apiB, id)).json.version, '1');
    const v3 = await put(apiB, id, { name: 'race-v3' });
    assert.equal(await cache.store(old), 'kept_newer');
    const after = await get(apiA, id);
    assert.equal(after.cache, 'HIT');
    assert.deepEqual(after.json, v3);
  } finally {
    await cache.close();
  }
});

test('a miss is filled from the primary, never from a replica that has not replayed the update yet', async () => {
  // A read pool that keeps a replica however far behind it falls.
  const api = await startApi(stack, { ...stack.cacheEnv, READ_MAX_LAG_MS: '3600000' }, { name: 'api-lag' });
  apis.push(api);
  const id = await createItem('lagging');
  await onReplica(id);
  await waitUntil(async () => (await req(`${api.url}/ready`)).json?.replicas?.recete_ro_replica === 'ok', { what: 'api-lag to read from the replica' });
  await waitUntil(async () => (await get(api, id)).cache === 'HIT', { what: 'api-lag to reach the cache' });
  await stack.replicaQuery('SELECT pg_wal_replay_pause()');
  try {
    const updated = await put(api, id, { name: 'lagging-v2' });
    assert.equal((await stack.replicaAppDbQuery('SELECT version FROM items WHERE id = $1', [id])).rows[0].version, '1');
    // The entry expires (or is evicted): the next read fills it again.
    await admin.del(itemKey(id));
    const r = await get(api, id);
    assert.equal(r.cache, 'MISS');
    assert.deepEqual(r.json, updated);
    const again = await get(api, id);
    assert.equal(again.cache, 'HIT');
    assert.deepEqual(again.json, updated);
  } finally {
    await stack.replicaQuery('SELECT pg_wal_replay_resume()');
  }
});

test('a failed write-through deletes the old entry: the next read misses and gets the update', async () => {
  const id = await createItem('del-me');
  await get(apiA, id);
  assert.equal((await get(apiA, id)).cache, 'HIT');
  const before = await scrape(`${apiB.url}/metrics`);
  // The script may not run any more, DEL still may.
  await admin.call('ACL', 'SETUSER', 'cache', '-evalsha', '-eval');
  try {
    const updated = await put(apiB, id, { name: 'del-me-v2' });
    assert.equal(updated.version, '2');
    const r = await get(apiA, id);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.cache, 'MISS');
    assert.deepEqual(r.json, updated);
    const after = await scrape(`${apiB.url}/metrics`);
    assert.equal(counter(after, 'recete_cache_writes_total', 'error') - counter(before, 'recete_cache_writes_total', 'error'), 1);
  } finally {
    await admin.call('ACL', 'SETUSER', 'cache', '+evalsha', '+eval');
    await admin.call('ACL', 'LOG', 'RESET');
  }
  await get(apiA, id);
  assert.equal((await get(apiA, id)).cache, 'HIT');
});

test('cache hung, then stopped: reads are served from Postgres at once (BYPASS), /ready stays 200; then hits again', { timeout: 60000 }, async () => {
  const id = await createItem('survivor');
  await onReplica(id);
  const expected = (await get(apiA, id)).text;
  assert.equal((await get(apiA, id)).cache, 'HIT');
  const bypassesWhile = async (what) => {
    for (let i = 0; i < 5; i += 1) {
      const r = await get(apiA, id);
      assert.equal(r.status, 200, `${what}: ${r.text}`);
      assert.equal(r.cache, 'BYPASS', what);
      assert.equal(r.text, expected, what);
      assert.ok(r.ms < 500, `${what}: GET took ${Math.round(r.ms)} ms`);
    }
    const ready = await req(`${apiA.url}/ready`);
    assert.equal(ready.status, 200, `${what}: ${ready.text}`);
  };

  // Hung (the harder case: the connection stays open, nothing answers).
  stack.cacheRedis.signalProc('SIGSTOP');
  try {
    await bypassesWhile('cache hung');
  } finally {
    stack.cacheRedis.signalProc('SIGCONT');
  }
  await waitUntil(async () => (await get(apiA, id)).cache === 'HIT', { what: 'hits after SIGCONT' });

  // Gone: the connection drops, commands fail at once.
  await stack.stopCacheRedis();
  try {
    await bypassesWhile('cache stopped');
  } finally {
    await stack.startCacheRedis();
  }
  // Empty after the restart: a miss fills it again, through the Sentinel.
  await waitUntil(async () => (await get(apiA, id)).cache === 'HIT', { what: 'hits after the restart', timeoutMs: 20000 });
  assert.equal((await get(apiA, id)).text, expected);
  const s = await scrape(`${apiA.url}/metrics`);
  assert.ok(counter(s, 'recete_cache_reads_total', 'bypass') >= 10);
});

test('CACHE_TTL_S: an entry is gone after its TTL (CACHE_REDIS_URL, straight to the cache)', async () => {
  const api = await startApi(stack, { ...stack.cacheUrlEnv, CACHE_TTL_S: '1' }, { name: 'api-ttl' });
  apis.push(api);
  await waitReady(api.url);
  const id = await createItem('short-lived');
  await waitUntil(async () => (await get(api, id)).cache !== 'BYPASS', { what: 'api-ttl to reach the cache' });
  assert.equal((await get(api, id)).cache, 'HIT');
  const pttl = await admin.pttl(itemKey(id));
  assert.ok(pttl > 0 && pttl <= 1000, `PTTL ${pttl}`);
  await sleep(1500);
  assert.equal(await admin.exists(itemKey(id)), 0);
  assert.equal((await get(api, id)).cache, 'MISS');
});

test('the cache user needed no command beyond CACHE_COMMANDS', async () => {
  const denied = await admin.call('ACL', 'LOG');
  assert.deepEqual(denied, [], JSON.stringify(denied));
  for (const api of apis) {
    // ioredis skips its ready check (and the master role check) with this
    // warning when INFO is refused.
    assert.doesNotMatch(api.proc.output, /Skipping the ready check/, api.proc.tail());
  }
});

test('SIGTERM: the cache client is closed with the rest, exit 0', async () => {
  apiB.proc.signalProc('SIGTERM');
  const { code } = await apiB.proc.waitForExit(10000);
  assert.equal(code, 0, apiB.proc.tail());
  assert.match(apiB.proc.output, /"msg":"shutdown complete"/);
  assert.doesNotMatch(apiB.proc.output, /error while closing/);
});
