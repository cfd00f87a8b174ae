import { pino } from 'pino';
import t, { type Test } from 'tap';
import type { BackendContext, ExternalInterface } from '../../backends/backend.js';
import { vxlanDesired } from '../../backends/vxlan/desired.js';
import { createVxlanBackend } from '../../backends/vxlan/index.js';
import { parseUnicastMac, vtepMac } from '../../backends/vxlan/mac.js';
import { parseVxlanOptions, type VxlanOptions } from '../../backends/vxlan/options.js';
import { PeerWarnings } from '../../backends/peer-warnings.js';
import { checkBackendOptions } from '../../backends/registry.js';
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
  connected: [Cidr.parse('192.0.2.0/24')],
};

const OWN_MAC = '0a:00:00:00:00:01';
const own: Lease = lease('10.5.1.0/24', '192.0.2.1', { VNI: 1, VtepMAC: OWN_MAC });

function lease(subnet: string, publicIP: string, backendData: unknown, backendType = 'vxlan'): Lease {
  return { subnet: Cidr.parse(subnet), attrs: { publicIP: IP.parse(publicIP), backendType, backendData } };
}
const peer = (n: number, publicIP: string, vni = 1) =>
  lease(`10.5.${n}.0/24`, publicIP, { VNI: vni, VtepMAC: `0a:00:00:00:00:${n.toString(16).padStart(2, '0')}` });

function capture() {
  const lines: { msg: string; peer?: string; level: number }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

function setup(options: Partial<VxlanOptions> = {}) {
  const { logger, lines } = capture();
  const opts: VxlanOptions = { vni: 1, port: 8472, directRouting: false, ...options };
  const warnings = new PeerWarnings(logger);
  return { lines, desired: (peers: Lease[]) => vxlanDesired(own, peers, { options: opts, ext, mac: OWN_MAC, warnings }) };
}

function rejectsOptions(t: Test, backend: Record<string, unknown>, pattern: RegExp): void {
  t.throws(
    () => checkBackendOptions(parseNetConf(JSON.stringify({ Network: '10.5.0.0/16', Backend: { Type: 'vxlan', ...backend } }))),
    { name: 'ConfigError', message: pattern },
    JSON.stringify(backend),
  );
}

t.test('options: defaults and flannel configs', async (t) => {
  t.same(parseVxlanOptions({}), { vni: 1, port: 8472, directRouting: false });
  t.same(parseVxlanOptions({ VNI: 16777215, Port: 4789, MTU: 1400, DirectRouting: true, GBP: false, Learning: false }), {
    vni: 16777215,
    port: 4789,
    mtu: 1400,
    directRouting: true,
  });
  const conf = parseNetConf('{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 4096, "Port": 4789, "DirectRouting": true}}');
  t.same(parseVxlanOptions(conf.backend.raw), { vni: 4096, port: 4789, directRouting: true });
});

t.test('options: bad values', async (t) => {
  rejectsOptions(t, { VNI: 0 }, /^net-conf: Backend\.VNI 0 is out of range 1\.\.16777215$/);
  rejectsOptions(t, { VNI: 16777216 }, /Backend\.VNI 16777216 is out of range/);
  rejectsOptions(t, { VNI: '1' }, /Backend\.VNI must be an integer, got string "1"/);
  rejectsOptions(t, { VNI: 1.5 }, /Backend\.VNI must be an integer, got number 1\.5/);
  rejectsOptions(t, { Port: 0 }, /Backend\.Port 0 is out of range 1\.\.65535/);
  rejectsOptions(t, { Port: 65536 }, /Backend\.Port 65536 is out of range/);
  rejectsOptions(t, { Port: null }, /Backend\.Port must be an integer, got null/);
  rejectsOptions(t, { MTU: 67 }, /Backend\.MTU 67 is out of range 68\.\.65535/);
  rejectsOptions(t, { MTU: 70000 }, /Backend\.MTU 70000 is out of range/);
  rejectsOptions(t, { MTU: '1450' }, /Backend\.MTU must be an integer/);
  rejectsOptions(t, { DirectRouting: 'true' }, /Backend\.DirectRouting must be true or false, got string "true"/);
  rejectsOptions(t, { DirectRouting: 1 }, /Backend\.DirectRouting must be true or false, got number 1/);
  rejectsOptions(t, { GBP: true }, /Backend\.GBP is not supported by weft's vxlan backend; remove it/);
  rejectsOptions(t, { Learning: true }, /Backend\.Learning is not supported/);
  rejectsOptions(t, { GBP: 'yes' }, /Backend\.GBP must be true or false/);
  rejectsOptions(t, { Vni: 2 }, /unknown key "Backend\.Vni" \(did you mean "Backend\.VNI"\?\); known keys: Backend\.VNI, Backend\.Port/);
  rejectsOptions(t, { MacPrefix: '0E-2A' }, /unknown key "Backend\.MacPrefix"/);
});

t.test('VTEP MAC: deterministic, locally administered unicast', async (t) => {
  t.equal(vtepMac('node-1/192.0.2.1'), '0a:d7:b8:f6:66:5a', 'fixed value: a MAC must survive upgrades too');
  t.equal(vtepMac('node-1/192.0.2.1'), vtepMac('node-1/192.0.2.1'));
  const seen = new Set<string>();
  const wrong: string[] = [];
  for (let i = 0; i < 500; i++) {
    const mac = vtepMac(`node-${i}/192.0.2.${i % 256}`);
    const first = parseInt(mac.slice(0, 2), 16);
    const localUnicast = (first & 0x02) !== 0 && (first & 0x01) === 0;
    if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac) || !localUnicast) wrong.push(mac);
    seen.add(mac);
  }
  t.same(wrong, [], 'every MAC is well-formed, locally administered and unicast');
  t.equal(seen.size, 500, 'distinct identities, distinct MACs');
  t.not(vtepMac('node-1/192.0.2.1'), vtepMac('node-1/192.0.2.2'), 'the address is part of the identity');
});

t.test('parseUnicastMac', async (t) => {
  t.equal(parseUnicastMac('0A:D7:B8:F6:66:5A'), '0a:d7:b8:f6:66:5a', 'normalised to lowercase');
  t.equal(parseUnicastMac('52:54:00:12:34:56'), '52:54:00:12:34:56');
  for (const bad of ['ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:01', '00:00:00:00:00:00', '0a-d7-b8-f6-66-5a', '0a:d7:b8:f6:66', '0a:d7:b8:f6:66:5a:00', 'a:d7:b8:f6:66:5a', ' 0a:d7:b8:f6:66:5a', '', 42, null, undefined, {}]) {
    t.equal(parseUnicastMac(bad), undefined, JSON.stringify(bad) ?? String(bad));
  }
});

t.test('desired: device, address and per-peer neighbour, FDB, onlink route', async (t) => {
  const { desired, lines } = setup();
  const state = desired([peer(3, '192.0.2.3'), peer(2, '203.0.113.2')]);
  t.same(state.links, [
    {
      name: 'weft.1',
      spec: { kind: 'vxlan', vni: 1, port: 8472, local: '192.0.2.1', dev: 'eth0', learning: false },
      mtu: 1450,
      mac: OWN_MAC,
    },
  ]);
  t.same(state.addrs, [{ dev: 'weft.1', cidr: '10.5.1.0/32' }]);
  t.same(state.neighs, [
    { dev: 'weft.1', ip: '10.5.2.0', mac: '0a:00:00:00:00:02' },
    { dev: 'weft.1', ip: '10.5.3.0', mac: '0a:00:00:00:00:03' },
  ]);
  t.same(state.fdb, [
    { dev: 'weft.1', mac: '0a:00:00:00:00:02', dst: '203.0.113.2' },
    { dev: 'weft.1', mac: '0a:00:00:00:00:03', dst: '192.0.2.3' },
  ]);
  t.same(state.routes, [
    { dst: '10.5.2.0/24', via: '10.5.2.0', dev: 'weft.1', onlink: true },
    { dst: '10.5.3.0/24', via: '10.5.3.0', dev: 'weft.1', onlink: true },
  ]);
  t.same(lines, []);
});

t.test('desired: VNI, port and MTU from the options', async (t) => {
  const { desired } = setup({ vni: 16777215, port: 4789, mtu: 1400 });
  const state = desired([peer(2, '192.0.2.2', 16777215)]);
  t.equal(state.links[0]!.name, 'weft.16777215');
  t.ok(state.links[0]!.name.length <= 15, 'fits IFNAMSIZ');
  t.match(state.links[0], { spec: { vni: 16777215, port: 4789 }, mtu: 1400 });
  t.same(state.routes.map((r) => r.dev), ['weft.16777215']);
});

t.test('desired: DirectRouting routes on-link peers directly, tunnels the rest; re-decided on address change', async (t) => {
  const { desired } = setup({ directRouting: true });
  const state = desired([peer(2, '192.0.2.2'), peer(3, '203.0.113.3')]);
  t.same(state.routes, [
    { dst: '10.5.2.0/24', via: '192.0.2.2', dev: 'eth0' },
    { dst: '10.5.3.0/24', via: '10.5.3.0', dev: 'weft.1', onlink: true },
  ]);
  t.same(state.neighs.map((n) => n.ip), ['10.5.3.0'], 'no neighbour entry for the direct peer');
  t.same(state.fdb.map((f) => f.dst), ['203.0.113.3'], 'no FDB entry for the direct peer');
  t.equal(state.links.length, 1, 'the device exists for the tunnelled peers');

  const moved = desired([peer(2, '203.0.113.2'), peer(3, '192.0.2.3')]);
  t.same(moved.routes, [
    { dst: '10.5.2.0/24', via: '10.5.2.0', dev: 'weft.1', onlink: true },
    { dst: '10.5.3.0/24', via: '192.0.2.3', dev: 'eth0' },
  ]);

  const off = setup({ directRouting: false }).desired([peer(2, '192.0.2.2')]);
  t.same(off.routes, [{ dst: '10.5.2.0/24', via: '10.5.2.0', dev: 'weft.1', onlink: true }], 'without DirectRouting on-link peers are tunnelled');
});

t.test('desired: own lease skipped; an on-link peer of another backend reached directly, one warning', async (t) => {
  const { desired, lines } = setup();
  const gw = lease('10.5.7.0/24', '192.0.2.7', null, 'host-gw');
  const far = lease('10.5.8.0/24', '203.0.113.8', null, 'host-gw');
  const peers = [own, lease('10.5.9.0/24', '192.0.2.1', { VNI: 1, VtepMAC: '0a:00:00:00:00:09' }), gw, far, peer(2, '192.0.2.2')];
  desired(peers);
  const state = desired(peers);
  t.same(state.routes, [
    { dst: '10.5.2.0/24', via: '10.5.2.0', dev: 'weft.1', onlink: true },
    { dst: '10.5.7.0/24', via: '192.0.2.7', dev: 'eth0' },
  ], 'the host-gw peer mid-switch by a direct route; the off-link one not at all');
  t.same(lines.map((l) => l.msg), [
    'reaching peer 10.5.7.0/24 at 192.0.2.7 by a direct route on eth0: its lease is for the "host-gw" backend and this node runs vxlan; all nodes must use one backend',
    'ignoring peer 10.5.8.0/24 at 203.0.113.8: its lease is for the "host-gw" backend and this node runs vxlan; all nodes must use one backend',
  ], 'one warning each over two passes');
});

t.test('desired: hostile or mismatched BackendData is skipped with one warning each; others kept', async (t) => {
  const { desired, lines } = setup();
  const bad: [Lease, RegExp][] = [
    [lease('10.5.10.0/24', '192.0.2.10', null), /its BackendData is null, not \{"VNI", "VtepMAC"\}/],
    [lease('10.5.11.0/24', '192.0.2.11', 'x'), /its BackendData is string/],
    [lease('10.5.12.0/24', '192.0.2.12', [1, '0a:00:00:00:00:0c']), /its BackendData is an array/],
    [lease('10.5.13.0/24', '192.0.2.13', { VNI: 2, VtepMAC: '0a:00:00:00:00:0d' }), /its VNI 2 is not this node's VNI 1/],
    [lease('10.5.14.0/24', '192.0.2.14', { VNI: '1', VtepMAC: '0a:00:00:00:00:0e' }), /its VNI "1" is not this node's VNI 1/],
    [lease('10.5.15.0/24', '192.0.2.15', { VtepMAC: '0a:00:00:00:00:0f' }), /its VNI undefined is not/],
    [lease('10.5.16.0/24', '192.0.2.16', { VNI: 1, VtepMAC: 'ff:ff:ff:ff:ff:ff' }), /its VtepMAC "ff:ff:ff:ff:ff:ff" is not a unicast MAC/],
    [lease('10.5.17.0/24', '192.0.2.17', { VNI: 1, VtepMAC: 'x'.repeat(10000) }), /its VtepMAC "x{30,40} is not a unicast MAC/],
    [lease('10.5.18.0/24', '192.0.2.18', { VNI: 1 }), /its VtepMAC undefined is not a unicast MAC/],
    [lease('10.5.19.0/24', '2001:db8::19', { VNI: 1, VtepMAC: '0a:00:00:00:00:13' }), /its address is IPv6 and this node's tunnel runs over IPv4/],
    [lease('10.5.20.0/24', '192.0.2.20', { VNI: 1, VtepMAC: OWN_MAC.toUpperCase() }), /its VtepMAC 0a:00:00:00:00:01 is already used by this node/],
  ];
  const good = [peer(2, '192.0.2.2'), peer(3, '192.0.2.3')];
  const peers = [...bad.map(([l]) => l), ...good];
  for (let i = 0; i < 3; i++) {
    const state = desired(peers);
    t.same(state.routes.map((r) => r.dst), ['10.5.2.0/24', '10.5.3.0/24']);
    t.same(state.fdb.map((f) => f.dst), ['192.0.2.2', '192.0.2.3']);
    t.same(state.neighs.map((n) => n.ip), ['10.5.2.0', '10.5.3.0']);
  }
  t.equal(lines.length, bad.length, 'one warning per bad peer over three passes');
  for (const [l, pattern] of bad) {
    const line = lines.find((w) => w.peer === l.subnet.toString());
    t.match(line?.msg, new RegExp(`^ignoring vxlan peer ${l.subnet.toString().replace(/\./g, '\\.')} at `), l.subnet.toString());
    t.match(line?.msg, pattern, l.subnet.toString());
    t.ok((line?.msg.length ?? 0) < 300, 'a hostile value does not flood the log');
  }

  // The peer fixes its lease: served, and a later breakage is reported again.
  desired([peer(13, '192.0.2.13'), ...good]);
  t.same(desired([peer(13, '192.0.2.13'), ...good]).routes.length, 3);
  desired([bad[3]![0], ...good]);
  t.equal(lines.length, bad.length + 1);
});

t.test('desired: a VTEP MAC claimed by two peers goes to the lower subnet', async (t) => {
  const { desired, lines } = setup();
  const a = lease('10.5.2.0/24', '192.0.2.2', { VNI: 1, VtepMAC: '0a:00:00:00:00:aa' });
  const b = lease('10.5.3.0/24', '192.0.2.3', { VNI: 1, VtepMAC: '0A:00:00:00:00:AA' });
  for (const order of [[a, b], [b, a]]) {
    const state = desired(order);
    t.same(state.fdb, [{ dev: 'weft.1', mac: '0a:00:00:00:00:aa', dst: '192.0.2.2' }], 'independent of input order');
  }
  t.equal(lines.length, 1);
  t.match(lines[0]!.msg, /ignoring vxlan peer 10\.5\.3\.0\/24 at 192\.0\.2\.3: its VtepMAC 0a:00:00:00:00:aa is already used by peer 10\.5\.2\.0\/24/);
});

/** A vxlan backend built the way the agent builds it. */
async function backend(backendKeys: Record<string, unknown> = {}, ext0: ExternalInterface = ext, confKeys: Record<string, unknown> = {}) {
  const { logger, lines } = capture();
  const config = parseNetConf(JSON.stringify({ Network: '10.5.0.0/16', ...confKeys, Backend: { Type: 'vxlan', ...backendKeys } }));
  const ctx: BackendContext = { config, ext: ext0, logger, nodeName: 'node-1', runDir: '/nonexistent' };
  return { backend: await createVxlanBackend(ctx), lines };
}

t.test('createVxlanBackend: BackendData in flannel shape, MTU, desired', async (t) => {
  const { backend: b, lines } = await backend({ VNI: 7 });
  t.equal(b.type, 'vxlan');
  t.equal(b.mtu, 1450, 'underlay MTU - 50');
  t.same(b.backendData, { VNI: 7, VtepMAC: vtepMac('node-1/192.0.2.1') });
  t.equal(JSON.stringify(b.backendData), `{"VNI":7,"VtepMAC":"${vtepMac('node-1/192.0.2.1')}"}`);
  const again = await backend({ VNI: 7 });
  t.same(again.backend.backendData, b.backendData, 'a restarted agent publishes the same MAC');

  const ownLease = lease('10.5.1.0/24', '192.0.2.1', b.backendData);
  const state = b.desired(ownLease, [lease('10.5.2.0/24', '192.0.2.2', { VNI: 7, VtepMAC: '0a:00:00:00:00:02' })]);
  t.match(state.links[0], { name: 'weft.7', mac: vtepMac('node-1/192.0.2.1'), mtu: 1450 });
  t.same(state.routes, [{ dst: '10.5.2.0/24', via: '10.5.2.0', dev: 'weft.7', onlink: true }]);
  t.same(lines, []);
  await b.stop({ teardown: false });

  t.equal((await backend({ MTU: 1400 })).backend.mtu, 1400, 'Backend.MTU overrides');
});

t.test('dual-stack: a second device weft-v6.<VNI> over the IPv6 underlay, its MAC in BackendV6Data', async (t) => {
  const ext6 = extWithIPv6(ext, '2001:db8::1', ['2001:db8::/64']);
  const { backend: b, lines } = await backend({ VNI: 7 }, ext6, { EnableIPv6: true, IPv6Network: '2001:db8:1000::/56' });
  const mac6 = vtepMac('node-1/2001:db8::1');
  t.same(b.backendV6Data, { VNI: 7, VtepMAC: mac6 }, 'flannel\'s BackendV6Data shape, a MAC of its own');
  t.not(mac6, vtepMac('node-1/192.0.2.1'));
  t.equal(b.mtu, 1430, 'one pod MTU for both families: the IPv6 tunnel\'s (underlay - 70)');
  t.same((await backend({ VNI: 7 }, ext6, { EnableIPv6: true, IPv6Network: '2001:db8:1000::/56' })).backend.backendV6Data, b.backendV6Data, 'stable across restarts');

  const own6 = withIPv6(lease('10.5.1.0/24', '192.0.2.1', b.backendData), '2001:db8:1000:1::/64', '2001:db8::1', b.backendV6Data);
  const peerMac = '0a:00:00:00:00:02';
  const peerMac6 = '0a:00:00:00:06:02';
  const p = withIPv6(lease('10.5.2.0/24', '192.0.2.2', { VNI: 7, VtepMAC: peerMac }), '2001:db8:1000:2::/64', '2001:db8::2', { VNI: 7, VtepMAC: peerMac6 });
  const state = b.desired(own6, [p]);
  t.same(
    state.links.map((l) => [l.name, l.spec, l.mac, l.mtu]),
    [
      ['weft.7', { kind: 'vxlan', vni: 7, port: 8472, local: '192.0.2.1', dev: 'eth0', learning: false }, vtepMac('node-1/192.0.2.1'), 1450],
      ['weft-v6.7', { kind: 'vxlan', vni: 7, port: 8472, local: '2001:db8::1', dev: 'eth0', learning: false }, mac6, 1430],
    ],
  );
  t.same(state.addrs, [{ dev: 'weft.7', cidr: '10.5.1.0/32' }, { dev: 'weft-v6.7', cidr: '2001:db8:1000:1::/128' }]);
  t.same(state.neighs, [{ dev: 'weft.7', ip: '10.5.2.0', mac: peerMac }, { dev: 'weft-v6.7', ip: '2001:db8:1000:2::', mac: peerMac6 }]);
  t.same(state.fdb, [{ dev: 'weft.7', mac: peerMac, dst: '192.0.2.2' }, { dev: 'weft-v6.7', mac: peerMac6, dst: '2001:db8::2' }]);
  t.same(state.routes, [
    { dst: '10.5.2.0/24', via: '10.5.2.0', dev: 'weft.7', onlink: true },
    { dst: '2001:db8:1000:2::/64', via: '2001:db8:1000:2::', dev: 'weft-v6.7', onlink: true },
  ]);
  t.same(lines, []);

  const bad = withIPv6(lease('10.5.3.0/24', '192.0.2.3', { VNI: 7, VtepMAC: '0a:00:00:00:00:03' }), '2001:db8:1000:3::/64', '2001:db8::3', 'garbage');
  t.same(b.desired(own6, [bad]).routes.map((r) => r.dst), ['10.5.3.0/24'], 'a hostile BackendV6Data costs the IPv6 half only');
  t.match(lines.map((l) => l.msg), [/^ignoring vxlan peer 2001:db8:1000:3::\/64 at 2001:db8::3: its BackendData is string, not/]);
});

t.test('createVxlanBackend: MTU problems', async (t) => {
  const big = await backend({ MTU: 1480 });
  t.equal(big.backend.mtu, 1480);
  t.equal(big.lines.length, 1, 'an MTU that fragments on the underlay is warned about');
  t.match(big.lines[0]!.msg, /Backend\.MTU 1480 plus 50 bytes of IPv4 VXLAN headers exceeds eth0's MTU 1500/);
  await t.rejects(backend({}, { ...ext, mtu: 100 }), { name: 'WeftError', message: /eth0 has MTU 100, too small for IPv4 VXLAN.*raise the MTU of eth0/ });
  const hand = parseNetConf(JSON.stringify({ Network: '10.5.0.0/16', Backend: { Type: 'vxlan' } }));
  hand.backend.raw = { VNI: 0 };
  await t.rejects(createVxlanBackend({ config: hand, ext, logger: capture().logger, nodeName: 'n', runDir: '/x' }), ConfigError);
});
