// Several PgBouncer hosts: the pure choice logic, then the API on two real
// PgBouncers in front of one PostgreSQL, each stopped in turn under load.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseHosts, preferenceOrder, PoolerChoice } from '../src/poolers.js';
import { startStack, waitUntil, sleep } from '../test-support/stack.js';
import { startApi, runMigrate, waitReady, http as req } from '../test-support/app.js';

describe('pooler choice', () => {
  test('parseHosts reads host:port lists, IPv6 in brackets', () => {
    assert.deepEqual(parseHosts('10.0.0.5:6432 10.0.0.6:6432'), [{ host: '10.0.0.5', port: 6432 }, { host: '10.0.0.6', port: 6432 }]);
    assert.deepEqual(parseHosts('[fd00::5]:6432,pgb2:6433'), [{ host: 'fd00::5', port: 6432 }, { host: 'pgb2', port: 6433 }]);
    assert.deepEqual(parseHosts(undefined), []);
    assert.throws(() => parseHosts('10.0.0.5'), /bad host:port "10.0.0.5"/);
    assert.throws(() => parseHosts('h:70000'), /bad host:port/);
  });

  test('each process starts from its own pooler, and every process has them all', () => {
    const hosts = ['a', 'b', 'c'];
    const firsts = new Set();
    for (let i = 0; i < 30; i += 1) {
      const order = preferenceOrder(hosts, `api${i % 10}:${3000 + i}`);
      assert.deepEqual([...order].sort(), hosts);
      firsts.add(order[0]);
    }
    assert.equal(firsts.size, 3, 'instances spread over every pooler');
    assert.deepEqual(preferenceOrder(hosts, 'x'), preferenceOrder(hosts, 'x'), 'stable for one instance');
  });

  test('a failed pooler is skipped for a while, then tried again', () => {
    let t = 0;
    const choice = new PoolerChoice([{ host: 'a', port: 1 }, { host: 'b', port: 1 }], { now: () => t, downMs: 5000 });
    const a = choice.pick();
    assert.equal(a.host, 'a');
    choice.failed(a);
    assert.equal(choice.pick().host, 'b');
    t = 4999;
    assert.equal(choice.pick().host, 'b');
    t = 5000;
    assert.equal(choice.pick().host, 'a', 'retried after downMs');
    choice.failed(choice.hosts[0]);
    t = 6000;
    choice.failed(choice.hosts[1]);
    assert.equal(choice.pick().host, 'a', 'all down: the one that failed longest ago');
    choice.worked(choice.hosts[1]);
    assert.equal(choice.pick().host, 'b');
  });
});

describe('two PgBouncers, each stopped under load', () => {
  let stack;
  let api;

  before(async () => {
    stack = await startStack({ secondPooler: true });
    const m = await runMigrate(stack);
    assert.equal(m.code, 0, m.output);
    api = await startApi(stack, { PG_POOL_SIZE: '4' });
    await waitReady(api.url);
  });

  after(async () => {
    if (api) await api.proc.stop('SIGTERM');
    if (stack) await stack.stop();
  });

  for (const which of ['pgbouncer', 'pgbouncer2']) {
    test(`${which} stopped under writes and reads: no read fails, at most the writes in flight do, /ready stays 200`, async () => {
      let stop = false;
      const results = [];
      const writes = [];
      // Clients that do not resend: every failure counts.
      const clientsCount = 4;
      const clients = Array.from({ length: clientsCount }, async (_, i) => {
        while (!stop) {
          const created = await req(`${api.url}/items`, { method: 'POST', body: { name: `load-${i}` } }).catch((err) => ({ status: err.message }));
          writes.push(created.status);
          if (created.status === 201) {
            const read = await req(`${api.url}/items/${created.json.id}`).catch((err) => ({ status: err.message }));
            results.push(read.status);
          }
        }
      });
      await sleep(500);
      // SIGINT: PgBouncer's safe shutdown (what systemctl stop sends), which
      // lets running transactions finish and closes idle connections.
      await stack[which].stop('SIGINT', 10000);
      const readyWhileDown = await req(`${api.url}/ready`);
      await sleep(1500);
      stop = true;
      await Promise.all(clients);
      if (which === 'pgbouncer') await stack.startPgbouncer();
      else await stack.startPgbouncer2();
      const failed = results.filter((s) => s !== 200);
      const failedWrites = writes.filter((s) => s !== 201);
      console.log(`${which} stopped: ${failed.length} of ${results.length} reads and ${failedWrites.length} of ${writes.length} writes failed`);
      assert.equal(readyWhileDown.status, 200, JSON.stringify(readyWhileDown.json));
      assert.ok(results.length > 50, `only ${results.length} reads`);
      assert.equal(failed.length, 0, `${failed.length} of ${results.length} reads failed: ${[...new Set(failed)]}`);
      // A write whose connection the stopping pooler closed may or may not
      // have committed, so it is not repeated: at most one per client.
      assert.ok(failedWrites.length <= clientsCount, `${failedWrites.length} of ${writes.length} writes failed`);
    });
  }

  test('with every pooler stopped /ready is 503, and recovers', async () => {
    await Promise.all([stack.pgbouncer.stop('SIGINT', 10000), stack.pgbouncer2.stop('SIGINT', 10000)]);
    try {
      const down = await waitUntil(async () => {
        const r = await req(`${api.url}/ready`);
        return r.status === 503 ? r : null;
      }, { what: '/ready to turn 503' });
      assert.notEqual(down.json.checks.postgres, 'ok');
    } finally {
      await stack.startPgbouncer();
      await stack.startPgbouncer2();
    }
    await waitReady(api.url, 15000);
  });
});
