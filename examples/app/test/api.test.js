// The API against real PostgreSQL (through PgBouncer, transaction mode) and
// real Redis (through Sentinel).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startStack, waitUntil, sleep } from '../test-support/stack.js';
import { startApi, runMigrate, waitReady, http as req } from '../test-support/app.js';
import { migrate } from '../src/migrate.js';
import { createPool } from '../src/db.js';
import { readVersion } from '../src/config.js';

let stack;
let api;
const VERSION = readVersion();

before(async () => {
  stack = await startStack();
  const m = await runMigrate(stack);
  assert.equal(m.code, 0, m.output);
  api = await startApi(stack);
});

after(async () => {
  if (api) await api.proc.stop('SIGTERM');
  if (stack) await stack.stop();
});

test('migrate is idempotent and safe to run concurrently', async () => {
  const pools = [1, 2, 3].map(() => createPool(stack.env.DATABASE_URL, { max: 1 }));
  try {
    await Promise.all(pools.map((p) => migrate(p)));
  } finally {
    await Promise.all(pools.map((p) => p.end()));
  }
  const { rows } = await stack.appDbQuery(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
  );
  assert.deepEqual(rows.map((r) => r.table_name), ['items', 'job_results']);
  // The version the item cache compares: rows of releases that do not set it start at 1.
  const { rows: cols } = await stack.appDbQuery(
    "SELECT data_type, is_nullable, column_default FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'version'",
  );
  assert.deepEqual(cols, [{ data_type: 'bigint', is_nullable: 'NO', column_default: '1' }]);
});

test('GET /health reports version and instance', async () => {
  const res = await req(`${api.url}/health`);
  assert.equal(res.status, 200);
  assert.deepEqual(res.json, { status: 'ok', version: VERSION, instance: api.instance });
  assert.equal(res.headers.get('x-instance'), api.instance);
});

test('GET /ready is 200 when everything is up', async () => {
  const res = await waitReady(api.url);
  assert.deepEqual(res.json, {
    status: 'ready',
    version: VERSION,
    instance: api.instance,
    checks: { postgres: 'ok', redis: 'ok', read_pool: 'ok' },
    replicas: {},
  });
});

test('POST /items then GET /items/:id round trip', async () => {
  const created = await req(`${api.url}/items`, { method: 'POST', body: { name: 'widget', payload: { colour: 'red', n: 3 } } });
  assert.equal(created.status, 201, created.text);
  assert.equal(created.json.name, 'widget');
  assert.deepEqual(created.json.payload, { colour: 'red', n: 3 });
  assert.equal(created.json.created_by, api.instance);
  assert.match(String(created.json.id), /^\d+$/);
  assert.equal(created.headers.get('x-instance'), api.instance);

  const got = await req(`${api.url}/items/${created.json.id}`);
  assert.equal(got.status, 200, got.text);
  assert.equal(got.json.id, created.json.id);
  assert.equal(got.json.name, 'widget');
  assert.deepEqual(got.json.payload, { colour: 'red', n: 3 });
  assert.equal(got.json.created_by, api.instance);
  assert.ok(!Number.isNaN(Date.parse(got.json.created_at)));
  // Never updated: version 1 (a bigint, a string like id), no updated_at.
  assert.equal(got.json.version, '1');
  assert.equal(got.json.updated_at, null);
  // No cache configured: no X-Cache header, and no cache metrics.
  assert.equal(got.headers.get('x-cache'), null);
  assert.doesNotMatch((await req(`${api.url}/metrics`)).text, /recete_cache_/);

  const noPayload = await req(`${api.url}/items`, { method: 'POST', body: { name: 'x'.repeat(200) } });
  assert.equal(noPayload.status, 201, noPayload.text);
  assert.equal(noPayload.json.payload, null);
});

test('PUT /items/:id replaces name and payload, bumps version, sets updated_at; 404 unknown, 400 bad input', async () => {
  const created = await req(`${api.url}/items`, { method: 'POST', body: { name: 'before', payload: { a: 1 } } });
  const { id } = created.json;
  const first = await req(`${api.url}/items/${id}`, { method: 'PUT', body: { name: 'after', payload: { b: 2 } } });
  assert.equal(first.status, 200, first.text);
  assert.deepEqual([first.json.id, first.json.name, first.json.payload, first.json.version], [id, 'after', { b: 2 }, '2']);
  assert.equal(first.json.created_by, api.instance);
  assert.ok(Date.parse(first.json.updated_at) >= Date.parse(first.json.created_at));
  const second = await req(`${api.url}/items/${id}`, { method: 'PUT', body: { name: 'again' } });
  assert.deepEqual([second.json.version, second.json.payload], ['3', null]);
  // GET answers the same JSON as the PUT that wrote it.
  const got = await req(`${api.url}/items/${id}`);
  assert.deepEqual(got.json, second.json);
  assert.equal((await req(`${api.url}/items/999999999`, { method: 'PUT', body: { name: 'x' } })).status, 404);
  assert.equal((await req(`${api.url}/items/abc`, { method: 'PUT', body: { name: 'x' } })).status, 400);
  for (const body of [{}, { name: '' }, { name: 'ok', payload: 'text' }, 'not json {']) {
    const res = await req(`${api.url}/items/${id}`, { method: 'PUT', body });
    assert.equal(res.status, 400, `${JSON.stringify(body)} -> ${res.status} ${res.text}`);
  }
  assert.equal((await req(`${api.url}/items/${id}`)).json.version, '3');
});

test('POST /items validation errors give 400 with a message', async () => {
  const bad = [
    {},
    { name: '' },
    { name: 'x'.repeat(201) },
    { name: 42 },
    { name: 'ok', payload: [1, 2] },
    { name: 'ok', payload: 'text' },
    [],
    'not json {',
  ];
  for (const body of bad) {
    const res = await req(`${api.url}/items`, { method: 'POST', body });
    assert.equal(res.status, 400, `${JSON.stringify(body)} -> ${res.status} ${res.text}`);
    assert.equal(typeof res.json.error, 'string');
    assert.ok(res.json.error.length > 0);
    assert.equal(res.headers.get('x-instance'), api.instance);
  }
});

test('GET /score/:customer is deterministic, costs CPU with events, and refuses bad input', async () => {
  const a = await req(`${api.url}/score/42?events=20000`);
  assert.equal(a.status, 200, a.text);
  assert.equal(a.json.customer, 42);
  assert.equal(a.json.events, 20000);
  assert.ok(a.json.score > 0 && a.json.score < 1, a.text);
  const again = await req(`${api.url}/score/42?events=20000`);
  assert.equal(again.json.score, a.json.score);
  const other = await req(`${api.url}/score/43?events=20000`);
  assert.notEqual(other.json.score, a.json.score);
  assert.equal((await req(`${api.url}/score/42?events=-1`)).status, 400);
  assert.equal((await req(`${api.url}/score/42?events=3000000`)).status, 400);
  assert.equal((await req(`${api.url}/score/x`)).status, 400);
  // CPU in proportion to the history: 100x the events takes clearly longer.
  // The fastest of three of each, so that a busy machine's pause in one
  // request does not decide.
  const fastest = async (events) => {
    let best = Infinity;
    for (let i = 0; i < 3; i += 1) {
      const t0 = process.hrtime.bigint();
      await req(`${api.url}/score/42?events=${events}`);
      best = Math.min(best, Number(process.hrtime.bigint() - t0));
    }
    return best;
  };
  const small = await fastest(1000);
  const large = await fastest(1000000);
  assert.ok(large > small * 3, `1,000,000 events took ${large} ns, 1,000 took ${small} ns`);
});

test('GET /items/:id: unknown id is 404, non-numeric id is 400', async () => {
  assert.equal((await req(`${api.url}/items/999999999`)).status, 404);
  assert.equal((await req(`${api.url}/items/abc`)).status, 400);
  assert.equal((await req(`${api.url}/items/1.5`)).status, 400);
  assert.equal((await req(`${api.url}/nope`)).status, 404);
});

test('/ready is 503 naming redis when Redis is stopped, and recovers', async () => {
  await stack.stopRedis();
  try {
    const down = await waitUntil(async () => {
      const r = await req(`${api.url}/ready`);
      return r.status === 503 ? r : null;
    }, { what: '/ready to turn 503', timeoutMs: 10000 });
    assert.equal(down.json.status, 'not_ready');
    assert.notEqual(down.json.checks.redis, 'ok');
    assert.match(down.json.checks.redis, /redis/);
    assert.equal(down.json.checks.postgres, 'ok');
    // Liveness does not depend on Redis.
    assert.equal((await req(`${api.url}/health`)).status, 200);
  } finally {
    await stack.startRedis();
  }
  const up = await waitUntil(async () => {
    const r = await req(`${api.url}/ready`);
    return r.status === 200 ? r : null;
  }, { what: '/ready to recover after Redis restart', timeoutMs: 15000 });
  assert.equal(up.json.checks.redis, 'ok');
});

test('/ready is 503 naming postgres when PgBouncer is stopped, and recovers', async () => {
  await stack.stopPgbouncer();
  try {
    const down = await waitUntil(async () => {
      const r = await req(`${api.url}/ready`);
      return r.status === 503 ? r : null;
    }, { what: '/ready to turn 503', timeoutMs: 10000 });
    assert.match(down.json.checks.postgres, /postgres/);
    assert.notEqual(down.json.checks.postgres, 'ok');
    assert.equal(down.json.checks.redis, 'ok');
  } finally {
    await stack.startPgbouncer();
  }
  await waitUntil(async () => (await req(`${api.url}/ready`)).status === 200, {
    what: '/ready to recover after PgBouncer restart',
    timeoutMs: 15000,
  });
  // And the pools work again for real requests.
  const created = await req(`${api.url}/items`, { method: 'POST', body: { name: 'after-restart' } });
  assert.equal(created.status, 201, created.text);
});

/** Parse consecutive HTTP/1.1 responses (with content-length) from raw bytes. */
function parseResponses(raw) {
  const out = [];
  let rest = raw;
  while (rest.length) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const head = rest.slice(0, end);
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)[1]);
    const len = Number(/content-length: (\d+)/i.exec(head)[1]);
    out.push({ status, head, body: JSON.parse(rest.slice(end + 4, end + 4 + len)) });
    rest = rest.slice(end + 4 + len);
  }
  return out;
}

// Holding requests in flight without test hooks in the app: a superuser
// transaction locks the items table, so a GET /items/:id blocks in Postgres
// (visible in pg_stat_activity, so the test knows it is in flight). With
// PG_POOL_SIZE=1 that request also holds the only read-only pool client, so a
// GET /ready pipelined on the same connection waits for it too. SIGTERM goes
// out while both are in flight; then the lock is released.
test('graceful shutdown: in-flight requests complete, /ready says shutting_down, new connections refused, exit 0', async () => {
  const created = await req(`${api.url}/items`, { method: 'POST', body: { name: 'drain' } });
  assert.equal(created.status, 201);
  const app2 = await startApi(stack, { PG_POOL_SIZE: '1', READY_CHECK_TIMEOUT_MS: '20000' }, { name: 'api-drain' });
  const agent = new http.Agent({ keepAlive: true });
  const locker = await stack.lockTable('items');
  let sock;
  try {
    // A keep-alive connection that stays idle must not hold the shutdown up.
    const idle = await new Promise((resolve, reject) => {
      http.get(`${app2.url}/health`, { agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode));
      }).on('error', reject);
    });
    assert.equal(idle, 200);

    sock = net.connect(app2.port, '127.0.0.1');
    let raw = '';
    sock.on('data', (d) => (raw += d));
    const closed = new Promise((resolve) => sock.on('close', resolve));
    sock.on('error', () => {});
    sock.write(
      `GET /items/${created.json.id} HTTP/1.1\r\nHost: t\r\n\r\nGET /ready HTTP/1.1\r\nHost: t\r\n\r\n`,
    );
    await waitUntil(async () => {
      const r = await stack.appDbQuery(
        "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FROM items WHERE id%'",
      );
      return r.rowCount === 1;
    }, { what: 'the GET /items request to block on the lock' });

    app2.proc.signalProc('SIGTERM');
    // Logged right after server.close() returned.
    await app2.proc.waitForOutput(/"msg":"listener closed/, 5000);

    // The listening socket is closed: a new connection is refused.
    const refused = await new Promise((resolve) => {
      const s = net.connect(app2.port, '127.0.0.1');
      s.on('connect', () => {
        s.destroy();
        resolve(false);
      });
      s.on('error', (err) => resolve(err.code === 'ECONNREFUSED'));
    });
    assert.ok(refused, 'a new connection must be refused during shutdown');
    await sleep(300);
    assert.ok(app2.proc.running, 'the process must wait for its in-flight requests');

    await locker.release();
    await closed; // the server closes the connection once it is idle
    const [item, ready] = parseResponses(raw);
    assert.equal(item.status, 200, raw);
    assert.equal(item.body.name, 'drain');
    assert.equal(ready.status, 503, raw);
    assert.equal(ready.body.status, 'shutting_down');

    const { code } = await app2.proc.waitForExit(5000);
    assert.equal(code, 0, app2.proc.tail());
    assert.match(app2.proc.output, /"msg":"shutdown complete"/);
  } finally {
    await locker.release();
    sock?.destroy();
    agent.destroy();
    await app2.proc.stop('SIGKILL');
  }
});
