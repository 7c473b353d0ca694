// Start the app's entry points as child processes, as systemd would.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Proc } from './proc.js';
import { freePort } from './stack.js';

export const APP_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// Only what the app needs: a developer's own DATABASE_URL etc. must not leak in.
// LD_LIBRARY_PATH passes through so the suite can run under a Node that is
// unpacked outside the default library path (e.g. Debian 12's Node 18 from
// `apt-get download nodejs libnode108` + `dpkg -x`, to check compatibility).
function baseEnv() {
  const env = { PATH: process.env.PATH, LANG: 'C.UTF-8' };
  if (process.env.LD_LIBRARY_PATH) env.LD_LIBRARY_PATH = process.env.LD_LIBRARY_PATH;
  return env;
}

/** Start `node src/server.js`; resolves once it logs "listening". */
export async function startApi(stack, extraEnv = {}, { cwd = APP_DIR, name = 'api' } = {}) {
  const port = await freePort();
  const instance = `${name}-${port}`;
  const proc = new Proc(name, process.execPath, ['src/server.js'], {
    cwd,
    env: {
      ...baseEnv(),
      ...stack.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      APP_INSTANCE: instance,
      READY_CHECK_TIMEOUT_MS: '500',
      SHUTDOWN_TIMEOUT_MS: '10000',
      ...extraEnv,
    },
  });
  await proc.waitForOutput(/"msg":"listening"/, 10000);
  return { proc, port, instance, url: `http://127.0.0.1:${port}` };
}

/**
 * Poll GET /ready until 200 (an instance is not ready until its Redis and
 * Postgres connections are up, which takes a moment after "listening").
 */
export async function waitReady(url, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await http(`${url}/ready`).catch((err) => ({ status: 0, text: err.message }));
    if (last.status === 200) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url}/ready not 200 after ${timeoutMs} ms: ${last?.status} ${last?.text}`);
}

/** Start `node src/worker.js`; resolves once BullMQ reports it connected. */
export async function startWorker(stack, extraEnv = {}, { cwd = APP_DIR, name = 'worker' } = {}) {
  const instance = `${name}-${Date.now()}`;
  const proc = new Proc(name, process.execPath, ['src/worker.js'], {
    cwd,
    env: { ...baseEnv(), ...stack.env, APP_INSTANCE: instance, SHUTDOWN_TIMEOUT_MS: '10000', ...extraEnv },
  });
  await proc.waitForOutput(/"msg":"worker connected"/, 10000);
  return { proc, instance };
}

/** Run `node src/migrate.js` to completion; returns {code, output}. */
export async function runMigrate(stack, { cwd = APP_DIR } = {}) {
  const proc = new Proc('migrate', process.execPath, ['src/migrate.js'], { cwd, env: { ...baseEnv(), ...stack.env } });
  const { code } = await proc.waitForExit(20000);
  return { code, output: proc.output };
}

/** Run an entry point with exactly `env` (plus PATH); returns {code, output}. */
export async function runWithEnv(script, env, { cwd = APP_DIR, timeoutMs = 10000 } = {}) {
  const proc = new Proc(script, process.execPath, [script], { cwd, env: { ...baseEnv(), ...env } });
  try {
    const { code, signal } = await proc.waitForExit(timeoutMs);
    return { code, signal, output: proc.output };
  } finally {
    await proc.stop('SIGKILL', 1000);
  }
}

/** fetch + JSON body; never throws on HTTP status. */
export async function http(url, { method = 'GET', body, headers = {} } = {}) {
  const res = await fetch(url, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}
