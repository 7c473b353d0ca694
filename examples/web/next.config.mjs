import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.dirname(fileURLToPath(import.meta.url));
const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8'));

/** @type {import('next').NextConfig} */
export default {
  // .next/standalone: server.js plus only the node_modules files it needs
  // (traced), so the artifact runs with `node server.js` and no npm.
  output: 'standalone',
  // Trace from this directory, whatever lockfiles the directories above hold:
  // server.js then sits at the top of .next/standalone.
  outputFileTracingRoot: dir,
  // No image optimisation (no next/image; the load balancer or a CDN serves
  // images as they are), so sharp and its native libvips builds stay out of
  // the artifact: one artifact for every host, as for the API.
  images: { unoptimized: true },
  outputFileTracingExcludes: { '*': ['node_modules/sharp/**', 'node_modules/@img/**'] },
  // Baked in at build time (build-release.sh sets APP_VERSION).
  env: { APP_VERSION: process.env.APP_VERSION || pkg.version },
  poweredByHeader: false,
  // Loaded from node_modules at run time (traced into the standalone output),
  // not bundled into every handler: one prom-client for the whole process.
  serverExternalPackages: ['prom-client'],
  experimental: {
    // The release directory is root's and read-only to the service: Next.js
    // would otherwise copy prerendered pages into .next/server/route-cache/
    // on their first request (15.5.29 does), and write any ISR page it renders.
    // Keep its response cache in memory only (cacheMaxMemorySize, 50 MB).
    isrFlushToDisk: false,
  },
  reactStrictMode: true,
  // No ESLint among the dependencies; `next build` would only warn.
  eslint: { ignoreDuringBuilds: true },
};
