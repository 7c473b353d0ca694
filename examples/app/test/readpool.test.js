// The read pool: pure logic first, then the API on a real PostgreSQL
// streaming replica behind PgBouncer (replay paused, replica stopped).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseLsn, replicaLagMs, isReplicaFault, ReadPool } from '../src/readpool.js';
import { startStack, waitUntil, sleep } from '../test-support/stack.js';
import { startApi, runMigrate, waitReady, http as req } from '../test-support/app.js';
import { scrape, value } from '../test-support/metrics.js';

describe('read pool logic', () => {
  test('parseLsn reads both halves of a pg_lsn', () => {
    assert.equal(parseLsn('0/0'), 0n);
    assert.equal(parseLsn('16/B374D848'), (0x16n << 32n) | 0xB374D848n);
    assert.ok(parseLsn('1/0') > parseLsn('0/FFFFFFFF'));
    assert.throws(() => parseLsn('16-B374D848'), /not a pg_lsn/);
    assert.throws(() => parseLsn(null), /not a pg_lsn/);
  });

  test('lag is the age of the oldest primary position the replica has not replayed', () => {
    const samples = [{ t: 1000, lsn: 10n }, { t: 1500, lsn: 20n }, { t: 2000, lsn: 30n }];
    assert.equal(replicaLagMs(samples, 30n, 2100), 0); // caught up
    assert.equal(replicaLagMs(samples, 35n, 2100), 0); // ahead of the last sample
    assert.equal(replicaLagMs(samples, 20n, 2100), 100); // misses what the primary had at 2000
    assert.equal(replicaLagMs(samples, 15n, 2100), 600);
    assert.equal(replicaLagMs(samples, 5n, 2100), 1100);
    assert.equal(replicaLagMs([], 5n, 2100), 0); // nothing known of the primary
  });

  test('query faults stay with the query, anything else falls back to the primary', () => {
    assert.equal(isReplicaFault({ code: '42P01' }), false); // undefined table
    assert.equal(isReplicaFault({ code: '22P02' }), false); // bad input
    assert.equal(isReplicaFault({ code: '23505' }), false);
    assert.equal(isReplicaFault({ code: 'ECONNREFUSED' }), true);
    assert.equal(isReplicaFault({ code: '57P01' }), true); // admin shutdown
    assert.equal(isReplicaFault({ code: '40001' }), true); // recovery conflict
    assert.equal(isReplicaFault({ code: '08P01' }), true); // PgBouncer: server login failing
    assert.equal(isReplicaFault(new Error('Connection terminated unexpectedly')), true);
  });

  test('reads rotate over healthy replicas, skip the others, and fall back to the primary', async () => {
    const served = [];
    const fakePool = (name, fail = null) => ({
      query: async () => {
        if (fail) throw fail;
        served.push(name);
        return { rows: [] };
      },
      end: async () => {},
    });
    const pool = new ReadPool({
      replicas: [{ name: 'a', pool: fakePool('a') }, { name: 'b', pool: fakePool('b') }, { name: 'c', pool: fakePool('c') }],
      primary: fakePool('primary'),
    });
    await pool.query('SELECT 1'); // nothing checked yet: primary
    for (const r of pool.replicas) r.healthy = true;
    pool.replicas[1].healthy = false;
    for (let i = 0; i < 4; i += 1) await pool.query('SELECT 1');
    assert.deepEqual(served, ['primary', 'a', 'c', 'a', 'c']);
    assert.equal(pool.status().ok, false);
    assert.match(pool.status().summary, /^degraded: 2 of 3 replicas healthy$/);

    served.length = 0;
    pool.replicas[0].pool = fakePool('a', Object.assign(new Error('gone'), { code: 'ECONNREFUSED' }));
    pool.next = 0;
    await pool.query('SELECT 1');
    assert.deepEqual(served, ['primary'], 'a failed replica read is repeated on the primary');
    assert.equal(pool.replicas[0].healthy, false, 'and the replica leaves the pool');
    pool.replicas[2].pool = fakePool('c', Object.assign(new Error('syntax'), { code: '42601' }));
    await assert.rejects(pool.query('SELEC 1'), /syntax/);
    assert.deepEqual(served, ['primary'], 'a query fault is not repeated');
  });

  test('an entry that leads (not in recovery) is skipped without degrading the pool', async () => {
    const member = (recovery) => ({ query: async () => ({ rows: [{ recovery, lsn: '0/10' }] }), end: async () => {} });
    const pool = new ReadPool({
      replicas: [{ name: 'pg1', pool: member(false) }, { name: 'pg2', pool: member(true) }, { name: 'pg3', pool: member(true) }],
      primary: member(false),
    });
    await pool.check();
    assert.deepEqual(pool.replicas.map((r) => r.healthy), [false, true, true]);
    assert.deepEqual(pool.status(), {
      ok: true,
      summary: 'ok',
      replicas: { pg1: 'primary (not read from)', pg2: 'ok', pg3: 'ok' },
    });
    pool.replicas[2].pool = { query: async () => { throw Object.assign(new Error('gone'), { code: 'ECONNREFUSED' }); } };
    await pool.check();
    assert.equal(pool.status().summary, 'degraded: 1 of 2 replicas healthy');
  });
});

describe('read pool on a real streaming replica', () => {
  let stack;
  let api;

  before(async () => {
    stack = await startStack({ pgReplica: true });
    const m = await runMigrate(stack);
    assert.equal(m.code, 0, m.output);
    api = await startApi(stack, { READ_CHECK_INTERVAL_MS: '100', READ_MAX_LAG_MS: '1000' });
    await waitReady(api.url);
  });

  after(async () => {
    if (api) await api.proc.stop('SIGTERM');
    if (stack) await stack.stop();
  });

  const readyReplica = async () => (await req(`${api.url}/ready`)).json.replicas.recete_ro_replica;
  const reads = async (target) => value(await scrape(`${api.url}/metrics`), 'recete_db_reads_total', { target }) ?? 0;

  test('reads go to the replica while it keeps up', async () => {
    await waitUntil(async () => (await readyReplica()) === 'ok', { what: 'the replica to join the read pool' });
    const created = await req(`${api.url}/items`, { method: 'POST', body: { name: 'replicated' } });
    assert.equal(created.status, 201);
    const before = await reads('recete_ro_replica');
    // The replica may show the row a moment after the write.
    await waitUntil(async () => (await req(`${api.url}/items/${created.json.id}`)).status === 200, { what: 'the row on the replica' });
    assert.ok((await reads('recete_ro_replica')) > before, 'reads were served by the replica');
    const ready = await req(`${api.url}/ready`);
    assert.equal(ready.json.checks.read_pool, 'ok');
  });

  test('a replica more than READ_MAX_LAG_MS behind leaves the pool, reads stay fresh on the primary, /ready stays 200', async () => {
    await stack.replicaQuery('SELECT pg_wal_replay_pause()');
    try {
      let last;
      const left = await waitUntil(async () => {
        last = await req(`${api.url}/items`, { method: 'POST', body: { name: 'while-paused' } });
        assert.equal(last.status, 201);
        const r = await req(`${api.url}/ready`);
        return /^lag \d+\.\d s$/.test(r.json.replicas.recete_ro_replica) ? r : null;
      }, { what: 'the paused replica to leave the pool', timeoutMs: 10000, intervalMs: 100 });
      assert.equal(left.status, 200);
      assert.equal(left.json.checks.read_pool, 'degraded: 0 of 1 replicas healthy; reads go to the primary');
      // A row written just now is read back at once: not from the paused replica.
      const onPrimary = await reads('primary');
      for (let i = 0; i < 5; i += 1) {
        const item = await req(`${api.url}/items`, { method: 'POST', body: { name: `fresh-${i}` } });
        assert.equal((await req(`${api.url}/items/${item.json.id}`)).status, 200, 'a stale read');
      }
      assert.ok((await reads('primary')) >= onPrimary + 5);
    } finally {
      await stack.replicaQuery('SELECT pg_wal_replay_resume()');
    }
    await waitUntil(async () => (await readyReplica()) === 'ok', { what: 'the replica to rejoin after catching up' });
  });

  test('a replica stopped under reads: no read fails, /ready stays 200, it rejoins when back', async () => {
    const item = await req(`${api.url}/items`, { method: 'POST', body: { name: 'survivor' } });
    await waitUntil(async () => (await req(`${api.url}/items/${item.json.id}`)).status === 200, { what: 'the row on the replica' });
    let failed = 0;
    let done = 0;
    let stop = false;
    // Four readers that do not resend: every non-200 counts.
    const readers = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const r = await req(`${api.url}/items/${item.json.id}`).catch((err) => ({ status: err.message }));
        done += 1;
        if (r.status !== 200) failed += 1;
      }
    });
    await sleep(300);
    await stack.stopPgReplica();
    const down = await waitUntil(async () => {
      const r = await req(`${api.url}/ready`);
      return r.json.replicas.recete_ro_replica.startsWith('down') ? r : null;
    }, { what: '/ready to report the replica down', intervalMs: 100 });
    assert.equal(down.status, 200);
    // Once the pool has left it out, and the reads sent to the stopped replica
    // before that have ended (each waits at most READ_TIMEOUT_MS, 2 s, then
    // goes to the primary), reads flow on the primary at full speed.
    await sleep(2500);
    const doneBefore = done;
    await sleep(1000);
    stop = true;
    await Promise.all(readers);
    assert.ok(done - doneBefore > 20, `only ${done - doneBefore} reads in a second on the primary`);
    assert.equal(failed, 0, `${failed} of ${done} reads failed while the replica stopped`);
    await stack.startPgReplica();
    await waitUntil(async () => (await readyReplica()) === 'ok', { what: 'the restarted replica to rejoin', timeoutMs: 20000 });
  });
});
