// Prometheus metrics of a web instance (prom-client, as the API's): the
// process's default metrics and every HTTP request's duration by kind and
// status. The names and labels are a contract with the collection's
// Prometheus rules (roles/prometheus/files/rules): change them together.
//
// Next.js bundles instrumentation.js and each route handler apart, so this
// module may be loaded more than once in one process: the registry lives on
// globalThis and is made once.
import client from 'prom-client';

// The API's buckets (seconds): fine below 200 ms, coarse above.
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2.5, 5, 10];

const KEY = Symbol.for('recete.web.metrics');

function create() {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  return {
    registry,
    duration: new client.Histogram({
      name: 'recete_web_http_request_duration_seconds',
      help: 'Time from a request to the end of its response, by kind (page, asset, probe) and status (499: the client left)',
      labelNames: ['kind', 'status'],
      buckets: DURATION_BUCKETS,
      registers: [registry],
    }),
    inFlight: new client.Gauge({
      name: 'recete_web_http_requests_in_flight',
      help: 'Requests received and not yet answered',
      registers: [registry],
    }),
  };
}

/** The process's registry and metrics, made on first use. */
export function metrics() {
  globalThis[KEY] ??= create();
  return globalThis[KEY];
}

/** page, asset (/_next/static/, fingerprinted) or probe (/ready, /health, /metrics): few series. */
export function requestKind(url = '/') {
  const path = url.split('?')[0];
  if (path.startsWith('/_next/static/')) return 'asset';
  if (path === '/ready' || path === '/health' || path === '/metrics') return 'probe';
  return 'page';
}

/**
 * Times every request the process's HTTP servers receive. Next.js offers no
 * hook at the end of a response (middleware runs before the handler,
 * instrumentation's onRequestError sees errors only), so this wraps the one
 * place every request passes, http.Server's 'request' event, as
 * OpenTelemetry's http instrumentation does - a whole tracing SDK for two
 * metrics would be far more code to ship. Idempotent.
 */
export function observeRequests(Server) {
  const emit = Server.prototype.emit;
  if (emit[KEY]) return;
  const { duration, inFlight } = metrics();
  function emitTimed(event, req, res) {
    if (event === 'request') {
      const end = duration.startTimer({ kind: requestKind(req.url) });
      inFlight.inc();
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        inFlight.dec();
        end({ status: res.writableFinished ? String(res.statusCode) : '499' });
      };
      res.once('finish', finish);
      res.once('close', finish);
    }
    return emit.apply(this, arguments);
  }
  emitTimed[KEY] = true;
  Server.prototype.emit = emitTimed;
}
