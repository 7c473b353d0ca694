// scripts/build-release.sh: the artifact is complete, reproducible, has no
// tests or dev tooling, and the extracted release runs against real servers.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { startStack } from '../test-support/stack.js';
import { APP_DIR, startApi, runMigrate, waitReady, http as req } from '../test-support/app.js';

const execFileAsync = promisify(execFile);
const VERSION = '9.9.9-test';
let stack;
let tmp;
let tarball;

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'recete-release-test-'));
  // Build while the servers start (async: execFileSync would block them).
  const build = execFileAsync(path.join(APP_DIR, 'scripts', 'build-release.sh'), [path.join(tmp, 'out')], {
    env: { ...process.env, APP_VERSION: VERSION },
    timeout: 120000,
  }).then(
    ({ stdout }) => stdout.trim(),
    (err) => {
      throw new Error(`build-release.sh failed: ${err.message}\n${err.stderr}`);
    },
  );
  [tarball, stack] = await Promise.all([build, startStack()]);
});

after(async () => {
  if (stack) await stack.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('build-release.sh writes a versioned tarball and a matching .sha256', () => {
  assert.equal(tarball, path.join(tmp, 'out', `recete-app-${VERSION}.tar.gz`));
  const sum = crypto.createHash('sha256').update(fs.readFileSync(tarball)).digest('hex');
  const line = fs.readFileSync(`${tarball}.sha256`, 'utf8').trim();
  assert.equal(line, `${sum}  recete-app-${VERSION}.tar.gz`);
});

test('the tarball holds one top-level directory with only production files', () => {
  const entries = execFileSync('tar', ['-tzf', tarball]).toString().trim().split('\n');
  const top = `recete-app-${VERSION}/`;
  for (const e of entries) assert.ok(e.startsWith(top), `entry outside ${top}: ${e}`);
  const rel = entries.map((e) => e.slice(top.length));
  for (const f of ['VERSION', 'package.json', 'package-lock.json', 'src/server.js', 'src/worker.js', 'src/migrate.js', 'node_modules/hono/package.json', 'node_modules/bullmq/package.json', 'node_modules/pg/package.json', 'node_modules/ioredis/package.json', 'node_modules/@hono/node-server/package.json', 'node_modules/prom-client/package.json']) {
    assert.ok(rel.includes(f), `missing ${f}`);
  }
  // Nothing of ours that is not needed at run time (third-party packages
  // under node_modules ship as published).
  for (const r of rel.filter((x) => !x.startsWith('node_modules/'))) {
    assert.ok(!/^(test|scripts|dist)\//.test(r) && r !== 'README.md' && !r.startsWith('.git'), `unexpected ${r}`);
    assert.ok(!/\.test\.js$/.test(r), `test file ${r}`);
  }
  for (const r of rel) assert.ok(!r.endsWith('.node'), `native add-on ${r}`);
  // Only production dependencies: npm marks dev (and optional) ones in the
  // hidden lockfile it writes into node_modules.
  const hidden = JSON.parse(
    execFileSync('tar', ['-xzOf', tarball, `${top}node_modules/.package-lock.json`]).toString(),
  );
  for (const [p, meta] of Object.entries(hidden.packages)) {
    assert.ok(!meta.dev, `dev dependency in release: ${p}`);
    assert.ok(!meta.optional, `optional dependency in release: ${p}`);
  }
  // Reproducible metadata.
  const verbose = execFileSync('tar', ['-tzvf', tarball]).toString().trim().split('\n');
  for (const l of verbose) assert.match(l, /^\S+ 0\/0 .* 1970-01-01 00:00 /, l);
});

test('the extracted release migrates, starts and answers /health with the built version', async () => {
  const dest = path.join(tmp, 'extract');
  fs.mkdirSync(dest);
  execFileSync('tar', ['-xzf', tarball, '-C', dest]);
  const root = path.join(dest, `recete-app-${VERSION}`);
  assert.equal(fs.readFileSync(path.join(root, 'VERSION'), 'utf8').trim(), VERSION);

  const m = await runMigrate(stack, { cwd: root });
  assert.equal(m.code, 0, m.output);

  const app = await startApi(stack, {}, { cwd: root, name: 'release-api' });
  try {
    const health = await req(`${app.url}/health`);
    assert.equal(health.status, 200);
    assert.deepEqual(health.json, { status: 'ok', version: VERSION, instance: app.instance });
    assert.equal(health.headers.get('x-app-version'), VERSION);
    const ready = await waitReady(app.url);
    assert.equal(ready.json.version, VERSION);
    // prom-client came along in the artifact.
    const metrics = await req(`${app.url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /^recete_http_request_duration_seconds_count\{method="GET",route="\/ready",status="200"\} /m);
    app.proc.signalProc('SIGTERM');
    const { code } = await app.proc.waitForExit(10000);
    assert.equal(code, 0, app.proc.tail());
  } finally {
    await app.proc.stop('SIGKILL');
  }
});
