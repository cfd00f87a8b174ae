// Which typed kernel events (from the netlink socket) wake the reconciler and
// which do not; and which make the bgp backend ask BIRD for a kernel scan. No
// root, no socket: events are written out as the addon delivers them.
import t from 'tap';
import { isDeletedRouteEventInside } from '../../backends/bgp/restore.js';
import { Cidr } from '../../src/core/cidr.js';
import { isRelevantKernelEvent, type FdbEvent, type LinkEvent, type NeighEvent, type RouteEvent } from '../../src/dataplane/netlink.js';

const want = { linkPrefix: 'weft', devs: new Set(['eth0']), dsts: new Set(['10.5.2.0/24', '0.0.0.0/0', 'fd00:5:2::/64']) };

const route = (more: Partial<RouteEvent>): RouteEvent => ({
  kind: 'route', op: 'new', family: 4, ifindex: 2, ifname: 'eth0', dst: '10.77.0.0', prefixLen: 16, table: 254, protocol: 4, type: 1, ...more,
});
const link = (more: Partial<LinkEvent>): LinkEvent => ({ kind: 'link', op: 'new', ifindex: 7, ifname: 'weft.1', up: true, ...more });
const neigh = (more: Partial<NeighEvent>): NeighEvent => ({
  kind: 'neigh', op: 'new', family: 4, ifindex: 7, ifname: 'weft.1', dst: '10.9.0.2', lladdr: 'aa:bb:cc:dd:ee:01', state: 0x80, flags: 0, ...more,
});
const fdb = (more: Partial<FdbEvent>): FdbEvent => ({
  kind: 'fdb', op: 'new', family: 'bridge', ifindex: 7, ifname: 'weft.1', lladdr: 'aa:bb:cc:dd:ee:01', dst: '10.9.0.2', state: 0x80, flags: 2, ...more,
});

t.test('relevant: what can break weft state', async (t) => {
  t.ok(isRelevantKernelEvent(route({ op: 'del', dst: '10.10.0.0', prefixLen: 24, protocol: 147 }), want), 'a weft route (proto 147) deleted');
  t.ok(isRelevantKernelEvent(route({ family: 6, dst: 'fd00:1::', prefixLen: 64, protocol: 147, ifname: 'a0' }), want), 'a weft IPv6 route added');
  t.ok(isRelevantKernelEvent(route({ op: 'del', dst: '10.5.3.0', prefixLen: 24, protocol: 3, ifname: 'weft.1' }), want), 'any route on a weft device');
  t.ok(isRelevantKernelEvent(link({ op: 'del' }), want), 'a weft link deleted');
  t.ok(isRelevantKernelEvent(link({ ifname: 'eth0', ifindex: 3, up: false }), want), 'a device the desired state depends on changed');
  t.ok(isRelevantKernelEvent(neigh({ op: 'del' }), want), 'a neighbour on a weft device deleted');
  t.ok(isRelevantKernelEvent(neigh({}), want), 'a permanent neighbour on a weft device written');
  t.ok(isRelevantKernelEvent(fdb({ op: 'del' }), want), 'an FDB entry on a weft device deleted');
  t.ok(isRelevantKernelEvent(fdb({}), want), 'a permanent FDB entry on a weft device written');
  t.ok(isRelevantKernelEvent(route({ dst: '10.5.2.0', prefixLen: 24, gateway: '192.0.2.50' }), want), 'a foreign route at a desired destination');
  t.ok(isRelevantKernelEvent(route({ dst: '10.5.2.0', prefixLen: 24, type: 7, ifindex: 0, ifname: undefined }), want), 'an unreachable route at a desired destination');
  t.ok(isRelevantKernelEvent(route({ op: 'del', dst: '0.0.0.0', prefixLen: 0, protocol: 16 }), want), 'a desired default route deleted');
  t.ok(isRelevantKernelEvent(route({ family: 6, dst: 'fd00:5:2::', prefixLen: 64 }), want), 'a foreign IPv6 route at a desired destination');
});

t.test('ignored: churn that cannot break weft state', async (t) => {
  t.notOk(isRelevantKernelEvent(neigh({ ifname: 'eth0', dst: '192.0.2.9', state: 0x02 }), want), 'a reachable neighbour on the underlay');
  t.notOk(isRelevantKernelEvent(neigh({ ifname: 'eth0', op: 'del', state: 0x80 }), want), 'a neighbour on a device weft does not own');
  t.notOk(isRelevantKernelEvent(neigh({ state: 0x01 }), want), 'an incomplete neighbour on a weft device');
  t.notOk(isRelevantKernelEvent(neigh({ state: 0x04 }), want), 'a stale neighbour on a weft device');
  t.notOk(isRelevantKernelEvent(fdb({ ifname: 'cni0', state: 0x02 }), want), 'a learned FDB entry on a bridge');
  t.notOk(isRelevantKernelEvent(fdb({ state: 0x02 }), want), 'a learned FDB entry on a weft device');
  t.notOk(isRelevantKernelEvent(route({}), want), 'a foreign route elsewhere');
  t.notOk(isRelevantKernelEvent(route({ dst: '10.5.2.255', prefixLen: 32, table: 255, type: 3, protocol: 2 }), want), 'a local-table broadcast route inside a desired subnet');
  t.notOk(isRelevantKernelEvent(route({ dst: '::', family: 6, prefixLen: 0 }), want), 'a default route of the family weft does not route by default');
  t.notOk(isRelevantKernelEvent(link({ ifname: 'cni0' }), want), 'a link weft does not use');
  t.notOk(isRelevantKernelEvent(neigh({ ifname: undefined }), want), 'a neighbour on a device whose name is unknown');
});

const owned = [Cidr.parse('10.244.0.0/16'), Cidr.parse('fd00:10::/56')];
const bird = (more: Partial<RouteEvent>): RouteEvent => route({ op: 'del', dst: '10.244.9.0', prefixLen: 24, protocol: 12, ...more });

t.test('bgp: a main-table route deleted inside the owned prefixes makes BIRD rescan', async (t) => {
  t.ok(isDeletedRouteEventInside(bird({}), owned), 'a BIRD route deleted');
  t.ok(isDeletedRouteEventInside(bird({ family: 6, dst: 'fd00:10:0:9::', prefixLen: 64 }), owned), 'an IPv6 BIRD route deleted');
  t.ok(isDeletedRouteEventInside(bird({ protocol: 4 }), owned), "an operator's foreign route going (BIRD's may take its place)");
  t.notOk(isDeletedRouteEventInside(bird({ op: 'new' }), owned), 'an added BIRD route (BIRD restoring one: no loop)');
  t.notOk(isDeletedRouteEventInside(bird({ dst: '192.0.2.0' }), owned), 'a route outside the owned prefixes');
  t.notOk(isDeletedRouteEventInside(bird({ dst: '10.0.0.0', prefixLen: 8 }), owned), 'a route wider than the Network');
  t.notOk(isDeletedRouteEventInside(bird({ table: 100 }), owned), 'another table');
  t.notOk(isDeletedRouteEventInside(bird({ dst: '0.0.0.0', prefixLen: 0 }), owned), 'a default route');
  t.notOk(isDeletedRouteEventInside(link({ op: 'del' }), owned), 'a link deleted');
});
