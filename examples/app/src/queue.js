// The BullMQ queue shared by the API (producer) and the worker (consumer).
import { Queue } from 'bullmq';
import { redisOptions } from './redis.js';
import * as log from './log.js';

// Retention: without limits every finished job stays in Redis forever. The
// result that matters is stored in Postgres (job_results), so Redis only keeps
// recent history for debugging.
export const DEFAULT_JOB_OPTIONS = {
  attempts: 3,
  backoff: { type: 'exponential', delay: 1000 },
  removeOnComplete: { age: 24 * 3600, count: 1000 },
  removeOnFail: { age: 7 * 24 * 3600, count: 5000 },
};

export function createQueue(config) {
  const queue = new Queue(config.queueName, {
    connection: redisOptions(config.redis),
    defaultJobOptions: DEFAULT_JOB_OPTIONS,
  });
  // BullMQ re-emits connection errors; an EventEmitter 'error' without a
  // listener would crash the process.
  queue.on('error', (err) => log.warn('queue error', { err }));
  return queue;
}
