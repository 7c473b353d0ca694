// Jobs end to end: API enqueues (BullMQ via Sentinel), a real worker process
// computes and stores the result in Postgres (through PgBouncer).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, waitUntil } from '../test-support/stack.js';
import { startApi, startWorker, runMigrate, http as req } from '../test-support/app.js';

let stack;
let api;
let worker;

before(async () => {
  stack = await startStack({ replica: true });
  const m = await runMigrate(stack);
  assert.equal(m.code, 0, m.output);
  [api, worker] = await Promise.all([startApi(stack), startWorker(stack)]);
});

after(async () => {
  if (worker) await worker.proc.stop('SIGTERM');
  if (api) await api.proc.stop('SIGTERM');
  if (stack) await stack.stop();
});

async function enqueue(body) {
  const res = await req(`${api.url}/jobs`, { method: 'POST', body });
  assert.equal(res.status, 202, res.text);
  assert.ok(res.json.id, res.text);
  return res.json.id;
}

async function waitForState(id, wanted, timeoutMs = 10000) {
  return waitUntil(async () => {
    const r = await req(`${api.url}/jobs/${id}`);
    return r.status === 200 && r.json.state === wanted ? r.json : null;
  }, { what: `job ${id} to be ${wanted}`, timeoutMs, intervalMs: 25 });
}

test('an echo job is processed by the worker; result via API and in job_results', async () => {
  const id = await enqueue({ type: 'echo', data: { hello: 'world', n: [1, 2] } });
  const job = await waitForState(id, 'completed');
  assert.deepEqual(job.result, { hello: 'world', n: [1, 2] });
  assert.equal(job.worker, worker.instance);

  const { rows } = await stack.appDbQuery('SELECT result, worker FROM job_results WHERE job_id = $1', [id]);
  assert.equal(rows.length, 1);
  assert.deepEqual(rows[0].result, { hello: 'world', n: [1, 2] });
  assert.equal(rows[0].worker, worker.instance);
});

test('a sum job computes the sum of data.values', async () => {
  const id = await enqueue({ type: 'sum', data: { values: [1, 2, 3.5, -4] } });
  const job = await waitForState(id, 'completed');
  assert.equal(job.result, 2.5);
  const { rows } = await stack.appDbQuery('SELECT result FROM job_results WHERE job_id = $1', [id]);
  assert.equal(rows[0].result, 2.5);
});

test('a job without type defaults to echo of {}', async () => {
  const id = await enqueue({});
  const job = await waitForState(id, 'completed');
  assert.deepEqual(job.result, {});
});

test('POST /jobs validation and GET /jobs/:id for an unknown id', async () => {
  const bad = [
    { type: 'nope' },
    { type: 'sum', data: { values: [1, 'two'] } },
    { type: 'sum' },
    { data: [1] },
    { sleep_ms: -1 },
    { sleep_ms: 60001 },
    { sleep_ms: 1.5 },
  ];
  for (const body of bad) {
    const res = await req(`${api.url}/jobs`, { method: 'POST', body });
    assert.equal(res.status, 400, `${JSON.stringify(body)} -> ${res.status} ${res.text}`);
    assert.equal(typeof res.json.error, 'string');
  }
  assert.equal((await req(`${api.url}/jobs/987654321`)).status, 404);
  assert.equal((await req(`${api.url}/jobs/bad%20id`)).status, 404);
});

// The bug class: after a Sentinel failover a worker stays attached to the
// old master and silently stops consuming. Here the master hangs (as on a
// network partition), Sentinel promotes the replica, and the running worker
// and API must follow without a restart. (Without ioredis' failoverDetector
// this test fails: the worker never picks up the job.)
test('worker and API keep working after the master hangs and Sentinel fails over', async () => {
  let newMaster;
  try {
    newMaster = await stack.hangMasterUntilFailover();
    assert.equal(newMaster, stack.replicaPort);
    // The API's queue reconnects too; until it has, POST /jobs answers 503.
    const id = await waitUntil(async () => {
      const r = await req(`${api.url}/jobs`, { method: 'POST', body: { type: 'sum', data: { values: [40, 2] } } });
      return r.status === 202 ? r.json.id : null;
    }, { what: 'the API to enqueue after failover', timeoutMs: 15000, intervalMs: 200 });
    const job = await waitForState(id, 'completed', 15000);
    assert.equal(job.result, 42);
    assert.equal(job.worker, worker.instance);
    assert.ok(worker.proc.running);
  } finally {
    stack.resumeOldMaster();
  }
  assert.equal((await req(`${api.url}/ready`)).status, 200);
});

test('SIGTERM while a job is active: the job completes, then the worker exits 0', async () => {
  const id = await enqueue({ type: 'echo', data: { drain: true }, sleep_ms: 1500 });
  await waitForState(id, 'active', 10000);
  const t0 = Date.now();
  worker.proc.signalProc('SIGTERM');
  const { code } = await worker.proc.waitForExit(10000);
  const took = Date.now() - t0;
  assert.equal(code, 0, worker.proc.tail());
  assert.ok(took > 500, `worker exited after ${took} ms, before the job could finish`);

  // The result was written before the process exited.
  const { rows } = await stack.appDbQuery('SELECT result, worker FROM job_results WHERE job_id = $1', [id]);
  assert.equal(rows.length, 1, 'job result must be in Postgres');
  assert.deepEqual(rows[0].result, { drain: true });
  assert.equal(rows[0].worker, worker.instance);
  const job = await req(`${api.url}/jobs/${id}`);
  assert.equal(job.json.state, 'completed');
  assert.match(worker.proc.output, /"msg":"shutdown complete"/);
});
