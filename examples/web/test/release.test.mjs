// The release artifact end to end: scripts/build-release.sh builds it (once;
// or WEB_RELEASE_TARBALL names one already built), the test unpacks it and
// runs `node server.js` in it, as a host would, against a fake API started
// here. Real processes and real HTTP throughout.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { execFile, execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { FakeApi, FAKE_API_INSTANCE, ITEMS } from '../test-support/fake-api.mjs';
import { connectRefused, request, startWeb } from '../test-support/web.mjs';

const execFileAsync = promisify(execFile);
const WEB_DIR = fileURLToPath(new URL('..', import.meta.url));
const BUILT_VERSION = '9.9.9-test';
const INSTANCE = 'web-test-1';

// The cache policy the README documents (pages/items/[id].js, middleware.js).
const ITEM_CACHE_CONTROL = 'public, s-maxage=5, stale-while-revalidate=30';
const ERROR_CACHE_CONTROL = 'private, no-store';
const HOME_CACHE_CONTROL = 'public, max-age=0, s-maxage=60';
const ASSET_CACHE_CONTROL = 'public, max-age=31536000, immutable';

let tmp;
let tarball;
let builtHere = false;
let version;
let root;
let filesBefore;
let api;
let web;
const others = [];

// Every file under dir with its size and mtime: what the server may not change.
function snapshot(dir) {
  const out = {};
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const st = fs.lstatSync(p);
        out[path.relative(dir, p)] = `${st.size} ${st.mtimeMs}`;
      }
    }
  };
  walk(dir);
  return out;
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'recete-web-test-'));
  if (process.env.WEB_RELEASE_TARBALL) {
    tarball = path.resolve(process.env.WEB_RELEASE_TARBALL);
  } else {
    builtHere = true;
    const { stdout } = await execFileAsync(path.join(WEB_DIR, 'scripts', 'build-release.sh'), [path.join(tmp, 'out')], {
      env: { ...process.env, APP_VERSION: BUILT_VERSION },
      timeout: 900000,
      maxBuffer: 64 * 1024 * 1024,
    }).catch((err) => {
      throw new Error(`build-release.sh failed: ${err.message}\n${err.stderr}`);
    });
    tarball = stdout.trim();
  }
  const dest = path.join(tmp, 'extract');
  fs.mkdirSync(dest);
  execFileSync('tar', ['-xzf', tarball, '-C', dest]);
  const [top] = fs.readdirSync(dest);
  root = path.join(dest, top);
  version = fs.readFileSync(path.join(root, 'VERSION'), 'utf8').trim();
  filesBefore = snapshot(root);

  api = await new FakeApi().listen();
  // APP_VERSION in the environment must not win over the built version.
  web = await startWeb(root, { API_URL: api.url, WEB_INSTANCE: INSTANCE, APP_VERSION: 'runtime-env-must-not-win' }, { name: 'web' });
  await web.ready;
});

after(async () => {
  for (const p of [web?.proc, ...others].filter(Boolean)) await p.stop('SIGKILL');
  if (api) await api.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

beforeEach(async () => {
  if (!api.server.listening) await api.listen(api.port);
  api.reset();
});

test('build-release.sh writes a versioned tarball and a matching .sha256', () => {
  const name = path.basename(tarball);
  assert.match(name, /^recete-web-[0-9A-Za-z][0-9A-Za-z.+_-]*\.tar\.gz$/);
  assert.equal(name, `recete-web-${version}.tar.gz`);
  if (builtHere) {
    assert.equal(tarball, path.join(tmp, 'out', `recete-web-${BUILT_VERSION}.tar.gz`));
    assert.equal(version, BUILT_VERSION);
  }
  const sum = crypto.createHash('sha256').update(fs.readFileSync(tarball)).digest('hex');
  assert.equal(fs.readFileSync(`${tarball}.sha256`, 'utf8').trim(), `${sum}  ${name}`);
});

test('the tarball holds the standalone server, its static assets and public/, and nothing else of ours', () => {
  const entries = execFileSync('tar', ['-tzf', tarball], { maxBuffer: 64 * 1024 * 1024 }).toString().trim().split('\n');
  const top = `recete-web-${version}/`;
  for (const e of entries) assert.ok(e.startsWith(top), `entry outside ${top}: ${e}`);
  const rel = entries.map((e) => e.slice(top.length));
  for (const f of ['server.js', 'VERSION', 'package.json', 'package-lock.json', '.next/BUILD_ID', 'public/robots.txt', 'node_modules/next/package.json', 'node_modules/react/package.json', 'node_modules/react-dom/package.json', '.next/server/middleware.js', '.next/server/instrumentation.js']) {
    assert.ok(rel.includes(f), `missing ${f}`);
  }
  // / prerendered at build, the items page a server page.
  assert.ok(rel.includes('.next/server/app/index.html'), 'the home page is not prerendered');
  assert.ok(rel.includes('.next/server/pages/items/[id].js'), 'no server bundle for /items/[id]');
  assert.ok(rel.some((r) => /^\.next\/static\/chunks\/.+\.js$/.test(r)), 'no JS chunks under .next/static');
  assert.ok(rel.some((r) => /^\.next\/static\/css\/.+\.css$/.test(r)), 'no CSS under .next/static');
  assert.ok(rel.some((r) => /^\.next\/static\/media\/logo\.[0-9a-f]+\.svg$/.test(r)), 'no fingerprinted logo under .next/static/media');
  for (const r of rel) {
    assert.ok(!r.endsWith('.node'), `native add-on ${r}`);
    assert.ok(!/^node_modules\/(sharp|@img|@next\/swc)/.test(r), `build-only or native package ${r}`);
    assert.ok(!/^(app|pages|lib|styles|test|test-support|scripts|dist)\//.test(r), `source or tooling ${r}`);
    assert.ok(!r.startsWith('.next/cache/'), `build cache ${r}`);
    assert.ok(!['README.md', 'next.config.mjs', 'middleware.js', '.gitignore'].includes(r), `unexpected ${r}`);
  }
  // Reproducible metadata.
  const verbose = execFileSync('tar', ['-tzvf', tarball], { maxBuffer: 64 * 1024 * 1024 }).toString().trim().split('\n');
  for (const l of verbose) assert.match(l, /^\S+ 0\/0 .* 1970-01-01 00:00 /, l);
});

test('node server.js in the release answers /health with the built version and instance', async () => {
  const r = await request(`${web.url}/health`);
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { status: 'ok', version, instance: INSTANCE });
  assert.equal(r.headers['x-instance'], INSTANCE);
  assert.equal(r.headers['x-app-version'], version);
  assert.equal(r.headers['cache-control'], 'no-store');
  assert.equal(r.headers['x-powered-by'], undefined);
});

test('/ is static, names fingerprinted assets under /_next/static/ that answer 200 and immutable', async () => {
  const r = await request(`${web.url}/`);
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/html/);
  assert.equal(r.headers['x-instance'], INSTANCE);
  assert.equal(r.headers['x-app-version'], version);
  assert.equal(r.headers['cache-control'], HOME_CACHE_CONTROL);
  assert.match(r.text, /<h1>recete web<\/h1>/);
  assert.match(r.text, /href="\/items\/1"/);
  assert.match(r.text, new RegExp(`<code>${version.replace(/[.+]/g, '\\$&')}</code>`));
  // No data: serving it asks the API nothing.
  assert.equal(api.requests.length, 0, JSON.stringify(api.requests));

  const assets = [...new Set([...r.text.matchAll(/(?:src|href)="(\/_next\/static\/[^"]+)"/g)].map((m) => m[1]))];
  const css = assets.filter((a) => /\.css$/.test(a));
  const js = assets.filter((a) => /\.js$/.test(a));
  const media = assets.filter((a) => /^\/_next\/static\/media\/logo\.[0-9a-f]+\.svg$/.test(a));
  assert.ok(css.length >= 1, `no CSS in ${assets}`);
  assert.ok(js.length >= 1, `no JS in ${assets}`);
  assert.equal(media.length, 1, `no fingerprinted logo in ${assets}`);
  for (const a of assets) {
    const res = await request(`${web.url}${a}`);
    assert.equal(res.status, 200, a);
    assert.equal(res.headers['cache-control'], ASSET_CACHE_CONTROL, a);
    assert.equal(res.headers['x-instance'], INSTANCE, a);
    const type = a.endsWith('.css') ? /^text\/css/ : a.endsWith('.js') ? /javascript/ : /^image\/svg\+xml/;
    assert.match(res.headers['content-type'], type, a);
    assert.ok(res.text.length > 0, a);
  }
  // A CSS module's class made it into the page and its stylesheet.
  const cssText = (await Promise.all(css.map((a) => request(`${web.url}${a}`)))).map((x) => x.text).join('\n');
  assert.match(cssText, /--accent/);
});

test('an asset this release does not have is a 404 no cache may keep', async () => {
  const r = await request(`${web.url}/_next/static/chunks/not-in-this-release-0123456789abcdef.js`);
  assert.equal(r.status, 404);
  assert.match(r.headers['cache-control'], /no-store/);
  const p = await request(`${web.url}/robots.txt`);
  assert.equal(p.status, 200);
  assert.match(p.text, /^User-agent: \*/);
  // public/ files are not fingerprinted: Next says so with max-age=0.
  assert.equal(p.headers['cache-control'], 'public, max-age=0');
});

test('/items/1 is rendered on the server from the API on every request', async () => {
  const item = ITEMS.get('1');
  const first = await request(`${web.url}/items/1`, { headers: { 'x-forwarded-for': '203.0.113.7' } });
  assert.equal(first.status, 200, first.text.slice(0, 500));
  assert.match(first.headers['content-type'], /^text\/html/);
  assert.equal(first.headers['cache-control'], ITEM_CACHE_CONTROL);
  assert.equal(first.headers['x-instance'], INSTANCE);
  assert.equal(first.headers['x-app-version'], version);
  assert.match(first.text, new RegExp(`<h1 data-testid="name">${item.name}</h1>`));
  assert.match(first.text, /<span data-testid="version">42<\/span>/);
  assert.match(first.text, new RegExp(`data-testid="api-instance">${FAKE_API_INSTANCE}<`));
  assert.match(first.text, new RegExp(`data-testid="web-instance">${INSTANCE}<`));
  assert.match(first.text, /cache MISS/);
  // The client's address chain, plus the address the request came from.
  const reqs = api.itemRequests();
  assert.equal(reqs.length, 1);
  assert.equal(reqs[0].url, '/items/1');
  assert.equal(reqs[0].headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');

  const second = await request(`${web.url}/items/1`);
  assert.equal(second.status, 200);
  assert.equal(api.itemRequests().length, 2, 'the page was not rendered again');
  assert.equal(api.itemRequests()[1].headers['x-forwarded-for'], '127.0.0.1');
});

test('an item the API does not know, or an id it would refuse, is a 404 page not to be cached', async () => {
  const r = await request(`${web.url}/items/999`);
  assert.equal(r.status, 404);
  assert.equal(r.headers['cache-control'], ERROR_CACHE_CONTROL);
  assert.equal(r.headers['x-instance'], INSTANCE);
  assert.match(r.text, /Item not found/);
  assert.match(r.text, /There is no item (<!-- -->)?999/);
  assert.equal(api.itemRequests().length, 1);

  const bad = await request(`${web.url}/items/abc`);
  assert.equal(bad.status, 404);
  assert.equal(bad.headers['cache-control'], ERROR_CACHE_CONTROL);
  assert.match(bad.text, /Item not found/);
  assert.equal(api.itemRequests().length, 1, 'a malformed id reached the API');

  const unknown = await request(`${web.url}/no/such/page`);
  assert.equal(unknown.status, 404);
  assert.equal(unknown.headers['x-instance'], INSTANCE);
  assert.doesNotMatch(unknown.headers['cache-control'], /public|s-maxage/);
});

test('an API error answer gives a 502 page not to be cached', async () => {
  api.mode = 'error';
  const r = await request(`${web.url}/items/1`);
  assert.equal(r.status, 502);
  assert.equal(r.headers['cache-control'], ERROR_CACHE_CONTROL);
  assert.equal(r.headers['x-instance'], INSTANCE);
  assert.match(r.text, /The API is unavailable/);
  assert.match(r.text, /the API answered 500/);
});

test('an API that does not answer: 502 after the 2 s fetch timeout, /ready 503 within 1 s, /health 200', async () => {
  api.mode = 'hang';
  const [page, ready, health] = await Promise.all([
    request(`${web.url}/items/1`),
    request(`${web.url}/ready`),
    request(`${web.url}/health`),
  ]);
  assert.equal(page.status, 502);
  assert.equal(page.headers['cache-control'], ERROR_CACHE_CONTROL);
  assert.match(page.text, /no answer from the API within 2000 ms/);
  assert.ok(page.ms >= 1900 && page.ms < 3000, `502 after ${page.ms} ms`);
  assert.equal(ready.status, 503);
  assert.equal(ready.json.status, 'not_ready');
  assert.equal(ready.json.checks.api, 'api: no answer within 1000 ms');
  assert.equal(ready.headers['cache-control'], 'no-store');
  assert.ok(ready.ms >= 900 && ready.ms < 1800, `/ready 503 after ${ready.ms} ms`);
  assert.equal(health.status, 200);
  assert.ok(health.ms < 500, `/health took ${health.ms} ms`);
});

test('an API that is gone: 502 at once, /ready 503, /health 200; both 200 again when it is back', async () => {
  await api.close();
  const page = await request(`${web.url}/items/1`);
  assert.equal(page.status, 502);
  assert.match(page.text, /the API is unreachable \(ECONNREFUSED\)/);
  assert.ok(page.ms < 1000, `502 after ${page.ms} ms`);
  const ready = await request(`${web.url}/ready`);
  assert.equal(ready.status, 503);
  assert.match(ready.json.checks.api, /^api: .*ECONNREFUSED/);
  assert.deepEqual(
    { status: ready.json.status, version: ready.json.version, instance: ready.json.instance },
    { status: 'not_ready', version, instance: INSTANCE },
  );
  const health = await request(`${web.url}/health`);
  assert.equal(health.status, 200);

  await api.listen(api.port);
  const again = await request(`${web.url}/ready`);
  assert.equal(again.status, 200);
  assert.deepEqual(again.json, { status: 'ready', version, instance: INSTANCE, checks: { api: 'ok' } });
  assert.equal((await request(`${web.url}/items/1`)).status, 200);
});

test('a bad environment stops the server with exit code 2 and says why', async () => {
  for (const [env, message] of [
    [{ API_URL: undefined }, /recete-web: configuration error: API_URL is required/],
    [{ API_URL: 'ftp://127.0.0.1/', WEB_INSTANCE: 'two\tlines' }, /API_URL must be an http:\/\/ or https:\/\/ URL[^\n]*\n[^\n]*WEB_INSTANCE must be/],
  ]) {
    const w = await startWeb(root, env, { name: 'web-bad-env' });
    others.push(w.proc);
    w.ready.catch(() => {});
    const { code } = await w.proc.waitForExit(20000);
    assert.equal(code, 2, w.proc.tail());
    assert.match(w.proc.output, message);
  }
});

test('SIGTERM: the listener closes, the request in flight completes, the process exits 0', async (t) => {
  const w = await startWeb(root, { API_URL: api.url, WEB_INSTANCE: 'web-test-term' }, { name: 'web-term' });
  others.push(w.proc);
  await w.ready;
  // An idle keep-alive connection, as nginx keeps to its upstreams.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  assert.equal((await request(`${w.url}/health`, { agent })).status, 200);

  api.delayMs = 1500;
  const inFlight = request(`${w.url}/items/1`);
  while (api.itemRequests().length === 0) await new Promise((r) => setTimeout(r, 20));
  const sent = Date.now();
  w.proc.signalProc('SIGTERM');
  // New connections are refused at once...
  let refused = false;
  for (let i = 0; i < 50 && !refused; i++) {
    refused = await connectRefused(w.port);
    if (!refused) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(refused, 'still accepting connections 1 s after SIGTERM');
  assert.ok(w.proc.running, 'exited with a request in flight');
  // ...the request in flight is answered...
  const r = await inFlight;
  assert.equal(r.status, 200);
  assert.match(r.text, /First item from the fake API/);
  // ...and then the process exits cleanly (on Node 18 only once the idle
  // keep-alive connection times out: its server.close() leaves those open).
  const { code, signal } = await w.proc.waitForExit(10000);
  assert.equal(signal, null);
  assert.equal(code, 0, w.proc.tail());
  t.diagnostic(`exit ${Date.now() - sent} ms after SIGTERM, the request took ${r.ms} ms (node ${process.version})`);
  agent.destroy();
});

// One series value from a Prometheus text exposition (0 when absent).
function sample(text, name, labels) {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && want.every((w) => l.includes(w)));
  return line ? Number(line.split(' ').pop()) : 0;
}

test('/metrics counts every request by kind and status, with the process metrics', async () => {
  const before = (await request(`${web.url}/metrics`)).text;
  const home = await request(`${web.url}/`);
  const asset = home.text.match(/(?:src|href)="(\/_next\/static\/[^"]+)"/)[1];
  assert.equal((await request(`${web.url}${asset}`)).status, 200);
  assert.equal((await request(`${web.url}/items/does-not-exist`)).status, 404);
  const r = await request(`${web.url}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  assert.equal(r.headers['cache-control'], 'no-store');
  const count = 'recete_web_http_request_duration_seconds_count';
  const grew = (labels) => sample(r.text, count, labels) - sample(before, count, labels);
  assert.equal(grew({ kind: 'page', status: '200' }), 1, r.text);
  assert.equal(grew({ kind: 'page', status: '404' }), 1, r.text);
  assert.equal(grew({ kind: 'asset', status: '200' }), 1, r.text);
  assert.equal(grew({ kind: 'probe', status: '200' }), 1, r.text);   // the first /metrics
  // This /metrics itself is in flight while it is answered.
  assert.match(r.text, /^recete_web_http_requests_in_flight 1$/m);
  assert.match(r.text, /^process_resident_memory_bytes \d+/m);
  assert.match(r.text, /^nodejs_eventloop_lag_seconds /m);
});

test('the server wrote nothing into its release directory', () => {
  assert.deepEqual(snapshot(root), filesBefore);
});
