// Borrowed addresses (host routes of pinned pods away from their subnet):
// the lease field read as hostile input, lease equality, the kube
// annotation, LeaseKeeper.setBorrowedIPs, each backend's routes to them, and
// the rule for an address two leases claim.
import { pino } from 'pino';
import t from 'tap';
import type { ExternalInterface } from '../../backends/backend.js';
import { birdConfig } from '../../backends/bgp/config.js';
import { parseBgpOptions } from '../../backends/bgp/options.js';
import { hostGwDesired } from '../../backends/hostgw/index.js';
import { PeerWarnings } from '../../backends/peer-warnings.js';
import { NodeFamilies } from '../../backends/peers.js';
import { UDP_DEVICE, udpDesired, udpTable } from '../../backends/udp/desired.js';
import { vxlanDesired } from '../../backends/vxlan/desired.js';
import { LeaseKeeper } from '../../src/agent/lease-keeper.js';
import { parseNetConf } from '../../src/config/parse.js';
import { Cidr, IP } from '../../src/core/cidr.js';
import { formatLeaseValue, MAX_BORROWED_IPS, parseLeaseEntry } from '../../src/subnet/etcd/lease-value.js';
import { Annotation, leaseAnnotations, nodeLease } from '../../src/subnet/kube/node-lease.js';
import { leaseHalf, sameLeaseAttrs, type Lease, type LeaseAttrs } from '../../src/subnet/lease.js';
import type { SubnetManager } from '../../src/subnet/manager.js';
import { withIPv6 } from '../support/dual-stack.js';
import { birdParse } from './support/bird-parse.js';

const dual = parseNetConf(
  JSON.stringify({ Network: '10.5.0.0/16', EnableIPv6: true, IPv6Network: '2001:db8:1000::/56', IPv6SubnetLen: 64, Backend: { Type: 'host-gw' } }),
);
const v4 = parseNetConf(JSON.stringify({ Network: '10.5.0.0/16', Backend: { Type: 'host-gw' } }));
const base = { PublicIP: '192.0.2.3', BackendType: 'host-gw' };
const cidrs = (l: readonly Cidr[] | undefined): string[] => (l ?? []).map(String);

function parsed(borrowed: unknown, net = v4, key = '10.5.3.0-24', extra: Record<string, unknown> = {}) {
  const r = parseLeaseEntry(key, JSON.stringify({ ...base, ...extra, BorrowedIPs: borrowed }), net);
  if (!r.ok) throw new Error(`lease refused: ${r.reason}`);
  return { ips: cidrs(r.lease.attrs.borrowedIPs), warning: r.warning ?? '', lease: r.lease };
}

function capture() {
  const lines: { msg: string; peer?: string }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

t.test('BorrowedIPs: host routes of both families, kept in the lease and written back in flannel casing', async (t) => {
  const dualKey = '10.5.3.0-24&2001:db8:1000:3::-64';
  const dualFields = { PublicIPv6: '2001:db8::3' };
  const r = parsed(['10.5.1.17/32', '2001:db8:1000:1::11/128'], dual, dualKey, dualFields);
  t.same({ ips: r.ips, warning: r.warning }, { ips: ['10.5.1.17/32', '2001:db8:1000:1::11/128'], warning: '' });
  const written = JSON.parse(formatLeaseValue(r.lease.attrs));
  t.same(written.BorrowedIPs, ['10.5.1.17/32', '2001:db8:1000:1::11/128'], 'formatLeaseValue writes BorrowedIPs');
  t.notOk('BorrowedIPs' in JSON.parse(formatLeaseValue({ ...r.lease.attrs, borrowedIPs: [] })), 'an empty list is not written');
  // Each half of the lease carries its own family's addresses, for per-family backend code.
  t.same([cidrs(leaseHalf(r.lease, 4)!.attrs.borrowedIPs), cidrs(leaseHalf(r.lease, 6)!.attrs.borrowedIPs)], [['10.5.1.17/32'], ['2001:db8:1000:1::11/128']]);
});

t.test('BorrowedIPs: hostile values cost the entry, never the lease', async (t) => {
  const notList = parsed('10.5.1.17/32');
  t.same([notList.ips, notList.lease.attrs.publicIP.toString()], [[], '192.0.2.3'], 'not a list: ignored, the lease used');
  t.match(notList.warning, /BorrowedIPs ignored: it is string, not a list of host routes/);

  const cases: [unknown, RegExp][] = [
    [42, /an entry that is number, not a string/],
    ['banana', /"banana" \(not a CIDR such as "10\.244\.3\.17\/32"\)/],
    ['10.5.1.0/24', /"10\.5\.1\.0\/24" \(not a host route \(\/32\)\)/],
    ['10.9.0.1/32', /"10\.9\.0\.1\/32" \(outside Network 10\.5\.0\.0\/16\)/],
    ['10.5.3.9/32', /"10\.5\.3\.9\/32" \(inside the lease's own subnet 10\.5\.3\.0\/24\)/],
    ['2001:db8:1000:1::11/128', /IPv6, and the cluster has no IPv6 Network/],
  ];
  const warnings = cases.map(([bad]) => parsed(['10.5.1.17/32', bad]));
  t.same(
    warnings.map((w) => w.ips),
    cases.map(() => ['10.5.1.17/32']),
    'each bad entry is dropped, the good one kept',
  );
  t.same(
    warnings.map((w, i) => cases[i]![1].test(w.warning)),
    cases.map(() => true),
    'each warning names the entry and the reason',
  );

  const twice = parsed(['10.5.1.17/32', '10.5.1.17/32']);
  t.same([twice.ips, /"10\.5\.1\.17\/32" \(listed twice\)/.test(twice.warning)], [['10.5.1.17/32'], true], 'a duplicate counts once');

  // An IPv6 address on a lease without an IPv6 half has no address to be routed via.
  const noHalf = parsed(['2001:db8:1000:1::11/128'], dual);
  t.match(noHalf.warning, /the lease has no IPv6 half to route it to/);

  const many = Array.from({ length: MAX_BORROWED_IPS + 5 }, (_, i) => `10.5.${100 + (i >> 8)}.${i & 255}/32`);
  const capped = parsed(many);
  t.same([capped.ips.length, /5 past the limit of 128/.test(capped.warning)], [MAX_BORROWED_IPS, true], 'entries past the limit are ignored, said once');

  const lots = parsed(['a', 'b', 'c', 'd', 'e']);
  t.match(lots.warning, /"a" .*, "b" .*, "c" .* and 2 more$/, 'a long list of problems is one bounded line');
});

t.test('lease equality: a change of borrowed addresses is a lease change, their order is not', async (t) => {
  const attrs: LeaseAttrs = { publicIP: IP.parse('192.0.2.3'), backendType: 'host-gw', backendData: null };
  const a = { ...attrs, borrowedIPs: [Cidr.parse('10.5.1.17/32'), Cidr.parse('10.5.2.4/32')] };
  const reordered = { ...attrs, borrowedIPs: [Cidr.parse('10.5.2.4/32'), Cidr.parse('10.5.1.17/32')] };
  t.same(
    [sameLeaseAttrs(attrs, a), sameLeaseAttrs(a, { ...attrs, borrowedIPs: [Cidr.parse('10.5.1.17/32')] }), sameLeaseAttrs(a, reordered), sameLeaseAttrs(attrs, { ...attrs, borrowedIPs: [] })],
    [false, false, true, true],
  );
});

t.test('kube: the borrowed-ips annotation carries the list; a bad one keeps the node lease', async (t) => {
  const node = (borrowed?: string) => ({
    metadata: {
      name: 'n3',
      annotations: {
        [Annotation.publicIP]: '192.0.2.3',
        [Annotation.backendType]: 'host-gw',
        ...(borrowed !== undefined ? { [Annotation.borrowedIPs]: borrowed } : {}),
      },
    },
    spec: { podCIDR: '10.5.3.0/24' },
  });
  const good = nodeLease(node('["10.5.1.17/32"]'), v4);
  t.same(good.kind === 'lease' && cidrs(good.lease.attrs.borrowedIPs), ['10.5.1.17/32']);
  const bad = nodeLease(node('10.5.1.17/32'), v4);
  t.same(bad.kind === 'lease' && [cidrs(bad.lease.attrs.borrowedIPs), /BorrowedIPs ignored/.test(bad.warning ?? '')], [[], true], 'text that is not JSON: warned, lease kept');
  const attrs: LeaseAttrs = { publicIP: IP.parse('192.0.2.3'), backendType: 'host-gw', backendData: null };
  t.same(
    [leaseAnnotations({ ...attrs, borrowedIPs: [Cidr.parse('10.5.1.17/32')] })[Annotation.borrowedIPs], leaseAnnotations(attrs)[Annotation.borrowedIPs]],
    ['["10.5.1.17/32"]', null],
    'written as a JSON list, removed (null in a merge patch) when empty',
  );
});

t.test('LeaseKeeper.setBorrowedIPs republishes the same lease with the list, and refuses an unusable address', async (t) => {
  const attrs: LeaseAttrs = { publicIP: IP.parse('192.0.2.3'), backendType: 'host-gw', backendData: null };
  const own: Lease = { subnet: Cidr.parse('10.5.3.0/24'), attrs, expiresAt: 1_000_000 };
  const renewed: Lease[] = [];
  const sm: SubnetManager = {
    getNetworkConfig: async () => v4,
    acquireLease: async () => own,
    renewLease: async (lease) => {
      renewed.push(lease);
      return lease;
    },
    watchLeases: async () => {},
    close: async () => {},
  };
  const k = new LeaseKeeper({
    subnetManager: sm,
    logger: pino({ level: 'silent' }),
    attrs: () => attrs,
    retry: (_w, _s, fn) => fn(),
    counters: { lease_renewals_total: 0, lease_reacquisitions_total: 0 },
    onReacquired: async () => {},
    subnetFile: '/run/weft/subnet.env',
  });
  const signal = new AbortController().signal;
  await k.acquire({}, signal);
  await k.setBorrowedIPs([Cidr.parse('10.5.1.17/32'), Cidr.parse('10.5.1.17/32')], v4, signal);
  t.same(
    renewed.map((l) => [l.subnet.toString(), l.expiresAt, cidrs(l.attrs.borrowedIPs)]),
    [['10.5.3.0/24', 1_000_000, ['10.5.1.17/32']]],
    'one renewal of the same subnet, expiry kept, the list deduplicated',
  );
  await t.rejects(k.setBorrowedIPs([Cidr.parse('10.5.3.9/32')], v4, signal), { name: 'WeftError', message: /cannot borrow 10\.5\.3\.9\/32: inside the lease's own subnet/ });
  t.same(cidrs(k.borrowedIPs), ['10.5.1.17/32'], 'a refused list changes nothing');
});

// Node 1 (10.5.1.0/24 at 192.0.2.1) sees node 2 borrowing 10.5.1.17 (one of node 1's) and 10.5.3.9 (node 3's).
const ext: ExternalInterface = { name: 'eth0', ip: IP.parse('192.0.2.1'), publicIP: IP.parse('192.0.2.1'), mtu: 1500, connected: [Cidr.parse('192.0.2.0/24')] };
function lease(n: number, backendType: string, borrowed: string[] = [], backendData: unknown = null): Lease {
  const attrs: LeaseAttrs = { publicIP: IP.parse(`192.0.2.${n}`), backendType, backendData, nodeName: `n${n}` };
  if (borrowed.length > 0) attrs.borrowedIPs = borrowed.map((b) => Cidr.parse(b));
  return { subnet: Cidr.parse(`10.5.${n}.0/24`), attrs };
}
const BORROWED = ['10.5.1.17/32', '10.5.3.9/32'];

t.test('host-gw routes each borrowed address via the borrowing peer', async (t) => {
  const { logger } = capture();
  const families = new NodeFamilies(logger);
  const own = lease(1, 'host-gw');
  const peers = [lease(2, 'host-gw', BORROWED), lease(3, 'host-gw')];
  const [view] = families.views(own, peers, ext);
  const state = hostGwDesired(view!.own, view!.peers, ext, new PeerWarnings(logger), undefined, view!.borrowed);
  t.same(state.routes, [
    { dst: '10.5.2.0/24', via: '192.0.2.2', dev: 'eth0' },
    { dst: '10.5.1.17/32', via: '192.0.2.2', dev: 'eth0' },
    { dst: '10.5.3.9/32', via: '192.0.2.2', dev: 'eth0' },
    { dst: '10.5.3.0/24', via: '192.0.2.3', dev: 'eth0' },
  ]);
});

t.test('vxlan routes each borrowed address onlink through the peer VTEP, with the entries the subnet route has', async (t) => {
  const { logger } = capture();
  const vtep = (n: number) => ({ VNI: 1, VtepMAC: `0a:00:00:00:00:0${n}` });
  const own = lease(1, 'vxlan', [], vtep(1));
  const peers = [lease(2, 'vxlan', BORROWED, vtep(2))];
  const [view] = new NodeFamilies(logger).views(own, peers, ext);
  const state = vxlanDesired(view!.own, view!.peers, {
    options: { vni: 1, port: 8472, directRouting: false },
    ext,
    mac: '0a:00:00:00:00:01',
    warnings: new PeerWarnings(logger),
    borrowed: view!.borrowed,
  });
  t.same(
    { routes: state.routes, neighs: state.neighs.length, fdb: state.fdb.length },
    {
      routes: [
        { dst: '10.5.2.0/24', via: '10.5.2.0', dev: 'weft.1', onlink: true },
        { dst: '10.5.1.17/32', via: '10.5.2.0', dev: 'weft.1', onlink: true },
        { dst: '10.5.3.9/32', via: '10.5.2.0', dev: 'weft.1', onlink: true },
      ],
      neighs: 1,
      fdb: 1,
    },
  );
});

t.test('udp: a peer-table entry per borrowed address, and a host route on weft0 past the bridge', async (t) => {
  const { logger } = capture();
  const families = new NodeFamilies(logger);
  const own = lease(1, 'udp');
  const peers = [lease(2, 'udp', BORROWED)];
  t.same(udpTable(families, own, peers, ext).peers, [
    { subnet: '10.5.2.0/24', publicIP: '192.0.2.2' },
    { subnet: '10.5.1.17/32', publicIP: '192.0.2.2' },
    { subnet: '10.5.3.9/32', publicIP: '192.0.2.2' },
  ]);
  const routes = udpDesired(families, own, peers, ext, [Cidr.parse('10.5.0.0/16')], 1472).routes;
  t.same(routes, [
    { dst: '10.5.0.0/16', dev: UDP_DEVICE },
    { dst: '10.5.1.17/32', dev: UDP_DEVICE },
    { dst: '10.5.3.9/32', dev: UDP_DEVICE },
  ]);
});

t.test('bgp: the borrowing node announces its borrowed address; the lending node lets it in', async (t) => {
  const options = parseBgpOptions({});
  const config = (own: Lease, peers: Lease[]) => {
    const families = new NodeFamilies(pino({ level: 'silent' })).views(own, peers, ext).map((v) => ({ ...v, network: Cidr.parse('10.5.0.0/16') }));
    return birdConfig({ nodeName: own.attrs.nodeName!, own, peers, families, options, controlSocket: '/run/weft/bird/bird.ctl' }).text;
  };
  const borrower = config(lease(2, 'bgp', ['10.5.1.17/32']), [lease(1, 'bgp'), lease(3, 'bgp')]);
  const lender = config(lease(1, 'bgp'), [lease(2, 'bgp', ['10.5.1.17/32']), lease(3, 'bgp')]);
  t.same(
    [
      borrower.includes('  route 10.5.1.17/32 blackhole;'),
      borrower.includes('if source = RTS_STATIC && net ~ [ 10.5.2.0/24, 10.5.1.17/32 ] then accept;'),
      borrower.includes('function weft_not_own() { return !(net ~ [ 10.5.2.0/24+, 10.5.1.17/32 ]); }'),
      lender.includes('function weft_not_own() { return !(net ~ [ 10.5.1.0/24+ ]) || net ~ [ 10.5.1.17/32 ]; }'),
    ],
    [true, true, true, true],
    'static route and export on the borrower, not-own exception on the lender',
  );
  const loser = config(lease(3, 'bgp', ['10.5.1.17/32']), [lease(1, 'bgp'), lease(2, 'bgp', ['10.5.1.17/32'])]);
  t.notOk(loser.includes('10.5.1.17/32 blackhole'), 'an address a lower subnet also claims is not announced: receivers hear only the winner');
  const checks = await Promise.all([birdParse(borrower), birdParse(lender)]);
  t.same(checks.map((c) => c.message), ['', ''], 'bird -p accepts both');
});

t.test('udp: the borrowing node\'s loop takes traffic for its borrowed addresses, each family\'s; none leaves the table as it was', async (t) => {
  const { logger } = capture();
  const ext6: ExternalInterface = { ...ext, ipv6: { ip: IP.parse('2001:db8::1'), publicIP: IP.parse('2001:db8::1'), connected: [Cidr.parse('2001:db8::/64')] } };
  const borrower = withIPv6(lease(2, 'udp', ['10.5.1.17/32', '2001:db8:1000:1::11/128']), '2001:db8:1000:2::/64', '2001:db8::2');
  const lender = withIPv6(lease(1, 'udp'), '2001:db8:1000:1::/64', '2001:db8::1');
  const tables = [udpTable(new NodeFamilies(logger), borrower, [lender], ext6), udpTable(new NodeFamilies(logger), lender, [borrower], ext6)];
  t.same(
    tables.map((tb) => [tb.ownSubnet, 'borrowedIPs' in tb ? tb.borrowedIPs : 'absent']),
    [
      [['10.5.2.0/24', '2001:db8:1000:2::/64'], ['10.5.1.17/32', '2001:db8:1000:1::11/128']],
      [['10.5.1.0/24', '2001:db8:1000:1::/64'], 'absent'],
    ],
  );
});

t.test('bgp: a peer\'s borrowed address is believed only with that peer\'s PublicIP as next hop, the address it announces from any session source', async (t) => {
  const options = parseBgpOptions({});
  const config = (own: Lease, peers: Lease[], from = ext) => {
    const families = new NodeFamilies(pino({ level: 'silent' })).views(own, peers, from).map((v) => ({ ...v, network: Cidr.parse('10.5.0.0/16') }));
    return birdConfig({ nodeName: own.attrs.nodeName!, own, peers, families, options, controlSocket: '/run/weft/bird/bird.ctl' }).text;
  };
  // Node 2 borrows one of node 1's addresses and one of node 3's; node 4 borrows one of node 3's too.
  const n2 = lease(2, 'bgp', BORROWED);
  const n4 = lease(4, 'bgp', ['10.5.3.10/32']);
  const lender = config(lease(1, 'bgp'), [n2, lease(3, 'bgp'), n4]);
  const plain = config(lease(1, 'bgp'), [lease(2, 'bgp'), lease(3, 'bgp')]);
  // Node 2's session runs from 198.51.100.2 (another interface than its PublicIP).
  const sessionElsewhere: ExternalInterface = { ...ext, ip: IP.parse('198.51.100.2'), connected: [Cidr.parse('198.51.100.0/24')] };
  const borrower = config(n2, [lease(1, 'bgp'), lease(3, 'bgp')], sessionElsewhere);
  t.same(
    {
      claims: lender.split('\n').filter((l) => l.includes('bgp_next_hop')),
      nodes: /filter weft_import_nodes \{\n  if weft_in_network\(\) && weft_not_own\(\) && weft_claimed\(\) then accept;/.test(lender),
      external: /filter weft_import_external \{\n  if weft_in_allowed\(\) && weft_not_own\(\) && weft_claimed\(\) then accept;/.test(lender),
      nobodyBorrows: plain.includes('weft_claimed'),
      borrowerAnnounces: borrower.includes('    next hop address 192.0.2.2;'),
    },
    {
      claims: ['  if net ~ [ 10.5.1.17/32, 10.5.3.9/32 ] then return bgp_next_hop = 192.0.2.2;', '  if net ~ [ 10.5.3.10/32 ] then return bgp_next_hop = 192.0.2.4;'],
      nodes: true,
      external: true,
      nobodyBorrows: false,
      borrowerAnnounces: true,
    },
  );
  t.same((await birdParse(lender)).message, '', 'bird -p accepts it');
});

t.test('conflicts: the lower subnet wins an address two peers claim; this node keeps its own; one warning', async (t) => {
  const { logger, lines } = capture();
  const families = new NodeFamilies(logger);
  const own = lease(1, 'host-gw', ['10.5.4.4/32']);
  const peers = [lease(3, 'host-gw', ['10.5.1.17/32']), lease(2, 'host-gw', ['10.5.1.17/32', '10.5.4.4/32'])];
  const desired = () => {
    const [view] = families.views(own, peers, ext);
    return hostGwDesired(view!.own, view!.peers, ext, new PeerWarnings(logger), undefined, view!.borrowed).routes.filter((r) => r.dst.endsWith('/32'));
  };
  t.same(desired(), [{ dst: '10.5.1.17/32', via: '192.0.2.2', dev: 'eth0' }], 'the peer with 10.5.2.0/24 wins; 10.5.4.4 stays here');
  desired();
  t.same(
    lines.map((l) => l.msg).sort(),
    [
      'not routing borrowed addresses of peer 10.5.2.0/24 at 192.0.2.2 to it: 10.5.4.4/32 (also claimed by this node); an address is routed to one node, the lease with the lower subnet',
      'not routing borrowed addresses of peer 10.5.3.0/24 at 192.0.2.3 to it: 10.5.1.17/32 (also claimed by peer 10.5.2.0/24 at 192.0.2.2); an address is routed to one node, the lease with the lower subnet',
    ],
    'one line per losing peer, not repeated on the next pass',
  );
});

t.test('a dual-stack peer: each family routes its own borrowed addresses', async (t) => {
  const { logger } = capture();
  const ext6: ExternalInterface = { ...ext, ipv6: { ip: IP.parse('2001:db8::1'), publicIP: IP.parse('2001:db8::1'), connected: [Cidr.parse('2001:db8::/64')] } };
  const own = withIPv6(lease(1, 'host-gw'), '2001:db8:1000:1::/64', '2001:db8::1');
  const peer = withIPv6(lease(2, 'host-gw', ['10.5.1.17/32', '2001:db8:1000:1::11/128']), '2001:db8:1000:2::/64', '2001:db8::2');
  const routes = new NodeFamilies(logger)
    .views(own, [peer], ext6)
    .flatMap((v) => hostGwDesired(v.own, v.peers, v.ext, v.warnings, undefined, v.borrowed).routes)
    .filter((r) => r.dst.endsWith('/32') || r.dst.endsWith('/128'));
  t.same(routes, [
    { dst: '10.5.1.17/32', via: '192.0.2.2', dev: 'eth0' },
    { dst: '2001:db8:1000:1::11/128', via: '2001:db8::2', dev: 'eth0' },
  ]);
});
