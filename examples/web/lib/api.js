// The items page's one call to the API.
import { API_TIMEOUT_MS, apiBase } from './config.js';

// The API's own rule for an item id (a bigserial, kept as a string): any
// other id is a 404 here, without asking the API.
export const ITEM_ID = /^[0-9]{1,18}$/;

/**
 * GET API_URL/items/:id, within API_TIMEOUT_MS (to the end of the body).
 *
 * @param id            an id matching ITEM_ID
 * @param forwardedFor  X-Forwarded-For to send: the client's chain plus the
 *                      address this request came from, so an API that trusts
 *                      the web hosts (TRUSTED_PROXIES) rate-limits the
 *                      browser and not the web tier as a whole
 * @returns {kind: 'ok', item, api} | {kind: 'not_found', api} |
 *          {kind: 'unavailable', reason, api?}, where api is
 *          {instance, version, cache} from the API's response headers
 */
export async function fetchItem(id, { forwardedFor } = {}) {
  const headers = { accept: 'application/json' };
  if (forwardedFor) headers['x-forwarded-for'] = forwardedFor;
  let res;
  try {
    res = await fetch(new URL(`items/${id}`, apiBase()), {
      headers,
      cache: 'no-store',
      signal: AbortSignal.timeout(API_TIMEOUT_MS),
    });
    const api = {
      instance: res.headers.get('x-instance'),
      version: res.headers.get('x-app-version'),
      cache: res.headers.get('x-cache'),
    };
    if (res.status === 404) {
      await res.arrayBuffer();
      return { kind: 'not_found', api };
    }
    if (res.status !== 200) {
      await res.arrayBuffer();
      return { kind: 'unavailable', reason: `the API answered ${res.status}`, api };
    }
    const item = await res.json();
    if (!item || typeof item !== 'object' || typeof item.name !== 'string') {
      return { kind: 'unavailable', reason: 'the API answered an unexpected body', api };
    }
    return { kind: 'ok', item, api };
  } catch (err) {
    let reason;
    if (err.name === 'TimeoutError' || err.name === 'AbortError') reason = `no answer from the API within ${API_TIMEOUT_MS} ms`;
    else if (err instanceof SyntaxError) reason = 'the API answered invalid JSON';
    else reason = `the API is unreachable (${err.cause?.code || err.cause?.message || err.message})`;
    return { kind: 'unavailable', reason };
  }
}

/**
 * The X-Forwarded-For to pass on: the incoming chain plus the address the
 * request came from. Next.js has already set the header to that address when
 * the request had none (base-server.js: `x-forwarded-for ??= remoteAddress`),
 * so a header equal to the peer's address is not repeated.
 */
export function forwardedFor(req) {
  const peer = req.socket?.remoteAddress;
  const chain = req.headers['x-forwarded-for'];
  if (!chain || chain === peer) return peer || undefined;
  return peer ? `${chain}, ${peer}` : chain;
}
