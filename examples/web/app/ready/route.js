// Readiness: may this instance receive traffic? Only if it can reach the
// API (GET API_URL/health answers 200 within READY_TIMEOUT_MS): the
// rolling engine gates on it, as on the API's /ready.
import { READY_TIMEOUT_MS, VERSION, apiBase, instance } from '../../lib/config.js';

export const dynamic = 'force-dynamic';

async function checkApi() {
  try {
    const res = await fetch(new URL('health', apiBase()), {
      cache: 'no-store',
      signal: AbortSignal.timeout(READY_TIMEOUT_MS),
    });
    // Drain the body so the connection can be reused.
    await res.arrayBuffer();
    return res.status === 200 ? 'ok' : `api: /health answered ${res.status}`;
  } catch (err) {
    const why = err.name === 'TimeoutError' ? `no answer within ${READY_TIMEOUT_MS} ms` : err.cause?.message || err.message;
    return `api: ${why}`;
  }
}

export async function GET() {
  const api = await checkApi();
  const ok = api === 'ok';
  return Response.json(
    { status: ok ? 'ready' : 'not_ready', version: VERSION, instance: instance(), checks: { api } },
    { status: ok ? 200 : 503, headers: { 'Cache-Control': 'no-store' } },
  );
}
