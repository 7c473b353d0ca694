// The worker's batched result writes (src/results.js) against real
// PostgreSQL through PgBouncer: results of jobs finishing together share one
// INSERT, each write resolves only once its row is committed, and one bad row
// does not fail the others.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack } from '../test-support/stack.js';
import { runMigrate } from '../test-support/app.js';
import { createPool } from '../src/db.js';
import { ResultWriter } from '../src/results.js';

let stack;
let pool;
let statements = 0;
// A write that never settles would hang the suite: fail instead.
const T = { timeout: 20000 };

before(async () => {
  stack = await startStack();
  const m = await runMigrate(stack);
  assert.equal(m.code, 0, m.output);
  pool = createPool(stack.env.DATABASE_URL, { max: 4 });
  // Count the statements the writer sends (the real pool still runs them).
  const query = pool.query.bind(pool);
  pool.query = (...args) => {
    statements += 1;
    return query(...args);
  };
});

after(async () => {
  if (pool) await pool.end();
  if (stack) await stack.stop();
});

const rows = async (prefix) =>
  (await stack.appDbQuery('SELECT job_id, result, worker FROM job_results WHERE job_id LIKE $1 ORDER BY job_id', [`${prefix}%`])).rows;

test('results written in the same turn go out as one INSERT, committed when write() resolves', T, async () => {
  const writer = new ResultWriter(pool, { worker: 'w-batch' });
  statements = 0;
  const results = [1, 2.5, { a: 'x"y\\z', n: [1, 2] }, 'text', null, [], { nested: { deep: true } }];
  await Promise.all(results.map((r, i) => writer.write(`batch-${i}`, r)));
  assert.equal(statements, 1, 'one statement for the whole batch');
  const got = await rows('batch-');
  assert.deepEqual(got.map((r) => r.result), results);
  for (const r of got) assert.equal(r.worker, 'w-batch');
});

test('a batch bigger than maxBatch is split; writes beyond maxInFlight wait their turn', T, async () => {
  const writer = new ResultWriter(pool, { worker: 'w-split', maxBatch: 10, maxInFlight: 1 });
  statements = 0;
  await Promise.all(Array.from({ length: 35 }, (_, i) => writer.write(`split-${String(i).padStart(2, '0')}`, i)));
  assert.equal(statements, 4);
  assert.equal((await rows('split-')).length, 35);
});

test('a rewrite of the same job overwrites its result (retries, stalled jobs)', T, async () => {
  const writer = new ResultWriter(pool, { worker: 'w-1' });
  await writer.write('again-1', 'first');
  // Twice in one batch: ON CONFLICT cannot change a row twice in one
  // statement, so the writer falls back to one statement per row.
  await Promise.all([writer.write('again-1', 'second'), writer.write('again-1', 'second')]);
  const [row] = await rows('again-');
  assert.equal(row.result, 'second');
});

test('one result Postgres refuses fails alone; its batch neighbours are committed', T, async () => {
  const writer = new ResultWriter(pool, { worker: 'w-bad' });
  // jsonb rejects \u0000, which JSON.stringify happily produces.
  const writes = ['ok-a', 'bad', 'ok-b', 'ok-c'].map((id) =>
    writer.write(`mixed-${id}`, id === 'bad' ? { s: 'nul\u0000' } : id).then(
      () => 'ok',
      (err) => err.message,
    ),
  );
  const outcome = await Promise.all(writes);
  assert.deepEqual(outcome.filter((o) => o === 'ok').length, 3);
  assert.match(outcome[1], /\\u0000|Unicode/i);
  assert.deepEqual((await rows('mixed-')).map((r) => r.job_id), ['mixed-ok-a', 'mixed-ok-b', 'mixed-ok-c']);
});

test('write() rejects when Postgres cannot be reached (BullMQ then retries the job)', T, async () => {
  const dead = createPool('postgres://app:x@127.0.0.1:1/recete', { max: 1 });
  try {
    const writer = new ResultWriter(dead, { worker: 'w-dead' });
    await assert.rejects(Promise.all([writer.write('dead-1', 1), writer.write('dead-2', 2)]), /ECONNREFUSED/);
  } finally {
    await dead.end();
  }
});
