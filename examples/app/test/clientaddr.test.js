// The client's address behind the load balancers (src/clientaddr.js): only
// X-Forwarded-For entries that trusted proxies wrote count. Pure functions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clientAddress, parseTrustedProxies } from '../src/clientaddr.js';

const LB = '10.0.0.5';

test('clientAddress: an untrusted peer is the client, whatever X-Forwarded-For says', () => {
  const trusted = parseTrustedProxies(LB);
  assert.equal(clientAddress('198.51.100.7', '203.0.113.1', trusted), '198.51.100.7');
  assert.equal(clientAddress('198.51.100.7', '10.0.0.5', trusted), '198.51.100.7');
  // Nothing trusted at all (TRUSTED_PROXIES unset): always the peer.
  assert.equal(clientAddress(LB, '203.0.113.1', parseTrustedProxies('')), LB);
});

test('clientAddress: behind a trusted LB, the rightmost untrusted X-Forwarded-For entry', () => {
  const trusted = parseTrustedProxies(`${LB}, 10.0.0.6`);
  // The client made up the left entry; the LB appended what it saw.
  assert.equal(clientAddress(LB, '1.2.3.4, 203.0.113.9', trusted), '203.0.113.9');
  assert.equal(clientAddress('10.0.0.6', ' 203.0.113.9 ', trusted), '203.0.113.9');
  // No header: the LB itself (e.g. its own health probe).
  assert.equal(clientAddress(LB, undefined, trusted), LB);
  assert.equal(clientAddress(LB, '', trusted), LB);
});

test('clientAddress: CIDR ranges skip every trusted hop; all trusted gives the leftmost', () => {
  const trusted = parseTrustedProxies('10.0.0.0/24,192.168.8.0/22,fd00::/8');
  assert.equal(clientAddress(LB, '198.51.100.9, 192.168.9.200, 10.0.0.77', trusted), '198.51.100.9');
  assert.equal(clientAddress(LB, '198.51.100.9, 192.168.12.1', trusted), '192.168.12.1'); // outside /22
  assert.equal(clientAddress('fd12::1', '2001:db8::5, fd00::9', trusted), '2001:db8::5');
  assert.equal(clientAddress(LB, '10.0.0.8, 192.168.8.1', trusted), '10.0.0.8');
});

test('clientAddress: IPv4-mapped IPv6 (::ffff:) is the IPv4 address, in the peer, the header and the list', () => {
  assert.equal(clientAddress('::ffff:198.51.100.7', undefined, parseTrustedProxies('')), '198.51.100.7');
  const trusted = parseTrustedProxies(LB);
  assert.equal(clientAddress(`::ffff:${LB}`, '::FFFF:203.0.113.4', trusted), '203.0.113.4');
  assert.equal(clientAddress(LB, '203.0.113.4', parseTrustedProxies(`::ffff:${LB}`)), '203.0.113.4');
});

test('clientAddress: a malformed entry ends the walk at the trusted hop that passed it on', () => {
  const trusted = parseTrustedProxies('10.0.0.0/24');
  assert.equal(clientAddress(LB, '203.0.113.4, junk, 10.0.0.6', trusted), '10.0.0.6');
  assert.equal(clientAddress(LB, 'junk', trusted), LB);
});

test('parseTrustedProxies refuses what is not an address or a range', () => {
  for (const bad of ['lb1', '10.0.0.0/33', '10.0.0.1/', 'fd00::/129', '10.0.0.0/8/1', '10.0.0.256']) {
    assert.throws(() => parseTrustedProxies(bad), /not an IP address or CIDR range/, bad);
  }
  assert.deepEqual(parseTrustedProxies(' 10.0.0.5 ,, fd00::/8 ').entries, ['10.0.0.5', 'fd00::/8']);
});
