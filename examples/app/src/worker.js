// Worker entry point: `node src/worker.js`.
import { Worker, Queue, UnrecoverableError } from 'bullmq';
import { loadConfigOrExit } from './config.js';
import { createPool } from './db.js';
import { ResultWriter } from './results.js';
import { redisOptions } from './redis.js';
import { installProcessHandlers } from './lifecycle.js';
import { createRegistry, dbQueryHistogram, workerMetrics, serveMetrics, closeServer } from './metrics.js';
import * as log from './log.js';

const config = loadConfigOrExit(process.env, { role: 'worker' });
log.setLogContext({ component: 'worker', instance: config.instance, version: config.version });

// Metrics are served only when METRICS_PORT is set (the role sets it per
// instance); METRICS=off keeps the listener but answers 404.
const metrics = config.metrics && config.metricsPort ? createRegistry({ cpuQuotaCores: config.cpuQuotaCores }) : null;
const pool = createPool(config.databaseUrl, {
  max: config.pgPoolSize,
  name: 'rw',
  queryHistogram: metrics && dbQueryHistogram(metrics),
  poolers: config.databaseHosts,
  preferKey: config.instance,
});
// Queue depth is read from Redis at scrape time through a Queue of our own
// (a Worker cannot count jobs); only created when metrics are served.
const metricsQueue = metrics && new Queue(config.queueName, { connection: redisOptions(config.redis) });
metricsQueue?.on('error', (err) => log.warn('metrics queue error', { err }));
const jobMetrics =
  metrics &&
  workerMetrics(metrics, { queue: metricsQueue, queueName: config.queueName, concurrency: config.workerConcurrency });
const results = new ResultWriter(pool, { worker: config.instance });
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
  // Committed before we return, so BullMQ acknowledges the job only once its
  // result is durable; batched with the other jobs finishing meanwhile.
  await results.write(job.id, result);
  return result;
}

const worker = new Worker(config.queueName, jobMetrics ? jobMetrics.track(processJob) : processJob, {
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
jobMetrics?.attach(worker);

let metricsServer;
if (config.metricsPort) {
  try {
    metricsServer = await serveMetrics(metrics, { host: config.metricsHost, port: config.metricsPort });
    log.info('metrics listening', { address: config.metricsHost, port: config.metricsPort, enabled: Boolean(metrics) });
  } catch (err) {
    // e.g. EADDRINUSE: a second instance with the same METRICS_PORT is a
    // deployment error; exit like the API does and let systemd report it.
    log.error('metrics listener failed', { err });
    process.exit(1);
  }
}

log.info('worker started', { pid: process.pid, node: process.version, queue: config.queueName });

async function shutdown(signal) {
  log.info('shutdown started', { signal, timeout_ms: config.shutdownTimeoutMs });
  // close() stops fetching new jobs and waits for the active ones to finish
  // (they write their results through the pool, so end the pool after).
  // Metrics stay scrapeable while draining; closed once the jobs are done.
  await worker.close();
  log.info('worker closed');
  await Promise.allSettled([metricsServer && closeServer(metricsServer), metricsQueue?.close()]);
  await pool.end();
  log.info('shutdown complete');
  process.exit(0);
}

installProcessHandlers({ shutdown, timeoutMs: config.shutdownTimeoutMs });
