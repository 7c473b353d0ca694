// Runtime configuration, shared by the middleware, the pages, the route
// handlers and instrumentation.js (which checks it once at start-up).
import os from 'node:os';

// Baked in at build time (next.config.mjs `env`): every host running an
// artifact reports the version it was built as, whatever its environment.
export const VERSION = process.env.APP_VERSION;

// How long the items page waits for the API before answering 502, and how
// long /ready waits for the API's /health before answering 503.
export const API_TIMEOUT_MS = 2000;
export const READY_TIMEOUT_MS = 1000;

// The name in X-Instance and on the pages. Like the API's APP_INSTANCE:
// <hostname>:<port> unless set. Next's server.js listens on PORT or 3000.
export function instance(env = process.env) {
  return env.WEB_INSTANCE || `${os.hostname()}:${env.PORT || 3000}`;
}

// The API's base URL, always ending in '/' so that relative paths resolve
// below any path prefix it has (http://lb/api/ + items/1).
export function apiBase(env = process.env) {
  const u = new URL(env.API_URL);
  if (!u.pathname.endsWith('/')) u.pathname += '/';
  return u;
}

/** One message per problem; empty when the environment is usable. */
export function configErrors(env = process.env) {
  const errors = [];
  if (!env.API_URL) {
    errors.push('API_URL is required (the API base URL, e.g. http://127.0.0.1:80)');
  } else {
    let u;
    try {
      u = new URL(env.API_URL);
    } catch {
      // reported below
    }
    if (!u || !['http:', 'https:'].includes(u.protocol) || u.search || u.hash || u.username || u.password) {
      errors.push(`API_URL must be an http:// or https:// URL without credentials, query or fragment, not '${env.API_URL}'`);
    }
  }
  if (env.PORT !== undefined && !(/^[0-9]{1,5}$/.test(env.PORT) && +env.PORT >= 1 && +env.PORT <= 65535)) {
    errors.push(`PORT must be a port number (1-65535), not '${env.PORT}'`);
  }
  // A header value: printable ASCII only (a CR/LF would break every response).
  if (env.WEB_INSTANCE !== undefined && !/^[\x21-\x7e][\x20-\x7e]{0,199}$/.test(env.WEB_INSTANCE)) {
    errors.push('WEB_INSTANCE must be 1-200 printable ASCII characters, not starting with a space');
  }
  return errors;
}
