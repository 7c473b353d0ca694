// Prometheus metrics of the API (GET /metrics on its own listener) and of the
// worker (its METRICS_PORT listener), scraped and parsed as Prometheus would,
// against real servers. The names and labels are the contract with the
// collection's Prometheus rules.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, freePort, waitUntil, sleep } from '../test-support/stack.js';
import { startApi, startWorker, runMigrate, http as req } from '../test-support/app.js';
import { scrape, find, value } from '../test-support/metrics.js';
import { loadConfig } from '../src/config.js';
import { createQueue } from '../src/queue.js';

const QUEUE = 'metrics-test';
let stack;
let api;
let worker;
let workerMetrics;

before(async () => {
  stack = await startStack();
  const m = await runMigrate(stack);
  assert.equal(m.code, 0, m.output);
  const port = await freePort();
  // Concurrency 1, so that a second job waits while a slow one runs.
  [api, worker] = await Promise.all([
    startApi(stack, { QUEUE_NAME: QUEUE }),
    startWorker(stack, { QUEUE_NAME: QUEUE, WORKER_CONCURRENCY: '1', METRICS_PORT: String(port), METRICS_HOST: '127.0.0.1' }),
  ]);
  await worker.proc.waitForOutput(/"msg":"metrics listening"/, 5000);
  workerMetrics = `http://127.0.0.1:${port}/metrics`;
});

after(async () => {
  if (worker) await worker.proc.stop('SIGTERM');
  if (api) await api.proc.stop('SIGTERM');
  if (stack) await stack.stop();
});

const H = 'recete_http_request_duration_seconds';

test('API: request histogram labelled by route pattern, method and status', async () => {
  const ids = [];
  for (const name of ['a', 'b']) {
    const r = await req(`${api.url}/items`, { method: 'POST', body: { name } });
    assert.equal(r.status, 201, r.text);
    ids.push(r.json.id);
  }
  for (const id of ids) assert.equal((await req(`${api.url}/items/${id}`)).status, 200);
  assert.equal((await req(`${api.url}/items/987654321`)).status, 404);
  assert.equal((await req(`${api.url}/no/such/path`)).status, 404);
  assert.equal((await req(`${api.url}/items`, { method: 'POST', body: '{not json' })).status, 400);
  assert.equal((await req(`${api.url}/health`)).status, 200);

  const s = await scrape(`${api.url}/metrics`);
  // The CPU budget utilisation is measured against: one core without CPU_QUOTA_CORES.
  assert.equal(value(s, 'recete_cpu_quota_cores', {}), 1);
  // Two different ids, one series: the pattern, never the raw path.
  assert.equal(value(s, `${H}_count`, { method: 'GET', route: '/items/:id', status: '200' }), 2);
  assert.equal(value(s, `${H}_count`, { method: 'GET', route: '/items/:id', status: '404' }), 1);
  assert.equal(value(s, `${H}_count`, { method: 'POST', route: '/items', status: '201' }), 2);
  assert.equal(value(s, `${H}_count`, { method: 'POST', route: '/items', status: '400' }), 1);
  assert.equal(value(s, `${H}_count`, { method: 'GET', route: 'unmatched', status: '404' }), 1);
  assert.equal(value(s, `${H}_count`, { method: 'GET', route: '/health', status: '200' }), 1);
  const routes = new Set(find(s, `${H}_count`).map((x) => x.labels.route));
  for (const r of routes) assert.ok(!/\d|no\/such/.test(r), `raw path as route label: ${r}`);
  // Buckets as agreed, cumulative, +Inf equal to the count.
  const buckets = find(s, `${H}_bucket`, { route: '/items/:id', status: '200' });
  assert.deepEqual(buckets.map((b) => b.labels.le), ['0.005', '0.01', '0.025', '0.05', '0.1', '0.2', '0.3', '0.5', '1', '2.5', '5', '10', '+Inf']);
  assert.equal(buckets.at(-1).value, 2);
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value);

  // The scrape itself is the one request in flight while it is rendered.
  assert.equal(value(s, 'recete_http_requests_in_flight'), 1);
  // Queries timed per pool; with no replica configured the reads are served
  // by the primary, and counted as such.
  assert.ok(value(s, 'recete_db_query_duration_seconds_count', { pool: 'primary' }) >= 5);
  assert.ok(value(s, 'recete_db_reads_total', { target: 'primary' }) >= 3);
  // Default metrics, unprefixed.
  for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds']) {
    assert.ok(find(s, name).length === 1, `missing ${name}`);
  }

  // The previous scrape is counted under its own pattern.
  const again = await scrape(`${api.url}/metrics`);
  assert.equal(value(again, `${H}_count`, { method: 'GET', route: '/metrics', status: '200' }), 1);
});

test('API: METRICS=off serves no /metrics (404) and still answers', async () => {
  const off = await startApi(stack, { METRICS: 'off' }, { name: 'api-nometrics' });
  try {
    assert.equal((await req(`${off.url}/metrics`)).status, 404);
    assert.equal((await req(`${off.url}/health`)).status, 200);
  } finally {
    await off.proc.stop('SIGTERM');
  }
});

async function enqueue(body) {
  const r = await req(`${api.url}/jobs`, { method: 'POST', body });
  assert.equal(r.status, 202, r.text);
  return r.json.id;
}

const waitCompleted = (id) =>
  waitUntil(async () => (await req(`${api.url}/jobs/${id}`)).json?.state === 'completed', { what: `job ${id} completed` });

test('worker: completed counter and job histogram grow with processed jobs', async () => {
  const before0 = await scrape(workerMetrics);
  const c0 = value(before0, 'recete_jobs_completed_total', { queue: QUEUE });
  assert.equal(typeof c0, 'number', 'counter exported from the start');
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push(await enqueue({ type: 'sum', data: { values: [i, 1] } }));
  for (const id of ids) await waitCompleted(id);
  // The 'completed' event follows the API's view by a moment.
  const s = await waitUntil(async () => {
    const x = await scrape(workerMetrics);
    return value(x, 'recete_jobs_completed_total', { queue: QUEUE }) >= c0 + 3 ? x : null;
  }, { what: 'completed counter +3' });
  assert.equal(value(s, 'recete_jobs_completed_total', { queue: QUEUE }), c0 + 3);
  assert.ok(value(s, 'recete_job_duration_seconds_count', { queue: QUEUE, name: 'sum' }) >= 3);
  assert.ok(value(s, 'recete_db_query_duration_seconds_count', { pool: 'primary' }) >= 3);
  assert.equal(value(s, 'recete_worker_concurrency'), 1);
  assert.equal(value(s, 'recete_jobs_failed_total', { queue: QUEUE }), 0);
  assert.ok(find(s, 'process_cpu_seconds_total').length === 1);
});

test('worker: a failing job counts as failed', async () => {
  // Straight to the master: a Sentinel client's failover subscription would
  // outlive close() and log reconnect errors once the stack stops.
  const { DATABASE_URL, REDIS_USERNAME, REDIS_PASSWORD } = stack.env;
  const env = { DATABASE_URL, REDIS_USERNAME, REDIS_PASSWORD, REDIS_URL: `redis://127.0.0.1:${stack.redisPort}`, QUEUE_NAME: QUEUE };
  const queue = createQueue(loadConfig(env, { role: 'worker' }));
  try {
    // Not possible through the API's validation: an unknown type fails at once (no retry).
    await queue.add('bogus', { type: 'bogus' }, { attempts: 1 });
  } finally {
    await queue.close();
  }
  await waitUntil(async () => value(await scrape(workerMetrics), 'recete_jobs_failed_total', { queue: QUEUE }) === 1, {
    what: 'failed counter 1',
  });
  const s = await scrape(workerMetrics);
  assert.equal(value(s, 'recete_queue_jobs', { queue: QUEUE, state: 'failed' }), 1);
});

test('worker: queue depth and the oldest waiting age while a job waits', async () => {
  const slow = await enqueue({ type: 'echo', data: {}, sleep_ms: 2500 });
  await waitUntil(async () => (await req(`${api.url}/jobs/${slow}`)).json?.state === 'active', { what: 'slow job active' });
  // Concurrency 1: this one waits behind the slow job.
  const waiting = await enqueue({ type: 'sum', data: { values: [1] } });
  await sleep(300);
  const s = await scrape(workerMetrics);
  // The API reports the same queue, so latency stays measurable with no worker.
  const fromApi = await scrape(`${api.url}/metrics`);
  assert.equal(value(fromApi, 'recete_queue_jobs', { queue: QUEUE, state: 'waiting' }), 1);
  assert.ok(value(fromApi, 'recete_queue_oldest_waiting_age_seconds', { queue: QUEUE }) >= 0.25);
  assert.equal(value(s, 'recete_queue_jobs', { queue: QUEUE, state: 'waiting' }), 1);
  assert.equal(value(s, 'recete_queue_jobs', { queue: QUEUE, state: 'active' }), 1);
  assert.equal(value(s, 'recete_queue_jobs', { queue: QUEUE, state: 'delayed' }), 0);
  const age = value(s, 'recete_queue_oldest_waiting_age_seconds', { queue: QUEUE });
  assert.ok(age >= 0.25 && age < 10, `oldest waiting age ${age}`);
  assert.equal(value(s, 'recete_worker_active_jobs'), 1);

  await waitCompleted(waiting);
  const done = await scrape(workerMetrics);
  assert.equal(value(done, 'recete_queue_jobs', { queue: QUEUE, state: 'waiting' }), 0);
  assert.equal(value(done, 'recete_queue_oldest_waiting_age_seconds', { queue: QUEUE }), 0);
  assert.equal(value(done, 'recete_worker_active_jobs'), 0);
});

test('worker: the metrics listener answers 404 elsewhere, and 404 with METRICS=off', async () => {
  const other = await fetch(workerMetrics.replace('/metrics', '/'));
  assert.equal(other.status, 404);
  const port = await freePort();
  const off = await startWorker(stack, { QUEUE_NAME: 'metrics-off', METRICS: 'off', METRICS_PORT: String(port) }, { name: 'worker-nometrics' });
  try {
    await off.proc.waitForOutput(/"msg":"metrics listening"/, 5000);
    assert.equal((await fetch(`http://127.0.0.1:${port}/metrics`)).status, 404);
  } finally {
    await off.proc.stop('SIGTERM');
  }
});

test('worker: metrics stay up while draining, and the listener closes on shutdown', async () => {
  const id = await enqueue({ type: 'echo', data: {}, sleep_ms: 1500 });
  await waitUntil(async () => (await req(`${api.url}/jobs/${id}`)).json?.state === 'active', { what: 'job active' });
  worker.proc.signalProc('SIGTERM');
  await worker.proc.waitForOutput(/"msg":"shutdown started"/, 5000);
  const draining = await scrape(workerMetrics);
  assert.equal(value(draining, 'recete_worker_active_jobs'), 1);
  const { code } = await worker.proc.waitForExit(10000);
  assert.equal(code, 0, worker.proc.tail());
  await assert.rejects(fetch(workerMetrics), 'listener closed');
  await waitCompleted(id);
});
