// Runs once when the server starts (Next.js calls register() while it
// prepares, before the first request is handled). A bad environment stops
// the process with exit code 2 and one line per problem, like the API, so
// that systemd and the rolling engine see it at once instead of every page
// failing later. Then it starts timing requests (lib/metrics.js).
export async function register() {
  if (process.env.NEXT_RUNTIME !== 'nodejs') return;
  const { configErrors } = await import('./lib/config.js');
  const errors = configErrors(process.env);
  if (errors.length > 0) {
    for (const e of errors) console.error(`recete-web: configuration error: ${e}`);
    process.exit(2);
  }
  // Every request's duration for /metrics, from the first one on.
  const [{ observeRequests }, http] = await Promise.all([import('./lib/metrics.js'), import('node:http')]);
  observeRequests(http.Server);
}
