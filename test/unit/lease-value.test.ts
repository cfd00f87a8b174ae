import t from 'tap';
import { parseNetConf } from '../../src/config/parse.js';
import type { NetConf } from '../../src/config/netconf.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import { formatLeaseValue, MAX_LEASE_VALUE_BYTES, parseLeaseEntry } from '../../src/subnet/etcd/lease-value.js';

const v4 = parseNetConf(JSON.stringify({ Network: '10.5.0.0/16', Backend: { Type: 'host-gw' } }));
const good = { PublicIP: '192.0.2.10', BackendType: 'host-gw' };
const json = (v: unknown) => JSON.stringify(v);

function reason(name: string, value: string | Uint8Array, net = v4): string {
  const r = parseLeaseEntry(name, value, net);
  return r.ok ? 'ok' : r.reason;
}

t.test('valid values, flannel wire form', async (t) => {
  const r = parseLeaseEntry('10.5.3.0-24', json(good), v4);
  t.ok(r.ok);
  if (!r.ok) return;
  t.equal(r.lease.subnet.toString(), '10.5.3.0/24');
  t.equal(r.lease.attrs.publicIP.toString(), '192.0.2.10');
  t.equal(r.lease.attrs.backendType, 'host-gw');
  t.equal(r.lease.attrs.backendData, null);
  t.equal(r.lease.attrs.nodeName, undefined);
  t.equal(r.lease.expiresAt, undefined);

  // flannel's own vxlan lease, extra fields and all
  const flannel = '{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"7a:1b:2c:3d:4e:5f"}}';
  const f = parseLeaseEntry('10.5.34.0-24', Buffer.from(flannel), v4);
  t.ok(f.ok);
  if (f.ok) t.same(f.lease.attrs.backendData, { VNI: 1, VtepMAC: '7a:1b:2c:3d:4e:5f' });

  // BackendData is opaque: any JSON is fine
  for (const data of ['text', 42, [1, 2], true, { a: { b: [null] } }]) {
    t.equal(reason('10.5.3.0-24', json({ ...good, BackendData: data })), 'ok', `BackendData ${json(data)}`);
  }
  const named = parseLeaseEntry('10.5.3.0-24', json({ ...good, NodeName: 'node-1' }), v4);
  t.equal(named.ok && named.lease.attrs.nodeName, 'node-1');
});

t.test('round trip through formatLeaseValue', async (t) => {
  const attrs = { publicIP: IP.parse('198.51.100.7'), backendType: 'vxlan', backendData: { VNI: 4 }, nodeName: 'n7' };
  const r = parseLeaseEntry('10.5.200.0-24', formatLeaseValue(attrs), v4);
  t.ok(r.ok);
  if (r.ok) {
    t.equal(r.lease.attrs.publicIP.toString(), '198.51.100.7');
    t.same(r.lease.attrs.backendData, { VNI: 4 });
    t.equal(r.lease.attrs.nodeName, 'n7');
  }
  t.notMatch(formatLeaseValue({ publicIP: IP.parse('198.51.100.7'), backendType: 'host-gw', backendData: null }), /BackendData|NodeName/);
});

t.test('keys that are not a leasable subnet', async (t) => {
  const v = json(good);
  t.match(reason('junk', v), /key is not a subnet/);
  t.match(reason('', v), /key is not a subnet/);
  t.match(reason('x/10.5.3.0-24', v), /key is not a subnet/);
  t.match(reason('10.5.3.0-24/x', v), /key is not a subnet/);
  t.match(reason('10.5.3.0-', v), /key is not a subnet/);
  t.match(reason('010.5.3.0-24', v), /key is not a subnet/);
  t.match(reason('10.5.3.1-24', v), /key is not a subnet/, 'host bits set');
  t.match(reason('10.5.3.0-024', v), /canonical/);
  t.match(reason('10.6.3.0-24', v), /outside Network 10\.5\.0\.0\/16/);
  t.match(reason('10.5.3.0-25', v), /not a \/24/);
  t.match(reason('10.5.0.0-16', v), /not a \/24/);
  t.match(reason('fd00::-64', v), /outside Network/);
});

t.test('values that are not a lease object', async (t) => {
  t.match(reason('10.5.3.0-24', ''), /not JSON/);
  t.match(reason('10.5.3.0-24', '{"PublicIP":'), /not JSON/);
  t.match(reason('10.5.3.0-24', 'null'), /not a JSON object/);
  t.match(reason('10.5.3.0-24', '[]'), /not a JSON object/);
  t.match(reason('10.5.3.0-24', '"192.0.2.1"'), /not a JSON object/);
  t.match(reason('10.5.3.0-24', '7'), /not a JSON object/);
  t.match(reason('10.5.3.0-24', Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d])), /not UTF-8/);
});

t.test('PublicIP', async (t) => {
  const with_ = (ip: unknown) => reason('10.5.3.0-24', json({ ...good, PublicIP: ip }));
  t.match(reason('10.5.3.0-24', json({ BackendType: 'host-gw' })), /PublicIP is missing/);
  t.match(with_(3221225985), /not a string \(number\)/);
  t.match(with_(['192.0.2.1']), /not a string \(object\)/);
  t.match(with_({ ip: '192.0.2.1' }), /not a string \(object\)/);
  t.match(with_(null), /not a string/);
  t.match(with_('10.1'), /not an IP address/);
  t.match(with_('999.1.1.1'), /not an IP address/);
  t.match(with_('192.0.2.1/24'), /not an IP address/);
  t.match(with_(' 192.0.2.1'), /not an IP address/);
  t.match(with_('fd00::1'), /PublicIP fd00::1 is IPv6, the Network is IPv4/);
  t.match(with_('::ffff:192.0.2.1'), /is IPv6/);
  for (const ip of ['0.0.0.0', '224.0.0.1', '127.0.0.1', '255.255.255.255']) t.match(with_(ip), /not a unicast host address/, ip);
  t.match(with_('x'.repeat(5000)), /not an IP address/);
});

t.test('BackendType and NodeName', async (t) => {
  t.match(reason('10.5.3.0-24', json({ PublicIP: '192.0.2.10' })), /BackendType is missing/);
  t.match(reason('10.5.3.0-24', json({ ...good, BackendType: 7 })), /BackendType is missing or not a string/);
  t.match(reason('10.5.3.0-24', json({ ...good, BackendType: 'wireguard' })), /unknown BackendType "wireguard" \(known: host-gw, vxlan, udp, bgp\)/);
  t.match(reason('10.5.3.0-24', json({ ...good, BackendType: 'HOST-GW' })), /unknown BackendType/);
  t.match(reason('10.5.3.0-24', json({ ...good, NodeName: 12 })), /NodeName is not a string/);
  t.match(reason('10.5.3.0-24', json({ ...good, NodeName: 'evil\u001b[2Jname' })), /control characters/);
  t.match(reason('10.5.3.0-24', json({ ...good, NodeName: 'n'.repeat(300) })), /too long/);
});

t.test('oversize values are refused unread, the limit itself is fine', async (t) => {
  const base = json({ ...good, BackendData: '' });
  const exact = json({ ...good, BackendData: 'x'.repeat(MAX_LEASE_VALUE_BYTES - base.length) });
  t.equal(Buffer.byteLength(exact), MAX_LEASE_VALUE_BYTES);
  t.equal(reason('10.5.3.0-24', exact), 'ok');
  t.match(reason('10.5.3.0-24', exact.replace('"x', '"xx')), /8193 bytes \(limit 8192\)/);
  t.match(reason('10.5.3.0-24', Buffer.alloc(1 << 20, 0x20)), /1048576 bytes/);
  // multi-byte characters count as bytes, not characters
  t.match(reason('10.5.3.0-24', json({ ...good, BackendData: 'é'.repeat(5000) })), /bytes \(limit 8192\)/);
});

t.test('prototype pollution is refused and pollutes nothing', async (t) => {
  const top = `{"__proto__":{"polluted":true},"PublicIP":"192.0.2.10","BackendType":"host-gw"}`;
  t.match(reason('10.5.3.0-24', top), /"__proto__" key/);
  const nested = `{"PublicIP":"192.0.2.10","BackendType":"vxlan","BackendData":{"a":[{"__proto__":{"polluted":true}}]}}`;
  t.match(reason('10.5.3.0-24', nested), /"__proto__" key/);
  // "constructor"/"prototype" are plain data once parsed; they are carried, never applied
  const ctor = json({ ...good, BackendData: { constructor: { prototype: { polluted: true } } } });
  t.equal(reason('10.5.3.0-24', ctor), 'ok');
  t.equal(({} as Record<string, unknown>).polluted, undefined);

  // A field inherited from a polluted Object.prototype must not count as present.
  Object.defineProperty(Object.prototype, 'BackendType', { value: 'host-gw', configurable: true, writable: true });
  try {
    t.match(reason('10.5.3.0-24', json({ PublicIP: '192.0.2.10' })), /BackendType is missing/);
  } finally {
    delete (Object.prototype as Record<string, unknown>).BackendType;
  }
});

t.test('deep nesting is refused without blowing the stack', async (t) => {
  const nest = (n: number) => '['.repeat(n) + ']'.repeat(n);
  t.equal(reason('10.5.3.0-24', `{"PublicIP":"192.0.2.10","BackendType":"vxlan","BackendData":${nest(10)}}`), 'ok');
  t.match(reason('10.5.3.0-24', `{"PublicIP":"192.0.2.10","BackendType":"vxlan","BackendData":${nest(40)}}`), /nested deeper than 32/);
  const deepest = `{"PublicIP":"192.0.2.10","BackendType":"vxlan","BackendData":${nest(4000)}}`;
  t.ok(Buffer.byteLength(deepest) <= MAX_LEASE_VALUE_BYTES);
  t.match(reason('10.5.3.0-24', deepest), /nested deeper/);
});

t.test('IPv6 network: one code path', async (t) => {
  // Built by hand: net-conf's top-level Network is always IPv4; lease parsing is family-generic already.
  const network = Cidr.parse('fd00:10::/48');
  const v6: NetConf = {
    network,
    subnetLen: 64,
    subnetMin: network.subnet(64, 1n),
    subnetMax: network.subnet(64, 0xffffn),
    backend: { type: 'host-gw', raw: {} },
  };
  const r = parseLeaseEntry('fd00:10:0:3::-64', json({ PublicIP: '2001:db8::7', BackendType: 'host-gw' }), v6);
  t.ok(r.ok);
  if (r.ok) t.equal(r.lease.subnet.toString(), 'fd00:10:0:3::/64');
  t.match(reason('fd00:10:0:3:0::-64', json({ PublicIP: '2001:db8::7', BackendType: 'host-gw' }), v6), /canonical form \(want fd00:10:0:3::-64\)/);
  t.match(reason('FD00:10:0:3::-64', json({ PublicIP: '2001:db8::7', BackendType: 'host-gw' }), v6), /canonical/);
  t.match(reason('fd00:10:0:3::-64', json(good), v6), /PublicIP 192\.0\.2\.10 is IPv4, the Network is IPv6/);
  t.match(reason('10.5.3.0-24', json(good), v6), /outside Network/);
});

t.test('never throws on arbitrary input', async (t) => {
  // Deterministic pseudo-random bytes and JSON-ish fragments.
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const pieces = ['{', '}', '[', ']', '"PublicIP"', '"BackendType"', '"BackendData"', ':', ',', '"192.0.2.1"', '"host-gw"', 'null', '1e999', '"\\u0000"', '"__proto__"', '-0', 'true'];
  let threw = 0;
  for (let i = 0; i < 2000; i++) {
    const value =
      i % 2 === 0
        ? Array.from({ length: rnd(30) }, () => pieces[rnd(pieces.length)]).join('')
        : Uint8Array.from({ length: rnd(64) }, () => rnd(256));
    const key = ['10.5.3.0-24', 'a-b', '-', '10.5.3.0-99', '1.2.3.4-5-6'][rnd(5)]!;
    try {
      parseLeaseEntry(key, value, v4);
    } catch {
      threw++;
    }
  }
  t.equal(threw, 0);
});
