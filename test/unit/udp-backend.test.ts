import { pino } from 'pino';
import t from 'tap';
import { extSides, type ExternalInterface } from '../../backends/backend.js';
import { NodeFamilies } from '../../backends/peers.js';
import { UDP_DEVICE, udpDesired, udpMtu, udpTable } from '../../backends/udp/desired.js';
import { parseUdpOptions } from '../../backends/udp/options.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';
import { extWithIPv6, withIPv6 } from '../support/dual-stack.js';

const ext: ExternalInterface = {
  name: 'eth0',
  ip: IP.parse('192.0.2.1'),
  publicIP: IP.parse('192.0.2.1'),
  mtu: 1500,
  connected: [Cidr.parse('192.0.2.0/24')],
};

function lease(subnet: string, publicIP: string, backendType = 'udp'): Lease {
  return { subnet: Cidr.parse(subnet), attrs: { publicIP: IP.parse(publicIP), backendType, backendData: null } };
}
const own = lease('10.5.1.0/24', '192.0.2.1');
const NET = [Cidr.parse('10.5.0.0/16')];
const NET_DUAL = [...NET, Cidr.parse('2001:db8:1000::/56')];
// A dual-stack node: the same interface with an IPv6 side, the lease with an IPv6 half.
const ext6 = extWithIPv6(ext, '2001:db8::1', ['2001:db8::/64']);
const ownDual = withIPv6(own, '2001:db8:1000:1::/64', '2001:db8::1');

function capture() {
  const lines: { msg: string; peer?: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

t.test('options: defaults, every key, and errors naming the key', async (t) => {
  t.same(parseUdpOptions({}), { port: 8285, mode: 'fast' });
  t.same(parseUdpOptions({ Port: 9000, MTU: 1400, Mode: 'simple', Queues: 1 }), { port: 9000, mtu: 1400, mode: 'simple', queues: 1 });
  t.same(parseUdpOptions({ Mode: 'fast', Queues: 8 }), { port: 8285, mode: 'fast', queues: 8 });
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ Port: 0 }, /Backend\.Port 0 is out of range 1\.\.65535/],
    [{ Port: '8285' }, /Backend\.Port must be an integer/],
    [{ MTU: 67 }, /Backend\.MTU 67 is out of range/],
    [{ Mode: 'turbo' }, /Backend\.Mode "turbo" is not one of "fast", "simple"/],
    [{ Mode: 1 }, /Backend\.Mode must be a string/],
    [{ Queues: 0 }, /Backend\.Queues 0 is out of range 1\.\.64/],
    [{ Queues: 4, Mode: 'simple' }, /Backend\.Queues 4 needs Mode "fast"/],
    [{ port: 1 }, /unknown key "Backend\.port" \(did you mean "Backend\.Port"\?\)/],
    [{ VNI: 1 }, /unknown key "Backend\.VNI"/],
  ];
  for (const [raw, pattern] of bad) t.throws(() => parseUdpOptions(raw), { name: 'ConfigError', message: pattern }, JSON.stringify(raw));
});

t.test('desired state: weft0 with the subnet address, one route for the network', async (t) => {
  const state = udpDesired(new NodeFamilies(capture().logger), own, [], ext, NET, 1472);
  t.same(state, {
    links: [{ name: 'weft0', spec: { kind: 'tun' }, mtu: 1472 }],
    addrs: [{ dev: 'weft0', cidr: '10.5.1.0/32' }],
    routes: [{ dst: '10.5.0.0/16', dev: 'weft0' }],
    neighs: [],
    fdb: [],
  });
  t.equal(UDP_DEVICE, 'weft0');
});

t.test('desired state, dual-stack: one device holding both subnet addresses, both Networks through it', async (t) => {
  const state = udpDesired(new NodeFamilies(capture().logger), ownDual, [], ext6, NET_DUAL, 1452);
  t.same(state, {
    links: [{ name: 'weft0', spec: { kind: 'tun' }, mtu: 1452 }],
    addrs: [{ dev: 'weft0', cidr: '10.5.1.0/32' }, { dev: 'weft0', cidr: '2001:db8:1000:1::/128' }],
    routes: [{ dst: '10.5.0.0/16', dev: 'weft0' }, { dst: '2001:db8:1000::/56', dev: 'weft0' }],
    neighs: [],
    fdb: [],
  });
  // IPv6 only: the lease, the interface and the Network are all IPv6.
  const own6 = lease('2001:db8:1000:1::/64', '2001:db8::1');
  const v6only: ExternalInterface = { ...ext, ip: IP.parse('2001:db8::1'), publicIP: IP.parse('2001:db8::1'), connected: [] };
  const only = udpDesired(new NodeFamilies(capture().logger), own6, [], v6only, [Cidr.parse('2001:db8:1000::/56')], 1452);
  t.same([only.addrs, only.routes], [[{ dev: 'weft0', cidr: '2001:db8:1000:1::/128' }], [{ dst: '2001:db8:1000::/56', dev: 'weft0' }]], 'IPv6 only');
});

t.test('desired state: an on-link peer of another backend (mid-switch) gets a direct route, reported once', async (t) => {
  const { logger, lines } = capture();
  const families = new NodeFamilies(logger);
  const peers = [own, lease('10.5.2.0/24', '192.0.2.2'), lease('10.5.3.0/24', '192.0.2.3', 'vxlan'), lease('10.5.4.0/24', '203.0.113.4', 'host-gw')];
  udpDesired(families, own, peers, ext, NET, 1472);
  const state = udpDesired(families, own, peers, ext, NET, 1472);
  t.same(state.routes, [
    { dst: '10.5.0.0/16', dev: 'weft0' },
    { dst: '10.5.3.0/24', via: '192.0.2.3', dev: 'eth0' },
  ], 'the udp peer through the loop, the on-link vxlan peer directly, the off-link host-gw peer not at all');
  t.same(lines.map((l) => l.msg.split(':')[0]), ['reaching peer 10.5.3.0/24 at 192.0.2.3 by a direct route on eth0', 'ignoring peer 10.5.4.0/24 at 203.0.113.4'], 'one warning each over two passes');
});

t.test('MTU: underlay minus 28 (IPv4) or 48 (IPv6), the smaller on a dual-stack node, unless Backend.MTU says otherwise', async (t) => {
  const fast = { port: 8285, mode: 'fast' } as const;
  t.equal(udpMtu(fast, extSides(ext, false)), 1472);
  t.equal(udpMtu(fast, extSides({ ...ext, ip: IP.parse('2001:db8::1'), mtu: 9000 }, false)), 8952);
  t.equal(udpMtu(fast, extSides(ext6, true)), 1452, 'dual-stack: the IPv6 underlay costs 20 bytes more');
  t.equal(udpMtu(fast, extSides(ext6, false)), 1472, 'IPv6 not enabled: the IPv4 underlay only');
  t.equal(udpMtu({ ...fast, mtu: 1300 }, extSides(ext6, true)), 1300);
});

t.test('peers: self, other backends and the wrong family are left out; the wrong family reported once', async (t) => {
  const { logger, lines } = capture();
  const families = new NodeFamilies(logger);
  const peers = [
    lease('10.5.1.0/24', '192.0.2.1'), // ourselves
    lease('10.5.2.0/24', '192.0.2.2'),
    lease('10.5.3.0/24', '192.0.2.3', 'vxlan'),
    lease('10.5.4.0/24', '2001:db8::4'),
    lease('10.5.5.0/24', '192.0.2.5'),
  ];
  const first = udpTable(families, own, peers, ext);
  t.same(first, {
    peers: [
      { subnet: '10.5.2.0/24', publicIP: '192.0.2.2' },
      { subnet: '10.5.5.0/24', publicIP: '192.0.2.5' },
    ],
    ownSubnet: '10.5.1.0/24',
  });
  t.equal(lines.length, 1, 'one warning: the vxlan peer is udpDesired\'s to report');
  t.match(lines[0]!.msg, /10\.5\.4\.0\/24.*IPv6.*IPv4/);
  udpTable(families, own, peers, ext);
  t.equal(lines.length, 1, 'not repeated on the next pass');
});

t.test('peers, dual-stack: IPv4 subnets over PublicIP, IPv6 subnets over PublicIPv6; a peer without an IPv6 half in IPv4 only', async (t) => {
  const { logger, lines } = capture();
  const families = new NodeFamilies(logger);
  const peers = [
    ownDual,
    withIPv6(lease('10.5.2.0/24', '192.0.2.2'), '2001:db8:1000:2::/64', '2001:db8::2'),
    lease('10.5.3.0/24', '192.0.2.3'),
  ];
  t.same(udpTable(families, ownDual, peers, ext6), {
    peers: [
      { subnet: '10.5.2.0/24', publicIP: '192.0.2.2' },
      { subnet: '10.5.3.0/24', publicIP: '192.0.2.3' },
      { subnet: '2001:db8:1000:2::/64', publicIP: '2001:db8::2' },
    ],
    ownSubnet: ['10.5.1.0/24', '2001:db8:1000:1::/64'],
  });
  t.same(lines.map((l) => l.msg.split(':')[0]), ['peer 10.5.3.0/24 at 192.0.2.3 is reached in IPv4 only'], 'the peer lacking an IPv6 half, reported');
  t.same(udpTable(families, ownDual, peers, ext).ownSubnet, '10.5.1.0/24', 'an interface without IPv6: the IPv4 half only');
});
