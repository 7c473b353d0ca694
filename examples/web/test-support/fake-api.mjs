// A stand-in for the recete API, in the test process: GET /health and
// GET /items/:id with the real API's body and headers (X-Instance,
// X-App-Version, X-Cache). The real API is tested in examples/app; here only
// its answers matter, and the tests need to make it slow, hung, failing or
// gone on demand.
import http from 'node:http';
import { once } from 'node:events';

export const FAKE_API_INSTANCE = 'fake-api-1';
export const FAKE_API_VERSION = '7.7.7-fake';

export const ITEMS = new Map([
  [
    '1',
    {
      id: '1',
      name: 'First item from the fake API',
      payload: { colour: 'green', size: 3 },
      created_by: 'fake-api-1',
      created_at: '2025-01-02T03:04:05.000Z',
      updated_at: '2025-02-03T04:05:06.000Z',
      version: '42',
    },
  ],
]);

export class FakeApi {
  constructor() {
    this.requests = [];
    this.reset();
    this.held = new Set();
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  /** mode: 'ok' | 'error' (500 for items) | 'hang' (never answers); delayMs before answering. */
  reset() {
    this.mode = 'ok';
    this.delayMs = 0;
    this.requests = [];
    this.releaseHeld();
  }

  handle(req, res) {
    this.requests.push({ method: req.method, url: req.url, headers: req.headers, at: Date.now() });
    if (this.mode === 'hang') {
      this.held.add(res);
      res.on('close', () => this.held.delete(res));
      return;
    }
    const answer = () => {
      res.setHeader('X-Instance', FAKE_API_INSTANCE);
      res.setHeader('X-App-Version', FAKE_API_VERSION);
      const json = (status, body, extra = {}) => {
        res.writeHead(status, { 'Content-Type': 'application/json', ...extra });
        res.end(JSON.stringify(body));
      };
      if (req.method === 'GET' && req.url === '/health') return json(200, { status: 'ok' });
      const m = /^\/items\/([^/?]+)$/.exec(req.url);
      if (req.method === 'GET' && m) {
        if (this.mode === 'error') return json(500, { error: 'internal server error' });
        const item = ITEMS.get(m[1]);
        if (!item) return json(404, { error: 'item not found' });
        return json(200, item, { 'X-Cache': 'MISS' });
      }
      return json(404, { error: 'not found' });
    };
    if (this.delayMs > 0) setTimeout(answer, this.delayMs);
    else answer();
  }

  releaseHeld() {
    for (const res of this.held ?? []) res.destroy();
    this.held?.clear();
  }

  itemRequests() {
    return this.requests.filter((r) => r.url.startsWith('/items/'));
  }

  async listen(port = 0) {
    this.server.listen(port, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = this.server.address().port;
    this.url = `http://127.0.0.1:${this.port}`;
    return this;
  }

  /** Stop listening and drop every connection: the API is gone. */
  async close() {
    if (!this.server.listening) return;
    this.releaseHeld();
    const closed = once(this.server, 'close');
    this.server.close();
    this.server.closeAllConnections();
    await closed;
  }
}
