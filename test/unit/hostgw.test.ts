import { pino } from 'pino';
import t from 'tap';
import type { BackendContext, ExternalInterface } from '../../backends/backend.js';
import { createHostGwBackend } from '../../backends/hostgw/index.js';
import { ConfigError } from '../../src/config/netconf.js';
import { parseNetConf } from '../../src/config/parse.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import type { Lease } from '../../src/subnet/lease.js';
import { extWithIPv6, withIPv6 } from '../support/dual-stack.js';

const ext: ExternalInterface = {
  name: 'eth0',
  ip: IP.parse('192.0.2.1'),
  publicIP: IP.parse('192.0.2.1'),
  mtu: 1500,
  connected: [Cidr.parse('192.0.2.0/24'), Cidr.parse('198.51.100.0/25')],
};

function lease(subnet: string, publicIP: string, backendType = 'host-gw', backendData: unknown = null): Lease {
  return { subnet: Cidr.parse(subnet), attrs: { publicIP: IP.parse(publicIP), backendType, backendData } };
}

/** A host-gw backend whose warnings land in `warnings`. */
async function hostGw(raw: Record<string, unknown> = {}, ext0 = ext) {
  const warnings: { msg: string; peer: string; publicIP: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void warnings.push(JSON.parse(line)) });
  const config = parseNetConf(JSON.stringify({ Network: '10.5.0.0/16', Backend: { Type: 'host-gw' } }));
  config.backend.raw = raw;
  const ctx: BackendContext = { config, ext: ext0, logger, nodeName: 'node-1', runDir: '/nonexistent' };
  return { backend: await createHostGwBackend(ctx), warnings };
}

const own = lease('10.5.1.0/24', '192.0.2.1');

t.test('one route per on-link peer, via its PublicIP on the external interface', async (t) => {
  const { backend, warnings } = await hostGw();
  t.equal(backend.type, 'host-gw');
  t.equal(backend.mtu, 1500, 'no encapsulation: the underlay MTU');
  t.equal(backend.backendData, null);
  const peers = [lease('10.5.2.0/24', '192.0.2.2'), lease('10.5.3.0/24', '198.51.100.77')];
  const state = backend.desired(own, peers);
  t.same(state.routes, [
    { dst: '10.5.2.0/24', via: '192.0.2.2', dev: 'eth0' },
    { dst: '10.5.3.0/24', via: '198.51.100.77', dev: 'eth0' },
  ]);
  t.same([state.links, state.addrs, state.neighs, state.fdb], [[], [], [], []], 'routes only');
  t.same(warnings, []);
  t.same(backend.desired(own, peers), state, 'the same input gives the same state');
  await backend.stop({ teardown: true });
});

t.test('own lease is skipped, by subnet or by address', async (t) => {
  const { backend, warnings } = await hostGw();
  const state = backend.desired(own, [own, lease('10.5.9.0/24', '192.0.2.1'), lease('10.5.2.0/24', '192.0.2.2')]);
  t.same(state.routes.map((r) => r.dst), ['10.5.2.0/24']);
  t.same(warnings, []);
});

t.test('an off-link peer is refused with one warning; the others keep working', async (t) => {
  const { backend, warnings } = await hostGw();
  const far = lease('10.5.4.0/24', '198.51.100.200'); // outside 198.51.100.0/25
  const peers = [lease('10.5.2.0/24', '192.0.2.2'), far, lease('10.5.3.0/24', '192.0.2.3')];
  for (let i = 0; i < 3; i++) {
    t.same(backend.desired(own, peers).routes.map((r) => r.dst), ['10.5.2.0/24', '10.5.3.0/24']);
  }
  t.equal(warnings.length, 1, 'warned once over three passes');
  const w = warnings[0]!;
  t.equal(w.peer, '10.5.4.0/24');
  t.equal(w.publicIP, '198.51.100.200');
  t.match(w.msg, /host-gw cannot reach peer 10\.5\.4\.0\/24 at 198\.51\.100\.200: not on a network directly connected to eth0 \(192\.0\.2\.0\/24, 198\.51\.100\.0\/25\); use the vxlan backend/);
});

t.test('a peer of another backend type: reached directly when on-link, else ignored; one warning each', async (t) => {
  const { backend, warnings } = await hostGw();
  const vx = lease('10.5.5.0/24', '192.0.2.5', 'vxlan', { VNI: 1, VtepMAC: '0a:00:00:00:00:05' });
  const far = lease('10.5.6.0/24', '203.0.113.6', 'udp');
  const peers = [vx, far, lease('10.5.2.0/24', '192.0.2.2')];
  backend.desired(own, peers);
  t.same(backend.desired(own, peers).routes.map((r) => r.dst), ['10.5.5.0/24', '10.5.2.0/24'], 'the on-link vxlan peer routed as host-gw would');
  t.same(warnings.map((w) => w.msg), [
    'reaching peer 10.5.5.0/24 at 192.0.2.5 by a direct route on eth0: its lease is for the "vxlan" backend and this node runs host-gw; all nodes must use one backend',
    'ignoring peer 10.5.6.0/24 at 203.0.113.6: its lease is for the "udp" backend and this node runs host-gw; all nodes must use one backend',
  ], 'one warning each over two passes');
});

t.test('warned again only when the peer changes, leaves and returns, or recovers and fails again', async (t) => {
  const { backend, warnings } = await hostGw();
  const near = lease('10.5.2.0/24', '192.0.2.2');
  const far = (ip: string) => lease('10.5.4.0/24', ip);

  backend.desired(own, [near, far('203.0.113.1')]);
  backend.desired(own, [near, far('203.0.113.1')]);
  t.equal(warnings.length, 1, 'first sight');

  backend.desired(own, [near, far('203.0.113.2')]);
  t.equal(warnings.length, 2, 'its address changed, still off-link: news');
  t.equal(warnings[1]!.publicIP, '203.0.113.2');

  t.same(backend.desired(own, [near, far('192.0.2.4')]).routes.length, 2, 'moved on-link: routed');
  t.equal(warnings.length, 2, 'no warning for a good peer');
  backend.desired(own, [near, far('203.0.113.2')]);
  t.equal(warnings.length, 3, 'off-link again after being fine: news');

  backend.desired(own, [near]);
  backend.desired(own, [near, far('203.0.113.2')]);
  t.equal(warnings.length, 4, 'left and came back: news');

  backend.desired(own, [near, lease('10.5.4.0/24', '203.0.113.2', 'udp')]);
  t.equal(warnings.length, 5, 'changed backend type: news');
  t.match(warnings[4]!.msg, /"udp" backend/);
  backend.desired(own, [near, lease('10.5.4.0/24', '203.0.113.2', 'udp')]);
  t.equal(warnings.length, 5);
});

t.test('warnings are per backend instance', async (t) => {
  const a = await hostGw();
  const b = await hostGw();
  const peers = [lease('10.5.4.0/24', '203.0.113.1')];
  a.backend.desired(own, peers);
  b.backend.desired(own, peers);
  t.equal(a.warnings.length, 1);
  t.equal(b.warnings.length, 1, 'a second backend (e.g. after a restart) says it again');
});

t.test('an IPv6 peer address is never on-link to an IPv4 interface', async (t) => {
  const { backend, warnings } = await hostGw();
  t.same(backend.desired(own, [lease('10.5.4.0/24', '2001:db8::4')]).routes, []);
  t.equal(warnings.length, 1);
});

t.test('dual-stack: one route per family via the peer\'s address of that family; a peer without IPv6 is reached in IPv4', async (t) => {
  const { backend, warnings } = await hostGw({}, extWithIPv6(ext, '2001:db8::1', ['2001:db8::/64']));
  const own6 = withIPv6(own, '2001:db8:1000:1::/64', '2001:db8::1');
  const peers = [
    withIPv6(lease('10.5.2.0/24', '192.0.2.2'), '2001:db8:1000:2::/64', '2001:db8::2'),
    withIPv6(lease('10.5.3.0/24', '192.0.2.3'), '2001:db8:1000:3::/64', '2001:db8:ffff::3'), // IPv6 off-link
    lease('10.5.4.0/24', '192.0.2.4'), // no IPv6 half
  ];
  backend.desired(own6, peers);
  t.same(backend.desired(own6, peers).routes, [
    { dst: '10.5.2.0/24', via: '192.0.2.2', dev: 'eth0' },
    { dst: '10.5.3.0/24', via: '192.0.2.3', dev: 'eth0' },
    { dst: '10.5.4.0/24', via: '192.0.2.4', dev: 'eth0' },
    { dst: '2001:db8:1000:2::/64', via: '2001:db8::2', dev: 'eth0' },
  ]);
  t.same(warnings.map((w) => w.msg), [
    'peer 10.5.4.0/24 at 192.0.2.4 is reached in IPv4 only: its lease has no IPv6 subnet and address (is IPv6 enabled on that node, with an address on its interface?)',
    'host-gw cannot reach peer 2001:db8:1000:3::/64 at 2001:db8:ffff::3: not on a network directly connected to eth0 (2001:db8::/64); use the vxlan backend for nodes on other segments',
  ], 'one warning each over two passes');
});

t.test('host-gw options are checked when the backend starts', async (t) => {
  await t.rejects(hostGw({ VNI: 1 }), ConfigError);
});
