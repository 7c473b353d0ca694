// BullMQ job stream for bench/failover.py: a producer and a worker that use
// the reference app's own Redis connection options (examples/app/src/redis.js:
// Sentinel, failoverDetector, maxRetriesPerRequest null, READONLY reconnect),
// so a failover hits them exactly as it hits the app's workers.
//
// Environment: REDIS_SENTINELS (host:port,...), REDIS_MASTER_NAME,
// REDIS_USERNAME, REDIS_PASSWORD, REDIS_SENTINEL_PASSWORD, QUEUE_NAME,
// STREAM_INTERVAL_MS (default 20), WORKER_CONCURRENCY (default 10),
// WORKER_RUN_RETRY_DELAY_MS (BullMQ's runRetryDelay; unset keeps BullMQ's
// default of 15000 ms, as the reference app does: a worker whose fetch fails
// during a failover then idles that long before it fetches again).
// Prints {"event":"ready"} once both are connected; on SIGTERM stops
// enqueueing, waits up to SETTLE_MS (default 30000) for every accepted job to
// complete, then prints one JSON summary line and exits.
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const appDir = path.resolve(here, '../examples/app');
const require = createRequire(path.join(appDir, 'package.json'));
const { Queue, Worker } = require('bullmq');
const { redisOptions } = await import(pathToFileURL(path.join(appDir, 'src/redis.js')).href);

const env = process.env;
const redisConfig = {
  mode: 'sentinel',
  sentinels: env.REDIS_SENTINELS.split(',').map((s) => {
    const [host, port] = s.split(':');
    return { host, port: Number(port) };
  }),
  name: env.REDIS_MASTER_NAME || 'recete',
  sentinelPassword: env.REDIS_SENTINEL_PASSWORD,
  username: env.REDIS_USERNAME,
  password: env.REDIS_PASSWORD,
};
const queueName = env.QUEUE_NAME || 'recete-bench';
const intervalMs = Number(env.STREAM_INTERVAL_MS || 20);
const settleMs = Number(env.SETTLE_MS || 30000);
const now = () => Date.now() / 1000;
const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const queue = new Queue(queueName, {
  connection: redisOptions(redisConfig),
  defaultJobOptions: { attempts: 3, backoff: { type: 'exponential', delay: 200 }, removeOnComplete: 5000, removeOnFail: 5000 },
});
const errors = {};
const count = (kind) => { errors[kind] = (errors[kind] || 0) + 1; };
queue.on('error', (err) => count(`queue: ${String(err.message).split(' ')[0]}`));

const accepted = new Map(); // id -> enqueue time
const completed = new Map(); // id -> completion time
const worker = new Worker(queueName, async (job) => ({ seq: job.data.seq }), {
  connection: redisOptions(redisConfig),
  concurrency: Number(env.WORKER_CONCURRENCY || 10),
  ...(env.WORKER_RUN_RETRY_DELAY_MS ? { runRetryDelay: Number(env.WORKER_RUN_RETRY_DELAY_MS) } : {}),
});
worker.on('completed', (job) => completed.set(job.id, now()));
worker.on('error', (err) => count(`worker: ${String(err.message).split(' ')[0]}`));

await queue.waitUntilReady();
await worker.waitUntilReady();
await queue.obliterate({ force: true }).catch(() => {});
out({ event: 'ready' });

let stopping = false;
let seq = 0;
let addErrors = 0;
const producer = (async () => {
  while (!stopping) {
    seq += 1;
    const id = `b-${seq}`;
    try {
      await queue.add('echo', { seq }, { jobId: id });
      accepted.set(id, now());
    } catch (err) {
      addErrors += 1;
      count(`add: ${String(err.message).slice(0, 60)}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
})();

process.on('SIGTERM', async () => {
  stopping = true;
  await producer;
  const deadline = Date.now() + settleMs;
  while (Date.now() < deadline && [...accepted.keys()].some((id) => !completed.has(id))) {
    await new Promise((r) => setTimeout(r, 200));
  }
  const times = [...completed.values()].sort((a, b) => a - b);
  let gap = [0, null, null];
  for (let i = 1; i < times.length; i += 1) {
    if (times[i] - times[i - 1] > gap[0]) gap = [times[i] - times[i - 1], times[i - 1], times[i]];
  }
  const missing = [...accepted.keys()].filter((id) => !completed.has(id));
  out({
    event: 'summary',
    enqueued: accepted.size,
    enqueue_failures: addErrors,
    completed: [...accepted.keys()].filter((id) => completed.has(id)).length,
    not_completed: missing.length,
    not_completed_sample: missing.slice(0, 20),
    longest_completion_gap_s: Number(gap[0].toFixed(3)),
    longest_completion_gap_from: gap[1],
    longest_completion_gap_to: gap[2],
    errors,
  });
  await worker.close(true).catch(() => {});
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close().catch(() => {});
  process.exit(0);
});
