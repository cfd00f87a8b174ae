import t from 'tap';
import { planChanges, toBatches, toolOf, type KernelSnapshot, type KernelLink, type Op } from '../../src/dataplane/diff.js';
import { renderOp } from '../../src/dataplane/iproute-render.js';
import { emptyState, type DesiredState, type Link } from '../../src/dataplane/state.js';

const MAC_A = '0e:00:00:00:00:0a';
const MAC_B = '0e:00:00:00:00:0b';

function kernel(partial: Partial<KernelSnapshot> = {}): KernelSnapshot {
  return {
    links: [{ name: 'eth0', kind: 'veth', mtu: 1500, up: true }],
    addrs: [{ dev: 'eth0', cidr: '192.0.2.1/24' }],
    routes: [{ dst: '192.0.2.0/24', dev: 'eth0', onlink: false, owned: false }],
    neighs: [{ dev: 'eth0', ip: '192.0.2.9', mac: '02:00:00:00:00:09' }],
    fdb: [],
    ...partial,
  };
}

function vxlanLink(over: Partial<Link['spec']> = {}, mtu = 1450, mac = '0e:00:00:00:00:01'): Link {
  return { name: 'weft.1', spec: { kind: 'vxlan', vni: 1, port: 8472, local: '192.0.2.1', dev: 'eth0', learning: false, ...over } as Link['spec'], mtu, mac };
}

function kernelVxlan(over: Partial<KernelLink> = {}): KernelLink {
  return {
    name: 'weft.1', kind: 'vxlan', mtu: 1450, up: true, mac: '0e:00:00:00:00:01',
    vxlan: { vni: 1, port: 8472, local: '192.0.2.1', dev: 'eth0', learning: false },
    ...over,
  };
}

/** vxlan desired state with peers A (10.5.2.0/24 at 192.0.2.2) and optionally B. */
function vxlanState(peers: ('A' | 'B')[] = ['A']): DesiredState {
  const s: DesiredState = { links: [vxlanLink()], addrs: [{ dev: 'weft.1', cidr: '10.5.1.0/32' }], routes: [], neighs: [], fdb: [] };
  for (const p of peers) {
    const [subnet, gw, mac, under] = p === 'A'
      ? ['10.5.2.0/24', '10.5.2.0', MAC_A, '192.0.2.2']
      : ['10.5.3.0/24', '10.5.3.0', MAC_B, '192.0.2.3'];
    s.neighs.push({ dev: 'weft.1', ip: gw, mac });
    s.fdb.push({ dev: 'weft.1', mac, dst: under });
    s.routes.push({ dst: subnet, via: gw, dev: 'weft.1', onlink: true });
  }
  return s;
}

/** The kernel after `state` was applied exactly. */
function applied(state: DesiredState, base = kernel()): KernelSnapshot {
  return {
    links: [...base.links, kernelVxlan()],
    addrs: [...base.addrs, ...state.addrs],
    routes: [...base.routes, ...state.routes.map((r) => ({ dst: r.dst, via: r.via, dev: r.dev, onlink: r.onlink === true, owned: true }))],
    neighs: [...base.neighs, ...state.neighs],
    fdb: [...base.fdb, ...state.fdb],
  };
}

const lines = (ops: Op[]): string[] => ops.map(renderOp);

t.test('empty kernel, vxlan state: everything created in dependency order', async (t) => {
  const plan = planChanges(kernel(), vxlanState(['A']));
  t.same(lines(plan.ops), [
    'link add name weft.1 address 0e:00:00:00:00:01 mtu 1450 type vxlan id 1 dstport 8472 local 192.0.2.1 dev eth0 nolearning',
    'link set dev weft.1 up',
    'addr replace 10.5.1.0/32 dev weft.1',
    'neigh replace 10.5.2.0 lladdr 0e:00:00:00:00:0a dev weft.1 nud permanent',
    'fdb replace 0e:00:00:00:00:0a dev weft.1 dst 192.0.2.2 self permanent',
    'route replace 10.5.2.0/24 via 10.5.2.0 dev weft.1 onlink table main proto 147',
  ]);
  t.same(plan.conflicts, []);
  t.same(plan.rejected, []);
});

t.test('idempotent: the state applied once needs no further op', async (t) => {
  for (const peers of [[], ['A'], ['A', 'B']] as ('A' | 'B')[][]) {
    const state = vxlanState(peers);
    t.same(planChanges(applied(state), state).ops, [], `peers ${peers.join(',') || 'none'}`);
  }
  const hostgw: DesiredState = { ...emptyState(), routes: [{ dst: '10.5.2.0/24', via: '192.0.2.2', dev: 'eth0' }] };
  const k = kernel({ routes: [...kernel().routes, { dst: '10.5.2.0/24', via: '192.0.2.2', dev: 'eth0', onlink: false, owned: true }] });
  t.same(planChanges(k, hostgw).ops, []);
});

t.test('a peer leaves: its route, neighbour and FDB entry go, route first', async (t) => {
  const plan = planChanges(applied(vxlanState(['A', 'B'])), vxlanState(['A']));
  t.same(lines(plan.ops), [
    'route del 10.5.3.0/24 table main proto 147',
    'neigh del 10.5.3.0 dev weft.1',
    'fdb del 0e:00:00:00:00:0b dev weft.1 dst 192.0.2.3 self',
  ]);
});

t.test('a peer moves from the tunnel to a direct route: the route is replaced before its neighbour and FDB entry go', async (t) => {
  const after = vxlanState(['A']);
  after.routes.push({ dst: '10.5.3.0/24', via: '192.0.2.3', dev: 'eth0' });
  const ops = planChanges(applied(vxlanState(['A', 'B'])), after).ops;
  t.same(lines(ops), [
    'route replace 10.5.3.0/24 via 192.0.2.3 dev eth0 table main proto 147',
    'neigh del 10.5.3.0 dev weft.1',
    'fdb del 0e:00:00:00:00:0b dev weft.1 dst 192.0.2.3 self',
  ]);
  t.same(toBatches(ops).map((b) => b.tool), ['ip', 'bridge'], 'the FDB entry goes in a later process');
});

t.test('an IPv6 peer moves from a direct route into the tunnel: its old route goes just before the onlink one', async (t) => {
  // The kernel refuses an IPv6 onlink gateway that another device's route covers.
  const direct = { dst: '2001:db8:1000:2::/64', via: '2001:db8::2', dev: 'eth0', onlink: false, owned: true };
  const k = kernel({ routes: [...kernel().routes, direct], links: [...kernel().links, { ...kernelVxlan(), name: 'weft-v6.1' }] });
  const tunnel: DesiredState = {
    ...emptyState(),
    links: [{ ...vxlanLink(), name: 'weft-v6.1' }],
    routes: [{ dst: '2001:db8:1000:2::/64', via: '2001:db8:1000:2::', dev: 'weft-v6.1', onlink: true }],
  };
  const ops = planChanges(k, tunnel).ops;
  t.same(lines(ops), [
    'route del 2001:db8:1000:2::/64 table main proto 147',
    'route replace 2001:db8:1000:2::/64 via 2001:db8:1000:2:: dev weft-v6.1 onlink table main proto 147',
  ]);
  t.same(toBatches(ops).map((b) => b.tool), ['ip'], 'one ip run: no moment between them for a packet to miss');
});

t.test('a peer moves: neighbour and FDB replaced, route kept', async (t) => {
  const before = vxlanState(['A']);
  const after = vxlanState(['A']);
  after.fdb[0] = { dev: 'weft.1', mac: MAC_A, dst: '192.0.2.77' };
  after.neighs[0] = { dev: 'weft.1', ip: '10.5.2.0', mac: '0e:00:00:00:00:aa' };
  t.same(lines(planChanges(applied(before), after).ops), [
    'neigh replace 10.5.2.0 lladdr 0e:00:00:00:00:aa dev weft.1 nud permanent',
    'fdb replace 0e:00:00:00:00:0a dev weft.1 dst 192.0.2.77 self permanent',
  ]);
});

t.test('a MAC with several remotes keeps only the wanted one', async (t) => {
  const state = vxlanState(['A']);
  const k = applied(state);
  k.fdb.push({ dev: 'weft.1', mac: MAC_A, dst: '192.0.2.66' });
  t.same(lines(planChanges(k, state).ops), ['fdb del 0e:00:00:00:00:0a dev weft.1 dst 192.0.2.66 self']);
  const k2 = applied(state);
  k2.fdb = [{ dev: 'weft.1', mac: MAC_A, dst: '192.0.2.66' }, { dev: 'weft.1', mac: MAC_A, dst: '192.0.2.67' }];
  t.same(lines(planChanges(k2, state).ops), [
    'fdb del 0e:00:00:00:00:0a dev weft.1 dst 192.0.2.66 self',
    'fdb del 0e:00:00:00:00:0a dev weft.1 dst 192.0.2.67 self',
    'fdb replace 0e:00:00:00:00:0a dev weft.1 dst 192.0.2.2 self permanent',
  ]);
});

t.test('routes: replaced when gateway, device or onlink differ; normalised forms compare equal', async (t) => {
  const want: DesiredState = { ...emptyState(), routes: [{ dst: '10.5.2.0/24', via: '192.0.2.2', dev: 'eth0' }] };
  const owned = (over: object) => kernel({ routes: [{ dst: '10.5.2.0/24', via: '192.0.2.2', dev: 'eth0', onlink: false, owned: true, ...over }] });
  const replace = ['route replace 10.5.2.0/24 via 192.0.2.2 dev eth0 table main proto 147'];
  t.same(lines(planChanges(owned({ via: '192.0.2.3' }), want).ops), replace);
  t.same(lines(planChanges(owned({ dev: 'eth1' }), want).ops), replace);
  t.same(lines(planChanges(owned({ onlink: true }), want).ops), replace);
  // Desired without a device: whatever device the kernel chose is fine.
  const noDev: DesiredState = { ...emptyState(), routes: [{ dst: '10.5.2.0/24', via: '192.0.2.2' }] };
  t.same(planChanges(owned({}), noDev).ops, []);
  // IPv6 written in a long form, kernel reporting metric 1024.
  const v6: DesiredState = { ...emptyState(), routes: [{ dst: 'fd00:5:0:2:0::/64', via: 'fd00:0::2', dev: 'eth0' }] };
  const k6 = kernel({ routes: [{ dst: 'fd00:5:0:2::/64', via: 'fd00::2', dev: 'eth0', onlink: false, owned: true, metric: 1024 }] });
  t.same(planChanges(k6, v6).ops, []);
  // Default routes are written with an explicit family.
  const dflt: DesiredState = { ...emptyState(), routes: [{ dst: '0.0.0.0/0', via: '192.0.2.254' }] };
  t.same(lines(planChanges(kernel(), dflt).ops), ['route replace 0.0.0.0/0 via 192.0.2.254 table main proto 147']);
});

t.test('stale weft routes are removed, with their metric; foreign routes never', async (t) => {
  const k = kernel({
    routes: [
      { dst: '10.5.9.0/24', via: '192.0.2.9', dev: 'eth0', onlink: false, owned: true },
      { dst: 'fd00:9::/64', via: 'fd00::9', dev: 'eth0', onlink: false, owned: true, metric: 1024 },
      { dst: '10.5.2.0/24', via: '192.0.2.2', dev: 'eth0', onlink: false, owned: true, metric: 50 },
      { dst: '10.77.0.0/16', via: '192.0.2.7', dev: 'eth0', onlink: false, owned: false },
      { dst: '0.0.0.0/0', via: '192.0.2.254', dev: 'eth0', onlink: false, owned: false },
    ],
  });
  const want: DesiredState = { ...emptyState(), routes: [{ dst: '10.5.2.0/24', via: '192.0.2.2', dev: 'eth0' }] };
  t.same(lines(planChanges(k, want).ops), [
    'route replace 10.5.2.0/24 via 192.0.2.2 dev eth0 table main proto 147',
    'route del 10.5.9.0/24 table main proto 147',
    'route del fd00:9::/64 metric 1024 table main proto 147',
    // Only the default-metric route counts as the desired one; the extra goes.
    'route del 10.5.2.0/24 metric 50 table main proto 147',
  ]);
  t.notOk(lines(planChanges(k, want).ops).some((l) => l.includes('10.77.') || l.includes('0.0.0.0/0')), 'foreign routes untouched');
});

t.test('a foreign route for a desired destination is a conflict, not a replace', async (t) => {
  const k = kernel({ routes: [{ dst: '10.5.2.0/24', via: '192.0.2.50', dev: 'eth0', onlink: false, owned: false }] });
  const want: DesiredState = { ...emptyState(), routes: [{ dst: '10.5.2.0/24', via: '192.0.2.2', dev: 'eth0' }, { dst: '10.5.3.0/24', via: '192.0.2.3', dev: 'eth0' }] };
  const plan = planChanges(k, want);
  t.same(plan.conflicts, ['10.5.2.0/24']);
  t.same(lines(plan.ops), ['route replace 10.5.3.0/24 via 192.0.2.3 dev eth0 table main proto 147']);
  // A weft route already there beside a foreign one of another metric is ours to update.
  const both = kernel({ routes: [
    { dst: '10.5.2.0/24', via: '192.0.2.50', dev: 'eth0', onlink: false, owned: false, metric: 100 },
    { dst: '10.5.2.0/24', via: '192.0.2.9', dev: 'eth0', onlink: false, owned: true },
  ] });
  const p2 = planChanges(both, { ...emptyState(), routes: [want.routes[0]!] });
  t.same(p2.conflicts, []);
  t.same(lines(p2.ops), ['route replace 10.5.2.0/24 via 192.0.2.2 dev eth0 table main proto 147']);
});

t.test('links: identical kept, settings fixed in place, different tunnel recreated', async (t) => {
  const state = vxlanState(['A']);
  t.same(planChanges(applied(state), state).ops, [], 'identical: no flap');
  const k = applied(state);
  k.links = k.links.map((l) => (l.name === 'weft.1' ? { ...l, mtu: 1500, up: false, mac: '0e:00:00:00:00:99' } : l));
  t.same(lines(planChanges(k, state).ops), ['link set dev weft.1 mtu 1450 address 0e:00:00:00:00:01 up']);

  for (const [field, value] of [['vni', 2], ['port', 4789], ['local', '192.0.2.100'], ['dev', 'eth1'], ['learning', true]] as const) {
    const k2 = applied(state);
    k2.links = k2.links.map((l) => (l.name === 'weft.1' ? { ...l, vxlan: { ...l.vxlan!, [field]: value } } : l));
    const ops = lines(planChanges(k2, state).ops);
    t.same(ops, [
      'link del dev weft.1',
      'link add name weft.1 address 0e:00:00:00:00:01 mtu 1450 type vxlan id 1 dstport 8472 local 192.0.2.1 dev eth0 nolearning',
      'link set dev weft.1 up',
      // The recreated device starts empty: everything on it is written again, nothing deleted.
      'addr replace 10.5.1.0/32 dev weft.1',
      'neigh replace 10.5.2.0 lladdr 0e:00:00:00:00:0a dev weft.1 nud permanent',
      'fdb replace 0e:00:00:00:00:0a dev weft.1 dst 192.0.2.2 self permanent',
      'route replace 10.5.2.0/24 via 10.5.2.0 dev weft.1 onlink table main proto 147',
    ], `${field} differs: recreated`);
  }
  // A weft-named link of another kind in the way is replaced too.
  const k3 = applied(state);
  k3.links = k3.links.map((l) => (l.name === 'weft.1' ? { name: 'weft.1', kind: 'bridge', mtu: 1450, up: true } : l));
  t.equal(lines(planChanges(k3, state).ops)[0], 'link del dev weft.1');
});

t.test('undesired weft vxlan links are removed; other links never', async (t) => {
  const k = kernel({
    links: [
      { name: 'eth0', kind: 'veth', mtu: 1500, up: true },
      kernelVxlan({ name: 'weft.7' }),
      { name: 'weft0', kind: 'tun', mtu: 1472, up: true },
      { name: 'vxlan.calico', kind: 'vxlan', mtu: 1450, up: true, vxlan: { vni: 4096, port: 4789, learning: false } },
      { name: 'weftbr', kind: 'bridge', mtu: 1500, up: true },
    ],
    routes: [{ dst: '10.5.2.0/24', via: '10.5.2.0', dev: 'weft.7', onlink: true, owned: true }],
    neighs: [{ dev: 'weft.7', ip: '10.5.2.0', mac: MAC_A }],
    fdb: [{ dev: 'weft.7', mac: MAC_A, dst: '192.0.2.2' }],
  });
  t.same(lines(planChanges(k, emptyState()).ops), ['link del dev weft.7'], 'entries go with their link; tun and foreign kept');
  t.same(lines(planChanges(k, emptyState(), { removeTunLinks: true }).ops), ['link del dev weft.7', 'link del dev weft0'], 'teardown removes the TUN too');
});

t.test('addresses, neighbours and FDB entries only on weft links', async (t) => {
  const state = vxlanState(['A']);
  const k = applied(state);
  k.addrs.push({ dev: 'weft.1', cidr: '10.5.99.0/32' }, { dev: 'eth0', cidr: '192.0.2.200/24' });
  k.neighs.push({ dev: 'weft.1', ip: '10.5.99.0', mac: MAC_B }, { dev: 'eth0', ip: '192.0.2.50', mac: MAC_B });
  k.fdb.push({ dev: 'weft.1', mac: MAC_B, dst: '192.0.2.99' }, { dev: 'eth0', mac: MAC_B, dst: '192.0.2.99' });
  t.same(lines(planChanges(k, state).ops), [
    'neigh del 10.5.99.0 dev weft.1',
    'addr del 10.5.99.0/32 dev weft.1',
    'fdb del 0e:00:00:00:00:0b dev weft.1 dst 192.0.2.99 self',
  ]);
  const bad: DesiredState = { ...emptyState(), addrs: [{ dev: 'eth0', cidr: '192.0.2.5/24' }], neighs: [{ dev: 'eth0', ip: '192.0.2.5', mac: MAC_A }], fdb: [{ dev: 'eth0', mac: MAC_A, dst: '192.0.2.5' }] };
  const plan = planChanges(kernel(), bad);
  t.same(plan.ops, []);
  t.equal(plan.rejected.length, 3, 'each refused by name');
});

t.test('TUN links: never created, tuned when present, routes wait when missing', async (t) => {
  const state: DesiredState = {
    links: [{ name: 'weft0', spec: { kind: 'tun' }, mtu: 1472 }],
    addrs: [{ dev: 'weft0', cidr: '10.5.1.0/16' }],
    routes: [{ dst: '10.5.0.0/16', dev: 'weft0' }],
    neighs: [], fdb: [],
  };
  const missing = planChanges(kernel(), state);
  t.same(missing.ops, []);
  t.same(missing.missingLinks, ['weft0']);
  const present = kernel({ links: [...kernel().links, { name: 'weft0', kind: 'tun', mtu: 1500, up: false }] });
  t.same(lines(planChanges(present, state).ops), [
    'link set dev weft0 mtu 1472 up',
    'addr replace 10.5.1.0/16 dev weft0',
    'route replace 10.5.0.0/16 dev weft0 table main proto 147',
  ]);
});

t.test('malformed desired entries are refused, never written into a batch line', async (t) => {
  const hostile: DesiredState = {
    links: [
      { name: 'eth9', spec: { kind: 'tun' }, mtu: 1400 },
      { name: 'weft.2', spec: { kind: 'vxlan', vni: 1, port: 8472, local: '192.0.2.1\nlink del eth0', dev: 'eth0', learning: false }, mtu: 1450 },
    ],
    addrs: [],
    routes: [
      { dst: '10.5.2.0/24\nroute flush all', via: '192.0.2.2' },
      { dst: '10.5.3.1/24', via: '192.0.2.3' },
      { dst: '10.5.4.0/24', via: 'fd00::1' },
      { dst: '10.5.5.0/24', via: '192.0.2.5', dev: 'eth0 ; x' },
      { dst: '10.5.6.0/24' },
      { dst: '10.5.7.0/24', dev: 'weft.9' },
    ],
    neighs: [{ dev: 'weft.2', ip: '10.5.2.0', mac: 'zz' }],
    fdb: [],
  };
  const plan = planChanges(kernel(), hostile);
  t.same(plan.ops, []);
  t.equal(plan.rejected.length, 9);
  t.notOk(plan.rejected.some((r) => r.includes('\n')), 'rejections quote values on one line');
});

t.test('batches: one process per tool, order kept where it matters', async (t) => {
  const tools = (ops: Op[]) => toBatches(ops).map((b) => b.tool);
  // Peer joins on an existing device: FDB first, then neighbour + route in one ip run.
  const join = planChanges(applied(vxlanState(['A'])), vxlanState(['A', 'B'])).ops;
  t.same(tools(join), ['bridge', 'ip']);
  // Peer leaves: route + neighbour removal, then FDB removal.
  const leave = planChanges(applied(vxlanState(['A', 'B'])), vxlanState(['A'])).ops;
  t.same(tools(leave), ['ip', 'bridge']);
  // Fresh device: it must exist before its FDB entries, and routes come after both.
  const fresh = planChanges(kernel(), vxlanState(['A', 'B'])).ops;
  t.same(tools(fresh), ['ip', 'bridge', 'ip']);
  const [first, , last] = toBatches(fresh).map((x) => x.ops.map((o) => o.target));
  t.ok(first!.includes('link') && first!.includes('neigh') && !first!.includes('route'), 'link and neighbours first, no route');
  t.ok(last!.length > 0 && last!.every((target) => target === 'route'), 'routes last, after the FDB entries');
  // host-gw: a single ip run however many routes.
  const many: DesiredState = { ...emptyState(), routes: Array.from({ length: 200 }, (_, i) => ({ dst: `10.6.${i}.0/24`, via: '192.0.2.2' })) };
  const b = toBatches(planChanges(kernel(), many).ops);
  t.equal(b.length, 1);
  t.equal(b[0]!.ops.length, 200);
  t.same(toBatches([]), []);
  // Every batch holds ops of one tool only, and the batches together hold every op.
  for (const ops of [join, leave, fresh]) {
    const batches = toBatches(ops);
    t.ok(batches.every((x) => x.ops.every((o) => toolOf(o) === x.tool)));
    t.equal(batches.reduce((n, x) => n + x.ops.length, 0), ops.length);
    t.ok(batches.length <= 3 && batches.every((x, i) => i === 0 || x.tool !== batches[i - 1]!.tool), 'at most three processes, never the same tool twice in a row');
  }
});
