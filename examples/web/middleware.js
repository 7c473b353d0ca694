// On every response (pages, route handlers, /_next/static assets, 404s):
// which instance answered and which release it runs, as the API does. The
// lab checks load balancing and rolling deploys through nginx with these.
import { NextResponse } from 'next/server';
import { VERSION, instance } from './lib/config.js';

const INSTANCE = instance();

// The prerendered home page. Next would send `s-maxage=31536000` (a year in
// a shared cache: right for a host that purges its CDN on every deploy, but
// our load balancer is a plain CDN origin). The HTML names the build's asset
// hashes, so a CDN must pick up a new release's page soon: a minute in a
// shared cache, and browsers revalidate every time (Next answers 304 to a
// matching If-None-Match). The assets it names are the long-lived ones.
const HOME_CACHE_CONTROL = 'public, max-age=0, s-maxage=60';

export function middleware(request) {
  const res = NextResponse.next();
  res.headers.set('X-Instance', INSTANCE);
  res.headers.set('X-App-Version', VERSION);
  // Next keeps a Cache-Control that is already set on a prerendered page.
  if (request.nextUrl.pathname === '/') res.headers.set('Cache-Control', HOME_CACHE_CONTROL);
  return res;
}

export const config = {
  // Node.js runtime (stable in Next.js 15.5): os.hostname() for the default
  // instance name, and no edge sandbox per request.
  runtime: 'nodejs',
};
