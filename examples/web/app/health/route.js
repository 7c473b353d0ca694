// Liveness: the process runs and answers. No dependency check, so a
// supervisor never restarts an instance because the API is down.
import { VERSION, instance } from '../../lib/config.js';

export const dynamic = 'force-dynamic';

export function GET() {
  return Response.json(
    { status: 'ok', version: VERSION, instance: instance() },
    { headers: { 'Cache-Control': 'no-store' } },
  );
}
