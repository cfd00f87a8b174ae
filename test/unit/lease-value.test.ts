import t from 'tap';
import { parseNetConf } from '../../src/config/parse.js';
import type { NetConf } from '../../src/config/netconf.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import { leaseKeyName } from '../../src/subnet/etcd/layout.js';
import { formatLeaseValue, MAX_LEASE_VALUE_BYTES, parseLeaseEntry } from '../../src/subnet/etcd/lease-value.js';
import { sameLeaseAttrs, type LeaseAttrs } from '../../src/subnet/lease.js';

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

// flannel's dual-stack lease: one key naming both subnets, IPv4 first, joined by "&".
const DUAL_KEY = '10.5.3.0-24&fd00:10:0:3::-64';
const dualValue = {
  PublicIP: '192.0.2.10',
  PublicIPv6: '2001:db8::10',
  BackendType: 'vxlan',
  BackendData: { VNI: 1, VtepMAC: '7a:1b:2c:3d:4e:5f' },
  BackendV6Data: { VNI: 1, VtepMAC: '8a:1b:2c:3d:4e:5f' },
};
const withV6 = (fields: Record<string, unknown>) => json({ ...dualValue, ...fields });

/** What a parse yields, as plain data; absent IPv6 parts are absent keys. */
function view(name: string, value: string): Record<string, unknown> {
  const r = parseLeaseEntry(name, value, v4);
  if (!r.ok) return { invalid: r.reason };
  const { subnet, ipv6Subnet, attrs } = r.lease;
  return {
    subnet: subnet.toString(),
    publicIP: attrs.publicIP.toString(),
    backendData: attrs.backendData,
    ...(ipv6Subnet ? { ipv6Subnet: ipv6Subnet.toString() } : {}),
    ...(attrs.publicIPv6 ? { publicIPv6: attrs.publicIPv6.toString() } : {}),
    ...(attrs.backendV6Data !== undefined ? { backendV6Data: attrs.backendV6Data } : {}),
    ...(r.warning !== undefined ? { warning: r.warning } : {}),
  };
}

const ipv4HalfOnly = { subnet: '10.5.3.0/24', publicIP: '192.0.2.10', backendData: dualValue.BackendData };
const dualView = { ...ipv4HalfOnly, ipv6Subnet: 'fd00:10:0:3::/64', publicIPv6: '2001:db8::10', backendV6Data: dualValue.BackendV6Data };
/** The view of a dual-stack lease whose IPv6 half was dropped for `why`. */
const droppedFor = (why: string) => ({ ...ipv4HalfOnly, warning: `IPv6 half dropped: ${why}` });
const dualWith = (fields: Record<string, unknown>) => view(DUAL_KEY, withV6(fields));

t.test('flannel dual-stack lease: both halves read unchanged', async (t) => {
  t.strictSame(view(DUAL_KEY, json(dualValue)), dualView);
});

t.test('flannel dual-stack host-gw lease: no BackendV6Data is fine', async (t) => {
  const hostgw = json({ PublicIP: '192.0.2.10', PublicIPv6: '2001:db8::10', BackendType: 'host-gw' });
  t.strictSame(view(DUAL_KEY, hostgw), { subnet: '10.5.3.0/24', publicIP: '192.0.2.10', backendData: null, ipv6Subnet: 'fd00:10:0:3::/64', publicIPv6: '2001:db8::10' });
});

t.test('IPv6 fields on an IPv4-only key are not read, hostile or not', async (t) => {
  t.strictSame(view('10.5.3.0-24', withV6({ PublicIPv6: 'junk', BackendV6Data: 'x' })), ipv4HalfOnly);
});

t.test('IPv6-only keys', async (t) => {
  // flannel has no IPv6-only key: with IPv4 disabled it writes the zero IPv4 subnet in front.
  t.match(reason('0.0.0.0-0&fd00:10:0:3::-64', withV6({ PublicIP: '0.0.0.0' })), /subnet 0\.0\.0\.0\/0 is outside Network 10\.5\.0\.0\/16/);
  t.match(reason('fd00:10:0:3::-64&10.5.3.0-24', json(dualValue)), /dual-stack key starts with its IPv4 subnet/);
  t.match(reason('&fd00:10:0:3::-64', json(dualValue)), /key is not a subnet/);
});

t.test('a malformed IPv6 half in the key skips the whole lease', async (t) => {
  const v = json(dualValue);
  t.match(reason('10.5.3.0-24&', v), /after "&" is not an IPv6 subnet/);
  t.match(reason('10.5.3.0-24&junk-64', v), /after "&" is not an IPv6 subnet/);
  t.match(reason('10.5.3.0-24&fd00:10:0:3::', v), /after "&" is not an IPv6 subnet/, 'no prefix length');
  t.match(reason('10.5.3.0-24&10.6.3.0-24', v), /after "&" is not an IPv6 subnet/, 'IPv4 twice');
  t.match(reason('10.5.3.0-24&fd00:10:0:3::-64&fd00:10:0:4::-64', v), /after "&" is not an IPv6 subnet/, 'three halves');
  t.match(reason('10.5.3.0-24&fd00:10:0:3::1-64', v), /after "&" is not an IPv6 subnet/, 'host bits set');
  t.match(reason('10.5.3.0-24&fd00:10:0:3::-129', v), /after "&" is not an IPv6 subnet/);
  t.match(reason('10.5.3.0-24&FD00:10:0:3::-64', v), /canonical form \(want 10\.5\.3\.0-24&fd00:10:0:3::-64\)/);
  t.match(reason('10.5.3.0-24&fd00:10:0:3:0::-64', v), /canonical form/);
  t.match(reason('10.5.3.0-24&fd00:10:0:3::-064', v), /canonical form/);
  t.match(reason(`10.5.3.0-24&${'0'.repeat(200)}::-64`, v), /key is 217 characters, longer than any subnet/);
});

t.test('a bad IPv4 half skips the whole lease, as for an IPv4-only key', async (t) => {
  t.match(reason('10.6.3.0-24&fd00:10:0:3::-64', json(dualValue)), /outside Network/);
  t.match(reason(DUAL_KEY, withV6({ PublicIP: '2001:db8::10' })), /PublicIP 2001:db8::10 is IPv6, the Network is IPv4/);
});

t.test('an unusable PublicIPv6 drops the IPv6 half and keeps the IPv4 one, with a warning', async (t) => {
  t.strictSame(dualWith({ PublicIPv6: undefined }), droppedFor('PublicIPv6 is missing'));
  t.strictSame(dualWith({ PublicIPv6: null }), droppedFor('PublicIPv6 is missing'), 'null is how flannel writes "none"');
  t.strictSame(dualWith({ PublicIPv6: 7 }), droppedFor('PublicIPv6 is not a string (number)'));
  t.strictSame(dualWith({ PublicIPv6: 'fd00::1/64' }), droppedFor('PublicIPv6 "fd00::1/64" is not an IP address'));
  t.strictSame(dualWith({ PublicIPv6: '192.0.2.10' }), droppedFor("PublicIPv6 192.0.2.10 is IPv4, the key's subnet fd00:10:0:3::/64 is IPv6"));
  t.strictSame(dualWith({ PublicIPv6: '::ffff:192.0.2.10' }), droppedFor('PublicIPv6 ::ffff:c000:20a is not a unicast host address (ipv4Mapped)'));
  t.strictSame(dualWith({ PublicIPv6: 'ff02::1' }), droppedFor('PublicIPv6 ff02::1 is not a unicast host address (multicast)'));
  t.strictSame(dualWith({ PublicIPv6: '::1' }), droppedFor('PublicIPv6 ::1 is not a unicast host address (loopback)'));
  t.strictSame(dualWith({ PublicIPv6: '::' }), droppedFor('PublicIPv6 :: is not a unicast host address (unspecified)'));
});

t.test('hazards in BackendV6Data skip the whole lease, as in BackendData', async (t) => {
  const polluted = `{"PublicIP":"192.0.2.10","PublicIPv6":"2001:db8::10","BackendType":"vxlan","BackendV6Data":{"__proto__":{"polluted":true}}}`;
  t.match(reason(DUAL_KEY, polluted), /"__proto__" key/);
  t.match(reason(DUAL_KEY, `{"PublicIP":"192.0.2.10","PublicIPv6":"2001:db8::10","BackendType":"vxlan","BackendV6Data":${'['.repeat(40)}${']'.repeat(40)}}`), /nested deeper/);
});

const dualAttrs: LeaseAttrs = {
  publicIP: IP.parse('192.0.2.10'),
  publicIPv6: IP.parse('2001:db8::10'),
  backendType: 'vxlan',
  backendData: dualValue.BackendData,
  backendV6Data: dualValue.BackendV6Data,
};

t.test('writing: flannel dual-stack key and value', async (t) => {
  t.equal(leaseKeyName(Cidr.parse('10.5.3.0/24'), Cidr.parse('fd00:10:0:3::/64')), DUAL_KEY);
  t.equal(formatLeaseValue(dualAttrs), json(dualValue), 'flannel field order');
  t.throws(() => leaseKeyName(Cidr.parse('fd00:10:0:3::/64'), Cidr.parse('10.5.3.0/24')), /pairs an IPv4 and an IPv6 subnet/);
});

t.test('writing: an IPv4-only lease is unchanged', async (t) => {
  t.equal(leaseKeyName(Cidr.parse('10.5.3.0/24')), '10.5.3.0-24');
  const v4only = { publicIP: IP.parse('192.0.2.10'), backendType: 'vxlan', backendData: { VNI: 1 }, nodeName: 'n1', backendV6Data: { VNI: 1 } };
  t.equal(formatLeaseValue(v4only), '{"PublicIP":"192.0.2.10","BackendType":"vxlan","BackendData":{"VNI":1},"NodeName":"n1"}', 'no IPv6 fields without PublicIPv6');
});

t.test('dual-stack round trip: key and value read back as written', async (t) => {
  const key = leaseKeyName(Cidr.parse('10.5.3.0/24'), Cidr.parse('fd00:10:0:3::/64'));
  t.strictSame(view(key, formatLeaseValue(dualAttrs)), dualView);
});

t.test('attrs that differ only in their IPv6 half are not the same', async (t) => {
  t.notOk(sameLeaseAttrs(dualAttrs, { ...dualAttrs, publicIPv6: IP.parse('2001:db8::11') }), 'PublicIPv6');
  t.notOk(sameLeaseAttrs(dualAttrs, { ...dualAttrs, backendV6Data: { VNI: 2 } }), 'BackendV6Data');
  t.notOk(sameLeaseAttrs(dualAttrs, { ...dualAttrs, publicIPv6: undefined }), 'IPv6 half gone');
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

// A dual-stack cluster's net-conf: the IPv6 half of a key is checked against IPv6Network and IPv6SubnetLen.
const dual = parseNetConf(JSON.stringify({ Network: '10.5.0.0/16', EnableIPv6: true, IPv6Network: '2001:db8:1000::/56', Backend: { Type: 'vxlan' } }));

t.test('with EnableIPv6, an IPv6 half outside IPv6Network or of another length is dropped, naming subnet and network', async (t) => {
  const warningOf = (name: string) => {
    const r = parseLeaseEntry(name, json(dualValue), dual);
    return r.ok ? { ipv6Subnet: r.lease.ipv6Subnet?.toString(), warning: r.warning } : { invalid: r.reason };
  };
  t.strictSame(
    {
      inside: warningOf('10.5.3.0-24&2001:db8:1000:3::-64'),
      outside: warningOf('10.5.3.0-24&2001:db8:2000::-64'),
      longer: warningOf('10.5.3.0-24&2001:db8:1000:3::-80'),
      shorter: warningOf('10.5.3.0-24&2001:db8:1000::-60'),
    },
    {
      inside: { ipv6Subnet: '2001:db8:1000:3::/64', warning: undefined },
      outside: { ipv6Subnet: undefined, warning: 'IPv6 half dropped: subnet 2001:db8:2000::/64 is outside IPv6Network 2001:db8:1000::/56' },
      longer: { ipv6Subnet: undefined, warning: 'IPv6 half dropped: subnet 2001:db8:1000:3::/80 is not a /64 (IPv6SubnetLen)' },
      shorter: { ipv6Subnet: undefined, warning: 'IPv6 half dropped: subnet 2001:db8:1000::/60 is not a /64 (IPv6SubnetLen)' },
    },
  );
});

t.test('without EnableIPv6 there is no IPv6Network to check a half against: it is read as written', async (t) => {
  t.equal(view('10.5.3.0-24&2001:db8:2000::-64', json(dualValue)).ipv6Subnet, '2001:db8:2000::/64');
});
