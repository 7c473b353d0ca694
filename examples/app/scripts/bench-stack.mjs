#!/usr/bin/env node
// The test stack (test-support/stack.js: PostgreSQL behind PgBouncer, Redis
// behind Sentinel, on loopback) for the benchmarks in bench/, which start the
// app's own entry points against it.
//
//   node scripts/bench-stack.mjs [--durable]
//
// Migrates the schema, prints one JSON line {"env": {...}, "pids": {...}}
// (the app's connection variables and the servers' PIDs, for CPU accounting),
// then runs until SIGTERM/SIGINT or stdin closes, and stops every server it
// started by PID. --durable: Postgres with fsync and synchronous_commit on,
// as in production (the tests run without).
import { startStack } from '../test-support/stack.js';
import { runMigrate } from '../test-support/app.js';

const stack = await startStack({ durable: process.argv.includes('--durable') });
let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await stack.stop();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.resume();

const m = await runMigrate(stack);
if (m.code !== 0) {
  process.stderr.write(m.output);
  await stack.stop();
  process.exit(1);
}
const pids = {};
for (const name of ['postgres', 'pgbouncer', 'redis', 'sentinel']) pids[name] = stack[name].pid;
process.stdout.write(`${JSON.stringify({ env: stack.env, pids, redisPort: stack.redisPort })}\n`);
