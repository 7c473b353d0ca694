#!/usr/bin/env node
// Fill a queue with `sum` jobs for bench/worker_drain.py, through the app's
// own Queue (src/queue.js: same connection options and job defaults as the
// API's POST /jobs), with BullMQ addBulk in chunks.
//
//   JOBS=20000 QUEUE_NAME=... <REDIS_* as for the app> node scripts/fill-queue.mjs
//
// Empties the queue first (obliterate), prints {"added": N, "seconds": S}.
import { loadConfigOrExit } from '../src/config.js';
import { createQueue } from '../src/queue.js';

const config = loadConfigOrExit(process.env, { role: 'worker' });
const total = Number(process.env.JOBS || 20000);
const chunk = 1000;
const queue = createQueue(config);
await queue.waitUntilReady();
await queue.obliterate({ force: true });
const t0 = performance.now();
for (let i = 0; i < total; i += chunk) {
  const n = Math.min(chunk, total - i);
  await queue.addBulk(
    Array.from({ length: n }, (_, k) => ({ name: 'sum', data: { type: 'sum', data: { values: [i + k, 1, 2.5] } } })),
  );
}
const seconds = (performance.now() - t0) / 1000;
const counts = await queue.getJobCounts('waiting');
await queue.close();
process.stdout.write(`${JSON.stringify({ added: total, waiting: counts.waiting, seconds })}\n`);
// The Sentinel failover subscription can keep the event loop alive after close().
process.exit(0);
