// Prometheus metrics of this instance, for the monitoring hosts, which
// scrape the instances directly (the load balancers answer 404 here).
import { metrics } from '../../lib/metrics.js';

export const dynamic = 'force-dynamic';

export async function GET() {
  const { registry } = metrics();
  return new Response(await registry.metrics(), {
    headers: { 'Content-Type': registry.contentType, 'Cache-Control': 'no-store' },
  });
}
