// Starting the release under test (`node server.js` in the unpacked
// artifact) and talking HTTP to it.
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { Proc } from '../../app/test-support/proc.js';

/** A port nothing listens on right now. */
export async function freePort() {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * GET (by default) with a fresh connection each time (no keep-alive), so a
 * request's timing is its own. Resolves {status, headers, text, ms}.
 */
export function request(url, { method = 'GET', headers = {}, timeoutMs = 15000, agent = false } = {}) {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json, ms: Date.now() - started });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * `node server.js` in `root` with the given environment (only PATH and
 * LD_LIBRARY_PATH are taken from ours, so that nothing else leaks in).
 * Resolves once GET /health answers 200.
 */
export async function startWeb(root, env, { name = 'web', port } = {}) {
  port ??= await freePort();
  const fullEnv = {
    PATH: process.env.PATH,
    NEXT_TELEMETRY_DISABLED: '1',
    PORT: String(port),
    HOSTNAME: '127.0.0.1',
    ...env,
  };
  if (process.env.LD_LIBRARY_PATH) fullEnv.LD_LIBRARY_PATH = process.env.LD_LIBRARY_PATH;
  for (const [k, v] of Object.entries(fullEnv)) if (v === undefined) delete fullEnv[k];
  const proc = new Proc(name, process.execPath, ['server.js'], { cwd: root, env: fullEnv });
  const url = `http://127.0.0.1:${port}`;
  return { proc, url, port, ready: waitHealthy(proc, url) };
}

async function waitHealthy(proc, url, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!proc.running) throw new Error(`${proc.name} exited before answering /health\n${proc.tail()}`);
    try {
      const r = await request(`${url}/health`, { timeoutMs: 2000 });
      if (r.status === 200) return r;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${proc.name}: /health not 200 within ${timeoutMs} ms\n${proc.tail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Resolve true if a TCP connection to port is refused, false if accepted. */
export function connectRefused(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', (err) => (err.code === 'ECONNREFUSED' ? resolve(true) : reject(err)));
  });
}
