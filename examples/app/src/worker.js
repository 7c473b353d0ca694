// Worker entry point: `node src/worker.js`.
import { Worker, UnrecoverableError } from 'bullmq';
import { loadConfigOrExit } from './config.js';
import { createPool } from './db.js';
import { redisOptions } from './redis.js';
import { installProcessHandlers } from './lifecycle.js';
import * as log from './log.js';

const config = loadConfigOrExit(process.env, { role: 'worker' });
log.setLogContext({ component: 'worker', instance: config.instance, version: config.version });

const pool = createPool(config.databaseUrl, { max: config.pgPoolSize, name: 'rw' });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function compute(type, data) {
  switch (type) {
    case 'echo':
      return data ?? {};
    case 'sum': {
      const values = data?.values;
      if (!Array.isArray(values) || !values.every((v) => typeof v === 'number' && Number.isFinite(v))) {
        // Retrying cannot fix bad input.
        throw new UnrecoverableError('sum needs data.values: an array of numbers');
      }
      return values.reduce((a, b) => a + b, 0);
    }
    default:
      throw new UnrecoverableError(`unknown job type ${JSON.stringify(type)}`);
  }
}

async function processJob(job) {
  const { type = job.name, data = {}, sleep_ms: sleepMs = 0 } = job.data || {};
  const result = compute(type, data);
  // Simulated work; the drain tests use it to have a job active at SIGTERM.
  if (sleepMs > 0) await sleep(Math.min(sleepMs, 60000));
  // Upsert: a retried or re-run (stalled) job overwrites its earlier result.
  await pool.query(
    `INSERT INTO job_results (job_id, result, worker) VALUES ($1, $2::jsonb, $3)
     ON CONFLICT (job_id) DO UPDATE
       SET result = EXCLUDED.result, worker = EXCLUDED.worker, processed_at = now()`,
    [job.id, JSON.stringify(result), config.instance],
  );
  return result;
}

const worker = new Worker(config.queueName, processJob, {
  // redisOptions sets maxRetriesPerRequest: null, enableReadyCheck and, with
  // Sentinel, failoverDetector; BullMQ duplicates these options for its
  // blocking connection, so both follow a failover to the new master.
  connection: redisOptions(config.redis),
  concurrency: config.workerConcurrency,
  // After a failed fetch (a Redis failover) BullMQ waits runRetryDelay before
  // fetching again; its 15 s default left workers idle for up to 21 s after a
  // 6 s failover in bench/failover.py. 1 s resumes soon after the new master.
  runRetryDelay: 1000,
});

worker.on('ready', () => log.info('worker connected', { queue: config.queueName, concurrency: config.workerConcurrency }));
worker.on('failed', (job, err) =>
  log.warn('job failed', { job_id: job?.id, attempts_made: job?.attemptsMade, err }),
);
worker.on('stalled', (jobId) => log.warn('job stalled', { job_id: jobId }));
worker.on('error', (err) => log.error('worker error', { err }));

log.info('worker started', { pid: process.pid, node: process.version, queue: config.queueName });

async function shutdown(signal) {
  log.info('shutdown started', { signal, timeout_ms: config.shutdownTimeoutMs });
  // close() stops fetching new jobs and waits for the active ones to finish
  // (they write their results through the pool, so end the pool after).
  await worker.close();
  log.info('worker closed');
  await pool.end();
  log.info('shutdown complete');
  process.exit(0);
}

installProcessHandlers({ shutdown, timeoutMs: config.shutdownTimeoutMs });
