import { pino } from 'pino';
import t from 'tap';
import type { ExternalInterface } from '../../backends/backend.js';
import { PeerWarnings } from '../../backends/peer-warnings.js';
import { UDP_DEVICE, udpDesired, udpMtu, udpPeers } from '../../backends/udp/desired.js';
import { parseUdpOptions } from '../../backends/udp/options.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';

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
  const state = udpDesired(own, Cidr.parse('10.5.0.0/16'), 1472);
  t.same(state, {
    links: [{ name: 'weft0', spec: { kind: 'tun' }, mtu: 1472 }],
    addrs: [{ dev: 'weft0', cidr: '10.5.1.0/32' }],
    routes: [{ dst: '10.5.0.0/16', dev: 'weft0' }],
    neighs: [],
    fdb: [],
  });
  t.equal(UDP_DEVICE, 'weft0');
  const own6 = lease('fd00:5:1::/64', '192.0.2.1');
  t.same(udpDesired(own6, Cidr.parse('fd00:5::/48'), 1400).addrs, [{ dev: 'weft0', cidr: 'fd00:5:1::/128' }], 'IPv6: a /128');
});

t.test('desired state: an on-link peer of another backend (mid-switch) gets a direct route, reported once', async (t) => {
  const { logger, lines } = capture();
  const warnings = new PeerWarnings(logger);
  const peers = [own, lease('10.5.2.0/24', '192.0.2.2'), lease('10.5.3.0/24', '192.0.2.3', 'vxlan'), lease('10.5.4.0/24', '203.0.113.4', 'host-gw')];
  udpDesired(own, Cidr.parse('10.5.0.0/16'), 1472, { peers, ext, warnings });
  const state = udpDesired(own, Cidr.parse('10.5.0.0/16'), 1472, { peers, ext, warnings });
  t.same(state.routes, [
    { dst: '10.5.0.0/16', dev: 'weft0' },
    { dst: '10.5.3.0/24', via: '192.0.2.3', dev: 'eth0' },
  ], 'the udp peer through the loop, the on-link vxlan peer directly, the off-link host-gw peer not at all');
  t.same(lines.map((l) => l.msg.split(':')[0]), ['reaching peer 10.5.3.0/24 at 192.0.2.3 by a direct route on eth0', 'ignoring peer 10.5.4.0/24 at 203.0.113.4'], 'one warning each over two passes');
});

t.test('MTU: underlay minus 28 (IPv4) or 48 (IPv6) unless Backend.MTU says otherwise', async (t) => {
  t.equal(udpMtu({ port: 8285, mode: 'fast' }, ext), 1472);
  t.equal(udpMtu({ port: 8285, mode: 'fast' }, { ...ext, ip: IP.parse('2001:db8::1'), mtu: 9000 }), 8952);
  t.equal(udpMtu({ port: 8285, mode: 'fast', mtu: 1300 }, ext), 1300);
});

t.test('peers: self, other backends and the wrong family are left out; the wrong family reported once', async (t) => {
  const { logger, lines } = capture();
  const warnings = new PeerWarnings(logger);
  const peers = [
    lease('10.5.1.0/24', '192.0.2.1'), // ourselves
    lease('10.5.2.0/24', '192.0.2.2'),
    lease('10.5.3.0/24', '192.0.2.3', 'vxlan'),
    lease('10.5.4.0/24', '2001:db8::4'),
    lease('10.5.5.0/24', '192.0.2.5'),
  ];
  const first = udpPeers(own, peers, ext, warnings);
  t.same(first, [
    { subnet: '10.5.2.0/24', publicIP: '192.0.2.2' },
    { subnet: '10.5.5.0/24', publicIP: '192.0.2.5' },
  ]);
  t.equal(lines.length, 1, 'one warning: the vxlan peer is udpDesired\'s to report');
  t.match(lines[0]!.msg, /10\.5\.4\.0\/24.*IPv6.*IPv4/);
  udpPeers(own, peers, ext, warnings);
  t.equal(lines.length, 1, 'not repeated on the next pass');
});
