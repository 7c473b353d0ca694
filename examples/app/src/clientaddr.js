// Who is the client of a request? The API sits behind the load balancers,
// which append the address they saw to X-Forwarded-For. Anybody can send that
// header, so only the entries written by proxies we trust count: walk the
// chain from the right (the newest hop) and stop at the first address that is
// not one of ours. TRUSTED_PROXIES lists ours (the load balancers).
import net from 'node:net';

// An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d; compare
// and key it as a.b.c.d, so one client has one address whatever the socket.
const MAPPED_V4 = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i;

/** `addr` without an IPv4-mapped IPv6 prefix, and trimmed. */
export function normalizeAddress(addr) {
  const a = String(addr ?? '').trim();
  const m = MAPPED_V4.exec(a);
  return m ? m[1] : a;
}

/**
 * Parse TRUSTED_PROXIES (comma-separated addresses and CIDR ranges, IPv4 or
 * IPv6) into a matcher with `has(address)`. Throws an Error naming the first
 * bad entry. Matching is node:net's BlockList, not our own prefix arithmetic.
 */
export function parseTrustedProxies(raw) {
  const list = new net.BlockList();
  const entries = String(raw ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const entry of entries) {
    const [addrPart, bits, ...rest] = entry.split('/');
    const addr = normalizeAddress(addrPart);
    const family = net.isIP(addr);
    const max = family === 4 ? 32 : 128;
    if (family === 0 || rest.length > 0 || (bits !== undefined && !(/^\d{1,3}$/.test(bits) && Number(bits) <= max))) {
      throw new Error(`not an IP address or CIDR range: ${JSON.stringify(entry)}`);
    }
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (bits === undefined) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(bits), type);
  }
  return {
    entries,
    has(address) {
      const a = normalizeAddress(address);
      const family = net.isIP(a);
      return family !== 0 && list.check(a, family === 4 ? 'ipv4' : 'ipv6');
    },
  };
}

/**
 * The client's address: the socket peer when it is not a trusted proxy;
 * otherwise the rightmost X-Forwarded-For entry that is not a trusted proxy.
 * When every entry is trusted, the leftmost one (the furthest hop we know).
 * An entry that is not an address ends the walk at the hop that wrote it,
 * so a malformed header cannot make up a client.
 */
export function clientAddress(peer, forwardedFor, trusted) {
  let client = normalizeAddress(peer);
  if (!trusted.has(client) || !forwardedFor) return client;
  const hops = forwardedFor.split(',').map(normalizeAddress);
  for (let i = hops.length - 1; i >= 0; i -= 1) {
    if (net.isIP(hops[i]) === 0) return client;
    client = hops[i];
    if (!trusted.has(client)) return client;
  }
  return client;
}
